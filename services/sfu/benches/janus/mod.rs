//! The same load against Janus VideoRoom (Debian's `janus`): the bench starts Janus itself with
//! the config in this folder (copied to a temporary one with free ports filled in), creates one
//! VideoRoom per room shape over Janus's HTTP API, and each participant publishes and
//! subscribes through it with the same `webrtc` clients, media and counters as against ppodok.
//!
//! Signalling per participant, as a browser running janus.js does it: a Janus session with its
//! own long poll for events; a publisher handle (join as publisher, publish with our offer,
//! apply Janus's answer, wait for `webrtcup`); once every publisher of the room is up, a
//! subscriber handle (join as subscriber to every other publisher's feed, answer Janus's offer,
//! start, wait for `webrtcup`). Our ICE candidates go to Janus as trickles; Janus puts its own
//! in its SDP (half trickle).
//!
//! A subscriber may only join a feed whose PeerConnection is up: before that, VideoRoom answers
//! the join with error 428 ("No such feed"). Publishers therefore announce their feed to the
//! room's other participants only after their own `webrtcup`, and a plugin error on a handle
//! fails that participant at once with Janus's message instead of a timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ppodok_sfu::media::{Kind, MediaEngine, MediaEvent, Role};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::{receive, send_audio, send_video, Shared};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/janus");
const CONFIG_FILES: [&str; 3] = [
    "janus.jcfg",
    "janus.transport.http.jcfg",
    "janus.plugin.videoroom.jcfg",
];
/// How long one signalling step (an event from Janus, all publishers of a room up) may take.
const STEP: Duration = Duration::from_secs(60);
/// UDP ports Janus may use for its PeerConnections (one each: bundle and rtcp-mux).
const RTP_PORTS: u16 = 1000;

