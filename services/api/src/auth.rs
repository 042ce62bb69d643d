//! Who is asking: the `CurrentMember` extractor for authenticated endpoints.
//!
//! Public endpoints never run it, so a bad `Authorization` header there (the old client sends
//! `Bearer undefined` at login) is simply ignored.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use ppodok_tokens::TokenKind;
use std::sync::Arc;

use crate::db::entities::member;
use crate::error::ApiError;
use crate::state::AppState;

/// A live member holding a valid access token of a live session.
pub struct CurrentMember {
    pub member: Arc<member::Model>,
    pub sid: String,
}

impl CurrentMember {
    pub fn id(&self) -> i64 {
        self.member.id
    }
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive), if any.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Verifies an access token: signature, kind, expiry, a live session and a live member. The
/// session and member come from the in-process session view (no database round trip while it is
/// fresh; see `sessions`).
pub async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(Arc<member::Model>, ppodok_tokens::MemberClaims), ApiError> {
    let claims = state
        .tokens
        .verify(token, TokenKind::Access)
        .map_err(|_| ApiError::Unauthorized)?;
    let member = state
        .sessions
        .live_member(claims.member_id, &claims.sid)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok((member, claims))
}

impl FromRequest for CurrentMember {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            let (member, claims) = authenticate(&state, &token).await?;
            Ok(CurrentMember {
                member,
                sid: claims.sid,
            })
        })
    }
}
