//! Sign-in, token rotation, sessions per device, logout and token kinds.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, tokens_of, Backend, KakaoUser};
use crate::on_both_backends;

async fn refresh_rotation_returns_a_working_pair_and_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.dev_login("rotator").await;

    let r = app.refresh(&first.refresh).await;
    r.assert_status(201);
    assert_eq!(r.body["code"], "success");
    let second = tokens_of(&r);
    assert_ne!(second.refresh, first.refresh);
    // The returned pair is the stored one: it works, for access and for the next refresh.
    app.get("/api/v1/members", &second.access)
        .await
        .assert_status(200);

    // Replaying the rotated token is theft or a bug: it fails and kills the whole family.
    app.refresh(&first.refresh)
        .await
        .assert_status(400)
        .assert_message("로그인이 필요해요.");
    assert_eq!(
        app.refresh(&first.refresh).await.body["code"],
        "INVALID REFRESH TOKEN"
    );
    app.refresh(&second.refresh).await.assert_status(400);
    app.get("/api/v1/members", &second.access)
        .await
        .assert_fail(401);
    app.get("/api/v1/members", &first.access)
        .await
        .assert_fail(401);
}

async fn rotation_chain_keeps_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut t = app.dev_login("chain").await;
    for _ in 0..5 {
        let r = app.refresh(&t.refresh).await;
        r.assert_status(201);
        t = tokens_of(&r);
        app.get("/api/v1/members", &t.access)
            .await
            .assert_status(200);
    }
}

async fn two_devices_keep_independent_sessions_and_logout_revokes_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let phone = app.dev_login("two-devices").await;
    let laptop = app.dev_login("two-devices").await;
    assert_eq!(
        app.member_id(&phone.access).await,
        app.member_id(&laptop.access).await
    );

    // Rotating on one device leaves the other alone.
    let phone2 = tokens_of(&app.refresh(&phone.refresh).await);
    let laptop2 = tokens_of(&app.refresh(&laptop.refresh).await);
    // A reuse on the phone revokes the phone's family only.
    app.refresh(&phone.refresh).await.assert_status(400);
    app.get("/api/v1/members", &phone2.access)
        .await
        .assert_fail(401);
    app.get("/api/v1/members", &laptop2.access)
        .await
        .assert_status(200);

    // Logout on the laptop ends that session: access and refresh both stop working.
    let r = app
        .send(
            Method::POST,
            "/api/v1/members/logout",
            Some(&laptop2.access),
            None,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["data"], serde_json::Value::Null);
    app.get("/api/v1/members", &laptop2.access)
        .await
        .assert_fail(401);
    app.refresh(&laptop2.refresh).await.assert_status(400);

    // A new login still works.
    let again = app.dev_login("two-devices").await;
    app.get("/api/v1/members", &again.access)
        .await
        .assert_status(200);
}

async fn token_kinds_never_stand_in_for_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("kinds").await;
    app.get("/api/v1/members", &t.refresh)
        .await
        .assert_fail(401)
        .assert_message("인증이 필요해요.");
    let r = app.refresh(&t.access).await;
    r.assert_status(400);
    assert_eq!(r.body["code"], "INVALID REFRESH TOKEN");
    app.refresh("garbage").await.assert_status(400);
    // No header at all.
    app.send(Method::POST, "/api/v1/members/tokens", None, None)
        .await
        .assert_fail(400);
}

