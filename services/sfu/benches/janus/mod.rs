//! The same load against Janus VideoRoom (Debian's `janus`): the bench starts Janus itself with
//! the config in this folder (copied to a temporary one with free ports filled in), creates one
//! VideoRoom per room shape over Janus's HTTP API, and each participant publishes and
//! subscribes through it with the same `webrtc` clients, media and counters as against ppodok.
//!
//! Signalling per participant: a Janus session; a publisher handle (join as publisher, publish
//! with our offer, apply Janus's answer); once every publisher of the room is in, a subscriber
//! handle (join as subscriber to every other publisher's feed, answer Janus's offer, start).
//! Our ICE candidates go to Janus as trickles; Janus puts its own in its SDP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ppodok_sfu::media::{Kind, MediaEngine, MediaEvent, Peer, Role};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{receive, send_audio, send_video, Shared};

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/janus");
const CONFIG_FILES: [&str; 3] = [
    "janus.jcfg",
    "janus.transport.http.jcfg",
    "janus.plugin.videoroom.jcfg",
];

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
        let dir = std::env::temp_dir().join(format!("ppodok-janus-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let port = free_port()?;
        // An RTP range of its own, away from the ephemeral ports the clients use.
        let rtp = 20_000 + (std::process::id() % 200) as u16 * 100;
        for name in CONFIG_FILES {
            let text = std::fs::read_to_string(Path::new(CONFIG).join(name))
                .with_context(|| format!("reading {name}"))?
                .replace("@HTTP_PORT@", &port.to_string())
                .replace("@RTP_PORTS@", &format!("{rtp}-{}", rtp + 99))
                .replace("@FOLDER@", &dir.0.display().to_string());
            std::fs::write(dir.0.join(name), text)?;
        }
        let child = std::process::Command::new(binary)
            .arg("-F")
            .arg(&dir.0)
            .arg("-C")
            .arg(dir.0.join("janus.jcfg"))
            .arg("--disable-colors")
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
                bail!("Janus did not answer on {} within 20 s", janus.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "\nJanus {} started by the bench on {}",
            binary.display(),
            janus.url
        );
        Ok(janus)
    }

    pub fn pid(&self) -> u32 {
        self.pid
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

    /// One VideoRoom per bench room; their ids.
    pub async fn create_rooms(&self, rooms: usize, publishers: usize) -> anyhow::Result<Vec<u64>> {
        let session = self.session().await?;
        let handle = self.attach(session).await?;
        let mut ids = Vec::new();
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
            ids.push(id);
        }
        let _ = self
            .post(&format!("/{session}"), json!({"janus": "destroy"}))
            .await;
        Ok(ids)
    }
}

pub struct Participant {
    pub room: usize,
    pub janus_room: u64,
    /// `Some(track number base)` for a publisher.
    pub publishes: Option<u32>,
    /// Publishers per room (a subscriber waits for all of them).
    pub publishers: usize,
}

/// The publisher ids of each Janus room, as publishers get them.
static FEEDS: Mutex<Option<HashMap<u64, Vec<u64>>>> = Mutex::new(None);

fn feeds(room: u64) -> Vec<u64> {
    FEEDS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&room)
        .cloned()
        .unwrap_or_default()
}

/// Long-polls a session's events into a queue until the session or the queue goes.
fn poll_events(janus: Arc<Janus>, session: u64) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let res = janus
                .http
                .get(format!("{}/{session}?maxev=10", janus.url))
                .timeout(Duration::from_secs(40))
                .send()
                .await;
            let Ok(res) = res else { continue };
            let Ok(body) = res.json::<Value>().await else {
                break;
            };
            let events = match body {
                Value::Array(events) => events,
                one => vec![one],
            };
            for ev in events {
                if ev["janus"] == "error" {
                    return;
                }
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for an event from `handle` that `pick` accepts, keeping the others for later.
async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<Value>,
    kept: &mut Vec<Value>,
    handle: u64,
    pick: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow!("no Janus event within 30 s"))?
            .ok_or_else(|| anyhow!("Janus session ended"))?;
        if ev["sender"].as_u64() == Some(handle) && pick(&ev) {
            return Ok(ev);
        }
        kept.push(ev);
    }
}

