//! Login sessions ("refresh token families") and the in-process view that authenticates requests
//! without a database round trip.
//!
//! A login opens a session `sid` that remembers the `jti` of the one refresh token that may be used
//! next. Rotation swaps it atomically; presenting an older refresh token of the family means it was
//! stolen or replayed, so the whole session is revoked. Access tokens carry the `sid` and die with
//! it. Sessions live in the database (they survive a Redis restart and are shared by replicas).
//!
//! The hot path reads a [`LiveView`]: sessions this process has seen live, with their member row.
//! Every change that must end or alter what it honours (logout, refresh-token reuse, withdrawal,
//! an edit of the member) bumps the `auth_epoch` row in its own transaction and is then applied
//! here and, through the replica bus, on every other replica. A background task reads the epoch
//! every `auth.session_sync_millis`; when it differs from what this process applied (a message was
//! missed: Redis restarted, reconnected or stalled) the whole view is dropped. A view that could
//! not be synchronised for `auth.session_max_staleness_millis` is not trusted at all: requests go
//! to the database until a sync succeeds. So a revocation ends access on every replica within
//! the staleness bound (1 s by default), and usually at pub/sub speed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::NaiveDateTime;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Statement, TransactionTrait,
};

use crate::db::entities::{member, member_session};
use crate::freshness::SyncClock;

/// Why a session operation failed (mapped to the HTTP error at the boundary).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The `auth_epoch` row the migrations seed is missing: the schema is broken.
    #[error("the auth_epoch row is missing")]
    NoEpoch,
    #[error(transparent)]
    Store(#[from] DbErr),
}

impl From<sea_orm::TransactionError<SessionError>> for SessionError {
    fn from(e: sea_orm::TransactionError<SessionError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; the new one is now current.
    Rotated,
    /// An already rotated token was presented: the session is revoked (at this epoch).
    Reused { epoch: i64 },
    /// No such session (expired, logged out, revoked).
    Unknown,
}

/// A committed change the session views of all replicas must apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The session ended (logout, refresh-token reuse).
    Session { sid: String },
    /// The member's sessions ended (withdrawal) or their row changed (an edit): cached entries go.
    Member { member_id: i64 },
}

/// Entries beyond which the view starts over (it refills from the database on demand).
const MAX_LIVE: usize = 200_000;
const MAX_DEAD: usize = 50_000;

struct Live {
    member: Arc<member::Model>,
    expires_at: NaiveDateTime,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Live>,
    /// Sessions known to be over (absent, expired, or of a withdrawn member): never live again,
    /// since sids are random and inserted before their first token exists.
    dead: HashSet<String>,
    /// The auth epoch every change up to which is applied here.
    applied: i64,
    /// Bumped by every applied change: a load that began before one does not store its result.
    generation: u64,
}

/// This process's view of live sessions.
pub struct LiveView {
    inner: RwLock<Inner>,
    /// When it last caught up with the database.
    clock: SyncClock,
}

impl LiveView {
    fn new(max_staleness: Duration) -> Self {
        Self {
            inner: RwLock::default(),
            clock: SyncClock::new(max_staleness),
        }
    }

    /// True when a sync succeeded within the staleness bound.
    pub fn is_fresh(&self) -> bool {
        self.clock.is_fresh()
    }

    fn generation(&self) -> u64 {
        self.inner.read().expect("view poisoned").generation
    }

    /// Applies a committed change at `epoch`.
    pub fn apply(&self, change: &Change, epoch: i64) {
        let mut inner = self.inner.write().expect("view poisoned");
        match change {
            Change::Session { sid } => {
                inner.live.remove(sid);
            }
            Change::Member { member_id } => inner.live.retain(|_, s| s.member.id != *member_id),
        }
        if epoch == inner.applied + 1 {
            inner.applied = epoch;
        }
        inner.generation += 1;
    }

    /// Records a sync against the database's epoch: a difference means changes were missed.
    fn synced(&self, epoch: i64) {
        {
            let inner = self.inner.read().expect("view poisoned");
            if inner.applied == epoch {
                drop(inner);
                self.clock.synced_at(self.clock.now_ms());
                return;
            }
        }
        let mut inner = self.inner.write().expect("view poisoned");
        if inner.applied != epoch {
            if inner.applied != 0 || !inner.live.is_empty() {
                tracing::info!(
                    applied = inner.applied,
                    epoch,
                    "session view behind the database: dropped"
                );
            }
            inner.live.clear();
            inner.applied = epoch;
            inner.generation += 1;
        }
        drop(inner);
        self.clock.synced_at(self.clock.now_ms());
    }

    fn lookup(&self, sid: &str, member_id: i64, now: NaiveDateTime) -> Lookup {
        let inner = self.inner.read().expect("view poisoned");
        if let Some(s) = inner.live.get(sid) {
            if s.member.id == member_id && s.expires_at > now {
                return Lookup::Live(s.member.clone());
            }
            // Expired here: the row may have been extended by a rotation; ask the database.
            return Lookup::Unknown;
        }
        if inner.dead.contains(sid) {
            return Lookup::Dead;
        }
        Lookup::Unknown
    }

