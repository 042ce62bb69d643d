//! Study groups: browse, create, join (by id or invite code), colour, edit, leave.

use actix_web::{web, HttpRequest, HttpResponse};
use ppodok_domain::{invite, validate, DEFAULT_GROUP_ID};
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::CurrentMember;
use crate::db::entities::{membership, study_group};
use crate::db::{is_foreign_key_violation, now_utc};
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::groups::{GroupError, NewGroup};
use crate::limits::{client_ip, Limit};
use crate::membership::{join, leave, membership_of};
use crate::routes::parse_optional_json;
use crate::state::AppState;

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Password(e) => e.into(),
            e @ (GroupError::CodeCollisions | GroupError::Store(_)) => {
                ApiError::Internal(anyhow::Error::new(e))
            }
        }
    }
}

const MSG_WRONG_PASSWORD: &str = "비밀번호가 일치하지 않습니다.";
const MSG_ALREADY_JOINED: &str = "이미 가입한 그룹입니다.";
const MSG_NOT_OWNER: &str = "그룹장이 아닙니다.";
const MSG_DEFAULT_GROUP: &str = "기본 그룹은 탈퇴할 수 없어요.";

fn invalid_invite(path: &str) -> ApiError {
    ApiError::BadRequest(format!("유효하지 않은 초대 코드입니다. : {path}"))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupResponse {
    pub group_id: i64,
    pub group_name: String,
    pub secret: bool,
    /// My colour for this group (only on endpoints that say so).
    pub color: Option<String>,
    /// Invite code: shown to members only.
    pub path: Option<String>,
}

fn response(g: &study_group::Model, color: Option<String>, is_member: bool) -> GroupResponse {
    GroupResponse {
        group_id: g.id,
        group_name: g.name.clone(),
        secret: g.is_secret,
        color,
        path: is_member.then(|| g.invite_code.clone()),
    }
}

async fn find_group(state: &AppState, id: i64) -> ApiResult<study_group::Model> {
    study_group::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::group_not_found(id))
}

/// Takes one unit of a member-keyed and of an IP-keyed limit (429 when either is spent).
async fn limit_member_and_ip(
    state: &AppState,
    req: &HttpRequest,
    member_id: i64,
    per_member: Limit,
    per_ip: Limit,
) -> ApiResult<()> {
    state
        .limits
        .check(per_member, &member_id.to_string())
        .await?;
    let ip = client_ip(req, state.limits.settings().trust_forwarded_for);
    Ok(state.limits.check(per_ip, &ip).await?)
}

/// Invite codes are secrets worth guessing: look-ups and joins by code are limited.
async fn limit_invite_codes(state: &AppState, req: &HttpRequest, member_id: i64) -> ApiResult<()> {
    limit_member_and_ip(
        state,
        req,
        member_id,
        Limit::InviteCodePerMember,
        Limit::InviteCodePerIp,
    )
    .await
}

/// Groups I am not in (invite codes are not shown).
#[utoipa::path(get, path = "/api/v1/groups/all", tag = "groups",
    responses((status = 200, body = [GroupResponse])), security(("bearer" = [])))]
pub async fn joinable(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let mine = Query::select()
        .column(membership::Column::GroupId)
        .from(membership::Entity)
        .and_where(Expr::col(membership::Column::MemberId).eq(me.id()))
        .to_owned();
    let groups = study_group::Entity::find()
        .filter(study_group::Column::Id.not_in_subquery(mine))
        .order_by_asc(study_group::Column::Id)
        .all(&state.db)
        .await?;
    let body: Vec<_> = groups.iter().map(|g| response(g, None, false)).collect();
    Ok(envelope::ok(body))
}

/// My groups, with my colour.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = [GroupResponse])), security(("bearer" = [])))]
pub async fn mine(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let rows = membership::Entity::find()
        .filter(membership::Column::MemberId.eq(me.id()))
        .order_by_asc(membership::Column::Id)
        .find_also_related(study_group::Entity)
        .all(&state.db)
        .await?;
    let body: Vec<_> = rows
        .into_iter()
        .filter_map(|(m, g)| g.map(|g| response(&g, m.color, true)))
        .collect();
    Ok(envelope::ok(body))
}

#[derive(Deserialize, IntoParams)]
pub struct InviteQuery {
    pub path: String,
}

/// Invite preview: the group behind a code, unless it is unknown or I am in it already.
#[utoipa::path(get, path = "/api/v1/groups/path", tag = "groups", params(InviteQuery),
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 200, body = GroupResponse), (status = 400, description = "invalid code or already a member")),
    security(("bearer" = [])))]
