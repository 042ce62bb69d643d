//! Rooms: the group calendar, my bookings, booking and cancelling, attendance, SFU presence.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDateTime};
use ppodok_domain::time::{local_to_utc, parse_local_datetime};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::attendance::{self, AttendanceError, Source};
use crate::auth::CurrentMember;
use crate::calendar;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::rooms::{self, BookingError, Cancelled};
use crate::state::AppState;
use crate::video::VideoError;
use crate::views::{local_in, room_response_at, RoomResponse};
use crate::webhooks::{Ingest, SfuEvent, WebhookError};

/// Booking refusals (also of the STOMP booking commands, by their public message).
impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        match e {
            BookingError::BadTime => ApiError::BadRequest(rooms::MSG_BAD_TIME.into()),
            BookingError::Started => ApiError::BadRequest(rooms::MSG_STARTED.into()),
            BookingError::BeyondHorizon(horizon) => {
                ApiError::BadRequest(format!("공부방은 {horizon}일 이내로만 예약할 수 있어요."))
            }
            BookingError::NoGroup(id) => ApiError::group_not_found(id),
            BookingError::Stranger => ApiError::Forbidden,
            e @ BookingError::Vanished(_) => ApiError::Internal(anyhow::Error::new(e)),
            BookingError::Store(e) => e.into(),
        }
    }
}

/// The video token workflow's refusals (also of the legacy token endpoint).
impl From<VideoError> for ApiError {
    fn from(e: VideoError) -> Self {
        match e {
            VideoError::Room(e) => e.into(),
            VideoError::NotBooked => ApiError::Forbidden,
            VideoError::OutsideWindow => {
                ApiError::BadRequest("입장 가능한 시간이 아닙니다.".into())
            }
            VideoError::Unavailable => ApiError::Unavailable,
            VideoError::Store(e) => e.into(),
        }
    }
}

fn parse_local(state: &AppState, name: &str, value: &str) -> ApiResult<NaiveDateTime> {
    let local = parse_local_datetime(value).ok_or_else(|| {
        ApiError::BadRequest(format!("{name}은(는) YYYY-MM-DDTHH:mm:ss 형식이어야 해요."))
    })?;
    local_to_utc(local, state.zone)
        .map(|t| t.naive_utc())
        .ok_or_else(|| ApiError::BadRequest(format!("{name}은(는) 존재하지 않는 시각이에요.")))
}

/// Parses and bounds a calendar window.
fn window(state: &AppState, from: &str, to: &str) -> ApiResult<(NaiveDateTime, NaiveDateTime)> {
    let (from, to) = (
        parse_local(state, "from", from)?,
        parse_local(state, "to", to)?,
    );
    if to <= from {
        return Err(ApiError::BadRequest("to는 from보다 뒤여야 해요.".into()));
    }
    let max = state.settings.rooms.max_window_days;
    if to - from > Duration::days(max) {
        return Err(ApiError::BadRequest(format!(
            "조회 기간은 {max}일을 넘을 수 없어요."
        )));
    }
    Ok((from, to))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct CalendarQuery {
    pub group_id: i64,
    /// Local time `YYYY-MM-DDTHH:mm:ss`: rooms starting at or after it.
    #[param(
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub from: String,
    /// Local time: rooms ending at or before it.
    #[param(
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub to: String,
}

/// The group calendar (cached per group and window; members only).
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms", params(CalendarQuery),
    responses((status = 200, body = [RoomResponse]), (status = 403, description = "not a member")),
    security(("bearer" = [])))]
pub async fn group_calendar(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<CalendarQuery>,
) -> ApiResult<HttpResponse> {
    let (from, to) = window(&state, &q.from, &q.to)?;
    let body = crate::cache::CalendarReader {
        cache: &state.calendar_cache,
        read: &state.read,
        zone: state.zone,
        grid: &state.grid,
    }
    .group_body(q.group_id, me.id(), from, to, state.clock.now_naive())
    .await?;
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

#[derive(Deserialize, IntoParams)]
pub struct WindowQuery {
    /// Local time `YYYY-MM-DDTHH:mm:ss`.
    #[param(
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub from: String,
    /// Local time `YYYY-MM-DDTHH:mm:ss`.
    #[param(
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub to: String,
}

/// My bookings across all my groups in a window.
#[utoipa::path(get, path = "/api/v1/rooms/all", tag = "rooms", params(WindowQuery),
    responses((status = 200, body = [RoomResponse])), security(("bearer" = [])))]
