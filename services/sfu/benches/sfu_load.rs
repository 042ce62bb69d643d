//! SFU load benchmark: the real `ppodok-sfu` binary, R rooms × P publishers × S subscribers,
//! headless clients speaking LiveKit's signalling (protobuf over WebSocket, v0 dual PeerConnection)
//! with media on `rtc` 0.21 through the SFU's own media wrapper (`ppodok_sfu::media`, the same
//! codecs and interceptors, used here from the client side).
//!
//! Each publisher sends one synthetic VP8 track (single layer, no simulcast: 30 frames/s of two
//! ≈1 KB packets with a valid RFC 7741 payload descriptor, a keyframe each second and on PLI) and
//! one synthetic Opus track (50 packets/s of 80 bytes). Every payload ends with a trailer carrying
//! the track, a sequence number and the send time, so each receiver measures forward latency and
//! counts what it got against what was sent. Publishers are auto-subscribed to each other as
//! livekit-client is, so a packet is expected at every other participant of its room.
//!
//! `cargo bench -p ppodok-sfu --bench sfu_load` (part of `make bench`).
//! Environment: `SFU_LOAD_ROOMS` (4), `SFU_LOAD_PUBLISHERS` (2), `SFU_LOAD_SUBSCRIBERS` (4),
//! `SFU_LOAD_SECS` (15), `SFU_LOAD_JOIN_MS` (20, the gap between two joins), `SFU_LOAD_JANUS=0`
//! (no Janus rows), `SFU_LOAD_ROUNDS` (3: each server runs once per round, the order alternating;
//! the ratios' medians are the verdict), `SFU_LOAD_BINARY` (another `ppodok-sfu` binary to load,
//! e.g. main's).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use ppodok_sfu::media::{
    DownTrack, IncomingPacket, IncomingTrack, Kind, MediaEngine, MediaEvent, MediaSettings, Peer,
    Role, RtpPacket, WireCounters,
};
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

mod janus;

const API_KEY: &str = "sfu-load-key";
const API_SECRET: &str = "sfu-load-secret-sfu-load-secret-0123456789";
const MAGIC: u32 = 0x5050_444b; // "PPDK"
/// magic u32, track u32, seq u32, send time (µs since the bench's epoch) u64.
const TRAILER: usize = 20;
const VIDEO_FPS: u64 = 30;
const VIDEO_PACKETS_PER_FRAME: usize = 2;
const VIDEO_PACKET_BYTES: usize = 1000;
const AUDIO_PPS: u64 = 50;
const AUDIO_PACKET_BYTES: usize = 80;
const WARMUP: Duration = Duration::from_secs(4);
const GRACE: Duration = Duration::from_secs(1);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What every task shares: the clock, the measurement window and the counters.
struct Shared {
    epoch: Instant,
    /// The window, in µs since `epoch`; packets sent inside it are counted (0/MAX = not yet).
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// Packets sent inside the window, by room.
    sent: Vec<AtomicU64>,
    /// Distinct packets received inside the window, by room (all receivers together).
    received: Vec<AtomicU64>,
    /// Forward latencies (µs) of the packets counted in `received`.
    latencies: Mutex<Vec<u64>>,
    connected: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start.load(Ordering::Relaxed)
            && t < self.window_end.load(Ordering::Relaxed)
    }
}

/// Seconds of CPU (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The sum of every sample of `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(port: u16, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{port}/metrics");
    match reqwest::get(url).await {
        Ok(res) => metric_sum(&res.text().await.unwrap_or_default(), name),
        Err(_) => 0.0,
    }
}

fn percentile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0
}

fn trailer(track: u32, seq: u32, sent_us: u64) -> [u8; TRAILER] {
    let mut t = [0u8; TRAILER];
    t[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    t[4..8].copy_from_slice(&track.to_be_bytes());
    t[8..12].copy_from_slice(&seq.to_be_bytes());
    t[12..20].copy_from_slice(&sent_us.to_be_bytes());
    t
}

/// (track, seq, send time) from a payload's trailer; `None` for anything else.
fn parse_trailer(payload: &[u8]) -> Option<(u32, u32, u64)> {
    let t = payload.get(payload.len().checked_sub(TRAILER)?..)?;
    let word = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    if word(0) != MAGIC {
        return None;
    }
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&t[12..20]);
    Some((word(4), word(8), u64::from_be_bytes(sent)))
}

