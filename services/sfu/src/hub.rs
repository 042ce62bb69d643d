//! Connects the room core to the participants' signalling sessions: applies an operation under
//! one lock, then hands each resulting message to its session's queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use livekit_protocol as lk;
use lk::signal_response::Message as Out;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::metrics::Metrics;
use crate::room::{CoreError, Joined, Outgoing, RandomIds, RoomCore};
use crate::router::Source;

/// Commands queued per session before the session counts as stuck and is dropped.
pub const SESSION_QUEUE: usize = 1024;

/// What the hub asks of a session.
pub enum SessionCommand {
    /// Send this to the client. A `leave` is followed by closing the session.
    Signal(Box<Out>),
    /// Start receiving this track (auto-subscribe).
    Subscribe(Arc<Source>),
    /// Stop receiving this track.
    Unsubscribe(String),
    /// A relayed data packet for the client's data channel of this kind.
    Data { reliable: bool, bytes: Arc<Vec<u8>> },
}

impl std::fmt::Debug for SessionCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signal(m) => write!(f, "Signal({m:?})"),
            Self::Subscribe(s) => write!(f, "Subscribe({})", s.track_sid),
            Self::Unsubscribe(t) => write!(f, "Unsubscribe({t})"),
            Self::Data { reliable, bytes } => write!(f, "Data({reliable}, {} bytes)", bytes.len()),
        }
    }
}

struct Inner {
    core: RoomCore,
    sessions: HashMap<String, mpsc::Sender<SessionCommand>>,
    /// Published tracks with media, by room name.
    sources: HashMap<String, Vec<Arc<Source>>>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    metrics: Metrics,
}

impl Hub {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            inner: Mutex::new(Inner {
                core: RoomCore::new(Box::new(RandomIds)),
                sessions: HashMap::new(),
                sources: HashMap::new(),
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take every room down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a command for a session without waiting. A session whose queue is full is
    /// dropped: its queue closes, and it ends and leaves the room.
    fn send_to(&self, inner: &mut Inner, to: &str, cmd: SessionCommand) {
        let Some(tx) = inner.sessions.get(to) else {
            return;
        };
        match tx.try_send(cmd) {
            Ok(()) => {}
            // A closed queue means the session is already going away.
            Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(sid = %to, "signalling queue full: dropping the session");
                self.metrics.slow_sessions.inc();
                inner.sessions.remove(to);
            }
        }
    }

    fn deliver(&self, inner: &mut Inner, effects: Vec<Outgoing>) {
        for Outgoing { to, msg } in effects {
            let is_leave = matches!(msg, Out::Leave(_));
            self.send_to(inner, &to, SessionCommand::Signal(Box::new(msg)));
            if is_leave {
                inner.sessions.remove(&to);
            }
        }
        let (rooms, participants, tracks) = inner.core.counts();
        self.metrics.rooms.set(rooms as i64);
        self.metrics.participants.set(participants as i64);
        self.metrics.tracks.set(tracks as i64);
    }

    pub fn join(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        permission: lk::ParticipantPermission,
        now_ms: i64,
        queue: mpsc::Sender<SessionCommand>,
    ) -> Joined {
        let mut inner = self.lock();
        let joined = inner.core.join(room, identity, name, permission, now_ms);
        let me = joined.me.sid.clone();
        inner.sessions.insert(me.clone(), queue);
        let effects = joined.effects.clone();
        self.deliver(&mut inner, effects);
        if let Some(replaced) = &joined.replaced {
            self.drop_sources_of(&mut inner, room, replaced);
        }
        // Auto-subscribe: everything already published in the room. The session handles these
        // after its JoinResponse, which announced the tracks.
        if joined
            .me
            .permission
            .as_ref()
            .is_some_and(|p| p.can_subscribe)
        {
            let existing = inner.sources.get(room).cloned().unwrap_or_default();
            for source in existing {
                self.send_to(&mut inner, &me, SessionCommand::Subscribe(source));
            }
        }
        joined
    }

    pub fn leave(&self, room: &str, sid: &str, reason: lk::DisconnectReason) {
        let mut inner = self.lock();
        inner.sessions.remove(sid);
        self.drop_sources_of(&mut inner, room, sid);
        let effects = inner.core.leave(room, sid, reason);
        self.deliver(&mut inner, effects);
    }

    /// Removes a participant's sources and unsubscribes everyone from them.
    fn drop_sources_of(&self, inner: &mut Inner, room: &str, sid: &str) {
        let Some(list) = inner.sources.get_mut(room) else {
            return;
        };
        let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|s| s.participant_sid == sid);
        *list = kept;
        if list.is_empty() {
            inner.sources.remove(room);
        }
        for source in gone {
            self.unsubscribe_all(inner, room, &source);
        }
    }

