//! The realtime calendar over STOMP, checked with the official `@stomp/stompjs` and a raw socket.

use chrono::Duration;
use serde_json::json;

use crate::helpers::{local_string, slot_after, spawn_app, Backend};
use crate::on_both_backends;
use crate::stomp_support::{RawStomp, StompJs};

async fn stompjs_sees_bookings_toggles_and_the_tombstone(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.dev_login("stomp-a").await;
    let b = app.dev_login("stomp-b").await;
    let (a_id, b_id) = (
        app.member_id(&a.access).await,
        app.member_id(&b.access).await,
    );
    let (g, _) = app.create_group(&a.access, "실시간", None).await;
    app.join(&b.access, g, None).await.assert_status(201);
    let topic = format!("/topic/{g}");
    let mut client = StompJs::connect(&app, Some(&a.access), &[&topic])
        .await
        .ready()
        .await;

    // A booking over HTTP by someone else reaches the subscriber.
    let start = slot_after(app.clock.now(), Duration::hours(2));
    let room = app.book(&b.access, g, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    let m = client.message().await;
    assert_eq!(m["roomId"], room);
    assert_eq!(m["groupId"], g);
    assert_eq!(m["startTime"], local_string(start));
    assert_eq!(m["endTime"], local_string(start + Duration::minutes(25)));
    assert_eq!(m["memberIds"], json!([b_id]));

    // /app/join toggles my seat through the same booking operations.
    client
        .send(
            "/app/join",
            json!({ "roomId": room, "groupId": g }),
            Some("join-1"),
        )
        .await;
    assert_eq!(client.message().await["memberIds"], json!([b_id, a_id]));
    // A retried frame (same receipt) is not a second toggle.
    client
        .send(
            "/app/join",
            json!({ "roomId": room, "groupId": g }),
            Some("join-1"),
        )
        .await;
    client
        .next_of("receipt")
        .await
        .expect("receipt of the first join");
    client
        .send(
            "/app/join",
            json!({ "roomId": room, "groupId": g }),
            Some("join-2"),
        )
        .await;
    assert_eq!(
        client.message().await["memberIds"],
        json!([b_id]),
        "the second distinct join cancels"
    );
    assert_eq!(
        app.count("reservations", &format!("room_id = {room}"))
            .await,
        1
    );

    // The last cancellation sends the contract's tombstone.
    app.delete(
        &format!("/api/v1/rooms/{room}/reservation"),
        &b.access,
        json!({}),
    )
    .await
    .assert_status(200);
    let tomb = client.message().await;
    assert_eq!(tomb["roomId"], serde_json::Value::Null);
    assert_eq!(tomb["groupId"], serde_json::Value::Null);
    assert_eq!(tomb["startTime"], local_string(start));
    assert_eq!(tomb["endTime"], serde_json::Value::Null);
    assert_eq!(tomb["memberIds"], serde_json::Value::Null);
    assert_eq!(tomb["profiles"], serde_json::Value::Null);

    // /app/add books the sender (the old server returned the room without adding them).
    let later = start + Duration::minutes(30);
    client
        .send("/app/add", json!({ "groupId": g, "startTime": local_string(later), "endTime": local_string(later + Duration::minutes(25)) }), None)
        .await;
    let added = client.message().await;
    assert_eq!(added["memberIds"], json!([a_id]));
    client.close().await;
}

/// Two API processes on one Redis: a subscriber on replica 1 receives a booking made on replica 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_on_one_replica_reaches_a_subscriber_on_another() {
    let one = spawn_app(Backend::MariaDb).await;
    let two = one.spawn_replica().await;
    let t = one.dev_login("fan-out").await;
    let (g, _) = one.create_group(&t.access, "복제 구독", None).await;
    let mut client = StompJs::connect(&one, Some(&t.access), &[&format!("/topic/{g}")])
        .await
        .ready()
        .await;
    let start = slot_after(one.clock.now(), Duration::hours(1));
    let room = two.book(&t.access, g, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    assert_eq!(client.message().await["roomId"], room);
    client.close().await;
}

async fn refused_connects_get_an_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("refused").await;
    let member = app.member_id(&t.access).await;
    let codec = ppodok_tokens::MemberTokenCodec::new(
        app.settings.auth.jwt_secret.as_bytes(),
        &app.settings.auth.issuer,
        1800,
        3600,
    );
    let (expired, _) = codec.issue(
        member,
        ppodok_tokens::TokenKind::Access,
        "any",
        chrono::Utc::now().timestamp() - 7200,
    );
    for token in [
        None,
        Some("not-a-jwt".to_owned()),
        Some(expired),
        Some(t.refresh.clone()),
    ] {
        let mut client = StompJs::connect(&app, token.as_deref(), &[]).await;
        let event = client.next_of("error").await.expect("ERROR frame");
        assert_eq!(event["message"], "인증이 필요해요.", "{token:?}");
        assert!(client.next_of("closed").await.is_some());
    }
    // The real token connects.
    StompJs::connect(&app, Some(&t.access), &[])
        .await
        .ready()
        .await
        .close()
        .await;
}

