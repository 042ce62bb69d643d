//! Realtime: the STOMP endpoint and cross-replica fan-out. Events go through a bus — Redis pub/sub
//! when configured (every replica, the publisher included, receives them and fans out to its own
//! sessions), in-process otherwise.

pub mod hub;
pub mod metrics;
pub mod stomp;

use std::sync::Arc;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use hub::Hub;

/// What travels between replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Publish {
        topic: String,
        body: String,
        published_at_us: i64,
    },
    /// The member left the group: their sessions stop receiving its topics.
    RevokeMembership { member_id: i64, group_id: i64 },
    /// The member withdrew: their sessions close.
    RevokeMember { member_id: i64 },
    /// The login session ended (logout, refresh-token reuse): its STOMP sessions close.
    RevokeSession { sid: String },
}

pub struct Realtime {
    pub hub: Arc<Hub>,
    redis: Option<(Client, String)>,
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Realtime {
    pub fn local(hub: Arc<Hub>) -> Self {
        Self { hub, redis: None }
    }

    /// Publishes through Redis on `channel`; `listen` must run for events to come back in.
    pub fn redis(hub: Arc<Hub>, client: Client, channel: String) -> Self {
        Self {
            hub,
            redis: Some((client, channel)),
        }
    }

    pub async fn emit(&self, event: Event) {
        match &self.redis {
            None => self.hub.apply(&event),
            Some((client, channel)) => {
                let payload = serde_json::to_string(&event).expect("events serialize");
                let sent: Result<i64, _> = client.publish(channel.as_str(), payload).await;
                if let Err(e) = sent {
                    // The event still reaches this replica's own sessions.
                    tracing::error!(error = %e, "realtime publish failed; delivering locally only");
                    self.hub.apply(&event);
                }
            }
        }
    }

    /// Publishes a JSON body to a topic on every replica.
    pub async fn publish<T: Serialize>(&self, topic: String, body: &T) {
        let body = serde_json::to_string(body).expect("bodies serialize");
        self.emit(Event::Publish {
            topic,
            body,
            published_at_us: now_us(),
        })
        .await;
    }
}

/// Subscribes to the replica channel and applies every event to the local hub, until dropped.
pub async fn listen(
    url: &str,
    channel: String,
    hub: Arc<Hub>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let subscriber = Builder::from_config(Config::from_url(url)?)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
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
                    match serde_json::from_str::<Event>(&text) {
                        Ok(event) => hub.apply(&event),
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
