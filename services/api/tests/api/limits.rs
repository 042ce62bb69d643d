//! Abuse bounds: rate limits answer 429 with `Retry-After` in the contract envelope (per client IP
//! and per member, on both backends), and a flood of wrong group passwords against the real binary
//! keeps its memory and the latency of unrelated requests bounded.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Duration as Span;
use ppodok_api::limits::Budget;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, slot_after, spawn_app_with, Backend};
use crate::on_both_backends;

const BIN: &str = env!("CARGO_BIN_EXE_ppodok-api");

fn budget(burst: u32, per_secs: f64) -> Budget {
    Budget { burst, per_secs }
}

/// Posts and returns status, `Retry-After` and body.
async fn post_raw(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Option<u64>, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request reaches the app");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[track_caller]
fn assert_limited(reply: &(StatusCode, Option<u64>, Value)) {
    let (status, retry_after, body) = reply;
    assert_eq!(status.as_u16(), 429, "{body}");
    assert_eq!(body["code"], "fail", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
}

async fn logins_bookings_and_invite_codes_are_limited(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.limits.login_per_ip = budget(4, 60.0);
        s.limits.booking_per_member = budget(3, 60.0);
        s.limits.invite_code_per_member = budget(3, 60.0);
        s.limits.refresh_per_ip = budget(2, 60.0);
    })
    .await;
    let login = |name: &str| {
        post_raw(
            &app.http,
            app.url("/api/v1/members/dev-login"),
            None,
            json!({ "name": name }),
        )
    };
    let first = login("a").await;
    assert_eq!(first.0, 200);
    let a = first.2["data"]["accessToken"].as_str().unwrap().to_owned();
    let refresh = first.2["data"]["refreshToken"].as_str().unwrap().to_owned();
    for name in ["b", "c", "d"] {
        assert_eq!(login(name).await.0, 200);
    }
    assert_limited(&login("e").await);

    // Refresh rotations per IP: two, then 429 (the rotation itself is not consumed).
    let mut current = refresh;
    for _ in 0..2 {
        let r = app.refresh(&current).await;
        r.assert_status(201);
        current = r.data()["refreshToken"].as_str().unwrap().to_owned();
    }
    app.refresh(&current).await.assert_fail(429);

    // Invite-code guesses per member.
    for _ in 0..3 {
        app.get("/api/v1/groups/path?path=AAAAAAAAAAAAAAAA", &a)
            .await
            .assert_fail(400);
    }
    app.get("/api/v1/groups/path?path=AAAAAAAAAAAAAAAA", &a)
        .await
        .assert_fail(429);
    let guess = post_raw(
        &app.http,
        app.url("/api/v1/groups/path"),
        Some(&a),
        json!({ "path": "BBBBBBBBBBBBBBBB" }),
    )
    .await;
    assert_limited(&guess);

    // Bookings (and cancellations) per member.
    let (g, _) = app.create_group(&a, "제한", None).await;
    let start = slot_after(app.clock.now(), Span::hours(1));
    for i in 0..3 {
        app.book(&a, g, start + Span::minutes(30 * i))
            .await
            .assert_status(201);
    }
    let over = post_raw(
        &app.http,
        app.url("/api/v1/rooms/reservations"),
        Some(&a),
        json!({ "groupId": g, "startTime": crate::helpers::local_string(start + Span::hours(3)) }),
    )
    .await;
    assert_limited(&over);
    assert_eq!(
        app.count("rooms", &format!("group_id = {g}")).await,
        3,
        "a refused booking leaves nothing behind"
    );
    assert!(app.metric("ppodok_api_rate_limited_total").await >= 5.0);
}

/// A password attempt is counted only where one is made: joining a public group, or a secret
/// group I am in already, takes nothing from the per-member budget; wrong passwords do.
async fn only_password_attempts_take_the_group_password_budget(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.limits.group_password_per_member = budget(2, 3600.0);
        s.limits.group_password_per_ip = budget(1000, 60.0);
    })
    .await;
    let owner = app.dev_login("owner").await.access;
    let m = app.dev_login("joiner").await.access;
    let (public, _) = app.create_group(&owner, "공개", None).await;
    let (secret, _) = app
        .create_group(&owner, "비밀", Some("right-password"))
        .await;
    let (other, _) = app
        .create_group(&owner, "또 비밀", Some("other-password"))
        .await;

    for _ in 0..3 {
        app.join(&m, public, None).await.assert_status(201);
    }
    // One attempt, right: a member now, whose re-joins ask nothing.
    app.join(&m, secret, Some("right-password"))
        .await
        .assert_status(201);
    for _ in 0..3 {
        app.join(&m, secret, None).await.assert_status(201);
    }
    // One unit left: a wrong password is 400, the next attempt 429.
    app.join(&m, other, Some("wrong")).await.assert_fail(400);
    app.join(&m, other, Some("other-password"))
        .await
        .assert_fail(429);
}