/// One VP8 RTP payload: descriptor (X=1, S on the first packet of a frame, partition 0, a 15-bit
/// PictureID), on the first packet a VP8 frame header (key or inter frame, 640×360), filler,
/// trailer.
fn vp8_payload(picture_id: u16, first: bool, key: bool, trailer: &[u8; TRAILER]) -> Vec<u8> {
    let mut p = Vec::with_capacity(VIDEO_PACKET_BYTES);
    p.push(if first { 0x90 } else { 0x80 });
    p.push(0x80);
    p.push(0x80 | ((picture_id >> 8) as u8 & 0x7f));
    p.push(picture_id as u8);
    if first {
        // Frame tag: P bit clear for a keyframe, show_frame set, then the first partition's size.
        p.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0x02, 0x00]);
        if key {
            // Start code, then width 640 and height 360 (no scaling).
            p.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        }
    }
    p.resize(VIDEO_PACKET_BYTES - TRAILER, 0x5a);
    p.extend_from_slice(trailer);
    p
}

fn opus_payload(trailer: &[u8; TRAILER]) -> Vec<u8> {
    // TOC: config 31 (CELT FB 20 ms), mono, one frame; then filler.
    let mut p = vec![0xf8];
    p.resize(AUDIO_PACKET_BYTES - TRAILER, 0x33);
    p.extend_from_slice(trailer);
    p
}

async fn payload_type(down: &DownTrack, shared: &Shared) -> Option<u8> {
    loop {
        if let Some(n) = down.negotiated().await {
            return Some(n.payload_type);
        }
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the synthetic VP8 track until the bench stops.
async fn send_video(down: DownTrack, track: u32, room: usize, shared: Arc<Shared>) {
    let Some(pt) = payload_type(&down, &shared).await else {
        return;
    };
    let pli = Arc::new(AtomicBool::new(true));
    {
        let (down, pli) = (down.clone(), pli.clone());
        tokio::spawn(async move {
            while down.keyframe_request().await.is_some() {
                pli.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / VIDEO_FPS));
    let (mut seq, mut ts, mut pid, mut frame, mut counter) =
        (rand::random::<u16>(), 0u32, 0u16, 0u64, 0u32);
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let key = frame % VIDEO_FPS == 0 || pli.swap(false, Ordering::Relaxed);
        for i in 0..VIDEO_PACKETS_PER_FRAME {
            let now = shared.now_us();
            let payload = vp8_payload(pid, i == 0, key, &trailer(track, counter, now));
            let packet = RtpPacket {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: i + 1 == VIDEO_PACKETS_PER_FRAME,
                    payload_type: pt,
                    sequence_number: seq,
                    timestamp: ts,
                    ssrc: down.ssrc,
                    ..Default::default()
                },
                payload: payload.into(),
            };
            if down.write(packet).await.is_ok() && shared.in_window(now) {
                shared.sent[room].fetch_add(1, Ordering::Relaxed);
            }
            seq = seq.wrapping_add(1);
            counter = counter.wrapping_add(1);
        }
        ts = ts.wrapping_add((90_000 / VIDEO_FPS) as u32);
        pid = (pid + 1) & 0x7fff;
        frame += 1;
    }
}

/// Sends the synthetic Opus track until the bench stops.
async fn send_audio(down: DownTrack, track: u32, room: usize, shared: Arc<Shared>) {
    let Some(pt) = payload_type(&down, &shared).await else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / AUDIO_PPS));
    let (mut seq, mut ts, mut counter) = (rand::random::<u16>(), 0u32, 0u32);
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = shared.now_us();
        let packet = RtpPacket {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: counter == 0,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc: down.ssrc,
                ..Default::default()
            },
            payload: opus_payload(&trailer(track, counter, now)).into(),
        };
        if down.write(packet).await.is_ok() && shared.in_window(now) {
            shared.sent[room].fetch_add(1, Ordering::Relaxed);
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(48_000 / AUDIO_PPS as u32);
        counter = counter.wrapping_add(1);
    }
}

