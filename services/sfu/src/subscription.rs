//! Subscription control as plain data: which published tracks a subscriber receives.
//!
//! A track is received when it is *available* (its media is flowing), *wanted* (the
//! subscriber's explicit `UpdateSubscription`, else the `autoSubscribe` of its join) and
//! *allowed* (the publisher's `SubscriptionPermission`). Each input says whether the downtrack
//! must now be added or removed; the session carries that out.

use std::collections::HashMap;

use livekit_protocol as lk;

/// A publisher's `SubscriptionPermission`: who may receive its tracks. The default allows all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    all: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    sid: String,
    identity: String,
    all_tracks: bool,
    track_sids: Vec<String>,
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            all: true,
            rules: Vec::new(),
        }
    }
}

/// Rules kept per publisher (a bound on what one client can make the server hold).
pub const MAX_PERMISSION_RULES: usize = 256;

impl Permissions {
    pub fn from_proto(p: &lk::SubscriptionPermission) -> Self {
        Self {
            all: p.all_participants,
            rules: p
                .track_permissions
                .iter()
                .take(MAX_PERMISSION_RULES)
                .map(|t| Rule {
                    sid: t.participant_sid.clone(),
                    identity: t.participant_identity.clone(),
                    all_tracks: t.all_tracks,
                    track_sids: t.track_sids.iter().take(64).cloned().collect(),
                })
                .collect(),
        }
    }

    /// Whether the subscriber (`sid`, `identity`) may receive `track_sid`.
    pub fn allows(&self, sid: &str, identity: &str, track_sid: &str) -> bool {
        self.all
            || self.rules.iter().any(|r| {
                let names = (!r.sid.is_empty() && r.sid == sid)
                    || (!r.identity.is_empty() && r.identity == identity);
                names && (r.all_tracks || r.track_sids.iter().any(|t| t == track_sid))
            })
    }
}

/// What the session must do to one downtrack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Available {
    allowed: bool,
}

/// One subscriber's subscriptions.
#[derive(Debug)]
pub struct Subscriptions {
    auto: bool,
    /// The subscriber's own choices, by track sid (they outlive a track's availability, so a
    /// choice made from the roster before the media arrives holds).
    wanted: HashMap<String, bool>,
    available: HashMap<String, Available>,
    active: std::collections::HashSet<String>,
}

/// Explicit choices kept per subscriber.
const MAX_CHOICES: usize = 4096;

impl Subscriptions {
    pub fn new(auto_subscribe: bool) -> Self {
        Self {
            auto: auto_subscribe,
            wanted: HashMap::new(),
            available: HashMap::new(),
            active: Default::default(),
        }
    }

    pub fn is_active(&self, track_sid: &str) -> bool {
        self.active.contains(track_sid)
    }

    fn reconcile(&mut self, track_sid: &str) -> Option<Change> {
        let should = self
            .available
            .get(track_sid)
            .is_some_and(|a| a.allowed && self.wanted.get(track_sid).copied().unwrap_or(self.auto));
        match (should, self.active.contains(track_sid)) {
            (true, false) => {
                self.active.insert(track_sid.to_owned());
                Some(Change::Subscribe(track_sid.to_owned()))
            }
            (false, true) => {
                self.active.remove(track_sid);
                Some(Change::Unsubscribe(track_sid.to_owned()))
            }
            _ => None,
        }
    }

    /// A published track's media is flowing; `allowed` by its publisher's permissions.
    pub fn available(&mut self, track_sid: &str, allowed: bool) -> Option<Change> {
        self.available
            .insert(track_sid.to_owned(), Available { allowed });
        self.reconcile(track_sid)
    }

    /// The track is gone (unpublished, or its publisher left).
    pub fn withdrawn(&mut self, track_sid: &str) -> Option<Change> {
        self.available.remove(track_sid);
        self.wanted.remove(track_sid);
        self.reconcile(track_sid)
    }

