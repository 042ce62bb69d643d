//! Login sessions ("refresh token families").
//!
//! A login opens a session `sid` that remembers the `jti` of the one refresh token that may be used
//! next. Rotation swaps it atomically; presenting an older refresh token of the family means it was
//! stolen or replayed, so the whole session is revoked. Access tokens carry the `sid` and die with
//! it, which is how logout and withdrawal take effect at once. Redis when configured (shared by
//! every replica), in-process otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fred::prelude::*;

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
    Memory(MemorySessions),
    Redis(RedisSessions),
}

impl SessionStore {
    pub fn in_memory() -> Self {
        Self::Memory(MemorySessions::default())
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
            Self::Memory(m) => {
                m.open(member_id, sid, jti, ttl_secs);
                Ok(())
            }
            Self::Redis(r) => r.open(member_id, sid, jti, ttl_secs).await,
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
            Self::Memory(m) => Ok(m.rotate(member_id, sid, presented_jti, new_jti, ttl_secs)),
            Self::Redis(r) => {
                r.rotate(member_id, sid, presented_jti, new_jti, ttl_secs)
                    .await
            }
        }
    }

    pub async fn is_active(&self, member_id: i64, sid: &str) -> anyhow::Result<bool> {
        match self {
            Self::Memory(m) => Ok(m.is_active(member_id, sid)),
            Self::Redis(r) => r.is_active(member_id, sid).await,
        }
    }

    pub async fn revoke(&self, member_id: i64, sid: &str) -> anyhow::Result<()> {
        match self {
            Self::Memory(m) => {
                m.revoke(sid);
                Ok(())
            }
            Self::Redis(r) => r.revoke(member_id, sid).await,
        }
    }

    pub async fn revoke_member(&self, member_id: i64) -> anyhow::Result<()> {
        match self {
            Self::Memory(m) => {
                m.revoke_member(member_id);
                Ok(())
            }
            Self::Redis(r) => r.revoke_member(member_id).await,
        }
    }
}

struct MemorySession {
    member_id: i64,
    jti: String,
    expires: Instant,
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<String, MemorySession>>,
}

fn ttl(secs: i64) -> Duration {
    Duration::from_secs(secs.max(1) as u64)
}

impl MemorySessions {
    fn open(&self, member_id: i64, sid: &str, jti: &str, ttl_secs: i64) {
        let mut map = self.sessions.lock().expect("session map poisoned");
        // Sweep expired entries now and then so the map cannot grow without bound.
        if map.len() % 1024 == 1023 {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
        }
        map.insert(
            sid.to_owned(),
            MemorySession {
                member_id,
                jti: jti.to_owned(),
                expires: Instant::now() + ttl(ttl_secs),
            },
        );
    }

    fn rotate(
        &self,
        member_id: i64,
        sid: &str,
        presented: &str,
        new_jti: &str,
        ttl_secs: i64,
    ) -> Rotation {
        let mut map = self.sessions.lock().expect("session map poisoned");
        let Some(s) = map.get_mut(sid) else {
            return Rotation::Unknown;
        };
        if s.expires <= Instant::now() || s.member_id != member_id {
            map.remove(sid);
            return Rotation::Unknown;
        }
        if s.jti == presented {
            s.jti = new_jti.to_owned();
            s.expires = Instant::now() + ttl(ttl_secs);
            Rotation::Rotated
        } else {
            map.remove(sid);
            Rotation::Reused
        }
    }

    fn is_active(&self, member_id: i64, sid: &str) -> bool {
        let map = self.sessions.lock().expect("session map poisoned");
        map.get(sid)
            .is_some_and(|s| s.member_id == member_id && s.expires > Instant::now())
    }

    fn revoke(&self, sid: &str) {
        self.sessions
            .lock()
            .expect("session map poisoned")
            .remove(sid);
    }

    fn revoke_member(&self, member_id: i64) {
        self.sessions
            .lock()
            .expect("session map poisoned")
            .retain(|_, s| s.member_id != member_id);
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