pub async fn invite_preview(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: CurrentMember,
    q: web::Query<InviteQuery>,
) -> ApiResult<HttpResponse> {
    limit_invite_codes(&state, &req, me.id()).await?;
    let group = group_by_invite(&state, &q.path).await?;
    if membership_of(&state.db, group.id, me.id()).await?.is_some() {
        return Err(ApiError::BadRequest(MSG_ALREADY_JOINED.into()));
    }
    Ok(envelope::ok(response(&group, None, false)))
}

async fn group_by_invite(state: &AppState, code: &str) -> ApiResult<study_group::Model> {
    if !invite::is_plausible_invite_code(code) {
        let shown: String = code.chars().take(invite::MAX_INVITE_CODE_INPUT).collect();
        return Err(invalid_invite(&shown));
    }
    study_group::Entity::find()
        .filter(study_group::Column::InviteCode.eq(code))
        .one(&state.db)
        .await?
        .ok_or_else(|| invalid_invite(code))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupRequest {
    /// 1–50 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r#"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"#
    )]
    pub group_name: String,
    #[serde(default)]
    pub secret: bool,
    pub password: Option<String>,
    /// A proposed invite code: kept when it is 10–64 ASCII letters and digits and unused;
    /// otherwise the server generates one. The response carries the code in effect.
    pub path: Option<String>,
}

/// Creates a group; I become its owner and first member.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = CreateGroupRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 201, body = GroupResponse), (status = 400, description = "invalid name or password")),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<CreateGroupRequest>,
) -> ApiResult<HttpResponse> {
    let name = validate::group_name(&body.group_name)?;
    let password = validate::group_password(body.secret, body.password.as_deref())?;
    let group = crate::groups::create(
        &state.db,
        &state.passwords,
        me.id(),
        NewGroup {
            name,
            secret: body.secret,
            password,
            proposed_code: body.path.clone(),
        },
    )
    .await?;
    Ok(envelope::created(response(&group, None, true)))
}

#[derive(Deserialize, ToSchema)]
pub struct JoinRequest {
    pub password: Option<String>,
}

/// Joins a group by id (password for secret groups). Joining a group I am in changes nothing.
#[utoipa::path(post, path = "/api/v1/groups/{groupId}", tag = "groups", params(("groupId" = i64, Path)),
    request_body(content = JoinRequest, description = "optional; password of a secret group"),
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 201, body = GroupResponse), (status = 400, description = "wrong password"), (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn join_by_id(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: CurrentMember,
    path: web::Path<i64>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let group_id = path.into_inner();
    let body: Option<JoinRequest> = parse_optional_json(&body)?;
    let group = find_group(&state, group_id).await?;
    if let Some(m) = membership_of(&state.db, group.id, me.id()).await? {
        return Ok(envelope::created(response(&group, m.color, true)));
    }
    if group.is_secret {
        limit_member_and_ip(
            &state,
            &req,
            me.id(),
            Limit::GroupPasswordPerMember,
            Limit::GroupPasswordPerIp,
        )
        .await?;
    }
    if group.is_secret
        && !state
            .passwords
            .matches(group.password_hash.clone(), body.and_then(|b| b.password))
            .await?
    {
        return Err(ApiError::BadRequest(MSG_WRONG_PASSWORD.into()));
    }
    add_member(&state, &group, me.id()).await?;
    Ok(envelope::created(response(&group, None, true)))
}

/// Adds a member unless the group vanished meanwhile (then 404).
async fn add_member(
    state: &AppState,
    group: &study_group::Model,
    member_id: i64,
) -> ApiResult<crate::membership::Joined> {
    let group_id = group.id;
    let joined = state
        .db
        .transaction::<_, _, sea_orm::DbErr>(|txn| {
            Box::pin(async move {
                // Row lock (MariaDB lacks FOR SHARE): a concurrent last-member leave cannot delete the group under us.
                let exists = study_group::Entity::find_by_id(group_id)
                    .lock_exclusive()
                    .one(txn)
                    .await?
                    .is_some();
                if !exists {
                    return Ok(None);
                }
                join(txn, group_id, member_id).await.map(Some)
            })
        })
        .await;
    match joined {
        Ok(Some(j)) => Ok(j),
        Ok(None) => Err(ApiError::group_not_found(group_id)),
        Err(sea_orm::TransactionError::Transaction(e)) if is_foreign_key_violation(&e) => {
            Err(ApiError::group_not_found(group_id))
        }
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!("joining group: {e}"))),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct JoinByInviteRequest {
    pub path: String,
}

/// Joins the group of an invite code (the code is the secret; no password asked).
#[utoipa::path(post, path = "/api/v1/groups/path", tag = "groups", request_body = JoinByInviteRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 201, body = GroupResponse), (status = 400, description = "invalid code or already a member")),
    security(("bearer" = [])))]
