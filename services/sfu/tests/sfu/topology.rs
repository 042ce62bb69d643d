//! The whole topology on loopback, real processes: two `ppodok-api` replicas and two `ppodok-sfu`
//! nodes on one MariaDB schema and one Redis prefix (fresh for this run), behind Debian's nginx
//! running the config rendered from deploy/routes.toml. Everything a member does goes through
//! nginx: dev-login, booking, and video in headless Chromium (tests/sfu-browser/topology.mjs:
//! pages that fetch their video token from the API and connect livekit-client to the node it
//! names).
//!
//! Checked: rooms spread over both nodes (each node's own /metrics), both members of a room on
//! one node decoding each other; a draining node keeps its room and gets no new one; `kill -9` of
//! a node sends its members, by a new token, to the surviving node, decoding again within 10 s
//! (logged); cancelling a booking removes that member from the video room within 5 s.
//!
//! The API binary is the one `cargo test --workspace` built before this package's tests
//! (target/debug/ppodok-api, refused when older than its sources); the SFU is this package's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use fred::prelude::*;
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const SECRET: &str = "topology-livekit-secret-topology-0123456789";
const NGINX: &str = "/usr/sbin/nginx";
const NODES: [&str; 2] = ["ppodok-sfu-0", "ppodok-sfu-1"];

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// target/debug/ppodok-api, next to this test's own directory, refused when stale.
fn api_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("ppodok-api");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: `make test` builds it first (or `cargo build -p ppodok-api`)",
                path.display()
            )
        });
    let newest = ["services/api/src", "services/api/config", "crates"]
        .iter()
        .filter_map(|dir| newest_file(&repo_dir().join(dir)))
        .max()
        .unwrap();
    assert!(
        built >= newest,
        "{} is older than its sources: rebuild it (`cargo build -p ppodok-api`)",
        path.display()
    );
    path
}

fn newest_file(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                newest_file(&entry.path())
            } else {
                meta.modified().ok()
            }
        })
        .max()
}

/// A child process, killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` and reads its port from the `listening on http://127.0.0.1:PORT` line.
fn start(binary: &Path, env: &[(&str, String)]) -> Proc {
    let mut command = Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
    let (child, port) = crate::helpers::spawn_listening(command);
    Proc { child, port }
}

/// A MariaDB schema and a Redis prefix of this run, removed afterwards.
struct Stores {
    schema: String,
    prefix: String,
}

impl Stores {
    fn create() -> Stores {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let stores = Stores {
            schema: format!("ppodok_t_{id}"),
            prefix: format!("ppodok-test:{id}:"),
        };
        let status = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!(
                "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                stores.schema
            ))
            .status()
            .expect("the mariadb client runs");
        assert!(status.success(), "MariaDB at 127.0.0.1:3306 (root)");
        stores
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.schema))
            .status();
        // Only this run's keys.
        if let Ok(out) = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "--scan", "--pattern"])
            .arg(format!("{}*", self.prefix))
            .output()
        {
            let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            for chunk in keys.chunks(100) {
                let _ = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "DEL"])
                    .args(chunk)
                    .output();
            }
        }
    }
}

/// nginx on the config rendered from deploy/routes.toml: the API target's upstream holds both
/// replicas (compose does the same through one DNS name), each node route its own node.
struct Router {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Router {
    async fn start(listen: u16, apis: [u16; 2], sfus: [u16; 2]) -> Router {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install nginx-light"
        );
        let dir = std::env::temp_dir().join(format!("ppodok-topology-{}", uuid::Uuid::new_v4()));
        let web = dir.join("web");
        std::fs::create_dir_all(&web).unwrap();
        let bundle = repo_dir()
            .join("tests/sfu-browser/node_modules/livekit-client/dist/livekit-client.umd.js");
        std::fs::copy(&bundle, web.join("livekit-client.umd.js"))
            .unwrap_or_else(|e| panic!("{}: {e} (run `make sfu-browser-deps`)", bundle.display()));
        std::fs::write(
            web.join("index.html"),
            "<!doctype html><meta charset=\"utf-8\"><title>topology</title>\n\
             <script src=\"/livekit-client.umd.js\"></script><body></body>",
        )
        .unwrap();

