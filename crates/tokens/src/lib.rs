//! Token formats the services issue and verify.
//!
//! Member tokens are HS256 JWTs with a `typ` claim, so an access token and a refresh token can never
//! stand in for each other, and a `sid` (session family) claim, so one device's session can be
//! revoked without touching another's.

pub mod livekit;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// Claims of a member token. `memberId` is kept for clients that read it, as the old tokens had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberClaims {
    pub sub: String,
    #[serde(rename = "memberId")]
    pub member_id: i64,
    pub typ: TokenKind,
    /// Session family: every refresh rotation of one login keeps it.
    pub sid: String,
    /// Unique id of this very token; the session store remembers the current refresh `jti`.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed, forged or expired")]
    Invalid,
    #[error("token is of the wrong kind")]
    WrongKind,
}

/// Issues and verifies member tokens with one HMAC secret.
#[derive(Clone)]
pub struct MemberTokenCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    access_ttl_secs: i64,
    refresh_ttl_secs: i64,
}

impl MemberTokenCodec {
    pub fn new(secret: &[u8], issuer: &str, access_ttl_secs: i64, refresh_ttl_secs: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_owned(),
            access_ttl_secs,
            refresh_ttl_secs,
        }
    }

    pub fn refresh_ttl_secs(&self) -> i64 {
        self.refresh_ttl_secs
    }

    pub fn access_ttl_secs(&self) -> i64 {
        self.access_ttl_secs
    }

    /// Issues a token of `kind` for `member_id` in session `sid`, valid from `now` (unix seconds).
    pub fn issue(
        &self,
        member_id: i64,
        kind: TokenKind,
        sid: &str,
        now: i64,
    ) -> (String, MemberClaims) {
        let ttl = match kind {
            TokenKind::Access => self.access_ttl_secs,
            TokenKind::Refresh => self.refresh_ttl_secs,
        };
        let claims = MemberClaims {
            sub: member_id.to_string(),
            member_id,
            typ: kind,
            sid: sid.to_owned(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iat: now,
            exp: now + ttl,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(
            &header,
            &IssuedClaims {
                claims: &claims,
                iss: &self.issuer,
            },
            &self.encoding,
        )
        .expect("HS256 encoding of plain claims cannot fail");
        (token, claims)
    }

    /// Verifies signature, issuer, expiry and kind.
    pub fn verify(&self, token: &str, expected: TokenKind) -> Result<MemberClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<MemberClaims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.typ != expected {
            return Err(TokenError::WrongKind);
        }
        Ok(data.claims)
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    #[serde(flatten)]
    claims: &'a MemberClaims,
    iss: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> MemberTokenCodec {
        MemberTokenCodec::new(b"0123456789abcdef0123456789abcdef", "ppodok-test", 60, 600)
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn access_token_round_trips() {
        let c = codec();
        let (t, claims) = c.issue(7, TokenKind::Access, "s1", now());
        assert_eq!(c.verify(&t, TokenKind::Access).unwrap(), claims);
        assert_eq!(claims.member_id, 7);
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn refresh_is_never_access_and_vice_versa() {
        let c = codec();
        let (r, _) = c.issue(7, TokenKind::Refresh, "s1", now());
        let (a, _) = c.issue(7, TokenKind::Access, "s1", now());
        assert_eq!(c.verify(&r, TokenKind::Access), Err(TokenError::WrongKind));
        assert_eq!(c.verify(&a, TokenKind::Refresh), Err(TokenError::WrongKind));
    }

    #[test]
    fn expired_forged_and_foreign_tokens_fail() {
        let c = codec();
        let (old, _) = c.issue(7, TokenKind::Access, "s1", now() - 3600);
        assert_eq!(c.verify(&old, TokenKind::Access), Err(TokenError::Invalid));
        let other =
            MemberTokenCodec::new(b"another-secret-another-secret-xx", "ppodok-test", 60, 600);
        let (forged, _) = other.issue(7, TokenKind::Access, "s1", now());
        assert_eq!(
            c.verify(&forged, TokenKind::Access),
            Err(TokenError::Invalid)
        );
        let other_issuer =
            MemberTokenCodec::new(b"0123456789abcdef0123456789abcdef", "elsewhere", 60, 600);
        let (foreign, _) = other_issuer.issue(7, TokenKind::Access, "s1", now());
        assert_eq!(
            c.verify(&foreign, TokenKind::Access),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            c.verify("undefined", TokenKind::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn every_token_has_its_own_jti() {
        let c = codec();
        let (_, a) = c.issue(7, TokenKind::Refresh, "s1", now());
        let (_, b) = c.issue(7, TokenKind::Refresh, "s1", now());
        assert_ne!(a.jti, b.jti);
    }
}
