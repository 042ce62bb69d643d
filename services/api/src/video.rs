//! Video tokens: a LiveKit access token for a member booked into a room, inside its window.
//! Shared by `POST /api/v1/rooms/{roomId}/video-token` and the legacy `GET /video/getToken`.

use std::sync::Arc;

use chrono::NaiveDateTime;
use ppodok_tokens::livekit::LivekitKeys;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, JoinType, QueryFilter, QuerySelect,
    RelationTrait,
};

use crate::attendance::{self, AttendanceError};
use crate::clock::Clock;
use crate::db::entities::{member, reservation, room};
use crate::placement::VideoNodes;

pub struct VideoToken {
    pub token: String,
    /// Always the member id, whatever a client asks for.
    pub identity: String,
    pub room_name: String,
    pub expires_at: NaiveDateTime,
    /// The signalling URL of the SFU node the room is on.
    pub url: String,
}

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// No such room in the member's groups (or a storage failure finding it).
    #[error(transparent)]
    Room(#[from] AttendanceError),
    /// The member has no reservation in the room.
    #[error("not booked into the room")]
    NotBooked,
    /// Before the window opens (`join_before` ahead of the start) or after the room's end.
    #[error("outside the room's video window")]
    OutsideWindow,
    /// No LiveKit keys configured, or no SFU node for the room.
    #[error("video unavailable")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// Minting video tokens. Explicit dependencies: the database, the clock, the LiveKit keys (None
/// when no secret is configured), the SFU placement, the join window and the token lifetime.
pub struct VideoTokens<'a> {
    pub db: &'a DatabaseConnection,
    pub clock: &'a Clock,
    pub keys: Option<&'a LivekitKeys>,
    pub nodes: &'a VideoNodes,
    /// Video opens this long before a room's start.
    pub join_before: chrono::Duration,
    pub ttl_secs: i64,
}

impl VideoTokens<'_> {
    /// Mints a token for `member` in `room_id`: [`VideoError::Room`] for no such room (or one of
    /// another group), [`VideoError::NotBooked`] without a reservation,
    /// [`VideoError::OutsideWindow`] outside the window (from `join_before` before the start to
    /// the end).
    pub async fn issue(
        &self,
        member: &member::Model,
        room_id: i64,
    ) -> Result<VideoToken, VideoError> {
        let room = attendance::find_room(self.db, room_id, member.id).await?;
        if attendance::reservation_of(self.db, room.id, member.id)
            .await?
            .is_none()
        {
            return Err(VideoError::NotBooked);
        }
        let now = self.clock.now_naive();
        let opens = room.start_at - self.join_before;
        if now < opens || now >= room.end_at {
            return Err(VideoError::OutsideWindow);
        }
        let keys = self.keys.ok_or(VideoError::Unavailable)?;
        let identity = member.id.to_string();
        let room_name = room.id.to_string();
        // Token times are checked by the SFU against the real clock.
        let issued = chrono::Utc::now().timestamp();
        let ttl = self.ttl_secs;
        // The node the room is on (placing it now if it is on none); the placement outlives the
        // room by a margin, and the node releases it earlier once the room ends there.
        let placement_ttl = (room.end_at - now).num_seconds().max(0) as u64 + 600;
        let url = self
            .nodes
            .url_for(&room_name, placement_ttl)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, room = %room_name, "no SFU node for a video room");
                VideoError::Unavailable
            })?;
        let grant = ppodok_tokens::livekit::VideoGrant::join(&room_name);
        let token = keys.mint_access_token(&identity, &member.name, grant, issued, ttl);
        let expires_at = chrono::DateTime::from_timestamp(issued + ttl, 0)
            .unwrap_or_default()
            .naive_utc();
        Ok(VideoToken {
            token,
            identity,
            room_name,
            expires_at,
            url,
        })
    }
}

/// The video seats of members: which open video rooms a member is in, and removing them from
/// those. Explicit dependencies: the database, the clock, the SFU placement, the join window.
pub struct VideoSeats<'a> {
    pub db: &'a DatabaseConnection,
    pub clock: &'a Clock,
    pub nodes: &'a Arc<VideoNodes>,
    /// Video opens this long before a room's start.
    pub join_before: chrono::Duration,
}

impl VideoSeats<'_> {
    /// Rooms whose video is open now (from `join_before` before the start to the end) that
    /// `member_id` is booked into, in `group_id` only when given. Read before a cancellation, a
    /// leave or a withdrawal, whose member is then removed from them ([`Self::remove`]).
    pub async fn open_rooms_of(&self, member_id: i64, group_id: Option<i64>) -> Vec<i64> {
        let now = self.clock.now_naive();
        let opens_before = now + self.join_before;
        let mut query = room::Entity::find()
            .select_only()
            .column(room::Column::Id)
            .join(JoinType::InnerJoin, room::Relation::Reservation.def())
            .filter(reservation::Column::MemberId.eq(member_id))
            .filter(room::Column::StartAt.lte(opens_before))
            .filter(room::Column::EndAt.gt(now));
        if let Some(group_id) = group_id {
            query = query.filter(room::Column::GroupId.eq(group_id));
        }
        match query.into_tuple::<i64>().all(self.db).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::warn!(error = %e, member_id, "listing a member's open video rooms failed");
                Vec::new()
            }
        }
    }

    /// Removes `member_id` from the video rooms `rooms` (in the background, within seconds).
    pub fn remove(&self, member_id: i64, rooms: Vec<i64>) {
        crate::placement::remove_in_background(self.nodes.clone(), member_id, rooms);
    }
}
