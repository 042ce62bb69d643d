//! A cached calendar's response body, rendered once per cache entry.
//!
//! The JSON of a calendar is `{"data":[RoomResponse…],"message":"성공","code":"success"}`. Of each
//! room, everything up to `serverTime` is fixed for the entry (rendered once); `phase` and
//! `nextPhaseAt` change only when the clock crosses one of the rooms' phase boundaries, so they
//! are rendered once per interval between boundaries; `serverTime` (the same for every room of a
//! response, at millisecond precision) is spliced in once per millisecond: the last body is kept
//! with the millisecond and phase interval it was made for, and requests in the same millisecond
//! share it (a reference count, no copy). Byte for byte what rendering every `RoomResponse`
//! afresh at that instant gives.

use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

use chrono::{NaiveDateTime, Timelike};
use chrono_tz::Tz;
use ppodok_domain::schedule::{Phase, SlotGrid};
use ppodok_domain::time::{format_local_datetime, utc_to_local};
use serde::Serialize;
use utoipa::ToSchema;

use crate::calendar::RoomView;

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

/// Contract form of a stored UTC time in `zone`, at millisecond precision.
pub fn local_in(zone: chrono_tz::Tz, t: NaiveDateTime) -> String {
    let t = t.and_utc();
    let to_millis = t
        .with_nanosecond(t.timestamp_subsec_millis() * 1_000_000)
        .unwrap_or(t);
    format_local_datetime(utc_to_local(to_millis, zone))
}

/// A room as seen at `now`.
pub fn room_response_at(
    zone: chrono_tz::Tz,
    grid: &SlotGrid,
    room: &RoomView,
    now: NaiveDateTime,
) -> RoomResponse {
    let (phase, next) = grid.phase(room.start_at, now);
    RoomResponse {
        room_id: Some(room.room_id),
        group_id: Some(room.group_id),
        start_time: Some(local_in(zone, room.start_at)),
        end_time: Some(local_in(zone, room.end_at)),
        profiles: Some(room.profiles.clone()),
        member_ids: Some(room.member_ids.clone()),
        server_time: local_in(zone, now),
        phase: Some(phase),
        next_phase_at: next.map(|t| local_in(zone, t)),
    }
}

const HEAD: &[u8] = b"{\"data\":[";
const TAIL: &[u8] = "],\"message\":\"성공\",\"code\":\"success\"}".as_bytes();
const SERVER_TIME: &[u8] = b",\"serverTime\":\"";

/// One cache entry: the rooms, and their rendered forms once asked for.
pub struct CalendarEntry {
    pub rooms: Vec<RoomView>,
    /// Per room, its JSON up to and including `"serverTime":"`.
    prefixes: OnceLock<Vec<Vec<u8>>>,
    /// The body for the current phase interval.
    phased: RwLock<Option<Arc<Phased>>>,
    /// The last body served: its millisecond, the phase interval it was spliced from, the bytes.
    last: RwLock<Option<(i64, Arc<Phased>, Bytes)>>,
}

/// The body between two phase boundaries, with the offsets where `serverTime` goes.
struct Phased {
    /// Instants in `[valid_from, valid_until)` give these phases (None = no boundary ahead).
    valid_from: NaiveDateTime,
    valid_until: Option<NaiveDateTime>,
    template: Vec<u8>,
    holes: Vec<usize>,
}

impl CalendarEntry {
    pub fn new(rooms: Vec<RoomView>) -> Self {
        Self {
            rooms,
            prefixes: OnceLock::new(),
            phased: RwLock::new(None),
            last: RwLock::new(None),
        }
    }

    fn prefixes(&self, zone: Tz) -> &[Vec<u8>] {
        self.prefixes.get_or_init(|| {
            self.rooms
                .iter()
                .map(|r| {
                    let mut json = serde_json::to_vec(&RoomResponse {
                        room_id: Some(r.room_id),
                        group_id: Some(r.group_id),
                        start_time: Some(local_in(zone, r.start_at)),
                        end_time: Some(local_in(zone, r.end_at)),
                        profiles: Some(r.profiles.clone()),
                        member_ids: Some(r.member_ids.clone()),
                        server_time: String::new(),
                        phase: None,
                        next_phase_at: None,
                    })
                    .expect("rooms serialise");
                    // `serverTime` follows every field that holds member data, and a string value
                    // cannot contain an unescaped quote: the last occurrence is the field.
                    let at = json
                        .windows(SERVER_TIME.len())
                        .rposition(|w| w == SERVER_TIME)
                        .expect("serverTime is rendered");
                    json.truncate(at + SERVER_TIME.len());
                    json
                })
                .collect()
        })
    }

