//! Health, readiness, metrics and the OpenAPI document.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{mysql_admin_url, spawn_app, spawn_app_with, Backend, TcpProxy};
use crate::on_both_backends;

async fn health_metrics_and_openapi(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.send(Method::GET, "/health", None, None).await;
    r.assert_status(200);
    assert_eq!(
        r.body,
        json!({ "data": null, "message": "성공", "code": "success" })
    );
    app.send(Method::GET, "/ready", None, None)
        .await
        .assert_status(200);

    let t = app.dev_login("counted").await;
    let (g, _) = app.create_group(&t.access, "측정", None).await;
    app.join(&t.access, g, None).await.assert_status(201);
    app.send(Method::GET, "/api/v1/groups", None, None)
        .await
        .assert_fail(401);
    app.send(Method::GET, "/no/such/route", None, None)
        .await
        .assert_fail(404);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"ppodok_api_http_requests_total{method="POST",route="/api/v1/groups",status="201"} 1"#,
        r#"ppodok_api_http_requests_total{method="POST",route="/api/v1/groups/{groupId}",status="201"} 1"#,
        r#"ppodok_api_http_requests_total{method="GET",route="/api/v1/groups",status="401"} 1"#,
        r#"ppodok_api_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"ppodok_api_http_requests_total{method="POST",route="/api/v1/members/dev-login",status="200"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert!(metrics.contains("ppodok_api_http_request_duration_seconds_bucket"));
    assert!(metrics.contains(r#"ppodok_api_db_pool_connections{state="open"}"#));

    let doc: serde_json::Value = app
        .http
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/members/login",
        "/api/v1/members/tokens",
        "/api/v1/members",
        "/api/v1/groups",
        "/api/v1/groups/{groupId}",
        "/api/v1/groups/path",
        "/api/v1/groups/color",
        "/api/v1/groups/all",
        "/api/v1/todos",
        "/api/v1/clients",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let ui = app.http.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}

/// `/ready` turns 503 when MariaDB becomes unreachable, while `/health` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_when_the_database_is_unreachable() {
    let proxy = TcpProxy::start("127.0.0.1:3306").await;
    let app = spawn_app_with(Backend::MariaDb, |s| {
        let schema = s.database.url.rsplit('/').next().unwrap().to_owned();
        let admin = mysql_admin_url();
        let host_part = admin.trim_start_matches("mysql://");
        let user = host_part.split('@').next().unwrap();
        s.database.url = format!("mysql://{user}@127.0.0.1:{}/{schema}", proxy.port);
    })
    .await;
    app.send(Method::GET, "/ready", None, None)
        .await
        .assert_status(200);
    assert_dependency(&app, "database", 1.0).await;
    proxy.cut();
    let r = app.send(Method::GET, "/ready", None, None).await;
    r.assert_fail(503);
    app.send(Method::GET, "/health", None, None)
        .await
        .assert_status(200);
    // What the deploy kit's `PpodokDatabaseUnreachable` alert reads.
    assert_dependency(&app, "database", 0.0).await;
}

/// `/ready` turns 503 when Redis is configured but unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_when_redis_is_unreachable() {
    let proxy = TcpProxy::start("127.0.0.1:6379").await;
    let port = proxy.port;
    let app = spawn_app_with(Backend::MariaDb, move |s| {
        s.redis.url = format!("redis://127.0.0.1:{port}")
    })
    .await;
    app.send(Method::GET, "/ready", None, None)
        .await
        .assert_status(200);
    assert_dependency(&app, "redis", 1.0).await;
    proxy.cut();
    app.send(Method::GET, "/ready", None, None)
        .await
        .assert_fail(503);
    assert_dependency(&app, "redis", 0.0).await;
    assert_dependency(&app, "database", 1.0).await;
}

/// `/metrics` samples the dependency at scrape time: `ppodok_api_dependency_up{dependency} 0|1`.
async fn assert_dependency(app: &crate::helpers::TestApp, dependency: &str, want: f64) {
    let series = format!("ppodok_api_dependency_up{{dependency=\"{dependency}\"}}");
    assert_eq!(app.metric(&series).await, want, "{series}");
}

on_both_backends!(health_metrics_and_openapi);