fn sdp_of(ev: &Value) -> anyhow::Result<String> {
    ev["jsep"]["sdp"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no SDP in {ev}"))
}

/// Sends our local candidates for `role` as trickles on `handle`.
async fn trickle(janus: &Janus, session: u64, handle: u64, init_json: &str) {
    let Ok(init) = serde_json::from_str::<Value>(init_json) else {
        return;
    };
    let candidate = json!({
        "candidate": init["candidate"],
        "sdpMid": init["sdpMid"],
        "sdpMLineIndex": init["sdpMLineIndex"],
    });
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
    let mut events = poll_events(janus.clone(), session);
    let mut kept = Vec::new();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (data_tx, mut data_rx) = mpsc::channel(16);
    tokio::spawn(async move { while data_rx.recv().await.is_some() {} });
    let mut handles: HashMap<Role, u64> = HashMap::new();
    let mut publisher: Option<Peer> = None;
    let mut my_feed = None;

    if let Some(base) = p.publishes {
        let handle = janus.attach(session).await?;
        handles.insert(Role::Publisher, handle);
        janus
            .message(
                session,
                handle,
                json!({"request": "join", "ptype": "publisher", "room": p.janus_room}),
                None,
            )
            .await?;
        let joined = wait_event(&mut events, &mut kept, handle, |e| {
            e["plugindata"]["data"]["videoroom"] == "joined"
        })
        .await?;
        my_feed = joined["plugindata"]["data"]["id"].as_u64();
        let pc = engine
            .create_peer(Role::Publisher, ev_tx.clone(), data_tx.clone())
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
                json!({"request": "publish", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        let answer =
            wait_event(&mut events, &mut kept, handle, |e| e.get("jsep").is_some()).await?;
        pc.apply_answer(&sdp_of(&answer)?).await?;
        publisher = Some(pc);
        if let Some(id) = my_feed {
            FEEDS
                .lock()
                .unwrap()
                .get_or_insert_with(HashMap::new)
                .entry(p.janus_room)
                .or_default()
                .push(id);
        }
    }
    // Our publisher candidates so far.
    while let Ok(ev) = ev_rx.try_recv() {
        if let MediaEvent::Candidate { role, init_json } = ev {
            if let Some(&h) = handles.get(&role) {
                trickle(&janus, session, h, &init_json).await;
            }
        }
    }

    // Every publisher of the room in: subscribe to all the others' feeds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let others = loop {
        let all = feeds(p.janus_room);
        if all.len() >= p.publishers {
            break all
                .into_iter()
                .filter(|f| Some(*f) != my_feed)
                .collect::<Vec<_>>();
        }
        if Instant::now() > deadline {
            bail!("not every publisher joined room {}", p.janus_room);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sub = engine
        .create_peer(Role::Subscriber, ev_tx.clone(), data_tx.clone())
        .await?;
    let handle = janus.attach(session).await?;
    handles.insert(Role::Subscriber, handle);
    let streams: Vec<Value> = others.iter().map(|f| json!({"feed": f})).collect();
    janus
        .message(
            session,
            handle,
            json!({"request": "join", "ptype": "subscriber", "room": p.janus_room, "streams": streams}),
            None,
        )
        .await?;
    let offer = wait_event(&mut events, &mut kept, handle, |e| e.get("jsep").is_some()).await?;
    let answer = sub.answer_offer(&sdp_of(&offer)?).await?;
    janus
        .message(
            session,
            handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let mut ping = tokio::time::interval(Duration::from_secs(20));
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            event = ev_rx.recv() => match event {
                Some(MediaEvent::Candidate { role, init_json }) => {
                    if let Some(&h) = handles.get(&role) {
                        trickle(&janus, session, h, &init_json).await;
                    }
                }
                Some(MediaEvent::Track(track)) => {
                    tokio::spawn(receive(track, p.room, shared.clone()));
                }
                Some(_) => {}
                None => break,
            },
            ev = events.recv() => {
                if ev.is_none() {
                    break;
                }
            }
            _ = ping.tick() => {
                let _ = janus.post(&format!("/{session}"), json!({"janus": "keepalive"})).await;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
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
