//! The calendar cache: group calendars keyed by everything that changes the answer (group,
//! window, and the group's calendar version), computed once per key however many readers miss
//! together.
//!
//! The version is a column of the group, bumped in the same transaction as every change to its
//! rooms or members (`bump_versions`). A read takes it, with the reader's membership, from the
//! in-process group view (`group_view`: no SQL) or, on a miss or while the view is not fresh, from
//! the database in one statement (`access`). The view forgets a group when a change commits (here
//! at once, on other replicas by the replica bus) and compares itself with the database every
//! sync, so no Redis loss (restarted empty, unreachable, a replica that died right after its
//! commit) can make an old entry current for longer than the staleness bound: versions never go
//! back, and a commit is never without its bump. A computation that raced a booking stores its
//! result under the old version, where no reader will look again; entries age out by TTL. Redis
//! when configured (shared by replicas; reads bypass it while it is down), in-process otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use fred::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use tokio::sync::OnceCell;

use crate::calendar::RoomView;
use crate::calendar_body::CalendarEntry;
use crate::group_view::GroupView;
use crate::redis_link::RedisLink;

type Rooms = Arc<CalendarEntry>;

/// Who may read a group's calendar, and its version: one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Member { version: i64 },
    NotMember,
    NoGroup,
}

/// The cache's counters (registered by the caller).
#[derive(Clone)]
pub struct CacheCounters {
    /// Calendars computed from the database.
    pub computations: prometheus::IntCounter,
    /// Calendars served from the cache.
    pub hits: prometheus::IntCounter,
}

const MEMORY_MAX_ENTRIES: usize = 20_000;

pub struct CalendarCache {
    db: DatabaseConnection,
    /// Membership and versions known in process (a hit runs no SQL).
    view: Arc<GroupView>,
    store: Store,
    ttl: Duration,
    inflight: Mutex<HashMap<String, Arc<OnceCell<Rooms>>>>,
    /// With Redis, a copy of recent entries in this process: a hit skips the Redis read, the
    /// JSON parse and the rendering. Safe because keys carry the group version, which is always
    /// read from the database.
    near: Mutex<Entries>,
    /// How many times a calendar was computed from the database, and served from the cache.
    computations: prometheus::IntCounter,
    hits: prometheus::IntCounter,
}

enum Store {
    Memory(Mutex<Entries>),
    Redis {
        link: Arc<RedisLink>,
        prefix: String,
    },
}

/// Bumps the calendar version of the groups. Call inside the transaction that changes their rooms.
pub async fn bump_versions<C: ConnectionTrait>(db: &C, group_ids: &[i64]) -> Result<(), DbErr> {
    if group_ids.is_empty() {
        return Ok(());
    }
    let ids = group_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    db.execute_unprepared(&format!(
        "UPDATE study_groups SET calendar_version = calendar_version + 1 WHERE id IN ({ids})"
    ))
    .await?;
    Ok(())
}

/// Entries with an expiry, bounded in number.
#[derive(Default)]
struct Entries(HashMap<String, (Instant, Rooms)>);

impl Entries {
    fn get(&self, key: &str) -> Option<Rooms> {
        self.0
            .get(key)
            .filter(|(exp, _)| *exp > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: &str, rooms: &Rooms, ttl: Duration) {
        if self.0.len() >= MEMORY_MAX_ENTRIES {
            let now = Instant::now();
            self.0.retain(|_, (exp, _)| *exp > now);
            if self.0.len() >= MEMORY_MAX_ENTRIES {
                self.0.clear();
            }
        }
        self.0
            .insert(key.to_owned(), (Instant::now() + ttl, rooms.clone()));
    }
}

impl CalendarCache {
    pub fn in_memory(
        db: DatabaseConnection,
        view: Arc<GroupView>,
        ttl: Duration,
        metrics: CacheCounters,
    ) -> Self {
        Self::with_store(db, view, Store::Memory(Mutex::default()), ttl, metrics)
    }

