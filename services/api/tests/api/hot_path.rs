//! The authenticated read path: sessions checked in process and still ended everywhere within a
//! second (also across a Redis restart or a replica cut off from Redis), membership exact at
//! once, cached calendar bytes equal to a fresh render, readers served during a write on SQLite,
//! and the statement/round-trip budget of a cached read.

use std::time::{Duration, Instant};

use chrono::Duration as Span;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use serde_json::json;

use crate::helpers::{
    local_string, slot_after, spawn_app, spawn_app_with, Backend, PrivateRedis, TcpProxy, TestApp,
};
use crate::on_both_backends;

/// The bound the service promises for revocations on other replicas.
const BOUND: Duration = Duration::from_secs(1);

/// Polls `GET /api/v1/members` on `app` with `token` until it answers 401; the time it took.
async fn refused_within(app: &TestApp, token: &str, what: &str) -> Duration {
    let began = Instant::now();
    loop {
        let status = app.get("/api/v1/members", token).await.status.as_u16();
        if status == 401 {
            return began.elapsed();
        }
        assert_eq!(status, 200, "{what}: unexpected status");
        assert!(
            began.elapsed() <= BOUND,
            "{what}: still honoured after {:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the calendar at `path` on `app` with `token` until it answers 403; the time it took.
async fn calendar_refused_within(app: &TestApp, path: &str, token: &str, what: &str) -> Duration {
    let began = Instant::now();
    loop {
        let status = app.get(path, token).await.status.as_u16();
        if status == 403 {
            return began.elapsed();
        }
        assert_eq!(status, 200, "{what}: unexpected status");
        assert!(
            began.elapsed() <= BOUND,
            "{what}: still served after {:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accepted(app: &TestApp, token: &str) {
    app.get("/api/v1/members", token).await.assert_status(200);
}

fn calendar_path(g: i64, start: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "/api/v1/rooms?groupId={g}&from={}&to={}",
        local_string(start - Span::hours(1)),
        local_string(start + Span::days(1))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_reuse_and_withdrawal_end_access_on_the_other_replica_within_a_second() {
    let one = spawn_app(Backend::MariaDb).await;
    let two = one.spawn_replica().await;

    // Logout on one; the session was live (and cached) on two.
    let a = one.dev_login("hot-logout").await;
    accepted(&two, &a.access).await;
    accepted(&two, &a.access).await;
    one.post("/api/v1/members/logout", &a.access, json!({}))
        .await
        .assert_status(200);
    // At once on the replica that logged out.
    one.get("/api/v1/members", &a.access)
        .await
        .assert_status(401);
    let took = refused_within(&two, &a.access, "logged-out session").await;
    eprintln!("logout reached the other replica in {took:?}");

    // A refresh token presented twice revokes its family, on every replica.
    let b = one.dev_login("hot-reuse").await;
    let rotated = one.refresh(&b.refresh).await;
    rotated.assert_status(201);
    let b2 = crate::helpers::tokens_of(&rotated);
    accepted(&two, &b2.access).await;
    one.refresh(&b.refresh).await.assert_status(400);
    refused_within(&two, &b2.access, "reused refresh family").await;
    two.refresh(&b2.refresh).await.assert_status(400);

    // Withdrawal.
    let c = one.dev_login("hot-withdraw").await;
    accepted(&two, &c.access).await;
    one.delete("/api/v1/members", &c.access, json!({}))
        .await
        .assert_status(200);
    refused_within(&two, &c.access, "withdrawn member").await;

    // An edit of the member reaches the other replica's cached copy too.
    let d = one.dev_login("hot-edit").await;
    accepted(&two, &d.access).await;
    let before = two.get("/api/v1/members/settings", &d.access).await;
    before.assert_status(200);
    one.patch(
        "/api/v1/members/settings",
        &d.access,
        json!({ "timeZone": "Europe/Paris" }),
    )
    .await
    .assert_status(200);
    let began = Instant::now();
    loop {
        let r = two.get("/api/v1/members/settings", &d.access).await;
        r.assert_status(200);
        if r.body.to_string().contains("Europe/Paris") {
            break;
        }
        assert!(began.elapsed() <= BOUND, "edit not seen: {}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_revoked_session_is_honoured_across_a_redis_restart_or_a_replica_cut_off_from_redis() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let one = spawn_app_with(Backend::MariaDb, move |s| {
        s.redis.url = url;
        s.jobs.enabled = false;
        s.limits.enabled = false;
    })
    .await;
    let two = one.spawn_replica().await;
    // A third replica whose Redis connection goes through a proxy the test cuts: it misses every
    // message published while cut off.
    let upstream: &'static str = Box::leak(format!("127.0.0.1:{}", redis.port).into_boxed_str());
    let proxy = TcpProxy::start(upstream).await;
    let proxied = format!("redis://127.0.0.1:{}", proxy.port);
    let three = one.spawn_replica_with(|s| s.redis.url = proxied).await;

    let a = one.dev_login("restart-a").await;
    let b = one.dev_login("restart-b").await;
    for app in [&two, &three] {
        accepted(app, &a.access).await;
        accepted(app, &b.access).await;
    }
    // A member whose membership is known to every replica's group view.
    let owner = one.dev_login("restart-owner").await;
    let leaver = one.dev_login("restart-leaver").await;
    let (g, _) = one.create_group(&owner.access, "끊김", None).await;
    one.join(&leaver.access, g, None).await.assert_status(201);
    let path = calendar_path(g, slot_after(one.clock.now(), Span::hours(1)));
    for app in [&one, &two, &three] {
        for _ in 0..2 {
            app.get(&path, &leaver.access).await.assert_status(200);
        }
    }

    // Revoked while the third replica is cut off from Redis.
    proxy.cut();
    one.post("/api/v1/members/logout", &a.access, json!({}))
        .await
        .assert_status(200);
    refused_within(&three, &a.access, "revoked while cut off from Redis").await;
    refused_within(&two, &a.access, "revoked, Redis up").await;
    // A leave the third replica never hears of: its sync drops the group within the bound.
    one.delete("/api/v1/groups", &leaver.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    one.get(&path, &leaver.access).await.assert_fail(403);
    calendar_refused_within(&two, &path, &leaver.access, "left, Redis up").await;
    calendar_refused_within(&three, &path, &leaver.access, "left while cut off").await;

    // Revoked while Redis is down, then Redis comes back empty.
    redis.pause();
    one.post("/api/v1/members/logout", &b.access, json!({}))
        .await
        .assert_status(200);
    for app in [&two, &three] {
        refused_within(app, &b.access, "revoked while Redis is down").await;
    }
    redis.resume();
    redis.restart_empty().await;
    for app in [&one, &two, &three] {
        for token in [&a.access, &b.access] {
            app.get("/api/v1/members", token).await.assert_status(401);
        }
    }
    // A session opened after the restart works everywhere.
    let c = two.dev_login("restart-c").await;
    for app in [&one, &two, &three] {
        accepted(app, &c.access).await;
    }
}

/// At once on the replica that served the leave; on another replica within the bound (by the
/// replica bus with Redis, by the group view's sync without it).
async fn a_member_who_left_is_refused_the_calendar_at_once(backend: Backend) {
    let one = spawn_app(backend).await;
    let owner = one.dev_login("left-owner").await;
    let guest = one.dev_login("left-guest").await;
    let (g, _) = one.create_group(&owner.access, "떠남", None).await;
    one.join(&guest.access, g, None).await.assert_status(201);
    let start = slot_after(one.clock.now(), Span::hours(1));
    one.book(&owner.access, g, start).await.assert_status(201);
    let path = calendar_path(g, start);
    // Replicas share the database; with Redis they also share the cache.
    let two = one.spawn_replica().await;
    for app in [&one, &two] {
        for _ in 0..2 {
            app.get(&path, &guest.access).await.assert_status(200);
        }
    }
    one.delete("/api/v1/groups", &guest.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    one.get(&path, &guest.access).await.assert_fail(403);
    calendar_refused_within(&two, &path, &guest.access, "left on the other replica").await;
    for app in [&one, &two] {
        app.get(&path, &guest.access).await.assert_fail(403);
        app.get(&path, &owner.access).await.assert_status(200);
    }
    // Joining again is seen at once everywhere (refusals are never kept).
    one.join(&guest.access, g, None).await.assert_status(201);
    for app in [&one, &two] {
        app.get(&path, &guest.access).await.assert_status(200);
    }
    // So is a withdrawal on the replica that served it (and its sessions end everywhere).
    one.delete("/api/v1/members", &guest.access, json!({}))
        .await
        .assert_status(200);
    one.get(&path, &guest.access).await.assert_fail(401);
}

/// The calendar body served from the cache, and a fresh render of the same rooms at the same
/// instant (`/rooms/all` renders each room afresh; the member booked all the group's rooms).
async fn cached_and_fresh(
    app: &TestApp,
    token: &str,
    g: i64,
    start: chrono::DateTime<chrono::Utc>,
) -> (String, String) {
    let from = local_string(start - Span::hours(1));
    let to = local_string(start + Span::days(1));
    let hits = app.metric("ppodok_api_calendar_cache_hits_total").await;
    let cached = app
        .http
        .get(app.url(&calendar_path(g, start)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 200);
    assert_eq!(
        cached.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let cached = cached.text().await.unwrap();
    assert_eq!(
        app.metric("ppodok_api_calendar_cache_hits_total").await,
        hits + 1.0,
        "served from the cache"
    );
    let fresh = app
        .http
        .get(app.url(&format!("/api/v1/rooms/all?from={from}&to={to}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (cached, fresh)
}

async fn cached_calendar_bytes_equal_a_fresh_render_across_slot_boundaries(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jobs.enabled = false).await;
    let t = app.dev_login("bytes").await;
    let (g, _) = app.create_group(&t.access, "바이트", None).await;
    let start = slot_after(app.clock.now(), Span::hours(1));
    for k in 0..3 {
        app.book(&t.access, g, start + Span::minutes(30 * k))
            .await
            .assert_status(201);
    }
    // Fill the cache.
    app.get(&calendar_path(g, start), &t.access)
        .await
        .assert_status(200);
    let instants = [
        (Span::minutes(-5), "before"),
        (Span::milliseconds(1), "study"),
        (Span::minutes(12) + Span::milliseconds(345), "study"),
        (Span::minutes(25), "break"),
        (Span::minutes(29) + Span::seconds(59), "break"),
        (Span::minutes(30), "ended"),
        (Span::minutes(95), "ended"),
        // The clock may go back too.
        (Span::minutes(2), "study"),
    ];
    for (offset, first_phase) in instants {
        app.clock.set(start + offset);
        let (cached, fresh) = cached_and_fresh(&app, &t.access, g, start).await;
        assert_eq!(cached, fresh, "at start {offset}");
        let parsed: serde_json::Value = serde_json::from_str(&cached).unwrap();
        assert_eq!(parsed["data"].as_array().unwrap().len(), 3);
        assert_eq!(parsed["data"][0]["phase"], first_phase, "at start {offset}");
        assert_eq!(
            parsed["data"][0]["serverTime"],
            local_string(start + offset),
            "serverTime is exact"
        );
    }
}

/// The statement and round-trip budget of the hot path, counted by the service itself:
/// `GET /api/v1/members` runs no SQL and no Redis command once the session is in the view; a
/// cached calendar read runs none either once the group view knows the member (the views' syncs
/// run on an uncounted handle; here they are set far apart so none runs during the count, and
/// the push worker, whose passes every booking wakes, is off). A
/// booking puts the next read back to one statement, and the read after it to none.
async fn cached_reads_run_no_statement_and_no_redis_command(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jobs.enabled = false;
        s.push.enabled = false;
        s.auth.session_sync_millis = 600_000;
        s.auth.session_max_staleness_millis = 1_200_000;
    })
    .await;
    let t = app.dev_login("budget").await;
    let (g, _) = app.create_group(&t.access, "예산", None).await;
    let start = slot_after(app.clock.now(), Span::hours(1));
    app.book(&t.access, g, start).await.assert_status(201);
    let path = calendar_path(g, start);
    accepted(&app, &t.access).await;
    app.get(&path, &t.access).await.assert_status(200);

    let statements = app.metric("ppodok_api_db_statements_total").await;
    let redis = app.metric("ppodok_api_redis_commands_total").await;
    for _ in 0..20 {
        accepted(&app, &t.access).await;
    }
    assert_eq!(
        app.metric("ppodok_api_db_statements_total").await - statements,
        0.0,
        "GET /api/v1/members runs no SQL"
    );
    for _ in 0..20 {
        app.get(&path, &t.access).await.assert_status(200);
    }
    assert_eq!(
        app.metric("ppodok_api_db_statements_total").await - statements,
        0.0,
        "a cached calendar read runs no SQL"
    );
    assert_eq!(
        app.metric("ppodok_api_redis_commands_total").await - redis,
        0.0,
        "no Redis round trip on the hot path"
    );

    // A booking forgets the group here at once: the next read asks the database once (and
    // computes the new calendar), the one after is a hit again.
    app.book(&t.access, g, start + Span::minutes(30))
        .await
        .assert_status(201);
    let seen = app.get(&path, &t.access).await;
    assert_eq!(
        seen.data().as_array().unwrap().len(),
        2,
        "the booking is seen"
    );
    let statements = app.metric("ppodok_api_db_statements_total").await;
    for _ in 0..5 {
        app.get(&path, &t.access).await.assert_status(200);
    }
    assert_eq!(
        app.metric("ppodok_api_db_statements_total").await - statements,
        0.0,
        "hits again after the change"
    );
}

/// SQLite: a write transaction held open (by another connection, so the service's writer waits
/// on its lock in the middle of a logout) does not hold up readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serves_readers_while_a_write_transaction_is_open() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.jobs.enabled = false).await;
    let t = app.dev_login("wal").await;
    let (g, _) = app.create_group(&t.access, "동시", None).await;
    let start = slot_after(app.clock.now(), Span::hours(1));
    let path = calendar_path(g, start);
    app.get(&path, &t.access).await.assert_status(200);

    let other = app.dev_login("wal-other").await;
    accepted(&app, &other.access).await;
    let holder = Database::connect(app.store.database_url.clone())
        .await
        .unwrap();
    let txn = holder.begin().await.unwrap();
    txn.execute_unprepared("UPDATE study_groups SET name = name")
        .await
        .unwrap();

    // A logout: its transaction takes the service's writer, and its first statement (a write)
    // waits for the lock. (The session itself is checked in process, not on the writer.)
    let logout = {
        let http = app.http.clone();
        let url = app.url("/api/v1/members/logout");
        let token = other.access.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let writer_busy = crate::helpers::eventually(Duration::from_secs(5), || async {
        let raw = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        raw.lines()
            .any(|l| l.starts_with("ppodok_api_db_pool_connections{state=\"idle\"} 0"))
    })
    .await;
    assert!(writer_busy, "the logout holds the writer");

    // Readers: the calendar (from the views, no SQL once known) and my rooms (the reader pool).
    let began = Instant::now();
    app.get(&path, &t.access).await.assert_status(200);
    app.get(
        &format!(
            "/api/v1/rooms/all?from={}&to={}",
            local_string(start - Span::hours(1)),
            local_string(start + Span::days(1))
        ),
        &t.access,
    )
    .await
    .assert_status(200);
    let read_took = began.elapsed();
    if logout.is_finished() {
        panic!(
            "the logout did not wait for the lock: {}",
            logout.await.unwrap()
        );
    }
    assert!(
        read_took < Duration::from_secs(1),
        "reads took {read_took:?}"
    );

    txn.rollback().await.unwrap();
    assert_eq!(logout.await.unwrap(), 200);
    app.get("/api/v1/members", &other.access)
        .await
        .assert_status(401);
    app.get("/api/v1/members", &t.access)
        .await
        .assert_status(200);
}

on_both_backends!(
    a_member_who_left_is_refused_the_calendar_at_once,
    cached_calendar_bytes_equal_a_fresh_render_across_slot_boundaries,
    cached_reads_run_no_statement_and_no_redis_command,
);
