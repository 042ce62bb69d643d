//! Push settings (`[push]`, `[push.fcm]`, `[push.webpush]`). Key material is held in [`Secret`],
//! whose `Debug` never shows it.

use serde::Deserialize;

/// A string that is never printed: `Debug` shows whether it is set, not what it is.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushSettings {
    pub enabled: bool,
    pub queue_every_secs: u64,
    pub poll_millis: u64,
    pub concurrency: usize,
    pub lease_secs: i64,
    pub timeout_secs: u64,
    pub max_attempts: i32,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub start_grace_secs: i64,
    pub click_base_url: String,
    pub fcm: FcmSettings,
    pub webpush: WebPushSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FcmSettings {
    pub service_account_file: String,
    pub project_id: String,
    pub client_email: String,
    pub private_key: Secret,
    pub token_url: String,
    pub base_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebPushSettings {
    pub vapid_private_key: Secret,
    pub vapid_private_key_file: String,
    pub subject: String,
    /// Accept `http://` subscription endpoints (local push services in tests); https only otherwise.
    pub allow_http_endpoints: bool,
}

impl PushSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("push.concurrency must be at least 1".into());
        }
        if self.lease_secs <= self.timeout_secs as i64 {
            return Err("push.lease_secs must exceed push.timeout_secs (a live sender must never look dead)".into());
        }
        if self.max_attempts < 1 {
            return Err("push.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_in_debug() {
        let mut s = crate::config::Settings::defaults();
        s.push.fcm.private_key = Secret::new("-----BEGIN PRIVATE KEY-----\nMIIsecret\n");
        s.push.webpush.vapid_private_key = Secret::new("vapid-secret-material");
        let shown = format!("{s:?}");
        assert!(!shown.contains("MIIsecret") && !shown.contains("vapid-secret-material"));
        assert!(shown.contains("<redacted>"));
        assert_eq!(format!("{:?}", Secret::default()), "<unset>");
    }
}
