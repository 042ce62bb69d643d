//! Redis faults, on a `redis-server` of the test's own: restarted empty, stalled (SIGSTOP) and
//! resumed, and a replica cut off from Redis right after its commit. Calendars show every committed
//! booking on every replica, requests answer fast while Redis is away, sessions survive it, and a
//! STOMP event published during a stall reaches the other replica's subscribers once Redis returns.

use std::time::{Duration, Instant};

use chrono::Duration as Span;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    eventually, local_string, slot_after, spawn_app_with, Backend, PrivateRedis, TcpProxy, TestApp,
};
use crate::stomp_support::StompJs;

async fn app_on(redis: &PrivateRedis) -> TestApp {
    let url = redis.url();
    spawn_app_with(Backend::MariaDb, move |s| {
        s.redis.url = url;
        s.jobs.enabled = false;
    })
    .await
}

fn calendar_path(app: &TestApp, g: i64) -> String {
    let start = slot_after(app.clock.now(), Span::hours(1));
    format!(
        "/api/v1/rooms?groupId={g}&from={}&to={}",
        local_string(start - Span::hours(1)),
        local_string(start + Span::days(1))
    )
}

async fn rooms_seen(app: &TestApp, path: &str, token: &str) -> usize {
    let r = app.get(path, token).await;
    r.assert_status(200);
    r.data().as_array().unwrap().len()
}

async fn ready(app: &TestApp) -> bool {
    app.send(Method::GET, "/ready", None, None).await.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendars_and_sessions_survive_a_redis_restart_and_a_replica_cut_off_after_commit() {
    let mut redis = PrivateRedis::start().await;
    let one = app_on(&redis).await;
    let two = one.spawn_replica().await;
    let t = one.dev_login("restart").await;
    let (g, _) = one.create_group(&t.access, "재시작", None).await;
    let path = calendar_path(&one, g);
    let start = slot_after(one.clock.now(), Span::hours(1));

    // Both replicas cache the empty calendar, then the booking's calendar.
    for app in [&one, &two] {
        assert_eq!(rooms_seen(app, &path, &t.access).await, 0);
    }
    one.book(&t.access, g, start).await.assert_status(201);
    for app in [&one, &two] {
        assert_eq!(rooms_seen(app, &path, &t.access).await, 1);
    }

    // Redis restarts empty: no replica may fall back to its pre-booking entry.
    redis.restart_empty().await;
    for app in [&one, &two] {
        assert!(
            eventually(Duration::from_secs(10), || ready(app)).await,
            "ready again"
        );
        assert_eq!(
            rooms_seen(app, &path, &t.access).await,
            1,
            "the committed booking after Redis came back empty"
        );
    }
    // Login sessions live in the database: the refresh token still rotates, the access token works.
    let rotated = one.refresh(&t.refresh).await;
    rotated.assert_status(201);
    two.get("/api/v1/members", &t.access)
        .await
        .assert_status(200);

    // A third replica reaches Redis through a proxy that is cut: it books (the commit succeeds,
    // everything after it that needs Redis fails), and the other replicas still see it at once.
    // Its rate limits are off, so that Redis is needed only after the commit: the window in which
    // a replica used to die between commit and invalidation.
    let upstream: &'static str = Box::leak(format!("127.0.0.1:{}", redis.port).into_boxed_str());
    let proxy = TcpProxy::start(upstream).await;
    let proxied = format!("redis://127.0.0.1:{}", proxy.port);
    let three = one
        .spawn_replica_with(|s| {
            s.redis.url = proxied;
            s.limits.enabled = false;
        })
        .await;
    assert_eq!(rooms_seen(&three, &path, &t.access).await, 1);
    proxy.cut();
    let began = Instant::now();
    three
        .book(&t.access, g, start + Span::minutes(30))
        .await
        .assert_status(201);
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "booking without Redis took {:?}",
        began.elapsed()
    );
    for app in [&one, &two, &three] {
        assert_eq!(
            rooms_seen(app, &path, &t.access).await,
            2,
            "a replica cut off from Redis after its commit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_answers_fast_and_its_events_arrive_when_redis_returns() {
    let redis = PrivateRedis::start().await;
    let one = app_on(&redis).await;
    // Replica two has its rate limits off: its bookings need no Redis before they commit.
    let two = one.spawn_replica_with(|s| s.limits.enabled = false).await;
    let t = one.dev_login("stall").await;
    let (g, _) = one.create_group(&t.access, "멈춤", None).await;
    let path = calendar_path(&one, g);
    let start = slot_after(one.clock.now(), Span::hours(1));
    for app in [&one, &two] {
        assert_eq!(rooms_seen(app, &path, &t.access).await, 0);
    }
    let mut subscriber = StompJs::connect(&one, Some(&t.access), &[&format!("/topic/{g}")])
        .await
        .ready()
        .await;

    redis.pause();
    let timed = |what: &'static str, began: Instant| {
        let took = began.elapsed();
        assert!(took <= Duration::from_secs(1), "{what} took {took:?}");
    };
    // Rate-limited operations need Redis (their budgets are shared): a fast 503 in the envelope.
    let began = Instant::now();
    one.book(&t.access, g, start).await.assert_fail(503);
    timed("a rate-limited booking while Redis stalls", began);
    let began = Instant::now();
    two.book(&t.access, g, start).await.assert_status(201);
    timed("a booking while Redis stalls", began);
    for app in [&one, &two] {
        let began = Instant::now();
        assert_eq!(rooms_seen(app, &path, &t.access).await, 1);
        timed("a calendar read while Redis stalls", began);
        let began = Instant::now();
        let r = app.send(Method::GET, "/ready", None, None).await;
        timed("/ready while Redis stalls", began);
        r.assert_fail(503);
    }

    redis.resume();
    let event = subscriber.message().await;
    assert_eq!(
        event["startTime"],
        Value::from(local_string(start)),
        "{event}"
    );
    assert!(eventually(Duration::from_secs(10), || ready(&one)).await);
    for app in [&one, &two] {
        assert_eq!(rooms_seen(app, &path, &t.access).await, 1);
    }
    assert_eq!(two.metric("ppodok_api_realtime_publish_pending").await, 0.0);
    assert!(
        two.metric("ppodok_api_realtime_publish_retried_total")
            .await
            >= 1.0
    );
    subscriber.close().await;
}
