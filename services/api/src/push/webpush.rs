//! Standard Web Push: RFC 8030 delivery to the subscription's endpoint, RFC 8291 `aes128gcm`
//! payload encryption, RFC 8292 VAPID (ES256). The primitives (P-256 ECDH and ECDSA, HKDF-SHA256,
//! AES-128-GCM) come from `ring`, the library rustls already links: no second crypto stack.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use ring::{aead, agreement, hkdf};
use sha2::{Digest, Sha256};

use super::sender::{self, Delivery, Device, Notification, Sender};
use crate::config::push::WebPushSettings;

/// One record holds the whole payload (reminders are a few hundred bytes).
const RECORD_SIZE: u32 = 4096;
/// Longest plaintext that fits one record: rs − 16 (tag) − 1 (delimiter).
const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 17;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebPushError {
    #[error("the VAPID key is not a P-256 private key in PKCS#8 PEM")]
    BadVapidKey,
    #[error("the subscription keys are malformed")]
    BadSubscriptionKeys,
    #[error("the payload does not fit one record")]
    TooLarge,
    #[error("crypto failure")]
    Crypto,
}

/// The VAPID key pair (the server's identity towards push services).
pub struct Vapid {
    key: EcdsaKeyPair,
    /// The uncompressed public point, base64url: what browsers pass as `applicationServerKey`.
    public_b64: String,
    subject: String,
}

impl Vapid {
    pub fn from_pem(pem: &str, subject: &str) -> Result<Self, WebPushError> {
        let der = pem_body(pem, "PRIVATE KEY").ok_or(WebPushError::BadVapidKey)?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .map_err(|_| WebPushError::BadVapidKey)?;
        let public_b64 = B64.encode(key.public_key().as_ref());
        Ok(Self {
            key,
            public_b64,
            subject: subject.to_owned(),
        })
    }

    pub fn public_key(&self) -> &str {
        &self.public_b64
    }

    /// `Authorization: vapid t=<JWT>, k=<public key>` for an endpoint's origin (RFC 8292 §2–3).
    pub fn authorization(&self, endpoint: &reqwest::Url) -> Result<String, WebPushError> {
        let audience = endpoint.origin().ascii_serialization();
        let exp = chrono::Utc::now().timestamp() + 12 * 3600;
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = B64.encode(
            serde_json::json!({ "aud": audience, "exp": exp, "sub": self.subject }).to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| WebPushError::Crypto)?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            B64.encode(signature.as_ref()),
            self.public_b64
        ))
    }
}

/// The DER inside a PEM block labelled `label`.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Decodes the subscription's `p256dh` (65-byte uncompressed point) and `auth` (16 bytes).
pub fn subscription_keys(p256dh: &str, auth: &str) -> Result<(Vec<u8>, Vec<u8>), WebPushError> {
    let decode = |s: &str| {
        B64.decode(s.trim().trim_end_matches('='))
            .map_err(|_| WebPushError::BadSubscriptionKeys)
    };
    let (public, auth) = (decode(p256dh)?, decode(auth)?);
    if public.len() != 65 || public[0] != 0x04 || auth.len() != 16 {
        return Err(WebPushError::BadSubscriptionKeys);
    }
    // A point not on the curve is refused here rather than at every send.
    let probe =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &SystemRandom::new())
            .map_err(|_| WebPushError::Crypto)?;
    agreement::agree_ephemeral(
        probe,
        &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &public),
        |_| (),
    )
    .map_err(|_| WebPushError::BadSubscriptionKeys)?;
    Ok((public, auth))
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Result<Vec<u8>, WebPushError> {
    let mut out = vec![0u8; len];
    prk.expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| WebPushError::Crypto)?;
    Ok(out)
}

