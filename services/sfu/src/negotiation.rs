//! Subscriber-side negotiation as a state machine without I/O: tracks come and go, offers and
//! answers are numbered, and each input says what the session must do next. One offer is in
//! flight at a time; changes while it is out wait for the next one (LiveKit's rule, and what
//! livekit-client expects).

use std::collections::HashMap;

/// The offer/answer exchange on the subscriber PeerConnection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferState {
    /// No offer out: the next change sends one at once.
    Stable,
    /// Offer `id` awaits its answer; `again` when something changed since it went out.
    AwaitingAnswer { id: u32, again: bool },
}

/// Where one downtrack stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    /// Added; no offer has carried it yet.
    Pending,
    /// Carried by offer `id`, not yet answered.
    Offered(u32),
    /// Its m-section is agreed: media may flow.
    Negotiated,
}

/// What the session does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create an offer and send it with this id.
    SendOffer(u32),
    /// Nothing to send now (an offer is out; the change rides on the next one).
    Wait,
}

/// An answer that belongs to no offer in flight (duplicate, late or forged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub got: u32,
    pub want: Option<u32>,
}

/// What an accepted answer settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Tracks whose media may now flow.
    pub negotiated: Vec<String>,
    /// A follow-up offer for the changes made meanwhile.
    pub next: Option<Step>,
}

#[derive(Debug, Default)]
pub struct Negotiation {
    state: Option<(u32, bool)>,
    last_id: u32,
    tracks: HashMap<String, TrackState>,
}

impl Negotiation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> OfferState {
        match self.state {
            None => OfferState::Stable,
            Some((id, again)) => OfferState::AwaitingAnswer { id, again },
        }
    }

    pub fn track(&self, sid: &str) -> Option<TrackState> {
        self.tracks.get(sid).copied()
    }

    /// Something needs (re)negotiating: an offer now, or after the one in flight.
    pub fn changed(&mut self) -> Step {
        if let Some((_, again)) = self.state.as_mut() {
            *again = true;
            return Step::Wait;
        }
        self.last_id += 1;
        let id = self.last_id;
        for t in self.tracks.values_mut() {
            if *t == TrackState::Pending {
                *t = TrackState::Offered(id);
            }
        }
        self.state = Some((id, false));
        Step::SendOffer(id)
    }

    pub fn track_added(&mut self, sid: &str) -> Step {
        self.tracks.insert(sid.to_owned(), TrackState::Pending);
        self.changed()
    }

    pub fn track_removed(&mut self, sid: &str) -> Step {
        self.tracks.remove(sid);
        self.changed()
    }

    /// Checks an answer's id against the offer in flight (0 = a client that does not number
    /// its answers: taken for the current offer).
    pub fn accepts(&self, id: u32) -> Result<u32, Stale> {
        match self.state {
            Some((want, _)) if id == 0 || id == want => Ok(want),
            Some((want, _)) => Err(Stale {
                got: id,
                want: Some(want),
            }),
            None => Err(Stale {
                got: id,
                want: None,
            }),
        }
    }

    /// The answer to the offer in flight was applied (`applied`) or refused by the
    /// PeerConnection. Either way the exchange is over; only an applied one settles tracks.
    pub fn answered(&mut self, applied: bool) -> Answered {
        let Some((id, again)) = self.state.take() else {
            return Answered {
                negotiated: Vec::new(),
                next: None,
            };
        };
        let mut negotiated = Vec::new();
        if applied {
            for (sid, t) in self.tracks.iter_mut() {
                if matches!(*t, TrackState::Offered(o) if o <= id) {
                    *t = TrackState::Negotiated;
                    negotiated.push(sid.clone());
                }
            }
            negotiated.sort();
        }
        let next = again.then(|| self.changed());
        Answered { negotiated, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_change_offers_at_once_and_the_answer_settles_its_tracks() {
        let mut n = Negotiation::new();
        assert_eq!(n.changed(), Step::SendOffer(1));
        assert_eq!(
            n.state(),
            OfferState::AwaitingAnswer {
                id: 1,
                again: false
            }
        );
        assert_eq!(n.accepts(1), Ok(1));
        let done = n.answered(true);
        assert!(done.negotiated.is_empty());
        assert_eq!(done.next, None);
        assert_eq!(n.state(), OfferState::Stable);
        assert_eq!(n.track_added("TR_a"), Step::SendOffer(2));
        assert_eq!(n.track("TR_a"), Some(TrackState::Offered(2)));
        let done = n.answered(true);
        assert_eq!(done.negotiated, vec!["TR_a".to_owned()]);
        assert_eq!(n.track("TR_a"), Some(TrackState::Negotiated));
    }

    #[test]
    fn changes_while_an_offer_is_out_coalesce_into_one_follow_up() {
        let mut n = Negotiation::new();
        assert_eq!(n.track_added("TR_a"), Step::SendOffer(1));
        assert_eq!(n.track_added("TR_b"), Step::Wait);
        assert_eq!(n.track_added("TR_c"), Step::Wait);
        assert_eq!(n.track_removed("TR_c"), Step::Wait);
        assert_eq!(n.track("TR_b"), Some(TrackState::Pending));
        let done = n.answered(true);
        // Only what offer 1 carried is settled; one follow-up carries the rest.
        assert_eq!(done.negotiated, vec!["TR_a".to_owned()]);
        assert_eq!(done.next, Some(Step::SendOffer(2)));
        assert_eq!(n.track("TR_b"), Some(TrackState::Offered(2)));
        assert_eq!(n.track("TR_c"), None);
        assert_eq!(n.answered(true).negotiated, vec!["TR_b".to_owned()]);
    }

    #[test]
    fn stale_answers_are_refused_and_change_nothing() {
        let mut n = Negotiation::new();
        assert_eq!(n.accepts(1), Err(Stale { got: 1, want: None }));
        n.track_added("TR_a");
        assert_eq!(
            n.accepts(7),
            Err(Stale {
                got: 7,
                want: Some(1)
            })
        );
        assert_eq!(n.accepts(0), Ok(1));
        assert_eq!(n.track("TR_a"), Some(TrackState::Offered(1)));
    }

    #[test]
    fn a_refused_answer_ends_the_exchange_without_settling_and_a_later_one_does() {
        let mut n = Negotiation::new();
        n.track_added("TR_a");
        let done = n.answered(false);
        assert!(done.negotiated.is_empty());
        assert_eq!(n.state(), OfferState::Stable);
        assert_eq!(n.track("TR_a"), Some(TrackState::Offered(1)));
        assert_eq!(n.changed(), Step::SendOffer(2));
        assert_eq!(n.answered(true).negotiated, vec!["TR_a".to_owned()]);
    }
}
