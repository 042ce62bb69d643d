//! STOMP fan-out benchmark: N concurrent subscribed sessions on the real `ppodok-api` binary
//! (embedded mode), one booking event per group per second, delivery latency from the booking
//! request to the MESSAGE at each subscriber, and the server's memory per session.
//!
//! `cargo bench -p ppodok-api --bench stomp_fanout` (part of `make bench`).
//! Environment: `FANOUT_SESSIONS` (default 10000), `FANOUT_GROUPS` (100), `FANOUT_SECS` (20).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use sea_orm::{Database, TransactionTrait};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/seed.rs"]
mod seed;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sessions = env_or("FANOUT_SESSIONS", 10_000);
    let groups = env_or("FANOUT_GROUPS", 100).max(1);
    let secs = env_or("FANOUT_SECS", 20) as u64;
    let members = (sessions / groups).clamp(1, 100);

    let dir = std::env::temp_dir().join(format!("ppodok-fanout-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}/fanout.sqlite?mode=rwc", dir.display());
    let mut server = Command::new(env!("CARGO_BIN_EXE_ppodok-api"))
        .env("PPODOK__SERVER__PORT", "0")
        .env("PPODOK__DATABASE__URL", &db_url)
        .env("PPODOK__JOBS__ENABLED", "false")
        .env("PPODOK__LIMITS__ENABLED", "false")
        // Each of the (at most 100) members holds sessions / members connections here; the
        // per-member cap (10 by default, a bound on one member's tabs) is not what is measured.
        .env(
            "PPODOK__LIMITS__STOMP_SESSIONS_PER_MEMBER",
            (sessions / members + 1).to_string(),
        )
        .env("PPODOK__TELEMETRY__FILTER", "error")
        .env(
            "PPODOK__AUTH__JWT_SECRET",
            "fanout-bench-secret-fanout-bench-secret",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = server.id();
    let stdout = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("ppodok-api listening on ") {
                let _ = tx.send(base.to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60))?;
    let ws_url = format!("{}/bbodok-websocket", base.replace("http://", "ws://"));

    // Seed members and groups straight into the database; every member is in every group.
    let db = Database::connect(db_url.as_str()).await?;
    {
        let now = Utc::now().naive_utc();
        let txn = db.begin().await?;
        let member_ids = seed::members(&txn, "fan", members, now).await?;
        for g in 0..groups {
            seed::group_of(
                &txn,
                format!("fan group {g}"),
                format!("fanoutcode{g:06}"),
                &member_ids,
                now,
            )
            .await?;
        }
        txn.commit().await?;
    }
    db.close().await?;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for m in 0..members {
        let r: serde_json::Value = http
            .post(format!("{base}/api/v1/members/dev-login"))
            .json(&serde_json::json!({ "name": format!("fan-{m}") }))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(r["data"]["accessToken"].as_str().unwrap().to_owned());
    }
    // Group ids: 1 is the default group; the seeded ones follow.
    let group_ids: Vec<i64> = (0..groups as i64).map(|g| g + 2).collect();

    let rss_before = rss_kib(pid);
    let last_send: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let connected = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Instant::now();
    let limiter = Arc::new(tokio::sync::Semaphore::new(256));
    let mut clients = Vec::new();
    for i in 0..sessions {
        let group = group_ids[i % groups];
        let token = tokens[(i / groups) % members].clone();
        let (url, last_send, latencies, connected, limiter) = (
            ws_url.clone(),
            last_send.clone(),
            latencies.clone(),
            connected.clone(),
            limiter.clone(),
        );
        clients.push(tokio::spawn(async move {
            let permit = limiter.acquire().await.unwrap();
            let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                .await
                .expect("ws connect");
            ws.send(Message::text(format!(
                "CONNECT\naccept-version:1.2\nheart-beat:0,0\nAuthorization:Bearer {token}\n\n\0"
            )))
            .await
            .unwrap();
            ws.send(Message::text(format!(
                "SUBSCRIBE\nid:0\ndestination:/topic/{group}\nreceipt:r\n\n\0"
            )))
            .await
            .unwrap();
            // CONNECTED, then RECEIPT.
            let mut acks = 0;
            while acks < 2 {
                if let Some(Ok(Message::Text(t))) = ws.next().await {
                    if t.starts_with("CONNECTED") || t.starts_with("RECEIPT") {
                        acks += 1;
                    } else if t.starts_with("ERROR") {
                        panic!("{t}");
                    }
                }
            }
            drop(permit);
            connected.add_permits(1);
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    if t.starts_with("MESSAGE") {
                        let sent = last_send.lock().unwrap().get(&group).copied();
                        if let Some(sent) = sent {
                            latencies.lock().unwrap().push(sent.elapsed());
                        }
                    }
                }
            }
        }));
    }
    let _all = connected.acquire_many(sessions as u32).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib(pid);

    // One booking event per group per second: book, then cancel, the same slot.
    let zone: chrono_tz::Tz = "Asia/Seoul".parse()?;
    let slot = (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&zone)
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap();
    let slot = slot.format("%Y-%m-%dT%H:%M:%S").to_string();
    // Each group books then cancels the same slot, once a second, the groups spread over the second.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let spacing = Duration::from_micros(1_000_000 / groups as u64);
    let mut publishers = Vec::new();
    for (k, &g) in group_ids.iter().enumerate() {
        let (http, base, token, slot, last_send) = (
            http.clone(),
            base.clone(),
            tokens[0].clone(),
            slot.clone(),
            last_send.clone(),
        );
        publishers.push(tokio::spawn(async move {
            tokio::time::sleep(spacing * k as u32).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut room: Option<i64> = None;
            let mut events = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                last_send.lock().unwrap().insert(g, Instant::now());
                room = match room {
                    None => {
                        let r: serde_json::Value = http
                            .post(format!("{base}/api/v1/rooms/reservations"))
                            .bearer_auth(&token)
                            .json(&serde_json::json!({ "groupId": g, "startTime": slot }))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        r["data"]["roomId"].as_i64()
                    }
                    Some(id) => {
                        http.delete(format!("{base}/api/v1/rooms/{id}/reservation"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        None
                    }
                };
                events += 1;
            }
            events
        }));
    }
    let mut sent_events = 0u64;
    for p in publishers {
        sent_events += p.await?;
    }
    // Let the last second's messages arrive.
    let expected = sent_events as usize * (sessions / groups);
    let wait_until = Instant::now() + Duration::from_secs(10);
    while latencies.lock().unwrap().len() < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut samples = latencies.lock().unwrap().clone();
    samples.sort();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let slow: f64 = metrics
        .lines()
        .find(|l| l.starts_with("ppodok_api_stomp_slow_consumers_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);

    println!("STOMP fan-out: {sessions} sessions over {groups} groups ({} per group), {secs} s, one booking event per group per second", sessions / groups);
    println!("| sessions | connect s | events | deliveries (expected) | p50 ms | p99 ms | max ms | server RSS MiB | RSS KiB/session | slow consumers |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {sessions} | {connect_secs:.1} | {sent_events} | {} ({expected}) | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} | {slow} |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / sessions as f64,
    );
    for c in clients {
        c.abort();
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
