//! Realtime: the `events::Publisher` of this process, fanning out to the STOMP sessions here (the
//! `hub`, served by the STOMP endpoint) and across replicas. An event reaches this process's own
//! sessions at once; with Redis it is also published on a channel every replica listens to (each
//! ignores what it published itself). A publish that fails (Redis unreachable or stalled) is kept,
//! in order, in a bounded queue that a background task sends once Redis answers again, so the other
//! replicas' subscribers get the event late rather than never (`realtime_publish_dropped_total`
//! counts what overflowed the queue).

pub mod hub;
pub mod metrics;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::events::Publisher;
pub use crate::events::{now_us, Event};
use crate::redis_link::RedisLink;
use hub::Hub;

/// Events kept while Redis cannot take them; older ones are dropped beyond this.
pub const MAX_PENDING_EVENTS: usize = 10_000;

/// Where events from the bus are applied in this process (the STOMP hub, the session view).
pub trait EventSink: Send + Sync {
    fn apply(&self, event: &Event);
}

impl EventSink for Hub {
    fn apply(&self, event: &Event) {
        Hub::apply(self, event)
    }
}

/// An event on the wire, tagged with the replica that published it.
#[derive(Serialize, Deserialize)]
struct Wire {
    origin: String,
    #[serde(flatten)]
    event: Event,
}

#[derive(Clone)]
pub struct Realtime {
    pub hub: Arc<Hub>,
    bus: Option<Arc<Bus>>,
}

struct Bus {
    link: Arc<RedisLink>,
    channel: String,
    origin: String,
    /// Serialised events not yet accepted by Redis, oldest first.
    pending: Mutex<VecDeque<String>>,
    metrics: BusMetrics,
}

#[derive(Clone)]
pub struct BusMetrics {
    pub pending: prometheus::IntGauge,
    pub dropped: prometheus::IntCounter,
    pub retried: prometheus::IntCounter,
}

impl BusMetrics {
    pub fn register(registry: &prometheus::Registry) -> Self {
        let m = Self {
            pending: prometheus::IntGauge::new(
                "realtime_publish_pending",
                "Events waiting for Redis to come back",
            )
            .expect("static metric"),
            dropped: prometheus::IntCounter::new(
                "realtime_publish_dropped_total",
                "Events dropped because the pending queue was full",
            )
            .expect("static metric"),
            retried: prometheus::IntCounter::new(
                "realtime_publish_retried_total",
                "Events published late, after Redis came back",
            )
            .expect("static metric"),
        };
        for c in [
            Box::new(m.pending.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.dropped.clone()),
            Box::new(m.retried.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        m
    }
}

impl Bus {
    fn enqueue(&self, payload: String) {
        let mut q = self.pending.lock().expect("pending poisoned");
        if q.len() >= MAX_PENDING_EVENTS {
            q.pop_front();
            self.metrics.dropped.inc();
        }
        q.push_back(payload);
        self.metrics.pending.set(q.len() as i64);
    }

    async fn send(&self, payload: String) -> bool {
        let channel = self.channel.as_str();
        self.link
            .run(|c| async move { c.publish::<i64, _, _>(channel, payload).await })
            .await
            .is_ok()
    }

    /// Sends queued events in order until the queue is empty or Redis fails again.
    async fn flush(&self) {
        loop {
            let Some(next) = self
                .pending
                .lock()
                .expect("pending poisoned")
                .front()
                .cloned()
            else {
                return;
            };
            if !self.link.is_up() && !self.link.ping().await {
                return;
            }
            if !self.send(next).await {
                return;
            }
            let mut q = self.pending.lock().expect("pending poisoned");
            q.pop_front();
            self.metrics.pending.set(q.len() as i64);
            self.metrics.retried.inc();
        }
    }
}

impl Realtime {
    pub fn local(hub: Arc<Hub>) -> Self {
        Self { hub, bus: None }
    }

    /// Publishes through Redis on `channel`; `listen` (with the same `origin`) must run for other
    /// replicas' events to come in, and `retry_pending` for failed publishes to be sent later.
    pub fn redis(
        hub: Arc<Hub>,
        link: Arc<RedisLink>,
        channel: String,
        origin: String,
        metrics: BusMetrics,
    ) -> Self {
        Self {
            hub,
            bus: Some(Arc::new(Bus {
                link,
                channel,
                origin,
                pending: Mutex::default(),
                metrics,
            })),
        }
    }

    pub async fn emit(&self, event: Event) {
        self.hub.apply(&event);
        let Some(bus) = &self.bus else { return };
        let payload = serde_json::to_string(&Wire {
            origin: bus.origin.clone(),
            event,
        })
        .expect("events serialize");
        // Behind queued events, a new one waits its turn: replicas see events in publish order.
        let queued = !bus.pending.lock().expect("pending poisoned").is_empty();
        if queued || !bus.send(payload.clone()).await {
            tracing::warn!("realtime publish deferred until Redis answers");
            bus.enqueue(payload);
        }
    }

    /// Publishes a JSON body to a topic on every replica.
    pub async fn publish<T: Serialize>(&self, topic: String, body: &T) {
        crate::events::publish(self, topic, body).await
    }

    /// Sends deferred publishes whenever Redis answers again, until aborted.
    pub fn retry_pending(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let bus = self.bus.clone()?;
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                bus.flush().await;
            }
        }))
    }
}

impl Publisher for Realtime {
    fn emit(&self, event: Event) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(Realtime::emit(self, event))
    }
}

/// Subscribes to the replica channel and applies every event to the local sinks, until dropped.
/// Events this replica published itself (`origin`) were applied when emitted and are skipped.
pub async fn listen(
    url: &str,
    channel: String,
    origin: String,
    sinks: Vec<Arc<dyn EventSink>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let subscriber = Builder::from_config(Config::from_url(url)?)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
        .build_subscriber_client()?;
    subscriber.init().await?;
    let _resubscribe = subscriber.manage_subscriptions();
    let mut rx = subscriber.message_rx();
    subscriber.subscribe(channel.as_str()).await?;
    Ok(tokio::spawn(async move {
        let _keep = subscriber;
        loop {
            match rx.recv().await {
                Ok(message) => {
                    let Some(text) = message.value.as_str() else {
                        continue;
                    };
                    match serde_json::from_str::<Wire>(&text) {
                        Ok(wire) if wire.origin == origin => {}
                        Ok(wire) => {
                            for sink in &sinks {
                                sink.apply(&wire.event);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable realtime event"),
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "realtime listener lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }))
}
