//! Realtime metrics, registered in the service's Prometheus registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct RealtimeMetrics {
    pub sessions: IntGauge,
    pub subscriptions: IntGauge,
    pub messages_in: IntCounter,
    pub messages_out: IntCounter,
    pub slow_consumers: IntCounter,
    pub fanout_latency: Histogram,
}

impl RealtimeMetrics {
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            sessions: IntGauge::new("stomp_sessions", "Connected STOMP sessions")
                .expect("static metric"),
            subscriptions: IntGauge::new("stomp_subscriptions", "Active STOMP subscriptions")
                .expect("static metric"),
            messages_in: IntCounter::new("stomp_frames_in_total", "STOMP frames received")
                .expect("static metric"),
            messages_out: IntCounter::new("stomp_messages_out_total", "STOMP MESSAGE frames sent")
                .expect("static metric"),
            slow_consumers: IntCounter::new(
                "stomp_slow_consumers_total",
                "Sessions dropped for not reading",
            )
            .expect("static metric"),
            fanout_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "stomp_fanout_latency_seconds",
                    "From publish to the frame written to the socket",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .expect("static metric"),
        };
        for c in [
            Box::new(m.sessions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.subscriptions.clone()),
            Box::new(m.messages_in.clone()),
            Box::new(m.messages_out.clone()),
            Box::new(m.slow_consumers.clone()),
            Box::new(m.fanout_latency.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        m
    }
}
