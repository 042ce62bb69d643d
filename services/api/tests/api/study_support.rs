//! Shared set-up of the study statistics, ranking and timer scenarios: instants in the service
//! zone, the service's study days, and crediting study time directly at chosen instants.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use ppodok_api::study::{credit, Credit};
use ppodok_domain::periods::DayBoundary;

use crate::helpers::TestApp;

pub fn seoul() -> Tz {
    "Asia/Seoul".parse().unwrap()
}

/// An instant given as Seoul wall-clock time (the service zone of the tests).
pub fn kst(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    seoul()
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// The service's study days with default settings: Seoul, midnight.
pub fn service_days() -> DayBoundary {
    DayBoundary::new(seoul(), 0).unwrap()
}

/// Credits `[from, to)` to a member (and a group's rankings) as the timer or a room would.
pub async fn study(
    app: &TestApp,
    member_id: i64,
    group_id: Option<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let ms = credit(
        &app.db,
        &service_days(),
        Credit {
            member_id,
            group_id,
            room_id: None,
            source: "timer",
            from: from.naive_utc(),
            to: to.naive_utc(),
        },
    )
    .await
    .expect("credit");
    assert_eq!(ms, (to - from).num_milliseconds());
}

/// `[(calculatedAt, duration)]` of a `[{calculatedAt, duration}]` answer.
pub fn day_pairs(data: &serde_json::Value) -> Vec<(String, String)> {
    data.as_array()
        .unwrap_or_else(|| panic!("an array: {data}"))
        .iter()
        .map(|d| {
            (
                d["calculatedAt"].as_str().unwrap().to_owned(),
                d["duration"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