/// Counts and times what arrives on one forwarded track. The count runs on the client
/// PeerConnection's driver as each packet is read (`deliver_inline`, as the SFU's forwarders
/// do): a task woken and a queue crossed per packet would be the generator's cost, which only
/// crowds the machine both servers run on.
async fn receive(mut track: IncomingTrack, room: usize, shared: Arc<Shared>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (into, counts) = (tally.clone(), shared.clone());
    track.deliver_inline(Arc::new(move |p: IncomingPacket| {
        into.lock().unwrap().count(&p.packet.payload, room, &counts);
    }));
    // Only the track's end comes this way now.
    while track.next_packet().await.is_some() {}
    tally.lock().unwrap().hand_in(&shared);
}

/// What one receiver has seen.
#[derive(Default)]
struct Tally {
    seen: HashSet<(u32, u32)>,
    latencies: Vec<u64>,
}

impl Tally {
    fn count(&mut self, payload: &[u8], room: usize, shared: &Shared) {
        let Some((src, seq, sent)) = parse_trailer(payload) else {
            return;
        };
        let now = shared.now_us();
        // Retransmissions (NACK) repeat a payload: each packet counts once.
        if shared.in_window(sent) && self.seen.insert((src, seq)) {
            shared.received[room].fetch_add(1, Ordering::Relaxed);
            self.latencies.push(now.saturating_sub(sent));
            if self.latencies.len() >= 4096 {
                self.hand_in(shared);
            }
        }
        // Past the window (packets keep flowing during the grace period): hand the figures in.
        if sent >= shared.window_end.load(Ordering::Relaxed) {
            self.hand_in(shared);
        }
    }

