//! Rooms and reservations: the calendar contract, booking rules, idempotence and races.

use chrono::Duration;
use serde_json::json;

use crate::helpers::{local_string, slot_after, spawn_app, spawn_app_with, Backend};
use crate::on_both_backends;

async fn booking_creates_the_room_and_the_last_cancel_removes_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.dev_login("booker-a").await;
    let b = app.dev_login("booker-b").await;
    let (a_id, b_id) = (
        app.member_id(&a.access).await,
        app.member_id(&b.access).await,
    );
    let (g, _) = app.create_group(&a.access, "캘린더", None).await;
    app.join(&b.access, g, None).await.assert_status(201);
    let start = slot_after(app.clock.now(), Duration::hours(2));

    let r = app.book(&a.access, g, start).await;
    r.assert_status(201);
    assert_eq!(r.body["code"], "resource.created");
    let room = r.data().clone();
    let room_id = room["roomId"].as_i64().unwrap();
    assert_eq!(room["groupId"], g);
    assert_eq!(room["startTime"], local_string(start));
    assert_eq!(room["endTime"], local_string(start + Duration::minutes(25)));
    assert_eq!(room["memberIds"], json!([a_id]));
    assert_eq!(room["profiles"], json!([null]));
    assert_eq!(room["phase"], "before");
    assert_eq!(room["nextPhaseAt"], local_string(start));
    assert_eq!(room["serverTime"], local_string(app.clock.now()));

    let r = app.book(&b.access, g, start).await;
    r.assert_status(201);
    assert_eq!(
        r.data()["roomId"],
        room_id,
        "the second booking joins the room"
    );
    assert_eq!(r.data()["memberIds"], json!([a_id, b_id]));
    // A retried booking is not a second one (and not a cancel).
    let r = app.book(&a.access, g, start).await;
    r.assert_status(200);
    assert_eq!(r.data()["memberIds"], json!([a_id, b_id]));
    assert_eq!(
        app.count("reservations", &format!("room_id = {room_id}"))
            .await,
        2
    );

    let from = local_string(start - Duration::hours(3));
    let to = local_string(start + Duration::days(1));
    let cal = app
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &a.access,
        )
        .await;
    cal.assert_status(200);
    assert_eq!(cal.data().as_array().unwrap().len(), 1);
    assert_eq!(cal.data()[0]["memberIds"], json!([a_id, b_id]));
    let mine = app
        .get(&format!("/api/v1/rooms/all?from={from}&to={to}"), &b.access)
        .await;
    assert_eq!(mine.data()[0]["roomId"], room_id);
    let nearest = app.get("/api/v1/rooms/nearest", &a.access).await;
    assert_eq!(nearest.data()["roomId"], room_id);

    let r = app
        .delete(
            &format!("/api/v1/rooms/{room_id}/reservation"),
            &a.access,
            json!({}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "resource.deleted");
    assert_eq!(r.data()["memberIds"], json!([b_id]));
    // Cancelling again changes nothing.
    app.delete(
        &format!("/api/v1/rooms/{room_id}/reservation"),
        &a.access,
        json!({}),
    )
    .await
    .assert_status(200);
    assert_eq!(
        app.count("reservations", &format!("room_id = {room_id}"))
            .await,
        1
    );
    let cal = app
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &b.access,
        )
        .await;
    assert_eq!(
        cal.data()[0]["memberIds"],
        json!([b_id]),
        "cancellation visible in the next read"
    );

    let r = app
        .delete(
            &format!("/api/v1/rooms/{room_id}/reservation"),
            &b.access,
            json!({}),
        )
        .await;
    r.assert_status(200);
    assert!(r.data().is_null(), "the room went with its last booking");
    assert_eq!(app.count("rooms", &format!("id = {room_id}")).await, 0);
    assert_eq!(app.count("reservations", "1 = 1").await, 0);
    let cal = app
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &b.access,
        )
        .await;
    assert_eq!(cal.data(), &json!([]));
    assert!(app
        .get("/api/v1/rooms/nearest", &a.access)
        .await
        .data()
        .is_null());
    app.delete(
        &format!("/api/v1/rooms/{room_id}/reservation"),
        &b.access,
        json!({}),
    )
    .await
    .assert_status(200);
}