    fn unsubscribe_all(&self, inner: &mut Inner, room: &str, source: &Source) {
        for to in inner.core.participant_sids(room) {
            if to != source.participant_sid {
                let cmd = SessionCommand::Unsubscribe(source.track_sid.clone());
                self.send_to(inner, &to, cmd);
            }
        }
    }

    /// Hands a relayed data packet to its receivers: the listed identities, or everyone but the
    /// sender. A receiver whose queue is full misses the packet (counted); data never closes a
    /// session.
    pub fn relay_data(
        &self,
        room: &str,
        from: &str,
        relayed: crate::data::Relayed,
        reliable: bool,
    ) {
        let inner = self.lock();
        let bytes = Arc::new(relayed.bytes);
        for (sid, identity) in inner.core.members(room) {
            if sid == from
                || (!relayed.destinations.is_empty() && !relayed.destinations.contains(&identity))
            {
                continue;
            }
            let Some(tx) = inner.sessions.get(&sid) else {
                continue;
            };
            let cmd = SessionCommand::Data {
                reliable,
                bytes: bytes.clone(),
            };
            if let Err(TrySendError::Full(_)) = tx.try_send(cmd) {
                self.metrics.data_drops.inc();
            }
        }
    }

    /// Media arrived for a published track: every other participant that may subscribe gets
    /// it. Refused (false) if the publisher has left meanwhile.
    pub fn publish_source(&self, room: &str, source: Arc<Source>) -> bool {
        let mut inner = self.lock();
        let sids = inner.core.participant_sids(room);
        if !sids.contains(&source.participant_sid) {
            return false;
        }
        let list = inner.sources.entry(room.to_owned()).or_default();
        list.retain(|s| s.track_sid != source.track_sid);
        list.push(source.clone());
        for to in sids {
            if to != source.participant_sid && inner.core.can_subscribe(room, &to) {
                self.send_to(&mut inner, &to, SessionCommand::Subscribe(source.clone()));
            }
        }
        true
    }

    /// A published track's media ended (unpublished, or the publisher's PC went away): drop
    /// the track from the roster and from every subscriber.
    pub fn unpublish(&self, room: &str, sid: &str, track_sid: &str) {
        let mut inner = self.lock();
        let source = inner.sources.get_mut(room).and_then(|list| {
            let i = list.iter().position(|s| s.track_sid == track_sid)?;
            Some(list.remove(i))
        });
        if let Some(source) = source {
            self.unsubscribe_all(&mut inner, room, &source);
        }
        if let Ok(effects) = inner.core.remove_track(room, sid, track_sid) {
            self.deliver(&mut inner, effects);
        }
    }

    pub fn add_track(
        &self,
        room: &str,
        sid: &str,
        req: &lk::AddTrackRequest,
    ) -> Result<lk::TrackInfo, CoreError> {
        let mut inner = self.lock();
        let (track, effects) = inner.core.add_track(room, sid, req)?;
        self.deliver(&mut inner, effects);
        Ok(track)
    }

    pub fn set_muted(
        &self,
        room: &str,
        sid: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<(), CoreError> {
        let mut inner = self.lock();
        let effects = inner.core.set_muted(room, sid, track_sid, muted)?;
        self.deliver(&mut inner, effects);
        Ok(())
    }

    pub fn track_by_cid(&self, room: &str, sid: &str, cid: &str) -> Option<lk::TrackInfo> {
        self.lock().core.track_by_cid(room, sid, cid)
    }
}
