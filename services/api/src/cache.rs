//! The calendar cache: group calendars keyed by everything that changes the answer (group,
//! window, and the group's calendar version), computed once per key however many readers miss
//! together, invalidated after commit by bumping the group's version.
//!
//! Bumping a version instead of deleting keys means a computation that raced a booking stores its
//! result under the old version, where no reader will look again; entries age out by TTL.
//! Redis when configured (shared by replicas), in-process otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use fred::prelude::*;
use tokio::sync::OnceCell;

use crate::calendar::RoomView;

type Rooms = Arc<Vec<RoomView>>;

const MEMORY_MAX_ENTRIES: usize = 20_000;

pub struct CalendarCache {
    store: Store,
    ttl: Duration,
    inflight: Mutex<HashMap<String, Arc<OnceCell<Rooms>>>>,
    /// With Redis, a copy of recent entries in this process: a hit skips the Redis read and the
    /// JSON parse. Safe because keys carry the group version, which is always read from Redis.
    near: Mutex<Entries>,
    /// How many times a calendar was computed from the database, and served from the cache.
    computations: prometheus::IntCounter,
    hits: prometheus::IntCounter,
}

enum Store {
    Memory(Mutex<MemoryStore>),
    Redis { client: Client, prefix: String },
}

#[derive(Default)]
struct MemoryStore {
    versions: HashMap<i64, u64>,
    entries: Entries,
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
    pub fn in_memory(ttl: Duration, metrics: &crate::metrics::Metrics) -> Self {
        Self::with_store(Store::Memory(Mutex::default()), ttl, metrics)
    }

    pub fn redis(
        client: Client,
        prefix: &str,
        ttl: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        Self::with_store(
            Store::Redis {
                client,
                prefix: prefix.to_owned(),
            },
            ttl,
            metrics,
        )
    }

    fn with_store(store: Store, ttl: Duration, metrics: &crate::metrics::Metrics) -> Self {
        Self {
            store,
            ttl,
            inflight: Mutex::default(),
            near: Mutex::default(),
            computations: metrics.calendar_computations.clone(),
            hits: metrics.calendar_hits.clone(),
        }
    }

    async fn version(&self, group_id: i64) -> anyhow::Result<u64> {
        match &self.store {
            Store::Memory(m) => Ok(m
                .lock()
                .expect("cache poisoned")
                .versions
                .get(&group_id)
                .copied()
                .unwrap_or(0)),
            Store::Redis { client, prefix } => {
                let v: Option<u64> = client.get(format!("{prefix}calver:{group_id}")).await?;
                Ok(v.unwrap_or(0))
            }
        }
    }

    fn key(&self, group_id: i64, version: u64, from: NaiveDateTime, to: NaiveDateTime) -> String {
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

    async fn load(&self, key: &str) -> anyhow::Result<Option<Rooms>> {
        match &self.store {
            Store::Memory(m) => Ok(m.lock().expect("cache poisoned").entries.get(key)),
            Store::Redis { client, .. } => {
                if let Some(hit) = self.near.lock().expect("cache poisoned").get(key) {
                    return Ok(Some(hit));
                }
                let raw: Option<String> = client.get(key).await?;
                let Some(json) = raw else { return Ok(None) };
                let rooms: Rooms = Arc::new(serde_json::from_str(&json)?);
                self.near
                    .lock()
                    .expect("cache poisoned")
                    .put(key, &rooms, self.ttl);
                Ok(Some(rooms))
            }
        }
    }

    async fn save(&self, key: &str, rooms: &Rooms) -> anyhow::Result<()> {
        match &self.store {
            Store::Memory(m) => m
                .lock()
                .expect("cache poisoned")
                .entries
                .put(key, rooms, self.ttl),
            Store::Redis { client, .. } => {
                self.near
                    .lock()
                    .expect("cache poisoned")
                    .put(key, rooms, self.ttl);
                let json = serde_json::to_string(rooms.as_ref())?;
                let _: () = client
                    .set(
                        key,
                        json,
                        Some(Expiration::EX(self.ttl.as_secs().max(1) as i64)),
                        None,
                        false,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// The calendar of `group_id` in `[from, to]`: from the cache, or computed once by `compute`
    /// while concurrent readers of the same key wait for that one result.
    pub async fn get_or_compute<F, Fut>(
        &self,
        group_id: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        compute: F,
    ) -> anyhow::Result<Rooms>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Vec<RoomView>>>,
    {
        // The version is read before the database, so a result can never be newer than its key.
        let version = self.version(group_id).await?;
        let key = self.key(group_id, version, from, to);
        if let Some(hit) = self.load(&key).await? {
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
        let result = cell
            .get_or_try_init(|| async {
                // A waiter that lost the race to an earlier leader finds its stored result here.
                if let Some(hit) = self.load(&key).await? {
                    return Ok::<Rooms, anyhow::Error>(hit);
                }
                self.computations.inc();
                let rooms = Arc::new(compute().await?);
                if let Err(e) = self.save(&key, &rooms).await {
                    tracing::warn!(error = %e, "calendar cache write failed");
                }
                Ok(rooms)
            })
            .await
            .cloned();
        self.inflight
            .lock()
            .expect("inflight poisoned")
            .remove(&key);
        result
    }

    /// Stores a freshly computed calendar (the warm-up job) under the group's current version.
    pub async fn put(
        &self,
        group_id: i64,
        from: NaiveDateTime,
        to: NaiveDateTime,
        rooms: Vec<RoomView>,
    ) -> anyhow::Result<()> {
        let version = self.version(group_id).await?;
        self.save(&self.key(group_id, version, from, to), &Arc::new(rooms))
            .await
    }

    /// Invalidates every cached window of the groups. Call after the change has committed.
    pub async fn invalidate(&self, group_ids: &[i64]) -> anyhow::Result<()> {
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().expect("cache poisoned");
                for g in group_ids {
                    *m.versions.entry(*g).or_insert(0) += 1;
                }
            }
            Store::Redis { client, prefix } => {
                for g in group_ids {
                    let _: u64 = client.incr(format!("{prefix}calver:{g}")).await?;
                }
            }
        }
        Ok(())
    }
}
