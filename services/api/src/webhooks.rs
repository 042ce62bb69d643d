//! Redelivered webhooks: each event id is processed once.

use chrono::NaiveDateTime;
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, Set};

use crate::db::entities::webhook_event;
use crate::db::is_unique_violation;

/// Records `event_id`; false when it was seen before.
pub async fn first_delivery(
    db: &DatabaseConnection,
    event_id: &str,
    now: NaiveDateTime,
) -> Result<bool, DbErr> {
    let id: String = event_id.chars().take(128).collect();
    match (webhook_event::ActiveModel {
        event_id: Set(id),
        received_at: Set(now),
    })
    .insert(db)
    .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