pub async fn my_calendar(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<WindowQuery>,
) -> ApiResult<HttpResponse> {
    let (from, to) = window(&state, &q.from, &q.to)?;
    let rooms = calendar::my_rooms(&state.read, me.id(), from, to).await?;
    Ok(envelope::ok(
        rooms
            .iter()
            .map(|r| room_response(&state, r))
            .collect::<Vec<_>>(),
    ))
}

/// My next room that has not ended (data null when none).
#[utoipa::path(get, path = "/api/v1/rooms/nearest", tag = "rooms",
    responses((status = 200, body = Option<RoomResponse>)), security(("bearer" = [])))]
pub async fn nearest(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let room = calendar::nearest_room(&state.read, me.id(), state.clock.now_naive()).await?;
    Ok(envelope::ok(room.map(|r| room_response(&state, &r))))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookRequest {
    pub group_id: i64,
    /// Slot start, local time on the grid (`YYYY-MM-DDTHH:mm:ss`, :00 or :30 by default).
    #[schema(
        pattern = r#"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"#
    )]
    pub start_time: String,
}

/// Books me into a slot, creating its room when empty. Idempotent: 201 when booked now, 200 when
/// I was booked already.
#[utoipa::path(post, path = "/api/v1/rooms/reservations", tag = "rooms", request_body = BookRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 201, body = RoomResponse), (status = 200, body = RoomResponse, description = "already booked"),
              (status = 400, description = "off the grid, started or too far ahead"), (status = 403, description = "not a member")),
    security(("bearer" = [])))]
pub async fn book(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<BookRequest>,
) -> ApiResult<HttpResponse> {
    let local = parse_local_datetime(&body.start_time)
        .ok_or_else(|| ApiError::BadRequest(rooms::MSG_BAD_TIME.into()))?;
    let bookings = state.bookings();
    let start = bookings.slot_start_utc(local)?;
    state.limit_bookings(me.id()).await?;
    let booked = bookings.book(me.id(), body.group_id, start).await?;
    let response = room_response(&state, &booked.room);
    Ok(if booked.newly_booked {
        envelope::created(response)
    } else {
        envelope::ok(response)
    })
}

/// Cancels my booking (before the room starts). Idempotent; data is the room as it remains, or
/// null when it went away with my booking.
#[utoipa::path(delete, path = "/api/v1/rooms/{roomId}/reservation", tag = "rooms", params(("roomId" = i64, Path)),
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 200, body = Option<RoomResponse>), (status = 400, description = "already started")),
    security(("bearer" = [])))]
pub async fn cancel(
    state: web::Data<AppState>,
    me: CurrentMember,
    path: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let room_id = path.into_inner();
    state.limit_bookings(me.id()).await?;
    let data = match state.bookings().cancel(me.id(), room_id).await? {
        Cancelled::StillOpen(room) => {
            state.video_seats().remove(me.id(), vec![room_id]);
            Some(room_response(&state, &room))
        }
        Cancelled::NotBooked(Some(room)) => Some(room_response(&state, &room)),
        Cancelled::Removed { .. } => {
            state.video_seats().remove(me.id(), vec![room_id]);
            None
        }
        Cancelled::NotBooked(None) => None,
    };
    Ok(HttpResponse::Ok().json(envelope::Envelope {
        data,
        message: "삭제되었습니다.",
        code: "resource.deleted",
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    pub room_id: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub enter_time: Option<String>,
    pub exit_time: Option<String>,
}

/// "I entered the room" (clamped to its start). Entering twice changes nothing.
#[utoipa::path(post, path = "/api/v1/rooms/histories", tag = "rooms", request_body = HistoryRequest,
    responses((status = 201, body = HistoryResponse), (status = 400, description = "room over, or no reservation"), (status = 404, description = "no such room")),
    security(("bearer" = [])))]
pub async fn enter(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<HistoryRequest>,
) -> ApiResult<HttpResponse> {
    let room = attendance::find_room(&state.db, body.room_id, me.id()).await?;
    let now = state.clock.now_naive();
    if now > room.end_at {
        return Err(ApiError::BadRequest("입장 가능한 시간이 아닙니다.".into()));
    }
    let entered = state
        .attendance()
        .enter(me.id(), room.id, Source::Client, now)
        .await?
        .ok_or_else(|| ApiError::BadRequest("입장 가능한 시간이 아닙니다.".into()))?;
    state
        .presence_news()
        .announce(room.group_id, me.id(), room.id, Source::Client, true)
        .await;
    Ok(envelope::created(HistoryResponse {
        enter_time: Some(local(&state, entered)),
        exit_time: None,
    }))
}

/// "I left the room": credits the time since entry (once, clamped). Before the start it does
/// nothing and returns data null.
#[utoipa::path(patch, path = "/api/v1/rooms/histories", tag = "rooms", request_body = HistoryRequest,
    responses((status = 201, body = Option<HistoryResponse>, description = "null when I left before the start"), (status = 400, description = "not in the room"), (status = 404, description = "no such room")),
    security(("bearer" = [])))]
