//! What the domain announces after a commit, and the port it announces it through.
//!
//! Domain modules (bookings, memberships, sessions, push reminders) publish [`Event`]s through a
//! [`Publisher`]; they never see how events travel. The `realtime` module implements the port
//! (this process's STOMP hub, and the other replicas through Redis), and the STOMP endpoint
//! (`stomp`) delivers to clients. So the domain depends on this module only, never on `realtime`.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// What travels to subscribers and between replicas.
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
    /// The member withdrew: their sessions close. `epoch`: the auth epoch of the revocation,
    /// for the session views (`sessions::LiveView`).
    RevokeMember {
        member_id: i64,
        #[serde(default)]
        epoch: i64,
    },
    /// The login session ended (logout, refresh-token reuse): its STOMP sessions close.
    RevokeSession {
        sid: String,
        #[serde(default)]
        epoch: i64,
    },
    /// The member's row changed (an edit): session views reload it.
    MemberChanged { member_id: i64, epoch: i64 },
}

/// Where the domain sends events once its transaction committed. Emitting never fails: an
/// implementation that cannot deliver now keeps or drops the event itself (and counts it).
pub trait Publisher: Send + Sync {
    fn emit(&self, event: Event) -> BoxFuture<'_, ()>;
}

/// Now, in unix microseconds (the publish stamp behind the fan-out latency histogram).
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Publishes a JSON body to a topic.
pub async fn publish<T: Serialize + ?Sized>(to: &dyn Publisher, topic: String, body: &T) {
    let body = serde_json::to_string(body).expect("bodies serialize");
    to.emit(Event::Publish {
        topic,
        body,
        published_at_us: now_us(),
    })
    .await;
}

/// The calendar topic of a group (the contract's `/topic/{groupId}`).
pub fn calendar_topic(group_id: i64) -> String {
    format!("/topic/{group_id}")
}
