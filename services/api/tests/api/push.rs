//! Push reminders end to end: real app(s) on SQLite and on MariaDB + Redis, the test clock, a local
//! FCM HTTP v1 and a local Web Push service playing the documented protocols.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use chrono::Duration;
use ppodok_api::config::push::Secret;
use ppodok_api::config::Settings;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::push_support::*;
use crate::stomp_support::StompJs;

const WAIT: StdDuration = StdDuration::from_secs(15);

pub fn configure(s: &mut Settings, fcm: &FakeFcm) {
    s.push.fcm.project_id = FCM_PROJECT.into();
    s.push.fcm.client_email = FCM_CLIENT_EMAIL.into();
    s.push.fcm.private_key = Secret::new(service_account_key().0.clone());
    s.push.fcm.token_url = format!("{}/token", fcm.base);
    s.push.fcm.base_url = fcm.base.clone();
    s.push.webpush.vapid_private_key = Secret::new(vapid_key());
    s.push.webpush.subject = VAPID_SUBJECT.into();
    s.push.webpush.allow_http_endpoints = true;
    s.push.poll_millis = 50;
    s.push.queue_every_secs = 1;
    s.push.backoff_base_ms = 1000;
    s.push.backoff_max_secs = 60;
    s.jobs.tick_millis = 50;
}

struct Setup {
    app: TestApp,
    fcm: FakeFcm,
    group: i64,
    owner: Tokens,
}

async fn setup(backend: Backend) -> Setup {
    let fcm = FakeFcm::start().await;
    let f = fcm.clone();
    let app = spawn_app_with(backend, move |s| configure(s, &f)).await;
    let owner = app.dev_login("방장").await;
    let (group, _) = app
        .create_group(&owner.access, "알고리즘 스터디", None)
        .await;
    Setup {
        app,
        fcm,
        group,
        owner,
    }
}

async fn member(s: &Setup, name: &str) -> Tokens {
    let t = s.app.dev_login(name).await;
    s.app
        .join(&t.access, s.group, None)
        .await
        .assert_status(201);
    t
}

async fn register_fcm(app: &TestApp, token: &str, fcm_token: &str) {
    app.post("/api/v1/clients", token, json!({ "fcmToken": fcm_token }))
        .await
        .assert_status(201);
}

