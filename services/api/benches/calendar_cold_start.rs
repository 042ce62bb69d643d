//! The cold-start benchmark: calendar read latency while warm, then in the first seconds after a
//! restart with an empty cache, with and without warm-up at boot.
//!
//! `cargo bench -p ppodok-api --bench calendar_cold_start` (or `make bench`). Runs on SQLite with the
//! in-process cache, and on MariaDB + Redis when they answer at 127.0.0.1 (a restart there is
//! simulated by a fresh Redis key prefix, as when Redis was wiped on deploy).

use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use ppodok_api::{clock::Clock, config::Settings, startup::Application};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

#[path = "support/seed.rs"]
mod seed;

const GROUPS: i64 = 40;
const ROOMS_PER_GROUP: i64 = 120;
const MEMBERS_PER_ROOM: usize = 4;
const MEMBERS: usize = 60;
const CONCURRENCY: usize = 32;
const WARM_SECS: u64 = 5;
const RESTART_SECS: u64 = 3;

struct Summary {
    requests: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn summarise(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Summary {
        requests: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

async fn start(settings: Settings) -> String {
    let app = Application::build_with_clock(settings, Clock::System)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// Members, groups, and rooms in today's default window, written straight to the database.
async fn seed(db: &DatabaseConnection) -> anyhow::Result<()> {
    let now = Utc::now().naive_utc();
    let members = seed::members(db, "bench", MEMBERS, now).await?;
    let first_slot = seed::eight_today_in_seoul();
    for g in 0..GROUPS {
        let group_id = seed::group_of(
            db,
            format!("bench group {g}"),
            format!("benchcode{g:07}"),
            &members,
            now,
        )
        .await?;
        seed::booked_rooms(
            db,
            group_id,
            first_slot,
            ROOMS_PER_GROUP,
            &members,
            MEMBERS_PER_ROOM,
            now,
        )
        .await?;
    }
    Ok(())
}

/// `CONCURRENCY` readers hammer the default calendar window of every group for `secs`.
async fn load(base: &str, token: &str, secs: u64) -> Summary {
    let zone: chrono_tz::Tz = "Asia/Seoul".parse().unwrap();
    let today = Utc::now().with_timezone(&zone).date_naive();
    let (from, to) = (
        format!("{today}T00:00:00"),
        format!("{}T00:00:00", today + ChronoDuration::days(14)),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers = (0..CONCURRENCY)
        .map(|w| {
            let (http, base, token, from, to) = (
                http.clone(),
                base.to_owned(),
                token.to_owned(),
                from.clone(),
                to.clone(),
            );
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut i = w as i64;
                while Instant::now() < deadline {
                    // Group ids 2.. are the seeded groups (1 is the default group).
                    let group = 2 + i % GROUPS;
                    i += 1;
                    let started = Instant::now();
                    let resp = http
                        .get(format!(
                            "{base}/api/v1/rooms?groupId={group}&from={from}&to={to}"
                        ))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("request");
                    assert!(resp.status().is_success(), "status {}", resp.status());
                    let body = resp.bytes().await.expect("body");
                    assert!(body.len() > 100);
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect::<Vec<_>>();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    summarise(all)
}

async fn login(base: &str) -> String {
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/members/dev-login"))
        .json(&serde_json::json!({ "name": "bench-1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["data"]["accessToken"].as_str().unwrap().to_owned()
}

fn row(backend: &str, phase: &str, s: &Summary) {
    println!(
        "| {backend} | {phase} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
        s.requests,
        s.requests as f64
            / if phase.starts_with("warm") {
                WARM_SECS
            } else {
                RESTART_SECS
            } as f64,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3
    );
}

async fn run(backend: &str, mut settings: Settings) -> anyhow::Result<()> {
    let db = Database::connect(settings.database.url.clone()).await?;
    // Migrate through a first app start, then seed.
    let base = start(settings.clone()).await;
    seed(&db).await?;
    drop(base);
    settings.cache.warm_on_boot = true;
    let warm_base = start(settings.clone()).await;
    let token = login(&warm_base).await;
    let _ = load(&warm_base, &token, 1).await; // settle
    row(
        backend,
        "warm (steady state)",
        &load(&warm_base, &token, WARM_SECS).await,
    );

    for (phase, warm) in [
        ("first 3 s after restart, warm-up at boot", true),
        ("first 3 s after restart, no warm-up", false),
    ] {
        let mut restarted = settings.clone();
        restarted.cache.warm_on_boot = warm;
        if !restarted.redis.url.is_empty() {
            restarted.redis.key_prefix = format!("ppodok-bench-{}:", uuid::Uuid::new_v4().simple());
        }
        let base = start(restarted).await;
        let token = login(&base).await;
        row(backend, phase, &load(&base, &token, RESTART_SECS).await);
    }
    db.close().await?;
    Ok(())
}

fn base_settings() -> Settings {
    let mut s = Settings::defaults();
    s.server.port = 0;
    s.auth.jwt_secret = "bench-secret-bench-secret-bench-secret".into();
    s.jobs.enabled = false;
    // The load generator is one client IP making thousands of logins.
    s.limits.enabled = false;
    s.telemetry.filter = "warn".into();
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("calendar cold start: {GROUPS} groups x {ROOMS_PER_GROUP} rooms x {MEMBERS_PER_ROOM} members, {CONCURRENCY} concurrent readers, 14-day window");
    println!("| backend | phase | requests | req/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");

    let file = std::env::temp_dir().join(format!(
        "ppodok-bench-{}.sqlite",
        uuid::Uuid::new_v4().simple()
    ));
    let mut sqlite = base_settings();
    sqlite.database.url = format!("sqlite://{}?mode=rwc", file.display());
    run("SQLite + in-process cache", sqlite).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }

    let admin_url = std::env::var("PPODOK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    match Database::connect(admin_url.clone()).await {
        Ok(admin) => {
            let schema = format!("ppodok_bench_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE `{schema}`"))
                .await?;
            let mut maria = base_settings();
            maria.database.url = format!("{admin_url}/{schema}");
            maria.redis.url = std::env::var("PPODOK_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            maria.redis.key_prefix = format!("ppodok-bench-{}:", uuid::Uuid::new_v4().simple());
            let result = run("MariaDB + Redis", maria).await;
            admin
                .execute_unprepared(&format!("DROP DATABASE `{schema}`"))
                .await?;
            result?;
        }
        Err(e) => println!("(MariaDB not reachable, skipped: {e})"),
    }
    Ok(())
}
