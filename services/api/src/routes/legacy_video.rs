//! The old Node video server's endpoints, answered safely for the existing web client:
//! `GET /video/api/url` (where the SFU is) and `GET /video/getToken` (a LiveKit token, only for
//! an authenticated member booked into the room, identity always the member id). Their bodies
//! are the old server's bare JSON; failures use the contract's error envelope.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{authenticate, bearer_token};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The cookie the existing web client keeps its access token in.
const ACCESS_COOKIE: &str = "accessToken";

#[derive(Serialize, ToSchema)]
pub struct SfuUrlResponse {
    /// The SFU's WebSocket URL (`livekit.sfu_url`).
    pub url: String,
}

/// Where to connect for video (the old Node server's `/video/api/url`).
#[utoipa::path(get, path = "/video/api/url", tag = "video",
    responses((status = 200, body = SfuUrlResponse)))]
pub async fn sfu_url(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(SfuUrlResponse {
        url: state.settings.livekit.sfu_url.clone(),
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct LegacyTokenQuery {
    /// The room id, as the old client sends it.
    #[param(required = true)]
    pub room_name: Option<String>,
    /// Ignored: the identity is always the member id.
    pub identity: Option<String>,
    /// Ignored: the name is always the member's nickname.
    pub name: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyTokenResponse {
    /// The member id.
    pub identity: String,
    /// LiveKit access token for this room only (name = nickname).
    pub access_token: String,
}

/// A video token in the old Node server's shape, for a room I booked, inside its window.
/// Credentials: `Authorization: Bearer`, or the client's `accessToken` cookie on a same-origin
/// request (`Sec-Fetch-Site: same-origin`, or an `Origin` naming this host); a cookie on a
/// request from another origin, or one that does not say where it comes from, is refused.
#[utoipa::path(get, path = "/video/getToken", tag = "video", params(LegacyTokenQuery),
    responses((status = 200, body = LegacyTokenResponse),
              (status = 400, description = "no roomName, or outside the room's window"),
              (status = 401, description = "no valid access token"),
              (status = 403, description = "no reservation in this room, or a cookie from another origin"),
              (status = 404, description = "no such room")),
    security(("bearer" = [])))]
pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<LegacyTokenQuery>,
) -> ApiResult<HttpResponse> {
    let access = credential(&req)?;
    let (member, _) = authenticate(&state, &access).await?;
    let room_id = q
        .room_name
        .as_deref()
        .and_then(|r| r.trim().parse::<i64>().ok())
        .ok_or_else(|| ApiError::BadRequest("roomName은 방 번호여야 해요.".into()))?;
    let minted = state.video_tokens().issue(&member, room_id).await?;
    Ok(HttpResponse::Ok().json(LegacyTokenResponse {
        identity: minted.identity,
        access_token: minted.token,
    }))
}

/// The access token of the request: the `Authorization` header, else the client's cookie when
/// the request provably comes from this origin.
fn credential(req: &HttpRequest) -> ApiResult<String> {
    if let Some(token) = bearer_token(req) {
        return Ok(token);
    }
    let cookie = req.cookie(ACCESS_COOKIE).ok_or(ApiError::Unauthorized)?;
    if !same_origin(req) {
        return Err(ApiError::Forbidden);
    }
    Ok(cookie.value().to_owned())
}

/// True when the browser says the request comes from a page of this origin. Browsers send
/// `Sec-Fetch-Site` (to trustworthy origins: https, localhost); older ones at least send `Origin`
/// on cross-origin requests, compared with the `Host` the router passes on unchanged.
fn same_origin(req: &HttpRequest) -> bool {
    let text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin";
    }
    let (Some(origin), Some(host)) = (text(header::ORIGIN.as_str()), text(header::HOST.as_str()))
    else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        headers
            .iter()
            .fold(TestRequest::get(), |r, (k, v)| r.insert_header((*k, *v)))
            .to_http_request()
    }

    #[test]
    fn same_origin_needs_the_browser_to_say_so() {
        assert!(same_origin(&request(&[("sec-fetch-site", "same-origin")])));
        for site in ["same-site", "cross-site", "none"] {
            assert!(
                !same_origin(&request(&[("sec-fetch-site", site)])),
                "{site}"
            );
        }
        // Sec-Fetch-Site wins over a matching Origin.
        assert!(!same_origin(&request(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://study.example"),
            ("host", "study.example"),
        ])));
        assert!(same_origin(&request(&[
            ("origin", "https://study.example:8443"),
            ("host", "study.example:8443"),
        ])));
        assert!(!same_origin(&request(&[
            ("origin", "https://evil.example"),
            ("host", "study.example"),
        ])));
        assert!(!same_origin(&request(&[
            ("origin", "null"),
            ("host", "null")
        ])));
        assert!(!same_origin(&request(&[("host", "study.example")])));
    }
}
