//! Sign-in (Kakao, dev), token rotation, logout, profile and withdrawal.

use actix_web::{web, HttpRequest, HttpResponse};
use ppodok_domain::{time::format_iso_duration_ms, validate, DEFAULT_GROUP_ID};
use ppodok_tokens::TokenKind;
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::CurrentMember;
use crate::db::entities::{kakao_unlink_outbox, member, push_client, rank, todo};
use crate::db::{is_unique_violation, now_utc};
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::kakao::KakaoError;
use crate::limits::{client_ip, Limit};
use crate::membership;
use crate::sessions::Rotation;
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

/// Opens a new session (one per login, so devices are independent) and returns its token pair.
async fn open_session(state: &AppState, member_id: i64) -> ApiResult<TokenPair> {
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let now = unix_now();
    let (access_token, _) = state.tokens.issue(member_id, TokenKind::Access, &sid, now);
    let (refresh_token, refresh) = state.tokens.issue(member_id, TokenKind::Refresh, &sid, now);
    state
        .sessions
        .open(
            member_id,
            &sid,
            &refresh.jti,
            state.tokens.refresh_ttl_secs(),
        )
        .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
    })
}

struct NewAccount {
    provider: &'static str,
    provider_user_id: String,
    name: String,
    profile: Option<String>,
    email: Option<String>,
}

/// Finds the live account of a provider identity, or creates it and joins it to the default group.
async fn find_or_create(state: &AppState, account: NewAccount) -> ApiResult<i64> {
    let find = || {
        member::Entity::find()
            .filter(member::Column::Provider.eq(account.provider))
            .filter(member::Column::ProviderUserId.eq(account.provider_user_id.clone()))
            .one(&state.db)
    };
    if let Some(m) = find().await? {
        return Ok(m.id);
    }
    let now = now_utc();
    let created = state
        .db
        .transaction::<_, i64, sea_orm::DbErr>(|txn| {
            let row = member::ActiveModel {
                name: Set(account.name.clone()),
                profile: Set(account.profile.clone()),
                email: Set(account.email.clone()),
                provider: Set(account.provider.to_owned()),
                provider_user_id: Set(Some(account.provider_user_id.clone())),
                status: Set(member::STATUS_REGULAR.to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
                withdrawn_at: Set(None),
                ..Default::default()
            };
            Box::pin(async move {
                let m = row.insert(txn).await?;
                membership::join(txn, DEFAULT_GROUP_ID, m.id).await?;
                Ok(m.id)
            })
        })
        .await;
    match created {
        Ok(id) => Ok(id),
        // A concurrent first login of the same account won: use its row.
        Err(sea_orm::TransactionError::Transaction(e)) if is_unique_violation(&e) => Ok(find()
            .await?
            .ok_or_else(|| anyhow::anyhow!("account vanished after a unique violation"))?
            .id),
        Err(e) => Err(match e {
            sea_orm::TransactionError::Connection(e)
            | sea_orm::TransactionError::Transaction(e) => e.into(),
        }),
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
    let profile = state
        .kakao
        .profile_for_code(code)
        .await
        .map_err(|e| match e {
            KakaoError::Rejected { .. } => {
                tracing::info!(error = %e, "kakao login refused");
                ApiError::BadRequest("카카오 로그인에 실패했어요.".into())
            }
            KakaoError::Unavailable(_) => {
                tracing::warn!(error = %e, "kakao unavailable");
                ApiError::Upstream(
                    "카카오 서버에 연결할 수 없어요. 잠시 후 다시 시도해 주세요.".into(),
                )
            }
        })?;
    let name = profile
        .nickname
        .as_deref()
        .and_then(|n| {
            validate::member_name(
                &n.chars()
                    .take(validate::MEMBER_NAME_MAX)
                    .collect::<String>(),
            )
            .ok()
        })
        .unwrap_or_else(|| "뽀독이".to_owned());
    let member_id = find_or_create(
        &state,
        NewAccount {
            provider: member::PROVIDER_KAKAO,
            provider_user_id: profile.id,
            name,
            profile: profile.profile_image_url.filter(|u| u.len() <= 1000),
            email: profile.email.filter(|e| e.len() <= 320),
        },
    )
    .await?;
    Ok(envelope::ok(open_session(&state, member_id).await?))
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
    let member_id = find_or_create(
        &state,
        NewAccount {
            provider: member::PROVIDER_DEV,
            provider_user_id: name.clone(),
            name,
            profile: None,
            email: None,
        },
    )
    .await?;
    Ok(envelope::ok(open_session(&state, member_id).await?))
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
    let claims = state
        .tokens
        .verify(presented, TokenKind::Refresh)
        .map_err(|_| ApiError::InvalidRefreshToken)?;
    let live = member::Entity::find_by_id(claims.member_id)
        .one(&state.db)
        .await?
        .is_some_and(|m| m.is_regular());
    if !live {
        revoke_session(&state, &claims.sid).await?;
        return Err(ApiError::InvalidRefreshToken);
    }
    let now = unix_now();
    let (access_token, _) =
        state
            .tokens
            .issue(claims.member_id, TokenKind::Access, &claims.sid, now);
    let (refresh_token, next) =
        state
            .tokens
            .issue(claims.member_id, TokenKind::Refresh, &claims.sid, now);
    match state
        .sessions
        .rotate(
            claims.member_id,
            &claims.sid,
            &claims.jti,
            &next.jti,
            state.tokens.refresh_ttl_secs(),
        )
        .await?
    {
        Rotation::Rotated => Ok(envelope::created_success(TokenPair {
            access_token,
            refresh_token,
        })),
        Rotation::Reused { epoch } => {
            tracing::warn!(
                member_id = claims.member_id,
                "refresh token reuse; session revoked"
            );
            state
                .realtime
                .emit(crate::realtime::Event::RevokeSession {
                    sid: claims.sid.clone(),
                    epoch,
                })
                .await;
            Err(ApiError::InvalidRefreshToken)
        }
        Rotation::Unknown => Err(ApiError::InvalidRefreshToken),
    }
}

/// Ends this device's session: its refresh token and every access token of it stop working.
#[utoipa::path(post, path = "/api/v1/members/logout", tag = "members",
    responses((status = 200, description = "logged out")), security(("bearer" = [])))]
