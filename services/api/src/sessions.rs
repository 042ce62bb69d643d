//! Login sessions ("refresh token families").
//!
//! A login opens a session `sid` that remembers the `jti` of the one refresh token that may be used
//! next. Rotation swaps it atomically; presenting an older refresh token of the family means it was
//! stolen or replayed, so the whole session is revoked. Access tokens carry the `sid` and die with
//! it, which is how logout and withdrawal take effect at once. Always in the database, also when
//! Redis is configured: sessions survive a Redis restart or outage and are shared by replicas.

use crate::db::entities::member_session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; the new one is now current.
    Rotated,
    /// An already rotated token was presented: the session is revoked.
    Reused,
    /// No such session (expired, logged out, revoked).
    Unknown,
}

pub struct SessionStore(DatabaseSessions);

impl SessionStore {
    pub fn database(db: sea_orm::DatabaseConnection) -> Self {
        Self(DatabaseSessions { db })
    }

    pub async fn open(
        &self,
        member_id: i64,
        sid: &str,
        jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<()> {
        self.0.open(member_id, sid, jti, ttl_secs).await
    }

    pub async fn rotate(
        &self,
        member_id: i64,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<Rotation> {
        self.0
            .rotate(member_id, sid, presented_jti, new_jti, ttl_secs)
            .await
    }

    pub async fn is_active(&self, member_id: i64, sid: &str) -> anyhow::Result<bool> {
        self.0.is_active(member_id, sid).await
    }

    pub async fn revoke(&self, _member_id: i64, sid: &str) -> anyhow::Result<()> {
        self.0.revoke(sid).await
    }

    pub async fn revoke_member(&self, member_id: i64) -> anyhow::Result<()> {
        self.0.revoke_member(member_id).await
    }
}

pub struct DatabaseSessions {
    db: sea_orm::DatabaseConnection,
}

impl DatabaseSessions {
    fn expiry(ttl_secs: i64) -> chrono::NaiveDateTime {
        crate::db::now_utc() + chrono::Duration::seconds(ttl_secs.max(1))
    }

    async fn open(
        &self,
        member_id: i64,
        sid: &str,
        jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<()> {
        use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
        // Expired sessions of this member go now, so the table stays the size of live sessions.
        member_session::Entity::delete_many()
            .filter(member_session::Column::MemberId.eq(member_id))
            .filter(member_session::Column::ExpiresAt.lt(crate::db::now_utc()))
            .exec(&self.db)
            .await?;
        member_session::ActiveModel {
            sid: Set(sid.to_owned()),
            member_id: Set(member_id),
            jti: Set(jti.to_owned()),
            expires_at: Set(Self::expiry(ttl_secs)),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    async fn rotate(
        &self,
        member_id: i64,
        sid: &str,
        presented: &str,
        new_jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<Rotation> {
        use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
        // Compare-and-swap in one statement: only the holder of the current jti wins.
        let swapped = member_session::Entity::update_many()
            .col_expr(member_session::Column::Jti, Expr::value(new_jti))
            .col_expr(
                member_session::Column::ExpiresAt,
                Expr::value(Self::expiry(ttl_secs)),
            )
            .filter(member_session::Column::Sid.eq(sid))
            .filter(member_session::Column::MemberId.eq(member_id))
            .filter(member_session::Column::Jti.eq(presented))
            .filter(member_session::Column::ExpiresAt.gt(crate::db::now_utc()))
            .exec(&self.db)
            .await?;
        if swapped.rows_affected == 1 {
            return Ok(Rotation::Rotated);
        }
        let existed = member_session::Entity::delete_many()
            .filter(member_session::Column::Sid.eq(sid))
            .exec(&self.db)
            .await?;
        Ok(if existed.rows_affected == 1 {
            Rotation::Reused
        } else {
            Rotation::Unknown
        })
    }

    async fn is_active(&self, member_id: i64, sid: &str) -> anyhow::Result<bool> {
        use sea_orm::EntityTrait;
        let row = member_session::Entity::find_by_id(sid.to_owned())
            .one(&self.db)
            .await?;
        Ok(row.is_some_and(|s| s.member_id == member_id && s.expires_at > crate::db::now_utc()))
    }

    async fn revoke(&self, sid: &str) -> anyhow::Result<()> {
        use sea_orm::EntityTrait;
        member_session::Entity::delete_by_id(sid.to_owned())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn revoke_member(&self, member_id: i64) -> anyhow::Result<()> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        member_session::Entity::delete_many()
            .filter(member_session::Column::MemberId.eq(member_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
