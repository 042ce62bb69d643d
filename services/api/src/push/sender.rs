//! One interface for every push provider: a device, a notification, and what became of it.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub const KIND_FCM: &str = "fcm";
pub const KIND_WEBPUSH: &str = "webpush";

/// Where a notification goes. The token/endpoint is a credential of the member's device: no `Debug`.
pub struct Device {
    pub id: i64,
    pub kind: String,
    /// FCM registration token, or the Web Push subscription endpoint.
    pub token: String,
    /// Web Push: the subscription's P-256 public key (uncompressed point) and auth secret, base64url.
    pub p256dh: Option<String>,
    pub auth_secret: Option<String>,
}

/// What a device shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// Opened on click.
    pub url: String,
    /// Same reminder, same tag: a device shows one notification per tag.
    pub tag: String,
    pub kind: String,
    pub room_id: i64,
    pub group_id: i64,
    /// Service-zone local start, the contract's format.
    pub start_time: String,
    /// Undelivered after this many seconds the provider drops it (the room has started).
    #[serde(skip)]
    pub ttl_secs: i64,
}

/// The outcome of one provider call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The provider took it.
    Accepted,
    /// Try again later (429, 5xx, network): after `after` when the provider said so.
    Retry {
        after: Option<Duration>,
        reason: &'static str,
    },
    /// The device is gone (404, 410, `UNREGISTERED`): drop the reminder and the device.
    Gone { reason: &'static str },
    /// Refused for good for another reason (a malformed token, a rejected payload).
    Rejected { reason: &'static str },
}

#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, device: &Device, notification: &Notification) -> Delivery;
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(raw).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The common part of both providers' answers.
pub fn classify_status(status: u16, retry: Option<Duration>) -> Delivery {
    match status {
        200..=299 => Delivery::Accepted,
        404 | 410 => Delivery::Gone {
            reason: if status == 404 { "not_found" } else { "gone" },
        },
        429 => Delivery::Retry {
            after: retry,
            reason: "rate_limited",
        },
        500..=599 => Delivery::Retry {
            after: retry,
            reason: "server_error",
        },
        413 => Delivery::Rejected {
            reason: "payload_too_large",
        },
        _ => Delivery::Rejected { reason: "rejected" },
    }
}

/// A network failure or timeout is worth a retry.
pub fn network_failure(e: &reqwest::Error) -> Delivery {
    Delivery::Retry {
        after: None,
        reason: if e.is_timeout() { "timeout" } else { "network" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 2026 00:00:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(classify_status(201, None), Delivery::Accepted);
        assert!(matches!(classify_status(410, None), Delivery::Gone { .. }));
        assert!(matches!(classify_status(404, None), Delivery::Gone { .. }));
        assert!(matches!(classify_status(503, None), Delivery::Retry { .. }));
        assert!(matches!(
            classify_status(400, None),
            Delivery::Rejected { .. }
        ));
    }
}
