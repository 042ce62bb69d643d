//! Bad input of every kind gets a 4xx in the contract's envelope — never a 500 — and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

struct Raw<'a> {
    method: Method,
    path: &'a str,
    content_type: Option<&'a str>,
    body: Option<String>,
    auth: bool,
}

async fn send_raw(app: &TestApp, token: &str, r: Raw<'_>) -> (StatusCode, Value, Option<String>) {
    let mut req = app.http.request(r.method, app.url(r.path));
    if r.auth {
        req = req.bearer_auth(token);
    }
    if let Some(ct) = r.content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(b) = r.body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        ct,
    )
}

async fn bad_input_gets_the_documented_4xx_envelope(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("careless").await;
    let (g, _) = app.create_group(&t.access, "기존 그룹", None).await;
    let json_ct = Some("application/json");
    let long = |n: usize| "가".repeat(n);
    let cases: Vec<(&str, Raw, u16, Option<String>)> = vec![
        (
            "malformed JSON",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(r#"{"groupName": "#.into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "wrong type",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(r#"{"groupName": 5}"#.into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "missing field",
            Raw {
                method: Method::POST,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: Some(format!(r#"{{"groupId": {g}}}"#)),
                auth: true,
            },
            400,
            None,
        ),
        (
            "wrong type for id",
            Raw {
                method: Method::PATCH,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: Some(r#"{"todoId": "one"}"#.into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "not JSON at all",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: Some("text/plain"),
                body: Some("groupName=x".into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "no body",
            Raw {
                method: Method::POST,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: None,
                auth: true,
            },
            400,
            None,
        ),
        (
            "array instead of object",
            Raw {
                method: Method::DELETE,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some("[1]".into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "missing query param",
            Raw {
                method: Method::GET,
                path: "/api/v1/todos",
                content_type: None,
                body: None,
                auth: true,
            },
            400,
            None,
        ),
        (
            "wrong query type",
            Raw {
                method: Method::GET,
                path: "/api/v1/todos?groupId=abc",
                content_type: None,
                body: None,
                auth: true,
            },
            400,
            None,
        ),
        (
            "missing invite param",
            Raw {
                method: Method::GET,
                path: "/api/v1/groups/path",
                content_type: None,
                body: None,
                auth: true,
            },
            400,
            None,
        ),
        (
            "wrong path type",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups/abc",
                content_type: json_ct,
                body: Some("{}".into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "path id overflow",
            Raw {
                method: Method::GET,
                path: "/api/v1/members/99999999999999999999999",
                content_type: None,
                body: None,
                auth: true,
            },
            400,
            None,
        ),
        (
            "malformed optional join body",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups/1",
                content_type: json_ct,
                body: Some("{oops".into()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "blank group name",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(r#"{"groupName": "   ", "secret": false}"#.into()),
                auth: true,
            },
            400,
            Some("그룹 이름은 1자 이상 50자 이하로 입력해 주세요.".into()),
        ),
        (
            "oversize group name",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(json!({ "groupName": long(51) }).to_string()),
                auth: true,
            },
            400,
            Some("그룹 이름은 1자 이상 50자 이하로 입력해 주세요.".into()),
        ),
        (
            "secret group without password",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(json!({ "groupName": "s", "secret": true }).to_string()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "oversize password",
            Raw {
                method: Method::POST,
                path: "/api/v1/groups",
                content_type: json_ct,
                body: Some(
                    json!({ "groupName": "s", "secret": true, "password": "p".repeat(65) })
                        .to_string(),
                ),
                auth: true,
            },
            400,
            None,
        ),
        (
            "oversize todo",
            Raw {
                method: Method::POST,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: Some(json!({ "groupId": g, "content": long(256) }).to_string()),
                auth: true,
            },
            400,
            Some("할 일은 1자 이상 255자 이하로 입력해 주세요.".into()),
        ),
        (
            "blank todo",
            Raw {
                method: Method::POST,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: Some(json!({ "groupId": g, "content": " " }).to_string()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "oversize dev name",
            Raw {
                method: Method::POST,
                path: "/api/v1/members/dev-login",
                content_type: json_ct,
                body: Some(json!({ "name": long(31) }).to_string()),
                auth: false,
            },
            400,
            None,
        ),
        (
            "bad colour",
            Raw {
                method: Method::PATCH,
                path: "/api/v1/groups/color",
                content_type: json_ct,
                body: Some(json!({ "groupId": g, "color": "<script>" }).to_string()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "oversize fcm token",
            Raw {
                method: Method::POST,
                path: "/api/v1/clients",
                content_type: json_ct,
                body: Some(json!({ "fcmToken": "t".repeat(1001) }).to_string()),
                auth: true,
            },
            400,
            None,
        ),
        (
            "garbage invite code",
            Raw {
                method: Method::GET,
                path: "/api/v1/groups/path?path=..%2F..%2Fetc",
                content_type: None,
                body: None,
                auth: true,
            },
            400,
            Some("유효하지 않은 초대 코드입니다. : ../../etc".into()),
        ),
        (
            "body over the limit",
            Raw {
                method: Method::POST,
                path: "/api/v1/todos",
                content_type: json_ct,
                body: Some(json!({ "groupId": g, "content": "x".repeat(70_000) }).to_string()),
                auth: true,
            },
            413,
            None,
        ),
        (
            "unknown route",
            Raw {
                method: Method::GET,
                path: "/api/v1/nothing-here",
                content_type: None,
                body: None,
                auth: true,
            },
            404,
            Some("존재하지 않는 경로예요.".into()),
        ),
        (
            "unknown route, anonymous",
            Raw {
                method: Method::GET,
                path: "/admin",
                content_type: None,
                body: None,
                auth: false,
            },
            404,
            None,
        ),
        (
            "wrong method",
            Raw {
                method: Method::PUT,
                path: "/api/v1/groups",
                content_type: None,
                body: None,
                auth: true,
            },
            405,
            Some("허용되지 않은 메서드예요.".into()),
        ),
        (
            "wrong method, anonymous",
            Raw {
                method: Method::GET,
                path: "/api/v1/members/login",
                content_type: None,
                body: None,
                auth: false,
            },
            405,
            None,
        ),
        (
            "wrong method on health",
            Raw {
                method: Method::DELETE,
                path: "/health",
                content_type: None,
                body: None,
                auth: false,
            },
            405,
            None,
        ),
        (
            "wrong method on todos",
            Raw {
                method: Method::PUT,
                path: "/api/v1/todos",
                content_type: None,
                body: None,
                auth: true,
            },
            405,
            None,
        ),
    ];
    let groups_before = app.count("study_groups", "1 = 1").await;
    let todos_before = app.count("todos", "1 = 1").await;
    for (name, raw, status, message) in cases {
        let (got, body, content_type) = send_raw(&app, &t.access, raw).await;
        assert_eq!(got.as_u16(), status, "{name}: {body}");
        assert_eq!(body["code"], "fail", "{name}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
        assert!(
            content_type.is_some_and(|c| c.starts_with("application/json")),
            "{name}: content type"
        );
        if let Some(m) = message {
            assert_eq!(body["message"], m.as_str(), "{name}");
        }
    }
    assert_eq!(
        app.count("study_groups", "1 = 1").await,
        groups_before,
        "nothing half-written"
    );
    assert_eq!(
        app.count("todos", "1 = 1").await,
        todos_before,
        "nothing half-written"
    );
}

async fn secret_group_with_missing_password_body_is_a_400_not_a_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("keeper").await;
    let guest = app.dev_login("guest").await;
    let (g, _) = app
        .create_group(&owner.access, "잠긴 방", Some("letmein"))
        .await;
    let resp = app
        .http
        .post(app.url(&format!("/api/v1/groups/{g}")))
        .bearer_auth(&guest.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "비밀번호가 일치하지 않습니다.");
    app.join(&guest.access, g, None).await.assert_fail(400);
    app.send(
        Method::POST,
        "/api/v1/groups/987654",
        Some(&guest.access),
        None,
    )
    .await
    .assert_fail(404)
    .assert_message("존재하지 않는 그룹입니다. groupId: 987654");
}

on_both_backends!(
    non_object_bodies_are_refused,
    bad_input_gets_the_documented_4xx_envelope,
    secret_group_with_missing_password_body_is_a_400_not_a_500
);

/// A body that is not a JSON object (serde would read `[null]` as a struct's fields in order) is
/// a 400 in the envelope on every endpoint that takes a body, and changes nothing.
async fn non_object_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("array-body").await;
    let (g, _) = app.create_group(&t.access, "배열", None).await;
    let before = app.count("study_groups", "1 = 1").await;
    let endpoints: Vec<(Method, String)> = vec![
        (Method::POST, "/api/v1/members/dev-login".into()),
        (Method::POST, "/api/v1/groups".into()),
        (Method::PATCH, "/api/v1/groups".into()),
        (Method::PATCH, "/api/v1/groups/color".into()),
        (Method::DELETE, "/api/v1/groups".into()),
        (Method::POST, "/api/v1/groups/path".into()),
        (Method::POST, format!("/api/v1/groups/{g}")),
        (Method::POST, "/api/v1/todos".into()),
        (Method::PATCH, "/api/v1/todos".into()),
        (Method::POST, "/api/v1/clients".into()),
        (Method::PATCH, "/api/v1/members/settings".into()),
        (Method::POST, "/api/v1/rooms/reservations".into()),
        (Method::POST, "/api/v1/rooms/histories".into()),
        (Method::PATCH, "/api/v1/rooms/histories".into()),
        (Method::POST, "/api/v1/timers/start".into()),
    ];
    for (method, path) in endpoints {
        for body in [
            json!([null]),
            json!([g]),
            json!(["이름"]),
            json!(null),
            json!(7),
        ] {
            let r = app
                .send(method.clone(), &path, Some(&t.access), Some(body.clone()))
                .await;
            assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.body);
            assert_eq!(r.body["code"], "fail", "{method} {path} {body}");
        }
    }
    assert_eq!(app.count("study_groups", "1 = 1").await, before);
}

/// Every documented path answers a method it lacks with 405 in the envelope and an `Allow` header
/// naming exactly the methods the document declares for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_405_carries_allow() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app
        .http
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{} documented paths", paths.len());
    for (path, item) in paths {
        let documented: std::collections::BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
            .map(|k| k.to_uppercase())
            .collect();
        let missing = ["PUT", "DELETE", "PATCH", "GET"]
            .into_iter()
            .find(|m| !documented.contains(*m))
            .expect("some method is not documented");
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let resp = app
            .http
            .request(
                Method::from_bytes(missing.as_bytes()).unwrap(),
                app.url(&concrete),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{missing} {concrete}");
        let allow: std::collections::BTreeSet<String> = resp
            .headers()
            .get("Allow")
            .unwrap_or_else(|| panic!("{missing} {concrete}: no Allow"))
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        assert_eq!(allow, documented, "{concrete}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "fail", "{concrete}");
    }
}
