//! Local fan-out: which sessions of this process subscribe to which topics, each with a bounded
//! send queue. A session whose queue is full is a slow consumer and is disconnected, so memory
//! never grows with a client that does not read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};

use super::metrics::RealtimeMetrics;
use crate::events::Event;

/// Capacity of a session's outgoing queue, in messages.
pub const SEND_QUEUE: usize = 256;

/// A message for one subscription of one session.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub destination: Arc<str>,
    pub subscription: Arc<str>,
    pub body: Arc<str>,
    /// When the event was published (unix µs), for the fan-out latency histogram.
    pub published_at_us: i64,
}

struct SessionEntry {
    member_id: i64,
    sid: String,
    tx: mpsc::Sender<Outbound>,
    close: watch::Sender<Option<String>>,
}

#[derive(Default)]
struct HubState {
    sessions: HashMap<u64, SessionEntry>,
    /// topic → session → subscription ids
    topics: HashMap<Arc<str>, HashMap<u64, Vec<Arc<str>>>>,
    /// member → sessions open on this process
    per_member: HashMap<i64, usize>,
}

pub struct Hub {
    state: RwLock<HubState>,
    next_id: AtomicU64,
    pub metrics: RealtimeMetrics,
}

/// What a session task holds: its id, its queue and its close signal.
pub struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<Outbound>,
    pub closed: watch::Receiver<Option<String>>,
}

impl Hub {
    pub fn new(metrics: RealtimeMetrics) -> Self {
        Self {
            state: RwLock::default(),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    pub fn register(&self, member_id: i64, sid: &str) -> Registration {
        self.register_capped(member_id, sid, usize::MAX)
            .expect("no cap")
    }

    /// Registers a session unless the member already has `cap` open on this process.
    pub fn register_capped(&self, member_id: i64, sid: &str, cap: usize) -> Option<Registration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let (close, closed) = watch::channel(None);
        let mut st = self.state.write().expect("hub poisoned");
        let open = st.per_member.entry(member_id).or_insert(0);
        if *open >= cap {
            return None;
        }
        *open += 1;
        st.sessions.insert(
            id,
            SessionEntry {
                member_id,
                sid: sid.to_owned(),
                tx,
                close,
            },
        );
        self.metrics.sessions.inc();
        Some(Registration { id, rx, closed })
    }

    pub fn unregister(&self, id: u64) {
        let mut st = self.state.write().expect("hub poisoned");
        if let Some(gone) = st.sessions.remove(&id) {
            self.metrics.sessions.dec();
            if let Some(open) = st.per_member.get_mut(&gone.member_id) {
                *open -= 1;
                if *open == 0 {
                    st.per_member.remove(&gone.member_id);
                }
            }
        }
        let mut removed = 0;
        st.topics.retain(|_, subs| {
            if let Some(ids) = subs.remove(&id) {
                removed += ids.len();
            }
            !subs.is_empty()
        });
        self.metrics.subscriptions.sub(removed as i64);
    }

    pub fn subscribe(&self, id: u64, topic: &str, subscription: &str) {
        let mut st = self.state.write().expect("hub poisoned");
        if !st.sessions.contains_key(&id) {
            return;
        }
        st.topics
            .entry(Arc::from(topic))
            .or_default()
            .entry(id)
            .or_default()
            .push(Arc::from(subscription));
        self.metrics.subscriptions.inc();
    }

    pub fn unsubscribe(&self, id: u64, topic: &str, subscription: &str) {
        let mut st = self.state.write().expect("hub poisoned");
        let Some(subs) = st.topics.get_mut(topic) else {
            return;
        };
        if let Some(ids) = subs.get_mut(&id) {
            let before = ids.len();
            ids.retain(|s| s.as_ref() != subscription);
            self.metrics.subscriptions.sub((before - ids.len()) as i64);
            if ids.is_empty() {
                subs.remove(&id);
            }
        }
        if subs.is_empty() {
            st.topics.remove(topic);
        }
    }

    /// Applies an event from the bus to this process's sessions.
    pub fn apply(&self, event: &Event) {
        match event {
            Event::Publish {
                topic,
                body,
                published_at_us,
            } => self.fan_out(topic, body, *published_at_us),
            Event::RevokeMembership {
                member_id,
                group_id,
            } => self.drop_group_topics(*member_id, *group_id),
            Event::RevokeMember { member_id, .. } => {
                self.close_where(|s| s.member_id == *member_id, "탈퇴한 회원이에요.");
            }
            Event::RevokeSession { sid, .. } => {
                self.close_where(|s| &s.sid == sid, "로그아웃된 세션이에요.");
            }
            Event::MemberChanged { .. } => {}
        }
    }

    fn fan_out(&self, topic: &str, body: &str, published_at_us: i64) {
        let mut slow = Vec::new();
        {
            let st = self.state.read().expect("hub poisoned");
            let Some(subs) = st.topics.get(topic) else {
                return;
            };
            let (destination, body): (Arc<str>, Arc<str>) =
                (Arc::from(public_destination(topic)), Arc::from(body));
            for (id, subscriptions) in subs {
                let Some(session) = st.sessions.get(id) else {
                    continue;
                };
                for subscription in subscriptions {
                    let message = Outbound {
                        destination: destination.clone(),
                        subscription: subscription.clone(),
                        body: body.clone(),
                        published_at_us,
                    };
                    if session.tx.try_send(message).is_err() {
                        slow.push(*id);
                        break;
                    }
                }
            }
        }
        for id in slow {
            self.metrics.slow_consumers.inc();
            self.close_where_id(id, "메시지를 제때 받지 못해 연결을 끊었어요.");
        }
    }

    fn drop_group_topics(&self, member_id: i64, group_id: i64) {
        let mut st = self.state.write().expect("hub poisoned");
        let ids: Vec<u64> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.member_id == member_id)
            .map(|(id, _)| *id)
            .collect();
        let exact = format!("/topic/{group_id}");
        let nested = format!("/topic/{group_id}/");
        let mut removed = 0;
        st.topics.retain(|topic, subs| {
            if topic.as_ref() == exact || topic.starts_with(&nested) {
                for id in &ids {
                    if let Some(list) = subs.remove(id) {
                        removed += list.len();
                    }
                }
            }
            !subs.is_empty()
        });
        self.metrics.subscriptions.sub(removed as i64);
    }

