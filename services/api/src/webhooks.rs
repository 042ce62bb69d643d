//! Ingest of the SFU's presence webhooks (LiveKit's `WebhookEvent` JSON): `participant_joined`,
//! `participant_left` and `room_finished` credit study time from real presence. Redelivered
//! events (same id) are processed once. The caller has verified the signature.

use chrono::NaiveDateTime;
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait, Set};
use serde::Deserialize;

use crate::attendance::{Attendance, AttendanceError, PresenceNews, Source};
use crate::db::entities::{room, webhook_event};
use crate::db::is_unique_violation;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The body is not a webhook event.
    #[error("undecodable webhook body")]
    Malformed,
    #[error(transparent)]
    Attendance(#[from] AttendanceError),
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// A presence event of the SFU, in LiveKit's webhook format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SfuEvent {
    event: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    room: Option<SfuRoom>,
    #[serde(default)]
    participant: Option<SfuParticipant>,
    #[serde(default)]
    created_at: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct SfuRoom {
    name: String,
}

#[derive(Debug, Deserialize)]
struct SfuParticipant {
    identity: String,
}

impl SfuEvent {
    pub fn from_json(body: &[u8]) -> Result<Self, WebhookError> {
        serde_json::from_slice(body).map_err(|_| WebhookError::Malformed)
    }

    /// The event's own time when given (protojson prints int64 as a string), never after `now`.
    fn at(&self, now: NaiveDateTime) -> NaiveDateTime {
        self.created_at
            .as_ref()
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .map(|t| t.naive_utc().min(now))
            .unwrap_or(now)
    }
}

/// What ingesting an event needs: the database (deduplication, room look-ups), attendance, and
/// where presence changes are announced.
pub struct Ingest<'a> {
    pub db: &'a DatabaseConnection,
    pub attendance: Attendance<'a>,
    pub presence: PresenceNews<'a>,
}

impl Ingest<'_> {
    /// Applies one event received at `now`.
    pub async fn ingest(&self, event: SfuEvent, now: NaiveDateTime) -> Result<(), WebhookError> {
        let at = event.at(now);
        let room_id = event.room.as_ref().and_then(|r| r.name.parse::<i64>().ok());
        let member_id = event
            .participant
            .as_ref()
            .and_then(|p| p.identity.parse::<i64>().ok());
        if let Some(id) = &event.id {
            if !first_delivery(self.db, id, now).await? {
                return Ok(());
            }
        }
        match (event.event.as_str(), room_id, member_id) {
            ("participant_joined", Some(room), Some(member)) => {
                match self.attendance.enter(member, room, Source::Sfu, at).await {
                    Ok(Some(_)) => self.announce(member, room, true).await?,
                    Ok(None) | Err(AttendanceError::NotInRoom { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ("participant_left", Some(room), Some(member)) => {
                self.attendance.sfu_left(member, room, at).await?;
                self.announce(member, room, false).await?;
            }
            ("room_finished", Some(room), _) => {
                self.attendance.close_dangling(Some(room), at).await?;
            }
            _ => tracing::debug!(event = %event.event, "webhook event ignored"),
        }
        Ok(())
    }

    async fn announce(&self, member_id: i64, room_id: i64, present: bool) -> Result<(), DbErr> {
        if let Some(room) = room::Entity::find_by_id(room_id).one(self.db).await? {
            self.presence
                .announce(room.group_id, member_id, room_id, Source::Sfu, present)
                .await;
        }
        Ok(())
    }
}

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
