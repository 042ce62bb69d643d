//! Withdrawal: one transaction for the data, a durable outbox for the Kakao unlink.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{eventually, spawn_app, tokens_of, Backend, KakaoUser, KAKAO_ADMIN_KEY};
use crate::on_both_backends;

async fn withdrawal_cascades_in_one_go_and_unlink_is_retried_until_kakao_confirms(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let kakao_user = KakaoUser {
        id: 777_001,
        nickname: "떠나는이".into(),
        email: Some("bye@example.com".into()),
        image: None,
    };
    app.kakao.add_code("bye-1", kakao_user.clone());
    app.kakao.add_code("bye-2", kakao_user);
    let login = app
        .send(
            Method::POST,
            "/api/v1/members/login",
            None,
            Some(json!({ "authCode": "bye-1" })),
        )
        .await;
    login.assert_status(200);
    let leaver = tokens_of(&login);
    let leaver_id = app.member_id(&leaver.access).await;
    let stayer = app.dev_login("stayer").await;
    let stayer_id = app.member_id(&stayer.access).await;

    let (shared, _) = app.create_group(&leaver.access, "같이", None).await;
    app.join(&stayer.access, shared, None)
        .await
        .assert_status(201);
    let (alone, _) = app.create_group(&leaver.access, "혼자", None).await;
    app.post(
        "/api/v1/todos",
        &leaver.access,
        json!({ "groupId": shared, "content": "a" }),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/v1/todos",
        &leaver.access,
        json!({ "groupId": 1, "content": "b" }),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/v1/clients",
        &leaver.access,
        json!({ "fcmToken": "device-token" }),
    )
    .await
    .assert_status(201);
    app.kakao.state.lock().unwrap().failing_unlinks = 2;

    let r = app
        .send(
            Method::DELETE,
            "/api/v1/members",
            Some(&leaver.access),
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "resource.deleted");

    // At once: tokens dead, data gone, groups handed over or deleted.
    app.get("/api/v1/members", &leaver.access)
        .await
        .assert_fail(401);
    app.refresh(&leaver.refresh).await.assert_status(400);
    for (table, cond) in [
        ("memberships", format!("member_id = {leaver_id}")),
        ("ranks", format!("member_id = {leaver_id}")),
        ("todos", format!("member_id = {leaver_id}")),
        ("push_clients", format!("member_id = {leaver_id}")),
        ("study_groups", format!("id = {alone}")),
    ] {
        assert_eq!(app.count(table, &cond).await, 0, "{table} {cond}");
    }
    assert_eq!(
        app.count(
            "study_groups",
            &format!("id = {shared} AND owner_id = {stayer_id}")
        )
        .await,
        1
    );
    assert_eq!(
        app.count("members", &format!("id = {leaver_id} AND status = 'WITHDRAWN' AND provider_user_id IS NULL AND email IS NULL")).await,
        1
    );

    // Kakao fails twice; the outbox keeps trying until it confirms, exactly once.
    let delivered = eventually(Duration::from_secs(20), || async {
        !app.kakao.state.lock().unwrap().unlinked.is_empty()
    })
    .await;
    assert!(delivered, "unlink delivered");
    let outbox_empty = eventually(Duration::from_secs(5), || async {
        app.count("kakao_unlink_outbox", "1 = 1").await == 0
    })
    .await;
    assert!(outbox_empty, "outbox row removed after success");
    {
        let s = app.kakao.state.lock().unwrap();
        assert_eq!(s.unlinked, vec!["777001".to_owned()]);
        assert_eq!(s.unlink_calls.len(), 3, "two failures, one success");
        for (auth, form) in &s.unlink_calls {
            assert_eq!(auth, &format!("KakaoAK {KAKAO_ADMIN_KEY}"));
            assert_eq!(form["target_id_type"], "user_id");
            assert_eq!(form["target_id"], "777001");
        }
    }

    // Coming back later is a new account.
    let again = app
        .send(
            Method::POST,
            "/api/v1/members/login",
            None,
            Some(json!({ "authCode": "bye-2" })),
        )
        .await;
    again.assert_status(200);
    assert_ne!(app.member_id(&tokens_of(&again).access).await, leaver_id);
}

async fn withdrawal_survives_an_app_restart_before_kakao_answers(backend: Backend) {
    // The unlink row is written in the withdrawal's transaction, so a new process delivers it.
    let app = spawn_app(backend).await;
    app.kakao.add_code(
        "restart",
        KakaoUser {
            id: 555,
            nickname: "r".into(),
            email: None,
            image: None,
        },
    );
    let t = tokens_of(
        &app.send(
            Method::POST,
            "/api/v1/members/login",
            None,
            Some(json!({ "authCode": "restart" })),
        )
        .await,
    );
    app.kakao.state.lock().unwrap().failing_unlinks = 1_000_000;
    app.send(Method::DELETE, "/api/v1/members", Some(&t.access), None)
        .await
        .assert_status(200);
    assert_eq!(
        app.count("kakao_unlink_outbox", "kakao_user_id = '555'")
            .await,
        1
    );

    // A second process on the same database and a healthy Kakao.
    let healthy = crate::helpers::KakaoMock::start().await;
    let settings = app.store.settings(&healthy);
    let second = ppodok_api::startup::Application::build(settings)
        .await
        .unwrap();
    tokio::spawn(second.run_until_stopped());
    let delivered = eventually(Duration::from_secs(20), || async {
        healthy.state.lock().unwrap().unlinked == vec!["555".to_owned()]
    })
    .await;
    assert!(delivered);
}

on_both_backends!(
    withdrawal_cascades_in_one_go_and_unlink_is_retried_until_kakao_confirms,
    withdrawal_survives_an_app_restart_before_kakao_answers,
);
