//! HTTP routes. Every resource answers an unsupported method with 405 and every unknown path
//! with 404, both in the contract's envelope.

pub mod clients;
pub mod groups;
pub mod health;
pub mod history;
pub mod legacy_video;
pub mod members;
pub mod openapi;
pub mod push;
pub mod rankings;
pub mod rooms;
pub mod timers;
pub mod todos;

use actix_web::{error::JsonPayloadError, web, HttpRequest, Resource};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, MSG_BAD_REQUEST};

/// 405 in the envelope, with `Allow` listing the resource's methods as the OpenAPI document
/// declares them (the document is generated from the same handlers).
async fn method_not_allowed(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Some(allow) = req.match_pattern().and_then(|p| allowed_methods(&p)) {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, value);
        }
    }
    response
}

/// The methods of a route pattern (`/api/v1/members/{groupId:\\d+}` → its document path).
fn allowed_methods(pattern: &str) -> Option<&'static str> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<String, String>> =
        std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        use utoipa::OpenApi;
        openapi::ApiDoc::openapi()
            .paths
            .paths
            .into_iter()
            .map(|(path, item)| {
                let methods: Vec<&str> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                (path, methods.join(", "))
            })
            .collect()
    });
    // Drop the regex of `{name:regex}` segments.
    let mut path = String::with_capacity(pattern.len());
    let (mut in_name, mut in_regex) = (false, false);
    for c in pattern.chars() {
        match c {
            '{' if !in_name => {
                in_name = true;
                path.push(c);
            }
            ':' if in_name => in_regex = true,
            '}' if in_name => {
                (in_name, in_regex) = (false, false);
                path.push(c);
            }
            _ if in_regex => {}
            _ => path.push(c),
        }
    }
    table.get(&path).map(String::as_str)
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Parses an optional JSON body: empty means `None`, malformed is a 400.
pub fn parse_optional_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Object<T>>(body)
        .map(|o| Some(o.0))
        .map_err(|_| ApiError::BadRequest("요청 본문을 읽을 수 없어요.".into()))
}

/// A request body that must be a JSON object. serde's derived structs also accept a JSON array
/// of their fields in order (`[null]`, `[1]`), which the document does not allow: this refuses it.
struct Object<T>(T);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        if !value.is_object() {
            return Err(D::Error::custom("the body must be a JSON object"));
        }
        T::deserialize(value).map(Object).map_err(D::Error::custom)
    }
}

/// `web::Json` for object bodies (see `Object`), with the same configuration and errors.
pub struct Json<T>(pub T);

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> actix_web::FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let inner = web::Json::<Object<T>>::from_request(req, payload);
        Box::pin(async move { inner.await.map(|j| Json(j.into_inner().0)) })
    }
}

/// Body, query and path errors become 400 (413 for an oversize body) in the envelope.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| {
            let api = match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError::PayloadTooLarge,
                JsonPayloadError::ContentType => {
                    ApiError::BadRequest("요청 본문은 application/json이어야 해요.".into())
                }
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::BadRequest("요청 본문의 필드가 없거나 형식이 올바르지 않아요.".into())
                }
                _ => ApiError::BadRequest("요청 본문을 읽을 수 없어요.".into()),
            };
            tracing::debug!(error = %err, "rejected JSON body");
            api.into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        tracing::debug!(error = %err, "rejected query");
        ApiError::BadRequest("요청 파라미터가 없거나 형식이 올바르지 않아요.".into()).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        tracing::debug!(error = %err, "rejected path");
        ApiError::BadRequest(MSG_BAD_REQUEST.into()).into()
    })
}