    fn hand_in(&mut self, shared: &Shared) {
        if !self.latencies.is_empty() {
            shared.latencies.lock().unwrap().append(&mut self.latencies);
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, msg: In) -> anyhow::Result<()> {
    let frame = lk::SignalRequest { message: Some(msg) }.encode_to_vec();
    ws.send(Message::Binary(frame.into())).await?;
    Ok(())
}

fn trickle(role: Role, init_json: String) -> In {
    let target = match role {
        Role::Publisher => lk::SignalTarget::Publisher,
        Role::Subscriber => lk::SignalTarget::Subscriber,
    };
    In::Trickle(lk::TrickleRequest {
        candidate_init: init_json,
        target: target as i32,
        r#final: false,
    })
}

struct Participant {
    port: u16,
    token: String,
    room: usize,
    /// `Some(track number base)` for a publisher.
    publishes: Option<u32>,
}

/// One participant: signalling, its two PeerConnections, its senders and receivers.
async fn participant(
    p: Participant,
    engine: Arc<MediaEngine>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let url = format!(
        "ws://127.0.0.1:{}/rtc?access_token={}&auto_subscribe=1&sdk=rust&protocol=16",
        p.port, p.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (data_tx, mut data_rx) = mpsc::channel(16);
    tokio::spawn(async move { while data_rx.recv().await.is_some() {} });
    let sub: Peer = engine
        .create_peer(
            "generator",
            Role::Subscriber,
            ev_tx.clone(),
            data_tx.clone(),
        )
        .await?;
    let mut publisher: Option<Peer> = None;
    let mut pending: HashMap<Role, Vec<String>> = HashMap::new();
    let mut joined = false;
    let mut ping = tokio::time::interval(Duration::from_secs(3));
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            let _ = send(&mut ws, In::Leave(lk::LeaveRequest::default())).await;
            break;
        }
        tokio::select! {
            frame = ws.next() => {
                let Some(frame) = frame else { break };
                let Message::Binary(data) = frame? else { continue };
                let Ok(resp) = lk::SignalResponse::decode(data.as_ref()) else { continue };
                let Some(msg) = resp.message else { continue };
                match msg {
                    Out::Join(_) => {
                        joined = true;
                        if let Some(base) = p.publishes {
                            let pc = engine.create_peer("generator", Role::Publisher, ev_tx.clone(), data_tx.clone()).await?;
                            let stream = format!("stream-{base}");
                            for (kind, cid, ty, source) in [
                                (Kind::Video, format!("v{base}"), lk::TrackType::Video, lk::TrackSource::Camera),
                                (Kind::Audio, format!("a{base}"), lk::TrackType::Audio, lk::TrackSource::Microphone),
                            ] {
                                send(&mut ws, In::AddTrack(lk::AddTrackRequest {
                                    cid: cid.clone(),
                                    name: cid.clone(),
                                    r#type: ty as i32,
                                    source: source as i32,
                                    width: if kind == Kind::Video { 640 } else { 0 },
                                    height: if kind == Kind::Video { 360 } else { 0 },
                                    ..Default::default()
                                })).await?;
                                let down = pc.add_downtrack(kind, &stream, &cid).await?;
                                let sh = shared.clone();
                                if kind == Kind::Video {
                                    tokio::spawn(send_video(down, base, p.room, sh));
                                } else {
                                    tokio::spawn(send_audio(down, base + 1, p.room, sh));
                                }
                            }
                            let sdp = pc.create_offer().await?;
                            send(&mut ws, In::Offer(lk::SessionDescription {
                                r#type: "offer".into(),
                                sdp,
                                id: 1,
                                ..Default::default()
                            })).await?;
                            publisher = Some(pc);
                        }
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Out::Offer(desc) => {
                        let sdp = sub.answer_offer(&desc.sdp).await?;
                        send(&mut ws, In::Answer(lk::SessionDescription {
                            r#type: "answer".into(),
                            sdp,
                            id: desc.id,
                            ..Default::default()
                        })).await?;
                        for c in pending.remove(&Role::Subscriber).unwrap_or_default() {
                            let _ = sub.add_remote_candidate(&c).await;
                        }
                    }
                    Out::Answer(desc) => {
                        if let Some(pc) = publisher.as_ref() {
                            pc.apply_answer(&desc.sdp).await?;
                            for c in pending.remove(&Role::Publisher).unwrap_or_default() {
                                let _ = pc.add_remote_candidate(&c).await;
                            }
                        }
                    }
                    Out::Trickle(t) => {
                        let role = if t.target == lk::SignalTarget::Subscriber as i32 {
                            Role::Subscriber
                        } else {
                            Role::Publisher
                        };
                        let peer = match role {
                            Role::Subscriber => Some(&sub),
                            Role::Publisher => publisher.as_ref(),
                        };
                        match peer {
                            Some(peer) if peer.has_remote_description().await => {
                                let _ = peer.add_remote_candidate(&t.candidate_init).await;
                            }
                            _ => pending.entry(role).or_default().push(t.candidate_init),
                        }
                    }
                    Out::Leave(_) => break,
                    _ => {}
                }
            }
            event = ev_rx.recv() => {
                match event {
                    Some(MediaEvent::Candidate { role, init_json }) => {
                        send(&mut ws, trickle(role, init_json)).await?;
                    }
                    Some(MediaEvent::Track(track)) => {
                        tokio::spawn(receive(track, p.room, shared.clone()));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            _ = ping.tick() => {
                if joined {
                    send(&mut ws, In::Ping(shared.now_us() as i64)).await?;
                }
            }
        }
    }
    sub.close().await;
    if let Some(pc) = publisher {
        pc.close().await;
    }
    Ok(())
}

/// One server's figures for one room shape.
struct Row {
    server: &'static str,
    ingress_pps: f64,
    /// Distinct packets the receivers got per second (what both servers are compared on).
    egress_pps: f64,
    /// The SFU's own count of packets written (ppodok only).
    egress_metric_pps: Option<f64>,
    cpu_pct: f64,
    generator_pct: f64,
    rss_mib: f64,
    participants: usize,
    loss_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Row {
    /// Server CPU seconds per million packets received.
    fn cpu_per_mpkt(&self) -> f64 {
        if self.egress_pps == 0.0 {
            return f64::NAN;
        }
        (self.cpu_pct / 100.0) / self.egress_pps * 1e6
    }

    fn rss_per_participant(&self) -> f64 {
        self.rss_mib / self.participants.max(1) as f64
    }
}

#[derive(Clone, Copy)]
struct Shape {
    rooms: usize,
    publishers: usize,
    subscribers: usize,
    secs: u64,
}

/// The server under test, started by the bench: its pid and how clients reach it.
enum Target {
    Ppodok { port: u16 },
    Janus(Arc<janus::Janus>),
}

/// The median of `values` (NaN-free; the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shape = Shape {
        rooms: env_or("SFU_LOAD_ROOMS", 4).max(1),
        publishers: env_or("SFU_LOAD_PUBLISHERS", 2).max(1),
        subscribers: env_or("SFU_LOAD_SUBSCRIBERS", 4),
        secs: env_or("SFU_LOAD_SECS", 15).max(1) as u64,
    };
    // Several rounds, the servers' order alternating, so that the machine's drift over a run
    // (it can move a server's CPU figure by a third between two minutes on a shared VM) lands on
    // both; the verdict is the median of the rounds' ratios.
    let rounds = env_or("SFU_LOAD_ROUNDS", 3).max(1);
    let janus = match janus::installed() {
        _ if std::env::var("SFU_LOAD_JANUS").as_deref() == Ok("0") => {
            println!("\nJanus rows skipped (SFU_LOAD_JANUS=0).");
            None
        }
        None => {
            println!(
                "\nJanus rows skipped: `janus` is not installed (Debian: apt-get install janus)."
            );
            None
        }
        Some(bin) => Some(bin),
    };
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let mut pairs: Vec<(usize, f64, f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        let janus_first = round % 2 == 0;
        let mut ours = None;
        let mut theirs = None;
        for janus_turn in [janus_first, !janus_first] {
            if !janus_turn {
                ours = Some(run_ppodok(shape).await?);
            } else if let Some(bin) = &janus {
                match run_janus(bin, shape).await {
                    Ok(row) => theirs = Some(row),
                    Err(e) => println!("\nJanus row of round {round} skipped: {e:#}"),
                }
            }
        }
        if let (Some(p), Some(j)) = (&ours, &theirs) {
            pairs.push((
                round,
                p.cpu_per_mpkt() / j.cpu_per_mpkt(),
                p.loss_pct - j.loss_pct,
                p.p99_ms / j.p99_ms,
                p.rss_per_participant() / j.rss_per_participant(),
            ));
        }
        rows.extend(ours.map(|r| (round, r)));
        rows.extend(theirs.map(|r| (round, r)));
    }
    let Shape {
        rooms,
        publishers,
        subscribers,
        secs,
    } = shape;
    println!(
        "\nSFU load: {rooms} rooms × ({publishers} publishers + {subscribers} subscribers), \
         one VP8 track ({VIDEO_FPS} fps × {VIDEO_PACKETS_PER_FRAME} × {VIDEO_PACKET_BYTES} B, \
         single layer) + one Opus track ({AUDIO_PPS} pkt/s) per publisher, {secs} s measured \
         after the joins and {} s warm-up; every participant receives every other's tracks; \
         {rounds} round(s), the servers' order alternating\n",
        WARMUP.as_secs()
    );
    println!(
        "| round | server | ingress pkt/s | egress pkt/s (received) | egress pkt/s (SFU metric) | server CPU % of a core | CPU s per M egress pkt | generator CPU % | RSS MiB | RSS MiB per participant | loss % | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (round, r) in &rows {
        println!(
            "| {round} | {} | {:.0} | {:.0} | {} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.3} | {:.2} | {:.2} |",
            r.server,
            r.ingress_pps,
            r.egress_pps,
            r.egress_metric_pps
                .map_or("–".to_owned(), |v| format!("{v:.0}")),
            r.cpu_pct,
            r.cpu_per_mpkt(),
            r.generator_pct,
            r.rss_mib,
            r.rss_per_participant(),
            r.loss_pct,
            r.p50_ms,
            r.p99_ms,
        );
    }
    if !pairs.is_empty() {
        println!();
        for (round, cpu, _, p99, rss) in &pairs {
            println!(
                "round {round}: ppodok / Janus CPU per egress packet {cpu:.2}×, p99 {p99:.2}×, \
                 RSS per participant {rss:.2}×"
            );
        }
        let cpu = median(pairs.iter().map(|p| p.1).collect());
        let p99 = median(pairs.iter().map(|p| p.3).collect());
        let rss = median(pairs.iter().map(|p| p.4).collect());
        let worse_loss = pairs.iter().filter(|p| p.2 > 0.0).count();
        println!(
            "\nppodok / Janus, median of {} round(s): CPU per egress packet {cpu:.2}× \
             (target ≤ 0.67), p99 {p99:.2}× (target ≤ 1), RSS per participant {rss:.2}×; \
             ppodok lost more than Janus in {worse_loss} of them",
            pairs.len()
        );
    }
    Ok(())
}

async fn run_ppodok(shape: Shape) -> anyhow::Result<Row> {
    // Another build of the SFU (e.g. main's, for a side-by-side run) with the same generator.
    let binary = std::env::var("SFU_LOAD_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ppodok-sfu").to_owned());
    let mut server = Command::new(&binary)
        .env("PPODOK_SFU__HOST", "127.0.0.1")
        .env("PPODOK_SFU__PORT", "0")
        .env("PPODOK_SFU__LIVEKIT__API_KEY", API_KEY)
        .env("PPODOK_SFU__LIVEKIT__API_SECRET", API_SECRET)
        .env("PPODOK_SFU__RTC__BIND_IP", "127.0.0.1")
        .env("PPODOK_SFU__RTC__UDP_PORT_MIN", "0")
        .env("PPODOK_SFU__RTC__UDP_PORT_MAX", "0")
        .env("PPODOK_SFU__TELEMETRY__FILTER", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = server.id().to_string();
    let stdout = server
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let port: u16 = loop {
        let Some(line) = lines.next() else {
            let _ = server.kill();
            anyhow::bail!("the SFU exited before listening");
        };
        if let Some(rest) = line?.split("127.0.0.1:").nth(1) {
            break rest.trim().parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let row = measure("ppodok", Target::Ppodok { port }, &pid, shape).await;
    let _ = server.kill();
    let _ = server.wait();
    row
}

async fn run_janus(binary: &std::path::Path, shape: Shape) -> anyhow::Result<Row> {
    let janus = Arc::new(janus::Janus::start(binary).await?);
    let pid = janus.pid().to_string();
    let row = measure("Janus VideoRoom", Target::Janus(janus.clone()), &pid, shape).await;
    janus.stop();
    row.map_err(|e| e.context(format!("Janus's log ends:\n{}\n", janus.log_tail(15))))
}

/// Joins every participant to `target`, waits for media to flow, and measures one window.
async fn measure(
    server: &'static str,
    target: Target,
    pid: &str,
    shape: Shape,
) -> anyhow::Result<Row> {
    let Shape {
        rooms,
        publishers,
        subscribers,
        secs,
    } = shape;
    let keys = LivekitKeys::new(API_KEY, API_SECRET);
    let engine = Arc::new(MediaEngine::for_clients(
        MediaSettings {
            bind_ip: match &target {
                Target::Janus(j) => j.ice_ip,
                Target::Ppodok { .. } => IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            port_range: (0, 0),
            nat_1to1: Arc::from([]),
        },
        WireCounters::default(),
    ));
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        sent: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        received: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        latencies: Mutex::new(Vec::new()),
        connected: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let per_room = publishers + subscribers;
    // A busy machine may need wider gaps for every DTLS handshake to finish in time.
    let join_gap = Duration::from_millis(env_or("SFU_LOAD_JOIN_MS", 20) as u64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let janus_rooms = match &target {
        Target::Janus(j) => Some(j.create_rooms(rooms, publishers).await?),
        Target::Ppodok { .. } => None,
    };
    for room in 0..rooms {
        for i in 0..per_room {
            let identity = format!("load-r{room}-p{i}");
            let name = format!("load-room-{room}");
            let publishes = (i < publishers).then(|| ((room * publishers + i) * 2) as u32);
            let (engine, shared) = (engine.clone(), shared.clone());
            match (&target, &janus_rooms) {
                (Target::Ppodok { port }, _) => {
                    let token = keys.mint_access_token(
                        &identity,
                        &identity,
                        VideoGrant::join(&name),
                        unix_now(),
                        3600,
                    );
                    let p = Participant {
                        port: *port,
                        token,
                        room,
                        publishes,
                    };
                    tasks.push(tokio::spawn(async move {
                        if let Err(e) = participant(p, engine, shared).await {
                            eprintln!("{identity}: {e:#}");
                        }
                    }));
                }
                (Target::Janus(j), Some(janus_rooms)) => {
                    let (j, janus_room) = (j.clone(), janus_rooms[room].clone());
                    tasks.push(tokio::spawn(async move {
                        let p = janus::Participant {
                            room,
                            janus_room,
                            publishes,
                            publishers,
                        };
                        if let Err(e) = janus::participant(j, p, engine, shared).await {
                            eprintln!("{identity} (Janus): {e:#}");
                        }
                    }));
                }
                (Target::Janus(_), None) => unreachable!("rooms are created first"),
            }
            // Joins paced like a room filling up, not a thundering herd.
            tokio::time::sleep(join_gap).await;
        }
    }
    let total = (rooms * per_room) as u64;
    while shared.connected.load(Ordering::Relaxed) < total
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    if connected < total && matches!(target, Target::Janus(_)) {
        shared.stop.store(true, Ordering::Relaxed);
        anyhow::bail!("only {connected} of {total} participants connected through Janus");
    }
    tokio::time::sleep(WARMUP).await;

    // The measured window.
    let scrape_out = |target: &Target| {
        let port = match target {
            Target::Ppodok { port } => Some(*port),
            Target::Janus(_) => None,
        };
        async move {
            match port {
                Some(port) => Some(scrape(port, "sfu_rtp_packets_out_total").await),
                None => None,
            }
        }
    };
    let out0 = scrape_out(&target).await;
    let janus_log = |target: &Target| match target {
        Target::Janus(j) => j.log_len(),
        Target::Ppodok { .. } => 0,
    };
    let log0 = janus_log(&target);
    let cpu0 = cpu_secs(pid).unwrap_or(0.0);
    let self0 = cpu_secs("self").unwrap_or(0.0);
    let t0 = Instant::now();
    let start_us = shared.now_us();
    shared
        .window_end
        .store(start_us + secs * 1_000_000, Ordering::Relaxed);
    shared.window_start.store(start_us, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_secs(pid).unwrap_or(0.0);
    let self1 = cpu_secs("self").unwrap_or(0.0);
    let out1 = scrape_out(&target).await;
    let rss = rss_mib(pid);
    if let Target::Janus(j) = &target {
        println!(
            "Janus logged {} bytes during the measured window (debug_level 3, {} event loops)",
            janus_log(&target) - log0,
            j.event_loops
        );
    }
    tokio::time::sleep(GRACE).await;

    shared.stop.store(true, Ordering::Relaxed);
    let sent: Vec<u64> = shared
        .sent
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let received: u64 = shared
        .received
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    let receivers = (per_room - 1) as u64;
    let expected: u64 = sent.iter().map(|s| s * receivers).sum();
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    latencies.sort_unstable();

    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let loss = if expected == 0 {
        100.0
    } else {
        100.0 * (1.0 - received as f64 / expected as f64).max(0.0)
    };
    Ok(Row {
        server,
        ingress_pps: sent.iter().sum::<u64>() as f64 / wall,
        egress_pps: received as f64 / wall,
        egress_metric_pps: out0.zip(out1).map(|(a, b)| (b - a) / wall),
        cpu_pct: 100.0 * (cpu1 - cpu0) / wall,
        generator_pct: 100.0 * (self1 - self0) / wall,
        rss_mib: rss,
        participants: rooms * per_room,
        loss_pct: loss,
        p50_ms: percentile_ms(&latencies, 0.5),
        p99_ms: percentile_ms(&latencies, 0.99),
    })
}
