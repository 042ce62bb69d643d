//! The room schedule: a slot grid of study + break cycles, and the phase of a room at any instant.
//!
//! Default: 25 minutes of study then 5 of break, slots starting at :00 and :30 in the service zone.

use chrono::{Duration, NaiveDateTime, Timelike};
use serde::Serialize;

/// The cycle every room follows. All rooms of a deployment share one grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrid {
    /// Length of one slot (study + break), in minutes; slots start at multiples of it from midnight.
    pub cycle_minutes: u32,
    /// The study part at the start of each slot, in minutes.
    pub study_minutes: u32,
}

impl Default for SlotGrid {
    fn default() -> Self {
        Self {
            cycle_minutes: 30,
            study_minutes: 25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    Study,
    Break,
    Ended,
}

impl SlotGrid {
    /// A grid is usable when the study part fits in the cycle and cycles tile a day.
    pub fn new(cycle_minutes: u32, study_minutes: u32) -> Option<Self> {
        let ok = cycle_minutes > 0
            && study_minutes > 0
            && study_minutes <= cycle_minutes
            && (24 * 60) % cycle_minutes == 0;
        ok.then_some(Self {
            cycle_minutes,
            study_minutes,
        })
    }

    /// True when a local start time sits exactly on the grid.
    pub fn is_slot_start(&self, local: NaiveDateTime) -> bool {
        let minutes = local.hour() * 60 + local.minute();
        local.second() == 0 && local.nanosecond() == 0 && minutes.is_multiple_of(self.cycle_minutes)
    }

    pub fn study(&self) -> Duration {
        Duration::minutes(self.study_minutes as i64)
    }

    pub fn cycle(&self) -> Duration {
        Duration::minutes(self.cycle_minutes as i64)
    }

    /// End of the study part (the room's `endTime`).
    pub fn room_end(&self, start: NaiveDateTime) -> NaiveDateTime {
        start + self.study()
    }

    /// Phase of a room starting at `start` at instant `now`, and when it next changes (None once ended).
    pub fn phase(
        &self,
        start: NaiveDateTime,
        now: NaiveDateTime,
    ) -> (Phase, Option<NaiveDateTime>) {
        let study_end = start + self.study();
        let cycle_end = start + self.cycle();
        if now < start {
            (Phase::Before, Some(start))
        } else if now < study_end {
            (Phase::Study, Some(study_end))
        } else if now < cycle_end {
            (Phase::Break, Some(cycle_end))
        } else {
            (Phase::Ended, None)
        }
    }
}

/// Clamps a presence interval to a window and returns the milliseconds it covers (0 if none).
pub fn overlap_ms(
    from: NaiveDateTime,
    to: NaiveDateTime,
    window_start: NaiveDateTime,
    window_end: NaiveDateTime,
) -> i64 {
    let start = from.max(window_start);
    let end = to.min(window_end);
    if end > start {
        (end - start).num_milliseconds()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn t(h: u32, m: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(h, m, s)
            .unwrap()
    }

    #[test]
    fn default_grid_accepts_only_half_hours() {
        let g = SlotGrid::default();
        assert!(g.is_slot_start(t(10, 0, 0)));
        assert!(g.is_slot_start(t(23, 30, 0)));
        assert!(!g.is_slot_start(t(10, 15, 0)));
        assert!(!g.is_slot_start(t(10, 30, 1)));
        assert_eq!(g.room_end(t(10, 0, 0)), t(10, 25, 0));
    }

    #[test]
    fn configurable_grid_follows_the_same_rules() {
        let g = SlotGrid::new(60, 50).unwrap();
        assert!(g.is_slot_start(t(9, 0, 0)));
        assert!(!g.is_slot_start(t(9, 30, 0)));
        assert_eq!(g.room_end(t(9, 0, 0)), t(9, 50, 0));
        assert!(SlotGrid::new(30, 31).is_none());
        assert!(SlotGrid::new(7, 5).is_none(), "7 does not tile a day");
        assert!(SlotGrid::new(0, 0).is_none());
    }

    #[test]
    fn phases_follow_the_cycle() {
        let g = SlotGrid::default();
        let s = t(10, 0, 0);
        assert_eq!(g.phase(s, t(9, 59, 59)), (Phase::Before, Some(s)));
        assert_eq!(g.phase(s, s), (Phase::Study, Some(t(10, 25, 0))));
        assert_eq!(g.phase(s, t(10, 25, 0)), (Phase::Break, Some(t(10, 30, 0))));
        assert_eq!(g.phase(s, t(10, 30, 0)), (Phase::Ended, None));
    }

    #[test]
    fn overlap_is_clamped_to_the_window() {
        let (ws, we) = (t(10, 0, 0), t(10, 25, 0));
        assert_eq!(overlap_ms(t(9, 50, 0), t(10, 10, 0), ws, we), 600_000);
        assert_eq!(overlap_ms(t(10, 20, 0), t(11, 0, 0), ws, we), 300_000);
        assert_eq!(overlap_ms(t(9, 0, 0), t(9, 30, 0), ws, we), 0);
        assert_eq!(overlap_ms(t(10, 30, 0), t(10, 40, 0), ws, we), 0);
        assert_eq!(overlap_ms(t(10, 10, 0), t(10, 5, 0), ws, we), 0);
    }
}
