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
    let db_ok = matches!(
        tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await,
        Ok(Ok(()))
    );
    let redis_ok = match &state.redis {
        None => true,
        Some(link) => matches!(
            tokio::time::timeout(READY_TIMEOUT, link.ping()).await,
            Ok(true)
        ),
    };
    if db_ok && redis_ok {
        Ok(envelope::ok(()))
    } else {
        tracing::warn!(db_ok, redis_ok, "not ready");
        Err(ApiError::Unavailable)
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "metrics")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("static mime"),
        ))
        .body(state.metrics.render(&state.db))
}