pub fn configure(cfg: &mut web::ServiceConfig, dev_login: bool) {
    cfg.service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/ready").route(web::get().to(health::ready)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource("/api/v1/members/login").route(web::post().to(members::login)))
        .service(resource("/api/v1/members/tokens").route(web::post().to(members::refresh)))
        .service(resource("/api/v1/members/logout").route(web::post().to(members::logout)));
    if dev_login {
        cfg.service(
            resource("/api/v1/members/dev-login").route(web::post().to(members::dev_login)),
        );
    }
    cfg.service(
        resource("/api/v1/members")
            .route(web::get().to(members::me))
            .route(web::delete().to(members::withdraw)),
    )
    .service(resource("/api/v1/members/{groupId:\\d+}").route(web::get().to(members::me_in_group)))
    .service(resource("/api/v1/groups/all").route(web::get().to(groups::joinable)))
    .service(
        resource("/api/v1/groups/path")
            .route(web::get().to(groups::invite_preview))
            .route(web::post().to(groups::join_by_invite)),
    )
    .service(resource("/api/v1/groups/color").route(web::patch().to(groups::set_color)))
    .service(
        resource("/api/v1/groups")
            .route(web::get().to(groups::mine))
            .route(web::post().to(groups::create))
            .route(web::patch().to(groups::edit))
            .route(web::delete().to(groups::leave_group)),
    )
    .service(resource("/api/v1/groups/{groupId}").route(web::post().to(groups::join_by_id)))
    .service(
        resource("/api/v1/todos")
            .route(web::get().to(todos::list))
            .route(web::post().to(todos::add))
            .route(web::patch().to(todos::edit))
            .route(web::delete().to(todos::delete)),
    )
    .service(
        resource("/api/v1/clients")
            .route(web::post().to(clients::register))
            .route(web::delete().to(push::unregister_client)),
    )
    .service(
        resource("/api/v1/push/subscriptions")
            .route(web::post().to(push::subscribe))
            .route(web::delete().to(push::unsubscribe)),
    )
    .service(resource("/api/v1/push/vapid-public-key").route(web::get().to(push::vapid_public_key)))
    .service(resource("/api/v1/rooms").route(web::get().to(rooms::group_calendar)))
    .service(resource("/api/v1/rooms/all").route(web::get().to(rooms::my_calendar)))
    .service(resource("/api/v1/rooms/nearest").route(web::get().to(rooms::nearest)))
    .service(resource("/api/v1/rooms/reservations").route(web::post().to(rooms::book)))
    .service(resource("/api/v1/rooms/{roomId}/reservation").route(web::delete().to(rooms::cancel)))
    .service(
        resource("/api/v1/rooms/{roomId}/video-token").route(web::post().to(rooms::video_token)),
    )
    .service(
        resource("/api/v1/rooms/histories")
            .route(web::post().to(rooms::enter))
            .route(web::patch().to(rooms::exit)),
    )
    .service(resource("/api/v1/internal/sfu/webhook").route(web::post().to(rooms::sfu_webhook)))
    .service(resource("/video/api/url").route(web::get().to(legacy_video::sfu_url)))
    .service(resource("/video/getToken").route(web::get().to(legacy_video::token)))
    .service(web::resource(crate::stomp::ENDPOINT).route(web::get().to(crate::stomp::endpoint)));
    configure_stats(cfg);
}

/// Server time, study-day settings, history, rankings and focus timers.
fn configure_stats(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/time").route(web::get().to(history::server_time)))
        .service(
            resource("/api/v1/members/settings")
                .route(web::get().to(history::get_settings))
                .route(web::patch().to(history::patch_settings)),
        )
        .service(
            resource("/api/v1/study-histories/durations").route(web::get().to(history::durations)),
        )
        .service(resource("/api/v1/study-histories/summary").route(web::get().to(history::summary)))
        .service(resource("/api/v1/study-histories/heatmap").route(web::get().to(history::heatmap)))
        .service(resource("/api/v1/ranks").route(web::get().to(rankings::ranks)))
        .service(resource("/api/v1/rankings").route(web::get().to(rankings::rankings)))
        .service(resource("/api/v1/timers/start").route(web::post().to(timers::start)))
        .service(resource("/api/v1/timers/pause").route(web::post().to(timers::pause)))
        .service(resource("/api/v1/timers/resume").route(web::post().to(timers::resume)))
        .service(resource("/api/v1/timers/stop").route(web::post().to(timers::stop)))
        .service(resource("/api/v1/timers/current").route(web::get().to(timers::current)));
}
