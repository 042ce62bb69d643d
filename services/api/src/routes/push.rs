//! Push devices: Web Push subscriptions (the browser's `PushSubscription`), unregistering, and the
//! VAPID public key browsers subscribe with. FCM tokens register at `POST /api/v1/clients`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::CurrentMember;
use crate::envelope;
use crate::error::{ApiError, ApiResult};
use crate::push::devices::{self, DeviceError};
use crate::push::sender::{KIND_FCM, KIND_WEBPUSH};
use crate::state::AppState;

const MSG_BAD_ENDPOINT: &str = "구독 endpoint는 1000자 이하의 https URL이어야 해요.";
const MSG_BAD_KEYS: &str = "구독 키(p256dh, auth)가 올바르지 않아요.";
const MSG_NO_DEVICE: &str = "등록되지 않은 기기예요.";
const MSG_NO_WEBPUSH: &str = "이 서버는 웹 푸시를 지원하지 않아요.";

/// The keys of a browser `PushSubscription` (base64url).
#[derive(Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The subscription's P-256 public key (uncompressed point), base64url.
    #[schema(min_length = 87, max_length = 88)]
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    #[schema(min_length = 22, max_length = 24)]
    pub auth: String,
}

/// A browser `PushSubscription` as `JSON.stringify(subscription)` gives it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    /// The push service URL (https).
    #[schema(min_length = 1, max_length = 1000)]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// Ignored (browsers send `null`).
    #[serde(default)]
    #[schema(nullable)]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct UnsubscribeRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub endpoint: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnregisterClientRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub fcm_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceResponse {
    pub id: i64,
    pub member_id: i64,
    /// `webpush` or `fcm`.
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidKeyResponse {
    /// The VAPID public key (uncompressed P-256 point, base64url): `applicationServerKey`.
    pub public_key: String,
}

// The envelopes these endpoints answer with, as the OpenAPI document shows them.

/// `{data, message, code}` around a device.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeviceEnvelope {
    pub data: DeviceResponse,
    #[schema(example = "새로 생성되었습니다.")]
    pub message: String,
    #[schema(example = "resource.created")]
    pub code: String,
}

/// `{data, message, code}` around the VAPID key.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VapidKeyEnvelope {
    pub data: VapidKeyResponse,
    #[schema(example = "성공")]
    pub message: String,
    #[schema(example = "success")]
    pub code: String,
}

/// `{data: null, message, code}` after a deletion.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeletedEnvelope {
    #[schema(value_type = Option<()>, nullable)]
    pub data: Option<()>,
    #[schema(example = "삭제되었습니다.")]
    pub message: String,
    #[schema(example = "resource.deleted")]
    pub code: String,
}

/// `{code: "fail", message}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FailBody {
    #[schema(example = "fail")]
    pub code: String,
    pub message: String,
}

fn device_error(e: DeviceError) -> ApiError {
    match e {
        DeviceError::BadEndpoint => ApiError::BadRequest(MSG_BAD_ENDPOINT.into()),
        DeviceError::BadKeys => ApiError::BadRequest(MSG_BAD_KEYS.into()),
        DeviceError::Db(e) => e.into(),
    }
}

/// Registers this browser's Web Push subscription for me (a subscription another account held
/// moves to me). Registering the same subscription again is harmless.
#[utoipa::path(post, path = "/api/v1/push/subscriptions", tag = "push",
    request_body = SubscriptionRequest,
    responses(
        (status = 201, body = DeviceEnvelope),
        (status = 400, body = FailBody, description = "malformed endpoint or keys"),
        (status = 401, body = FailBody),
        (status = 404, body = FailBody, description = "Web Push is not configured on this server")),
    security(("bearer" = [])))]
pub async fn subscribe(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: web::Json<SubscriptionRequest>,
) -> ApiResult<HttpResponse> {
    if state.push.webpush.is_none() {
        return Err(ApiError::NotFound(MSG_NO_WEBPUSH.into()));
    }
    let endpoint = devices::check_endpoint(
        &body.endpoint,
        state.settings.push.webpush.allow_http_endpoints,
    )
    .map_err(device_error)?;
    let (p256dh, auth) = (body.keys.p256dh.trim(), body.keys.auth.trim());
    crate::push::webpush::subscription_keys(p256dh, auth)
        .map_err(|_| device_error(DeviceError::BadKeys))?;
    let row = devices::register(
        &state.db,
        me.id(),
        KIND_WEBPUSH,
        &endpoint,
        Some((p256dh, auth)),
        state.clock.now_naive(),
    )
    .await?;
    Ok(envelope::created(DeviceResponse {
        id: row.id,
        member_id: row.member_id,
        kind: row.kind,
    }))
}

/// Unregisters one of my Web Push subscriptions; its pending reminders go with it.
#[utoipa::path(delete, path = "/api/v1/push/subscriptions", tag = "push",
    request_body = UnsubscribeRequest,
    responses(
        (status = 200, body = DeletedEnvelope),
        (status = 400, body = FailBody),
        (status = 401, body = FailBody),
        (status = 404, body = FailBody, description = "no such subscription of mine")),
    security(("bearer" = [])))]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: web::Json<UnsubscribeRequest>,
) -> ApiResult<HttpResponse> {
    if !devices::unregister(&state.db, me.id(), KIND_WEBPUSH, &body.endpoint).await? {
        return Err(ApiError::NotFound(MSG_NO_DEVICE.into()));
    }
    Ok(envelope::deleted())
}

/// Unregisters one of my FCM tokens; its pending reminders go with it.
#[utoipa::path(delete, path = "/api/v1/clients", tag = "push",
    request_body = UnregisterClientRequest,
    responses(
        (status = 200, body = DeletedEnvelope),
        (status = 400, body = FailBody),
        (status = 401, body = FailBody),
        (status = 404, body = FailBody, description = "no such token of mine")),
    security(("bearer" = [])))]
pub async fn unregister_client(
    state: web::Data<AppState>,
    me: CurrentMember,
    body: web::Json<UnregisterClientRequest>,
) -> ApiResult<HttpResponse> {
    if !devices::unregister(&state.db, me.id(), KIND_FCM, &body.fcm_token).await? {
        return Err(ApiError::NotFound(MSG_NO_DEVICE.into()));
    }
    Ok(envelope::deleted())
}

/// The VAPID public key to pass as `applicationServerKey` to `pushManager.subscribe`.
#[utoipa::path(get, path = "/api/v1/push/vapid-public-key", tag = "push",
    responses(
        (status = 200, body = VapidKeyEnvelope),
        (status = 404, body = FailBody, description = "Web Push is not configured on this server")))]
pub async fn vapid_public_key(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let key = state
        .push
        .vapid_public_key()
        .ok_or_else(|| ApiError::NotFound(MSG_NO_WEBPUSH.into()))?;
    Ok(envelope::ok(VapidKeyResponse {
        public_key: key.to_owned(),
    }))
}