/// How many times this replica's scheduler ran the reminder queue job.
async fn queue_runs(app: &TestApp) -> f64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("ppodok_api_job_runs_total{job=\"queue_reminders\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Moves the clock to `to` and waits until the queue job has run at that time.
async fn move_clock(app: &TestApp, to: chrono::DateTime<chrono::Utc>) {
    move_clock_of(&[app], to).await
}

/// As `move_clock` for replicas sharing one clock: one of them runs the job.
async fn move_clock_of(replicas: &[&TestApp], to: chrono::DateTime<chrono::Utc>) {
    let runs = || async {
        let mut n = 0.0;
        for r in replicas {
            n += queue_runs(r).await;
        }
        n
    };
    let before = runs().await;
    replicas[0].clock.set(to);
    assert!(
        eventually(WAIT, || async { runs().await > before }).await,
        "the queue job runs after the clock moved"
    );
}

async fn reminder_states(app: &TestApp, member_id: i64) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = app.db.get_database_backend();
    app.db
        .query_all(Statement::from_string(
            backend,
            format!("SELECT state FROM push_reminders WHERE member_id = {member_id} ORDER BY id"),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get::<String>("", "state").unwrap())
        .collect()
}

fn assert_reminder_text(message: &Value, room: i64, group: i64, start_hhmm: &str) {
    let m = &message["message"];
    assert_eq!(
        m["notification"]["title"], "공부방이 곧 시작해요",
        "{message}"
    );
    assert_eq!(
        m["notification"]["body"],
        format!("알고리즘 스터디의 {start_hhmm} 공부방이 5분 뒤에 시작해요."),
        "{message}"
    );
    let link = format!("http://127.0.0.1:8080/study/{room}");
    assert_eq!(m["webpush"]["fcm_options"]["link"], link);
    assert_eq!(m["data"]["url"], link);
    assert_eq!(m["data"]["roomId"], room.to_string());
    assert_eq!(m["data"]["groupId"], group.to_string());
    assert_eq!(m["data"]["kind"], "before");
}

fn hhmm(t: chrono::DateTime<chrono::Utc>) -> String {
    let zone: chrono_tz::Tz = "Asia/Seoul".parse().unwrap();
    t.with_timezone(&zone).format("%H:%M").to_string()
}

// ---------------------------------------------------------------------------------------------

/// Acceptance 1: one reminder per device per booking at T−5 (not before), with title, body and
/// link; the OAuth token is obtained once (JWT grant verified) and reused.
async fn fcm_reminds_every_device_once_at_five_minutes_before(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let a = member(&s, "민지").await;
    let b = member(&s, "서준").await;
    register_fcm(app, &a.access, "fcm-a-phone").await;
    register_fcm(app, &a.access, "fcm-a-laptop").await;
    register_fcm(app, &b.access, "fcm-b-phone").await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let room = app.book(&a.access, s.group, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    app.book(&b.access, s.group, start).await.assert_status(201);

    move_clock(app, start - Duration::minutes(5) - Duration::seconds(1)).await;
    assert!(s.fcm.accepted().is_empty(), "nothing before T−5");

    move_clock(app, start - Duration::minutes(5)).await;
    assert!(
        eventually(WAIT, || async { s.fcm.accepted().len() == 3 }).await,
        "three devices reminded: {:?}",
        s.fcm.accepted()
    );
    for token in ["fcm-a-phone", "fcm-a-laptop", "fcm-b-phone"] {
        let got = s.fcm.accepted_for(token);
        assert_eq!(got.len(), 1, "{token}");
        assert_reminder_text(&got[0], room, s.group, &hhmm(start));
    }
    // Later passes of the job and the worker send nothing more.
    for secs in 1..=3 {
        move_clock(app, start - Duration::minutes(5) + Duration::seconds(secs)).await;
    }
    assert_eq!(s.fcm.accepted().len(), 3);
    let (token_requests, bad_bearer) = {
        let st = s.fcm.state.lock().unwrap();
        (st.token_requests, st.bad_bearer)
    };
    assert_eq!(token_requests, 1, "the access token is cached");
    assert_eq!(bad_bearer, 0);
    assert_eq!(
        app.metric("ppodok_api_push_sent_total").await,
        5.0,
        "3 devices + 2 STOMP targets"
    );
    let a_id = app.member_id(&a.access).await;
    assert_eq!(reminder_states(app, a_id).await, vec!["sent"; 3]);
    assert_eq!(app.metric("ppodok_api_push_queue_depth").await, 0.0);
    let _ = &s.owner;
}

/// Acceptance 1: two replicas run the queue job and the worker on one database: no duplicate.
async fn two_replicas_send_each_reminder_once(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let replica = app.spawn_replica().await;
    // Slow answers widen the window in which both workers look at the same rows.
    s.fcm.state.lock().unwrap().delay = Some(StdDuration::from_millis(50));
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let mut tokens = Vec::new();
    for i in 0..5 {
        let t = member(&s, &format!("회원{i}")).await;
        for d in 0..2 {
            let token = format!("fcm-{i}-{d}");
            register_fcm(app, &t.access, &token).await;
            tokens.push(token);
        }
        replica
            .book(&t.access, s.group, start)
            .await
            .assert_status(201);
    }
    move_clock_of(&[app, &replica], start - Duration::minutes(5)).await;
    assert!(
        eventually(WAIT, || async { s.fcm.accepted().len() >= tokens.len() }).await,
        "every device reminded"
    );
    for secs in 1..=3 {
        move_clock_of(
            &[app, &replica],
            start - Duration::minutes(5) + Duration::seconds(secs),
        )
        .await;
    }
    let mut per_token: HashMap<String, usize> = HashMap::new();
    for (t, _) in s.fcm.state.lock().unwrap().attempts.iter() {
        *per_token.entry(t.clone()).or_default() += 1;
    }
    for t in &tokens {
        assert_eq!(
            per_token.get(t),
            Some(&1),
            "{t} reminded exactly once: {per_token:?}"
        );
    }
    let sent = app.metric("ppodok_api_push_sent_total").await
        + replica.metric("ppodok_api_push_sent_total").await;
    assert_eq!(
        sent, 15.0,
        "10 devices + 5 STOMP targets, once each across both replicas"
    );
}

/// Acceptance 2: a Web Push subscription gets the reminder encrypted for it (aes128gcm, decrypted
/// here with the subscription's private key and auth secret) under a VAPID JWT that verifies
/// against the served public key.
async fn web_push_reminder_decrypts_and_vapid_verifies(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let service = FakePushService::start().await;
    let browser = BrowserSubscription::new(&service);
    let a = member(&s, "하린").await;
    let key = app
        .send(
            reqwest::Method::GET,
            "/api/v1/push/vapid-public-key",
            None,
            None,
        )
        .await;
    key.assert_status(200);
    let public_key = key.data()["publicKey"].as_str().unwrap().to_owned();
    let r = app
        .post("/api/v1/push/subscriptions", &a.access, browser.json())
        .await;
    r.assert_status(201);
    assert_eq!(r.data()["kind"], "webpush");

    let start = slot_after(app.clock.now(), Duration::hours(1));
    let room = app.book(&a.access, s.group, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    move_clock(app, start - Duration::minutes(5)).await;
    assert!(
        eventually(WAIT, || async {
            !service.deliveries_for(&browser.id).is_empty()
        })
        .await
    );
    let d = service.deliveries_for(&browser.id).remove(0);
    assert_eq!(d.headers["content-encoding"], "aes128gcm");
    let ttl: i64 = d.headers["ttl"].parse().unwrap();
    assert!((295..=300).contains(&ttl), "TTL until the start: {ttl}");
    let claims = verify_vapid(&d.headers["authorization"], &public_key);
    assert_eq!(claims.aud, service.base, "aud is the push service's origin");
    assert_eq!(claims.sub, VAPID_SUBJECT);
    assert!(
        claims.exp > chrono::Utc::now().timestamp()
            && claims.exp <= chrono::Utc::now().timestamp() + 24 * 3600
    );

    let payload: Value = serde_json::from_slice(&browser.decrypt(&d.body)).unwrap();
    assert_eq!(payload["title"], "공부방이 곧 시작해요");
    assert_eq!(
        payload["body"],
        format!(
            "알고리즘 스터디의 {} 공부방이 5분 뒤에 시작해요.",
            hhmm(start)
        )
    );
    assert_eq!(
        payload["url"],
        format!("http://127.0.0.1:8080/study/{room}")
    );
    assert_eq!(payload["roomId"], room);
    move_clock(app, start - Duration::minutes(4)).await;
    assert_eq!(service.deliveries_for(&browser.id).len(), 1, "once");
}

/// Acceptance 3: dead devices are pruned, 429 waits for Retry-After, 500 backs off, and none of it
/// holds back another member's reminder.
async fn provider_failures_prune_retry_and_isolate(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let service = FakePushService::start().await;
    let gone_browser = BrowserSubscription::new(&service);
    service.script(&gone_browser.id, &[410]);
    let dead = member(&s, "탈퇴폰").await;
    let gone = member(&s, "만료브라우저").await;
    let limited = member(&s, "한도초과").await;
    let flaky = member(&s, "서버오류").await;
    let fine = member(&s, "정상").await;
    register_fcm(app, &dead.access, "fcm-dead").await;
    app.post(
        "/api/v1/push/subscriptions",
        &gone.access,
        gone_browser.json(),
    )
    .await
    .assert_status(201);
    register_fcm(app, &limited.access, "fcm-limited").await;
    register_fcm(app, &flaky.access, "fcm-flaky").await;
    register_fcm(app, &fine.access, "fcm-fine").await;
    s.fcm.script("fcm-dead", &[FcmReply::Unregistered]);
    s.fcm.script("fcm-limited", &[FcmReply::RateLimited(120)]);
    s.fcm.script("fcm-flaky", &[FcmReply::ServerError]);
    let start = slot_after(app.clock.now(), Duration::hours(1));
    for t in [&dead, &gone, &limited, &flaky, &fine] {
        app.book(&t.access, s.group, start).await.assert_status(201);
    }
    let due = start - Duration::minutes(5);
    move_clock(app, due).await;
    assert!(eventually(WAIT, || async { s.fcm.accepted_for("fcm-fine").len() == 1 }).await);
    assert!(
        eventually(WAIT, || async {
            app.count("push_clients", "token IN ('fcm-dead')").await == 0
                && service.deliveries_for(&gone_browser.id).len() == 1
                && app.count("push_clients", "kind = 'webpush'").await == 0
        })
        .await,
        "404 UNREGISTERED and 410 prune their devices"
    );
    assert_eq!(
        app.metric("ppodok_api_push_devices_pruned_total").await,
        2.0
    );
    // The retries wait: 429 exactly Retry-After, 500 the first back-off step (1 s + ≤ 50 % jitter).
    let next_attempt = |member: i64| {
        let app = &s.app;
        async move {
            use sea_orm::{ConnectionTrait, Statement};
            let backend = app.db.get_database_backend();
            app.db
                .query_one(Statement::from_string(
                    backend,
                    format!("SELECT next_attempt_at FROM push_reminders WHERE member_id = {member} AND target <> 'stomp' AND state = 'pending'"),
                ))
                .await
                .unwrap()
                .map(|r| r.try_get::<chrono::NaiveDateTime>("", "next_attempt_at").unwrap())
        }
    };
    let (limited_id, flaky_id) = (
        app.member_id(&limited.access).await,
        app.member_id(&flaky.access).await,
    );
    assert!(
        eventually(WAIT, || async {
            next_attempt(limited_id).await.is_some() && next_attempt(flaky_id).await.is_some()
        })
        .await
    );
    let due_naive = due.naive_utc();
    let wait_limited = next_attempt(limited_id).await.unwrap() - due_naive;
    let wait_flaky = next_attempt(flaky_id).await.unwrap() - due_naive;
    assert!(
        wait_limited >= Duration::seconds(120) && wait_limited < Duration::seconds(121),
        "{wait_limited}"
    );
    assert!(
        wait_flaky >= Duration::seconds(1) && wait_flaky <= Duration::milliseconds(1600),
        "{wait_flaky}"
    );
    assert_eq!(
        (
            s.fcm.attempts_for("fcm-limited"),
            s.fcm.attempts_for("fcm-flaky")
        ),
        (1, 1)
    );

    move_clock(app, due + Duration::seconds(2)).await;
    assert!(
        eventually(WAIT, || async {
            s.fcm.accepted_for("fcm-flaky").len() == 1
        })
        .await,
        "500 retried"
    );
    assert_eq!(
        s.fcm.attempts_for("fcm-limited"),
        1,
        "429 not retried before Retry-After"
    );
    move_clock(app, due + Duration::seconds(119)).await;
    assert_eq!(
        s.fcm.attempts_for("fcm-limited"),
        1,
        "429 not retried before Retry-After"
    );
    move_clock(app, due + Duration::seconds(121)).await;
    assert!(
        eventually(WAIT, || async {
            s.fcm.accepted_for("fcm-limited").len() == 1
        })
        .await,
        "429 retried after it"
    );
    assert_eq!(s.fcm.accepted_for("fcm-fine").len(), 1);
    assert!(app.metric("ppodok_api_push_failed_total").await >= 4.0);
}

/// Acceptance 4: cancelling, leaving the group and withdrawing remove pending reminders; settings
/// off sends nothing; a reminder whose room started while it waited is skipped, not sent late.
async fn cancel_leave_withdraw_settings_and_lateness(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let canceller = member(&s, "취소").await;
    let leaver = member(&s, "탈퇴그룹").await;
    let withdrawer = member(&s, "회원탈퇴").await;
    let off = member(&s, "알림끔").await;
    let late = member(&s, "늦음").await;
    for (t, token) in [
        (&canceller, "fcm-cancel"),
        (&leaver, "fcm-leave"),
        (&withdrawer, "fcm-withdraw"),
        (&off, "fcm-off"),
        (&late, "fcm-late"),
    ] {
        register_fcm(app, &t.access, token).await;
        // Every first attempt fails, so the reminders stay pending.
        s.fcm
            .script(token, &[FcmReply::ServerError, FcmReply::ServerError]);
    }
    let r = app
        .patch(
            "/api/v1/members/settings",
            &off.access,
            json!({ "pushReminders": false }),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["pushReminders"], false);
    assert_eq!(r.data()["reminderMinutesBefore"], 5);
    app.patch(
        "/api/v1/members/settings",
        &off.access,
        json!({ "reminderMinutesBefore": 0 }),
    )
    .await
    .assert_fail(400);

    let start = slot_after(app.clock.now(), Duration::hours(1));
    let mut room = 0;
    for t in [&canceller, &leaver, &withdrawer, &off, &late] {
        room = app.book(&t.access, s.group, start).await.data()["roomId"]
            .as_i64()
            .unwrap();
    }
    let due = start - Duration::minutes(5);
    move_clock(app, due).await;
    let ids = [
        app.member_id(&canceller.access).await,
        app.member_id(&leaver.access).await,
        app.member_id(&withdrawer.access).await,
        app.member_id(&off.access).await,
        app.member_id(&late.access).await,
    ];
    assert!(
        eventually(WAIT, || async {
            for t in ["fcm-cancel", "fcm-leave", "fcm-withdraw", "fcm-late"] {
                if s.fcm.attempts_for(t) != 1 {
                    return false;
                }
            }
            true
        })
        .await,
        "first attempts made (and failed)"
    );
    assert_eq!(
        reminder_states(app, ids[3]).await.len(),
        0,
        "settings off: nothing queued"
    );
    assert_eq!(s.fcm.attempts_for("fcm-off"), 0);

    app.delete(
        &format!("/api/v1/rooms/{room}/reservation"),
        &canceller.access,
        Value::Null,
    )
    .await
    .assert_status(200);
    app.delete(
        "/api/v1/groups",
        &leaver.access,
        json!({ "groupId": s.group }),
    )
    .await
    .assert_status(200);
    app.send(
        reqwest::Method::DELETE,
        "/api/v1/members",
        Some(&withdrawer.access),
        None,
    )
    .await
    .assert_status(200);
    for id in &ids[..3] {
        assert_eq!(
            reminder_states(app, *id).await.len(),
            0,
            "member {id}: pending reminders removed"
        );
    }
    assert!(!reminder_states(app, ids[4]).await.is_empty());

    // The room starts while the last retry waits: it is skipped, never sent late.
    move_clock(app, start + Duration::seconds(1)).await;
    assert!(
        eventually(WAIT, || async {
            reminder_states(app, ids[4])
                .await
                .iter()
                .any(|st| st == "skipped")
        })
        .await
    );
    move_clock(app, start + Duration::seconds(5)).await;
    for t in ["fcm-cancel", "fcm-leave", "fcm-withdraw", "fcm-late"] {
        assert_eq!(
            s.fcm.attempts_for(t),
            1,
            "{t}: no attempt after removal or start"
        );
    }
    assert!(app.metric("ppodok_api_push_skipped_late_total").await >= 1.0);

    // A booking whose reminder time passed while the service was down (the clock jumps past the
    // start): nothing is queued, nothing sent.
    let next = start + Duration::minutes(30);
    let fresh = member(&s, "다음").await;
    register_fcm(app, &fresh.access, "fcm-next").await;
    app.book(&fresh.access, s.group, next)
        .await
        .assert_status(201);
    move_clock(app, next + Duration::minutes(1)).await;
    move_clock(app, next + Duration::minutes(2)).await;
    assert_eq!(s.fcm.attempts_for("fcm-next"), 0);
    assert_eq!(
        reminder_states(app, app.member_id(&fresh.access).await)
            .await
            .len(),
        0
    );
}

/// Acceptance 5: an open STOMP session of the member gets the same reminder as a toast.
async fn stomp_session_gets_the_foreground_reminder(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let a = member(&s, "지우").await;
    let other = member(&s, "남").await;
    let mut mine = StompJs::connect(app, Some(&a.access), &["/user/queue/notifications"])
        .await
        .ready()
        .await;
    let mut theirs = StompJs::connect(app, Some(&other.access), &["/user/queue/notifications"])
        .await
        .ready()
        .await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let room = app.book(&a.access, s.group, start).await.data()["roomId"]
        .as_i64()
        .unwrap();
    move_clock(app, start - Duration::minutes(5)).await;
    let event = mine.next_of("message").await.expect("a reminder arrives");
    assert_eq!(event["destination"], "/user/queue/notifications");
    let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "roomReminder");
    assert_eq!(body["title"], "공부방이 곧 시작해요");
    assert_eq!(body["roomId"], room);
    assert_eq!(body["url"], format!("http://127.0.0.1:8080/study/{room}"));
    // The other member booked nothing: their queue stays silent (a ping through their own
    // reminder proves the session was live).
    app.book(&other.access, s.group, start + Duration::minutes(30))
        .await
        .assert_status(201);
    move_clock(app, start + Duration::minutes(25)).await;
    let theirs_event = theirs.next_of("message").await.expect("their own reminder");
    let body: Value = serde_json::from_str(theirs_event["body"].as_str().unwrap()).unwrap();
    assert_ne!(body["roomId"], room, "never another member's reminder");
    mine.close().await;
    theirs.close().await;
}

/// Devices: several per member, moving between accounts, unregistering, and bad input.
async fn devices_register_move_and_unregister(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let service = FakePushService::start().await;
    let browser = BrowserSubscription::new(&service);
    let a = member(&s, "기기A").await;
    let b = member(&s, "기기B").await;
    let r = app
        .post("/api/v1/push/subscriptions", &a.access, browser.json())
        .await;
    r.assert_status(201);
    let id = r.data()["id"].as_i64().unwrap();
    let r = app
        .post("/api/v1/push/subscriptions", &b.access, browser.json())
        .await;
    r.assert_status(201);
    assert_eq!(r.data()["id"], id, "the same device");
    assert_eq!(
        r.data()["memberId"],
        app.member_id(&b.access).await,
        "moved to the new account"
    );
    app.delete(
        "/api/v1/push/subscriptions",
        &a.access,
        json!({ "endpoint": browser.endpoint }),
    )
    .await
    .assert_fail(404);
    app.delete(
        "/api/v1/push/subscriptions",
        &b.access,
        json!({ "endpoint": browser.endpoint }),
    )
    .await
    .assert_status(200);
    assert_eq!(app.count("push_clients", "kind = 'webpush'").await, 0);

    register_fcm(app, &a.access, "fcm-x").await;
    app.delete("/api/v1/clients", &b.access, json!({ "fcmToken": "fcm-x" }))
        .await
        .assert_fail(404);
    app.delete("/api/v1/clients", &a.access, json!({ "fcmToken": "fcm-x" }))
        .await
        .assert_status(200);

    let mut bad = browser.json();
    bad["keys"]["p256dh"] = json!("AAAA");
    app.post("/api/v1/push/subscriptions", &a.access, bad)
        .await
        .assert_fail(400);
    let mut bad = browser.json();
    bad["endpoint"] = json!("ftp://example.com/x");
    app.post("/api/v1/push/subscriptions", &a.access, bad)
        .await
        .assert_fail(400);
    app.send(
        reqwest::Method::POST,
        "/api/v1/push/subscriptions",
        None,
        Some(browser.json()),
    )
    .await
    .assert_fail(401);
    let r = app.get("/api/v1/members/settings", &a.access).await;
    r.assert_status(200);
    assert_eq!(
        (
            r.data()["pushReminders"].clone(),
            r.data()["reminderMinutesBefore"].clone(),
            r.data()["reminderAtStart"].clone()
        ),
        (json!(true), json!(5), json!(false))
    );
}

on_both_backends!(
    fcm_reminds_every_device_once_at_five_minutes_before,
    two_replicas_send_each_reminder_once,
    web_push_reminder_decrypts_and_vapid_verifies,
    provider_failures_prune_retry_and_isolate,
    cancel_leave_withdraw_settings_and_lateness,
    stomp_session_gets_the_foreground_reminder,
    devices_register_move_and_unregister,
);
