//! Server time, study-day settings and study history: days split at midnight or at the member's
//! own boundary, in the member's own zone; streaks and the summary card; the heatmap; bad input.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;
use crate::study_support::{day_pairs, kst, pairs, study};

async fn server_time_reports_the_service_clock(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = kst(2026, 3, 4, 12, 0) + chrono::Duration::milliseconds(250);
    app.clock.set(now);
    // Public: no token, and a bad header is ignored.
    let r = app
        .send(Method::GET, "/api/v1/time", Some("undefined"), None)
        .await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "success");
    assert_eq!(r.data()["serverTime"], "2026-03-04T12:00:00.25");
    assert_eq!(r.data()["epochMillis"], now.timestamp_millis());
    assert_eq!(r.data()["zone"], "Asia/Seoul");
}

async fn sessions_split_at_midnight_and_at_my_day_boundary(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 10, 12, 0));
    let t = app.dev_login("night-owl").await;
    let me = app.member_id(&t.access).await;

    let r = app.get("/api/v1/members/settings", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["timeZone"], "Asia/Seoul");
    assert_eq!(r.data()["dayBoundary"], "00:00");

    // 23:30 → 00:30 crosses midnight; 01:00 → 02:00 is after midnight; 04:30 → 05:30 crosses 05:00.
    study(
        &app,
        me,
        None,
        kst(2026, 3, 1, 23, 30),
        kst(2026, 3, 2, 0, 30),
    )
    .await;
    study(&app, me, None, kst(2026, 3, 3, 1, 0), kst(2026, 3, 3, 2, 0)).await;
    study(
        &app,
        me,
        None,
        kst(2026, 3, 4, 4, 30),
        kst(2026, 3, 4, 5, 30),
    )
    .await;
    let window =
        "/api/v1/study-histories/durations?from=2026-03-01T00:00:00&to=2026-03-05T00:00:00";

    let r = app.get(window, &t.access).await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "success");
    assert_eq!(
        day_pairs(r.data()),
        pairs(&[
            ("2026-03-01", "PT30M"),
            ("2026-03-02", "PT30M"),
            ("2026-03-03", "PT1H"),
            ("2026-03-04", "PT1H"),
        ])
    );

    let r = app
        .patch(
            "/api/v1/members/settings",
            &t.access,
            json!({ "dayBoundary": "05:00" }),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["dayBoundary"], "05:00");
    assert_eq!(r.data()["timeZone"], "Asia/Seoul", "omitted zone is kept");
    let r = app.get("/api/v1/members/settings", &t.access).await;
    assert_eq!(r.data()["dayBoundary"], "05:00");

    let r = app.get(window, &t.access).await;
    assert_eq!(
        day_pairs(r.data()),
        pairs(&[
            ("2026-03-01", "PT1H"),  // the whole night belongs to the 1st
            ("2026-03-02", "PT1H"),  // 01:00–02:00 on the 3rd is still the 2nd's night
            ("2026-03-03", "PT30M"), // 04:30–05:00 on the 4th
            ("2026-03-04", "PT30M"), // 05:00–05:30 on the 4th
        ])
    );

    // A window cuts sessions that overlap it.
    let r = app
        .get(
            "/api/v1/study-histories/durations?from=2026-03-01T23:45:00&to=2026-03-03T01:30:00",
            &t.access,
        )
        .await;
    assert_eq!(
        day_pairs(r.data()),
        pairs(&[("2026-03-01", "PT45M"), ("2026-03-02", "PT30M")])
    );
}

async fn a_member_in_another_zone_sees_their_own_days(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 10, 12, 0));
    let ny = app.dev_login("new-yorker").await;
    let ny_id = app.member_id(&ny.access).await;
    let seoul = app.dev_login("seoulite").await;
    let seoul_id = app.member_id(&seoul.access).await;

    let r = app
        .patch(
            "/api/v1/members/settings",
            &ny.access,
            json!({ "timeZone": "America/New_York" }),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["timeZone"], "America/New_York");
    assert_eq!(r.data()["dayBoundary"], "00:00");

    // 10:00–11:00 in Seoul on the 4th is 20:00–21:00 in New York on the 3rd.
    for id in [ny_id, seoul_id] {
        study(
            &app,
            id,
            None,
            kst(2026, 3, 4, 10, 0),
            kst(2026, 3, 4, 11, 0),
        )
        .await;
    }
    let window =
        "/api/v1/study-histories/durations?from=2026-03-03T00:00:00&to=2026-03-05T00:00:00";
    let r = app.get(window, &ny.access).await;
    assert_eq!(day_pairs(r.data()), pairs(&[("2026-03-03", "PT1H")]));
    let r = app.get(window, &seoul.access).await;
    assert_eq!(day_pairs(r.data()), pairs(&[("2026-03-04", "PT1H")]));

    // The window itself is in my zone: New York's 3rd ends at 14:00 on the 4th in Seoul.
    let r = app
        .get(
            "/api/v1/study-histories/durations?from=2026-03-03T20:30:00&to=2026-03-04T00:00:00",
            &ny.access,
        )
        .await;
    assert_eq!(day_pairs(r.data()), pairs(&[("2026-03-03", "PT30M")]));
}

