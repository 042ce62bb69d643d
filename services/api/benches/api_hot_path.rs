//! The authenticated read path against a bare endpoint, side by side in one run: `/health`,
//! `GET /api/v1/members` (me) and the cached group calendar (140 rooms, ≈33 KB of JSON), each
//! loaded by `wrk -t2 -c32` (Debian's wrk) against the release `ppodok-api` binary, on SQLite
//! (embedded) and on MariaDB + Redis (fresh schema and key prefix) when they answer at 127.0.0.1.
//!
//! `cargo bench -p ppodok-api --bench api_hot_path` (part of `make bench`).
//! Environment: `HOT_PATH_SECS` per measurement (default 3), `HOT_PATH_ROUNDS` (default 5; the
//! three endpoints are measured in turn, round after round, and each figure is the median of the
//! rounds, with the p99's range over them).
//! For profiling: `HOT_PATH_BACKENDS` (`sqlite`, `mariadb`; default both), `HOT_PATH_TARGETS`
//! (`health,members,calendar`; default all) and `HOT_PATH_WRAP`, a command the measured server
//! runs under (e.g. `valgrind --tool=callgrind --callgrind-out-file=/tmp/hot.%p`; it is stopped
//! with SIGTERM so the tool writes its output).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

#[path = "support/seed.rs"]
mod seed;

const ROOMS: i64 = 140;
const MEMBERS: usize = 40;
const MEMBERS_PER_ROOM: usize = 4;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    base: String,
    wrapped: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.wrapped {
            // A graceful stop, so a profiler under which the server runs writes its output.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn start(envs: &[(&str, String)], wrap: bool) -> anyhow::Result<Server> {
    let wrapper = std::env::var("HOT_PATH_WRAP")
        .ok()
        .filter(|w| wrap && !w.trim().is_empty());
    let binary = env!("CARGO_BIN_EXE_ppodok-api");
    let mut cmd = match &wrapper {
        Some(w) => {
            let mut words = w.split_whitespace();
            let mut cmd = Command::new(words.next().expect("a command"));
            cmd.args(words).arg(binary);
            cmd
        }
        None => Command::new(binary),
    };
    cmd.env("PPODOK__SERVER__PORT", "0")
        .env("PPODOK__JOBS__ENABLED", "false")
        .env("PPODOK__LIMITS__ENABLED", "false")
        .env("PPODOK__CACHE__WARM_ON_BOOT", "false")
        .env("PPODOK__TELEMETRY__FILTER", "error")
        .env(
            "PPODOK__AUTH__JWT_SECRET",
            "hot-path-bench-secret-hot-path-bench",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("ppodok-api listening on ") {
                let _ = tx.send(base.to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(120))?;
    Ok(Server {
        child,
        base,
        wrapped: wrapper.is_some(),
    })
}

/// One group of `MEMBERS` members and `ROOMS` rooms from today 08:00 (service zone), every 30
/// minutes, `MEMBERS_PER_ROOM` members in each.
async fn seed(url: &str) -> anyhow::Result<i64> {
    let db = Database::connect(url).await?;
    let txn = db.begin().await?;
    let now = Utc::now().naive_utc();
    // No profile pictures (as accounts made by dev login): with the contract's fields this gives
    // the calendar of 140 rooms in ≈33.5 KB of JSON.
    let ids = seed::members(&txn, "hot", MEMBERS, now).await?;
    let group_id =
        seed::group_of(&txn, "hot path".into(), "hotpathcode0001".into(), &ids, now).await?;
    let first = seed::eight_today_in_seoul();
    seed::booked_rooms(&txn, group_id, first, ROOMS, &ids, MEMBERS_PER_ROOM, now).await?;
    txn.commit().await?;
    db.close().await?;
    Ok(group_id)
}

#[derive(Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = value.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => return None,
    })
}

/// The median of some figures (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

/// `wrk -t2 -c32 --latency` for `secs` on `url`.
fn wrk(url: &str, token: Option<&str>, secs: u64) -> anyhow::Result<Figures> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{secs}s"), "--latency"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output()?;
    anyhow::ensure!(out.status.success(), "wrk failed: {:?}", out);
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        !text.contains("Non-2xx"),
        "non-2xx answers under load:\n{text}"
    );
    let mut f = Figures::default();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => f.rps = v.parse()?,
            (Some("50%"), Some(v)) => f.p50_ms = millis(v).unwrap_or(f64::NAN),
            (Some("99%"), Some(v)) => f.p99_ms = millis(v).unwrap_or(f64::NAN),
            _ => {}
        }
    }
    anyhow::ensure!(f.rps > 0.0, "no requests measured:\n{text}");
    Ok(f)
}

