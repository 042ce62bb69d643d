//! Study groups: creating one, its owner its first member. Explicit dependencies (the database and
//! the bounded password hasher); errors of its own, mapped to HTTP at the boundary.

use ppodok_domain::invite;
use sea_orm::{
    ActiveModelTrait, DatabaseConnection, DbErr, Set, TransactionError, TransactionTrait,
};

use crate::db::entities::study_group;
use crate::db::{is_unique_violation, now_utc};
use crate::membership::join;
use crate::passwords::{PasswordError, Passwords};

/// Fresh invite codes tried after a collision (each collides with probability ~2^-95).
const CODE_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Every invite code tried was taken.
    #[error("invite code collisions {CODE_ATTEMPTS} times in a row")]
    CodeCollisions,
    #[error("creating group: {0}")]
    Store(#[from] DbErr),
}

/// A group to create (name and password already validated).
pub struct NewGroup {
    pub name: String,
    pub secret: bool,
    pub password: Option<String>,
    /// An invite code proposed by the client: kept when acceptable and unused.
    pub proposed_code: Option<String>,
}

/// Creates a group owned by `owner_id`, who becomes its first member.
pub async fn create(
    db: &DatabaseConnection,
    passwords: &Passwords,
    owner_id: i64,
    group: NewGroup,
) -> Result<study_group::Model, GroupError> {
    let password_hash = match group.password {
        Some(p) => Some(passwords.hash(p).await?),
        None => None,
    };
    // A client's strong code is tried first; a taken one falls back to a fresh code, which
    // collides with probability ~2^-95 (retried anyway rather than fail).
    let mut proposed =
        invite::acceptable_client_code(group.proposed_code.as_deref()).map(str::to_owned);
    for _ in 0..CODE_ATTEMPTS {
        let code = proposed
            .take()
            .unwrap_or_else(|| invite::generate_invite_code(&mut rand::rngs::OsRng));
        let now = now_utc();
        let row = study_group::ActiveModel {
            name: Set(group.name.clone()),
            owner_id: Set(Some(owner_id)),
            is_secret: Set(group.secret),
            password_hash: Set(password_hash.clone()),
            invite_code: Set(code),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let result = db
            .transaction::<_, study_group::Model, DbErr>(|txn| {
                Box::pin(async move {
                    let group = row.insert(txn).await?;
                    join(txn, group.id, owner_id).await?;
                    Ok(group)
                })
            })
            .await;
        match result {
            Ok(group) => return Ok(group),
            Err(TransactionError::Transaction(e)) if is_unique_violation(&e) => continue,
            Err(TransactionError::Connection(e) | TransactionError::Transaction(e)) => {
                return Err(e.into())
            }
        }
    }
    Err(GroupError::CodeCollisions)
}