    fn store(&self, generation: u64, sid: &str, found: Option<Live>) {
        let mut inner = self.inner.write().expect("view poisoned");
        if inner.generation != generation {
            return;
        }
        match found {
            Some(live) => {
                if inner.live.len() >= MAX_LIVE {
                    inner.live.clear();
                }
                inner.live.insert(sid.to_owned(), live);
            }
            None => {
                if inner.dead.len() >= MAX_DEAD {
                    inner.dead.clear();
                }
                inner.dead.insert(sid.to_owned());
            }
        }
    }
}

enum Lookup {
    Live(Arc<member::Model>),
    Dead,
    Unknown,
}

pub struct SessionStore {
    write: DatabaseConnection,
    read: DatabaseConnection,
    sync_db: DatabaseConnection,
    view: Arc<LiveView>,
}

/// Bumps the auth epoch inside `txn` and returns its new value.
pub async fn bump_epoch<C: ConnectionTrait>(txn: &C) -> Result<i64, SessionError> {
    txn.execute_unprepared("UPDATE auth_epoch SET epoch = epoch + 1 WHERE id = 1")
        .await?;
    read_epoch(txn).await
}

async fn read_epoch<C: ConnectionTrait>(db: &C) -> Result<i64, SessionError> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT epoch FROM auth_epoch WHERE id = 1",
        ))
        .await?
        .ok_or(SessionError::NoEpoch)?;
    Ok(row.try_get::<i64>("", "epoch")?)
}

/// Ends every session of `member_id` inside `txn` (withdrawal); returns the epoch to apply.
pub async fn revoke_member_in<C: ConnectionTrait>(
    txn: &C,
    member_id: i64,
) -> Result<i64, SessionError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    member_session::Entity::delete_many()
        .filter(member_session::Column::MemberId.eq(member_id))
        .exec(txn)
        .await?;
    bump_epoch(txn).await
}

fn expiry(ttl_secs: i64) -> NaiveDateTime {
    crate::db::now_utc() + chrono::Duration::seconds(ttl_secs.max(1))
}

impl SessionStore {
    /// `write` takes session changes, `read` serves view misses, `sync_db` the epoch sync.
    pub fn new(
        write: DatabaseConnection,
        read: DatabaseConnection,
        sync_db: DatabaseConnection,
        max_staleness: Duration,
    ) -> Self {
        Self {
            write,
            read,
            sync_db,
            view: Arc::new(LiveView::new(max_staleness)),
        }
    }

    pub fn view(&self) -> &Arc<LiveView> {
        &self.view
    }

