//! LiveKit's token formats, both HS256 JWTs signed with the API secret and `iss` = API key:
//!
//! - the webhook signature: the sender puts a JWT in the `Authorization` header whose `sha256`
//!   claim is the base64 SHA-256 of the body;
//! - the access token a client presents to the SFU: `sub` = identity, `name`, and a `video` grant
//!   (camelCase keys, as LiveKit's `auth/grants.go`), `exp` required.

use base64::{engine::general_purpose::STANDARD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TokenError;

/// An API key and its secret, shared by the API service and the SFU.
#[derive(Clone)]
pub struct LivekitKeys {
    pub api_key: String,
    api_secret: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WebhookClaims {
    iss: String,
    sha256: String,
    nbf: i64,
    exp: i64,
}

fn body_digest(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

impl LivekitKeys {
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        Self {
            api_key: api_key.to_owned(),
            api_secret: api_secret.as_bytes().to_vec(),
        }
    }

    /// Signs a webhook body at `now` (unix seconds); the token is valid for five minutes.
    pub fn sign_webhook(&self, body: &[u8], now: i64) -> String {
        let claims = WebhookClaims {
            iss: self.api_key.clone(),
            sha256: body_digest(body),
            nbf: now - 5,
            exp: now + 300,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.api_secret),
        )
        .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies the `Authorization` value of a webhook against its body.
    pub fn verify_webhook(&self, authorization: &str, body: &[u8]) -> Result<(), TokenError> {
        let token = authorization
            .strip_prefix("Bearer ")
            .unwrap_or(authorization)
            .trim();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.api_key]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = 10;
        let data = jsonwebtoken::decode::<WebhookClaims>(
            token,
            &DecodingKey::from_secret(&self.api_secret),
            &validation,
        )
        .map_err(|_| TokenError::Invalid)?;
        if data.claims.sha256 != body_digest(body) {
            return Err(TokenError::Invalid);
        }
        Ok(())
    }
}

/// Seconds of clock skew tolerated on `exp`/`nbf` of an access token (LiveKit's verifier uses 60).
pub const ACCESS_TOKEN_LEEWAY_SECS: u64 = 60;

/// The `video` grant of an access token. Absent booleans take LiveKit's defaults (see the
/// `can_*` methods), so they stay `Option` to round-trip what the minter wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub room: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_join: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// Server API: manage participants and tracks of `room` (RoomService).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_admin: bool,
    /// Server API: list rooms.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_list: bool,
    /// Server API: create and delete rooms.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_create: bool,
}

impl VideoGrant {
    /// A grant to join `room` with LiveKit's default permissions (publish, subscribe, data).
    pub fn join(room: &str) -> Self {
        Self {
            room: room.to_owned(),
            room_join: true,
            ..Self::default()
        }
    }

    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }

    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }

    /// Defaults to `can_publish`, as in LiveKit.
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.can_publish())
    }

    pub fn can_update_own_metadata(&self) -> bool {
        self.can_update_own_metadata.unwrap_or(false)
    }
}

/// Claims of a LiveKit access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The API key that signed it.
    pub iss: String,
    /// The participant identity (absent from server API tokens).
    #[serde(default)]
    pub sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoGrant>,
    pub nbf: i64,
    pub exp: i64,
}

/// Why an access token does not admit its bearer to a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("token is malformed, forged, expired or signed with another key")]
    Invalid,
    #[error("token grants no room join")]
    NoRoomJoin,
    #[error("token names no room")]
    NoRoom,
    #[error("token names no identity")]
    NoIdentity,
}