    pub fn redis(
        db: DatabaseConnection,
        view: Arc<GroupView>,
        link: Arc<RedisLink>,
        prefix: &str,
        ttl: Duration,
        metrics: CacheCounters,
    ) -> Self {
        Self::with_store(
            db,
            view,
            Store::Redis {
                link,
                prefix: prefix.to_owned(),
            },
            ttl,
            metrics,
        )
    }

    fn with_store(
        db: DatabaseConnection,
        view: Arc<GroupView>,
        store: Store,
        ttl: Duration,
        metrics: CacheCounters,
    ) -> Self {
        Self {
            db,
            view,
            store,
            ttl,
            inflight: Mutex::default(),
            near: Mutex::default(),
            computations: metrics.computations,
            hits: metrics.hits,
        }
    }

    async fn version(&self, group_id: i64) -> Result<i64, DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(
                backend,
                "SELECT calendar_version AS v FROM study_groups WHERE id = ?",
                [group_id.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64>("", "v")?,
            None => -1,
        })
    }

    /// The in-process view of memberships and versions.
    pub fn view(&self) -> &Arc<GroupView> {
        &self.view
    }

    /// Whether `member_id` may read the calendar of `group_id`, and its current version: from the
    /// group view when it knows the member (no SQL), else in one statement on the read pool
    /// (refusals are never kept, so a join is seen at once).
    pub async fn access(&self, group_id: i64, member_id: i64) -> Result<Access, DbErr> {
        if let Some(version) = self.view.member_version(group_id, member_id) {
            return Ok(Access::Member { version });
        }
        let generation = self.view.generation();
        let access = self.access_in_db(group_id, member_id).await?;
        if let Access::Member { version } = access {
            self.view.store(generation, group_id, member_id, version);
        }
        Ok(access)
    }

    async fn access_in_db(&self, group_id: i64, member_id: i64) -> Result<Access, DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(Statement::from_sql_and_values(
                backend,
                "SELECT g.calendar_version AS v, COUNT(m.id) AS n FROM study_groups g \
                 LEFT JOIN memberships m ON m.group_id = g.id AND m.member_id = ? \
                 WHERE g.id = ? GROUP BY g.id, g.calendar_version",
                [member_id.into(), group_id.into()],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(Access::NoGroup);
        };
        Ok(if row.try_get::<i64>("", "n")? > 0 {
            Access::Member {
                version: row.try_get::<i64>("", "v")?,
            }
        } else {
            Access::NotMember
        })
    }

    fn key(&self, group_id: i64, version: i64, from: NaiveDateTime, to: NaiveDateTime) -> String {
        let prefix = match &self.store {
            Store::Memory(_) => "",
            Store::Redis { prefix, .. } => prefix.as_str(),
        };
        format!(
            "{prefix}cal:{group_id}:{version}:{}:{}",
            from.and_utc().timestamp_millis(),
            to.and_utc().timestamp_millis()
        )
    }

    /// A cached entry, if any. Redis failures are misses (the caller computes from the database).
    async fn load(&self, key: &str) -> Option<Rooms> {
        match &self.store {
            Store::Memory(m) => m.lock().expect("cache poisoned").get(key),
            Store::Redis { link, .. } => {
                if let Some(hit) = self.near.lock().expect("cache poisoned").get(key) {
                    return Some(hit);
                }
                let raw: Option<String> = match link.run(|c| async move { c.get(key).await }).await
                {
                    Ok(raw) => raw,
                    Err(e) => {
                        tracing::debug!(error = %e, "calendar cache read skipped");
                        return None;
                    }
                };
                let rooms: Rooms = Arc::new(CalendarEntry::new(serde_json::from_str(&raw?).ok()?));
                self.near
                    .lock()
                    .expect("cache poisoned")
                    .put(key, &rooms, self.ttl);
                Some(rooms)
            }
        }
    }