async fn refused_frames_get_an_error_and_broadcast_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.dev_login("prober").await;
    let other = app.dev_login("other-owner").await;
    let (mine, _) = app.create_group(&me.access, "내 그룹", None).await;
    let (theirs, _) = app.create_group(&other.access, "남의 그룹", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let their_room = app.book(&other.access, theirs, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    let mut watcher = StompJs::connect(&app, Some(&other.access), &[&format!("/topic/{theirs}")])
        .await
        .ready()
        .await;

    let mut raw = RawStomp::connect(&app, &me.access).await;
    raw.send_text(&format!(
        "SUBSCRIBE\nid:1\ndestination:/topic/{theirs}\n\n\0"
    ))
    .await;
    raw.expect_error("접근 권한이 없어요.").await;

    let mut raw = RawStomp::connect(&app, &me.access).await;
    let body = json!({ "roomId": their_room, "groupId": mine }).to_string();
    raw.send_text(&format!(
        "SEND\ndestination:/app/join\ncontent-length:{}\n\n{body}\0",
        body.len()
    ))
    .await;
    raw.expect_error(&format!(
        "존재하지 않는 방 번호입니다. roomId: {their_room}"
    ))
    .await;

    // With the error queue subscribed, a failure arrives there and the session lives on.
    let mut raw = RawStomp::connect(&app, &me.access).await;
    raw.send_text("SUBSCRIBE\nid:errors\ndestination:/user/queue/errors\n\n\0")
        .await;
    let body = json!({ "roomId": their_room, "groupId": theirs }).to_string();
    raw.send_text(&format!(
        "SEND\ndestination:/app/join\nreceipt:r1\ncontent-length:{}\n\n{body}\0",
        body.len()
    ))
    .await;
    let queued = raw.frame().await.expect("an error message");
    assert!(
        queued.starts_with("MESSAGE\n") && queued.contains("destination:/user/queue/errors"),
        "{queued}"
    );
    assert!(queued.contains("접근 권한이 없어요."), "{queued}");
    assert!(raw
        .frame()
        .await
        .expect("receipt")
        .starts_with("RECEIPT\nreceipt-id:r1"));

    for bad in [
        "FLY\n\n\0".to_owned(),
        "SEND\ndestination:/app/add\ncontent-length:nope\n\n{}\0".to_owned(),
        "SUBSCRIBE\nid:1\n\n\0".to_owned(),
        format!("SEND\ndestination:/app/add\n\n{}\0", "x".repeat(70_000)),
        "SEND\ndestination:/topic/1\n\n{}\0".to_owned(),
        "ACK\nid:1\n\n\0".to_owned(),
    ] {
        let mut raw = RawStomp::connect(&app, &me.access).await;
        raw.send_text(&bad).await;
        let frame = raw.frame().await;
        assert!(
            frame.as_deref().is_some_and(|f| f.starts_with("ERROR\n")),
            "{bad:.40}: {frame:?}"
        );
        assert!(raw.closes().await, "{bad:.40}: closed after ERROR");
    }
    // Frames before CONNECT are refused too.
    let mut raw = RawStomp::open(&app).await;
    raw.send_text(&format!("SUBSCRIBE\nid:1\ndestination:/topic/{mine}\n\n\0"))
        .await;
    raw.expect_error("먼저 CONNECT 해야 해요.").await;

    // Nothing above was broadcast: the watcher's first message is this legitimate booking.
    let next = app
        .book(&other.access, theirs, start + Duration::minutes(30))
        .await
        .data()["roomId"]
        .as_i64()
        .unwrap();
    assert_eq!(watcher.message().await["roomId"], next);
    assert_eq!(
        app.count("reservations", &format!("room_id = {their_room}"))
            .await,
        1
    );
    watcher.close().await;
}

async fn leaving_a_group_stops_its_topic_and_logout_closes_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.dev_login("leaver").await;
    let owner = app.dev_login("stayer").await;
    let (left, _) = app.create_group(&owner.access, "떠날 그룹", None).await;
    let (kept, _) = app.create_group(&owner.access, "남을 그룹", None).await;
    app.join(&me.access, left, None).await.assert_status(201);
    app.join(&me.access, kept, None).await.assert_status(201);
    let mut client = StompJs::connect(
        &app,
        Some(&me.access),
        &[&format!("/topic/{left}"), &format!("/topic/{kept}")],
    )
    .await
    .ready()
    .await;
    app.delete("/api/v1/groups", &me.access, json!({ "groupId": left }))
        .await
        .assert_status(200);
    let start = slot_after(app.clock.now(), Duration::hours(1));
    app.book(&owner.access, left, start)
        .await
        .assert_status(201);
    let kept_room = app.book(&owner.access, kept, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    let first = client.message().await;
    assert_eq!(
        first["roomId"], kept_room,
        "the left group's booking never arrives"
    );

    app.send(
        reqwest::Method::POST,
        "/api/v1/members/logout",
        Some(&me.access),
        None,
    )
    .await
    .assert_status(200);
    let event = client.next_of("error").await.expect("the session is ended");
    assert!(event["message"].as_str().unwrap().contains("로그아웃"));
}

async fn presence_and_timers_have_their_own_topics(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.dev_login("present").await;
    let my_id = app.member_id(&me.access).await;
    let (g, _) = app.create_group(&me.access, "출석 토픽", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let room = app.book(&me.access, g, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    let calendar = format!("/topic/{g}");
    let presence = format!("/topic/{g}/presence");
    let timers = format!("/topic/{g}/timers");
    let mut client = StompJs::connect(&app, Some(&me.access), &[&calendar, &presence, &timers])
        .await
        .ready()
        .await;

    app.clock.set(start + Duration::minutes(2));
    app.post(
        "/api/v1/rooms/histories",
        &me.access,
        json!({ "roomId": room }),
    )
    .await
    .assert_status(201);
    let event = client.next_of("message").await.unwrap();
    assert_eq!(event["destination"], presence.as_str());
    let body: serde_json::Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            body["memberId"].as_i64(),
            body["roomId"].as_i64(),
            body["present"].as_bool()
        ),
        (Some(my_id), Some(room), Some(true))
    );

    app.post("/api/v1/timers/start", &me.access, json!({ "groupId": g }))
        .await
        .assert_status(201);
    let event = client.next_of("message").await.unwrap();
    assert_eq!(event["destination"], timers.as_str());
    let body: serde_json::Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["timer"]["state"], "running");

    // The calendar topic kept the contract's shape: the next calendar message is a booking.
    let later = start + Duration::minutes(30);
    app.book(&me.access, g, later).await.assert_status(201);
    let event = client.next_of("message").await.unwrap();
    assert_eq!(event["destination"], calendar.as_str());
    client.close().await;
}