/// The `janus` binary, if installed.
pub fn installed() -> Option<PathBuf> {
    [
        "/usr/bin/janus",
        "/usr/local/bin/janus",
        "/opt/janus/bin/janus",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The host's own IPv4 address (the one its default route leaves from; nothing is sent).
///
/// libnice, under Janus, never gathers loopback candidates and will not pair its host
/// candidates with a loopback peer, so Janus is pinned to this address (its ICE enforce list)
/// and the bench's clients bind it for the Janus run. Traffic between two local addresses
/// still goes through the loopback device, as 127.0.0.1 does for the ppodok run.
pub fn host_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running Janus.
pub struct Janus {
    child: Mutex<std::process::Child>,
    pid: u32,
    url: String,
    http: reqwest::Client,
    next: AtomicU64,
    log: PathBuf,
    /// Janus's static event loops (threads that carry every PeerConnection's media).
    pub event_loops: usize,
    /// The only address Janus gathers ICE candidates on; the clients bind it too.
    pub ice_ip: IpAddr,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Janus {
    pub async fn start(binary: &Path) -> anyhow::Result<Janus> {
        let ice_ip = host_ip().ok_or_else(|| {
            anyhow!("no non-loopback IPv4 address for Janus's ICE (libnice skips loopback)")
        })?;
        // Each start its own folder and ports: an instance from an earlier round may still be
        // shutting down (its folder is removed when its last handle goes).
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ppodok-janus-{}-{start}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let port = free_port()?;
        // A UDP range of its own, below the ephemeral ports the clients use (32768 and up).
        let rtp = 20_000 + ((u64::from(std::process::id()) + start) % 10) as u16 * RTP_PORTS;
        // As many media threads as cores: what Janus's documentation advises for many
        // PeerConnections, rather than its default of one thread per PeerConnection.
        let event_loops = std::thread::available_parallelism().map_or(2, |n| n.get());
        for name in CONFIG_FILES {
            let text = std::fs::read_to_string(Path::new(CONFIG).join(name))
                .with_context(|| format!("reading {name}"))?
                .replace("@HTTP_PORT@", &port.to_string())
                .replace("@RTP_PORTS@", &format!("{rtp}-{}", rtp + RTP_PORTS - 1))
                .replace("@EVENT_LOOPS@", &event_loops.to_string())
                .replace("@ICE_IP@", &ice_ip.to_string())
                .replace("@FOLDER@", &dir.0.display().to_string());
            std::fs::write(dir.0.join(name), text)?;
        }
        let log = dir.0.join("janus.log");
        let child = std::process::Command::new(binary)
            .arg("-F")
            .arg(&dir.0)
            .arg("-C")
            .arg(dir.0.join("janus.jcfg"))
            .arg("--disable-colors")
            .arg("--disable-stdout")
            .arg("--log-file")
            .arg(&log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting janus")?;
        let janus = Janus {
            pid: child.id(),
            child: Mutex::new(child),
            url: format!("http://127.0.0.1:{port}/janus"),
            http: reqwest::Client::new(),
            next: AtomicU64::new(1),
            log,
            event_loops,
            ice_ip,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(res) = janus.http.get(format!("{}/info", janus.url)).send().await {
                if res.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                janus.stop();
                bail!(
                    "Janus did not answer on {} within 20 s; its log ends:\n{}",
                    janus.url,
                    janus.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "\nJanus {} started by the bench on {} ({event_loops} event loops, ICE on {ice_ip}, RTP ports {rtp}-{})",
            binary.display(),
            janus.url,
            rtp + RTP_PORTS - 1
        );
        Ok(janus)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Bytes Janus has written to its log so far.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The last `lines` lines of Janus's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// POSTs `body` to `path` under the API root; the reply must not be an error.
    async fn post(&self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        body["transaction"] = json!(self.transaction());
        let reply: Value = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        if reply["janus"] == "error" {
            bail!("Janus: {}", reply["error"]);
        }
        Ok(reply)
    }

    async fn session(&self) -> anyhow::Result<u64> {
        let r = self.post("", json!({"janus": "create"})).await?;
        r["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no session id: {r}"))
    }

    async fn attach(&self, session: u64) -> anyhow::Result<u64> {
        let r = self
            .post(
                &format!("/{session}"),
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        r["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no handle id: {r}"))
    }

    async fn message(
        &self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        self.post(&format!("/{session}/{handle}"), msg).await
    }

    /// One VideoRoom per bench room.
    pub async fn create_rooms(
        &self,
        rooms: usize,
        publishers: usize,
    ) -> anyhow::Result<Vec<Arc<Room>>> {
        let session = self.session().await?;
        let handle = self.attach(session).await?;
        let mut created = Vec::new();
        for i in 0..rooms {
            let id = 4242 + i as u64;
            let r = self
                .message(
                    session,
                    handle,
                    json!({
                        "request": "create",
                        "room": id,
                        "publishers": publishers,
                        "videocodec": "vp8",
                        "audiocodec": "opus",
                        "bitrate": 0,
                        "notify_joining": false,
                    }),
                    None,
                )
                .await?;
            if r["plugindata"]["data"]["videoroom"] != "created" {
                bail!("room not created: {r}");
            }
            created.push(Arc::new(Room {
                id,
                feeds: watch::channel(Vec::new()).0,
            }));
        }
        let _ = self
            .post(&format!("/{session}"), json!({"janus": "destroy"}))
            .await;
        Ok(created)
    }
}

/// A VideoRoom and the feeds of its publishers whose PeerConnection is up.
pub struct Room {
    pub id: u64,
    feeds: watch::Sender<Vec<u64>>,
}

pub struct Participant {
    pub room: usize,
    pub janus_room: Arc<Room>,
    /// `Some(track number base)` for a publisher.
    pub publishes: Option<u32>,
    /// Publishers per room (a subscriber waits for all of them).
    pub publishers: usize,
}

/// Long-polls a session's events into a queue until the session, Janus or the queue goes.
fn poll_events(janus: Arc<Janus>, session: u64) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            let res = janus
                .http
                .get(format!("{}/{session}?maxev=10", janus.url))
                .timeout(Duration::from_secs(40))
                .send()
                .await;
            let res = match res {
                Ok(res) => res,
                // Janus stopped, or the machine is too busy to answer: retry a few times.
                Err(_) if failures < 20 && !tx.is_closed() => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => return,
            };
            failures = 0;
            let Ok(body) = res.json::<Value>().await else {
                return;
            };
            let events = match body {
                Value::Array(events) => events,
                one => vec![one],
            };
            for ev in events {
                // "No such session": it was destroyed or timed out.
                if ev["janus"] == "error" || tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// A session's events, with those not yet asked for kept for a later wait.
struct Events {
    rx: mpsc::UnboundedReceiver<Value>,
    kept: Vec<Value>,
}

impl Events {
    /// The first event from `handle` that `pick` accepts. A plugin error or a hangup on that
    /// handle ends the wait with Janus's reason.
    async fn wait(
        &mut self,
        handle: u64,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let mine = |ev: &Value| ev["sender"].as_u64() == Some(handle);
        if let Some(i) = self.kept.iter().position(|ev| mine(ev) && pick(ev)) {
            return Ok(self.kept.remove(i));
        }
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| anyhow!("no {what} from Janus within {} s", STEP.as_secs()))?
                .ok_or_else(|| anyhow!("Janus session ended waiting for {what}"))?;
            if mine(&ev) {
                if pick(&ev) {
                    return Ok(ev);
                }
                let data = &ev["plugindata"]["data"];
                if data.get("error").is_some() {
                    bail!(
                        "Janus VideoRoom error {} waiting for {what}: {}",
                        data["error_code"],
                        data["error"]
                    );
                }
                if ev["janus"] == "hangup" {
                    bail!("Janus hung up waiting for {what}: {}", ev["reason"]);
                }
            }
            self.kept.push(ev);
        }
    }
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |ev| ev["janus"] == kind
}

fn has_jsep(ev: &Value) -> bool {
    ev.get("jsep").is_some()
}

fn sdp_of(ev: &Value) -> anyhow::Result<String> {
    ev["jsep"]["sdp"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no SDP in {ev}"))
}

/// Sends one of our local candidates as a trickle on `handle`.
async fn trickle(janus: &Janus, session: u64, handle: u64, init_json: &str) {
    let Ok(init) = serde_json::from_str::<Value>(init_json) else {
        return;
    };
    // Everything is bundled on the first m-line; Janus drops a candidate whose mid is not that
    // one's, and `webrtc` leaves the mid empty, so the candidate goes by m-line index.
    let mut candidate = json!({
        "candidate": init["candidate"],
        "sdpMLineIndex": init["sdpMLineIndex"].as_u64().unwrap_or(0),
    });
    if let Some(mid) = init["sdpMid"].as_str().filter(|m| !m.is_empty()) {
        candidate["sdpMid"] = json!(mid);
    }
    let _ = janus
        .post(
            &format!("/{session}/{handle}"),
            json!({"janus": "trickle", "candidate": candidate}),
        )
        .await;
}

/// One participant against Janus: publish (if a publisher), then subscribe to every other feed.
pub async fn participant(
    janus: Arc<Janus>,
    p: Participant,
    engine: Arc<MediaEngine>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let session = janus.session().await?;
    let mut events = Events {
        rx: poll_events(janus.clone(), session),
        kept: Vec::new(),
    };
    // Our PeerConnections' candidates go to their handle as they come; their tracks are counted.
    let handles: Arc<Mutex<HashMap<Role, u64>>> = Arc::default();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    {
        let (janus, handles, shared) = (janus.clone(), handles.clone(), shared.clone());
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                match ev {
                    MediaEvent::Candidate { role, init_json } => {
                        let handle = handles.lock().unwrap().get(&role).copied();
                        if let Some(h) = handle {
                            trickle(&janus, session, h, &init_json).await;
                        }
                    }
                    MediaEvent::Track(track) => {
                        tokio::spawn(receive(track, p.room, shared.clone()));
                    }
                    _ => {}
                }
            }
        });
    }
    let (data_tx, mut data_rx) = mpsc::channel(16);
    tokio::spawn(async move { while data_rx.recv().await.is_some() {} });
    let room = p.janus_room.id;
    let mut publisher = None;
    let mut my_feed = None;

    if let Some(base) = p.publishes {
        let handle = janus.attach(session).await?;
        handles.lock().unwrap().insert(Role::Publisher, handle);
        janus
            .message(
                session,
                handle,
                json!({"request": "join", "ptype": "publisher", "room": room}),
                None,
            )
            .await?;
        let joined = events
            .wait(handle, "the publisher's join", |e| {
                e["plugindata"]["data"]["videoroom"] == "joined"
            })
            .await?;
        my_feed = joined["plugindata"]["data"]["id"].as_u64();
        let pc = engine
            .create_peer("generator", Role::Publisher, ev_tx.clone(), data_tx.clone())
            .await?;
        let stream = format!("stream-{base}");
        let video = pc
            .add_downtrack(Kind::Video, &stream, &format!("v{base}"))
            .await?;
        let audio = pc
            .add_downtrack(Kind::Audio, &stream, &format!("a{base}"))
            .await?;
        tokio::spawn(send_video(video, base, p.room, shared.clone()));
        tokio::spawn(send_audio(audio, base + 1, p.room, shared.clone()));
        let offer = pc.create_offer().await?;
        janus
            .message(
                session,
                handle,
                json!({"request": "publish"}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        let answer = events.wait(handle, "Janus's answer", has_jsep).await?;
        pc.apply_answer(&sdp_of(&answer)?).await?;
        publisher = Some(pc);
        events
            .wait(handle, "the publisher's webrtcup", is("webrtcup"))
            .await?;
        if let Some(id) = my_feed {
            p.janus_room.feeds.send_modify(|f| f.push(id));
        }
    }

    // Every publisher of the room up: subscribe to all the others' feeds.
    let all = tokio::time::timeout(
        STEP,
        p.janus_room
            .feeds
            .subscribe()
            .wait_for(|f| f.len() >= p.publishers),
    )
    .await
    .map_err(|_| anyhow!("not every publisher of room {room} came up"))?
    .map_err(|_| anyhow!("room {room} went"))?
    .clone();
    let others: Vec<Value> = all
        .into_iter()
        .filter(|f| Some(*f) != my_feed)
        .map(|f| json!({"feed": f}))
        .collect();
    let sub = engine
        .create_peer(
            "generator",
            Role::Subscriber,
            ev_tx.clone(),
            data_tx.clone(),
        )
        .await?;
    let handle = janus.attach(session).await?;
    handles.lock().unwrap().insert(Role::Subscriber, handle);
    janus
        .message(
            session,
            handle,
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": others}),
            None,
        )
        .await?;
    let offer = events.wait(handle, "Janus's offer", has_jsep).await?;
    let answer = sub.answer_offer(&sdp_of(&offer)?).await?;
    janus
        .message(
            session,
            handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    events
        .wait(handle, "the subscriber's webrtcup", is("webrtcup"))
        .await?;
    shared.connected.fetch_add(1, Ordering::Relaxed);

    // Media flows; keep the session alive until the bench stops.
    let mut keepalive = tokio::time::interval(Duration::from_secs(20));
    let mut check_stop = tokio::time::interval(Duration::from_millis(200));
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::select! {
            ev = events.rx.recv() => {
                if ev.is_none() {
                    break;
                }
            }
            _ = keepalive.tick() => {
                let _ = janus.post(&format!("/{session}"), json!({"janus": "keepalive"})).await;
            }
            _ = check_stop.tick() => {}
        }
    }
    let _ = janus
        .post(&format!("/{session}"), json!({"janus": "destroy"}))
        .await;
    sub.close().await;
    if let Some(pc) = publisher {
        pc.close().await;
    }
    Ok(())
}
