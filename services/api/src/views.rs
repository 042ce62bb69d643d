//! Response shapes shared by HTTP and STOMP: the contract's `RoomResponse` and its tombstone.

use chrono::NaiveDateTime;

pub use crate::calendar_body::{local_in, room_response_at, RoomResponse};

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
