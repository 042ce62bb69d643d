//! Personal todos per group. Only the owner sees or touches a todo; only members add to a group.

use actix_web::{web, HttpResponse};
use ppodok_domain::validate;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::CurrentMember;
use crate::db::entities::todo;
use crate::db::now_utc;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::membership::require_member;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TodoResponse {
    pub todo_id: i64,
    pub group_id: i64,
    pub content: String,
    pub done: bool,
}

impl From<todo::Model> for TodoResponse {
    fn from(t: todo::Model) -> Self {
        Self {
            todo_id: t.id,
            group_id: t.group_id,
            content: t.content,
            done: t.done,
        }
    }
}

/// My todo of that id; someone else's is reported exactly like a missing one.
async fn my_todo(state: &AppState, todo_id: i64, member_id: i64) -> ApiResult<Option<todo::Model>> {
    Ok(todo::Entity::find_by_id(todo_id)
        .filter(todo::Column::MemberId.eq(member_id))
        .one(&state.db)
        .await?)
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TodoQuery {
    pub group_id: i64,
}

/// My todos in a group, in insertion order.
#[utoipa::path(get, path = "/api/v1/todos", tag = "todos", params(TodoQuery),
    responses((status = 200, body = [TodoResponse]), (status = 403, description = "not a member")),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    me: CurrentMember,
    q: web::Query<TodoQuery>,
) -> ApiResult<HttpResponse> {
    require_member(&state.db, q.group_id, me.id()).await?;
    let todos = todo::Entity::find()
        .filter(todo::Column::MemberId.eq(me.id()))
        .filter(todo::Column::GroupId.eq(q.group_id))
        .order_by_asc(todo::Column::Id)
        .all(&state.db)
        .await?;
    Ok(envelope::ok(
        todos
            .into_iter()
            .map(TodoResponse::from)
            .collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddTodoRequest {
    /// Not blank, at most 255 characters.
    #[schema(max_length = 255, pattern = r"\S")]
    pub content: String,
    pub group_id: i64,
}

#[utoipa::path(post, path = "/api/v1/todos", tag = "todos", request_body = AddTodoRequest,
    responses((status = 201, body = TodoResponse), (status = 400, description = "invalid, or the member's todo cap is reached"), (status = 403, description = "not a member")),
    security(("bearer" = [])))]
pub async fn add(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<AddTodoRequest>,
) -> ApiResult<HttpResponse> {
    let content = validate::todo_content(&body.content)?;
    require_member(&state.db, body.group_id, me.id()).await?;
    let cap = state.settings.limits.todos_per_member;
    let held = todo::Entity::find()
        .filter(todo::Column::MemberId.eq(me.id()))
        .count(&state.db)
        .await?;
    if held >= cap {
        return Err(ApiError::BadRequest(format!(
            "할 일은 {cap}개까지 만들 수 있어요."
        )));
    }
    let now = now_utc();
    let created = todo::ActiveModel {
        group_id: Set(body.group_id),
        member_id: Set(me.id()),
        content: Set(content),
        done: Set(false),
        done_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    Ok(envelope::created(TodoResponse::from(created)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditTodoRequest {
    pub todo_id: i64,
    /// New text (not blank, at most 255 characters); omitted keeps it.
    #[schema(max_length = 255, pattern = r"\S")]
    pub content: Option<String>,
    /// New state; omitted keeps it.
    pub done: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/todos", tag = "todos", request_body = EditTodoRequest,
    responses((status = 200, body = TodoResponse), (status = 404, description = "no such todo of mine")),
    security(("bearer" = [])))]
pub async fn edit(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<EditTodoRequest>,
) -> ApiResult<HttpResponse> {
    let content = body
        .content
        .as_deref()
        .map(validate::todo_content)
        .transpose()?;
    let current = my_todo(&state, body.todo_id, me.id())
        .await?
        .ok_or_else(|| ApiError::todo_not_found(body.todo_id))?;
    let now = now_utc();
    let was_done = current.done;
    let mut row: todo::ActiveModel = current.into();
    if let Some(content) = content {
        row.content = Set(content);
    }
    if let Some(done) = body.done {
        row.done = Set(done);
        if done != was_done {
            row.done_at = Set(done.then_some(now));
        }
    }
    row.updated_at = Set(now);
    let updated = match row.update(&state.db).await {
        Ok(updated) => updated,
        // No row changed: deleted since it was read (a concurrent DELETE), or, on MariaDB, an
        // update that changed nothing. Whatever is there now is the answer.
        Err(sea_orm::DbErr::RecordNotUpdated) => my_todo(&state, body.todo_id, me.id())
            .await?
            .ok_or_else(|| ApiError::todo_not_found(body.todo_id))?,
        Err(e) => return Err(e.into()),
    };
    Ok(envelope::ok(TodoResponse::from(updated)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTodoRequest {
    pub todo_id: i64,
}

/// Deletes my todo. Idempotent: a todo that is gone, or is not mine, is left alone and the answer
/// is the same, so nothing about other members' todos can be learned or changed.
#[utoipa::path(delete, path = "/api/v1/todos", tag = "todos", request_body = DeleteTodoRequest,
    responses((status = 200, description = "deleted")), security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<DeleteTodoRequest>,
) -> ApiResult<HttpResponse> {
    todo::Entity::delete_many()
        .filter(todo::Column::Id.eq(body.todo_id))
        .filter(todo::Column::MemberId.eq(me.id()))
        .exec(&state.db)
        .await?;
    Ok(envelope::deleted())
}