/// Encrypts `plaintext` for a subscription (RFC 8291 §3–4, RFC 8188 `aes128gcm`, one record).
pub fn encrypt(
    ua_public: &[u8],
    auth_secret: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLarge);
    }
    let rng = SystemRandom::new();
    let as_private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| WebPushError::Crypto)?;
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| WebPushError::Crypto)?;
    let ecdh_secret = agreement::agree_ephemeral(
        as_private,
        &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public),
        |s| s.to_vec(),
    )
    .map_err(|_| WebPushError::BadSubscriptionKeys)?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| WebPushError::Crypto)?;

    // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0x00 || ua_public || as_public, 32)
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(&ecdh_secret);
    let ikm = hkdf_expand(
        &prk_key,
        &[b"WebPush: info\0", ua_public, as_public.as_ref()],
        32,
    )?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek = hkdf_expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = hkdf_expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;

    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| WebPushError::Crypto)?,
    );
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(0x02); // the last (and only) record's delimiter
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| WebPushError::Crypto)?;
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| WebPushError::Crypto)?;

    // Header: salt (16) | rs (u32 BE) | idlen (1) | keyid = the server's ephemeral public key.
    let keyid = as_public.as_ref();
    let mut body = Vec::with_capacity(21 + keyid.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(keyid.len() as u8);
    body.extend_from_slice(keyid);
    body.extend_from_slice(&record);
    Ok(body)
}

pub struct WebPushSender {
    http: reqwest::Client,
    vapid: Vapid,
}

impl WebPushSender {
    /// None when no VAPID key is configured.
    pub fn from_settings(
        s: &WebPushSettings,
        http: reqwest::Client,
    ) -> anyhow::Result<Option<Self>> {
        let pem = if !s.vapid_private_key.is_empty() {
            s.vapid_private_key.expose().to_owned()
        } else if !s.vapid_private_key_file.trim().is_empty() {
            std::fs::read_to_string(s.vapid_private_key_file.trim()).map_err(|e| {
                anyhow::anyhow!("push.webpush.vapid_private_key_file unreadable: {e}")
            })?
        } else {
            return Ok(None);
        };
        let vapid =
            Vapid::from_pem(&pem, &s.subject).map_err(|e| anyhow::anyhow!("push.webpush: {e}"))?;
        Ok(Some(Self { http, vapid }))
    }

    pub fn public_key(&self) -> &str {
        self.vapid.public_key()
    }
}

/// `Topic` (RFC 8030 §5.4): at most 32 URL-safe characters; a newer message with the same topic
/// replaces an undelivered one at the push service.
fn topic(tag: &str) -> String {
    hex::encode(Sha256::digest(tag.as_bytes()))[..32].to_owned()
}

#[async_trait::async_trait]
impl Sender for WebPushSender {
    async fn send(&self, device: &Device, n: &Notification) -> Delivery {
        let Ok(endpoint) = reqwest::Url::parse(&device.token) else {
            return Delivery::Gone {
                reason: "bad_endpoint",
            };
        };
        let (Some(p256dh), Some(auth)) = (&device.p256dh, &device.auth_secret) else {
            return Delivery::Gone {
                reason: "bad_subscription",
            };
        };
        let Ok((ua_public, auth)) = subscription_keys(p256dh, auth) else {
            return Delivery::Gone {
                reason: "bad_subscription",
            };
        };
        let payload = serde_json::to_vec(n).expect("notifications serialize");
        let body = match encrypt(&ua_public, &auth, &payload) {
            Ok(b) => b,
            Err(_) => return Delivery::Rejected { reason: "encrypt" },
        };
        let Ok(authorization) = self.vapid.authorization(&endpoint) else {
            return Delivery::Rejected { reason: "vapid" };
        };
        let ttl = n.ttl_secs.max(0);
        let resp = self
            .http
            .post(endpoint)
            .header("TTL", ttl.to_string())
            .header("Urgency", "high")
            .header("Topic", topic(&n.tag))
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let after = sender::retry_after(r.headers(), chrono::Utc::now());
                sender::classify_status(r.status().as_u16(), after)
            }
            Err(e) => sender::network_failure(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            subscription_keys("AAAA", "AAAA"),
            Err(WebPushError::BadSubscriptionKeys)
        );
        let not_on_curve = B64.encode([4u8; 65]);
        let auth = B64.encode([1u8; 16]);
        assert_eq!(
            subscription_keys(&not_on_curve, &auth),
            Err(WebPushError::BadSubscriptionKeys)
        );
        assert!(Vapid::from_pem("nope", "mailto:a@b").is_err());
    }

    #[test]
    fn topics_are_short_and_url_safe() {
        let t = topic("reminder:1:before");
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
