//! Signed webhooks to the configured URLs, in LiveKit's format: a protojson `WebhookEvent`
//! (`createdAt` in unix seconds, as a string), `Content-Type: application/webhook+json`, and
//! `Authorization: <JWT>` whose `sha256` claim is the base64 SHA-256 of the body.
//!
//! Events are queued without waiting (a full queue drops the event and counts it) and one
//! background task delivers them in order, retrying each with back-off, so neither media nor
//! signalling ever waits on a receiver.

use std::sync::Arc;
use std::time::Duration;

use livekit_protocol as lk;
use ppodok_tokens::livekit::LivekitKeys;
use rand::Rng;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::metrics::Metrics;

/// Events waiting for delivery before new ones are dropped.
pub const WEBHOOK_QUEUE: usize = 1024;

/// How deliveries are attempted.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The sending side; cheap to clone. With no URLs it does nothing.
#[derive(Clone)]
pub struct Webhooks {
    tx: Option<mpsc::Sender<lk::WebhookEvent>>,
    metrics: Metrics,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn event_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("EV_{tail}")
}

impl Webhooks {
    /// A sender that never sends (no URLs configured).
    pub fn disabled(metrics: Metrics) -> Self {
        Self { tx: None, metrics }
    }

    /// Starts the delivery task (on the current Tokio runtime) unless `urls` is empty.
    pub fn start(
        urls: Vec<String>,
        keys: LivekitKeys,
        policy: DeliveryPolicy,
        metrics: Metrics,
    ) -> Self {
        if urls.is_empty() {
            return Self::disabled(metrics);
        }
        let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
        let client = match reqwest::Client::builder().timeout(policy.timeout).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client: webhooks off");
                return Self::disabled(metrics);
            }
        };
        tokio::spawn(deliver_all(
            rx,
            Arc::new(urls),
            keys,
            policy,
            client,
            metrics.clone(),
        ));
        Self {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues an event without waiting; dropped (and counted) if the queue is full.
    pub fn emit(
        &self,
        event: &str,
        room: &lk::Room,
        participant: Option<&lk::ParticipantInfo>,
        track: Option<&lk::TrackInfo>,
    ) {
        let Some(tx) = &self.tx else {
            return;
        };
        let ev = lk::WebhookEvent {
            event: event.to_owned(),
            room: Some(room.clone()),
            participant: participant.cloned(),
            track: track.cloned(),
            id: event_id(),
            created_at: now_secs(),
            ..Default::default()
        };
        match tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) | Err(TrySendError::Closed(ev)) => {
                tracing::warn!(event = %ev.event, "webhook queue full: event dropped");
                self.metrics.webhooks_dropped.inc();
            }
        }
    }
}

async fn deliver_all(
    mut rx: mpsc::Receiver<lk::WebhookEvent>,
    urls: Arc<Vec<String>>,
    keys: LivekitKeys,
    policy: DeliveryPolicy,
    client: reqwest::Client,
    metrics: Metrics,
) {
    while let Some(ev) = rx.recv().await {
        let body = match serde_json::to_vec(&ev) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a webhook event");
                metrics.webhooks_failed.inc();
                continue;
            }
        };
        for url in urls.iter() {
            if deliver_one(&client, url, &keys, &body, &policy).await {
                metrics.webhooks_sent.inc();
            } else {
                tracing::warn!(%url, event = %ev.event, id = %ev.id, "webhook not delivered");
                metrics.webhooks_failed.inc();
            }
        }
    }
}

/// Posts one body to one URL, retrying with exponential back-off. True once a 2xx arrives.
async fn deliver_one(
    client: &reqwest::Client,
    url: &str,
    keys: &LivekitKeys,
    body: &[u8],
    policy: &DeliveryPolicy,
) -> bool {
    let mut backoff = policy.first_backoff;
    for attempt in 1..=policy.attempts.max(1) {
        // Signed per attempt: the signature's validity window starts now.
        let auth = keys.sign_webhook(body, now_secs());
        let result = client
            .post(url)
            .header("Content-Type", "application/webhook+json")
            .header("Authorization", auth)
            .body(body.to_vec())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => return true,
            Ok(resp) => {
                tracing::debug!(%url, attempt, status = %resp.status(), "webhook refused");
                // A 4xx other than 408/429 will not change on retry.
                let s = resp.status();
                if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 {
                    return false;
                }
            }
            Err(e) => tracing::debug!(%url, attempt, error = %e, "webhook post failed"),
        }
        if attempt < policy.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> lk::Room {
        lk::Room {
            name: "r".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn without_urls_nothing_is_queued_or_counted() {
        let metrics = Metrics::new();
        let hooks = Webhooks::start(
            Vec::new(),
            LivekitKeys::new("k", "0123456789abcdef0123456789abcdef"),
            DeliveryPolicy::default(),
            metrics.clone(),
        );
        hooks.emit("room_started", &room(), None, None);
        assert_eq!(metrics.webhooks_dropped.get(), 0);
        assert_eq!(metrics.webhooks_sent.get(), 0);
    }

    /// On a current-thread runtime the delivery task cannot run between the emits, so exactly
    /// the events beyond the queue's capacity are dropped, and emitting never waits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = Metrics::new();
        let hooks = Webhooks::start(
            vec!["http://127.0.0.1:9/unreachable".into()],
            LivekitKeys::new("k", "0123456789abcdef0123456789abcdef"),
            DeliveryPolicy::default(),
            metrics.clone(),
        );
        for _ in 0..WEBHOOK_QUEUE + 76 {
            hooks.emit("participant_joined", &room(), None, None);
        }
        assert_eq!(metrics.webhooks_dropped.get(), 76);
    }

    #[test]
    fn event_ids_are_unique_and_prefixed() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| event_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.starts_with("EV_") && id.len() == 19));
    }

    #[test]
    fn the_body_is_protojson() {
        let ev = lk::WebhookEvent {
            event: "participant_joined".into(),
            room: Some(room()),
            participant: Some(lk::ParticipantInfo {
                identity: "42".into(),
                ..Default::default()
            }),
            id: "EV_x".into(),
            created_at: 1_700_000_000,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["event"], "participant_joined");
        assert_eq!(v["createdAt"], "1700000000");
        assert_eq!(v["room"]["name"], "r");
        assert_eq!(v["participant"]["identity"], "42");
        assert_eq!(v["id"], "EV_x");
    }
}
