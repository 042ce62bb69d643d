//! Study groups: browse, create, join (by id or invite code), colour, edit, leave.

use actix_web::{web, HttpRequest, HttpResponse};
use ppodok_domain::validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::CurrentMember;
use crate::db::entities::study_group;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::groups::{GroupEdit, GroupError, GroupOf, Leaving, NewGroup};
use crate::limits::{client_ip, Limit, LimitError};
use crate::routes::parse_optional_json;
use crate::state::AppState;

const MSG_WRONG_PASSWORD: &str = "비밀번호가 일치하지 않습니다.";
const MSG_ALREADY_JOINED: &str = "이미 가입한 그룹입니다.";
const MSG_NOT_OWNER: &str = "그룹장이 아닙니다.";
const MSG_DEFAULT_GROUP: &str = "기본 그룹은 탈퇴할 수 없어요.";

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::NotFound(id) => ApiError::group_not_found(id),
            GroupError::NotAMember {
                member_id,
                group_id,
            } => ApiError::not_a_member(member_id, group_id),
            GroupError::InvalidInvite(shown) => {
                ApiError::BadRequest(format!("유효하지 않은 초대 코드입니다. : {shown}"))
            }
            GroupError::AlreadyMember => ApiError::BadRequest(MSG_ALREADY_JOINED.into()),
            GroupError::WrongPassword => ApiError::BadRequest(MSG_WRONG_PASSWORD.into()),
            GroupError::NotOwner => ApiError::BadRequest(MSG_NOT_OWNER.into()),
            GroupError::DefaultGroup => ApiError::BadRequest(MSG_DEFAULT_GROUP.into()),
            GroupError::Invalid(e) => e.into(),
            GroupError::Limited(e) => e.into(),
            GroupError::Password(e) => e.into(),
            e @ (GroupError::CodeCollisions | GroupError::Store(_)) => {
                ApiError::Internal(anyhow::Error::new(e))
            }
        }
    }
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

/// Takes one unit of a member-keyed and of an IP-keyed limit (429 when either is spent).
async fn limit_member_and_ip(
    state: &AppState,
    req: &HttpRequest,
    member_id: i64,
    per_member: Limit,
    per_ip: Limit,
) -> Result<(), LimitError> {
    state
        .limits
        .check(per_member, &member_id.to_string())
        .await?;
    let ip = client_ip(req, state.limits.settings().trust_forwarded_for);
    state.limits.check(per_ip, &ip).await
}

/// Invite codes are secrets worth guessing: look-ups and joins by code are limited.
async fn limit_invite_codes(
    state: &AppState,
    req: &HttpRequest,
    member_id: i64,
) -> Result<(), LimitError> {
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
    let groups = crate::groups::joinable(&state.db, me.id()).await?;
    let body: Vec<_> = groups.iter().map(|g| response(g, None, false)).collect();
    Ok(envelope::ok(body))
}

/// My groups, with my colour.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, body = [GroupResponse])), security(("bearer" = [])))]
pub async fn mine(state: web::Data<AppState>, me: CurrentMember) -> ApiResult<HttpResponse> {
    let body: Vec<_> = crate::groups::of_member(&state.db, me.id())
        .await?
        .into_iter()
        .map(|g| response(&g.group, g.color, true))
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
    let group = crate::groups::preview_invite(&state.db, me.id(), &q.path).await?;
    Ok(envelope::ok(response(&group, None, false)))
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
    let password_gate = limit_member_and_ip(
        &state,
        &req,
        me.id(),
        Limit::GroupPasswordPerMember,
        Limit::GroupPasswordPerIp,
    );
    let GroupOf { group, color } = crate::groups::join_by_id(
        &state.db,
        &state.passwords,
        me.id(),
        group_id,
        body.and_then(|b| b.password),
        password_gate,
    )
    .await?;
    Ok(envelope::created(response(&group, color, true)))
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
    let group = crate::groups::join_by_invite(&state.db, me.id(), &body.path).await?;
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
    let body = body.0;
    let GroupOf { group, color } = crate::groups::edit(
        &state.db,
        &state.passwords,
        me.id(),
        GroupEdit {
            group_id: body.group_id,
            name: body.group_name,
            secret: body.secret,
            password: body.password,
        },
    )
    .await?;
    Ok(envelope::ok(response(&group, color, true)))
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
    let GroupOf { group, color } =
        crate::groups::set_color(&state.db, me.id(), body.group_id, &body.color).await?;
    Ok(envelope::ok(response(&group, color, true)))
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
    Leaving {
        db: &state.db,
        calendar: state.calendar_news(),
        video: state.video_seats(),
    }
    .leave(me.id(), body.group_id)
    .await?;
    Ok(envelope::deleted())
}
