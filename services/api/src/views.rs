//! Response shapes shared by HTTP and STOMP: the contract's `RoomResponse` and its tombstone.

use chrono::NaiveDateTime;

use crate::calendar::RoomView;
pub use crate::calendar_body::{local_in, room_response_at, RoomResponse};
use crate::state::AppState;

/// Contract form of a stored UTC time in the service zone, at millisecond precision.
pub fn local(state: &AppState, t: NaiveDateTime) -> String {
    local_in(state.zone, t)
}

pub fn room_response(state: &AppState, room: &RoomView) -> RoomResponse {
    room_response_at(state.zone, &state.grid, room, state.clock.now_naive())
}

/// The contract's removal notice: everything null but the start time.
pub fn tombstone(state: &AppState, start_at: NaiveDateTime) -> RoomResponse {
    tombstone_at(state.zone, start_at, state.clock.now_naive())
}

/// The removal notice of the room at `start_at`, as of `now`, in `zone`.
pub fn tombstone_at(
    zone: chrono_tz::Tz,
    start_at: NaiveDateTime,
    now: NaiveDateTime,
) -> RoomResponse {
    RoomResponse {
        room_id: None,
        group_id: None,
        start_time: Some(local_in(zone, start_at)),
        end_time: None,
        profiles: None,
        member_ids: None,
        server_time: local_in(zone, now),
        phase: None,
        next_phase_at: None,
    }
}