    fn close_where(&self, pred: impl Fn(&SessionEntry) -> bool, reason: &str) {
        let st = self.state.read().expect("hub poisoned");
        for s in st.sessions.values().filter(|s| pred(s)) {
            let _ = s.close.send(Some(reason.to_owned()));
        }
    }

    fn close_where_id(&self, id: u64, reason: &str) {
        let st = self.state.read().expect("hub poisoned");
        if let Some(s) = st.sessions.get(&id) {
            let _ = s.close.send(Some(reason.to_owned()));
        }
    }
}

/// The destination a client sees: a member's queue (`/user/{id}/queue/…`) is addressed to it as
/// `/user/queue/…`, the way it subscribed.
fn public_destination(topic: &str) -> std::borrow::Cow<'_, str> {
    if let Some((id, tail)) = topic
        .strip_prefix("/user/")
        .and_then(|rest| rest.split_once('/'))
    {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            return format!("/user/{tail}").into();
        }
    }
    topic.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(RealtimeMetrics::register(&prometheus::Registry::new()))
    }

    fn publish(topic: &str, body: &str) -> Event {
        Event::Publish {
            topic: topic.into(),
            body: body.into(),
            published_at_us: 0,
        }
    }

    #[test]
    fn only_subscribers_of_a_topic_receive_it() {
        let hub = hub();
        let mut a = hub.register(1, "s1");
        let mut b = hub.register(2, "s2");
        hub.subscribe(a.id, "/topic/7", "sub-a");
        hub.subscribe(b.id, "/topic/8", "sub-b");
        hub.apply(&publish("/topic/7", "{\"x\":1}"));
        let got = a.rx.try_recv().unwrap();
        assert_eq!(
            (got.subscription.as_ref(), got.body.as_ref()),
            ("sub-a", "{\"x\":1}")
        );
        assert!(b.rx.try_recv().is_err());
        hub.unsubscribe(a.id, "/topic/7", "sub-a");
        hub.apply(&publish("/topic/7", "{}"));
        assert!(a.rx.try_recv().is_err());
        assert_eq!(hub.metrics.subscriptions.get(), 1);
    }

    #[test]
    fn a_consumer_that_does_not_read_is_dropped_not_buffered() {
        let hub = hub();
        let slow = hub.register(1, "s1");
        let mut fast = hub.register(2, "s2");
        hub.subscribe(slow.id, "/topic/1", "s");
        hub.subscribe(fast.id, "/topic/1", "f");
        for i in 0..=SEND_QUEUE {
            hub.apply(&publish("/topic/1", &i.to_string()));
            // The fast one keeps up.
            assert!(fast.rx.try_recv().is_ok());
        }
        assert!(
            slow.closed.borrow().is_some(),
            "the slow session was told to close"
        );
        assert!(fast.closed.borrow().is_none());
        assert_eq!(hub.metrics.slow_consumers.get(), 1);
        hub.unregister(slow.id);
        assert_eq!(hub.metrics.sessions.get(), 1);
        assert_eq!(hub.metrics.subscriptions.get(), 1);
    }

    #[test]
    fn revocations_reach_the_right_sessions() {
        let hub = hub();
        let mut leaver = hub.register(1, "s1");
        let other_device = hub.register(1, "s2");
        let stranger = hub.register(2, "s3");
        hub.subscribe(leaver.id, "/topic/5", "cal");
        hub.subscribe(leaver.id, "/topic/5/presence", "presence");
        hub.subscribe(leaver.id, "/topic/6", "other");
        hub.apply(&Event::RevokeMembership {
            member_id: 1,
            group_id: 5,
        });
        hub.apply(&publish("/topic/5", "{}"));
        hub.apply(&publish("/topic/5/presence", "{}"));
        assert!(
            leaver.rx.try_recv().is_err(),
            "no more messages of the left group"
        );
        hub.apply(&publish("/topic/6", "{}"));
        assert!(leaver.rx.try_recv().is_ok(), "other groups still arrive");

        hub.apply(&Event::RevokeSession {
            sid: "s2".into(),
            epoch: 0,
        });
        assert!(other_device.closed.borrow().is_some());
        assert!(leaver.closed.borrow().is_none());
        hub.apply(&Event::RevokeMember {
            member_id: 1,
            epoch: 0,
        });
        assert!(leaver.closed.borrow().is_some());
        assert!(stranger.closed.borrow().is_none());
    }
}
