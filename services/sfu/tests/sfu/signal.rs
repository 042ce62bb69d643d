//! The signalling protocol checked with a raw WebSocket client speaking LiveKit's protobuf.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use prost::Message as _;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{now, spawn_sfu, spawn_sfu_with, TestSfu};
use ppodok_tokens::livekit::VideoGrant;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(sfu: &TestSfu, token: &str) -> Result<Ws, tungstenite::Error> {
    connect_at(&sfu.ws_url(), token).await
}

/// The URL of LiveKit's signalling socket at `ws_base` (`ws://host:port`), as a Rust SDK client
/// dials it.
pub(crate) fn rtc_url(ws_base: &str, token: &str) -> String {
    format!("{ws_base}/rtc?access_token={token}&auto_subscribe=1&sdk=rust&protocol=16")
}

/// Opens LiveKit's signalling socket at `ws_base` (`ws://host:port`) as a Rust SDK client would.
pub(crate) async fn connect_at(ws_base: &str, token: &str) -> Result<Ws, tungstenite::Error> {
    tokio_tungstenite::connect_async(rtc_url(ws_base, token))
        .await
        .map(|(ws, _)| ws)
}

pub(crate) async fn next(ws: &mut Ws) -> Out {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Binary(data) = frame {
            return lk::SignalResponse::decode(data.as_ref())
                .expect("server sends valid protobuf")
                .message
                .expect("a message");
        }
    }
}

