//! Personal focus timers, server-authoritative. A timer is one `focus_timers` row per member
//! holding anchors, not ticks: `segment_started_at` is set while it runs, `accumulated_ms` holds
//! the earlier segments. Each running segment is credited (`study::credit`) when it ends — on
//! pause, stop or the idle cap — in the same transaction that updates the row, under a row lock,
//! so a segment is credited exactly once however requests race.
//!
//! A running segment never counts past `segment_started_at + idle cap` (a forgotten timer must
//! not fill a night with "study").

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use ppodok_domain::periods::{utc, DayBoundary};
use ppodok_domain::stats::{capped_segment_end, segment_is_idle, timer_elapsed_ms};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QuerySelect, Set, TransactionTrait,
};

use crate::db::entities::{focus_timer, study_record};
use crate::db::is_unique_violation;
use crate::study::{credit, Credit};

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("a timer is already active")]
    AlreadyActive,
    #[error("no timer")]
    NoTimer,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What timer operations need to know besides the row.
#[derive(Debug, Clone, Copy)]
pub struct TimerRules {
    /// Study days of group rankings (where credited time is totalled).
    pub ranking_days: DayBoundary,
    pub idle_cap: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerState {
    Running,
    Paused,
    Stopped,
}

impl TimerState {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerState::Running => "running",
            TimerState::Paused => "paused",
            TimerState::Stopped => "stopped",
        }
    }
}

/// A timer as seen at some instant.
#[derive(Debug, Clone)]
pub struct TimerView {
    pub state: TimerState,
    pub group_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    /// Accumulated plus the running segment, capped.
    pub elapsed_ms: i64,
}

fn view(
    t: &focus_timer::Model,
    state: TimerState,
    rules: &TimerRules,
    now: DateTime<Utc>,
) -> TimerView {
    TimerView {
        state,
        group_id: t.group_id,
        started_at: utc(t.started_at),
        elapsed_ms: timer_elapsed_ms(
            t.accumulated_ms,
            t.segment_started_at.map(utc),
            now,
            rules.idle_cap,
        ),
    }
}

fn state_of(t: &focus_timer::Model) -> TimerState {
    if t.segment_started_at.is_some() {
        TimerState::Running
    } else {
        TimerState::Paused
    }
}

async fn locked<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
) -> Result<Option<focus_timer::Model>, DbErr> {
    // FOR UPDATE (MariaDB has no FOR SHARE, and every caller writes afterwards anyway).
    focus_timer::Entity::find_by_id(member_id)
        .lock_exclusive()
        .one(db)
        .await
}

/// Credits the running segment, if any, up to `now` (capped). Returns the milliseconds credited.
async fn credit_running_segment<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    t: &focus_timer::Model,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let Some(since) = t.segment_started_at else {
        return Ok(0);
    };
    let end = capped_segment_end(utc(since), now, rules.idle_cap);
    credit(
        db,
        &rules.ranking_days,
        Credit {
            member_id: t.member_id,
            group_id: t.group_id,
            room_id: None,
            source: study_record::SOURCE_TIMER,
            from: since,
            to: end.naive_utc(),
        },
    )
    .await
}

/// Ends a timer: credits its running segment and removes the row.
async fn finish<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    t: focus_timer::Model,
    now: DateTime<Utc>,
) -> Result<TimerView, DbErr> {
    let mut ended = view(&t, TimerState::Stopped, rules, now);
    let credited = credit_running_segment(db, rules, &t, now).await?;
    ended.elapsed_ms = t.accumulated_ms + credited;
    focus_timer::Entity::delete_by_id(t.member_id)
        .exec(db)
        .await?;
    Ok(ended)
}

/// Starts my timer, counting for `group_id` (already checked to be mine). A timer left running
/// past the idle cap is finished first; any other existing timer is `AlreadyActive`.
///
/// The common paths take no locking read: locking a row that does not exist takes gap locks on
/// MariaDB, and upgrading the shared lock a duplicate-key error leaves would deadlock racing
/// starts. A plain read decides; the primary key settles a race (one insert wins, the others
/// get a duplicate key = `AlreadyActive`). Only replacing an idle timer locks its row.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    member_id: i64,
    group_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<TimerView, TimerError> {
    let is_idle = |t: &focus_timer::Model| {
        t.segment_started_at
            .is_some_and(|since| segment_is_idle(utc(since), now, rules.idle_cap))
    };
    if let Some(existing) = focus_timer::Entity::find_by_id(member_id).one(db).await? {
        if !is_idle(&existing) {
            return Err(TimerError::AlreadyActive);
        }
        match locked(db, member_id).await? {
            Some(t) if is_idle(&t) => {
                finish(db, rules, t, now).await?;
            }
            Some(_) => return Err(TimerError::AlreadyActive),
            None => {}
        }
    }
    match insert_running(db, member_id, group_id, now).await {
        Ok(t) => Ok(view(&t, TimerState::Running, rules, now)),
        // A concurrent start won the insert.
        Err(e) if is_unique_violation(&e) => Err(TimerError::AlreadyActive),
        Err(e) => Err(e.into()),
    }
}

