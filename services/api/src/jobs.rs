//! Scheduled jobs. Each job runs once per period across any number of replicas: a replica runs it
//! only after taking the period's lease in the database; a replica that dies mid-run leaves a lease
//! that expires, and another replica runs that period again (every job is idempotent).

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_web::web;
use chrono::{Duration, NaiveDateTime, NaiveTime};
use ppodok_domain::time::local_to_utc;
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set, TransactionTrait,
};

use crate::db::entities::{job_run, room, todo, webhook_event};
use crate::db::is_unique_violation;
use crate::state::AppState;
use sea_orm::Iterable;

/// Every variant is scheduled: the scheduler walks `Job::iter()` (derived, so a new job cannot be
/// forgotten the way `StopIdleTimers` was from a hand-written list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sea_orm::EnumIter)]
pub enum Job {
    ClosePresence,
    ExpireRooms,
    PurgeDoneTodos,
    WarmCalendars,
    PurgeWebhookEvents,
    StopIdleTimers,
    QueueReminders,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::ClosePresence => "close_presence",
            Job::ExpireRooms => "expire_rooms",
            Job::PurgeDoneTodos => "purge_done_todos",
            Job::WarmCalendars => "warm_calendars",
            Job::PurgeWebhookEvents => "purge_webhook_events",
            Job::StopIdleTimers => "stop_idle_timers",
            Job::QueueReminders => "queue_reminders",
        }
    }

    /// The period `now` falls in: a slice of the job's interval, or the study day for daily jobs.
    pub fn period_key(self, state: &AppState, now: NaiveDateTime) -> String {
        let j = &state.settings.jobs;
        let every = match self {
            Job::ClosePresence => j.close_presence_every_secs,
            Job::ExpireRooms => j.expire_rooms_every_secs,
            Job::WarmCalendars => j.warm_cache_every_secs,
            Job::StopIdleTimers => j.stop_idle_timers_every_secs,
            Job::QueueReminders => state.settings.push.queue_every_secs,
            Job::PurgeDoneTodos | Job::PurgeWebhookEvents => {
                return state.ranking_days.day_of(now.and_utc()).to_string();
            }
        }
        .max(1) as i64;
        (now.and_utc().timestamp().div_euclid(every)).to_string()
    }
}

/// Takes the lease of `job` for `period`; false when another replica holds or completed it.
pub async fn acquire(state: &AppState, job: Job, period: &str, owner: &str) -> Result<bool, DbErr> {
    let now = state.clock.now_naive();
    let lease_until = now + Duration::seconds(state.settings.jobs.lease_secs);
    let inserted = job_run::ActiveModel {
        job_name: Set(job.name().to_owned()),
        period_key: Set(period.to_owned()),
        owner: Set(owner.to_owned()),
        lease_until: Set(lease_until),
        completed_at: Set(None),
    }
    .insert(&state.db)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => {
            // Taken before: ours only if unfinished and its holder's lease ran out.
            let taken = job_run::Entity::update_many()
                .col_expr(job_run::Column::Owner, Expr::value(owner))
                .col_expr(job_run::Column::LeaseUntil, Expr::value(lease_until))
                .filter(job_run::Column::JobName.eq(job.name()))
                .filter(job_run::Column::PeriodKey.eq(period))
                .filter(job_run::Column::CompletedAt.is_null())
                .filter(job_run::Column::LeaseUntil.lt(now))
                .exec(&state.db)
                .await?;
            Ok(taken.rows_affected == 1)
        }
        Err(e) => Err(e),
    }
}

