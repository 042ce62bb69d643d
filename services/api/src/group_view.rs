//! The in-process view of what a cached calendar read checks: each group's calendar version and
//! the members known to be in the group at that version. A hit runs no SQL.
//!
//! Every change that alters a calendar or a membership bumps the group's calendar version in its
//! transaction (bookings, cancellations, room expiry, leaving and withdrawing, which also deletes
//! emptied groups). After it commits, the writer drops the group here ([`GroupView::changed`]) and,
//! through the replica bus, on every other replica. Joining needs nothing: only members found in
//! the database are kept, never a refusal. A background task compares the versions of all groups
//! held here with the database every `auth.session_sync_millis` and drops any that differ or are
//! gone (a message was missed: Redis restarted, reconnected or stalled, or replicas without a
//! bus). A view not synchronised for `auth.session_max_staleness_millis` is not trusted: reads
//! go to the database (one statement) until a sync succeeds.
//!
//! So on the replica that made a change it is seen at once; on the others at pub/sub speed, and
//! always within the staleness bound (1 s by default, the same bound as session revocations).
//! `auth.session_max_staleness_millis = 0` turns the view off (every read asks the database).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

use crate::freshness::SyncClock;

/// Groups beyond which the view starts over (it refills from the database on demand).
const MAX_GROUPS: usize = 10_000;
/// Members kept per group (a bigger group's further members are checked in the database).
const MAX_MEMBERS: usize = 5_000;
/// Group ids per sync statement.
const SYNC_CHUNK: usize = 500;

struct Known {
    version: i64,
    members: HashSet<i64>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<i64, Known>,
    /// Bumped by every change and every sync: a load that began before one does not store.
    generation: u64,
}

pub struct GroupView {
    inner: RwLock<Inner>,
    /// When it last caught up with the database.
    clock: SyncClock,
}

