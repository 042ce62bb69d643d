//! Push metrics (prefixed `ppodok_api_` by the registry).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct PushMetrics {
    /// Accepted by the provider (or handed to STOMP sessions), by target (`fcm`, `webpush`, `stomp`).
    pub sent: IntCounterVec,
    /// Failed attempts by reason (`rate_limited`, `server_error`, `timeout`, `unregistered`, …);
    /// a retried reminder counts once per failed attempt.
    pub failed: IntCounterVec,
    /// Devices deleted because the provider said they are gone.
    pub pruned: IntCounter,
    /// Reminders not sent because their room had started (the service was down or retries ran late).
    pub skipped_late: IntCounter,
    /// Claims whose sender vanished mid-call: not resent (at most once), counted here.
    pub outcome_unknown: IntCounter,
    /// Reminders waiting (pending or being sent), sampled by each replica's worker.
    pub queue_depth: IntGauge,
    /// Due time to provider acceptance.
    pub lag: Histogram,
}

impl PushMetrics {
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            sent: IntCounterVec::new(
                Opts::new(
                    "push_sent_total",
                    "Reminders accepted by a provider, by target",
                ),
                &["target"],
            )
            .expect("static metric"),
            failed: IntCounterVec::new(
                Opts::new("push_failed_total", "Failed reminder attempts, by reason"),
                &["reason"],
            )
            .expect("static metric"),
            pruned: IntCounter::new(
                "push_devices_pruned_total",
                "Devices deleted after 404/410/UNREGISTERED",
            )
            .expect("static metric"),
            skipped_late: IntCounter::new(
                "push_skipped_late_total",
                "Reminders dropped because their room had started",
            )
            .expect("static metric"),
            outcome_unknown: IntCounter::new(
                "push_outcome_unknown_total",
                "Reminders whose sender vanished mid-call (never resent)",
            )
            .expect("static metric"),
            queue_depth: IntGauge::new("push_queue_depth", "Reminders pending or being sent")
                .expect("static metric"),
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "push_lag_seconds",
                    "From a reminder's due time to its acceptance by the provider",
                )
                .buckets(vec![
                    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ]),
            )
            .expect("static metric"),
        };
        for c in [
            Box::new(m.sent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.failed.clone()),
            Box::new(m.pruned.clone()),
            Box::new(m.skipped_late.clone()),
            Box::new(m.outcome_unknown.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.lag.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        m
    }
}