async fn insert_running<C: ConnectionTrait>(
    db: &C,
    member_id: i64,
    group_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<focus_timer::Model, DbErr> {
    let at: NaiveDateTime = now.naive_utc();
    focus_timer::ActiveModel {
        member_id: Set(member_id),
        group_id: Set(group_id),
        started_at: Set(at),
        segment_started_at: Set(Some(at)),
        accumulated_ms: Set(0),
        updated_at: Set(at),
    }
    .insert(db)
    .await
}

/// Pauses my timer, crediting the running segment. Pausing a paused timer changes nothing.
pub async fn pause<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    member_id: i64,
    now: DateTime<Utc>,
) -> Result<TimerView, TimerError> {
    let t = locked(db, member_id).await?.ok_or(TimerError::NoTimer)?;
    if t.segment_started_at.is_none() {
        return Ok(view(&t, TimerState::Paused, rules, now));
    }
    let credited = credit_running_segment(db, rules, &t, now).await?;
    let accumulated = t.accumulated_ms + credited;
    let mut row: focus_timer::ActiveModel = t.into();
    row.segment_started_at = Set(None);
    row.accumulated_ms = Set(accumulated);
    row.updated_at = Set(now.naive_utc());
    let paused = row.update(db).await?;
    Ok(view(&paused, TimerState::Paused, rules, now))
}

/// Resumes my paused timer. Resuming a running timer changes nothing.
pub async fn resume<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    member_id: i64,
    now: DateTime<Utc>,
) -> Result<TimerView, TimerError> {
    let t = locked(db, member_id).await?.ok_or(TimerError::NoTimer)?;
    if t.segment_started_at.is_some() {
        return Ok(view(&t, TimerState::Running, rules, now));
    }
    let mut row: focus_timer::ActiveModel = t.into();
    row.segment_started_at = Set(Some(now.naive_utc()));
    row.updated_at = Set(now.naive_utc());
    let running = row.update(db).await?;
    Ok(view(&running, TimerState::Running, rules, now))
}

/// Stops my timer, crediting the running segment. `None` when there is none (stopping twice is
/// harmless).
pub async fn stop<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    member_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<TimerView>, TimerError> {
    match locked(db, member_id).await? {
        None => Ok(None),
        Some(t) => Ok(Some(finish(db, rules, t, now).await?)),
    }
}

/// My timer as of `now`, if any (a read: no lock, elapsed capped).
pub async fn current<C: ConnectionTrait>(
    db: &C,
    rules: &TimerRules,
    member_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<TimerView>, DbErr> {
    Ok(focus_timer::Entity::find_by_id(member_id)
        .one(db)
        .await?
        .map(|t| view(&t, state_of(&t), rules, now)))
}

/// Stops every timer whose running segment reached the idle cap, crediting it up to the cap.
/// Returns how many were stopped. Each timer is finished in its own short transaction under its
/// row lock (re-checked there), so a concurrent pause or stop by the member is never credited
/// twice and one failure does not hold back the others.
pub async fn stop_idle_timers(
    db: &DatabaseConnection,
    ranking_days: &DayBoundary,
    cap: Duration,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let rules = TimerRules {
        ranking_days: *ranking_days,
        idle_cap: cap,
    };
    let idle_members: Vec<i64> = focus_timer::Entity::find()
        .select_only()
        .column(focus_timer::Column::MemberId)
        .filter(focus_timer::Column::SegmentStartedAt.lte((now - cap).naive_utc()))
        .into_tuple()
        .all(db)
        .await?;
    let mut stopped = 0;
    for member_id in idle_members {
        let finished = db
            .transaction::<_, bool, DbErr>(|txn| {
                Box::pin(async move {
                    let Some(t) = locked(txn, member_id).await? else {
                        return Ok(false);
                    };
                    let still_idle = t
                        .segment_started_at
                        .is_some_and(|since| segment_is_idle(utc(since), now, rules.idle_cap));
                    if !still_idle {
                        return Ok(false);
                    }
                    finish(txn, &rules, t, now).await?;
                    Ok(true)
                })
            })
            .await
            .map_err(|e| match e {
                sea_orm::TransactionError::Connection(e)
                | sea_orm::TransactionError::Transaction(e) => e,
            })?;
        stopped += u64::from(finished);
    }
    Ok(stopped)
}
