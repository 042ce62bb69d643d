//! Rules behind study statistics, rankings and focus timers: pure arithmetic on instants,
//! durations and counts, so handlers only load rows and shape answers.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The longest window (in days) a history query may cover.
pub const MAX_HISTORY_WINDOW_DAYS: i64 = 400;

/// Why a history window was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// `to` is not after `from`.
    Empty,
    /// Longer than [`MAX_HISTORY_WINDOW_DAYS`].
    TooLong,
}

/// Checks a `[from, to)` history window.
pub fn check_window(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), WindowError> {
    if to <= from {
        return Err(WindowError::Empty);
    }
    if to - from > Duration::days(MAX_HISTORY_WINDOW_DAYS) {
        return Err(WindowError::TooLong);
    }
    Ok(())
}

/// The part of `[from, to)` inside `[window_from, window_to)`, if any.
pub fn clip(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    window_from: DateTime<Utc>,
    window_to: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (start, end) = (from.max(window_from), to.min(window_to));
    (start < end).then_some((start, end))
}

/// The seven study days (Monday to Sunday) of the week containing `day`.
pub fn week_of(day: NaiveDate) -> [NaiveDate; 7] {
    let monday = crate::periods::PeriodKind::Week.start(day);
    std::array::from_fn(|i| monday + Duration::days(i as i64))
}

/// Share of done todos in percent, one decimal; `None` when there are no todos.
pub fn completion_rate(done: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| (done as f64 * 1000.0 / total as f64).round() / 10.0)
}

/// Competition ranks ("1224") of durations already sorted in descending order: equal time
/// shares the rank of the first of them.
pub fn competition_ranks(sorted_desc: &[i64]) -> Vec<u64> {
    let mut ranks = Vec::with_capacity(sorted_desc.len());
    for (i, d) in sorted_desc.iter().enumerate() {
        let rank = match i {
            0 => 1,
            _ if sorted_desc[i - 1] == *d => ranks[i - 1],
            _ => i as u64 + 1,
        };
        ranks.push(rank);
    }
    ranks
}

/// A member's rank given how many members have strictly more time.
pub fn rank_from_ahead(members_ahead: u64) -> u64 {
    members_ahead + 1
}

/// Where a running timer segment stops counting: now, or the idle cap after it began.
pub fn capped_segment_end(
    segment_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    idle_cap: Duration,
) -> DateTime<Utc> {
    now.min(segment_started_at + idle_cap)
        .max(segment_started_at)
}

/// Whether a running segment has reached the idle cap (and so the timer should stop).
pub fn segment_is_idle(
    segment_started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    idle_cap: Duration,
) -> bool {
    now >= segment_started_at + idle_cap
}

/// Elapsed time of a timer: what earlier segments accumulated plus the running segment, capped.
pub fn timer_elapsed_ms(
    accumulated_ms: i64,
    running_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    idle_cap: Duration,
) -> i64 {
    let running = running_since
        .map(|since| (capped_segment_end(since, now, idle_cap) - since).num_milliseconds())
        .unwrap_or(0);
    accumulated_ms + running
}

/// Formats minutes after midnight as `HH:MM`.
pub fn format_hh_mm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Parses `HH:MM` (two-digit hour and minute) into minutes after midnight.
pub fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap()
    }

    #[test]
    fn windows_must_be_forward_and_bounded() {
        assert_eq!(check_window(at(1, 0), at(1, 0)), Err(WindowError::Empty));
        assert_eq!(check_window(at(2, 0), at(1, 0)), Err(WindowError::Empty));
        assert_eq!(check_window(at(1, 0), at(2, 0)), Ok(()));
        let from = at(0, 0);
        assert_eq!(check_window(from, from + Duration::days(400)), Ok(()));
        assert_eq!(
            check_window(from, from + Duration::days(401)),
            Err(WindowError::TooLong)
        );
    }

    #[test]
    fn clipping_keeps_only_the_overlap() {
        assert_eq!(
            clip(at(1, 0), at(3, 0), at(2, 0), at(5, 0)),
            Some((at(2, 0), at(3, 0)))
        );
        assert_eq!(clip(at(1, 0), at(2, 0), at(2, 0), at(5, 0)), None);
        assert_eq!(
            clip(at(3, 0), at(4, 0), at(2, 0), at(5, 0)),
            Some((at(3, 0), at(4, 0)))
        );
    }

    #[test]
    fn a_week_runs_monday_to_sunday() {
        let thursday = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();
        let week = week_of(thursday);
        assert_eq!(week[0], NaiveDate::from_ymd_opt(2026, 3, 2).unwrap());
        assert_eq!(week[6], NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
    }

    #[test]
    fn completion_rate_is_a_percentage_or_none() {
        assert_eq!(completion_rate(0, 0), None);
        assert_eq!(completion_rate(1, 3), Some(33.3));
        assert_eq!(completion_rate(2, 2), Some(100.0));
        assert_eq!(completion_rate(0, 5), Some(0.0));
    }

    #[test]
    fn equal_time_shares_a_rank() {
        assert_eq!(competition_ranks(&[50, 30, 30, 10]), vec![1, 2, 2, 4]);
        assert_eq!(competition_ranks(&[0, 0]), vec![1, 1]);
        assert!(competition_ranks(&[]).is_empty());
        assert_eq!(rank_from_ahead(0), 1);
        assert_eq!(rank_from_ahead(3), 4);
    }

    #[test]
    fn a_running_segment_counts_up_to_the_idle_cap() {
        let cap = Duration::minutes(60);
        assert_eq!(capped_segment_end(at(1, 0), at(1, 20), cap), at(1, 20));
        assert_eq!(capped_segment_end(at(1, 0), at(5, 0), cap), at(2, 0));
        assert!(!segment_is_idle(at(1, 0), at(1, 59), cap));
        assert!(segment_is_idle(at(1, 0), at(2, 0), cap));
        assert_eq!(
            timer_elapsed_ms(600_000, Some(at(1, 0)), at(1, 15), cap),
            600_000 + 15 * 60_000
        );
        assert_eq!(
            timer_elapsed_ms(0, Some(at(1, 0)), at(9, 0), cap),
            60 * 60_000
        );
        assert_eq!(timer_elapsed_ms(42, None, at(9, 0), cap), 42);
    }

    #[test]
    fn hh_mm_round_trips_and_rejects_junk() {
        assert_eq!(parse_hh_mm("05:00"), Some(300));
        assert_eq!(parse_hh_mm("23:59"), Some(1439));
        assert_eq!(format_hh_mm(300), "05:00");
        assert_eq!(format_hh_mm(0), "00:00");
        for bad in [
            "24:00", "5:00", "05:60", "0500", "", "ab:cd", "-1:00", "05:0",
        ] {
            assert_eq!(parse_hh_mm(bad), None, "{bad}");
        }
    }
}
