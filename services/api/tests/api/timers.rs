//! Personal focus timers: server-anchored running time credited exactly once to history and to
//! the group's rankings; repeated pause/stop are harmless; the idle cap; refusals.

use chrono::Duration;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_both_backends;
use crate::study_support::{day_pairs, kst, pairs, service_days};

async fn post_empty(app: &TestApp, path: &str, token: &str) -> crate::helpers::Reply {
    app.send(Method::POST, path, Some(token), None).await
}

async fn todays_history(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let r = app
        .get(
            "/api/v1/study-histories/durations?from=2026-03-04T00:00:00&to=2026-03-05T00:00:00",
            token,
        )
        .await;
    r.assert_status(200);
    day_pairs(r.data())
}

async fn timer_credits_exactly_the_running_time(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 9, 0));
    let t = app.dev_login("focus").await;
    let me = app.member_id(&t.access).await;
    let (group, _) = app.create_group(&t.access, "집중", None).await;

    let r = app.get("/api/v1/timers/current", &t.access).await;
    r.assert_status(200);
    assert!(r.data().is_null());

    let r = app
        .post(
            "/api/v1/timers/start",
            &t.access,
            json!({ "groupId": group }),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.data()["state"], "running");
    assert_eq!(r.data()["groupId"], group);
    assert_eq!(r.data()["startedAt"], "2026-03-04T09:00:00");
    assert_eq!(r.data()["elapsed"], "PT0S");
    assert_eq!(r.data()["serverTime"], "2026-03-04T09:00:00");

    app.clock.advance(Duration::minutes(10));
    let r = post_empty(&app, "/api/v1/timers/pause", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["state"], "paused");
    assert_eq!(r.data()["elapsed"], "PT10M");

    // Paused time does not count, and pausing again changes nothing.
    app.clock.advance(Duration::minutes(7));
    let r = post_empty(&app, "/api/v1/timers/pause", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["elapsed"], "PT10M");
    assert_eq!(r.data()["serverTime"], "2026-03-04T09:17:00");

    // Another replica sees and drives the same timer (with Redis: sessions are shared there).
    let second;
    let replica = if backend == Backend::MariaDb {
        second = app.spawn_replica().await;
        &second
    } else {
        &app
    };
    let r = post_empty(replica, "/api/v1/timers/resume", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["state"], "running");
    let r = post_empty(replica, "/api/v1/timers/resume", &t.access).await;
    assert_eq!(r.data()["elapsed"], "PT10M", "resuming twice is harmless");

    app.clock.advance(Duration::minutes(15));
    let r = app.get("/api/v1/timers/current", &t.access).await;
    assert_eq!(r.data()["state"], "running");
    assert_eq!(r.data()["elapsed"], "PT25M");

    let r = post_empty(&app, "/api/v1/timers/stop", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["state"], "stopped");
    assert_eq!(r.data()["elapsed"], "PT25M");
    let r = post_empty(&app, "/api/v1/timers/stop", &t.access).await;
    r.assert_status(200);
    assert!(r.data().is_null(), "stopping twice is harmless: {}", r.body);
    assert!(app
        .get("/api/v1/timers/current", &t.access)
        .await
        .data()
        .is_null());

    // Credited once per running segment, to history and to the group's rankings.
    assert_eq!(
        app.count(
            "study_records",
            &format!("member_id = {me} AND source = 'timer'")
        )
        .await,
        2
    );
    assert_eq!(
        todays_history(&app, &t.access).await,
        pairs(&[("2026-03-04", "PT25M")])
    );
    let r = app
        .get(&format!("/api/v1/ranks?groupId={group}"), &t.access)
        .await;
    assert_eq!(r.data()[0]["duration"], "PT25M");
    let r = app
        .get(
            &format!("/api/v1/rankings?groupId={group}&period=day"),
            &t.access,
        )
        .await;
    assert_eq!(r.data()["me"], json!({ "rank": 1, "duration": "PT25M" }));
    // The default group got nothing: the timer counted for `group` only.
    let r = app.get("/api/v1/ranks?groupId=1", &t.access).await;
    assert_eq!(r.data()[0]["duration"], "PT0S");
}

