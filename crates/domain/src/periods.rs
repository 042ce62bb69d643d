//! Study days and ranking periods.
//!
//! A "study day" starts at a configurable boundary (e.g. 05:00) in a time zone, so a session from
//! 01:00 to 02:00 counts for the previous day. Intervals that cross a boundary are split.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Where study days begin: a zone and minutes after local midnight (0..1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayBoundary {
    pub zone: Tz,
    pub minutes: u32,
}

impl DayBoundary {
    pub fn new(zone: Tz, minutes: u32) -> Option<Self> {
        (minutes < 24 * 60).then_some(Self { zone, minutes })
    }

    fn offset(&self) -> Duration {
        Duration::minutes(self.minutes as i64)
    }

    /// The study day an instant belongs to.
    pub fn day_of(&self, instant: DateTime<Utc>) -> NaiveDate {
        (instant.with_timezone(&self.zone).naive_local() - self.offset()).date()
    }

    /// The instant a study day starts (first valid instant if the boundary falls in a DST gap).
    pub fn start_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let local = day.and_time(NaiveTime::MIN) + self.offset();
        let mut probe = local;
        // Walk forward across a DST gap, minute by minute (gaps are at most a few hours).
        for _ in 0..(6 * 60) {
            match self.zone.from_local_datetime(&probe) {
                chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
                chrono::LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
                chrono::LocalResult::None => probe += Duration::minutes(1),
            }
        }
        Utc.from_utc_datetime(&local)
    }

    /// Splits a UTC interval into (study day, milliseconds) parts.
    pub fn split(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(NaiveDate, i64)> {
        let mut parts = Vec::new();
        let mut cursor = from;
        while cursor < to {
            let day = self.day_of(cursor);
            let next = self.start_of(day + Duration::days(1)).min(to);
            parts.push((day, (next - cursor).num_milliseconds()));
            cursor = next;
        }
        parts
    }

    /// Sums intervals per study day.
    pub fn per_day(
        &self,
        intervals: impl IntoIterator<Item = (DateTime<Utc>, DateTime<Utc>)>,
    ) -> BTreeMap<NaiveDate, i64> {
        let mut days = BTreeMap::new();
        for (from, to) in intervals {
            for (day, ms) in self.split(from, to) {
                *days.entry(day).or_insert(0) += ms;
            }
        }
        days
    }
}

/// Converts a stored UTC `NaiveDateTime` into an instant.
pub fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t)
}

/// A ranking period kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" | "daily" => Some(Self::Day),
            "week" | "weekly" => Some(Self::Week),
            "month" | "monthly" => Some(Self::Month),
            _ => None,
        }
    }

    /// First study day of the period containing `day` (weeks start on Monday).
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Day => day,
            PeriodKind::Week => day - Duration::days(day.weekday().num_days_from_monday() as i64),
            PeriodKind::Month => day.with_day(1).expect("day 1 exists"),
        }
    }

    /// First study day after the period that starts at `start`.
    pub fn end(self, start: NaiveDate) -> NaiveDate {
        match self {
            PeriodKind::Day => start + Duration::days(1),
            PeriodKind::Week => start + Duration::days(7),
            PeriodKind::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1).expect("first of month exists")
            }
        }
    }
}

