//! Delivers queued reminders. Every replica runs one worker; rows are claimed one at a time.
//!
//! **Exactly once per (booking, kind, target), and how a crash is handled.** A row is claimed by a
//! compare-and-set `pending → sending` that also writes a fresh `attempt_id` and a lease
//! (`lease_secs`, longer than a provider call may last); that commit happens *before* the provider is
//! called. Only the holder of that attempt id can settle the row (`sent`, back to `pending` for a
//! retry, `failed`). A replica that dies between its claim and the settlement leaves a `sending` row
//! whose lease runs out; the next pass of any worker marks it `unknown` and does **not** send it
//! again (`push_outcome_unknown_total`): the provider may already have it, and neither FCM v1 nor
//! Web Push offers an idempotency key to ask. So a crash inside that window (milliseconds around one
//! HTTP call) costs at most that one reminder, never a duplicate. Devices also collapse on the tag
//! (`webpush.notification.tag`, Web Push `Topic`), should a provider ever deliver one twice.
//!
//! Retries (429, 5xx, network, timeout) go back to `pending` with `next_attempt_at` at the provider's
//! `Retry-After`, or `base · 2^attempt` (capped) plus up to 50 % jitter. Each send runs in its own
//! task under a semaphore (`push.concurrency`), so a slow or failing device delays nobody else.
//! 404/410/`UNREGISTERED` deletes the device (its queued reminders go with it). A reminder still
//! queued once its room has started is skipped, not sent late.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;
use rand::Rng;
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::Semaphore;

use super::entities::push_reminder::{
    self as reminder, FAILED, KIND_BEFORE, KIND_START, PENDING, SENDING, SENT, SKIPPED,
    TARGET_STOMP, UNKNOWN,
};
use super::sender::{Delivery, Device, Notification};
use super::Push;
use crate::clock::Clock;
use crate::db::entities::{push_client, study_group};
use crate::events::Publisher;

pub struct Worker {
    db: DatabaseConnection,
    clock: Clock,
    zone: Tz,
    push: Arc<Push>,
    events: Arc<dyn Publisher>,
    permits: Arc<Semaphore>,
}

