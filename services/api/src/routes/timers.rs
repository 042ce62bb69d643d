//! Personal focus timer endpoints (rules in `crate::timers`).
//!
//! Starting while a timer is active is a 400 (`이미 진행 중인 타이머가 있어요.`), like the
//! contract's other business-rule refusals. Pause/resume without a timer is 404; pausing a paused
//! or resuming a running timer answers its unchanged state; stop without a timer answers
//! `data: null`, so a retried stop is harmless.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use ppodok_domain::time::format_iso_duration_ms;
use sea_orm::{TransactionError, TransactionTrait};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::CurrentMember;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::membership::require_member;
use crate::routes::parse_optional_json;
use crate::state::AppState;
use crate::timers::{self, TimerError, TimerRules, TimerView};

const MSG_ALREADY_ACTIVE: &str = "이미 진행 중인 타이머가 있어요.";
const MSG_NO_TIMER: &str = "진행 중인 타이머가 없어요.";

impl From<TimerError> for ApiError {
    fn from(e: TimerError) -> Self {
        match e {
            TimerError::AlreadyActive => ApiError::BadRequest(MSG_ALREADY_ACTIVE.into()),
            TimerError::NoTimer => ApiError::NotFound(MSG_NO_TIMER.into()),
            TimerError::Db(db) => db.into(),
        }
    }
}

fn rules(state: &AppState) -> TimerRules {
    TimerRules {
        ranking_days: state.ranking_days,
        idle_cap: Duration::minutes(state.settings.study.timer_idle_cap_minutes),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimerResponse {
    /// `running`, `paused`, or `stopped` (only in the answer to stop).
    pub state: String,
    pub group_id: Option<i64>,
    /// Service-zone local time, `YYYY-MM-DDTHH:mm:ss`.
    pub started_at: String,
    /// Accumulated plus the running segment (never past the idle cap), e.g. `PT25M`.
    pub elapsed: String,
    pub server_time: String,
}

fn response(state: &AppState, v: TimerView, now: DateTime<Utc>) -> TimerResponse {
    TimerResponse {
        state: v.state.as_str().to_owned(),
        group_id: v.group_id,
        started_at: crate::views::local_in(state.zone, v.started_at.naive_utc()),
        elapsed: format_iso_duration_ms(v.elapsed_ms),
        server_time: crate::views::local_in(state.zone, now.naive_utc()),
    }
}

/// Timer state changes go to the group's timer topic (never the calendar topic), while I am a
/// member: a timer started in a group I have left since stays private.
async fn announce(state: &AppState, member_id: i64, timer: &TimerResponse) {
    if let Some(group_id) = timer.group_id {
        match crate::membership::membership_of(&state.db, group_id, member_id).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => return tracing::warn!(error = %e, "timer announcement skipped"),
        }
        let body = serde_json::json!({ "memberId": member_id, "timer": timer });
        state
            .realtime
            .publish(format!("/topic/{group_id}/timers"), &body)
            .await;
    }
}

fn unwrap_txn<T>(r: Result<T, TransactionError<TimerError>>) -> ApiResult<T> {
    r.map_err(|e| match e {
        TransactionError::Connection(db) => db.into(),
        TransactionError::Transaction(t) => t.into(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartTimerRequest {
    /// A group I am in: its rankings get the time. Omitted: personal history only.
    pub group_id: Option<i64>,
}

/// Starts my focus timer (optional JSON body `{groupId}`).
#[utoipa::path(post, path = "/api/v1/timers/start", tag = "timers", request_body = Option<StartTimerRequest>,
    responses((status = 201, body = TimerResponse), (status = 400, description = "a timer is already active"),
        (status = 403, description = "not a member of the group"), (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn start(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let request: Option<StartTimerRequest> = parse_optional_json(&body)?;
    let group_id = request.and_then(|r| r.group_id);
    if let Some(group_id) = group_id {
        require_member(&state.db, group_id, me.id()).await?;
    }
    let (rules, now, member_id) = (rules(&state), state.clock.now(), me.id());
    let started = unwrap_txn(
        state
            .db
            .transaction::<_, _, TimerError>(|txn| {
                Box::pin(async move { timers::start(txn, &rules, member_id, group_id, now).await })
            })
            .await,
    )?;
    let body = response(&state, started, now);
    announce(&state, me.id(), &body).await;
    Ok(envelope::created(body))
}

/// Pauses my timer; the segment that just ended is credited.
#[utoipa::path(post, path = "/api/v1/timers/pause", tag = "timers",
    responses((status = 200, body = TimerResponse), (status = 404, description = "no timer")),
    security(("bearer" = [])))]
pub async fn pause(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let (rules, now, member_id) = (rules(&state), state.clock.now(), me.id());
    let paused = unwrap_txn(
        state
            .db
            .transaction::<_, _, TimerError>(|txn| {
                Box::pin(async move { timers::pause(txn, &rules, member_id, now).await })
            })
            .await,
    )?;
    let body = response(&state, paused, now);
    announce(&state, me.id(), &body).await;
    Ok(envelope::ok(body))
}

/// Resumes my paused timer.
#[utoipa::path(post, path = "/api/v1/timers/resume", tag = "timers",
    responses((status = 200, body = TimerResponse), (status = 404, description = "no timer")),
    security(("bearer" = [])))]
pub async fn resume(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let (rules, now, member_id) = (rules(&state), state.clock.now(), me.id());
    let resumed = unwrap_txn(
        state
            .db
            .transaction::<_, _, TimerError>(|txn| {
                Box::pin(async move { timers::resume(txn, &rules, member_id, now).await })
            })
            .await,
    )?;
    let body = response(&state, resumed, now);
    announce(&state, me.id(), &body).await;
    Ok(envelope::ok(body))
}

/// Stops my timer, crediting a running segment. `data: null` when there was none.
#[utoipa::path(post, path = "/api/v1/timers/stop", tag = "timers",
    responses((status = 200, body = Option<TimerResponse>)), security(("bearer" = [])))]
pub async fn stop(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let (rules, now, member_id) = (rules(&state), state.clock.now(), me.id());
    let stopped = unwrap_txn(
        state
            .db
            .transaction::<_, _, TimerError>(|txn| {
                Box::pin(async move { timers::stop(txn, &rules, member_id, now).await })
            })
            .await,
    )?;
    let body = stopped.map(|v| response(&state, v, now));
    if let Some(b) = &body {
        announce(&state, me.id(), b).await;
    }
    Ok(envelope::ok(body))
}

/// My timer now, or `data: null`.
#[utoipa::path(get, path = "/api/v1/timers/current", tag = "timers",
    responses((status = 200, body = Option<TimerResponse>)), security(("bearer" = [])))]
pub async fn current(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let timer = timers::current(&state.db, &rules(&state), me.id(), now).await?;
    Ok(envelope::ok(timer.map(|v| response(&state, v, now))))
}