        let text = std::fs::read_to_string(repo_dir().join("deploy/routes.toml")).unwrap();
        let mut table = ppodok_deploy_render::load(&text).expect("deploy/routes.toml is valid");
        table.router.listen_port = listen;
        for target in &mut table.targets {
            target.upstream_host = "127.0.0.1".into();
            if let Some(node) = target.node_id.clone() {
                let n = NODES
                    .iter()
                    .position(|id| *id == node)
                    .unwrap_or_else(|| panic!("routes.toml names node {node} this test lacks"));
                target.port = sfus[n];
                target.local_port = None;
                continue;
            }
            match target.name.as_str() {
                "api" => target.port = apis[0],
                "sfu" => target.port = sfus[0],
                "web" => target.root = Some(web.display().to_string()),
                other => panic!("a target this test does not know: {other}"),
            }
        }
        ppodok_deploy_render::validate(&table).expect("still valid on local ports");
        let one = format!(
            "    upstream api {{\n        server 127.0.0.1:{};\n",
            apis[0]
        );
        let config = ppodok_deploy_render::render_nginx(&table);
        assert!(config.contains(&one), "{config}");
        let config = config.replace(
            &one,
            &format!(
                "    upstream api {{\n        server 127.0.0.1:{};\n        server 127.0.0.1:{};\n",
                apis[0], apis[1]
            ),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = tokio::process::Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let mut router = Router { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("http://127.0.0.1:{listen}/health"))
            .await
            .map_or(true, |r| r.status() != StatusCode::OK)
        {
            assert!(
                router.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline,
                "nginx never answered; {}",
                std::fs::read_to_string(router.dir.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        router
    }
}

/// The member pages (tests/sfu-browser/topology.mjs) and everything they reported.
struct Pages {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Pages {
    fn start(origin: &str) -> Pages {
        let dir = repo_dir().join("tests/sfu-browser");
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("topology.mjs"))
            .arg(origin)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("pages: {line}"),
                }
            }
        });
        Pages {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    async fn join(&mut self, member: &Member, room: i64) {
        let line = json!({"cmd": "join", "member": member.name, "accessToken": member.token, "roomId": room});
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The first report (seen or upcoming) matching `pred`, within `within`.
    async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    if v["event"] == "fatal" || v["event"] == "pageError" {
                        panic!("member page failed: {v}");
                    }
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!("the member pages exited while waiting for {what}"),
                Err(_) => {
                    let mut tail: Vec<String> = self
                        .seen
                        .iter()
                        .filter(|v| v["event"] != "decoding")
                        .map(Value::to_string)
                        .collect();
                    let decoding: Vec<&Value> = self
                        .seen
                        .iter()
                        .filter(|v| v["event"] == "decoding")
                        .collect();
                    tail.extend(decoding.iter().rev().take(8).map(|v| v.to_string()));
                    panic!(
                        "no {what} within {within:?}; reports (the last decoding ones last):\n{}",
                        tail.join("\n")
                    );
                }
            }
        }
    }

    /// Waits until `member` (in connection `gen` or later) decodes `from`'s camera past `frames`.
    async fn decodes(
        &mut self,
        member: &Member,
        from: &Member,
        gen: u64,
        frames: u64,
        within: Duration,
    ) -> Value {
        let (name, id) = (member.name.clone(), from.id.to_string());
        self.wait_for(
            &format!("{} decoding {}", member.name, from.name),
            within,
            move |v| {
                v["event"] == "decoding"
                    && v["member"] == name.as_str()
                    && v["from"] == id.as_str()
                    && v["gen"].as_u64().unwrap_or(0) >= gen
                    && v["framesDecoded"].as_u64().unwrap_or(0) > frames
            },
        )
        .await
    }