impl Worker {
    pub fn new(
        db: DatabaseConnection,
        clock: Clock,
        zone: Tz,
        push: Arc<Push>,
        events: Arc<dyn Publisher>,
    ) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(push.settings.concurrency.max(1)));
        Arc::new(Self {
            db,
            clock,
            zone,
            push,
            events,
            permits,
        })
    }

    /// Runs until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let poll = StdDuration::from_millis(self.push.settings.poll_millis.max(10));
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "push worker pass failed");
            }
            tokio::select! {
                _ = self.push.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One pass: give up dead claims, skip what is late, claim and start what is due.
    pub async fn pass(self: &Arc<Self>) -> Result<(), DbErr> {
        let now = self.clock.now_naive();
        let m = &self.push.metrics;

        let abandoned = reminder::Entity::update_many()
            .col_expr(reminder::Column::State, Expr::value(UNKNOWN))
            .col_expr(
                reminder::Column::LastError,
                Expr::value("sender lease expired"),
            )
            .filter(reminder::Column::State.eq(SENDING))
            .filter(reminder::Column::LeaseUntil.lt(now))
            .exec(&self.db)
            .await?;
        if abandoned.rows_affected > 0 {
            tracing::warn!(
                count = abandoned.rows_affected,
                "push claims abandoned by a dead sender: not resent"
            );
            m.outcome_unknown.inc_by(abandoned.rows_affected);
        }

        let grace = Duration::seconds(self.push.settings.start_grace_secs.max(0));
        let late = reminder::Entity::update_many()
            .col_expr(reminder::Column::State, Expr::value(SKIPPED))
            .col_expr(reminder::Column::LastError, Expr::value("room started"))
            .filter(reminder::Column::State.eq(PENDING))
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(reminder::Column::Kind.eq(KIND_BEFORE))
                            .add(reminder::Column::StartAt.lte(now)),
                    )
                    .add(
                        Condition::all()
                            .add(reminder::Column::Kind.eq(KIND_START))
                            .add(reminder::Column::StartAt.lte(now - grace)),
                    ),
            )
            .exec(&self.db)
            .await?;
        m.skipped_late.inc_by(late.rows_affected);

        let free = self.permits.available_permits();
        if free > 0 {
            let due = reminder::Entity::find()
                .filter(reminder::Column::State.eq(PENDING))
                .filter(reminder::Column::NextAttemptAt.lte(now))
                .order_by_asc(reminder::Column::NextAttemptAt)
                .order_by_asc(reminder::Column::Id)
                .limit(free as u64)
                .all(&self.db)
                .await?;
            for row in due {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    break;
                };
                let Some(attempt) = self.claim(&row, now).await? else {
                    continue; // another replica took it
                };
                let me = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = me.deliver(row, attempt).await {
                        tracing::warn!(error = %e, "push delivery bookkeeping failed");
                    }
                });
            }
        }

        let depth = reminder::Entity::find()
            .filter(reminder::Column::State.is_in([PENDING, SENDING]))
            .count(&self.db)
            .await?;
        m.queue_depth.set(depth as i64);
        Ok(())
    }

    /// `pending → sending` under a new attempt id, committed before any provider call.
    async fn claim(
        &self,
        row: &reminder::Model,
        now: NaiveDateTime,
    ) -> Result<Option<String>, DbErr> {
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let lease = now + Duration::seconds(self.push.settings.lease_secs);
        let taken = reminder::Entity::update_many()
            .col_expr(reminder::Column::State, Expr::value(SENDING))
            .col_expr(reminder::Column::AttemptId, Expr::value(attempt.clone()))
            .col_expr(reminder::Column::LeaseUntil, Expr::value(Some(lease)))
            .filter(reminder::Column::Id.eq(row.id))
            .filter(reminder::Column::State.eq(PENDING))
            .filter(reminder::Column::NextAttemptAt.lte(now))
            .exec(&self.db)
            .await?;
        Ok((taken.rows_affected == 1).then_some(attempt))
    }

    /// Settles a claimed row, if this attempt still holds it.
    async fn settle(
        &self,
        id: i64,
        attempt: &str,
        changes: Vec<(reminder::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> Result<bool, DbErr> {
        let mut update = reminder::Entity::update_many().col_expr(
            reminder::Column::LeaseUntil,
            Expr::value(Option::<NaiveDateTime>::None),
        );
        for (col, value) in changes {
            update = update.col_expr(col, value);
        }
        let done = update
            .filter(reminder::Column::Id.eq(id))
            .filter(reminder::Column::AttemptId.eq(attempt))
            .filter(reminder::Column::State.eq(SENDING))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }

    async fn notification(&self, row: &reminder::Model) -> Result<Notification, DbErr> {
        let group = study_group::Entity::find_by_id(row.group_id)
            .one(&self.db)
            .await?
            .map(|g| g.name)
            .unwrap_or_else(|| "스터디".to_owned());
        Ok(reminder_text(
            row,
            &group,
            self.zone,
            &self.push.settings.click_base_url,
            self.clock.now_naive(),
        ))
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let s = &self.push.settings;
        let base = s.backoff_base_ms.max(1);
        let ms = base
            .saturating_mul(1u64 << attempts.clamp(0, 20))
            .min(s.backoff_max_secs.saturating_mul(1000));
        let jitter = rand::thread_rng().gen_range(0..=ms / 2);
        Duration::milliseconds((ms + jitter) as i64)
    }

    async fn deliver(&self, row: reminder::Model, attempt: String) -> Result<(), DbErr> {
        let m = &self.push.metrics;
        let notification = self.notification(&row).await?;
        let (outcome, target_kind) = if row.target == TARGET_STOMP {
            crate::events::publish(
                self.events.as_ref(),
                super::member_topic(row.member_id),
                &ForegroundMessage::from(&notification),
            )
            .await;
            (Delivery::Accepted, "stomp".to_owned())
        } else {
            let device = match row.device_id {
                Some(id) => push_client::Entity::find_by_id(id).one(&self.db).await?,
                None => None,
            };
            match device {
                None => (
                    Delivery::Rejected {
                        reason: "device_gone",
                    },
                    "device".to_owned(),
                ),
                Some(d) => {
                    let device = Device {
                        id: d.id,
                        kind: d.kind.clone(),
                        token: d.token,
                        p256dh: d.p256dh,
                        auth_secret: d.auth_secret,
                    };
                    match self.push.sender(&device.kind) {
                        Some(sender) => (sender.send(&device, &notification).await, d.kind),
                        None => (
                            Delivery::Rejected {
                                reason: "provider_unconfigured",
                            },
                            d.kind,
                        ),
                    }
                }
            }
        };
        let now = self.clock.now_naive();
        match outcome {
            Delivery::Accepted => {
                if self
                    .settle(
                        row.id,
                        &attempt,
                        vec![
                            (reminder::Column::State, Expr::value(SENT)),
                            (reminder::Column::SentAt, Expr::value(Some(now))),
                        ],
                    )
                    .await?
                {
                    m.sent.with_label_values(&[&target_kind]).inc();
                    let lag = (now - row.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                    m.lag.observe(lag);
                }
            }
            Delivery::Retry { after, reason } => {
                m.failed.with_label_values(&[reason]).inc();
                let attempts = row.attempts + 1;
                if attempts >= self.push.settings.max_attempts {
                    self.settle(
                        row.id,
                        &attempt,
                        vec![
                            (reminder::Column::State, Expr::value(FAILED)),
                            (reminder::Column::Attempts, Expr::value(attempts)),
                            (reminder::Column::LastError, Expr::value(reason)),
                        ],
                    )
                    .await?;
                    return Ok(());
                }
                let delay = match after {
                    Some(d) => Duration::from_std(d)
                        .unwrap_or(Duration::hours(1))
                        .min(Duration::hours(1)),
                    None => self.backoff(row.attempts),
                };
                tracing::info!(
                    reminder = row.id,
                    reason,
                    attempts,
                    delay_ms = delay.num_milliseconds(),
                    "push retry scheduled"
                );
                self.settle(
                    row.id,
                    &attempt,
                    vec![
                        (reminder::Column::State, Expr::value(PENDING)),
                        (reminder::Column::Attempts, Expr::value(attempts)),
                        (reminder::Column::NextAttemptAt, Expr::value(now + delay)),
                        (reminder::Column::LastError, Expr::value(reason)),
                    ],
                )
                .await?;
            }
            Delivery::Gone { reason } => {
                m.failed.with_label_values(&[reason]).inc();
                if let Some(device_id) = row.device_id {
                    // Its queued reminders (this one included) go with it.
                    let gone = push_client::Entity::delete_by_id(device_id)
                        .exec(&self.db)
                        .await?;
                    if gone.rows_affected > 0 {
                        m.pruned.inc();
                        tracing::info!(device = device_id, reason, "push device pruned");
                    }
                }
            }
            Delivery::Rejected { reason } => {
                m.failed.with_label_values(&[reason]).inc();
                self.settle(
                    row.id,
                    &attempt,
                    vec![
                        (reminder::Column::State, Expr::value(FAILED)),
                        (reminder::Column::LastError, Expr::value(reason)),
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The body of a foreground notification on `/user/queue/notifications`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForegroundMessage<'a> {
    #[serde(rename = "type")]
    pub kind_of_message: &'static str,
    #[serde(flatten)]
    pub notification: &'a Notification,
}

impl<'a> From<&'a Notification> for ForegroundMessage<'a> {
    fn from(notification: &'a Notification) -> Self {
        Self {
            kind_of_message: "roomReminder",
            notification,
        }
    }
}

/// Title, body and link of a reminder, in the contract's language.
pub fn reminder_text(
    row: &reminder::Model,
    group: &str,
    zone: Tz,
    click_base: &str,
    now: NaiveDateTime,
) -> Notification {
    let start_local = ppodok_domain::time::utc_to_local(row.start_at.and_utc(), zone);
    let hhmm = start_local.format("%H:%M");
    let (title, body) = if row.kind == KIND_START {
        (
            "공부방이 시작했어요".to_owned(),
            format!("{group}의 {hhmm} 공부방이 지금 시작해요. 입장해 주세요."),
        )
    } else {
        let minutes = (row.start_at - row.due_at).num_minutes().max(1);
        (
            "공부방이 곧 시작해요".to_owned(),
            format!("{group}의 {hhmm} 공부방이 {minutes}분 뒤에 시작해요."),
        )
    };
    // Pointless once the room has started (an at-start reminder: a few minutes into it).
    let expires_at = if row.kind == KIND_START {
        row.start_at + Duration::minutes(5)
    } else {
        row.start_at
    };
    Notification {
        title,
        body,
        url: format!("{}/study/{}", click_base.trim_end_matches('/'), row.room_id),
        tag: format!("ppodok-room-{}-{}", row.room_id, row.kind),
        kind: row.kind.clone(),
        room_id: row.room_id,
        group_id: row.group_id,
        start_time: ppodok_domain::time::format_local_datetime(start_local),
        ttl_secs: (expires_at - now).num_seconds().max(0),
    }
}
