//! Acceptance 1, the crash window: the real binary is SIGKILLed right after the provider accepted a
//! reminder and before the binary heard so. On restart nothing is sent twice: the dead claim is
//! given up as `unknown` (counted), and the reminder that was still queued goes out once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration as StdDuration;

use chrono::Duration;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::push_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ppodok-api");
const WAIT: StdDuration = StdDuration::from_secs(30);

struct Binary {
    child: Child,
    base: String,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_binary(store: &TestStore, fcm: &FakeFcm, dir: &std::path::Path) -> Binary {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_remove("PPODOK_CONFIG")
        .env("PPODOK__SERVER__PORT", "0")
        .env("PPODOK__SERVER__WORKERS", "1")
        .env("PPODOK__DATABASE__URL", &store.database_url)
        .env("PPODOK__REDIS__URL", &store.redis_url)
        .env("PPODOK__REDIS__KEY_PREFIX", &store.redis_prefix)
        .env(
            "PPODOK__AUTH__JWT_SECRET",
            "test-secret-test-secret-test-secret!",
        )
        .env("PPODOK__JOBS__TICK_MILLIS", "100")
        .env("PPODOK__PUSH__QUEUE_EVERY_SECS", "1")
        .env("PPODOK__PUSH__POLL_MILLIS", "100")
        // One send at a time: exactly one claim is in flight when the process dies.
        .env("PPODOK__PUSH__CONCURRENCY", "1")
        .env("PPODOK__PUSH__LEASE_SECS", "3")
        .env("PPODOK__PUSH__TIMEOUT_SECS", "2")
        .env("PPODOK__PUSH__FCM__PROJECT_ID", FCM_PROJECT)
        .env("PPODOK__PUSH__FCM__CLIENT_EMAIL", FCM_CLIENT_EMAIL)
        .env("PPODOK__PUSH__FCM__PRIVATE_KEY", &service_account_key().0)
        .env(
            "PPODOK__PUSH__FCM__TOKEN_URL",
            format!("{}/token", fcm.base),
        )
        .env("PPODOK__PUSH__FCM__BASE_URL", &fcm.base)
        .env("PPODOK__WEB__DIR", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
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
        rx.recv_timeout(StdDuration::from_secs(60))
            .expect("listening line")
    })
    .await
    .unwrap();
    Binary { child, base }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http.request(method, url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("the binary answers");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, name)
}

async fn killed_after_provider_accepted_sends_nothing_twice(backend: Backend) {
    let store = TestStore::create(backend).await;
    let fcm = FakeFcm::start().await;
    let dir = std::env::temp_dir().join(format!("ppodok-push-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let http = reqwest::Client::new();

    let first = start_binary(&store, &fcm, &dir).await;
    let base = first.base.clone();
    let login = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/members/dev-login"),
        None,
        json!({ "name": "크래시" }),
    )
    .await;
    let token = login["data"]["accessToken"].as_str().unwrap().to_owned();
    let group = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/groups"),
        Some(&token),
        json!({ "groupName": "복구 스터디", "secret": false, "password": null }),
    )
    .await["data"]["groupId"]
        .as_i64()
        .unwrap();
    for device in ["fcm-crash-1", "fcm-crash-2"] {
        call(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/v1/clients"),
            Some(&token),
            json!({ "fcmToken": device }),
        )
        .await;
    }
    // The real clock: a room within the hour, reminded 60 minutes ahead, is due at once.
    call(
        &http,
        reqwest::Method::PATCH,
        format!("{base}/api/v1/members/settings"),
        Some(&token),
        json!({ "reminderMinutesBefore": 60 }),
    )
    .await;
    fcm.state.lock().unwrap().kill_on_accept = Some(first.child.id());
    let start = slot_after(chrono::Utc::now(), Duration::minutes(3));
    call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/rooms/reservations"),
        Some(&token),
        json!({ "groupId": group, "startTime": local_string(start) }),
    )
    .await;

    let mut first = first;
    let status = tokio::task::spawn_blocking(move || {
        let s = first.child.wait().unwrap();
        drop(first);
        s
    })
    .await
    .unwrap();
    assert!(!status.success(), "killed by the fake provider");
    assert_eq!(
        fcm.accepted().len(),
        1,
        "the provider accepted one reminder before the kill"
    );
    let delivered = fcm.accepted()[0].0.clone();

    let second = start_binary(&store, &fcm, &dir).await;
    assert!(
        eventually(WAIT, || async {
            metric(&http, &second.base, "ppodok_api_push_outcome_unknown_total").await == 1.0
        })
        .await,
        "the dead claim is given up once its lease runs out"
    );
    assert!(
        eventually(WAIT, || async { fcm.accepted().len() == 2 }).await,
        "the other device is reminded"
    );
    // A few more passes: nothing else goes out.
    let runs = metric(&http, &second.base, "ppodok_api_job_runs_total").await;
    assert!(
        eventually(WAIT, || async {
            metric(&http, &second.base, "ppodok_api_job_runs_total").await >= runs + 3.0
        })
        .await
    );
    let accepted = fcm.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(
        fcm.attempts_for(&delivered),
        1,
        "the accepted reminder is not resent"
    );
    for device in ["fcm-crash-1", "fcm-crash-2"] {
        assert_eq!(fcm.accepted_for(device).len(), 1, "{device}");
    }
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

crate::on_both_backends!(killed_after_provider_accepted_sends_nothing_twice);
