//! Study groups: listing, creating one (its owner its first member), joining by id or invite
//! code, the owner's edit, a member's colour, and leaving. Explicit dependencies (the database, the
//! bounded password hasher, the calendar and video announcers); errors of their own, mapped to
//! HTTP at the boundary. Rate limits stay at the boundary: where a workflow makes a password
//! attempt it awaits a gate the caller hands in (a future, run only when an attempt is made).

use std::future::Future;

use ppodok_domain::validate::{self, ValidationError};
use ppodok_domain::{invite, DEFAULT_GROUP_ID};
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionError, TransactionTrait,
};

use crate::db::entities::{membership as membership_row, study_group};
use crate::db::{is_foreign_key_violation, is_unique_violation, now_utc};
use crate::limits::LimitError;
use crate::membership::{join, leave, membership_of, Joined, LeaveEffects};
use crate::passwords::{PasswordError, Passwords};
use crate::rooms::CalendarNews;
use crate::video::VideoSeats;

/// Fresh invite codes tried after a collision (each collides with probability ~2^-95).
const CODE_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No group with this id (or it vanished while joining).
    #[error("no group {0}")]
    NotFound(i64),
    /// The member is not in the group.
    #[error("member {member_id} is not in group {group_id}")]
    NotAMember { member_id: i64, group_id: i64 },
    /// Not a plausible invite code, or no group has it (the code as shown back, truncated).
    #[error("invalid invite code")]
    InvalidInvite(String),
    /// Joining a group by invite code that I am in already (or previewing it).
    #[error("already a member")]
    AlreadyMember,
    /// A secret group's password did not match.
    #[error("wrong group password")]
    WrongPassword,
    /// Only the owner edits a group.
    #[error("not the owner")]
    NotOwner,
    /// The default group cannot be left.
    #[error("the default group cannot be left")]
    DefaultGroup,
    /// A name, password or colour is not acceptable.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The caller's gate refused a password attempt.
    #[error(transparent)]
    Limited(#[from] LimitError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Every invite code tried was taken.
    #[error("invite code collisions {CODE_ATTEMPTS} times in a row")]
    CodeCollisions,
    #[error("group store: {0}")]
    Store(#[from] DbErr),
}

impl From<TransactionError<DbErr>> for GroupError {
    fn from(e: TransactionError<DbErr>) -> Self {
        match e {
            TransactionError::Connection(e) | TransactionError::Transaction(e) => e.into(),
        }
    }
}

/// A group with my colour in it (None when I have none, or am not a member).
pub struct GroupOf {
    pub group: study_group::Model,
    pub color: Option<String>,
}

/// The group `id`, or [`GroupError::NotFound`].
pub async fn find(db: &DatabaseConnection, id: i64) -> Result<study_group::Model, GroupError> {
    study_group::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(GroupError::NotFound(id))
}

/// Groups `member_id` is not in, by id.
pub async fn joinable(
    db: &DatabaseConnection,
    member_id: i64,
) -> Result<Vec<study_group::Model>, DbErr> {
    let mine = Query::select()
        .column(membership_row::Column::GroupId)
        .from(membership_row::Entity)
        .and_where(Expr::col(membership_row::Column::MemberId).eq(member_id))
        .to_owned();
    study_group::Entity::find()
        .filter(study_group::Column::Id.not_in_subquery(mine))
        .order_by_asc(study_group::Column::Id)
        .all(db)
        .await
}

/// The groups of `member_id` with the member's colour, in joining order.
pub async fn of_member(db: &DatabaseConnection, member_id: i64) -> Result<Vec<GroupOf>, DbErr> {
    let rows = membership_row::Entity::find()
        .filter(membership_row::Column::MemberId.eq(member_id))
        .order_by_asc(membership_row::Column::Id)
        .find_also_related(study_group::Entity)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(m, g)| {
            g.map(|group| GroupOf {
                group,
                color: m.color,
            })
        })
        .collect())
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

/// `member_id`'s membership of `group_id`, or [`GroupError::NotAMember`].
async fn required_membership(
    db: &DatabaseConnection,
    group_id: i64,
    member_id: i64,
) -> Result<membership_row::Model, GroupError> {
    membership_of(db, group_id, member_id)
        .await?
        .ok_or(GroupError::NotAMember {
            member_id,
            group_id,
        })
}

/// The group behind an invite code.
async fn by_invite(db: &DatabaseConnection, code: &str) -> Result<study_group::Model, GroupError> {
    if !invite::is_plausible_invite_code(code) {
        let shown: String = code.chars().take(invite::MAX_INVITE_CODE_INPUT).collect();
        return Err(GroupError::InvalidInvite(shown));
    }
    study_group::Entity::find()
        .filter(study_group::Column::InviteCode.eq(code))
        .one(db)
        .await?
        .ok_or_else(|| GroupError::InvalidInvite(code.to_owned()))
}

/// Invite preview: the group behind a code, unless `member_id` is in it already.
pub async fn preview_invite(
    db: &DatabaseConnection,
    member_id: i64,
    code: &str,
) -> Result<study_group::Model, GroupError> {
    let group = by_invite(db, code).await?;
    if membership_of(db, group.id, member_id).await?.is_some() {
        return Err(GroupError::AlreadyMember);
    }
    Ok(group)
}

/// Joins `member_id` to the group of an invite code (the code is the secret; no password asked).
/// A member of the group already is refused ([`GroupError::AlreadyMember`]).
pub async fn join_by_invite(
    db: &DatabaseConnection,
    member_id: i64,
    code: &str,
) -> Result<study_group::Model, GroupError> {
    let group = preview_invite(db, member_id, code).await?;
    if add_member(db, &group, member_id).await? == Joined::AlreadyMember {
        return Err(GroupError::AlreadyMember);
    }
    Ok(group)
}

