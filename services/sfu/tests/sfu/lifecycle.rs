//! Lifecycle: signed webhooks to a local receiver, and `refresh_token` on the socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::helpers::{now, spawn_sfu_with, TestSfu};
use crate::signal::{next, send, Ws};
use ppodok_tokens::livekit::VideoGrant;

/// One request the receiver got.
#[derive(Debug)]
pub struct Received {
    pub authorization: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A local HTTP server answering 503 to its first `fail_first` requests and 200 after, and
/// handing every request it answered 200 to to the test.
pub struct Receiver {
    pub url: String,
    pub rx: mpsc::UnboundedReceiver<Received>,
    pub failed: Arc<AtomicUsize>,
}

pub async fn spawn_receiver(fail_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let counter = counter.clone();
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let authorization = header("authorization");
                        let content_type = header("content-type");
                        let body = match req.into_body().collect().await {
                            Ok(b) => b.to_bytes().to_vec(),
                            Err(_) => Vec::new(),
                        };
                        let status = if counter.load(Ordering::SeqCst) < fail_first {
                            counter.fetch_add(1, Ordering::SeqCst);
                            503
                        } else {
                            let _ = tx.send(Received {
                                authorization,
                                content_type,
                                body,
                            });
                            200
                        };
                        hyper::Response::builder()
                            .status(status)
                            .body(Full::new(bytes::Bytes::new()))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { url, rx, failed }
}

impl Receiver {
    /// The next event, checked for LiveKit's headers and a valid signature.
    pub async fn next_event(&mut self, sfu: &TestSfu) -> Value {
        let got = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a webhook within 10 s")
            .expect("receiver running");
        assert_eq!(got.content_type, "application/webhook+json");
        sfu.keys
            .verify_webhook(&got.authorization, &got.body)
            .expect("the body is signed with the SFU's key");
        serde_json::from_slice(&got.body).expect("JSON body")
    }
}

async fn connect(sfu: &TestSfu, token: &str) -> Ws {
    crate::signal::connect(sfu, token).await.unwrap()
}

/// The first message matching `pick`, skipping others.
async fn wait_for<T>(ws: &mut Ws, mut pick: impl FnMut(Out) -> Option<T>) -> T {
    loop {
        if let Some(t) = pick(next(ws).await) {
            return t;
        }
    }
}

async fn join(sfu: &TestSfu, identity: &str, room: &str) -> Ws {
    let mut ws = connect(sfu, &sfu.token(identity, room)).await;
    wait_for(&mut ws, |m| matches!(m, Out::Join(_)).then_some(())).await;
    ws
}

/// Sends `leave` and waits for the server to close the socket.
async fn leave(mut ws: Ws) {
    send(
        &mut ws,
        In::Leave(lk::LeaveRequest {
            reason: lk::DisconnectReason::ClientInitiated as i32,
            ..Default::default()
        }),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

fn summary(ev: &Value) -> String {
    let mut s = ev["event"].as_str().unwrap_or("?").to_owned();
    if let Some(id) = ev["participant"]["identity"].as_str() {
        s.push(':');
        s.push_str(id);
    }
    s
}

#[tokio::test]
async fn join_publish_and_leave_send_signed_webhooks_in_order() {
    let mut hooks = spawn_receiver(0).await;
    let url = hooks.url.clone();
    let sfu = spawn_sfu_with(|s| s.webhook.urls = vec![url]).await;

    let mut alice = join(&sfu, "alice", "hooks-room").await;
    let bob = join(&sfu, "bob", "hooks-room").await;
    send(
        &mut alice,
        In::AddTrack(lk::AddTrackRequest {
            cid: "mic-1".into(),
            name: "mic".into(),
            r#type: lk::TrackType::Audio as i32,
            source: lk::TrackSource::Microphone as i32,
            ..Default::default()
        }),
    )
    .await;
    let track = wait_for(&mut alice, |m| match m {
        Out::TrackPublished(t) => t.track,
        _ => None,
    })
    .await;
    leave(bob).await;
    leave(alice).await;

    let want = [
        "room_started",
        "participant_joined:alice",
        "participant_joined:bob",
        "track_published:alice",
        "participant_left:bob",
        "track_unpublished:alice",
        "participant_left:alice",
        "room_finished",
    ];
    let mut events = Vec::new();
    for _ in want {
        events.push(hooks.next_event(&sfu).await);
    }
    let got: Vec<String> = events.iter().map(summary).collect();
    assert_eq!(got, want);

    let mut ids = std::collections::HashSet::new();
    for ev in &events {
        assert_eq!(ev["room"]["name"], "hooks-room", "{ev}");
        assert!(ids.insert(ev["id"].as_str().unwrap().to_owned()), "{ev}");
        let created: i64 = ev["createdAt"]
            .as_str()
            .expect("createdAt is a string, as protojson prints int64")
            .parse()
            .unwrap();
        assert!((created - now()).abs() < 30, "{ev}");
    }
    assert_eq!(events[3]["track"]["sid"], track.sid.as_str());
    assert_eq!(events[5]["track"]["sid"], track.sid.as_str());
    sfu.wait_metric("sfu_webhooks_sent_total", Duration::from_secs(5), |v| {
        v == want.len() as f64
    })
    .await
    .unwrap();
    assert_eq!(sfu.metric("sfu_webhooks_failed_total").await, Some(0.0));
    assert_eq!(sfu.metric("sfu_webhooks_dropped_total").await, Some(0.0));
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_on_a_retry() {
    let mut hooks = spawn_receiver(2).await;
    let url = hooks.url.clone();
    let sfu = spawn_sfu_with(|s| s.webhook.urls = vec![url]).await;
    let ws = join(&sfu, "carol", "retry-room").await;
    let first = hooks.next_event(&sfu).await;
    assert_eq!(first["event"], "room_started");
    assert_eq!(hooks.failed.load(Ordering::SeqCst), 2);
    assert_eq!(hooks.next_event(&sfu).await["event"], "participant_joined");
    leave(ws).await;
    assert_eq!(hooks.next_event(&sfu).await["event"], "participant_left");
    assert_eq!(hooks.next_event(&sfu).await["event"], "room_finished");
    assert_eq!(sfu.metric("sfu_webhooks_failed_total").await, Some(0.0));
}

#[tokio::test]
async fn an_unreachable_receiver_is_counted_as_failed_and_signalling_goes_on() {
    // A port that was just free: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sfu = spawn_sfu_with(|s| s.webhook.urls = vec![format!("http://127.0.0.1:{port}/")]).await;
    let ws = join(&sfu, "dave", "lonely-room").await;
    leave(ws).await;
    // Four events, each given up after its retries (about 3 s of back-off each).
    sfu.wait_metric("sfu_webhooks_failed_total", Duration::from_secs(30), |v| {
        v >= 1.0
    })
    .await
    .unwrap();
    assert_eq!(sfu.metric("sfu_webhooks_sent_total").await, Some(0.0));
}

#[tokio::test]
async fn the_socket_carries_a_refreshed_token_that_joins_after_the_original_expired() {
    let sfu = spawn_sfu_with(|s| s.signal.token_refresh_secs = 1).await;
    // Valid for a few seconds only (60 s of leeway on top).
    let original = sfu.keys.mint_access_token(
        "erin",
        "Erin",
        VideoGrant::join("refresh-room"),
        now() - 100,
        43,
    );
    let original_claims = sfu.keys.verify_access_token(&original).unwrap();
    let mut ws = connect(&sfu, &original).await;
    wait_for(&mut ws, |m| matches!(m, Out::Join(_)).then_some(())).await;
    let refreshed = wait_for(&mut ws, |m| match m {
        Out::RefreshToken(t) => Some(t),
        _ => None,
    })
    .await;
    let claims = sfu.keys.verify_access_token(&refreshed).unwrap();
    assert_eq!(claims.sub, "erin");
    assert_eq!(claims.name, "Erin");
    assert_eq!(claims.video, original_claims.video);
    assert!(claims.exp >= now() + 590, "{claims:?}");
    // Wait until the original is refused, then rejoin with the refreshed one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while sfu.keys.verify_access_token(&original).is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "original never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = tokio_tungstenite::connect_async(format!(
        "{}/rtc?access_token={original}&protocol=16",
        sfu.ws_url()
    ))
    .await;
    assert!(refused.is_err(), "the expired original is refused");
    leave(ws).await;
    let mut again = connect(&sfu, &refreshed).await;
    let me = wait_for(&mut again, |m| match m {
        Out::Join(j) => j.participant,
        _ => None,
    })
    .await;
    assert_eq!(me.identity, "erin");
    leave(again).await;
    assert!(sfu.metric("sfu_tokens_refreshed_total").await.unwrap() >= 1.0);
}