    async fn event(&mut self, member: &Member, event: &str, within: Duration) -> Value {
        let name = member.name.clone();
        let e = event.to_owned();
        self.wait_for(&format!("{} {event}", member.name), within, move |v| {
            v["member"] == name.as_str() && v["event"] == e.as_str()
        })
        .await
    }

    /// The latest frames `member` decoded of `from` so far.
    fn frames(&self, member: &Member, from: &Member) -> u64 {
        self.seen
            .iter()
            .filter(|v| {
                v["event"] == "decoding"
                    && v["member"] == member.name.as_str()
                    && v["from"] == from.id.to_string().as_str()
            })
            .filter_map(|v| v["framesDecoded"].as_u64())
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

struct Member {
    name: String,
    token: String,
    id: i64,
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the router answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, name: &str) -> Member {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/members/dev-login",
                None,
                json!({ "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["data"]["accessToken"]
            .as_str()
            .or_else(|| body["accessToken"].as_str())
            .unwrap_or_else(|| panic!("no accessToken in {body}"))
            .to_owned();
        let (_, me) = self
            .call(Method::GET, "/api/v1/members", Some(&token), Value::Null)
            .await;
        let id = me["data"]["memberId"]
            .as_i64()
            .or_else(|| me["memberId"].as_i64())
            .unwrap_or_else(|| panic!("no memberId in {me}"));
        Member {
            name: name.to_owned(),
            token,
            id,
        }
    }

    /// A group of `a` and `b`, and their booking of the slot at `start`: (group, room).
    async fn room_for(&self, a: &Member, b: &Member, start: &str) -> (i64, i64) {
        let (status, group) = self
            .call(
                Method::POST,
                "/api/v1/groups",
                Some(&a.token),
                json!({ "groupName": format!("{}방", a.name), "secret": false, "password": null }),
            )
            .await;
        assert!(status.is_success(), "{group}");
        let group = group["data"]["groupId"]
            .as_i64()
            .or_else(|| group["groupId"].as_i64())
            .unwrap();
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/groups/{group}"),
                Some(&b.token),
                json!({ "password": null }),
            )
            .await;
        assert!(status.is_success(), "{body}");
        let mut room = 0;
        for who in [a, b] {
            let (status, body) = self
                .call(
                    Method::POST,
                    "/api/v1/rooms/reservations",
                    Some(&who.token),
                    json!({ "groupId": group, "startTime": start }),
                )
                .await;
            assert!(status.is_success(), "{body}");
            room = body["data"]["roomId"]
                .as_i64()
                .unwrap_or_else(|| panic!("{body}"));
        }
        (group, room)
    }

    async fn video_url(&self, who: &Member, room: i64) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/rooms/{room}/video-token"),
            Some(&who.token),
            Value::Null,
        )
        .await
    }
}

async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on :{port}"))
}

