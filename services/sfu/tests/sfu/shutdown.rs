//! What SIGTERM does to the real `ppodok-sfu` binary (README, "Draining"): in a cluster the node
//! drains — says so in its registry record, keeps serving the rooms it has, and stops once the
//! last one has ended, deregistering itself — and a second SIGTERM stops it at once; alone, it
//! stops at once.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};

use crate::helpers::{now, sfu_binary, spawn_listening};
use crate::signal::{connect_at, next_non_trickle, send, Ws};

const KEY: &str = "shutdown-key";
const SECRET: &str = "shutdown-secret-shutdown-secret-0123456789";
const NODE: &str = "node-shutdown";
/// How long a node may take to stop once it should (the drain loop looks every 500 ms).
const STOPS_WITHIN: Duration = Duration::from_secs(5);

/// The SFU binary, killed if a test leaves it running.
struct Node {
    child: Child,
    port: u16,
    /// The registry's key prefix, when the node is in a cluster; its keys are removed on drop.
    prefix: Option<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(prefix) = &self.prefix {
            for key in redis_cli(&["--scan", "--pattern", &format!("{prefix}*")]).lines() {
                redis_cli(&["DEL", key]);
            }
        }
    }
}

fn redis_url() -> String {
    std::env::var("PPODOK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn start(cluster: bool) -> Node {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let prefix = cluster.then(|| {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("test-shutdown-{}-{}-{n}:", std::process::id(), now())
    });
    let mut command = sfu_binary(KEY, SECRET);
    command.env("PPODOK_SFU__TELEMETRY__FILTER", "warn");
    if let Some(prefix) = &prefix {
        command
            .env("PPODOK_SFU__CLUSTER__REDIS_URL", redis_url())
            .env("PPODOK_SFU__CLUSTER__KEY_PREFIX", prefix)
            .env("PPODOK_SFU__CLUSTER__NODE_ID", NODE)
            .env("PPODOK_SFU__CLUSTER__REFRESH_MILLIS", "200")
            .env("PPODOK_SFU__CLUSTER__TTL_MILLIS", "5000");
    }
    let (child, port) = spawn_listening(command);
    Node {
        child,
        port,
        prefix,
    }
}

impl Node {
    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM was delivered");
    }

    /// Its exit status if it stops within `within`, else `None`.
    async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the node to stop (within [`STOPS_WITHIN`], else fails with `why`) and checks
    /// that it exited cleanly.
    async fn stops_cleanly(&mut self, why: &str) {
        let status = self.exit_within(STOPS_WITHIN).await.expect(why);
        assert!(status.success(), "{why}: {status}");
    }

    /// The node's registry record (JSON), or `None` once it is gone.
    fn record(&self) -> Option<serde_json::Value> {
        let prefix = self.prefix.as_deref().expect("a cluster node");
        let raw = redis_cli(&["GET", &ppodok_domain::cluster::node_key(prefix, NODE)]);
        (!raw.is_empty()).then(|| serde_json::from_str(&raw).expect("the record is JSON"))
    }

    /// Waits until the registry record says the node drains.
    async fn wait_draining(&self) {
        let deadline = Instant::now() + STOPS_WITHIN;
        loop {
            let record = self.record().expect("the draining node stays registered");
            if record["draining"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node never published draining: {record}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A participant in `room`, joined.
    async fn join(&self, identity: &str, room: &str) -> Ws {
        let token = LivekitKeys::new(KEY, SECRET).mint_access_token(
            identity,
            identity,
            VideoGrant::join(room),
            now(),
            600,
        );
        let mut ws = connect_at(&format!("ws://127.0.0.1:{}", self.port), &token)
            .await
            .expect("the node takes the join");
        match next_non_trickle(&mut ws).await {
            Out::Join(_) => ws,
            other => panic!("expected a join response, got {other:?}"),
        }
    }
}

/// The participant is still served: a ping is answered.
async fn still_served(ws: &mut Ws) {
    send(
        ws,
        In::PingReq(lk::Ping {
            timestamp: 1,
            rtt: 0,
        }),
    )
    .await;
    loop {
        match next_non_trickle(ws).await {
            Out::PongResp(pong) => {
                assert_eq!(pong.last_ping_timestamp, 1);
                return;
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn sigterm_drains_a_cluster_node_until_its_last_room_ends_then_it_deregisters() {
    let mut node = start(true);
    let mut ws = node.join("alice", "shutdown-room").await;
    assert!(node.record().is_some(), "the node is registered");

    node.sigterm();
    node.wait_draining().await;
    // Draining keeps the room: the process stays up and the participant is served.
    assert!(
        node.exit_within(Duration::from_secs(1)).await.is_none(),
        "a draining node with a live room keeps running"
    );
    still_served(&mut ws).await;

    send(&mut ws, In::Leave(lk::LeaveRequest::default())).await;
    drop(ws);
    node.stops_cleanly("a drained node stops once its last room has ended")
        .await;
    assert!(node.record().is_none(), "the stopped node deregistered");
}

#[tokio::test]
async fn a_second_sigterm_stops_a_draining_node_at_once() {
    let mut node = start(true);
    let _ws = node.join("bob", "shutdown-room-2").await;
    node.sigterm();
    node.wait_draining().await;
    node.sigterm();
    node.stops_cleanly("the second SIGTERM stops the node with its room still live")
        .await;
    assert!(node.record().is_none(), "the stopped node deregistered");
}

#[tokio::test]
async fn sigterm_stops_a_node_alone_at_once() {
    let mut node = start(false);
    let _ws = node.join("carol", "shutdown-room-3").await;
    node.sigterm();
    node.stops_cleanly("a node alone stops on SIGTERM").await;
}