async fn summary_counts_streaks_over_gaps_and_boundaries(backend: Backend) {
    let app = spawn_app(backend).await;
    // Wednesday 4 March 2026, noon in Seoul.
    app.clock.set(kst(2026, 3, 4, 12, 0));
    let t = app.dev_login("steady").await;
    let me = app.member_id(&t.access).await;

    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    r.assert_status(200);
    assert_eq!(r.data()["today"], "PT0S");
    assert_eq!(r.data()["currentStreak"], 0);
    assert_eq!(r.data()["bestStreak"], 0);
    assert!(r.data()["todoCompletionRate"].is_null(), "{}", r.body);
    assert_eq!(r.data()["totalDuration"], "PT0S");
    assert_eq!(r.data()["week"].as_array().unwrap().len(), 7);

    // Four days in a row in February, a gap, then the night of 2→3 March, the 3rd and today.
    for d in 18..=21 {
        study(
            &app,
            me,
            None,
            kst(2026, 2, d, 20, 0),
            kst(2026, 2, d, 20, 30),
        )
        .await;
    }
    study(&app, me, None, kst(2026, 3, 3, 1, 0), kst(2026, 3, 3, 2, 0)).await;
    study(
        &app,
        me,
        None,
        kst(2026, 3, 3, 10, 0),
        kst(2026, 3, 3, 10, 20),
    )
    .await;
    study(
        &app,
        me,
        None,
        kst(2026, 3, 4, 9, 0),
        kst(2026, 3, 4, 9, 25),
    )
    .await;

    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    assert_eq!(r.data()["today"], "PT25M");
    assert_eq!(r.data()["currentStreak"], 2, "the 3rd and the 4th");
    assert_eq!(r.data()["bestStreak"], 4);
    assert_eq!(r.data()["totalDuration"], "PT3H45M");
    assert_eq!(
        day_pairs(&r.data()["week"]),
        pairs(&[
            ("2026-03-02", "PT0S"),
            ("2026-03-03", "PT1H20M"),
            ("2026-03-04", "PT25M"),
            ("2026-03-05", "PT0S"),
            ("2026-03-06", "PT0S"),
            ("2026-03-07", "PT0S"),
            ("2026-03-08", "PT0S"),
        ])
    );

    // With a 05:00 boundary the night session belongs to the 2nd, which joins the streak.
    app.patch(
        "/api/v1/members/settings",
        &t.access,
        json!({ "dayBoundary": "05:00" }),
    )
    .await
    .assert_status(200);
    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    assert_eq!(r.data()["currentStreak"], 3, "{}", r.body);
    assert_eq!(r.data()["bestStreak"], 4);
    assert_eq!(r.data()["week"][0]["duration"], "PT1H");
    assert_eq!(r.data()["week"][1]["duration"], "PT20M");

    // Yesterday's streak still counts this morning; after a day without study it is broken.
    app.clock.set(kst(2026, 3, 5, 23, 0));
    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    assert_eq!(r.data()["currentStreak"], 3);
    assert_eq!(r.data()["today"], "PT0S");
    app.clock.set(kst(2026, 3, 6, 6, 0));
    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    assert_eq!(r.data()["currentStreak"], 0);
    assert_eq!(r.data()["bestStreak"], 4);

    // Todo completion over my todos in all my groups.
    let (group, _) = app.create_group(&t.access, "수학", None).await;
    let mut todo_ids = Vec::new();
    for (g, content) in [(1, "영단어"), (group, "미적분"), (group, "확률")] {
        let r = app
            .post(
                "/api/v1/todos",
                &t.access,
                json!({ "groupId": g, "content": content }),
            )
            .await;
        r.assert_status(201);
        todo_ids.push(r.data()["todoId"].as_i64().unwrap());
    }
    app.patch(
        "/api/v1/todos",
        &t.access,
        json!({ "todoId": todo_ids[1], "done": true }),
    )
    .await
    .assert_status(200);
    let r = app.get("/api/v1/study-histories/summary", &t.access).await;
    assert_eq!(r.data()["todoCompletionRate"], 33.3);
}

