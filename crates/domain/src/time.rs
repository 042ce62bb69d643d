//! The contract's wire formats for times and durations, and the UTC ↔ service-zone mapping.
//!
//! Stored times are UTC. The v1 contract speaks zone-less local times (`YYYY-MM-DDTHH:mm:ss`) in the
//! service's configured zone, and ISO-8601 durations such as `PT1H25M30.5S`.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Formats a local time the way the contract prints it: seconds always, fractions only when
/// non-zero (trailing zeros trimmed), never a zone.
pub fn format_local_datetime(t: NaiveDateTime) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}", frac.trim_end_matches('0'))
}

/// Parses a contract local time: `YYYY-MM-DDTHH:mm:ss` with optional fraction (`HH:mm` accepted too).
pub fn parse_local_datetime(s: &str) -> Option<NaiveDateTime> {
    if !local_datetime_shaped(s) {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
}

/// The shape [`LOCAL_DATETIME_PATTERN`] describes, checked byte by byte (chrono alone also takes
/// one-digit months, signed years and other forms the contract does not).
fn local_datetime_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let minutes = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16);
    minutes
        && match b.len() {
            16 | 19 => b.len() == 16 || (at(16, b':') && digits(17..19)),
            21..=29 => at(16, b':') && digits(17..19) && at(19, b'.') && digits(20..b.len()),
            _ => false,
        }
}

/// The contract's local date-time, as a JSON Schema / ECMA-262 pattern (the OpenAPI document
/// uses it; [`parse_local_datetime`] accepts exactly this shape).
pub const LOCAL_DATETIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$";

/// The service-zone wall-clock time of a UTC instant.
pub fn utc_to_local(t: DateTime<Utc>, zone: Tz) -> NaiveDateTime {
    t.with_timezone(&zone).naive_local()
}

/// The UTC instant of a service-zone wall-clock time. An ambiguous time (clocks turned back)
/// takes the earlier instant; a time that does not exist (clocks turned forward) is `None`.
pub fn local_to_utc(t: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&t) {
        LocalResult::Single(z) => Some(z.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// Formats a non-negative duration in milliseconds as ISO-8601 the way `java.time.Duration` prints
/// it: `PT0S`, `PT25M`, `PT1H25M30.5S`. Hours are not folded into days.
pub fn format_iso_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "PT0S".to_owned();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let seconds = (ms / 1000) % 60;
    let millis = ms % 1000;
    let mut out = String::from("PT");
    if hours > 0 {
        out.push_str(&format!("{sign}{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{sign}{minutes}M"));
    }
    if seconds > 0 || millis > 0 {
        if millis > 0 {
            let frac = format!("{millis:03}");
            out.push_str(&format!("{sign}{seconds}.{}S", frac.trim_end_matches('0')));
        } else {
            out.push_str(&format!("{sign}{seconds}S"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(h: u32, m: u32, s: u32, nanos: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2023, 7, 1)
            .unwrap()
            .and_hms_nano_opt(h, m, s, nanos)
            .unwrap()
    }

    #[test]
    fn local_datetime_prints_seconds_always_and_fraction_only_when_present() {
        assert_eq!(
            format_local_datetime(at(10, 0, 0, 0)),
            "2023-07-01T10:00:00"
        );
        assert_eq!(
            format_local_datetime(at(10, 0, 5, 120_000_000)),
            "2023-07-01T10:00:05.12"
        );
        assert_eq!(
            format_local_datetime(at(10, 0, 5, 123_456)),
            "2023-07-01T10:00:05.000123456"
        );
    }

    #[test]
    fn local_datetime_round_trips() {
        for t in [at(0, 0, 0, 0), at(23, 30, 0, 0), at(1, 2, 3, 500_000_000)] {
            assert_eq!(parse_local_datetime(&format_local_datetime(t)), Some(t));
        }
        assert_eq!(
            parse_local_datetime("2023-07-01T10:00"),
            Some(at(10, 0, 0, 0))
        );
        assert_eq!(parse_local_datetime("2023-07-01 10:00:00"), None);
        assert_eq!(parse_local_datetime("yesterday"), None);
        for bad in [
            "2023-7-01T10:00",
            "+2023-07-01T10:00",
            "2023-07-01T10:00:0",
            "2023-07-01T10:00:00.",
            " 2023-07-01T10:00",
        ] {
            assert_eq!(parse_local_datetime(bad), None, "{bad}");
        }
        assert!(parse_local_datetime("2023-07-01T10:00:00.123").is_some());
    }

    #[test]
    fn iso_durations_match_java_time() {
        assert_eq!(format_iso_duration_ms(0), "PT0S");
        assert_eq!(format_iso_duration_ms(25 * 60_000), "PT25M");
        assert_eq!(
            format_iso_duration_ms(3_600_000 + 25 * 60_000 + 30_500),
            "PT1H25M30.5S"
        );
        assert_eq!(format_iso_duration_ms(49 * 3_600_000), "PT49H");
        assert_eq!(format_iso_duration_ms(1), "PT0.001S");
        assert_eq!(format_iso_duration_ms(-90_000), "PT-1M-30S");
    }

    #[test]
    fn seoul_has_no_dst_and_is_nine_hours_ahead() {
        let zone: Tz = "Asia/Seoul".parse().unwrap();
        let local = at(9, 0, 0, 0);
        let utc = local_to_utc(local, zone).unwrap();
        assert_eq!(utc.naive_utc(), at(0, 0, 0, 0));
        assert_eq!(utc_to_local(utc, zone), local);
    }

    #[test]
    fn nonexistent_local_time_is_none_and_ambiguous_takes_earlier() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2023, 3, 26)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(local_to_utc(gap, zone), None);
        let fold = NaiveDate::from_ymd_opt(2023, 10, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            local_to_utc(fold, zone).unwrap().naive_utc(),
            NaiveDate::from_ymd_opt(2023, 10, 29)
                .unwrap()
                .and_hms_opt(0, 30, 0)
                .unwrap()
        );
    }
}