/// The next message that is not a trickle (candidates interleave freely).
pub(crate) async fn next_non_trickle(ws: &mut Ws) -> Out {
    loop {
        match next(ws).await {
            Out::Trickle(_) => continue,
            other => return other,
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, msg: In) {
    let frame = lk::SignalRequest { message: Some(msg) }.encode_to_vec();
    ws.send(Message::Binary(frame.into())).await.unwrap();
}

#[tokio::test]
async fn join_response_comes_first_then_a_subscriber_offer_with_data_channels() {
    let sfu = spawn_sfu().await;
    let mut ws = connect(&sfu, &sfu.token("alice", "room-1")).await.unwrap();
    let Out::Join(join) = next(&mut ws).await else {
        panic!("the first message must be the JoinResponse");
    };
    assert_eq!(join.server_info.as_ref().unwrap().version, "1.13.5");
    assert!(!join.server_version.is_empty());
    assert!(join.subscriber_primary);
    assert_eq!((join.ping_interval, join.ping_timeout), (5, 15));
    let me = join.participant.unwrap();
    assert_eq!(me.identity, "alice");
    assert!(me.sid.starts_with("PA_"));
    let perm = me.permission.unwrap();
    assert!(perm.can_publish && perm.can_subscribe && perm.can_publish_data);
    assert_eq!(join.room.unwrap().name, "room-1");
    assert!(join.other_participants.is_empty());

    let Out::Offer(offer) = next_non_trickle(&mut ws).await else {
        panic!("the server offers the subscriber PC");
    };
    assert_eq!(offer.r#type, "offer");
    assert_eq!(offer.id, 1);
    assert!(offer.sdp.contains("m=application"), "{}", offer.sdp);

    sfu.wait_metric("sfu_participants", Duration::from_secs(5), |v| v == 1.0)
        .await
        .unwrap();
    send(&mut ws, In::Leave(lk::LeaveRequest::default())).await;
    sfu.wait_metric("sfu_participants", Duration::from_secs(5), |v| v == 0.0)
        .await
        .unwrap();
    sfu.wait_metric("sfu_rooms", Duration::from_secs(5), |v| v == 0.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn ping_is_answered_and_garbage_is_survived() {
    let sfu = spawn_sfu().await;
    let mut ws = connect(&sfu, &sfu.token("alice", "room-2")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Out::Join(_)));
    // Malformed protobuf, an unknown text frame, SDP garbage, an answer to nothing, a candidate
    // for a PC that does not exist yet, a mute for an unknown track: all ignored.
    ws.send(Message::Binary(vec![0xff, 0xff, 0xff, 0x01].into()))
        .await
        .unwrap();
    ws.send(Message::Text("{not json".into())).await.unwrap();
    send(
        &mut ws,
        In::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp: "v=garbage".into(),
            id: 7,
            ..Default::default()
        }),
    )
    .await;
    send(
        &mut ws,
        In::Answer(lk::SessionDescription {
            r#type: "answer".into(),
            sdp: "nonsense".into(),
            id: 1,
            ..Default::default()
        }),
    )
    .await;
    send(
        &mut ws,
        In::Trickle(lk::TrickleRequest {
            candidate_init: "{]".into(),
            target: lk::SignalTarget::Publisher as i32,
            r#final: false,
        }),
    )
    .await;
    send(
        &mut ws,
        In::Mute(lk::MuteTrackRequest {
            sid: "TR_unknown".into(),
            muted: true,
        }),
    )
    .await;
    send(
        &mut ws,
        In::PingReq(lk::Ping {
            timestamp: 12345,
            rtt: 0,
        }),
    )
    .await;
    loop {
        match next(&mut ws).await {
            Out::PongResp(p) => {
                assert_eq!(p.last_ping_timestamp, 12345);
                assert!(p.timestamp > 0);
                break;
            }
            Out::Offer(_) | Out::Trickle(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    send(&mut ws, In::Ping(1)).await;
    loop {
        match next(&mut ws).await {
            Out::Pong(ts) => {
                assert!(ts > 0);
                break;
            }
            Out::Offer(_) | Out::Trickle(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn add_track_is_answered_with_the_cid_and_a_track_sid() {
    let sfu = spawn_sfu().await;
    let mut ws = connect(&sfu, &sfu.token("alice", "room-3")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Out::Join(_)));
    send(
        &mut ws,
        In::AddTrack(lk::AddTrackRequest {
            cid: "my-cam".into(),
            r#type: lk::TrackType::Video as i32,
            source: lk::TrackSource::Camera as i32,
            ..Default::default()
        }),
    )
    .await;
    let Out::TrackPublished(published) = next_non_trickle_skip_offer(&mut ws).await else {
        panic!("expected track_published");
    };
    assert_eq!(published.cid, "my-cam");
    assert!(published.track.unwrap().sid.starts_with("TR_"));
    // The same cid again is refused, and said so.
    send(
        &mut ws,
        In::AddTrack(lk::AddTrackRequest {
            cid: "my-cam".into(),
            r#type: lk::TrackType::Video as i32,
            ..Default::default()
        }),
    )
    .await;
    let Out::RequestResponse(refused) = next_non_trickle_skip_offer(&mut ws).await else {
        panic!("expected request_response");
    };
    assert_ne!(refused.reason, lk::request_response::Reason::Ok as i32);
    assert!(matches!(
        refused.request,
        Some(lk::request_response::Request::AddTrack(ref r)) if r.cid == "my-cam"
    ));
    assert_eq!(
        sfu.metric("sfu_bad_input_total{what=\"add_track\"}").await,
        Some(1.0)
    );
}

async fn next_non_trickle_skip_offer(ws: &mut Ws) -> Out {
    loop {
        match next(ws).await {
            Out::Trickle(_) | Out::Offer(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let sfu = spawn_sfu().await;
    let expired = sfu
        .keys
        .mint_access_token("alice", "", VideoGrant::join("r"), now() - 7200, 600);
    let no_join = sfu.token_without_join("alice", "r");
    for bad in [expired.as_str(), no_join.as_str(), "garbage"] {
        match connect(&sfu, bad).await {
            Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(sfu.metric("sfu_participants").await, Some(0.0));
}

#[tokio::test]
async fn the_second_participant_sees_the_first_and_a_duplicate_identity_replaces() {
    let sfu = spawn_sfu().await;
    let mut alice = connect(&sfu, &sfu.token("alice", "room-4")).await.unwrap();
    let Out::Join(a) = next(&mut alice).await else {
        panic!()
    };
    let mut bob = connect(&sfu, &sfu.token("bob", "room-4")).await.unwrap();
    let Out::Join(b) = next(&mut bob).await else {
        panic!()
    };
    assert_eq!(b.other_participants.len(), 1);
    assert_eq!(b.other_participants[0].identity, "alice");
    let Out::Update(update) = next_non_trickle_skip_offer(&mut alice).await else {
        panic!("alice is told about bob")
    };
    assert_eq!(update.participants[0].identity, "bob");

    let mut alice2 = connect(&sfu, &sfu.token("alice", "room-4")).await.unwrap();
    assert!(matches!(next(&mut alice2).await, Out::Join(_)));
    let Out::Leave(leave) = next_non_trickle_skip_offer(&mut alice).await else {
        panic!("the first alice is told to leave")
    };
    assert_eq!(leave.reason, lk::DisconnectReason::DuplicateIdentity as i32);
    // Bob sees the old alice go (DISCONNECTED) and the new one arrive.
    let mut states = Vec::new();
    while states.len() < 2 {
        if let Out::Update(u) = next_non_trickle_skip_offer(&mut bob).await {
            for p in u.participants {
                states.push((p.sid, p.state));
            }
        }
    }
    let a_sid = a.participant.unwrap().sid;
    assert!(states.contains(&(a_sid, lk::participant_info::State::Disconnected as i32)));
    sfu.wait_metric("sfu_participants", Duration::from_secs(5), |v| v == 2.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_ping_timeout() {
    let sfu = spawn_sfu_with(|s| {
        s.signal.ping_interval_secs = 1;
        s.signal.ping_timeout_secs = 2;
    })
    .await;
    let mut ws = connect(&sfu, &sfu.token("alice", "room-5")).await.unwrap();
    let Out::Join(join) = next(&mut ws).await else {
        panic!()
    };
    assert_eq!((join.ping_interval, join.ping_timeout), (1, 2));
    let started = std::time::Instant::now();
    // Say nothing; the server must close the socket by itself.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Close(_) = frame {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket stayed open");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    sfu.wait_metric("sfu_participants", Duration::from_secs(5), |v| v == 0.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    let sfu = spawn_sfu().await;
    let mut ws = connect(&sfu, &sfu.token("alice", "room-6")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Out::Join(_)));
    sfu.stop();
    let Out::Leave(leave) = next_non_trickle_skip_offer(&mut ws).await else {
        panic!("expected leave on shutdown")
    };
    assert_eq!(leave.reason, lk::DisconnectReason::ServerShutdown as i32);
    assert_eq!(leave.action, lk::leave_request::Action::Reconnect as i32);
}