/// Polls `name` on the node at `port` until `pred`, for at most `within`.
async fn wait_metric(port: u16, name: &str, within: Duration, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(port, name).await;
        if pred(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} on :{port} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_nodes_survive_a_dead_node_and_cancelling_removes() {
    let started = Instant::now();
    let api_bin = api_binary();
    let stores = Stores::create();
    let listen = free_port();
    let origin = format!("http://127.0.0.1:{listen}");
    let redis_url =
        std::env::var("PPODOK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    // Two SFU nodes in the registry, refreshed every 500 ms, gone 2 s after their last refresh.
    let sfu_bin = Path::new(env!("CARGO_BIN_EXE_ppodok-sfu"));
    let mut sfus: Vec<Proc> = NODES
        .iter()
        .map(|node| {
            start(
                sfu_bin,
                &[
                    ("PPODOK_SFU__HOST", "127.0.0.1".into()),
                    ("PPODOK_SFU__PORT", "0".into()),
                    ("PPODOK_SFU__RTC__UDP_PORT_MIN", "0".into()),
                    ("PPODOK_SFU__RTC__UDP_PORT_MAX", "0".into()),
                    ("PPODOK_SFU__LIVEKIT__API_KEY", "devkey".into()),
                    ("PPODOK_SFU__LIVEKIT__API_SECRET", SECRET.into()),
                    ("PPODOK_SFU__CLUSTER__REDIS_URL", redis_url.clone()),
                    ("PPODOK_SFU__CLUSTER__KEY_PREFIX", stores.prefix.clone()),
                    ("PPODOK_SFU__CLUSTER__NODE_ID", (*node).into()),
                    (
                        "PPODOK_SFU__CLUSTER__PUBLIC_URL",
                        format!("ws://127.0.0.1:{listen}/sfu/{node}"),
                    ),
                    ("PPODOK_SFU__CLUSTER__REFRESH_MILLIS", "500".into()),
                    ("PPODOK_SFU__CLUSTER__TTL_MILLIS", "2000".into()),
                ],
            )
        })
        .collect();
    // The internal URL defaults to http://127.0.0.1:<port>: where the API removes members.
    let sfu_ports = [sfus[0].port, sfus[1].port];

    let database = format!("mysql://root@127.0.0.1:3306/{}", stores.schema);
    let api_env = |migrate_first: bool| -> Vec<(&'static str, String)> {
        vec![
            ("PPODOK__SERVER__PORT", "0".into()),
            ("PPODOK__SERVER__WORKERS", "2".into()),
            ("PPODOK__DATABASE__URL", database.clone()),
            ("PPODOK__REDIS__URL", redis_url.clone()),
            ("PPODOK__REDIS__KEY_PREFIX", stores.prefix.clone()),
            (
                "PPODOK__AUTH__JWT_SECRET",
                "topology-jwt-secret-topology-jwt-secret!".into(),
            ),
            ("PPODOK__AUTH__DEV_LOGIN", "true".into()),
            ("PPODOK__LIVEKIT__API_SECRET", SECRET.into()),
            ("PPODOK__LIVEKIT__PLACEMENT", "least_loaded".into()),
            // Hour-long slots, video open two hours ahead: the room booked below is open for
            // video now and can still be cancelled (bookings close at the start).
            ("PPODOK__TIME__ZONE", "UTC".into()),
            ("PPODOK__ROOMS__CYCLE_MINUTES", "60".into()),
            ("PPODOK__ROOMS__STUDY_MINUTES", "50".into()),
            ("PPODOK__LIVEKIT__JOIN_BEFORE_MINUTES", "120".into()),
            ("PPODOK__CACHE__WARM_ON_BOOT", "false".into()),
            ("PPODOK__WEB__DIR", String::new()),
            ("PPODOK__LIMITS__ENABLED", "false".into()),
            ("PPODOK__JOBS__ENABLED", migrate_first.to_string()),
        ]
    };
    // The first replica migrates the schema before the second starts.
    let api_a = start(&api_bin, &api_env(true));
    let api_b = start(&api_bin, &api_env(false));
    let _router = Router::start(listen, [api_a.port, api_b.port], sfu_ports).await;
    let client = Client {
        base: origin.clone(),
        http: reqwest::Client::new(),
    };
    eprintln!("topology up in {:?}", started.elapsed());

    // Members and rooms, all through nginx. One slot, three groups: three rooms.
    let start_at = (Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() + TimeDelta::hours(2))
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let mut members = Vec::new();
    for name in ["m1", "m2", "m3", "m4", "m5", "m6"] {
        members.push(client.login(name).await);
    }
    let [m1, m2, m3, m4, m5, m6] = &members[..] else {
        unreachable!()
    };
    let (g1, r1) = client.room_for(m1, m2, &start_at).await;
    let (_, r2) = client.room_for(m3, m4, &start_at).await;
    let (_, r3) = client.room_for(m5, m6, &start_at).await;

    // Room 1's members join, then room 2's: a room placed an instant ago counts before anyone
    // has joined it, so the second room goes to the other node.
    let mut pages = Pages::start(&origin);
    pages
        .wait_for("ready", Duration::from_secs(30), |v| v["event"] == "ready")
        .await;
    pages.join(m1, r1).await;
    pages.join(m2, r1).await;
    let url1 = pages.event(m1, "joined", Duration::from_secs(30)).await["url"].clone();
    assert_eq!(
        pages.event(m2, "joined", Duration::from_secs(30)).await["url"],
        url1
    );
    pages.join(m3, r2).await;
    pages.join(m4, r2).await;
    let url2 = pages.event(m3, "joined", Duration::from_secs(30)).await["url"].clone();
    assert_eq!(
        pages.event(m4, "joined", Duration::from_secs(30)).await["url"],
        url2
    );
    assert_ne!(url1, url2, "the two rooms are on different nodes");
    let node_of = |url: &Value| {
        NODES
            .iter()
            .position(|n| url.as_str().unwrap().ends_with(&format!("/sfu/{n}")))
            .unwrap_or_else(|| panic!("{url} names no node through the router"))
    };
    let (a, b) = (node_of(&url1), node_of(&url2));
    for (x, y) in [(m1, m2), (m2, m1), (m3, m4), (m4, m3)] {
        pages.decodes(x, y, 1, 10, Duration::from_secs(30)).await;
    }
    // Each node's own metrics: one room, two participants.
    for port in sfu_ports {
        wait_metric(port, "sfu_rooms", Duration::from_secs(5), |v| v == 1.0).await;
        wait_metric(port, "sfu_participants", Duration::from_secs(5), |v| {
            v == 2.0
        })
        .await;
    }
    eprintln!("rooms spread and decoding at {:?}", started.elapsed());

    // Drain room 2's node: it keeps room 2, and room 3 goes to the other node.
    let keys = LivekitKeys::new("devkey", SECRET);
    let admin = keys.mint_access_token(
        "operator",
        "",
        VideoGrant {
            room_create: true,
            ..Default::default()
        },
        Utc::now().timestamp(),
        60,
    );
    let joiner = keys.mint_access_token("x", "", VideoGrant::join("1"), Utc::now().timestamp(), 60);
    for token in ["", joiner.as_str()] {
        let res = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/admin/drain", sfu_ports[b]))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "drain needs roomCreate"
        );
    }
    assert_eq!(metric(sfu_ports[b], "sfu_draining").await, 0.0);
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/admin/drain", sfu_ports[b]))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    wait_metric(sfu_ports[b], "sfu_draining", Duration::from_secs(5), |v| {
        v == 1.0
    })
    .await;
    let redis = RedisView::connect(&redis_url).await;
    redis.wait_draining(&stores.prefix, NODES[b]).await;
    let (status, token3) = client.video_url(m5, r3).await;
    assert_eq!(status, StatusCode::OK, "{token3}");
    assert_eq!(
        node_of(&token3["data"]["url"]),
        a,
        "a draining node gets no new room"
    );
    // Joining room 3 on the draining node directly is refused with a reason to act on.
    let refused = reqwest::get(format!(
        "http://127.0.0.1:{}/rtc/validate?access_token={}",
        sfu_ports[b],
        token3["data"]["token"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("request a new token"));
    // ... while room 2 goes on there.
    let before = pages.frames(m3, m4);
    pages
        .decodes(m3, m4, 1, before + 15, Duration::from_secs(10))
        .await;
    assert_eq!(metric(sfu_ports[b], "sfu_rooms").await, 1.0);
    let (_, again) = client.video_url(m4, r2).await;
    assert_eq!(
        node_of(&again["data"]["url"]),
        b,
        "room 2 stays on its draining node"
    );

    // kill -9 of room 2's node: its members get a new token naming the survivor, and decode
    // each other again there.
    let killed = Instant::now();
    let mut dead = sfus.remove(b);
    dead.child.kill().unwrap(); // SIGKILL
    let _ = dead.child.wait();
    pages.event(m3, "lost", Duration::from_secs(10)).await;
    pages.event(m4, "lost", Duration::from_secs(10)).await;
    for (x, y) in [(m3, m4), (m4, m3)] {
        pages.decodes(x, y, 2, 0, Duration::from_secs(20)).await;
        let joined = pages
            .seen
            .iter()
            .rev()
            .find(|v| v["member"] == x.name.as_str() && v["event"] == "joined")
            .unwrap()
            .clone();
        assert_eq!(
            node_of(&joined["url"]),
            a,
            "{} landed on the surviving node",
            x.name
        );
    }
    let recovery = killed.elapsed();
    eprintln!(
        "time to recovery after kill -9 of {}: {recovery:?}",
        NODES[b]
    );
    assert!(
        recovery < Duration::from_secs(10),
        "recovery took {recovery:?}"
    );
    wait_metric(sfu_ports[a], "sfu_rooms", Duration::from_secs(5), |v| {
        v == 2.0
    })
    .await;
    wait_metric(
        sfu_ports[a],
        "sfu_participants",
        Duration::from_secs(5),
        |v| v == 4.0,
    )
    .await;

    // Cancelling a booking removes that member from the video room within 5 s.
    let cancelled = Instant::now();
    let (status, body) = client
        .call(
            Method::DELETE,
            &format!("/api/v1/rooms/{r1}/reservation"),
            Some(&m1.token),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let gone = pages
        .event(m1, "disconnected", Duration::from_secs(5))
        .await;
    assert_eq!(gone["reasonName"], "PARTICIPANT_REMOVED", "{gone}");
    let removal = cancelled.elapsed();
    eprintln!("removed {removal:?} after cancelling");
    assert!(removal < Duration::from_secs(5));
    // Its page asks for a new token, as an app does, and is refused: no booking.
    assert_eq!(
        pages
            .event(m1, "tokenRefused", Duration::from_secs(5))
            .await["status"],
        403
    );
    wait_metric(
        sfu_ports[a],
        "sfu_participants",
        Duration::from_secs(5),
        |v| v == 3.0,
    )
    .await;

    // Leaving the group removes too, and so does withdrawing.
    for (who, path, body) in [
        (m2, "/api/v1/groups", json!({ "groupId": g1 })),
        (m4, "/api/v1/members", Value::Null),
    ] {
        let asked = Instant::now();
        let (status, answer) = client
            .call(Method::DELETE, path, Some(&who.token), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let gone = pages
            .event(who, "disconnected", Duration::from_secs(5))
            .await;
        assert_eq!(gone["reasonName"], "PARTICIPANT_REMOVED", "{path}: {gone}");
        eprintln!("DELETE {path}: removed after {:?}", asked.elapsed());
        assert!(asked.elapsed() < Duration::from_secs(5));
    }
    wait_metric(
        sfu_ports[a],
        "sfu_participants",
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await;
    // Room 1 is empty now: its node releases the placement, so its next token places it anew.
    redis.wait_released(&stores.prefix, r1).await;
    eprintln!("topology test done in {:?}", started.elapsed());
}

/// The test's own view of Redis (this run's prefix only).
struct RedisView {
    client: fred::prelude::Client,
}

impl RedisView {
    async fn connect(url: &str) -> RedisView {
        let client = Builder::from_config(Config::from_url(url).unwrap())
            .build()
            .unwrap();
        client.init().await.expect("Redis at 127.0.0.1:6379");
        RedisView { client }
    }

    /// Until the room's placement is gone.
    async fn wait_released(&self, prefix: &str, room: i64) {
        let key = ppodok_domain::cluster::placement_key(prefix, &room.to_string());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let placed: Option<String> = self.client.get(&key).await.unwrap();
            if placed.is_none() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "room {room} stays placed on {placed:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Until the node's registry record says it drains.
    async fn wait_draining(&self, prefix: &str, node: &str) {
        let key = ppodok_domain::cluster::node_key(prefix, node);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let record: Option<String> = self.client.get(&key).await.unwrap();
            let record: Value = serde_json::from_str(record.as_deref().unwrap_or("null")).unwrap();
            if record["draining"] == true {
                assert_eq!(record["id"], node);
                assert!(record["capacity"].as_u64().unwrap() > 0, "{record}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node} never published draining: {record}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