async fn heatmap_lists_my_study_days_of_a_year(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 12, 0));
    let t = app.dev_login("gardener").await;
    let me = app.member_id(&t.access).await;
    study(
        &app,
        me,
        None,
        kst(2025, 12, 31, 23, 30),
        kst(2026, 1, 1, 0, 30),
    )
    .await;
    study(
        &app,
        me,
        None,
        kst(2026, 2, 14, 9, 0),
        kst(2026, 2, 14, 10, 30),
    )
    .await;

    let r = app
        .get("/api/v1/study-histories/heatmap?year=2026", &t.access)
        .await;
    r.assert_status(200);
    assert_eq!(
        day_pairs(r.data()),
        pairs(&[("2026-01-01", "PT30M"), ("2026-02-14", "PT1H30M")])
    );
    let r = app
        .get("/api/v1/study-histories/heatmap?year=2025", &t.access)
        .await;
    assert_eq!(day_pairs(r.data()), pairs(&[("2025-12-31", "PT30M")]));
    let r = app
        .get("/api/v1/study-histories/heatmap?year=2024", &t.access)
        .await;
    assert_eq!(day_pairs(r.data()), pairs(&[]));
}

async fn bad_history_and_settings_input_is_a_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("typo").await;
    for path in [
        "/api/v1/study-histories/durations",
        "/api/v1/study-histories/durations?from=2026-03-01T00:00:00",
        "/api/v1/study-histories/durations?from=yesterday&to=2026-03-01T00:00:00",
        "/api/v1/study-histories/durations?from=2026-03-02T00:00:00&to=2026-03-01T00:00:00",
        "/api/v1/study-histories/durations?from=2024-01-01T00:00:00&to=2026-01-01T00:00:00",
        "/api/v1/study-histories/heatmap",
        "/api/v1/study-histories/heatmap?year=abc",
        "/api/v1/study-histories/heatmap?year=99999",
    ] {
        let r = app.get(path, &t.access).await;
        assert_eq!(r.status.as_u16(), 400, "{path}: {}", r.body);
        r.assert_fail(400);
    }
    let r = app
        .get(
            "/api/v1/study-histories/durations?from=2024-01-01T00:00:00&to=2026-01-01T00:00:00",
            &t.access,
        )
        .await;
    r.assert_message("조회 기간은 최대 400일이에요.");

    let r = app
        .patch(
            "/api/v1/members/settings",
            &t.access,
            json!({ "timeZone": "Mars/Olympus" }),
        )
        .await;
    r.assert_fail(400)
        .assert_message("시간대는 IANA 이름이어야 해요. 예: Asia/Seoul");
    for boundary in ["25:00", "5:00", "05:60", "noon"] {
        let r = app
            .patch(
                "/api/v1/members/settings",
                &t.access,
                json!({ "dayBoundary": boundary }),
            )
            .await;
        r.assert_fail(400)
            .assert_message("하루 시작 시각은 HH:MM 형식이어야 해요. 예: 05:00");
    }
    // Nothing changed.
    let r = app.get("/api/v1/members/settings", &t.access).await;
    assert_eq!(r.data()["timeZone"], "Asia/Seoul");
    assert_eq!(r.data()["dayBoundary"], "00:00");

    // Anonymous callers get 401; a wrong method 405.
    let r = app
        .send(Method::GET, "/api/v1/study-histories/summary", None, None)
        .await;
    r.assert_fail(401);
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/members/settings",
            Some(&t.access),
            None,
        )
        .await;
    r.assert_fail(405);
}

async fn openapi_documents_the_statistics_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: serde_json::Value = app
        .http
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/time",
        "/api/v1/members/settings",
        "/api/v1/study-histories/durations",
        "/api/v1/study-histories/summary",
        "/api/v1/study-histories/heatmap",
        "/api/v1/ranks",
        "/api/v1/rankings",
        "/api/v1/timers/start",
        "/api/v1/timers/pause",
        "/api/v1/timers/resume",
        "/api/v1/timers/stop",
        "/api/v1/timers/current",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["paths"]["/api/v1/members/settings"]
        .get("patch")
        .is_some());
}

on_both_backends!(
    openapi_documents_the_statistics_endpoints,
    server_time_reports_the_service_clock,
    sessions_split_at_midnight_and_at_my_day_boundary,
    a_member_in_another_zone_sees_their_own_days,
    summary_counts_streaks_over_gaps_and_boundaries,
    heatmap_lists_my_study_days_of_a_year,
    bad_history_and_settings_input_is_a_400,
);
