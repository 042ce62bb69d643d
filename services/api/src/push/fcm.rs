//! FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an OAuth2 access token from
//! the service account's JWT bearer grant (RFC 7523, RS256), cached until five minutes before it
//! expires and shared by concurrent sends (one refresh at a time).

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::sender::{self, Delivery, Device, Notification, Sender};
use crate::config::push::{FcmSettings, Secret};

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A cached token is replaced this long before Google says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a Google service-account key file this sender needs.
#[derive(Deserialize)]
struct ServiceAccountFile {
    project_id: String,
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

pub struct FcmSender {
    http: reqwest::Client,
    project_id: String,
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_url: String,
    send_url: String,
    cached: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    expires_in: u64,
}

impl FcmSender {
    /// None when FCM is not configured; an error when it is, wrongly.
    pub fn from_settings(s: &FcmSettings, http: reqwest::Client) -> anyhow::Result<Option<Self>> {
        let (project_id, client_email, pem, key_id, token_url) =
            if !s.service_account_file.trim().is_empty() {
                let text = std::fs::read_to_string(s.service_account_file.trim()).map_err(|e| {
                    anyhow::anyhow!("push.fcm.service_account_file unreadable: {e}")
                })?;
                let file: ServiceAccountFile = serde_json::from_str(&text).map_err(|_| {
                    anyhow::anyhow!("push.fcm.service_account_file is not a service-account key")
                })?;
                // An explicitly configured token URL (a test's or a proxy's) wins over the file's.
                let token_url = if s.token_url.trim().is_empty() {
                    file.token_uri.unwrap_or_default()
                } else {
                    s.token_url.clone()
                };
                (
                    file.project_id,
                    file.client_email,
                    file.private_key,
                    file.private_key_id,
                    token_url,
                )
            } else if !s.private_key.is_empty() {
                (
                    s.project_id.clone(),
                    s.client_email.clone(),
                    s.private_key.clone(),
                    None,
                    s.token_url.clone(),
                )
            } else {
                return Ok(None);
            };
        if project_id.trim().is_empty() || client_email.trim().is_empty() {
            anyhow::bail!("push.fcm needs project_id and client_email with its private key");
        }
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes())
            .map_err(|_| anyhow::anyhow!("push.fcm private key is not an RSA key in PEM"))?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            s.base_url.trim_end_matches('/'),
            project_id
        );
        Ok(Some(Self {
            http,
            project_id,
            client_email,
            key_id,
            key,
            token_url,
            send_url,
            cached: Mutex::new(None),
        }))
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The cached access token, or a fresh one from the token endpoint.
    async fn access_token(&self) -> Result<Secret, Delivery> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        // Google checks iat/exp against real time, whatever clock the service schedules with.
        let iat = chrono::Utc::now().timestamp();
        let claims = GrantClaims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_url,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| Delivery::Rejected {
                reason: "oauth_signing",
            })?;
        let resp = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| sender::network_failure(&e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            tracing::warn!(status, "fcm oauth token request refused");
            let after = sender::retry_after(resp.headers(), chrono::Utc::now());
            return Err(Delivery::Retry {
                after,
                reason: "oauth",
            });
        }
        let token: TokenResponse = resp.json().await.map_err(|_| Delivery::Retry {
            after: None,
            reason: "oauth",
        })?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(REFRESH_MARGIN);
        *cached = Some((token.access_token.clone(), Instant::now() + lifetime));
        Ok(token.access_token)
    }

    async fn forget_token(&self) {
        *self.cached.lock().await = None;
    }

    /// The v1 message for a device.
    pub fn message(device: &Device, n: &Notification) -> Value {
        let ttl = n.ttl_secs.max(0);
        json!({
            "message": {
                "token": device.token,
                "notification": { "title": n.title, "body": n.body },
                "data": {
                    "type": "room_reminder",
                    "kind": n.kind,
                    "roomId": n.room_id.to_string(),
                    "groupId": n.group_id.to_string(),
                    "startTime": n.start_time,
                    "url": n.url,
                },
                "webpush": {
                    "headers": { "TTL": ttl.to_string(), "Urgency": "high" },
                    "notification": { "tag": n.tag },
                    "fcm_options": { "link": n.url },
                },
                "android": { "ttl": format!("{ttl}s"), "priority": "high", "collapse_key": n.tag },
            }
        })
    }
}

/// The FCM error code in an error body (`details[].errorCode`), if any.
fn fcm_error_code(body: &Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|d| d["errorCode"].as_str())
}

#[async_trait::async_trait]
impl Sender for FcmSender {
    async fn send(&self, device: &Device, n: &Notification) -> Delivery {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(d) => return d,
        };
        let resp = match self
            .http
            .post(&self.send_url)
            .bearer_auth(token.expose())
            .json(&Self::message(device, n))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return sender::network_failure(&e),
        };
        let status = resp.status().as_u16();
        let after = sender::retry_after(resp.headers(), chrono::Utc::now());
        if (200..300).contains(&status) {
            return Delivery::Accepted;
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match (status, fcm_error_code(&body)) {
            (_, Some("UNREGISTERED")) => Delivery::Gone {
                reason: "unregistered",
            },
            // The access token was refused (revoked, or expired early): fetch a new one next time.
            (401, _) => {
                self.forget_token().await;
                Delivery::Retry {
                    after: None,
                    reason: "unauthorized",
                }
            }
            (_, Some("INVALID_ARGUMENT")) if status == 400 => Delivery::Rejected {
                reason: "invalid_argument",
            },
            (_, Some("QUOTA_EXCEEDED")) => Delivery::Retry {
                after,
                reason: "rate_limited",
            },
            _ => sender::classify_status(status, after),
        }
    }
}