on_both_backends!(
    logins_bookings_and_invite_codes_are_limited,
    only_password_attempts_take_the_group_password_budget
);

/// The real binary on SQLite, printing its address; killed when dropped.
struct Binary {
    child: std::process::Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Binary {
    async fn start(env: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ppodok-flood-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&dir)
            .env_remove("PPODOK_CONFIG")
            .env_remove("PPODOK__REDIS__URL")
            .env("PPODOK__SERVER__PORT", "0")
            .env("PPODOK__SERVER__WORKERS", "2")
            .env("PPODOK__JOBS__ENABLED", "false")
            .env("PPODOK__TELEMETRY__FILTER", "error")
            .env(
                "PPODOK__AUTH__JWT_SECRET",
                "flood-secret-flood-secret-flood-secret!",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("ppodok-api listening on ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let base = tokio::task::spawn_blocking(move || {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("listening line")
        })
        .await
        .unwrap();
        Self { child, base, dir }
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kib / 1024.0
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn dev_login(http: &reqwest::Client, base: &str, name: &str) -> String {
    let r = post_raw(
        http,
        format!("{base}/api/v1/members/dev-login"),
        None,
        json!({ "name": name }),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.2);
    r.2["data"]["accessToken"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_flood_keeps_memory_and_latency_bounded() {
    let app = Binary::start(&[
        ("PPODOK__LIMITS__LOGIN_PER_IP__BURST", "1000"),
        ("PPODOK__LIMITS__GROUP_PASSWORD_PER_IP__BURST", "1000"),
        ("PPODOK__LIMITS__GROUP_PASSWORD_PER_MEMBER__BURST", "3"),
        ("PPODOK__LIMITS__GROUP_PASSWORD_PER_MEMBER__PER_SECS", "30"),
    ])
    .await;
    let http = reqwest::Client::new();
    let base = app.base.clone();
    let owner = dev_login(&http, &base, "owner").await;
    let created = post_raw(
        &http,
        format!("{base}/api/v1/groups"),
        Some(&owner),
        json!({ "groupName": "비밀", "secret": true, "password": "right-password" }),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.2);
    let g = created.2["data"]["groupId"].as_i64().unwrap();
    let mut guessers = Vec::new();
    for i in 0..64 {
        guessers.push(dev_login(&http, &base, &format!("guesser{i}")).await);
    }
    let bystander = dev_login(&http, &base, "bystander").await;
    let join_url = format!("{base}/api/v1/groups/{g}");

    // 64 members guess at once while a bystander keeps reading its profile.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (http, base, done) = (http.clone(), base.clone(), done.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let began = Instant::now();
                let r = http
                    .get(format!("{base}/api/v1/members"))
                    .bearer_auth(&bystander)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                latencies.push(began.elapsed());
            }
            latencies
        })
    };
    let flood = futures::future::join_all(guessers.iter().map(|t| {
        post_raw(
            &http,
            join_url.clone(),
            Some(t),
            json!({ "password": "wrong" }),
        )
    }))
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = reader.await.unwrap();
    for (status, _, body) in &flood {
        assert!(
            *status == 400 || *status == 429,
            "a wrong password is 400, or 429 when hashing is saturated: {status} {body}"
        );
        assert_eq!(body["code"], "fail");
    }
    let peak = app.peak_rss_mib();
    latencies.sort();
    eprintln!(
        "wrong-password flood: peak RSS {peak:.0} MiB, {} bystander reads, max {:?}",
        latencies.len(),
        latencies.last()
    );
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
    assert!(latencies.len() >= 10, "{} bystander reads", latencies.len());
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    assert!(
        p99 < Duration::from_millis(50),
        "bystander p99 {p99:?} over {} reads",
        latencies.len()
    );

    // One member's budget (3 per 30 s, one back every 10 s, longer than a guess takes even on a
    // loaded machine): wrong guesses until it is spent, then 429 even for the right password,
    // which works again once the window lets one attempt through.
    let one = &guessers[0];
    let mut spent = false;
    for _ in 0..10 {
        let r = post_raw(
            &http,
            join_url.clone(),
            Some(one),
            json!({ "password": "wrong" }),
        )
        .await;
        // Stop on a 429 with time left on it, so the next attempt is surely inside the window.
        if r.0 == 429 && r.1.is_some_and(|s| s >= 2) {
            spent = true;
            break;
        }
        assert!(r.0 == 400 || r.0 == 429, "{}", r.2);
    }
    assert!(spent, "the member's password budget runs out");
    let locked = post_raw(
        &http,
        join_url.clone(),
        Some(one),
        json!({ "password": "right-password" }),
    )
    .await;
    assert_limited(&locked);
    let joined = eventually(Duration::from_secs(25), || {
        let (http, url) = (http.clone(), join_url.clone());
        async move {
            post_raw(
                &http,
                url,
                Some(one),
                json!({ "password": "right-password" }),
            )
            .await
            .0 == 201
        }
    })
    .await;
    assert!(joined, "the right password works after the lockout window");
}
