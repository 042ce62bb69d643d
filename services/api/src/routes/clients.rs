//! Web-push device registration: one row per device token, several devices per member.

use actix_web::{web, HttpResponse};
use ppodok_domain::validate;
use sea_orm::{sea_query::OnConflict, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::CurrentMember;
use crate::db::entities::push_client;
use crate::db::now_utc;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterClientRequest {
    #[schema(max_length = 1000, pattern = r"\S")]
    pub fcm_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientResponse {
    pub id: i64,
    pub member_id: i64,
    pub fcm_token: String,
}

/// Registers this device's push token for me (a token that moved to another account moves with it).
#[utoipa::path(post, path = "/api/v1/clients", tag = "push", request_body = RegisterClientRequest,
    responses((status = 201, body = ClientResponse)), security(("bearer" = [])))]
pub async fn register(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: crate::routes::Json<RegisterClientRequest>,
) -> ApiResult<HttpResponse> {
    let token = validate::fcm_token(&body.fcm_token)?;
    let key = hex::encode(Sha256::digest(token.as_bytes()));
    let now = now_utc();
    push_client::Entity::insert(push_client::ActiveModel {
        member_id: Set(me.id()),
        token: Set(token.clone()),
        token_key: Set(key.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(push_client::Column::TokenKey)
            .update_columns([
                push_client::Column::MemberId,
                push_client::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(&state.db)
    .await?;
    let row = push_client::Entity::find()
        .filter(push_client::Column::TokenKey.eq(key))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("push client vanished after upsert")))?;
    Ok(envelope::created(ClientResponse {
        id: row.id,
        member_id: row.member_id,
        fcm_token: row.token,
    }))
}