    async fn save(&self, key: &str, rooms: &Rooms) {
        match &self.store {
            Store::Memory(m) => m.lock().expect("cache poisoned").put(key, rooms, self.ttl),
            Store::Redis { link, .. } => {
                self.near
                    .lock()
                    .expect("cache poisoned")
                    .put(key, rooms, self.ttl);
                let json = match serde_json::to_string(&rooms.rooms) {
                    Ok(j) => j,
                    Err(e) => return tracing::warn!(error = %e, "calendar not serialisable"),
                };
                let ttl = self.ttl.as_secs().max(1) as i64;
                let written = link
                    .run(|c| async move {
                        c.set::<(), _, _>(key, json, Some(Expiration::EX(ttl)), None, false)
                            .await
                    })
                    .await;
                if let Err(e) = written {
                    tracing::debug!(error = %e, "calendar cache write skipped");
                }
            }
        }
    }

    /// The calendar of `group_id` at `version` (from `access`, read before any computation, so
    /// a result can never be newer than its key) in `[from, to]`: from the cache, or computed
    /// once by `compute` while concurrent readers of the same key wait for that one result.
    pub async fn get_or_compute<F, Fut>(
        &self,
        group_id: i64,
        version: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        compute: F,
    ) -> anyhow::Result<Rooms>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Vec<RoomView>>>,
    {
        let key = self.key(group_id, version, from, to);
        if let Some(hit) = self.load(&key).await {
            self.hits.inc();
            return Ok(hit);
        }
        let cell = self
            .inflight
            .lock()
            .expect("inflight poisoned")
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let computed = std::sync::atomic::AtomicBool::new(false);
        let result = cell
            .get_or_try_init(|| async {
                // A waiter that lost the race to an earlier leader finds its stored result here.
                if let Some(hit) = self.load(&key).await {
                    return Ok::<Rooms, anyhow::Error>(hit);
                }
                computed.store(true, std::sync::atomic::Ordering::Relaxed);
                self.computations.inc();
                let rooms = Arc::new(CalendarEntry::new(compute().await?));
                self.save(&key, &rooms).await;
                Ok(rooms)
            })
            .await
            .cloned();
        // Readers that waited for another's computation were served by the cache too.
        if result.is_ok() && !computed.load(std::sync::atomic::Ordering::Relaxed) {
            self.hits.inc();
        }
        self.inflight
            .lock()
            .expect("inflight poisoned")
            .remove(&key);
        result
    }

    /// Stores a freshly computed calendar (the warm-up job) under the group's current version.
    /// Read the version before computing, so the entry can never be newer than its key.
    pub async fn put(
        &self,
        group_id: i64,
        version: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        rooms: Vec<RoomView>,
    ) {
        self.save(
            &self.key(group_id, version, from, to),
            &Arc::new(CalendarEntry::new(rooms)),
        )
        .await
    }

    /// The group's current calendar version (read it before computing an entry to `put`).
    pub async fn current_version(&self, group_id: i64) -> Result<i64, DbErr> {
        self.version(group_id).await
    }
}

/// Why a group calendar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("no group {0}")]
    NoGroup(i64),
    #[error("not a member")]
    NotMember,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<DbErr> for CalendarError {
    fn from(e: DbErr) -> Self {
        CalendarError::Store(e.into())
    }
}

/// What a group calendar read needs: the cache, the read pool, and the grid and zone it renders in.
pub struct CalendarReader<'a> {
    pub cache: &'a CalendarCache,
    pub read: &'a DatabaseConnection,
    pub zone: chrono_tz::Tz,
    pub grid: &'a ppodok_domain::schedule::SlotGrid,
}

impl CalendarReader<'_> {
    /// The response body of `member_id`'s read of the calendar of `group_id` in `[from, to]` at
    /// `now`: no SQL when the group view knows the member and the entry is cached (else one
    /// statement: membership and version), and a copy.
    pub async fn group_body(
        &self,
        group_id: i64,
        member_id: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<bytes::Bytes, CalendarError> {
        let version = match self.cache.access(group_id, member_id).await? {
            Access::Member { version } => version,
            Access::NotMember => return Err(CalendarError::NotMember),
            Access::NoGroup => return Err(CalendarError::NoGroup(group_id)),
        };
        let db = self.read.clone();
        let entry = self
            .cache
            .get_or_compute(group_id, version, from, to, || async move {
                Ok(crate::calendar::group_rooms(&db, &[group_id], from, to).await?)
            })
            .await?;
        Ok(entry.body(self.zone, self.grid, now))
    }
}