/// The (period, period start, ms) totals an interval adds to: per day, week and month.
pub fn period_credits(
    boundary: &DayBoundary,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(PeriodKind, NaiveDate, i64)> {
    let mut totals: BTreeMap<(u8, NaiveDate), i64> = BTreeMap::new();
    for (day, ms) in boundary.split(from, to) {
        for (i, kind) in PeriodKind::ALL.iter().enumerate() {
            *totals.entry((i as u8, kind.start(day))).or_insert(0) += ms;
        }
    }
    totals
        .into_iter()
        .map(|((i, start), ms)| (PeriodKind::ALL[i as usize], start, ms))
        .collect()
}

/// Current and best streaks of consecutive study days. The current streak still counts when
/// today has no study yet but yesterday had (the day is not over).
pub fn streaks(days: &BTreeSet<NaiveDate>, today: NaiveDate) -> (u32, u32) {
    let mut best = 0u32;
    let mut run = 0u32;
    let mut prev: Option<NaiveDate> = None;
    for &d in days.iter().filter(|d| **d <= today) {
        run = match prev {
            Some(p) if d - p == Duration::days(1) => run + 1,
            _ => 1,
        };
        best = best.max(run);
        prev = Some(d);
    }
    let current = match prev {
        Some(last) if last == today || last == today - Duration::days(1) => run,
        _ => 0,
    };
    (current, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seoul() -> Tz {
        "Asia/Seoul".parse().unwrap()
    }

    fn kst(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        seoul()
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_session_crossing_midnight_is_split_between_days() {
        let b = DayBoundary::new(seoul(), 0).unwrap();
        let parts = b.split(kst(2026, 11, 24, 23, 40), kst(2026, 11, 25, 0, 20));
        assert_eq!(
            parts,
            vec![
                (day(2026, 11, 24), 20 * 60_000),
                (day(2026, 11, 25), 20 * 60_000)
            ]
        );
    }

    #[test]
    fn with_a_five_oclock_boundary_the_night_belongs_to_the_previous_day() {
        let b = DayBoundary::new(seoul(), 5 * 60).unwrap();
        // 23:40 → 00:20 is one study day now.
        assert_eq!(
            b.split(kst(2026, 11, 24, 23, 40), kst(2026, 11, 25, 0, 20)),
            vec![(day(2026, 11, 24), 40 * 60_000)]
        );
        // 04:50 → 05:10 crosses the boundary.
        assert_eq!(
            b.split(kst(2026, 11, 25, 4, 50), kst(2026, 11, 25, 5, 10)),
            vec![
                (day(2026, 11, 24), 10 * 60_000),
                (day(2026, 11, 25), 10 * 60_000)
            ]
        );
        assert_eq!(b.day_of(kst(2026, 11, 25, 4, 59)), day(2026, 11, 24));
        assert_eq!(b.day_of(kst(2026, 11, 25, 5, 0)), day(2026, 11, 25));
    }

    #[test]
    fn the_same_instant_is_a_different_day_in_another_zone() {
        let instant = kst(2026, 11, 25, 8, 0); // 2026-11-24 23:00 UTC
        let seoul_day = DayBoundary::new(seoul(), 0).unwrap().day_of(instant);
        let ny_day = DayBoundary::new("America/New_York".parse().unwrap(), 0)
            .unwrap()
            .day_of(instant);
        assert_eq!(seoul_day, day(2026, 11, 25));
        assert_eq!(ny_day, day(2026, 11, 24));
    }

    #[test]
    fn dst_days_have_their_real_length() {
        let b = DayBoundary::new("Europe/Berlin".parse().unwrap(), 0).unwrap();
        let start = b.start_of(day(2026, 3, 29));
        let end = b.start_of(day(2026, 3, 30));
        assert_eq!((end - start).num_hours(), 23);
    }

    #[test]
    fn periods_start_on_monday_and_the_first() {
        let d = day(2026, 11, 26); // a Thursday
        assert_eq!(PeriodKind::Week.start(d), day(2026, 11, 23));
        assert_eq!(PeriodKind::Month.start(d), day(2026, 11, 1));
        assert_eq!(PeriodKind::Month.end(day(2026, 12, 1)), day(2027, 1, 1));
        assert_eq!(PeriodKind::Week.end(day(2026, 11, 23)), day(2026, 11, 30));
    }

    #[test]
    fn period_credits_split_across_a_month_end() {
        let b = DayBoundary::new(seoul(), 0).unwrap();
        let credits = period_credits(&b, kst(2026, 11, 30, 23, 50), kst(2026, 12, 1, 0, 10));
        let ten = 10 * 60_000;
        assert!(credits.contains(&(PeriodKind::Day, day(2026, 11, 30), ten)));
        assert!(credits.contains(&(PeriodKind::Day, day(2026, 12, 1), ten)));
        assert!(
            credits.contains(&(PeriodKind::Week, day(2026, 11, 30), 2 * ten)),
            "{credits:?}"
        );
        assert!(credits.contains(&(PeriodKind::Month, day(2026, 11, 1), ten)));
        assert!(credits.contains(&(PeriodKind::Month, day(2026, 12, 1), ten)));
        assert_eq!(credits.len(), 5);
    }

    #[test]
    fn streaks_over_gaps_and_today() {
        let set = |ds: &[NaiveDate]| ds.iter().copied().collect::<BTreeSet<_>>();
        let today = day(2026, 11, 24);
        assert_eq!(streaks(&set(&[]), today), (0, 0));
        assert_eq!(
            streaks(
                &set(&[day(2026, 11, 22), day(2026, 11, 23), day(2026, 11, 24)]),
                today
            ),
            (3, 3)
        );
        // Yesterday counts while today is still open.
        assert_eq!(
            streaks(&set(&[day(2026, 11, 22), day(2026, 11, 23)]), today),
            (2, 2)
        );
        // A gap breaks the current streak but not the best.
        assert_eq!(
            streaks(
                &set(&[
                    day(2026, 11, 1),
                    day(2026, 11, 2),
                    day(2026, 11, 3),
                    day(2026, 11, 20),
                    day(2026, 11, 24)
                ]),
                today
            ),
            (1, 3)
        );
        assert_eq!(
            streaks(&set(&[day(2026, 11, 1), day(2026, 11, 2)]), today),
            (0, 2)
        );
    }
}
