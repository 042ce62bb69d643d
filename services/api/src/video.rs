//! Video tokens: a LiveKit access token for a member booked into a room, inside its window.
//! Shared by `POST /api/v1/rooms/{roomId}/video-token` and the legacy `GET /video/getToken`.

use chrono::NaiveDateTime;

use crate::attendance;
use crate::db::entities::member;
use crate::error::ApiError;
use crate::rooms;
use crate::state::AppState;

pub struct VideoToken {
    pub token: String,
    /// Always the member id, whatever a client asks for.
    pub identity: String,
    pub room_name: String,
    pub expires_at: NaiveDateTime,
}

/// Mints a token for `member` in `room_id`: 404 for no such room (or one of another group), 403 without a reservation,
/// 400 outside the window (from `join_before_minutes` before the start to the end).
pub async fn issue(
    state: &AppState,
    member: &member::Model,
    room_id: i64,
) -> Result<VideoToken, ApiError> {
    let room = attendance::find_room(state, room_id, member.id).await?;
    if rooms::reservation_of(&state.db, room.id, member.id)
        .await?
        .is_none()
    {
        return Err(ApiError::Forbidden);
    }
    let now = state.clock.now_naive();
    let opens =
        room.start_at - chrono::Duration::minutes(state.settings.livekit.join_before_minutes);
    if now < opens || now >= room.end_at {
        return Err(ApiError::BadRequest("입장 가능한 시간이 아닙니다.".into()));
    }
    let keys = state.livekit.as_ref().ok_or(ApiError::Unavailable)?;
    let identity = member.id.to_string();
    let room_name = room.id.to_string();
    // Token times are checked by the SFU against the real clock.
    let issued = chrono::Utc::now().timestamp();
    let ttl = state.settings.livekit.token_ttl_secs;
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
    })
}