impl LivekitKeys {
    /// Mints an access token for `identity` (display `name`) with `grant`, valid from `now`
    /// (unix seconds) for `ttl_secs`.
    pub fn mint_access_token(
        &self,
        identity: &str,
        name: &str,
        grant: VideoGrant,
        now: i64,
        ttl_secs: i64,
    ) -> String {
        let claims = AccessClaims {
            iss: self.api_key.clone(),
            sub: identity.to_owned(),
            name: name.to_owned(),
            metadata: String::new(),
            video: Some(grant),
            nbf: now,
            exp: now + ttl_secs,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&self.api_secret),
        )
        .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies signature (HS256 only), issuer, `exp` (required) and `nbf` with
    /// [`ACCESS_TOKEN_LEEWAY_SECS`] of leeway; then that the token grants joining a named room as
    /// a named identity.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, AccessError> {
        let claims = self.verify_signed(token)?;
        let grant = claims.video.as_ref().ok_or(AccessError::NoRoomJoin)?;
        if !grant.room_join {
            return Err(AccessError::NoRoomJoin);
        }
        if grant.room.trim().is_empty() {
            return Err(AccessError::NoRoom);
        }
        if claims.sub.trim().is_empty() {
            return Err(AccessError::NoIdentity);
        }
        Ok(claims)
    }

    /// A server API token: signature, issuer and validity as [`Self::verify_access_token`], no
    /// room join needed (what it may do is read from its grant by the caller).
    pub fn verify_api_token(&self, token: &str) -> Result<AccessClaims, AccessError> {
        self.verify_signed(token)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, AccessError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.api_key]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = ACCESS_TOKEN_LEEWAY_SECS;
        jsonwebtoken::decode::<AccessClaims>(
            token.trim(),
            &DecodingKey::from_secret(&self.api_secret),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|_| AccessError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let keys = LivekitKeys::new("key", "secret-secret-secret-secret-secret!");
        let body = br#"{"event":"participant_joined"}"#;
        let auth = keys.sign_webhook(body, now());
        assert_eq!(keys.verify_webhook(&auth, body), Ok(()));
        assert_eq!(
            keys.verify_webhook(&auth, br#"{"event":"participant_left"}"#),
            Err(TokenError::Invalid)
        );
        let other = LivekitKeys::new("key", "another-secret-another-secret-xx");
        assert_eq!(other.verify_webhook(&auth, body), Err(TokenError::Invalid));
        let wrong_key = LivekitKeys::new("other-key", "secret-secret-secret-secret-secret!");
        assert_eq!(
            wrong_key.verify_webhook(&auth, body),
            Err(TokenError::Invalid)
        );
        let stale = keys.sign_webhook(body, now() - 3600);
        assert_eq!(keys.verify_webhook(&stale, body), Err(TokenError::Invalid));
        assert_eq!(
            keys.verify_webhook("garbage", body),
            Err(TokenError::Invalid)
        );
    }

    const SECRET: &str = "secret-secret-secret-secret-secret!";

    #[test]
    fn an_access_token_round_trips_with_livekit_claim_names() {
        let keys = LivekitKeys::new("APIkey", SECRET);
        let token = keys.mint_access_token("42", "Kim", VideoGrant::join("room-7"), now(), 600);
        let claims = keys.verify_access_token(&token).unwrap();
        assert_eq!(claims.iss, "APIkey");
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.name, "Kim");
        assert_eq!(claims.exp - claims.nbf, 600);
        let grant = claims.video.unwrap();
        assert_eq!(grant.room, "room-7");
        assert!(grant.can_publish() && grant.can_subscribe() && grant.can_publish_data());
        assert!(!grant.can_update_own_metadata());

        // The payload uses LiveKit's names, so other LiveKit tooling reads it.
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["video"]["roomJoin"], true);
        assert_eq!(json["video"]["room"], "room-7");
        assert_eq!(json["sub"], "42");
    }

    #[test]
    fn grant_defaults_follow_livekit() {
        let grant: VideoGrant =
            serde_json::from_str(r#"{"room":"r","roomJoin":true,"canPublish":false}"#).unwrap();
        assert!(!grant.can_publish());
        assert!(
            !grant.can_publish_data(),
            "canPublishData defaults to canPublish"
        );
        assert!(grant.can_subscribe());
        let grant: VideoGrant = serde_json::from_str(
            r#"{"room":"r","roomJoin":true,"canPublish":false,"canPublishData":true}"#,
        )
        .unwrap();
        assert!(grant.can_publish_data());
    }

    #[test]
    fn expired_forged_foreign_and_grantless_access_tokens_fail() {
        let keys = LivekitKeys::new("APIkey", SECRET);
        let expired = keys.mint_access_token("42", "", VideoGrant::join("r"), now() - 3600, 600);
        assert_eq!(
            keys.verify_access_token(&expired),
            Err(AccessError::Invalid)
        );
        // Within the leeway an just-expired token still passes; beyond it, not.
        let just = keys.mint_access_token("42", "", VideoGrant::join("r"), now() - 630, 600);
        assert!(keys.verify_access_token(&just).is_ok());
        let later = keys.mint_access_token("42", "", VideoGrant::join("r"), now() - 700, 600);
        assert_eq!(keys.verify_access_token(&later), Err(AccessError::Invalid));

        let other_secret = LivekitKeys::new("APIkey", "another-secret-another-secret-xx");
        let forged = other_secret.mint_access_token("42", "", VideoGrant::join("r"), now(), 600);
        assert_eq!(keys.verify_access_token(&forged), Err(AccessError::Invalid));
        let other_key = LivekitKeys::new("OtherKey", SECRET);
        let foreign = other_key.mint_access_token("42", "", VideoGrant::join("r"), now(), 600);
        assert_eq!(
            keys.verify_access_token(&foreign),
            Err(AccessError::Invalid)
        );

        let no_join = keys.mint_access_token(
            "42",
            "",
            VideoGrant {
                room: "r".into(),
                ..VideoGrant::default()
            },
            now(),
            600,
        );
        assert_eq!(
            keys.verify_access_token(&no_join),
            Err(AccessError::NoRoomJoin)
        );
        let no_room = keys.mint_access_token("42", "", VideoGrant::join(""), now(), 600);
        assert_eq!(keys.verify_access_token(&no_room), Err(AccessError::NoRoom));
        let nobody = keys.mint_access_token("", "", VideoGrant::join("r"), now(), 600);
        assert_eq!(
            keys.verify_access_token(&nobody),
            Err(AccessError::NoIdentity)
        );
        assert_eq!(
            keys.verify_access_token("undefined"),
            Err(AccessError::Invalid)
        );
    }

    #[test]
    fn an_api_token_needs_no_join_and_carries_the_admin_grants() {
        let keys = LivekitKeys::new("APIkey", SECRET);
        let grant: VideoGrant =
            serde_json::from_str(r#"{"room":"r","roomAdmin":true,"roomList":true}"#).unwrap();
        assert!(grant.room_admin && grant.room_list && !grant.room_create);
        let token = keys.mint_access_token("backend", "", grant.clone(), now(), 600);
        assert_eq!(keys.verify_api_token(&token).unwrap().video, Some(grant));
        assert_eq!(
            keys.verify_access_token(&token),
            Err(AccessError::NoRoomJoin)
        );
        let forged = LivekitKeys::new("APIkey", "another-secret-another-secret-xx")
            .mint_access_token("backend", "", VideoGrant::default(), now(), 600);
        assert_eq!(keys.verify_api_token(&forged), Err(AccessError::Invalid));
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let keys = LivekitKeys::new("APIkey", SECRET);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss":"APIkey","sub":"42","nbf":now(),"video":{"room":"r","roomJoin":true}}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(keys.verify_access_token(&token), Err(AccessError::Invalid));
    }
}