async fn a_timer_without_group_is_history_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 21, 0));
    let t = app.dev_login("solo").await;
    // No body at all is fine.
    let r = post_empty(&app, "/api/v1/timers/start", &t.access).await;
    r.assert_status(201);
    assert!(r.data()["groupId"].is_null());
    app.clock.advance(Duration::minutes(40));
    post_empty(&app, "/api/v1/timers/stop", &t.access)
        .await
        .assert_status(200);
    assert_eq!(
        todays_history(&app, &t.access).await,
        pairs(&[("2026-03-04", "PT40M")])
    );
    let r = app.get("/api/v1/ranks?groupId=1", &t.access).await;
    assert_eq!(r.data()[0]["duration"], "PT0S");
}

async fn timer_refusals(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 9, 0));
    let t = app.dev_login("eager").await;
    let other = app.dev_login("other").await;
    let (foreign_group, _) = app.create_group(&other.access, "남의 그룹", None).await;

    post_empty(&app, "/api/v1/timers/pause", &t.access)
        .await
        .assert_fail(404)
        .assert_message("진행 중인 타이머가 없어요.");
    post_empty(&app, "/api/v1/timers/resume", &t.access)
        .await
        .assert_fail(404);
    app.post(
        "/api/v1/timers/start",
        &t.access,
        json!({ "groupId": foreign_group }),
    )
    .await
    .assert_fail(403);
    app.post(
        "/api/v1/timers/start",
        &t.access,
        json!({ "groupId": 987654 }),
    )
    .await
    .assert_fail(404);
    app.post("/api/v1/timers/start", &t.access, json!({ "groupId": "x" }))
        .await
        .assert_fail(400);
    assert_eq!(app.count("focus_timers", "1 = 1").await, 0);

    app.post("/api/v1/timers/start", &t.access, json!({ "groupId": 1 }))
        .await
        .assert_status(201);
    app.clock.advance(Duration::minutes(5));
    app.post("/api/v1/timers/start", &t.access, json!({ "groupId": 1 }))
        .await
        .assert_fail(400)
        .assert_message("이미 진행 중인 타이머가 있어요.");
    // The refused start did not reset the running one.
    let r = app.get("/api/v1/timers/current", &t.access).await;
    assert_eq!(r.data()["elapsed"], "PT5M");
    assert_eq!(r.data()["startedAt"], "2026-03-04T09:00:00");

    // Wrong method and anonymous callers.
    app.send(Method::GET, "/api/v1/timers/start", Some(&t.access), None)
        .await
        .assert_fail(405);
    app.send(Method::POST, "/api/v1/timers/stop", None, None)
        .await
        .assert_fail(401);
}

