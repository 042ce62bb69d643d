//! Web-push device registration: one row per device token, several devices per member.

use actix_web::{web, HttpResponse};
use ppodok_domain::validate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::CurrentMember;
use crate::db::now_utc;
use crate::envelope;
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterClientRequest {
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
    body: web::Json<RegisterClientRequest>,
) -> ApiResult<HttpResponse> {
    let token = validate::fcm_token(&body.fcm_token)?;
    let row = crate::push::devices::register(
        &state.db,
        me.id(),
        crate::push::sender::KIND_FCM,
        &token,
        None,
        now_utc(),
    )
    .await?;
    Ok(envelope::created(ClientResponse {
        id: row.id,
        member_id: row.member_id,
        fcm_token: row.token,
    }))
}
