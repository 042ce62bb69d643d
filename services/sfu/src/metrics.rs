//! Prometheus metrics of the SFU, served as text on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::media::WireCounters;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub rooms: IntGauge,
    pub participants: IntGauge,
    pub tracks: IntGauge,
    /// Signalling sessions alive (joined and not yet cleaned up).
    pub sessions: IntGauge,
    /// Tokio tasks alive in the SFU's runtime, sampled when `/metrics` is rendered.
    pub runtime_tasks: IntGauge,
    pub signal_connections: IntCounter,
    pub joins_refused: IntCounter,
    /// Labels: kind (audio|video), rid ("" when not simulcast).
    pub packets_in: IntCounterVec,
    pub bytes_in: IntCounterVec,
    /// Labels: kind.
    pub packets_out: IntCounterVec,
    pub bytes_out: IntCounterVec,
    /// Labels: reason (queue_full|write_failed).
    pub forward_drops: IntCounterVec,
    pub plis_sent: IntCounter,
    /// PLI/FIR received from subscribers.
    pub keyframe_requests_in: IntCounter,
    /// Relayed data packets a receiver missed (queue or channel buffer full).
    pub data_drops: IntCounter,
    pub data_relayed: IntCounter,
    /// Sessions dropped because their signalling queue was full.
    pub slow_sessions: IntCounter,
    /// Client messages ignored as malformed or out of place. Labels: what.
    pub bad_input: IntCounterVec,
    /// Webhook deliveries acknowledged with a 2xx, per URL.
    pub webhooks_sent: IntCounter,
    /// Webhook deliveries given up after their retries, per URL.
    pub webhooks_failed: IntCounter,
    /// Webhook events dropped because the delivery queue was full.
    pub webhooks_dropped: IntCounter,
    /// Signal resumes. Labels: outcome (detached: a socket dropped and the session waits;
    /// resumed; expired: no resume in the grace period; refused: a resume for a gone session).
    pub resumes: IntCounterVec,
    /// Server API calls. Labels: method, outcome (ok or the Twirp error code).
    pub twirp_requests: IntCounterVec,
    /// `refresh_token` messages sent to clients.
    pub tokens_refreshed: IntCounter,
    /// Joins refused by the placement check. Labels: reason (placed_elsewhere|draining).
    pub placement_refusals: IntCounterVec,
    /// Node registry commands that failed (Redis unreachable).
    pub registry_errors: IntCounter,
    /// 1 while the node drains (no new rooms).
    pub draining: IntGauge,
    /// Subscription changes a participant (or the server API) asked for. Labels: change
    /// (subscribe, unsubscribe).
    pub subscription_changes: IntCounterVec,
    /// Subscription permission updates sent to subscribers. Labels: allowed (true, false).
    pub permission_updates: IntCounterVec,
    /// Dynacast: `SubscribedQualityUpdate`s sent to publishers. Labels: top (the highest layer
    /// still wanted: q, h, f; none = the track's video is paused at the source).
    pub dynacast_updates: IntCounterVec,
    /// `SpeakersChanged` messages sent to rooms.
    pub speakers_updates: IntCounter,
    /// Connection quality levels reported to participants. Labels: quality.
    pub quality_reports: IntCounterVec,
    /// NACKs and retransmissions, counted by the media plane.
    pub wire: WireCounters,
    /// From a packet's arrival off the publisher's transport to its sealing for a subscriber (the
    /// socket send follows at the end of the read burst, see `media::outbox`).
    pub forward_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let metrics = Self {
            rooms: gauge("sfu_rooms", "Rooms with at least one participant"),
            participants: gauge("sfu_participants", "Connected participants"),
            tracks: gauge("sfu_tracks", "Published tracks"),
            sessions: gauge("sfu_sessions", "Signalling sessions alive"),
            runtime_tasks: gauge(
                "sfu_runtime_tasks",
                "Tokio tasks alive in the SFU's runtime and on its media threads (sampled per scrape)",
            ),
            signal_connections: counter(
                "sfu_signal_connections_total",
                "Signalling WebSockets accepted",
            ),
            joins_refused: counter(
                "sfu_joins_refused_total",
                "Connection attempts refused for a bad token",
            ),
            packets_in: counter_vec(
                "sfu_rtp_packets_in_total",
                "RTP packets received from publishers",
                &["kind", "rid"],
            ),
            bytes_in: counter_vec(
                "sfu_rtp_bytes_in_total",
                "RTP payload bytes received from publishers",
                &["kind", "rid"],
            ),
            packets_out: counter_vec(
                "sfu_rtp_packets_out_total",
                "RTP packets forwarded to subscribers",
                &["kind"],
            ),
            bytes_out: counter_vec(
                "sfu_rtp_bytes_out_total",
                "RTP payload bytes forwarded to subscribers",
                &["kind"],
            ),
            forward_drops: counter_vec(
                "sfu_forward_drops_total",
                "RTP packets not forwarded to a subscriber",
                &["reason"],
            ),
            plis_sent: counter(
                "sfu_plis_sent_total",
                "Keyframe requests (PLI) sent to publishers",
            ),
            keyframe_requests_in: counter(
                "sfu_keyframe_requests_in_total",
                "Keyframe requests (PLI/FIR) received from subscribers",
            ),
            data_drops: counter(
                "sfu_data_drops_total",
                "Relayed data packets a receiver missed",
            ),
            data_relayed: counter(
                "sfu_data_relayed_total",
                "Data packets accepted from clients for relay",
            ),
            slow_sessions: counter(
                "sfu_slow_sessions_total",
                "Sessions closed because their signalling queue overflowed",
            ),
            bad_input: counter_vec(
                "sfu_bad_input_total",
                "Client messages ignored as malformed or out of place",
                &["what"],
            ),
            webhooks_sent: counter(
                "sfu_webhooks_sent_total",
                "Webhook deliveries acknowledged by the receiver",
            ),
            webhooks_failed: counter(
                "sfu_webhooks_failed_total",
                "Webhook deliveries given up after retries",
            ),
            webhooks_dropped: counter(
                "sfu_webhooks_dropped_total",
                "Webhook events dropped because the delivery queue was full",
            ),
            resumes: counter_vec(
                "sfu_resumes_total",
                "Signal socket losses and resumes by outcome",
                &["outcome"],
            ),
            twirp_requests: counter_vec(
                "sfu_twirp_requests_total",
                "Server API (RoomService) calls by method and outcome",
                &["method", "outcome"],
            ),
            tokens_refreshed: counter(
                "sfu_tokens_refreshed_total",
                "Refreshed access tokens sent to clients",
            ),
            placement_refusals: counter_vec(
                "sfu_placement_refusals_total",
                "Joins refused because the room is placed on another node or this node drains",
                &["reason"],
            ),
            registry_errors: counter(
                "sfu_registry_errors_total",
                "Node registry commands that failed",
            ),
            draining: gauge(
                "sfu_draining",
                "1 while the node drains (takes no new rooms)",
            ),
            subscription_changes: counter_vec(
                "sfu_subscription_changes_total",
                "Subscription changes asked for by participants or the server API",
                &["change"],
            ),
            permission_updates: counter_vec(
                "sfu_subscription_permission_updates_total",
                "Subscription permission changes sent to subscribers",
                &["allowed"],
            ),
            dynacast_updates: counter_vec(
                "sfu_dynacast_updates_total",
                "SubscribedQualityUpdate messages sent to publishers, by the top layer still wanted",
                &["top"],
            ),
            speakers_updates: counter(
                "sfu_speakers_updates_total",
                "SpeakersChanged messages sent to rooms",
            ),
            quality_reports: counter_vec(
                "sfu_connection_quality_total",
                "Connection quality levels reported, per participant and report",
                &["quality"],
            ),
            wire: WireCounters {
                nacks_received: counter(
                    "sfu_nacks_received_total",
                    "RTCP NACK packets received from subscribers",
                ),
                nacked_packets: counter(
                    "sfu_nacked_packets_total",
                    "RTP packets subscribers asked for again in NACKs",
                ),
                nacks_sent: counter(
                    "sfu_nacks_sent_total",
                    "RTCP NACK packets sent to publishers for packets lost on the way in",
                ),
                retransmits: counter(
                    "sfu_rtp_retransmits_total",
                    "RTP packets sent again in answer to a NACK",
                ),
                nacks_throttled: counter(
                    "sfu_nacks_throttled_total",
                    "NACK packets dropped unanswered: a subscriber asked for more resends than its budget",
                ),
                peer_connections: gauge("sfu_peer_connections", "Server PeerConnections alive"),
                srtp_own: counter(
                    "sfu_srtp_own_total",
                    "Subscriber PeerConnections whose media the SFU protects itself",
                ),
                srtp_own_refused: counter(
                    "sfu_srtp_own_refused_total",
                    "Subscriber PeerConnections left to rtc's SRTP: the derived keys did not match",
                ),
            },
            forward_latency: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "sfu_forward_latency_seconds",
                        "Time from a packet's arrival to its sealing for a subscriber (sent at the end of its read burst)",
                    )
                    .buckets(vec![
                        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25,
                    ]),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique");
                h
            },
            registry,
        };
        // Series a dashboard or alert divides by exist from boot at 0, so `rate()` sees the first
        // increment and a quiet node shows 0 rather than no data. Simulcast rids appear when used.
        for kind in ["audio", "video"] {
            metrics.packets_in.with_label_values(&[kind, ""]);
            metrics.bytes_in.with_label_values(&[kind, ""]);
            metrics.packets_out.with_label_values(&[kind]);
            metrics.bytes_out.with_label_values(&[kind]);
        }
        for reason in ["queue_full", "write_failed"] {
            metrics.forward_drops.with_label_values(&[reason]);
        }
        for reason in ["placed_elsewhere", "draining"] {
            metrics.placement_refusals.with_label_values(&[reason]);
        }
        metrics
    }

    /// The text exposition; `media_thread_tasks` (the drivers on the media threads) counts in
    /// `sfu_runtime_tasks` with the current runtime's tasks.
    pub fn render(&self, media_thread_tasks: usize) -> String {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set((rt.metrics().num_alive_tasks() + media_thread_tasks) as i64);
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drivers on the media threads count in `sfu_runtime_tasks` beside the runtime's own
    /// tasks: the churn test reads a driver that outlives its PeerConnection there.
    #[tokio::test]
    async fn runtime_tasks_count_the_media_threads_drivers() {
        let text = Metrics::new().render(1000);
        let line = text
            .lines()
            .find(|l| l.starts_with("sfu_runtime_tasks "))
            .expect("the gauge is rendered");
        let tasks: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a value");
        assert!(tasks >= 1000.0, "{line}");
    }
}
