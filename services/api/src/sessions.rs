//! Login sessions ("refresh token families").
//!
//! A login opens a session `sid` that remembers the `jti` of the one refresh token that may be used
//! next. Rotation swaps it atomically; presenting an older refresh token of the family means it was
//! stolen or replayed, so the whole session is revoked. Access tokens carry the `sid` and die with
//! it, which is how logout and withdrawal take effect at once. Redis when configured (shared by
//! every replica), the database otherwise (sessions survive restarts and are shared too).

use fred::prelude::*;

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

pub enum SessionStore {
    Redis(RedisSessions),
    Database(DatabaseSessions),
}

impl SessionStore {
    pub fn database(db: sea_orm::DatabaseConnection) -> Self {
        Self::Database(DatabaseSessions { db })
    }

    pub fn redis(client: Client, key_prefix: &str) -> Self {
        Self::Redis(RedisSessions {
            client,
            prefix: key_prefix.to_owned(),
        })
    }

    pub async fn open(
        &self,
        member_id: i64,
        sid: &str,
        jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<()> {
        match self {
            Self::Redis(r) => r.open(member_id, sid, jti, ttl_secs).await,
            Self::Database(d) => d.open(member_id, sid, jti, ttl_secs).await,
        }
    }

    pub async fn rotate(
        &self,
        member_id: i64,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<Rotation> {
        match self {
            Self::Redis(r) => {
                r.rotate(member_id, sid, presented_jti, new_jti, ttl_secs)
                    .await
            }
            Self::Database(d) => {
                d.rotate(member_id, sid, presented_jti, new_jti, ttl_secs)
                    .await
            }
        }
    }

    pub async fn is_active(&self, member_id: i64, sid: &str) -> anyhow::Result<bool> {
        match self {
            Self::Redis(r) => r.is_active(member_id, sid).await,
            Self::Database(d) => d.is_active(member_id, sid).await,
        }
    }

    pub async fn revoke(&self, member_id: i64, sid: &str) -> anyhow::Result<()> {
        match self {
            Self::Redis(r) => r.revoke(member_id, sid).await,
            Self::Database(d) => d.revoke(sid).await,
        }
    }

    pub async fn revoke_member(&self, member_id: i64) -> anyhow::Result<()> {
        match self {
            Self::Redis(r) => r.revoke_member(member_id).await,
            Self::Database(d) => d.revoke_member(member_id).await,
        }
    }
}

pub struct RedisSessions {
    client: Client,
    prefix: String,
}

/// Compare-and-swap of the current refresh `jti`; a mismatch revokes the session.
/// Returns 1 rotated, 2 reused (revoked), 0 unknown.
const ROTATE_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[4])
return 2
"#;

impl RedisSessions {
    fn session_key(&self, sid: &str) -> String {
        format!("{}session:{sid}", self.prefix)
    }

    fn member_key(&self, member_id: i64) -> String {
        format!("{}member-sessions:{member_id}", self.prefix)
    }

    /// Value stored per session: the member binds the session, the jti is the current token.
    fn value(member_id: i64, jti: &str) -> String {
        format!("{member_id}:{jti}")
    }

    async fn open(
        &self,
        member_id: i64,
        sid: &str,
        jti: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<()> {
        let pipe = self.client.pipeline();
        let _: () = pipe
            .set(
                self.session_key(sid),
                Self::value(member_id, jti),
                Some(Expiration::EX(ttl_secs)),
                None,
                false,
            )
            .await?;
        let _: () = pipe.sadd(self.member_key(member_id), sid).await?;
        let _: () = pipe
            .expire(self.member_key(member_id), ttl_secs, None)
            .await?;
        let _: Vec<Value> = pipe.all().await?;
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
        let outcome: i64 = self
            .client
            .eval(
                ROTATE_SCRIPT,
                vec![self.session_key(sid), self.member_key(member_id)],
                vec![
                    Self::value(member_id, presented),
                    Self::value(member_id, new_jti),
                    ttl_secs.to_string(),
                    sid.to_owned(),
                ],
            )
            .await?;
        Ok(match outcome {
            1 => Rotation::Rotated,
            2 => Rotation::Reused,
            _ => Rotation::Unknown,
        })
    }

    async fn is_active(&self, member_id: i64, sid: &str) -> anyhow::Result<bool> {
        let v: Option<String> = self.client.get(self.session_key(sid)).await?;
        Ok(v.is_some_and(|v| v.split(':').next() == Some(member_id.to_string().as_str())))
    }

    async fn revoke(&self, member_id: i64, sid: &str) -> anyhow::Result<()> {
        let _: i64 = self.client.del(self.session_key(sid)).await?;
        let _: i64 = self.client.srem(self.member_key(member_id), sid).await?;
        Ok(())
    }

    async fn revoke_member(&self, member_id: i64) -> anyhow::Result<()> {
        let sids: Vec<String> = self.client.smembers(self.member_key(member_id)).await?;
        let mut keys: Vec<String> = sids.iter().map(|s| self.session_key(s)).collect();
        keys.push(self.member_key(member_id));
        let _: i64 = self.client.del(keys).await?;
        Ok(())
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