    /// The subscriber's `UpdateSubscription` for one track.
    pub fn want(&mut self, track_sid: &str, subscribe: bool) -> Option<Change> {
        if self.wanted.len() < MAX_CHOICES || self.wanted.contains_key(track_sid) {
            self.wanted.insert(track_sid.to_owned(), subscribe);
        }
        self.reconcile(track_sid)
    }

    /// The publisher's permission for this subscriber changed. `None` for a track not
    /// available (nothing to change); else whether the permission itself changed, and the
    /// resulting change.
    pub fn allowed(&mut self, track_sid: &str, allowed: bool) -> (bool, Option<Change>) {
        let Some(a) = self.available.get_mut(track_sid) else {
            return (false, None);
        };
        let flipped = a.allowed != allowed;
        a.allowed = allowed;
        (flipped, self.reconcile(track_sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(t: &str) -> Option<Change> {
        Some(Change::Subscribe(t.into()))
    }
    fn unsub(t: &str) -> Option<Change> {
        Some(Change::Unsubscribe(t.into()))
    }

    #[test]
    fn auto_subscribe_takes_what_arrives_and_explicit_choices_override_it() {
        let mut s = Subscriptions::new(true);
        assert_eq!(s.available("TR_a", true), sub("TR_a"));
        assert_eq!(s.want("TR_a", false), unsub("TR_a"));
        assert_eq!(s.want("TR_a", false), None);
        assert_eq!(s.want("TR_a", true), sub("TR_a"));
        assert!(s.is_active("TR_a"));
        assert_eq!(s.withdrawn("TR_a"), unsub("TR_a"));
        assert_eq!(s.withdrawn("TR_a"), None);
    }

    #[test]
    fn without_auto_subscribe_nothing_until_asked_even_when_asked_early() {
        let mut s = Subscriptions::new(false);
        assert_eq!(s.available("TR_a", true), None);
        assert_eq!(s.want("TR_a", true), sub("TR_a"));
        // Asked for before its media flows: taken as soon as it does.
        assert_eq!(s.want("TR_b", true), None);
        assert_eq!(s.available("TR_b", true), sub("TR_b"));
    }

    #[test]
    fn a_permission_gates_the_subscription_both_ways() {
        let mut s = Subscriptions::new(true);
        assert_eq!(s.available("TR_a", false), None);
        assert_eq!(s.allowed("TR_a", true), (true, sub("TR_a")));
        assert_eq!(s.allowed("TR_a", true), (false, None));
        assert_eq!(s.allowed("TR_a", false), (true, unsub("TR_a")));
        // Unwanted and then allowed: still nothing.
        s.want("TR_a", false);
        assert_eq!(s.allowed("TR_a", true), (true, None));
        assert_eq!(s.allowed("TR_x", true), (false, None));
    }

    #[test]
    fn permissions_name_subscribers_by_sid_or_identity_and_tracks_or_all() {
        let open = Permissions::default();
        assert!(open.allows("PA_1", "bob", "TR_a"));
        let p = Permissions::from_proto(&lk::SubscriptionPermission {
            all_participants: false,
            track_permissions: vec![
                lk::TrackPermission {
                    participant_identity: "bob".into(),
                    all_tracks: true,
                    ..Default::default()
                },
                lk::TrackPermission {
                    participant_sid: "PA_c".into(),
                    track_sids: vec!["TR_a".into()],
                    ..Default::default()
                },
            ],
        });
        assert!(p.allows("PA_b", "bob", "TR_z"));
        assert!(p.allows("PA_c", "carol", "TR_a"));
        assert!(!p.allows("PA_c", "carol", "TR_b"));
        assert!(!p.allows("PA_d", "dave", "TR_a"));
        // An empty rule names nobody.
        let empty = Permissions::from_proto(&lk::SubscriptionPermission {
            all_participants: false,
            track_permissions: vec![lk::TrackPermission {
                all_tracks: true,
                ..Default::default()
            }],
        });
        assert!(!empty.allows("", "", "TR_a"));
    }
}
