//! The calendar cache: fresh across replicas, keyed by window, computed once per key.

use chrono::Duration;
use serde_json::json;

use crate::helpers::{local_string, slot_after, spawn_app, spawn_app_with, Backend};
use crate::on_both_backends;

/// Polls `path` on `app` until its data holds `rooms` rooms; fails past the staleness bound.
async fn rooms_within(app: &crate::helpers::TestApp, path: &str, token: &str, rooms: usize) {
    let began = std::time::Instant::now();
    loop {
        let seen = app.get(path, token).await;
        if seen.data().as_array().unwrap().len() == rooms {
            return;
        }
        assert!(
            began.elapsed() <= std::time::Duration::from_secs(1),
            "still {} after {:?}",
            seen.data(),
            began.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Two API processes on one database (with Redis, also one Redis): a booking through replica 2 is
/// in the very next read from replica 2, and within the staleness bound (1 s) on replica 1, which
/// had the calendar cached (by the replica bus with Redis, by the group view's sync without).
async fn a_booking_is_visible_on_another_replica_within_the_bound(backend: Backend) {
    let one = spawn_app(backend).await;
    let two = one.spawn_replica().await;
    let t = one.dev_login("replicated").await;
    let (g, _) = one.create_group(&t.access, "복제", None).await;
    let start = slot_after(one.clock.now(), Duration::hours(1));
    let path = format!(
        "/api/v1/rooms?groupId={g}&from={}&to={}",
        local_string(start - Duration::hours(1)),
        local_string(start + Duration::days(1))
    );
    for _ in 0..2 {
        assert_eq!(one.get(&path, &t.access).await.data(), &json!([]));
    }
    for _ in 0..2 {
        assert_eq!(two.get(&path, &t.access).await.data(), &json!([]));
    }
    two.book(&t.access, g, start).await.assert_status(201);
    let seen = two.get(&path, &t.access).await;
    assert_eq!(
        seen.data().as_array().unwrap().len(),
        1,
        "at once on replica 2"
    );
    rooms_within(&one, &path, &t.access, 1).await;
    let room = seen.data()[0]["roomId"].as_i64().unwrap();
    two.delete(
        &format!("/api/v1/rooms/{room}/reservation"),
        &t.access,
        json!({}),
    )
    .await
    .assert_status(200);
    assert_eq!(two.get(&path, &t.access).await.data(), &json!([]));
    rooms_within(&one, &path, &t.access, 0).await;
}

async fn different_windows_never_share_an_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("windows").await;
    let (g, _) = app.create_group(&t.access, "창", None).await;
    let day1 = slot_after(app.clock.now(), Duration::hours(1));
    let day2 = day1 + Duration::days(1);
    app.book(&t.access, g, day1).await.assert_status(201);
    app.book(&t.access, g, day2).await.assert_status(201);
    let window = |from: chrono::DateTime<chrono::Utc>, hours: i64| {
        format!(
            "/api/v1/rooms?groupId={g}&from={}&to={}",
            local_string(from),
            local_string(from + Duration::hours(hours))
        )
    };
    let first = window(day1 - Duration::hours(1), 2);
    let second = window(day2 - Duration::hours(1), 2);
    let both = window(day1 - Duration::hours(1), 30);
    for _ in 0..2 {
        let a = app.get(&first, &t.access).await;
        let b = app.get(&second, &t.access).await;
        let c = app.get(&both, &t.access).await;
        assert_eq!(a.data().as_array().unwrap().len(), 1);
        assert_eq!(b.data().as_array().unwrap().len(), 1);
        assert_ne!(a.data()[0]["roomId"], b.data()[0]["roomId"]);
        assert_eq!(c.data().as_array().unwrap().len(), 2);
    }
    // Another group's calendar is its own entry too.
    let (other, _) = app.create_group(&t.access, "다른 창", None).await;
    let other_window = first.replace(&format!("groupId={g}"), &format!("groupId={other}"));
    assert_eq!(app.get(&other_window, &t.access).await.data(), &json!([]));
}

async fn a_hundred_concurrent_cold_readers_trigger_one_computation(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jobs.enabled = false).await;
    let t = app.dev_login("stampede").await;
    let (g, _) = app.create_group(&t.access, "몰림", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    for i in 0..20 {
        app.book(&t.access, g, start + Duration::minutes(30 * i))
            .await
            .assert_status(201);
    }
    let path = format!(
        "/api/v1/rooms?groupId={g}&from={}&to={}",
        local_string(start - Duration::hours(1)),
        local_string(start + Duration::days(2))
    );
    let before = app.metric("ppodok_api_calendar_computations_total").await;
    let reads = futures::future::join_all((0..100).map(|_| app.get(&path, &t.access))).await;
    let after = app.metric("ppodok_api_calendar_computations_total").await;
    for r in &reads {
        r.assert_status(200);
        assert_eq!(r.data().as_array().unwrap().len(), 20);
    }
    assert_eq!(after - before, 1.0, "one computation for 100 cold readers");
    assert!(app.metric("ppodok_api_calendar_cache_hits_total").await >= 1.0);
}

async fn calendars_are_warm_right_after_a_restart(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jobs.enabled = false).await;
    let t = app.dev_login("restart").await;
    let (g, _) = app.create_group(&t.access, "재시작", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    app.book(&t.access, g, start).await.assert_status(201);
    // A new process (a restart): it warms the default window before serving.
    let restarted = app.spawn_replica().await;
    let today =
        ppodok_domain::time::utc_to_local(app.clock.now(), "Asia/Seoul".parse().unwrap()).date();
    let from = format!("{today}T00:00:00");
    let to = format!("{}T00:00:00", today + Duration::days(14));
    let before = restarted
        .metric("ppodok_api_calendar_computations_total")
        .await;
    let r = restarted
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &t.access,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    assert_eq!(
        restarted
            .metric("ppodok_api_calendar_computations_total")
            .await
            - before,
        0.0,
        "served warm"
    );
}

on_both_backends!(
    a_booking_is_visible_on_another_replica_within_the_bound,
    different_windows_never_share_an_entry,
    a_hundred_concurrent_cold_readers_trigger_one_computation,
    calendars_are_warm_right_after_a_restart,
);
