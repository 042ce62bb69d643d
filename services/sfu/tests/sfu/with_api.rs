//! Acceptance with the real API: members book a room, fetch video tokens from the API, meet in
//! headless Chromium on the SFU, leave, and the SFU's signed webhooks alone credit their time.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ppodok_api::clock::Clock;
use ppodok_api::startup::Application as Api;
use serde_json::{json, Value};

use crate::helpers::{spawn_sfu_with, Browser};

const T: Duration = Duration::from_secs(30);
pub(crate) const LIVEKIT_SECRET: &str = "e2e-livekit-secret-e2e-livekit-secret-0123";

pub(crate) struct TestApi {
    pub(crate) base: String,
    pub(crate) clock: Clock,
    http: reqwest::Client,
    _db: TempFile,
}

/// A SQLite file removed when the test ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl TestApi {
    /// The API with day-long rooms in UTC (one room from 00:00 to 24:00), so that the real
    /// time, which the SFU stamps on its webhooks, is inside the window of today's room.
    async fn spawn(clock: Clock) -> TestApi {
        Self::spawn_with(clock, |_| {}).await
    }

    /// As `spawn`, with the settings adjusted first.
    pub(crate) async fn spawn_with(
        clock: Clock,
        adjust: impl FnOnce(&mut ppodok_api::config::Settings),
    ) -> TestApi {
        let file = std::env::temp_dir().join(format!(
            "ppodok-sfu-e2e-{}.sqlite",
            uuid::Uuid::new_v4().simple()
        ));
        let mut s = ppodok_api::config::Settings::defaults();
        s.server.port = 0;
        s.server.workers = 2;
        s.database.url = format!("sqlite://{}?mode=rwc", file.display());
        s.auth.jwt_secret = "e2e-jwt-secret-e2e-jwt-secret-e2e-jwt!".into();
        s.auth.dev_login = true;
        s.jobs.enabled = false;
        s.time.zone = "UTC".into();
        s.rooms.cycle_minutes = 24 * 60;
        s.rooms.study_minutes = 24 * 60;
        s.livekit.api_key = "devkey".into();
        s.livekit.api_secret = LIVEKIT_SECRET.into();
        adjust(&mut s);
        let app = Api::build_with_clock(s, clock.clone())
            .await
            .expect("the API builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        TestApi {
            base,
            clock,
            http: reqwest::Client::new(),
            _db: TempFile(file),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body["data"].clone()
    }

    /// The HTTP status of a call expected to be refused.
    pub(crate) async fn status(&self, method: reqwest::Method, path: &str, token: &str) -> u16 {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers")
            .status()
            .as_u16()
    }

    pub(crate) async fn dev_login(&self, name: &str) -> String {
        let data = self
            .call(
                reqwest::Method::POST,
                "/api/v1/members/dev-login",
                "",
                json!({ "name": name }),
            )
            .await;
        data["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("an access token in {data}"))
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_meet_with_api_tokens_and_the_sfu_webhooks_credit_their_time() {
    use reqwest::Method;
    // Today's day-long room started at 00:00 UTC; book it "yesterday".
    let real_now = Utc::now();
    let start: DateTime<Utc> = real_now.duration_trunc(TimeDelta::days(1)).unwrap();
    let clock = Clock::manual(start - TimeDelta::hours(1));
    let api = TestApi::spawn(clock).await;
    let webhook = format!("{}/api/v1/internal/sfu/webhook", api.base);
    let sfu = spawn_sfu_with(|s| {
        s.livekit.api_key = "devkey".into();
        s.livekit.api_secret = LIVEKIT_SECRET.into();
        s.webhook.urls = vec![webhook];
    })
    .await;

    let alice = api.dev_login("앨리스").await;
    let bob = api.dev_login("밥").await;
    let carol = api.dev_login("캐롤").await;
    let group = api
        .call(
            Method::POST,
            "/api/v1/groups",
            &alice,
            json!({ "groupName": "화상 스터디", "secret": false, "password": null }),
        )
        .await["groupId"]
        .as_i64()
        .unwrap();
    for who in [&bob, &carol] {
        api.call(
            Method::POST,
            &format!("/api/v1/groups/{group}"),
            who,
            json!({ "password": null }),
        )
        .await;
    }
    let start_local = start.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut room = None;
    for who in [&alice, &bob] {
        let data = api
            .call(
                Method::POST,
                "/api/v1/rooms/reservations",
                who,
                json!({ "groupId": group, "startTime": start_local }),
            )
            .await;
        let id = data["roomId"].as_i64().expect("roomId");
        assert_eq!(*room.get_or_insert(id), id, "both booked the same room");
    }
    let room = room.unwrap();
    let path = format!("/api/v1/rooms/{room}/video-token");
    // An hour before the room opens, the API refuses to mint (400); Carol, a member of the group
    // without a reservation, is refused at any time (403).
    assert_eq!(api.status(Method::POST, &path, &alice).await, 400);
    assert_eq!(api.status(Method::POST, &path, &carol).await, 403);

    // Inside the window, a minute before the real time: the joins are credited from there
    // (the API never takes an event's time past its own clock), the leaves at their real time.
    api.clock.set(real_now - TimeDelta::minutes(1));
    assert_eq!(api.status(Method::POST, &path, &carol).await, 403);
    let alice_video = api.call(Method::POST, &path, &alice, Value::Null).await;
    let bob_video = api.call(Method::POST, &path, &bob, Value::Null).await;
    assert_eq!(alice_video["roomName"], room.to_string());
    let token = |v: &Value| v["token"].as_str().unwrap().to_owned();

    let mut a = Browser::launch("publish", &sfu.ws_url(), &token(&alice_video), 90).await;
    a.wait_event("connected", T).await;
    let mut b = Browser::launch("publish", &sfu.ws_url(), &token(&bob_video), 90).await;
    let signal = b.wait_event("signalConnected", T).await;
    assert_eq!(signal["remotes"], json!([alice_video["identity"]]));
    a.wait_for("bob connected", T, |v| {
        v["event"] == "participantConnected" && v["identity"] == bob_video["identity"]
    })
    .await;
    // Both publish camera and microphone: each decodes the other's video and receives audio.
    for (page, other) in [
        (&mut a, &bob_video["identity"]),
        (&mut b, &alice_video["identity"]),
    ] {
        let other = other.as_str().unwrap();
        let first = page
            .wait_inbound(other, "camera", T, |v| {
                v["framesDecoded"].as_u64() > Some(0) && v["frameWidth"].as_u64() > Some(0)
            })
            .await;
        let n = first["framesDecoded"].as_u64().unwrap();
        page.wait_inbound(other, "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(n + 10) && v["frameWidth"].as_u64() > Some(0)
        })
        .await;
        let first = page
            .wait_inbound(other, "microphone", T, |v| {
                v["totalSamplesReceived"].as_u64() > Some(0)
            })
            .await;
        let n = first["totalSamplesReceived"].as_u64().unwrap();
        page.wait_inbound(other, "microphone", T, |v| {
            v["totalSamplesReceived"].as_u64() > Some(n + 48_000)
        })
        .await;
    }

    // Later than any event's real time: the leaves are credited at their real time.
    api.clock.set(Utc::now() + TimeDelta::minutes(10));
    a.close().await;
    b.close().await;
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();

    // No client ever called the history API: only the webhooks credited the time, from the
    // clock's minute before the joins to the real time of the leaves.
    let most = 60 + (Utc::now() - real_now).num_seconds() + 2;
    for (who, name) in [(&alice, "alice"), (&bob, "bob")] {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let me = api
                .call(
                    Method::GET,
                    &format!("/api/v1/members/{group}"),
                    who,
                    Value::Null,
                )
                .await;
            let duration = me["duration"].as_str().unwrap_or("").to_owned();
            if let Some(secs) = iso_seconds(&duration).filter(|s| *s > 0.0) {
                assert!(
                    (60.0..=most as f64).contains(&secs),
                    "{name}: credited {duration}, expected 60..={most} s"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no credited time; {me}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        sfu.metric("sfu_webhooks_failed_total").await,
        Some(0.0),
        "{}",
        sfu.metrics().await
    );
}

/// Seconds of an ISO-8601 duration like `PT1M5.25S` (`None` if it is not one).
fn iso_seconds(iso: &str) -> Option<f64> {
    let mut rest = iso.strip_prefix("PT")?;
    let mut total = 0.0;
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let n: f64 = rest[..end].parse().ok()?;
        total += n * match &rest[end..end + 1] {
            "H" => 3600.0,
            "M" => 60.0,
            "S" => 1.0,
            _ => return None,
        };
        rest = &rest[end + 1..];
    }
    Some(total)
}
