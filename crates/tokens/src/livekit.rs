//! LiveKit's webhook signature: the sender puts a JWT (HS256, signed with the API secret, `iss` =
//! API key) in the `Authorization` header whose `sha256` claim is the base64 SHA-256 of the body.

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
}