pub async fn join_by_invite(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: CurrentMember,
    body: crate::routes::Json<JoinByInviteRequest>,
) -> ApiResult<HttpResponse> {
    limit_invite_codes(&state, &req, me.id()).await?;
    let group = group_by_invite(&state, &body.path).await?;
    if membership_of(&state.db, group.id, me.id()).await?.is_some() {
        return Err(ApiError::BadRequest(MSG_ALREADY_JOINED.into()));
    }
    if add_member(&state, &group, me.id()).await? == crate::membership::Joined::AlreadyMember {
        return Err(ApiError::BadRequest(MSG_ALREADY_JOINED.into()));
    }
    Ok(envelope::created(response(&group, None, true)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditGroupRequest {
    pub group_id: i64,
    /// 1–50 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = r#"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"#
    )]
    pub group_name: String,
    #[serde(default)]
    pub secret: bool,
    /// Required when making a public group secret; omitted keeps the current password.
    pub password: Option<String>,
}

/// Owner edit of name, secret flag and password.
#[utoipa::path(patch, path = "/api/v1/groups", tag = "groups", request_body = EditGroupRequest,
    responses((status = 429, description = "rate limited (Retry-After)"), (status = 200, body = GroupResponse), (status = 400, description = "not the owner or invalid"), (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn edit(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<EditGroupRequest>,
) -> ApiResult<HttpResponse> {
    let group = find_group(&state, body.group_id).await?;
    if group.owner_id != Some(me.id()) {
        return Err(ApiError::BadRequest(MSG_NOT_OWNER.into()));
    }
    let name = validate::group_name(&body.group_name)?;
    let password_hash = match (body.secret, body.password.as_deref()) {
        (false, _) => None,
        (true, None) if group.password_hash.is_some() => group.password_hash.clone(),
        (true, given) => {
            let p = validate::group_password(true, given)?.expect("secret password validated");
            Some(state.passwords.hash(p).await?)
        }
    };
    let color = membership_of(&state.db, group.id, me.id())
        .await?
        .and_then(|m| m.color);
    let mut row: study_group::ActiveModel = group.into();
    row.name = Set(name);
    row.is_secret = Set(body.secret);
    row.password_hash = Set(password_hash);
    row.updated_at = Set(now_utc());
    let updated = row.update(&state.db).await?;
    Ok(envelope::ok(response(&updated, color, true)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColorRequest {
    pub group_id: i64,
    /// A daisyUI colour name or a hex code.
    #[schema(pattern = "^[A-Za-z0-9#-]{1,32}$")]
    pub color: String,
}

/// Sets my colour for a group.
#[utoipa::path(patch, path = "/api/v1/groups/color", tag = "groups", request_body = ColorRequest,
    responses((status = 200, body = GroupResponse), (status = 404, description = "no such group or not a member")),
    security(("bearer" = [])))]
pub async fn set_color(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<ColorRequest>,
) -> ApiResult<HttpResponse> {
    let group = find_group(&state, body.group_id).await?;
    let color = validate::color(&body.color)?;
    let m = membership_of(&state.db, group.id, me.id())
        .await?
        .ok_or_else(|| ApiError::not_a_member(me.id(), group.id))?;
    let mut row: membership::ActiveModel = m.into();
    row.color = Set(Some(color.clone()));
    row.update(&state.db).await?;
    Ok(envelope::ok(response(&group, Some(color), true)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRequest {
    pub group_id: i64,
}

/// Leaves a group with the full cascade (see `membership::leave`).
#[utoipa::path(delete, path = "/api/v1/groups", tag = "groups", request_body = LeaveRequest,
    responses((status = 200, description = "left"), (status = 400, description = "the default group"), (status = 404, description = "no such group or not a member")),
    security(("bearer" = [])))]
pub async fn leave_group(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<LeaveRequest>,
) -> ApiResult<HttpResponse> {
    let group = find_group(&state, body.group_id).await?;
    if group.id == DEFAULT_GROUP_ID {
        return Err(ApiError::BadRequest(MSG_DEFAULT_GROUP.into()));
    }
    let member_id = me.id();
    membership_of(&state.db, group.id, member_id)
        .await?
        .ok_or_else(|| ApiError::not_a_member(member_id, group.id))?;
    let group_id = group.id;
    let video_rooms = crate::video::VideoSeats::of(&state)
        .open_rooms_of(member_id, Some(group_id))
        .await;
    let effects = state
        .db
        .transaction::<_, crate::membership::LeaveEffects, sea_orm::DbErr>(|txn| {
            Box::pin(async move { leave(txn, member_id, &[group_id]).await })
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("leaving group: {e}")))?;
    crate::rooms::after_leaving(&state, member_id, &effects).await;
    crate::video::remove_from_rooms(&state, member_id, video_rooms);
    Ok(envelope::deleted())
}
