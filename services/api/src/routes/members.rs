//! Sign-in (Kakao, dev), token rotation, logout, profile and withdrawal.

use actix_web::{web, HttpRequest, HttpResponse};
use ppodok_domain::{time::format_iso_duration_ms, validate};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{LoginError, Logins, RefreshError, Tokens, WithdrawError, Withdrawal};
use crate::auth::CurrentMember;
use crate::db::entities::{member, rank};
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::kakao::KakaoError;
use crate::limits::{client_ip, Limit};
use crate::state::AppState;

pub const REFRESH_HEADER: &str = "X-BBODOK-REFRESH-TOKEN";

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// Kakao authorisation code.
    pub auth_code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct DevLoginRequest {
    /// Identifies the development account (created on first use).
    #[schema(
        min_length = 1,
        max_length = 30,
        pattern = r#"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"#
    )]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberResponse {
    pub member_id: i64,
    pub name: String,
    pub profile: Option<String>,
    pub email: Option<String>,
    /// Study time in the group of `GET /members/{groupId}`; null on `GET /members`.
    pub duration: Option<String>,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Kakao(e @ KakaoError::Rejected { .. }) => {
                tracing::info!(error = %e, "kakao login refused");
                ApiError::BadRequest("카카오 로그인에 실패했어요.".into())
            }
            LoginError::Kakao(e @ KakaoError::Unavailable(_)) => {
                tracing::warn!(error = %e, "kakao unavailable");
                ApiError::Upstream(
                    "카카오 서버에 연결할 수 없어요. 잠시 후 다시 시도해 주세요.".into(),
                )
            }
            LoginError::Session(e) => e.into(),
            LoginError::Store(e) => e.into(),
            LoginError::Vanished => ApiError::Internal(anyhow::Error::new(e)),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => ApiError::InvalidRefreshToken,
            RefreshError::Session(e) => e.into(),
            RefreshError::Store(e) => e.into(),
        }
    }
}

impl From<WithdrawError> for ApiError {
    fn from(e: WithdrawError) -> Self {
        match e {
            WithdrawError::NotRegular => ApiError::Unauthorized,
            WithdrawError::Session(e) => e.into(),
            WithdrawError::Store(e) => e.into(),
        }
    }
}

fn logins(state: &AppState) -> Logins<'_> {
    Logins {
        db: &state.db,
        sessions: &state.sessions,
        tokens: &state.tokens,
        events: &state.realtime,
    }
}

fn token_pair(tokens: Tokens) -> TokenPair {
    TokenPair {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    }
}

/// Takes one unit of an IP-keyed rate limit (429 when spent).
pub async fn limit_by_ip(state: &AppState, req: &HttpRequest, limit: Limit) -> ApiResult<()> {
    let ip = client_ip(req, state.limits.settings().trust_forwarded_for);
    Ok(state.limits.check(limit, &ip).await?)
}

/// Sign in with a Kakao authorisation code.
#[utoipa::path(post, path = "/api/v1/members/login", tag = "members", request_body = LoginRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 200, description = "token pair", body = TokenPair),
              (status = 400, description = "Kakao refused the code"), (status = 502, description = "Kakao unreachable")))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::routes::Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    limit_by_ip(&state, &req, Limit::LoginPerIp).await?;
    let code = body.auth_code.trim();
    if code.is_empty() || code.len() > 1024 {
        return Err(ApiError::BadRequest("인가 코드가 올바르지 않아요.".into()));
    }
    let tokens = logins(&state)
        .with_kakao(&state.kakao, code, unix_now())
        .await?;
    Ok(envelope::ok(token_pair(tokens)))
}

/// Development sign-in by name (enabled by `auth.dev_login`; off in production).
#[utoipa::path(post, path = "/api/v1/members/dev-login", tag = "members", request_body = DevLoginRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 200, description = "token pair", body = TokenPair)))]
pub async fn dev_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: crate::routes::Json<DevLoginRequest>,
) -> ApiResult<HttpResponse> {
    limit_by_ip(&state, &req, Limit::LoginPerIp).await?;
    let name = validate::member_name(&body.name)?;
    let tokens = logins(&state).as_dev(name, unix_now()).await?;
    Ok(envelope::ok(token_pair(tokens)))
}

/// Rotates the refresh token: the presented one dies, the returned pair is the one stored.
/// Presenting a token that was already rotated revokes the whole session.
#[utoipa::path(post, path = "/api/v1/members/tokens", tag = "members",
    params(("X-BBODOK-REFRESH-TOKEN" = String, Header, description = "refresh token")),
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 201, description = "new token pair", body = TokenPair),
              (status = 400, description = "INVALID REFRESH TOKEN")))]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    limit_by_ip(&state, &req, Limit::RefreshPerIp).await?;
    let presented = req
        .headers()
        .get(REFRESH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest("리프레시 토큰이 필요해요.".into()))?;
    let tokens = logins(&state).refresh(presented, unix_now()).await?;
    Ok(envelope::created_success(token_pair(tokens)))
}

/// Ends this device's session: its refresh token and every access token of it stop working.
#[utoipa::path(post, path = "/api/v1/members/logout", tag = "members",
    responses((status = 200, description = "logged out")), security(("bearer" = [])))]
pub async fn logout(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    logins(&state).end_session(&me.sid).await?;
    Ok(envelope::ok(()))
}

fn member_response(m: &member::Model, duration: Option<String>) -> MemberResponse {
    MemberResponse {
        member_id: m.id,
        name: m.name.clone(),
        profile: m.profile.clone(),
        email: m.email.clone(),
        duration,
    }
}

/// The signed-in member.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    responses((status = 200, body = MemberResponse), (status = 401, description = "not signed in")),
    security(("bearer" = [])))]
pub async fn me(me: CurrentMember) -> ApiResult<HttpResponse> {
    Ok(envelope::ok(member_response(&me.member, None)))
}

/// The signed-in member with the all-time study time in one of their groups.
#[utoipa::path(get, path = "/api/v1/members/{groupId}", tag = "members",
    params(("groupId" = i64, Path)),
    responses((status = 200, body = MemberResponse), (status = 404, description = "not a member")),
    security(("bearer" = [])))]
pub async fn me_in_group(
    state: web::Data<AppState>,
    me: CurrentMember,
    path: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let group_id = path.into_inner();
    let rank = rank::Entity::find()
        .filter(rank::Column::GroupId.eq(group_id))
        .filter(rank::Column::MemberId.eq(me.id()))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::not_a_member(me.id(), group_id))?;
    Ok(envelope::ok(member_response(
        &me.member,
        Some(format_iso_duration_ms(rank.duration_ms)),
    )))
}

/// Withdraws the member in one transaction (memberships with the leave cascade, ranks, todos, push
/// clients; personal data cleared) and queues the Kakao unlink in a durable outbox, delivered
/// with retries after commit. All sessions are revoked at once.
#[utoipa::path(delete, path = "/api/v1/members", tag = "members",
    responses((status = 200, description = "withdrawn")), security(("bearer" = [])))]
pub async fn withdraw(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    Withdrawal {
        db: &state.db,
        sessions: state.sessions.view(),
        events: &state.realtime,
        calendar: state.calendar_news(),
        video: state.video_seats(),
        unlink_wake: &state.unlink_wake,
    }
    .withdraw(&me.member)
    .await?;
    Ok(envelope::deleted())
}
