//! Memory and tasks come back after participants leave: the real `ppodok-sfu` binary takes 1,000
//! join/leave cycles (ten at a time in one room, each connecting its subscriber PeerConnection:
//! ICE, DTLS, SCTP for LiveKit's data channels), then its sessions, PeerConnections and tasks
//! are back where they started and its RSS is within 20 % of its level before the cycles.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use ppodok_sfu::media::{MediaEngine, MediaEvent, MediaSettings, PeerState, Role, WireCounters};
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{now, sfu_binary, spawn_listening};
use crate::signal::{connect_at, send};

const KEY: &str = "churn-key";
const SECRET: &str = "churn-secret-churn-secret-0123456789abcdef";
const CYCLES: usize = 1_000;
const AT_ONCE: usize = 10;
/// Cycles before the baseline is taken: first-use costs (TLS and DTLS setup, lazy statics, the
/// allocator's first arenas) are not what this test is about.
const WARMUP: usize = 20;

struct Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut command = sfu_binary(KEY, SECRET);
    command.env("PPODOK_SFU__TELEMETRY__FILTER", "error");
    let (child, port) = spawn_listening(command);
    Server { child, port }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Joins, connects the subscriber PeerConnection the server offers, and leaves.
async fn cycle(port: u16, identity: String, engine: Arc<MediaEngine>) {
    let keys = LivekitKeys::new(KEY, SECRET);
    let token = keys.mint_access_token(&identity, &identity, VideoGrant::join("churn"), now(), 600);
    let mut ws = connect_at(&format!("ws://127.0.0.1:{port}"), &token)
        .await
        .unwrap();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (data_tx, _data_rx) = mpsc::channel(16);
    let sub = engine
        .create_peer("churn", Role::Subscriber, ev_tx, data_tx)
        .await
        .unwrap();
    let mut pending: Vec<String> = Vec::new();
    let mut answered = false;
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(Message::Binary(data))) = frame else { panic!("{identity}: socket closed") };
                match lk::SignalResponse::decode(data.as_ref()).unwrap().message {
                    Some(Out::Offer(desc)) => {
                        let sdp = sub.answer_offer(&desc.sdp).await.unwrap();
                        send(&mut ws, In::Answer(lk::SessionDescription {
                            r#type: "answer".into(),
                            sdp,
                            id: desc.id,
                            ..Default::default()
                        })).await;
                        answered = true;
                        for c in pending.drain(..) {
                            let _ = sub.add_remote_candidate(&c).await;
                        }
                    }
                    Some(Out::Trickle(t)) if t.target == lk::SignalTarget::Subscriber as i32 => {
                        if answered {
                            let _ = sub.add_remote_candidate(&t.candidate_init).await;
                        } else {
                            pending.push(t.candidate_init);
                        }
                    }
                    _ => {}
                }
            }
            event = ev_rx.recv() => match event {
                Some(MediaEvent::Candidate { role: Role::Subscriber, init_json }) => {
                    send(&mut ws, In::Trickle(lk::TrickleRequest {
                        candidate_init: init_json,
                        target: lk::SignalTarget::Subscriber as i32,
                        r#final: false,
                    })).await;
                }
                Some(MediaEvent::State { state: PeerState::Connected, .. }) => break,
                Some(_) => {}
                None => panic!("{identity}: media events ended"),
            },
            _ = &mut deadline => panic!("{identity}: not connected within 20 s"),
        }
    }
    send(&mut ws, In::Leave(lk::LeaveRequest::default())).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    sub.close().await;
}

async fn cycles(port: u16, from: usize, to: usize, engine: &Arc<MediaEngine>) {
    let mut i = from;
    while i < to {
        let wave: Vec<_> = (i..(i + AT_ONCE).min(to))
            .map(|n| tokio::spawn(cycle(port, format!("churn-{n}"), engine.clone())))
            .collect();
        for t in wave {
            t.await.expect("a cycle");
        }
        i += AT_ONCE;
    }
}

/// Polls until `sample` reaches `want` (or fails with what it is).
async fn settles(port: u16, sample: &str, want: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(port, sample).await;
        if want(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{sample} stuck at {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_joins_and_leaves_give_back_memory_sessions_and_tasks() {
    let server = start();
    let pid = server.child.id();
    let port = server.port;
    let engine = Arc::new(MediaEngine::for_clients(
        MediaSettings {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_range: (0, 0),
            nat_1to1: Arc::from([]),
        },
        WireCounters::default(),
    ));
    let started = Instant::now();
    cycles(port, 0, WARMUP, &engine).await;
    settles(port, "sfu_sessions", |v| v == 0.0).await;
    settles(port, "sfu_peer_connections", |v| v == 0.0).await;
    let tasks_before = metric(port, "sfu_runtime_tasks").await;
    let rss_before = rss_kib(pid);

    cycles(port, WARMUP, WARMUP + CYCLES, &engine).await;
    let churn_secs = started.elapsed().as_secs_f64();
    let mut peak = HashMap::new();
    peak.insert("rss during", rss_kib(pid));

    settles(port, "sfu_sessions", |v| v == 0.0).await;
    settles(port, "sfu_peer_connections", |v| v == 0.0).await;
    settles(port, "sfu_participants", |v| v == 0.0).await;
    let tasks = settles(port, "sfu_runtime_tasks", |v| v <= tasks_before).await;
    // Freed memory goes back to the system as sessions end; give it the same deadline.
    let limit = rss_before + rss_before / 5;
    let deadline = Instant::now() + Duration::from_secs(20);
    let rss_after = loop {
        let rss = rss_kib(pid);
        if rss <= limit || Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "churn: {CYCLES} cycles in {churn_secs:.1} s; RSS {rss_before} KiB before, {} KiB at the \
         end of the cycles, {rss_after} KiB after; tasks {tasks_before} before, {tasks} after",
        peak["rss during"]
    );
    assert!(
        rss_after <= limit,
        "RSS {rss_after} KiB after {CYCLES} cycles, more than 20 % over {rss_before} KiB"
    );
}