async fn booking_rules_are_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("rule-owner").await;
    let stranger = app.dev_login("rule-stranger").await;
    let (g, _) = app.create_group(&owner.access, "규칙", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));

    let off_grid = start + Duration::minutes(15);
    app.book(&owner.access, g, off_grid)
        .await
        .assert_fail(400)
        .assert_message("유효하지 않은 요청 시간입니다.");
    let past = slot_after(app.clock.now() - Duration::hours(2), Duration::zero());
    app.book(&owner.access, g, past)
        .await
        .assert_fail(400)
        .assert_message("이미 시작된 공부방은 예약하거나 취소할 수 없어요.");
    app.book(&owner.access, g, start + Duration::days(40))
        .await
        .assert_fail(400);
    app.book(&stranger.access, g, start).await.assert_fail(403);
    app.book(&owner.access, 99_999, start)
        .await
        .assert_fail(404);
    app.post(
        "/api/v1/rooms/reservations",
        &owner.access,
        json!({ "groupId": g, "startTime": "tomorrow" }),
    )
    .await
    .assert_fail(400);
    assert_eq!(app.count("rooms", "1 = 1").await, 0);

    let room = app.book(&owner.access, g, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    // An outsider's cancel is the same as a cancel of a missing room: 200, data null, no change.
    let foreign = app
        .delete(
            &format!("/api/v1/rooms/{room}/reservation"),
            &stranger.access,
            json!({}),
        )
        .await;
    let missing = app
        .delete(
            "/api/v1/rooms/987654/reservation",
            &stranger.access,
            json!({}),
        )
        .await;
    for r in [&foreign, &missing] {
        r.assert_status(200);
        assert!(r.data().is_null(), "{}", r.body);
    }
    assert_eq!(foreign.body, missing.body);
    assert_eq!(
        app.count("reservations", &format!("room_id = {room}"))
            .await,
        1
    );
    // Once the slot has started nobody books or cancels.
    app.clock.set(start + Duration::minutes(1));
    app.delete(
        &format!("/api/v1/rooms/{room}/reservation"),
        &owner.access,
        json!({}),
    )
    .await
    .assert_fail(400)
    .assert_message("이미 시작된 공부방은 예약하거나 취소할 수 없어요.");
    app.book(&owner.access, g, start).await.assert_fail(400);

    let from = local_string(start - Duration::hours(1));
    let to = local_string(start + Duration::hours(1));
    app.get(
        &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
        &stranger.access,
    )
    .await
    .assert_fail(403);
    app.get(
        &format!("/api/v1/rooms?groupId={g}&from={from}"),
        &owner.access,
    )
    .await
    .assert_fail(400);
    app.get(
        &format!("/api/v1/rooms?groupId={g}&from={to}&to={from}"),
        &owner.access,
    )
    .await
    .assert_fail(400);
    let far = local_string(start + Duration::days(100));
    app.get(
        &format!("/api/v1/rooms?groupId={g}&from={from}&to={far}"),
        &owner.access,
    )
    .await
    .assert_fail(400);
    app.get(
        &format!("/api/v1/rooms?groupId={g}&from=2026-13-01T00:00:00&to={to}"),
        &owner.access,
    )
    .await
    .assert_fail(400);
    let r = app
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &owner.access,
        )
        .await;
    assert_eq!(r.data()[0]["phase"], "study");
    assert_eq!(
        r.data()[0]["nextPhaseAt"],
        local_string(start + Duration::minutes(25))
    );
}

async fn sixty_four_members_book_and_cancel_one_slot_at_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.database.max_connections = 16).await;
    let owner = app.dev_login("crowd-owner").await;
    let (g, _) = app.create_group(&owner.access, "붐빔", None).await;
    let mut tokens = Vec::new();
    for i in 0..64 {
        let t = app.dev_login(&format!("crowd-{i}")).await;
        app.join(&t.access, g, None).await.assert_status(201);
        tokens.push(t.access);
    }
    let start = slot_after(app.clock.now(), Duration::hours(3));
    let bookings = futures::future::join_all(tokens.iter().map(|t| app.book(t, g, start))).await;
    for r in &bookings {
        r.assert_status(201);
    }
    assert_eq!(
        app.count("rooms", &format!("group_id = {g}")).await,
        1,
        "exactly one room"
    );
    assert_eq!(
        app.count("reservations", &format!("group_id = {g}")).await,
        64
    );
    let room = bookings[0].data()["roomId"].as_i64().unwrap();
    assert!(bookings.iter().all(|r| r.data()["roomId"] == room));

    let cancel_path = format!("/api/v1/rooms/{room}/reservation");
    let cancels = futures::future::join_all(
        tokens
            .iter()
            .map(|t| app.delete(&cancel_path, t, json!({}))),
    )
    .await;
    for r in &cancels {
        r.assert_status(200);
    }
    assert_eq!(app.count("rooms", "1 = 1").await, 0, "no room left");
    assert_eq!(
        app.count("reservations", "1 = 1").await,
        0,
        "no orphan rows"
    );
}

