//! Video tokens: only for a member booked into the room, only inside its window, for that room only.

use chrono::Duration;
use reqwest::Method;

use crate::helpers::{slot_after, spawn_app, Backend, LIVEKIT_SECRET};
use crate::on_both_backends;

async fn video_tokens_are_minted_only_for_booked_members_in_the_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.dev_login("영상참가자").await;
    let my_id = app.member_id(&me.access).await;
    let groupmate = app.dev_login("예약안함").await;
    let stranger = app.dev_login("외부인").await;
    let (g, _) = app.create_group(&me.access, "화상", None).await;
    app.join(&groupmate.access, g, None)
        .await
        .assert_status(201);
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let room = app.book(&me.access, g, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/rooms/{room}/video-token");

    app.send(Method::POST, &path, None, None)
        .await
        .assert_fail(401);
    // Too early, then inside the window (5 minutes before the start), then after the end.
    app.clock.set(start - Duration::minutes(6));
    app.send(Method::POST, &path, Some(&me.access), None)
        .await
        .assert_fail(400)
        .assert_message("입장 가능한 시간이 아닙니다.");
    app.clock.set(start - Duration::minutes(4));
    let r = app.send(Method::POST, &path, Some(&me.access), None).await;
    r.assert_status(200);
    assert_eq!(r.data()["url"], "ws://127.0.0.1:7880");
    assert_eq!(r.data()["identity"], my_id.to_string());
    assert_eq!(r.data()["roomName"], room.to_string());
    let keys = ppodok_tokens::livekit::LivekitKeys::new("devkey", LIVEKIT_SECRET);
    let claims = keys
        .verify_access_token(r.data()["token"].as_str().unwrap())
        .expect("a valid LiveKit token");
    assert_eq!(claims.sub, my_id.to_string());
    assert_eq!(claims.name, "영상참가자");
    let grant = claims.video.unwrap();
    assert_eq!(grant.room, room.to_string());
    assert!(grant.room_join);
    assert!(claims.exp > claims.nbf);

    app.send(Method::POST, &path, Some(&groupmate.access), None)
        .await
        .assert_fail(403);
    // An outsider cannot tell a foreign room from a missing one.
    app.send(Method::POST, &path, Some(&stranger.access), None)
        .await
        .assert_fail(404);
    app.send(
        Method::POST,
        "/api/v1/rooms/987654/video-token",
        Some(&me.access),
        None,
    )
    .await
    .assert_fail(404);
    for method in [Method::POST, Method::PATCH] {
        app.send(
            method,
            "/api/v1/rooms/histories",
            Some(&stranger.access),
            Some(serde_json::json!({ "roomId": room })),
        )
        .await
        .assert_fail(404);
    }
    app.clock.set(start + Duration::minutes(25));
    app.send(Method::POST, &path, Some(&me.access), None)
        .await
        .assert_fail(400);
}

on_both_backends!(video_tokens_are_minted_only_for_booked_members_in_the_window);