pub async fn logout(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    revoke_session(&state, &me.sid).await?;
    Ok(envelope::ok(()))
}

/// Ends a session here at once and on the other replicas through the bus (their session views
/// also catch up from the database's auth epoch if the message is lost).
async fn revoke_session(state: &AppState, sid: &str) -> ApiResult<()> {
    if let Some(epoch) = state.sessions.revoke(sid).await? {
        state
            .realtime
            .emit(crate::realtime::Event::RevokeSession {
                sid: sid.to_owned(),
                epoch,
            })
            .await;
    }
    Ok(())
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
    let member_id = me.id();
    let kakao_id = (me.member.provider == member::PROVIDER_KAKAO)
        .then(|| me.member.provider_user_id.clone())
        .flatten();
    let video_rooms = crate::video::open_rooms_of(&state, member_id, None).await;
    let (left_groups, epoch) = state
        .db
        .transaction::<_, (crate::membership::LeaveEffects, i64), ApiError>(|txn| {
            Box::pin(async move {
                // Lock the member row: a concurrent second withdrawal waits, then finds it withdrawn.
                let current = member::Entity::find_by_id(member_id)
                    .lock_exclusive()
                    .one(txn)
                    .await?
                    .filter(member::Model::is_regular)
                    .ok_or(ApiError::Unauthorized)?;
                let group_ids: Vec<i64> = crate::db::entities::membership::Entity::find()
                    .select_only()
                    .column(crate::db::entities::membership::Column::GroupId)
                    .filter(crate::db::entities::membership::Column::MemberId.eq(member_id))
                    .into_tuple()
                    .all(txn)
                    .await?;
                let effects = membership::leave(txn, member_id, &group_ids).await?;
                todo::Entity::delete_many()
                    .filter(todo::Column::MemberId.eq(member_id))
                    .exec(txn)
                    .await?;
                crate::db::entities::focus_timer::Entity::delete_by_id(member_id)
                    .exec(txn)
                    .await?;
                push_client::Entity::delete_many()
                    .filter(push_client::Column::MemberId.eq(member_id))
                    .exec(txn)
                    .await?;
                let now = now_utc();
                member::Entity::update_many()
                    .col_expr(
                        member::Column::Status,
                        Expr::value(member::STATUS_WITHDRAWN),
                    )
                    .col_expr(
                        member::Column::ProviderUserId,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(member::Column::Name, Expr::value("탈퇴한 회원"))
                    .col_expr(member::Column::Profile, Expr::value(Option::<String>::None))
                    .col_expr(member::Column::Email, Expr::value(Option::<String>::None))
                    .col_expr(member::Column::WithdrawnAt, Expr::value(Some(now)))
                    .col_expr(member::Column::UpdatedAt, Expr::value(now))
                    .filter(member::Column::Id.eq(current.id))
                    .exec(txn)
                    .await?;
                if let Some(kakao_user_id) = kakao_id {
                    kakao_unlink_outbox::ActiveModel {
                        member_id: Set(member_id),
                        kakao_user_id: Set(kakao_user_id),
                        attempts: Set(0),
                        next_attempt_at: Set(now),
                        locked_until: Set(None),
                        last_error: Set(None),
                        created_at: Set(now),
                        ..Default::default()
                    }
                    .insert(txn)
                    .await?;
                }
                // Every session ends with the withdrawal, in its transaction.
                let epoch = crate::sessions::revoke_member_in(txn, member_id).await?;
                Ok((effects, epoch))
            })
        })
        .await?;
    state
        .sessions
        .view()
        .apply(&crate::sessions::Change::Member { member_id }, epoch);
    state
        .realtime
        .emit(crate::realtime::Event::RevokeMember { member_id, epoch })
        .await;
    crate::rooms::after_leaving(&state, member_id, &left_groups).await;
    crate::video::remove_from_rooms(&state, member_id, video_rooms);
    state.unlink_wake.notify_one();
    Ok(envelope::deleted())
}
