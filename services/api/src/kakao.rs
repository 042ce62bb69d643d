//! Kakao's OAuth and user API, at configured URLs (tests point them at a local server that plays
//! Kakao's documented protocol).

use std::time::Duration;

use serde::Deserialize;

use crate::config::KakaoSettings;

#[derive(Debug, thiserror::Error)]
pub enum KakaoError {
    /// Kakao refused the request (bad or used authorisation code, unknown user, bad key).
    #[error("kakao rejected the request: {status} {body}")]
    Rejected { status: u16, body: String },
    /// Kakao could not be reached or answered with a server error or garbage.
    #[error("kakao unavailable: {0}")]
    Unavailable(String),
}

/// What we keep of a Kakao account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KakaoProfile {
    pub id: String,
    pub nickname: Option<String>,
    pub profile_image_url: Option<String>,
    pub email: Option<String>,
}

#[derive(Clone)]
pub struct KakaoClient {
    http: reqwest::Client,
    settings: KakaoSettings,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct UserResponse {
    id: i64,
    #[serde(default)]
    kakao_account: Option<KakaoAccount>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct KakaoAccount {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    profile_image_url: Option<String>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    profile_image: Option<String>,
}

#[derive(Deserialize)]
struct KakaoErrorBody {
    #[serde(default)]
    code: Option<i64>,
}

/// Kakao's "not a registered user" (-101): the app link is already gone, so unlink is done.
const NOT_REGISTERED_USER: i64 = -101;

impl KakaoClient {
    pub fn new(settings: KakaoSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .build()
            .expect("reqwest client with static settings");
        Self { http, settings }
    }

    async fn check(
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, KakaoError> {
        let resp = resp.map_err(|e| KakaoError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        if status.is_client_error() {
            Err(KakaoError::Rejected {
                status: status.as_u16(),
                body,
            })
        } else {
            Err(KakaoError::Unavailable(format!("{status} {body}")))
        }
    }

    /// Exchanges an authorisation code for the user's profile (token endpoint, then user-info).
    pub async fn profile_for_code(&self, code: &str) -> Result<KakaoProfile, KakaoError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.settings.rest_api_key.as_str()),
            ("redirect_uri", self.settings.redirect_uri.as_str()),
            ("code", code),
        ];
        if !self.settings.client_secret.is_empty() {
            form.push(("client_secret", self.settings.client_secret.as_str()));
        }
        let resp = Self::check(
            self.http
                .post(&self.settings.token_url)
                .form(&form)
                .send()
                .await,
        )
        .await?;
        let token: TokenResponse = resp
            .json()
            .await
            .map_err(|e| KakaoError::Unavailable(e.to_string()))?;

        let resp = Self::check(
            self.http
                .get(&self.settings.user_info_url)
                .bearer_auth(&token.access_token)
                .send()
                .await,
        )
        .await?;
        let user: UserResponse = resp
            .json()
            .await
            .map_err(|e| KakaoError::Unavailable(e.to_string()))?;
        let account_profile = user.kakao_account.as_ref().and_then(|a| a.profile.as_ref());
        Ok(KakaoProfile {
            id: user.id.to_string(),
            nickname: account_profile
                .and_then(|p| p.nickname.clone())
                .or_else(|| user.properties.as_ref().and_then(|p| p.nickname.clone())),
            profile_image_url: account_profile
                .and_then(|p| p.profile_image_url.clone())
                .or_else(|| {
                    user.properties
                        .as_ref()
                        .and_then(|p| p.profile_image.clone())
                }),
            email: user.kakao_account.and_then(|a| a.email),
        })
    }

    /// Unlinks the user from our app with the admin key. Already-unlinked counts as success.
    pub async fn unlink(&self, kakao_user_id: &str) -> Result<(), KakaoError> {
        let resp = self
            .http
            .post(&self.settings.unlink_url)
            .header(
                "Authorization",
                format!("KakaoAK {}", self.settings.admin_key),
            )
            .form(&[("target_id_type", "user_id"), ("target_id", kakao_user_id)])
            .send()
            .await;
        match Self::check(resp).await {
            Ok(_) => Ok(()),
            Err(KakaoError::Rejected { status, body }) => {
                let code = serde_json::from_str::<KakaoErrorBody>(&body)
                    .ok()
                    .and_then(|b| b.code);
                if code == Some(NOT_REGISTERED_USER) {
                    Ok(())
                } else {
                    Err(KakaoError::Rejected { status, body })
                }
            }
            Err(e) => Err(e),
        }
    }
}