/// A STOMP session does not outlive its access token.
async fn a_session_ends_when_its_token_expires(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| s.auth.access_ttl_secs = 2).await;
    let t = app.dev_login("short-lived").await;
    let mut client = StompJs::connect(&app, Some(&t.access), &[])
        .await
        .ready()
        .await;
    let event = client.next_of("error").await.expect("closed at expiry");
    assert!(
        event["message"].as_str().unwrap().contains("만료"),
        "{event}"
    );
}

on_both_backends!(
    a_session_ends_when_its_token_expires,
    presence_and_timers_have_their_own_topics,
    stompjs_sees_bookings_toggles_and_the_tombstone,
    refused_connects_get_an_error,
    refused_frames_get_an_error_and_broadcast_nothing,
    leaving_a_group_stops_its_topic_and_logout_closes_the_session,
);

/// Browsers offer STOMP subprotocols (`@stomp/stompjs` sends `v12.stomp, v11.stomp, v10.stomp`)
/// and drop the handshake unless one is chosen; a client that offers none gets none.
#[tokio::test]
async fn the_handshake_answers_the_offered_stomp_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app(Backend::Sqlite).await;
    let url = crate::stomp_support::ws_url(&app);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v10.stomp, v11.stomp, v12.stomp".parse().unwrap(),
    );
    let (_ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake");
    assert_eq!(res.headers()["sec-websocket-protocol"], "v12.stomp");

    let (_ws, res) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("handshake");
    assert!(res.headers().get("sec-websocket-protocol").is_none());
}
