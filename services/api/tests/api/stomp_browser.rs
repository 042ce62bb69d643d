//! The STOMP scenarios with `@stomp/stompjs` inside headless Chromium, which enforces the WebSocket
//! handshake: a browser aborts a 101 that names none of the subprotocols it offered.

use chrono::Duration;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::helpers::{slot_after, spawn_app, Backend};
use crate::on_both_backends;
use crate::stomp::{bookings_toggles_and_the_tombstone_via, refused_connects_get_an_error_via};
use crate::stomp_support::{ws_url, StompJs, Via};

/// stompjs opening the socket itself offers `v10.stomp, v11.stomp, v12.stomp`, as the existing web
/// client does; the session agrees on `v12.stomp` and every calendar flow works.
async fn browser_offering_the_web_clients_protocols_books_toggles_and_sees_the_tombstone(
    backend: Backend,
) {
    bookings_toggles_and_the_tombstone_via(backend, Via::Browser).await
}

async fn browser_offering_only_v12_gets_v12_and_the_calendar(backend: Backend) {
    bookings_toggles_and_the_tombstone_via(backend, Via::BrowserOffering(&["v12.stomp"])).await
}

/// No subprotocol offered: accepted as before, none named in the answer.
async fn browser_offering_nothing_is_accepted_without_a_protocol(backend: Backend) {
    bookings_toggles_and_the_tombstone_via(backend, Via::BrowserOffering(&[])).await
}

async fn browser_refused_connects_get_an_error(backend: Backend) {
    refused_connects_get_an_error_via(backend, Via::Browser).await
}

/// A browser offering only `mqtt` is refused at the handshake: the page never connects, the
/// server answers 400 in the error envelope (seen here on a raw socket), and nothing is booked.
async fn browser_offering_only_mqtt_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("mqtt").await;
    let (g, _) = app.create_group(&t.access, "엠큐티티", None).await;
    let mut client = StompJs::connect_via(
        Via::BrowserOffering(&["mqtt"]),
        &app,
        Some(&t.access),
        &[&format!("/topic/{g}")],
    )
    .await;
    let event = client.next().await.expect("the page reports the socket");
    assert_eq!(event["type"], "closed", "{event}");
    assert_eq!(client.protocol(), None, "never connected");

    for (offer, expected) in [
        ("mqtt", Some(400)),
        ("v10.stomp", Some(400)),
        ("v10.stomp, v11.stomp", None),
    ] {
        let mut req = ws_url(&app).into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", offer.parse().unwrap());
        match (tokio_tungstenite::connect_async(req).await, expected) {
            (Err(tungstenite::Error::Http(res)), Some(status)) => {
                assert_eq!(res.status().as_u16(), status, "{offer}");
                let body: Value =
                    serde_json::from_slice(res.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], "fail", "{offer}: {body}");
                assert!(body["message"].as_str().is_some(), "{offer}: {body}");
            }
            (Ok((mut ws, res)), None) => {
                assert_eq!(res.headers()["sec-websocket-protocol"], "v11.stomp");
                let _ = ws.close(None).await;
                while ws.next().await.is_some() {}
            }
            (other, _) => panic!("{offer}: unexpected handshake result {other:?}"),
        }
    }
}

/// Frames stompjs can send that the server refuses: a topic of someone else's group, a join of a
/// room through another group, a booking in a group I am not in. Each ends that session with an
/// ERROR frame and nothing is broadcast to the group's subscribers.
async fn browser_refused_frames_get_an_error_and_broadcast_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.dev_login("browser-prober").await;
    let other = app.dev_login("browser-owner").await;
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

    let mut snoop = StompJs::connect_via(
        Via::Browser,
        &app,
        Some(&me.access),
        &[&format!("/topic/{theirs}")],
    )
    .await;
    let event = snoop.next_of("error").await.expect("an ERROR frame");
    assert_eq!(event["message"], "접근 권한이 없어요.");
    assert!(snoop.next_of("closed").await.is_some());

    let sends = [
        (
            "/app/join",
            json!({ "roomId": their_room, "groupId": mine }),
            format!("존재하지 않는 방 번호입니다. roomId: {their_room}"),
        ),
        (
            "/app/add",
            json!({ "groupId": theirs, "startTime": crate::helpers::local_string(start) }),
            String::new(),
        ),
    ];
    for (destination, body, message) in sends {
        let mut client = StompJs::connect_via(Via::Browser, &app, Some(&me.access), &[])
            .await
            .ready()
            .await;
        assert_eq!(client.protocol(), Some("v12.stomp"));
        client.send(destination, body, None).await;
        let event = client.next_of("error").await.expect("an ERROR frame");
        if !message.is_empty() {
            assert_eq!(event["message"], message.as_str(), "{destination}");
        }
        assert!(client.next_of("closed").await.is_some(), "{destination}");
    }

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

on_both_backends!(
    browser_offering_the_web_clients_protocols_books_toggles_and_sees_the_tombstone,
    browser_offering_only_v12_gets_v12_and_the_calendar,
    browser_offering_nothing_is_accepted_without_a_protocol,
    browser_offering_only_mqtt_is_refused,
    browser_refused_connects_get_an_error,
    browser_refused_frames_get_an_error_and_broadcast_nothing,
);
