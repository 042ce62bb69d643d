//! Response shapes shared by HTTP and STOMP: the contract's `RoomResponse` and its tombstone.

use chrono::{NaiveDateTime, Timelike};
use ppodok_domain::schedule::Phase;
use ppodok_domain::time::{format_local_datetime, utc_to_local};
use serde::Serialize;
use utoipa::ToSchema;

use crate::calendar::RoomView;
use crate::state::AppState;

/// The contract's `RoomResponse`, plus the server's clock and the room's phase so clients can
/// run their timers against the server.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomResponse {
    pub room_id: Option<i64>,
    pub group_id: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub profiles: Option<Vec<Option<String>>>,
    pub member_ids: Option<Vec<i64>>,
    /// Server time when the response was made (service zone, contract format).
    pub server_time: String,
    /// before | study | break | ended (null for a tombstone).
    #[schema(value_type = Option<String>)]
    pub phase: Option<Phase>,
    /// When the phase next changes (null once ended).
    pub next_phase_at: Option<String>,
}

/// Contract form of a stored UTC time in the service zone, at millisecond precision.
pub fn local(state: &AppState, t: NaiveDateTime) -> String {
    let t = t.and_utc();
    let to_millis = t
        .with_nanosecond(t.timestamp_subsec_millis() * 1_000_000)
        .unwrap_or(t);
    format_local_datetime(utc_to_local(to_millis, state.zone))
}

pub fn room_response(state: &AppState, room: &RoomView) -> RoomResponse {
    let now = state.clock.now_naive();
    let (phase, next) = state.grid.phase(room.start_at, now);
    RoomResponse {
        room_id: Some(room.room_id),
        group_id: Some(room.group_id),
        start_time: Some(local(state, room.start_at)),
        end_time: Some(local(state, room.end_at)),
        profiles: Some(room.profiles.clone()),
        member_ids: Some(room.member_ids.clone()),
        server_time: local(state, now),
        phase: Some(phase),
        next_phase_at: next.map(|t| local(state, t)),
    }
}

/// The contract's removal notice: everything null but the start time.
pub fn tombstone(state: &AppState, start_at: NaiveDateTime) -> RoomResponse {
    RoomResponse {
        room_id: None,
        group_id: None,
        start_time: Some(local(state, start_at)),
        end_time: None,
        profiles: None,
        member_ids: None,
        server_time: local(state, state.clock.now_naive()),
        phase: None,
        next_phase_at: None,
    }
}
