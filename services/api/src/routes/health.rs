//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{http::header::ContentType, web, HttpResponse};

use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Readiness answers within a second whatever is down (the load balancer's probe budget).
const READY_TIMEOUT: Duration = Duration::from_millis(800);

/// Liveness (the load balancer's health check): 200 with `data: null` while the process serves.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn health() -> HttpResponse {
    envelope::ok(())
}

/// Readiness: 200 when the database (and Redis, when configured) answer; 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn ready(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let (db_ok, redis_ok) = check_dependencies(&state).await;
    let redis_ok = redis_ok.unwrap_or(true);
    if db_ok && redis_ok {
        Ok(envelope::ok(()))
    } else {
        tracing::warn!(db_ok, redis_ok, "not ready");
        Err(ApiError::Unavailable)
    }
}

/// Whether the database and Redis answer within the readiness timeout (`None`: no Redis configured).
async fn check_dependencies(state: &AppState) -> (bool, Option<bool>) {
    let db = async {
        matches!(
            tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await,
            Ok(Ok(()))
        )
    };
    let redis = async {
        match &state.redis {
            None => None,
            Some(link) => Some(matches!(
                tokio::time::timeout(READY_TIMEOUT, link.ping()).await,
                Ok(true)
            )),
        }
    };
    tokio::join!(db, redis)
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (db_ok, redis_ok) = check_dependencies(&state).await;
    state.metrics.set_dependency_up("database", db_ok);
    if let Some(redis_ok) = redis_ok {
        state.metrics.set_dependency_up("redis", redis_ok);
    }
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("static mime"),
        ))
        .body(state.metrics.render(&state.db))
}