async fn complete(state: &AppState, job: Job, period: &str, owner: &str) -> Result<(), DbErr> {
    job_run::Entity::update_many()
        .col_expr(
            job_run::Column::CompletedAt,
            Expr::value(Some(state.clock.now_naive())),
        )
        .filter(job_run::Column::JobName.eq(job.name()))
        .filter(job_run::Column::PeriodKey.eq(period))
        .filter(job_run::Column::Owner.eq(owner))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// Runs one job now, whatever the lease (the scheduler decides when).
pub async fn run(state: &AppState, job: Job) -> anyhow::Result<()> {
    let now = state.clock.now_naive();
    match job {
        Job::ClosePresence => {
            state.attendance().close_dangling(None, now).await?;
        }
        Job::ExpireRooms => {
            state.attendance().close_dangling(None, now).await?;
            let cutoff = now - Duration::hours(state.settings.rooms.retention_hours);
            let groups: Vec<i64> = room::Entity::find()
                .select_only()
                .column(room::Column::GroupId)
                .distinct()
                .filter(room::Column::EndAt.lt(cutoff))
                .into_tuple()
                .all(&state.db)
                .await?;
            if !groups.is_empty() {
                let txn = state.db.begin().await?;
                room::Entity::delete_many()
                    .filter(room::Column::EndAt.lt(cutoff))
                    .exec(&txn)
                    .await?;
                crate::cache::bump_versions(&txn, &groups).await?;
                txn.commit().await?;
                state.calendar_news().changed(&groups).await;
            }
        }
        Job::PurgeDoneTodos => {
            // Done before today's study day began: yesterday's completed list is cleared.
            let day_start = state
                .ranking_days
                .start_of(state.ranking_days.day_of(now.and_utc()))
                .naive_utc();
            todo::Entity::delete_many()
                .filter(todo::Column::Done.eq(true))
                .filter(todo::Column::DoneAt.lt(day_start))
                .exec(&state.db)
                .await?;
        }
        Job::WarmCalendars => {
            warm_calendars(state).await?;
        }
        Job::StopIdleTimers => {
            let cap = Duration::minutes(state.settings.study.timer_idle_cap_minutes);
            crate::timers::stop_idle_timers(&state.db, &state.ranking_days, cap, state.clock.now())
                .await?;
        }
        Job::QueueReminders => {
            if state.settings.push.enabled {
                let grace = Duration::seconds(state.settings.push.start_grace_secs.max(0));
                let kinds = state.push.deliverable_kinds();
                let queued = crate::push::queue::queue_due(&state.db, now, &kinds, grace).await?;
                if queued > 0 {
                    state.push.wake.notify_one();
                }
            }
        }
        Job::PurgeWebhookEvents => {
            webhook_event::Entity::delete_many()
                .filter(webhook_event::Column::ReceivedAt.lt(now - Duration::days(2)))
                .exec(&state.db)
                .await?;
        }
    }
    Ok(())
}

/// The calendar window clients open by default: today 00:00 (service zone) for `warm_days` days.
pub fn default_window(state: &AppState) -> (NaiveDateTime, NaiveDateTime) {
    let today = ppodok_domain::time::utc_to_local(state.clock.now(), state.zone).date();
    let from_local = today.and_time(NaiveTime::MIN);
    let to_local = from_local + Duration::days(state.settings.cache.warm_days);
    let to_utc = |t| {
        local_to_utc(t, state.zone)
            .map(|u| u.naive_utc())
            .unwrap_or(t)
    };
    (to_utc(from_local), to_utc(to_local))
}

/// Fills the cache with the default window of every group that has rooms in it, in a constant
/// number of statements. Returns how many groups were warmed.
pub async fn warm_calendars(state: &AppState) -> anyhow::Result<usize> {
    let (from, to) = default_window(state);
    let groups: Vec<i64> = room::Entity::find()
        .select_only()
        .column(room::Column::GroupId)
        .distinct()
        .filter(room::Column::StartAt.gte(from))
        .filter(room::Column::EndAt.lte(to))
        .into_tuple()
        .all(&state.db)
        .await?;
    // Versions before rooms: an entry must never be newer than its key (a booking that commits
    // in between leaves this entry under the old version, where no reader looks).
    let mut versions = HashMap::with_capacity(groups.len());
    for g in &groups {
        versions.insert(*g, state.calendar_cache.current_version(*g).await?);
    }
    let rooms = crate::calendar::group_rooms(&state.db, &groups, from, to).await?;
    let mut by_group: HashMap<i64, Vec<crate::calendar::RoomView>> =
        groups.iter().map(|g| (*g, Vec::new())).collect();
    for r in rooms {
        by_group.entry(r.group_id).or_default().push(r);
    }
    let warmed = by_group.len();
    for (group_id, rooms) in by_group {
        let version = versions[&group_id];
        state
            .calendar_cache
            .put(group_id, version, from, to, rooms)
            .await;
    }
    Ok(warmed)
}

/// The scheduler loop: every tick, each job whose period has not been handled takes the lease and runs.
pub async fn scheduler(state: web::Data<AppState>, tick: StdDuration) {
    let owner = uuid::Uuid::new_v4().simple().to_string();
    let mut handled: HashMap<Job, String> = HashMap::new();
    loop {
        for job in Job::iter() {
            let period = job.period_key(&state, state.clock.now_naive());
            if handled.get(&job) == Some(&period) {
                continue;
            }
            match acquire(&state, job, &period, &owner).await {
                Ok(true) => {
                    let result = run(&state, job).await;
                    match result {
                        Ok(()) => {
                            state.metrics.job_ran(job.name());
                            if let Err(e) = complete(&state, job, &period, &owner).await {
                                tracing::warn!(job = job.name(), error = %e, "job completion not recorded");
                            }
                            handled.insert(job, period);
                        }
                        // Not marked handled: the lease expires and this or another replica retries.
                        Err(e) => {
                            tracing::warn!(job = job.name(), error = %format!("{e:#}"), "job failed")
                        }
                    }
                }
                Ok(false) => {
                    handled.insert(job, period);
                }
                Err(e) => tracing::warn!(job = job.name(), error = %e, "job lease unavailable"),
            }
        }
        tokio::time::sleep(tick).await;
    }
}