async fn an_idle_timer_stops_counting_at_the_cap(backend: Backend) {
    // The sweep is called directly here (the scheduler's run of it is tested in jobs.rs).
    let app = spawn_app_with(backend, |s| {
        s.study.timer_idle_cap_minutes = 60;
        s.jobs.enabled = false;
    })
    .await;
    app.clock.set(kst(2026, 3, 4, 9, 0));
    let t = app.dev_login("forgetful").await;
    let busy = app.dev_login("busy").await;
    let cap = Duration::minutes(60);

    app.post("/api/v1/timers/start", &t.access, json!({ "groupId": 1 }))
        .await
        .assert_status(201);
    app.clock.advance(Duration::minutes(30));
    app.post(
        "/api/v1/timers/start",
        &busy.access,
        json!({ "groupId": 1 }),
    )
    .await
    .assert_status(201);
    app.clock.advance(Duration::hours(3));

    // Reads report the capped time before anything stops the timer.
    let r = app.get("/api/v1/timers/current", &t.access).await;
    assert_eq!(r.data()["elapsed"], "PT1H");

    // The scheduler's sweep stops both (each capped), and only those.
    let now = app.clock.now();
    let stopped = ppodok_api::timers::stop_idle_timers(&app.db, &service_days(), cap, now)
        .await
        .unwrap();
    assert_eq!(stopped, 2);
    assert_eq!(
        ppodok_api::timers::stop_idle_timers(&app.db, &service_days(), cap, now)
            .await
            .unwrap(),
        0,
        "a second sweep finds nothing"
    );
    assert!(app
        .get("/api/v1/timers/current", &t.access)
        .await
        .data()
        .is_null());
    assert_eq!(
        todays_history(&app, &t.access).await,
        pairs(&[("2026-03-04", "PT1H")])
    );
    let r = app.get("/api/v1/rankings?groupId=1", &t.access).await;
    assert_eq!(
        field_durations(&r.body["data"]["entries"]),
        vec!["PT1H", "PT1H"]
    );

    // Without a sweep: stop credits up to the cap; a new start replaces an idle timer.
    app.post("/api/v1/timers/start", &t.access, json!({}))
        .await
        .assert_status(201);
    app.clock.advance(Duration::hours(2));
    let r = app.post("/api/v1/timers/start", &t.access, json!({})).await;
    r.assert_status(201);
    assert_eq!(r.data()["elapsed"], "PT0S");
    app.clock.advance(Duration::minutes(90));
    let r = post_empty(&app, "/api/v1/timers/stop", &t.access).await;
    assert_eq!(r.data()["elapsed"], "PT1H");
    assert_eq!(
        todays_history(&app, &t.access).await,
        pairs(&[("2026-03-04", "PT3H")])
    );

    // A paused timer is not idle: the sweep leaves it alone.
    app.post("/api/v1/timers/start", &busy.access, json!({}))
        .await
        .assert_status(201);
    app.clock.advance(Duration::minutes(20));
    post_empty(&app, "/api/v1/timers/pause", &busy.access)
        .await
        .assert_status(200);
    app.clock.advance(Duration::hours(5));
    assert_eq!(
        ppodok_api::timers::stop_idle_timers(&app.db, &service_days(), cap, app.clock.now())
            .await
            .unwrap(),
        0
    );
    let r = app.get("/api/v1/timers/current", &busy.access).await;
    assert_eq!(r.data()["state"], "paused");
    assert_eq!(r.data()["elapsed"], "PT20M");
}

async fn racing_requests_credit_a_segment_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 9, 0));
    let t = app.dev_login("double-clicker").await;
    let me = app.member_id(&t.access).await;

    // Concurrent starts: exactly one wins, the others are refused cleanly (never a 500).
    let starts = futures::future::join_all(
        (0..6).map(|_| app.post("/api/v1/timers/start", &t.access, json!({ "groupId": 1 }))),
    )
    .await;
    let mut statuses: Vec<u16> = starts.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 400, 400, 400, 400, 400], "{statuses:?}");

    // Concurrent pauses and stops of one running segment credit it once.
    app.clock.advance(Duration::minutes(25));
    let ends = futures::future::join_all((0..8).map(|i| {
        let path = if i % 2 == 0 {
            "/api/v1/timers/pause"
        } else {
            "/api/v1/timers/stop"
        };
        post_empty(&app, path, &t.access)
    }))
    .await;
    for r in &ends {
        assert!(
            [200, 404].contains(&r.status.as_u16()),
            "pause after a stop finds no timer; nothing else: {}",
            r.body
        );
    }
    assert_eq!(
        app.count("study_records", &format!("member_id = {me}"))
            .await,
        1
    );
    assert_eq!(
        todays_history(&app, &t.access).await,
        pairs(&[("2026-03-04", "PT25M")])
    );
    let r = app.get("/api/v1/ranks?groupId=1", &t.access).await;
    assert_eq!(r.data()[0]["duration"], "PT25M");
}

fn field_durations(entries: &serde_json::Value) -> Vec<&str> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["duration"].as_str().unwrap())
        .collect()
}

on_both_backends!(
    timer_credits_exactly_the_running_time,
    a_timer_without_group_is_history_only,
    timer_refusals,
    an_idle_timer_stops_counting_at_the_cap,
    racing_requests_credit_a_segment_once,
);