impl GroupView {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            inner: RwLock::default(),
            clock: SyncClock::new(max_staleness),
        }
    }

    /// True when a sync began within the staleness bound.
    pub fn is_fresh(&self) -> bool {
        self.clock.is_fresh()
    }

    /// The version of `group_id`'s calendar when `member_id` is known to be in it.
    pub fn member_version(&self, group_id: i64, member_id: i64) -> Option<i64> {
        if !self.is_fresh() {
            return None;
        }
        let inner = self.inner.read().expect("group view poisoned");
        let known = inner.groups.get(&group_id)?;
        known.members.contains(&member_id).then_some(known.version)
    }

    /// The generation to pass to [`GroupView::store`] for a load that begins now.
    pub fn generation(&self) -> u64 {
        self.inner.read().expect("group view poisoned").generation
    }

    /// Records that `member_id` is in `group_id` at `version`, as read from the database by a
    /// load that began at `generation`.
    pub fn store(&self, generation: u64, group_id: i64, member_id: i64, version: i64) {
        let mut inner = self.inner.write().expect("group view poisoned");
        if inner.generation != generation {
            return;
        }
        if inner.groups.len() >= MAX_GROUPS && !inner.groups.contains_key(&group_id) {
            inner.groups.clear();
        }
        let known = inner.groups.entry(group_id).or_insert_with(|| Known {
            version,
            members: HashSet::new(),
        });
        if known.version < version {
            known.version = version;
            known.members.clear();
        }
        if known.version == version && known.members.len() < MAX_MEMBERS {
            known.members.insert(member_id);
        }
    }

    /// The calendars or memberships of `group_ids` changed (committed): forget them.
    pub fn changed(&self, group_ids: &[i64]) {
        let mut inner = self.inner.write().expect("group view poisoned");
        for g in group_ids {
            inner.groups.remove(g);
        }
        inner.generation += 1;
    }

    /// Groups held, for a sync; bumps the generation so loads begun before it do not store.
    fn begin_sync(&self) -> (Vec<i64>, i64) {
        let mut inner = self.inner.write().expect("group view poisoned");
        inner.generation += 1;
        (inner.groups.keys().copied().collect(), self.clock.now_ms())
    }

    /// Drops every group of `checked` whose version differs from `current` (absent = deleted).
    fn end_sync(&self, checked: &[i64], current: &HashMap<i64, i64>, began_ms: i64) {
        let mut inner = self.inner.write().expect("group view poisoned");
        let mut dropped = 0usize;
        for g in checked {
            let stale = match (inner.groups.get(g), current.get(g)) {
                (Some(known), Some(v)) => known.version != *v,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if stale {
                inner.groups.remove(g);
                dropped += 1;
            }
        }
        if dropped > 0 {
            inner.generation += 1;
            tracing::debug!(dropped, "group view: missed changes dropped at sync");
        }
        drop(inner);
        self.clock.synced_at(began_ms);
    }

    /// Compares every group held with the database once.
    pub async fn sync(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let (ids, began_ms) = self.begin_sync();
        let mut current = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(SYNC_CHUNK) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let rows = db
                .query_all(Statement::from_string(
                    db.get_database_backend(),
                    format!(
                        "SELECT id, calendar_version AS v FROM study_groups WHERE id IN ({list})"
                    ),
                ))
                .await?;
            for row in rows {
                current.insert(row.try_get::<i64>("", "id")?, row.try_get::<i64>("", "v")?);
            }
        }
        self.end_sync(&ids, &current, began_ms);
        Ok(())
    }

    /// Keeps the view synchronised every `every` (the first one `every` from now: the caller syncs
    /// once before serving), until aborted.
    pub fn spawn_sync(
        self: &std::sync::Arc<Self>,
        db: DatabaseConnection,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let view = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = view.sync(&db).await {
                    tracing::warn!(error = %e, "group view sync failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(view: &GroupView) {
        let (ids, began) = view.begin_sync();
        let current: HashMap<i64, i64> = {
            let inner = view.inner.read().unwrap();
            ids.iter().map(|g| (*g, inner.groups[g].version)).collect()
        };
        view.end_sync(&ids, &current, began);
    }

    #[test]
    fn members_are_known_per_version_and_a_change_forgets_the_group() {
        let view = GroupView::new(Duration::from_secs(1));
        assert_eq!(
            view.member_version(1, 10),
            None,
            "never synced: not trusted"
        );
        synced(&view);
        view.store(view.generation(), 1, 10, 3);
        view.store(view.generation(), 1, 11, 3);
        assert_eq!(view.member_version(1, 10), Some(3));
        assert_eq!(
            view.member_version(1, 12),
            None,
            "only members found are kept"
        );
        // A newer version replaces the members; an older read does not bring them back.
        view.store(view.generation(), 1, 12, 4);
        assert_eq!(view.member_version(1, 10), None);
        view.store(view.generation(), 1, 10, 3);
        assert_eq!(view.member_version(1, 10), None);
        assert_eq!(view.member_version(1, 12), Some(4));

        let before = view.generation();
        view.changed(&[1]);
        assert_eq!(view.member_version(1, 12), None);
        // A load that read the database before the change committed must not store.
        view.store(before, 1, 12, 4);
        assert_eq!(view.member_version(1, 12), None);
    }

    #[test]
    fn a_sync_drops_groups_whose_version_moved_or_that_are_gone() {
        let view = GroupView::new(Duration::from_secs(1));
        synced(&view);
        for g in 1..=3 {
            view.store(view.generation(), g, 10, 1);
        }
        let load_began = view.generation();
        let (ids, began) = view.begin_sync();
        // Group 2 moved on (its message was missed); group 3 was deleted.
        view.end_sync(&ids, &HashMap::from([(1, 1), (2, 2)]), began);
        assert_eq!(view.member_version(1, 10), Some(1));
        assert_eq!(view.member_version(2, 10), None);
        assert_eq!(view.member_version(3, 10), None);
        // A load begun before the sync may hold what the sync just dropped.
        view.store(load_began, 2, 10, 1);
        assert_eq!(view.member_version(2, 10), None);
    }

    #[test]
    fn a_zero_bound_turns_the_view_off() {
        let view = GroupView::new(Duration::ZERO);
        synced(&view);
        view.store(view.generation(), 1, 10, 1);
        assert_eq!(view.member_version(1, 10), None);
    }
}