/// Joins `member_id` to the group `group_id`; a secret group asks for its password, each attempt
/// let through by `password_gate` first (awaited only then). Joining a group I am in changes
/// nothing and answers the group with my colour.
pub async fn join_by_id<G>(
    db: &DatabaseConnection,
    passwords: &Passwords,
    member_id: i64,
    group_id: i64,
    password: Option<String>,
    password_gate: G,
) -> Result<GroupOf, GroupError>
where
    G: Future<Output = Result<(), LimitError>>,
{
    let group = find(db, group_id).await?;
    if let Some(m) = membership_of(db, group.id, member_id).await? {
        return Ok(GroupOf {
            group,
            color: m.color,
        });
    }
    if group.is_secret {
        password_gate.await?;
        if !passwords
            .matches(group.password_hash.clone(), password)
            .await?
        {
            return Err(GroupError::WrongPassword);
        }
    }
    add_member(db, &group, member_id).await?;
    Ok(GroupOf { group, color: None })
}

/// Adds a member unless the group vanished meanwhile ([`GroupError::NotFound`]).
async fn add_member(
    db: &DatabaseConnection,
    group: &study_group::Model,
    member_id: i64,
) -> Result<Joined, GroupError> {
    let group_id = group.id;
    let joined = db
        .transaction::<_, _, DbErr>(|txn| {
            Box::pin(async move {
                // Row lock (MariaDB lacks FOR SHARE): a concurrent last-member leave cannot delete the group under us.
                let exists = study_group::Entity::find_by_id(group_id)
                    .lock_exclusive()
                    .one(txn)
                    .await?
                    .is_some();
                if !exists {
                    return Ok(None);
                }
                join(txn, group_id, member_id).await.map(Some)
            })
        })
        .await;
    match joined {
        Ok(Some(j)) => Ok(j),
        Ok(None) => Err(GroupError::NotFound(group_id)),
        Err(TransactionError::Transaction(e)) if is_foreign_key_violation(&e) => {
            Err(GroupError::NotFound(group_id))
        }
        Err(e) => Err(e.into()),
    }
}

/// The owner's edit of a group (raw input: validated here, after the owner check).
pub struct GroupEdit {
    pub group_id: i64,
    pub name: String,
    pub secret: bool,
    /// Required when making a public group secret; None keeps the current password.
    pub password: Option<String>,
}

/// Edits name, secret flag and password of a group `member_id` owns; answers it with the
/// owner's colour.
pub async fn edit(
    db: &DatabaseConnection,
    passwords: &Passwords,
    member_id: i64,
    edit: GroupEdit,
) -> Result<GroupOf, GroupError> {
    let group = find(db, edit.group_id).await?;
    if group.owner_id != Some(member_id) {
        return Err(GroupError::NotOwner);
    }
    let name = validate::group_name(&edit.name)?;
    let password_hash = match (edit.secret, edit.password.as_deref()) {
        (false, _) => None,
        (true, None) if group.password_hash.is_some() => group.password_hash.clone(),
        (true, given) => {
            let p = validate::group_password(true, given)?.expect("secret password validated");
            Some(passwords.hash(p).await?)
        }
    };
    let color = membership_of(db, group.id, member_id)
        .await?
        .and_then(|m| m.color);
    let mut row: study_group::ActiveModel = group.into();
    row.name = Set(name);
    row.is_secret = Set(edit.secret);
    row.password_hash = Set(password_hash);
    row.updated_at = Set(now_utc());
    let group = row.update(db).await?;
    Ok(GroupOf { group, color })
}

/// Sets `member_id`'s colour for `group_id` (raw input, validated here).
pub async fn set_color(
    db: &DatabaseConnection,
    member_id: i64,
    group_id: i64,
    color: &str,
) -> Result<GroupOf, GroupError> {
    let group = find(db, group_id).await?;
    let color = validate::color(color)?;
    let m = required_membership(db, group.id, member_id).await?;
    let mut row: membership_row::ActiveModel = m.into();
    row.color = Set(Some(color.clone()));
    row.update(db).await?;
    Ok(GroupOf {
        group,
        color: Some(color),
    })
}

/// Leaving a group: one transaction (see [`crate::membership::leave`]), then the announcements.
pub struct Leaving<'a> {
    pub db: &'a DatabaseConnection,
    pub calendar: CalendarNews<'a>,
    pub video: VideoSeats<'a>,
}

impl Leaving<'_> {
    /// `member_id` leaves `group_id` with the full cascade; then the group's calendar and
    /// membership revocations are announced, and the member leaves the group's open video rooms.
    pub async fn leave(&self, member_id: i64, group_id: i64) -> Result<(), GroupError> {
        let group = find(self.db, group_id).await?;
        if group.id == DEFAULT_GROUP_ID {
            return Err(GroupError::DefaultGroup);
        }
        required_membership(self.db, group.id, member_id).await?;
        let group_id = group.id;
        let video_rooms = self.video.open_rooms_of(member_id, Some(group_id)).await;
        let effects = self
            .db
            .transaction::<_, LeaveEffects, DbErr>(|txn| {
                Box::pin(async move { leave(txn, member_id, &[group_id]).await })
            })
            .await?;
        self.calendar.after_leaving(member_id, &effects).await;
        self.video.remove(member_id, video_rooms);
        Ok(())
    }
}