async fn leaving_a_group_frees_my_seats(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.dev_login("seat-a").await;
    let b = app.dev_login("seat-b").await;
    let (g, _) = app.create_group(&a.access, "좌석", None).await;
    app.join(&b.access, g, None).await.assert_status(201);
    let s1 = slot_after(app.clock.now(), Duration::hours(1));
    let s2 = s1 + Duration::minutes(30);
    app.book(&a.access, g, s1).await.assert_status(201);
    app.book(&b.access, g, s1).await.assert_status(201);
    app.book(&b.access, g, s2).await.assert_status(201);
    app.delete("/api/v1/groups", &b.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    assert_eq!(
        app.count("rooms", &format!("group_id = {g}")).await,
        1,
        "the room only b booked is gone"
    );
    let from = local_string(s1 - Duration::hours(1));
    let to = local_string(s2 + Duration::hours(1));
    let cal = app
        .get(
            &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
            &a.access,
        )
        .await;
    assert_eq!(cal.data().as_array().unwrap().len(), 1);
    assert_eq!(cal.data()[0]["memberIds"].as_array().unwrap().len(), 1);
}

async fn calendar_reads_issue_a_constant_number_of_statements(backend: Backend) {
    // Only the reads are counted: no background statements (the push worker's passes, woken by
    // every booking, and jobs), and the session and group views synchronised once, at start, and
    // trusted throughout (on a busy machine a late periodic sync would let one read and not the
    // other fall back to the database for authentication or membership).
    let app = spawn_app_with(backend, |s| {
        s.jobs.enabled = false;
        s.push.enabled = false;
        s.kakao.unlink_poll_secs = 3600;
        s.auth.session_sync_millis = 600_000;
        s.auth.session_max_staleness_millis = 1_200_000;
    })
    .await;
    let t = app.dev_login("counter").await;
    let (small, _) = app.create_group(&t.access, "방 하나", None).await;
    let (large, _) = app.create_group(&t.access, "방 이백", None).await;
    let first = slot_after(app.clock.now(), Duration::hours(1));
    app.book(&t.access, small, first).await.assert_status(201);
    for i in 0..200 {
        app.book(&t.access, large, first + Duration::minutes(30 * i))
            .await
            .assert_status(201);
    }
    let from = local_string(first - Duration::hours(1));
    let to = local_string(first + Duration::days(5));

    let mut costs = Vec::new();
    for (g, expected) in [(small, 1), (large, 200)] {
        let before = app.metric("ppodok_api_db_statements_total").await;
        let r = app
            .get(
                &format!("/api/v1/rooms?groupId={g}&from={from}&to={to}"),
                &t.access,
            )
            .await;
        let after = app.metric("ppodok_api_db_statements_total").await;
        assert_eq!(r.data().as_array().unwrap().len(), expected);
        costs.push(after - before);
    }
    assert_eq!(
        costs[0], costs[1],
        "group calendar: statements for 1 room vs 200 rooms: {costs:?}"
    );
    assert!(costs[0] <= 6.0, "{costs:?}");

    let (single, _) = app.create_group(&t.access, "나만", None).await;
    let other = app.dev_login("one-booking").await;
    app.join(&other.access, single, None)
        .await
        .assert_status(201);
    app.book(&other.access, single, first)
        .await
        .assert_status(201);
    let mut mine = Vec::new();
    for (token, expected) in [(&other.access, 1), (&t.access, 201)] {
        let before = app.metric("ppodok_api_db_statements_total").await;
        let r = app
            .get(&format!("/api/v1/rooms/all?from={from}&to={to}"), token)
            .await;
        let after = app.metric("ppodok_api_db_statements_total").await;
        assert_eq!(r.data().as_array().unwrap().len(), expected);
        mine.push(after - before);
    }
    assert_eq!(mine[0], mine[1], "my bookings: 1 vs 201 rooms: {mine:?}");
}

on_both_backends!(
    booking_creates_the_room_and_the_last_cancel_removes_it,
    booking_rules_are_enforced,
    sixty_four_members_book_and_cancel_one_slot_at_once,
    leaving_a_group_frees_my_seats,
    calendar_reads_issue_a_constant_number_of_statements,
);
