//! Per-member caps: todos (a clear 400, not an unbounded list) and open STOMP sessions (an ERROR
//! frame beyond the cap; a closed session frees its place).

use serde_json::json;

use crate::helpers::{spawn_app_with, Backend};
use crate::on_both_backends;
use crate::stomp_support::RawStomp;

async fn todos_per_member_are_capped(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.todos_per_member = 3).await;
    let t = app.dev_login("할일왕").await;
    let (g, _) = app.create_group(&t.access, "할일", None).await;
    let mut ids = Vec::new();
    for (i, group) in [1, g, g].into_iter().enumerate() {
        let r = app
            .post(
                "/api/v1/todos",
                &t.access,
                json!({ "groupId": group, "content": format!("할 일 {i}") }),
            )
            .await;
        r.assert_status(201);
        ids.push(r.data()["todoId"].as_i64().unwrap());
    }
    app.post(
        "/api/v1/todos",
        &t.access,
        json!({ "groupId": g, "content": "하나 더" }),
    )
    .await
    .assert_fail(400)
    .assert_message("할 일은 3개까지 만들 수 있어요.");
    let member = app.member_id(&t.access).await;
    assert_eq!(
        app.count("todos", &format!("member_id = {member}")).await,
        3
    );
    // Deleting one makes room again.
    app.delete("/api/v1/todos", &t.access, json!({ "todoId": ids[0] }))
        .await
        .assert_status(200);
    app.post(
        "/api/v1/todos",
        &t.access,
        json!({ "groupId": g, "content": "이제 돼요" }),
    )
    .await
    .assert_status(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_sessions_per_member_are_capped() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.limits.stomp_sessions_per_member = 2).await;
    let t = app.dev_login("탭부자").await;
    let other = app.dev_login("다른사람").await;
    let first = RawStomp::connect(&app, &t.access).await;
    let _second = RawStomp::connect(&app, &t.access).await;
    let mut third = RawStomp::open(&app).await;
    third
        .send_text(&format!(
            "CONNECT\naccept-version:1.2\nheart-beat:0,0\nAuthorization:Bearer {}\n\n\0",
            t.access
        ))
        .await;
    // The handshake completes, then the session is refused and closed.
    let connected = third.frame().await.expect("CONNECTED");
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    third
        .expect_error("동시에 열 수 있는 실시간 연결 수를 넘었어요.")
        .await;
    // Someone else is not affected, and closing a session frees a place.
    let _others = RawStomp::connect(&app, &other.access).await;
    drop(first);
    let freed = crate::helpers::eventually(std::time::Duration::from_secs(5), || async {
        app.metric("ppodok_api_stomp_sessions").await <= 2.0
    })
    .await;
    assert!(freed, "the closed session is gone");
    let _again = RawStomp::connect(&app, &t.access).await;
}

/// A member who left a group stops appearing on its topics: their timer, started in the group
/// before they left, is no longer announced there.
async fn a_leavers_timer_is_not_announced_to_the_group(backend: Backend) {
    let app = crate::helpers::spawn_app(backend).await;
    let owner = app.dev_login("남는사람").await;
    let leaver = app.dev_login("떠나는사람").await;
    let owner_id = app.member_id(&owner.access).await;
    let (g, _) = app.create_group(&owner.access, "타이머", None).await;
    app.join(&leaver.access, g, None).await.assert_status(201);
    app.post(
        "/api/v1/timers/start",
        &leaver.access,
        json!({ "groupId": g }),
    )
    .await
    .assert_status(201);
    let topic = format!("/topic/{g}/timers");
    let mut watcher = crate::stomp_support::StompJs::connect(&app, Some(&owner.access), &[&topic])
        .await
        .ready()
        .await;
    app.delete("/api/v1/groups", &leaver.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    app.post("/api/v1/timers/pause", &leaver.access, json!({}))
        .await
        .assert_status(200);
    // The next message on the topic is the owner's own start, not the leaver's pause.
    app.post(
        "/api/v1/timers/start",
        &owner.access,
        json!({ "groupId": g }),
    )
    .await
    .assert_status(201);
    let message = watcher.message().await;
    assert_eq!(message["memberId"], owner_id, "{message}");
    watcher.close().await;
}

on_both_backends!(
    todos_per_member_are_capped,
    a_leavers_timer_is_not_announced_to_the_group,
);