pub async fn exit(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<HistoryRequest>,
) -> ApiResult<HttpResponse> {
    let room = attendance::find_room(&state.db, body.room_id, me.id()).await?;
    let now = state.clock.now_naive();
    // Leaving before the start closes my presence with nothing credited (it used to stay open and
    // be credited the whole room later); the contract still answers data null there.
    let early = now < room.start_at;
    let exited = match state.attendance().client_exit(me.id(), room.id, now).await {
        Ok(exited) => exited,
        // Not entered (or not booked) before the start: nothing to close.
        Err(AttendanceError::NotInRoom { .. }) if early => {
            return Ok(envelope::created(Option::<HistoryResponse>::None))
        }
        Err(e) => return Err(e.into()),
    };
    state
        .presence_news()
        .announce(room.group_id, me.id(), room.id, Source::Client, false)
        .await;
    if early {
        return Ok(envelope::created(Option::<HistoryResponse>::None));
    }
    Ok(envelope::created(HistoryResponse {
        enter_time: exited.entered_at.map(|t| local(&state, t)),
        exit_time: Some(local(&state, exited.exited_at)),
    }))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Malformed => ApiError::BadRequest("웹훅 본문을 읽을 수 없어요.".into()),
            WebhookError::Attendance(e) => e.into(),
            WebhookError::Store(e) => e.into(),
        }
    }
}

/// Ingest of SFU webhooks (participant_joined / participant_left / room_finished): credits study
/// time from real presence. Authenticated by the webhook signature only.
#[utoipa::path(post, path = "/api/v1/internal/sfu/webhook", tag = "rooms",
    request_body(content = String, description = "LiveKit WebhookEvent JSON; Authorization: signed JWT with the body's sha256"),
    responses((status = 200, description = "processed"), (status = 401, description = "bad signature")))]
pub async fn sfu_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let auth = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let keys = state.livekit.as_ref().ok_or(ApiError::Unauthorized)?;
    keys.verify_webhook(auth, &body)
        .map_err(|_| ApiError::Unauthorized)?;
    let event = SfuEvent::from_json(&body)?;
    Ingest {
        db: &state.db,
        attendance: state.attendance(),
        presence: state.presence_news(),
    }
    .ingest(event, state.clock.now_naive())
    .await?;
    Ok(envelope::ok(()))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoTokenResponse {
    /// LiveKit access token: identity = member id, name = nickname, grant for this room only.
    pub token: String,
    /// The SFU to connect to with it.
    pub url: String,
    pub identity: String,
    pub room_name: String,
    /// Service-zone local time when the token expires (the SFU refreshes it on the socket).
    pub expires_at: String,
}

/// A video token for a room I booked, from a few minutes before its start until its end.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/video-token", tag = "rooms", params(("roomId" = i64, Path)),
    responses((status = 200, body = VideoTokenResponse), (status = 400, description = "outside the room's window"),
              (status = 403, description = "no reservation in this room"), (status = 404, description = "no such room in my groups")),
    security(("bearer" = [])))]
pub async fn video_token(
    state: web::Data<AppState>,
    me: CurrentMember,
    path: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let minted = state
        .video_tokens()
        .issue(&me.member, path.into_inner())
        .await?;
    Ok(envelope::ok(VideoTokenResponse {
        token: minted.token,
        url: minted.url,
        identity: minted.identity,
        room_name: minted.room_name,
        expires_at: local(&state, minted.expires_at),
    }))
}

/// A room as the contract shows it, now.
fn room_response(state: &AppState, room: &crate::calendar::RoomView) -> RoomResponse {
    room_response_at(state.zone, &state.grid, room, state.clock.now_naive())
}

/// Contract form of a stored UTC time in the service zone.
fn local(state: &AppState, t: chrono::NaiveDateTime) -> String {
    local_in(state.zone, t)
}
