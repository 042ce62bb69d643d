//! The durable Kakao unlink outbox: a withdrawal writes a row in its own transaction; this worker
//! delivers it with exponential back-off until Kakao confirms. Rows are claimed with a lease, so
//! any number of replicas can run the worker and a replica dying mid-call only delays delivery.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::Notify;

use crate::config::KakaoSettings;
use crate::db::{entities::kakao_unlink_outbox as outbox, now_utc};
use crate::kakao::KakaoClient;

const LEASE_SECS: i64 = 60;
const BATCH: u64 = 20;

pub struct UnlinkWorker {
    db: DatabaseConnection,
    kakao: KakaoClient,
    settings: KakaoSettings,
    wake: Arc<Notify>,
}

impl UnlinkWorker {
    pub fn new(
        db: DatabaseConnection,
        kakao: KakaoClient,
        settings: KakaoSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            kakao,
            settings,
            wake,
        }
    }

    /// Runs until the task is dropped: after every wake-up and every poll interval, delivers what is due.
    pub async fn run(self) {
        let poll = Duration::from_secs(self.settings.unlink_poll_secs.max(1));
        loop {
            let next_due = match self.deliver_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "kakao unlink outbox pass failed");
                    None
                }
            };
            // Sleep until the earliest pending retry, a new row, or the poll interval.
            let wait = next_due
                .map(|t| (t - now_utc()).to_std().unwrap_or(Duration::ZERO).min(poll))
                .unwrap_or(poll);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn backoff(&self, attempts: i32) -> chrono::Duration {
        let base = self.settings.unlink_backoff_base_ms.max(1);
        let factor = 1u64 << attempts.clamp(0, 20);
        let ms = base
            .saturating_mul(factor)
            .min(self.settings.unlink_backoff_max_secs * 1000);
        chrono::Duration::milliseconds(ms as i64)
    }

    /// Delivers every due row; returns when the next pending row becomes due, if any.
    async fn deliver_due(&self) -> Result<Option<NaiveDateTime>, sea_orm::DbErr> {
        let now = now_utc();
        let due = outbox::Entity::find()
            .filter(outbox::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(outbox::Column::LockedUntil.is_null())
                    .add(outbox::Column::LockedUntil.lt(now)),
            )
            .order_by_asc(outbox::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        for row in due {
            if !self.claim(row.id).await? {
                continue; // another replica holds it
            }
            match self.kakao.unlink(&row.kakao_user_id).await {
                Ok(()) => {
                    outbox::Entity::delete_by_id(row.id).exec(&self.db).await?;
                    tracing::info!(member_id = row.member_id, "kakao unlink delivered");
                }
                Err(e) => {
                    let attempts = row.attempts + 1;
                    let message: String = e.to_string().chars().take(480).collect();
                    tracing::warn!(member_id = row.member_id, attempts, error = %message, "kakao unlink failed; will retry");
                    outbox::Entity::update_many()
                        .col_expr(outbox::Column::Attempts, Expr::value(attempts))
                        .col_expr(
                            outbox::Column::NextAttemptAt,
                            Expr::value(now_utc() + self.backoff(row.attempts)),
                        )
                        .col_expr(
                            outbox::Column::LockedUntil,
                            Expr::value(Option::<NaiveDateTime>::None),
                        )
                        .col_expr(outbox::Column::LastError, Expr::value(message))
                        .filter(outbox::Column::Id.eq(row.id))
                        .exec(&self.db)
                        .await?;
                }
            }
        }
        let next = outbox::Entity::find()
            .order_by_asc(outbox::Column::NextAttemptAt)
            .one(&self.db)
            .await?
            .map(|r| r.next_attempt_at);
        Ok(next)
    }

    /// Takes a lease on a row; false when another worker holds it.
    async fn claim(&self, id: i64) -> Result<bool, sea_orm::DbErr> {
        let now = now_utc();
        let res = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(now + chrono::Duration::seconds(LEASE_SECS)),
            )
            .filter(outbox::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(outbox::Column::LockedUntil.is_null())
                    .add(outbox::Column::LockedUntil.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }
}