async fn kakao_login_creates_the_account_once_and_joins_the_default_group(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = KakaoUser {
        id: 310_001,
        nickname: "민지".into(),
        email: Some("minji@example.com".into()),
        image: Some("https://k.kakaocdn.net/minji.png".into()),
    };
    app.kakao.add_code("code-a", user.clone());
    app.kakao.add_code("code-b", user);

    // The old client sends `Bearer undefined` at login: a public endpoint ignores it.
    let resp = app
        .http
        .post(app.url("/api/v1/members/login"))
        .header("Authorization", "Bearer undefined")
        .json(&json!({ "authCode": "code-a" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "success");
    assert_eq!(body["message"], "성공");
    let access = body["data"]["accessToken"].as_str().unwrap().to_owned();

    let me = app.get("/api/v1/members", &access).await;
    me.assert_status(200);
    assert_eq!(me.data()["name"], "민지");
    assert_eq!(me.data()["email"], "minji@example.com");
    assert_eq!(me.data()["profile"], "https://k.kakaocdn.net/minji.png");
    assert_eq!(me.data()["duration"], serde_json::Value::Null);
    let groups = app.get("/api/v1/groups", &access).await;
    assert_eq!(
        groups.data()[0]["groupId"],
        1,
        "new members start in the default group"
    );

    {
        let s = app.kakao.state.lock().unwrap();
        let form = &s.token_requests[0];
        assert_eq!(form["grant_type"], "authorization_code");
        assert_eq!(form["client_id"], crate::helpers::KAKAO_REST_KEY);
        assert_eq!(form["code"], "code-a");
        assert!(form.contains_key("redirect_uri"));
    }

    let r = app
        .send(
            Method::POST,
            "/api/v1/members/login",
            None,
            Some(json!({ "authCode": "code-b" })),
        )
        .await;
    r.assert_status(200);
    let again = tokens_of(&r);
    assert_eq!(
        app.member_id(&again.access).await,
        me.data()["memberId"].as_i64().unwrap()
    );
    assert_eq!(app.count("members", "provider = 'kakao'").await, 1);
}

async fn kakao_refusal_is_a_400_and_outage_a_502(backend: Backend) {
    let app = spawn_app(backend).await;
    app.send(
        Method::POST,
        "/api/v1/members/login",
        None,
        Some(json!({ "authCode": "unknown" })),
    )
    .await
    .assert_fail(400)
    .assert_message("카카오 로그인에 실패했어요.");
    app.kakao.state.lock().unwrap().down = true;
    app.kakao.add_code(
        "code-x",
        KakaoUser {
            id: 9,
            nickname: "x".into(),
            email: None,
            image: None,
        },
    );
    let r = app
        .send(
            Method::POST,
            "/api/v1/members/login",
            None,
            Some(json!({ "authCode": "code-x" })),
        )
        .await;
    r.assert_fail(502);
    assert!(
        !r.body.to_string().contains("maintenance"),
        "upstream bodies are not echoed"
    );
    app.send(
        Method::POST,
        "/api/v1/members/login",
        None,
        Some(json!({ "authCode": "" })),
    )
    .await
    .assert_fail(400);
    assert_eq!(app.count("members", "1 = 1").await, 0);
}

async fn dev_login_does_not_exist_when_disabled(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.dev_login = false).await;
    app.send(
        Method::POST,
        "/api/v1/members/dev-login",
        None,
        Some(json!({ "name": "x" })),
    )
    .await
    .assert_fail(404);
}

async fn bad_authorization_headers_are_ignored_on_public_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("header").await;
    let mut refresh = t.refresh.clone();
    for header in [
        "Bearer undefined",
        "Bearer",
        "Basic Zm9vOmJhcg==",
        "bearer x.y.z",
    ] {
        let resp = app
            .http
            .get(app.url("/health"))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{header}");
        let resp = app
            .http
            .post(app.url("/api/v1/members/tokens"))
            .header("Authorization", header)
            .header("X-BBODOK-REFRESH-TOKEN", &refresh)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{header}");
        let body: serde_json::Value = resp.json().await.unwrap();
        refresh = body["data"]["refreshToken"].as_str().unwrap().to_owned();
    }
    // The scheme is case-insensitive on protected endpoints too.
    let resp = app
        .http
        .get(app.url("/api/v1/members"))
        .header("Authorization", format!("bearer {}", t.access))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

on_both_backends!(
    refresh_rotation_returns_a_working_pair_and_reuse_revokes_the_family,
    rotation_chain_keeps_working,
    two_devices_keep_independent_sessions_and_logout_revokes_one,
    token_kinds_never_stand_in_for_each_other,
    kakao_login_creates_the_account_once_and_joins_the_default_group,
    kakao_refusal_is_a_400_and_outage_a_502,
    dev_login_does_not_exist_when_disabled,
    bad_authorization_headers_are_ignored_on_public_endpoints,
);