    fn phased(&self, zone: Tz, grid: &SlotGrid, now: NaiveDateTime) -> Arc<Phased> {
        if let Some(p) = self.phased.read().expect("entry poisoned").as_ref() {
            if p.valid_from <= now && p.valid_until.is_none_or(|until| now < until) {
                return p.clone();
            }
        }
        let prefixes = self.prefixes(zone);
        let mut template = Vec::with_capacity(prefixes.iter().map(Vec::len).sum::<usize>() + 4096);
        let mut holes = Vec::with_capacity(prefixes.len());
        let (mut valid_from, mut valid_until) = (NaiveDateTime::MIN, None::<NaiveDateTime>);
        template.extend_from_slice(HEAD);
        for (i, (room, prefix)) in self.rooms.iter().zip(prefixes).enumerate() {
            if i > 0 {
                template.push(b',');
            }
            template.extend_from_slice(prefix);
            holes.push(template.len());
            let (phase, next) = grid.phase(room.start_at, now);
            // The last boundary at or before now, and the next one after it.
            let boundaries = [
                room.start_at,
                room.start_at + grid.study(),
                room.start_at + grid.cycle(),
            ];
            if let Some(last) = boundaries.iter().filter(|b| **b <= now).max() {
                valid_from = valid_from.max(*last);
            }
            if let Some(next) = next {
                valid_until = Some(valid_until.map_or(next, |u| u.min(next)));
            }
            template.extend_from_slice(b"\",\"phase\":");
            serde_json::to_writer(&mut template, &phase).expect("phases serialise");
            template.extend_from_slice(b",\"nextPhaseAt\":");
            match next {
                Some(t) => {
                    serde_json::to_writer(&mut template, &local_in(zone, t)).expect("serialise")
                }
                None => template.extend_from_slice(b"null"),
            }
            template.push(b'}');
        }
        template.extend_from_slice(TAIL);
        let phased = Arc::new(Phased {
            valid_from,
            valid_until,
            template,
            holes,
        });
        *self.phased.write().expect("entry poisoned") = Some(phased.clone());
        phased
    }

    /// The response body at `now`.
    pub fn body(&self, zone: Tz, grid: &SlotGrid, now: NaiveDateTime) -> Bytes {
        let phased = self.phased(zone, grid, now);
        // `serverTime` has millisecond precision and the phases are those of `phased`: a body
        // made for the same millisecond from the same interval is this one.
        let millis = now.and_utc().timestamp_millis();
        if let Some((at, from, body)) = self.last.read().expect("entry poisoned").as_ref() {
            if *at == millis && Arc::ptr_eq(from, &phased) {
                return body.clone();
            }
        }
        let body = Bytes::from(Self::splice(&phased, &local_in(zone, now)));
        *self.last.write().expect("entry poisoned") = Some((millis, phased, body.clone()));
        body
    }

    fn splice(phased: &Phased, server_time: &str) -> Vec<u8> {
        let mut body =
            Vec::with_capacity(phased.template.len() + phased.holes.len() * server_time.len());
        let mut at = 0;
        for hole in &phased.holes {
            body.extend_from_slice(&phased.template[at..*hole]);
            body.extend_from_slice(server_time.as_bytes());
            at = *hole;
        }
        body.extend_from_slice(&phased.template[at..]);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, NaiveDate};

    fn fresh(zone: Tz, grid: &SlotGrid, rooms: &[RoomView], now: NaiveDateTime) -> Vec<u8> {
        let responses: Vec<RoomResponse> = rooms
            .iter()
            .map(|r| room_response_at(zone, grid, r, now))
            .collect();
        serde_json::to_vec(&crate::envelope::Envelope {
            data: responses,
            message: "성공",
            code: "success",
        })
        .unwrap()
    }

    #[test]
    fn the_body_equals_a_fresh_render_at_every_instant() {
        let zone: Tz = "Asia/Seoul".parse().unwrap();
        let grid = SlotGrid::default();
        let start = NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_opt(1, 0, 0)
            .unwrap();
        let rooms: Vec<RoomView> = (0..5)
            .map(|i| RoomView {
                room_id: i,
                group_id: 7,
                start_at: start + Duration::minutes(30 * i),
                end_at: start + Duration::minutes(30 * i + 25),
                member_ids: vec![1, 2],
                profiles: vec![Some("http://x/\"serverTime\":\"a.png".into()), None],
            })
            .collect();
        let entry = CalendarEntry::new(rooms.clone());
        let mut now = start - Duration::minutes(3);
        while now < start + Duration::hours(3) {
            assert_eq!(
                String::from_utf8(entry.body(zone, &grid, now).to_vec()).unwrap(),
                String::from_utf8(fresh(zone, &grid, &rooms, now)).unwrap(),
                "at {now}"
            );
            now += Duration::milliseconds(61_237);
        }
        // Around a boundary, within one millisecond and from one millisecond to the next (the
        // body kept for a millisecond is reused only within it and its phase interval).
        let boundary = start + Duration::minutes(25);
        for now in [
            boundary - Duration::milliseconds(1),
            boundary - Duration::nanoseconds(1),
            boundary,
            boundary + Duration::nanoseconds(999_999),
            boundary + Duration::milliseconds(1),
            boundary - Duration::nanoseconds(1),
        ] {
            assert_eq!(
                entry.body(zone, &grid, now),
                fresh(zone, &grid, &rooms, now),
                "at {now}"
            );
            assert_eq!(
                entry.body(zone, &grid, now),
                fresh(zone, &grid, &rooms, now),
                "again"
            );
        }
        // Backwards too (a manual clock may be set back).
        let early = start - Duration::hours(1);
        assert_eq!(
            entry.body(zone, &grid, early),
            fresh(zone, &grid, &rooms, early)
        );
        let empty = CalendarEntry::new(Vec::new());
        assert_eq!(
            empty.body(zone, &grid, early),
            fresh(zone, &grid, &[], early)
        );
    }
}