    pub async fn open(
        &self,
        member_id: i64,
        sid: &str,
        jti: &str,
        ttl_secs: i64,
    ) -> Result<(), SessionError> {
        use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, Set};
        // Expired sessions of this member go now, so the table stays the size of live sessions.
        member_session::Entity::delete_many()
            .filter(member_session::Column::MemberId.eq(member_id))
            .filter(member_session::Column::ExpiresAt.lt(crate::db::now_utc()))
            .exec(&self.write)
            .await?;
        member_session::ActiveModel {
            sid: Set(sid.to_owned()),
            member_id: Set(member_id),
            jti: Set(jti.to_owned()),
            expires_at: Set(expiry(ttl_secs)),
        }
        .insert(&self.write)
        .await?;
        Ok(())
    }

    pub async fn rotate(
        &self,
        member_id: i64,
        sid: &str,
        presented: &str,
        new_jti: &str,
        ttl_secs: i64,
    ) -> Result<Rotation, SessionError> {
        use sea_orm::{sea_query::Expr, ColumnTrait, QueryFilter};
        // Compare-and-swap in one statement: only the holder of the current jti wins.
        let swapped = member_session::Entity::update_many()
            .col_expr(member_session::Column::Jti, Expr::value(new_jti))
            .col_expr(
                member_session::Column::ExpiresAt,
                Expr::value(expiry(ttl_secs)),
            )
            .filter(member_session::Column::Sid.eq(sid))
            .filter(member_session::Column::MemberId.eq(member_id))
            .filter(member_session::Column::Jti.eq(presented))
            .filter(member_session::Column::ExpiresAt.gt(crate::db::now_utc()))
            .exec(&self.write)
            .await?;
        if swapped.rows_affected == 1 {
            return Ok(Rotation::Rotated);
        }
        Ok(match self.revoke(sid).await? {
            Some(epoch) => Rotation::Reused { epoch },
            None => Rotation::Unknown,
        })
    }

    /// Ends one session (logout, reuse). Applied to this process's view before it returns; the
    /// caller announces it to the other replicas with the returned epoch. None when there was no
    /// such session.
    pub async fn revoke(&self, sid: &str) -> Result<Option<i64>, SessionError> {
        let sid_owned = sid.to_owned();
        let epoch = self
            .write
            .transaction::<_, Option<i64>, SessionError>(|txn| {
                Box::pin(async move {
                    let gone = member_session::Entity::delete_by_id(sid_owned)
                        .exec(txn)
                        .await?;
                    if gone.rows_affected == 0 {
                        return Ok(None);
                    }
                    Ok(Some(bump_epoch(txn).await?))
                })
            })
            .await?;
        if let Some(epoch) = epoch {
            self.view.apply(
                &Change::Session {
                    sid: sid.to_owned(),
                },
                epoch,
            );
        }
        Ok(epoch)
    }

    /// The member behind a live session `sid` of `member_id`, or None (logged out, revoked,
    /// expired, withdrawn). From the view when it is fresh; else from the database (read pool).
    pub async fn live_member(
        &self,
        member_id: i64,
        sid: &str,
    ) -> Result<Option<Arc<member::Model>>, SessionError> {
        let now = crate::db::now_utc();
        let fresh = self.view.is_fresh();
        if fresh {
            match self.view.lookup(sid, member_id, now) {
                Lookup::Live(member) => return Ok(Some(member)),
                Lookup::Dead => return Ok(None),
                Lookup::Unknown => {}
            }
        }
        let generation = self.view.generation();
        let session = member_session::Entity::find_by_id(sid.to_owned())
            .one(&self.read)
            .await?;
        let Some(session) = session.filter(|s| s.member_id == member_id) else {
            // Absent for this member: if the sid exists for another member the token is forged
            // or broken, and not caching keeps that member's lookups exact.
            return Ok(None);
        };
        let member = member::Entity::find_by_id(member_id)
            .one(&self.read)
            .await?
            .filter(member::Model::is_regular);
        let found = match member {
            Some(m) if session.expires_at > now => Some(Live {
                member: Arc::new(m),
                expires_at: session.expires_at,
            }),
            _ => None,
        };
        let answer = found.as_ref().map(|l| l.member.clone());
        if fresh {
            self.view.store(generation, sid, found);
        }
        Ok(answer)
    }

    /// Compares the view with the database's epoch once.
    pub async fn sync(&self) -> Result<(), SessionError> {
        sync_view(&self.view, &self.sync_db).await
    }

    /// Keeps the view synchronised every `every`, until aborted.
    pub fn spawn_sync(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let (view, read) = (self.view.clone(), self.sync_db.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = sync_view(&view, &read).await {
                    tracing::warn!(error = %e, "session view sync failed");
                }
            }
        })
    }
}

async fn sync_view(view: &LiveView, db: &DatabaseConnection) -> Result<(), SessionError> {
    let epoch = read_epoch(db).await?;
    view.synced(epoch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: i64) -> Live {
        let now = crate::db::now_utc();
        Live {
            member: Arc::new(member::Model {
                id,
                name: "m".into(),
                profile: None,
                email: None,
                provider: "dev".into(),
                provider_user_id: None,
                status: member::STATUS_REGULAR.into(),
                time_zone: None,
                day_boundary_minutes: None,
                created_at: now,
                updated_at: now,
                withdrawn_at: None,
            }),
            expires_at: now + chrono::Duration::hours(1),
        }
    }

    #[test]
    fn a_change_drops_entries_and_a_load_begun_before_it_is_not_stored() {
        let view = LiveView::new(Duration::from_secs(1));
        view.synced(0);
        let now = crate::db::now_utc();
        view.store(view.generation(), "a", Some(live(1)));
        view.store(view.generation(), "b", Some(live(2)));
        assert!(matches!(view.lookup("a", 1, now), Lookup::Live(_)));
        assert!(matches!(view.lookup("a", 2, now), Lookup::Unknown));

        let before = view.generation();
        view.apply(&Change::Session { sid: "a".into() }, 1);
        assert!(matches!(view.lookup("a", 1, now), Lookup::Unknown));
        // A load that read the row before the revocation committed must not bring it back.
        view.store(before, "a", Some(live(1)));
        assert!(matches!(view.lookup("a", 1, now), Lookup::Unknown));

        view.apply(&Change::Member { member_id: 2 }, 2);
        assert!(matches!(view.lookup("b", 2, now), Lookup::Unknown));
    }

    #[test]
    fn a_missed_change_drops_the_whole_view_at_the_next_sync() {
        let view = LiveView::new(Duration::from_secs(1));
        view.synced(0);
        let now = crate::db::now_utc();
        view.store(view.generation(), "a", Some(live(1)));
        // Epoch 1 was applied elsewhere and its message never arrived; epoch 2 arrives.
        view.apply(&Change::Session { sid: "x".into() }, 2);
        assert!(matches!(view.lookup("a", 1, now), Lookup::Live(_)));
        view.synced(2);
        assert!(matches!(view.lookup("a", 1, now), Lookup::Unknown));
    }

    #[test]
    fn a_view_never_synced_is_not_fresh() {
        let view = LiveView::new(Duration::from_millis(50));
        assert!(!view.is_fresh());
        view.synced(0);
        assert!(view.is_fresh());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!view.is_fresh());
    }
}
