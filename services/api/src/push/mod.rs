//! Push reminders: "your study room starts soon" on every device of a booked member, exactly once.
//!
//! - [`devices`]: FCM tokens and Web Push subscriptions, several per member; a device registered by
//!   another account moves to it (and drops reminders queued for its previous owner).
//! - [`prefs`]: each member's choice (on/off, minutes before, at the start too).
//! - [`queue`]: a leased job turns due bookings into outbox rows `push_reminders`, unique per
//!   (booking, kind, target), target = a device or the member's STOMP sessions. Rows reference the
//!   reservation and the device with `ON DELETE CASCADE`: cancelling, leaving a group, withdrawing or
//!   pruning a device removes what was pending, in the same transaction.
//! - [`worker`]: every replica claims due rows one by one (a compare-and-set to `sending` with a fresh
//!   attempt id, committed before the provider call) and sends them through a [`sender::Sender`]:
//!   [`fcm`] (HTTP v1) or [`webpush`] (RFC 8291/8292). A claim whose sender vanished is never resent
//!   (at most once), see `worker`.

pub mod devices;
pub mod entities;
pub mod fcm;
pub mod metrics;
pub mod prefs;
pub mod queue;
pub mod sender;
pub mod webpush;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::push::PushSettings;
use metrics::PushMetrics;
use sender::Sender;

/// The STOMP destination members subscribe to for foreground reminders.
pub const USER_NOTIFICATIONS: &str = "/user/queue/notifications";

/// The hub topic of one member's notification queue (never subscribable by name: the STOMP layer
/// maps `/user/queue/notifications` to the caller's own).
pub fn member_topic(member_id: i64) -> String {
    format!("/user/{member_id}/queue/notifications")
}

/// The push service's configured providers and shared state.
pub struct Push {
    pub settings: PushSettings,
    pub fcm: Option<Arc<fcm::FcmSender>>,
    pub webpush: Option<Arc<webpush::WebPushSender>>,
    pub metrics: PushMetrics,
    /// Wakes this replica's worker (new rows queued).
    pub wake: Arc<Notify>,
}

impl Push {
    pub fn new(settings: PushSettings, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 5)))
            .build()?;
        let fcm = fcm::FcmSender::from_settings(&settings.fcm, http.clone())?.map(Arc::new);
        let webpush =
            webpush::WebPushSender::from_settings(&settings.webpush, http.clone())?.map(Arc::new);
        if settings.enabled {
            tracing::info!(
                fcm = fcm.is_some(),
                webpush = webpush.is_some(),
                "push reminders"
            );
        }
        Ok(Self {
            settings,
            fcm,
            webpush,
            metrics: PushMetrics::register(registry),
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn vapid_public_key(&self) -> Option<&str> {
        self.webpush.as_ref().map(|w| w.public_key())
    }

    /// The sender for a device kind, when that provider is configured.
    pub fn sender(&self, kind: &str) -> Option<&dyn Sender> {
        match kind {
            sender::KIND_FCM => self.fcm.as_deref().map(|s| s as &dyn Sender),
            sender::KIND_WEBPUSH => self.webpush.as_deref().map(|s| s as &dyn Sender),
            _ => None,
        }
    }

    /// Device kinds reminders can be sent to.
    pub fn deliverable_kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.fcm.is_some() {
            kinds.push(sender::KIND_FCM);
        }
        if self.webpush.is_some() {
            kinds.push(sender::KIND_WEBPUSH);
        }
        kinds
    }
}