async fn run(backend: &str, envs: Vec<(&str, String)>, db_url: &str) -> anyhow::Result<()> {
    // The first start migrates the schema; then the data goes in and the measured server starts.
    drop(start(&envs, false)?);
    let group = seed(db_url).await?;
    let server = start(&envs, true)?;
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/api/v1/members/dev-login", server.base))
        .json(&serde_json::json!({ "name": "hot-1" }))
        .send()
        .await?
        .json()
        .await?;
    let token = login["data"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let zone: chrono_tz::Tz = "Asia/Seoul".parse()?;
    let today = Utc::now().with_timezone(&zone).date_naive();
    let calendar = format!(
        "{}/api/v1/rooms?groupId={group}&from={today}T00:00:00&to={}T00:00:00",
        server.base,
        today + Span::days(14)
    );
    let body = http
        .get(&calendar)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let rooms = serde_json::from_slice::<serde_json::Value>(&body)?["data"]
        .as_array()
        .map_or(0, Vec::len);
    anyhow::ensure!(rooms as i64 == ROOMS, "calendar holds {rooms} rooms");
    println!(
        "({backend}: calendar body {rooms} rooms, {} bytes = {:.1} KB)",
        body.len(),
        body.len() as f64 / 1e3
    );

    let secs = env_or("HOT_PATH_SECS", 3);
    let rounds = env_or("HOT_PATH_ROUNDS", 5).max(1);
    let targets = [
        ("health", format!("{}/health", server.base), None),
        (
            "members",
            format!("{}/api/v1/members", server.base),
            Some(token.as_str()),
        ),
        ("calendar", calendar.clone(), Some(token.as_str())),
    ];
    let chosen = std::env::var("HOT_PATH_TARGETS").unwrap_or_default();
    let measured = |name: &str| chosen.is_empty() || chosen.split(',').any(|t| t.trim() == name);
    // Settle (connections, caches, CPU frequency) before measuring.
    for (name, url, token) in &targets {
        if measured(name) {
            wrk(url, *token, 1)?;
        }
    }
    // Short rounds, endpoints interleaved, and each figure the median of its rounds: on a
    // shared 2-core machine a stall of the whole machine (seen on `/health` alike) lands in one
    // round and would drag a mean; the p99 range over the rounds is printed beside it.
    let mut runs: [Vec<Figures>; 3] = Default::default();
    for _ in 0..rounds {
        for (i, (name, url, token)) in targets.iter().enumerate() {
            if measured(name) {
                runs[i].push(wrk(url, *token, secs)?);
            }
        }
    }
    let cell = |runs: &[Figures]| -> (f64, String) {
        if runs.is_empty() {
            return (f64::NAN, "not measured".to_owned());
        }
        let rps = median(runs.iter().map(|f| f.rps));
        let p99s: Vec<f64> = runs.iter().map(|f| f.p99_ms).collect();
        let (lo, hi) = p99s.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        let text = format!(
            "{:.1}k req/s, p50 {:.2} ms, p99 {:.2} ms (rounds {lo:.2}–{hi:.2})",
            rps / 1e3,
            median(runs.iter().map(|f| f.p50_ms)),
            median(p99s.iter().copied()),
        );
        (rps, text)
    };
    let (health_rps, health) = cell(&runs[0]);
    let (members_rps, members) = cell(&runs[1]);
    let (cal_rps, cal) = cell(&runs[2]);
    println!(
        "| {backend} | {health} | {members} | {cal} ({:.1} KB) | {:.2} | {:.2} |",
        body.len() as f64 / 1e3,
        members_rps / health_rps,
        cal_rps / health_rps,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "api hot path: wrk -t2 -c32, {ROOMS} rooms x {MEMBERS_PER_ROOM} members in one group, release binary"
    );
    println!("| backend | `/health` | `GET /api/v1/members` | cached calendar | members / health | calendar / health |");
    println!("|---|---|---|---|---|---|");

    let dir =
        std::env::temp_dir().join(format!("ppodok-hot-path-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let backends = std::env::var("HOT_PATH_BACKENDS").unwrap_or_default();
    let on = |name: &str| backends.is_empty() || backends.split(',').any(|b| b.trim() == name);
    let sqlite_url = format!("sqlite://{}/hot.sqlite?mode=rwc", dir.display());
    let result = if on("sqlite") {
        run(
            "SQLite (embedded)",
            vec![("PPODOK__DATABASE__URL", sqlite_url.clone())],
            &sqlite_url,
        )
        .await
    } else {
        Ok(())
    };
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if !on("mariadb") {
        return Ok(());
    }

    let admin_url = std::env::var("PPODOK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    match Database::connect(admin_url.clone()).await {
        Ok(admin) => {
            let schema = format!("ppodok_bench_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!(
                    "CREATE DATABASE `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ))
                .await?;
            let url = format!("{admin_url}/{schema}");
            let redis = std::env::var("PPODOK_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!("ppodok-bench-{}:", uuid::Uuid::new_v4().simple());
            let result = run(
                "MariaDB + Redis",
                vec![
                    ("PPODOK__DATABASE__URL", url.clone()),
                    ("PPODOK__REDIS__URL", redis),
                    ("PPODOK__REDIS__KEY_PREFIX", prefix),
                ],
                &url,
            )
            .await;
            admin
                .execute_unprepared(&format!("DROP DATABASE `{schema}`"))
                .await?;
            result?;
        }
        Err(e) => println!("(MariaDB not reachable, skipped: {e})"),
    }
    Ok(())
}
