//! Connects the room core to the participants' signalling sessions: applies an operation under
//! one lock, then hands each resulting message to its session's queue.

use std::collections::HashMap;
use std::sync::Mutex;

use livekit_protocol as lk;
use lk::signal_response::Message as Out;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;
use crate::room::{CoreError, Joined, Outgoing, RandomIds, RoomCore};

/// What the hub asks of a session.
#[derive(Debug)]
pub enum SessionCommand {
    /// Send this to the client. A `leave` is followed by closing the session.
    Signal(Out),
}

struct Inner {
    core: RoomCore,
    sessions: HashMap<String, UnboundedSender<SessionCommand>>,
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
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take every room down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, inner: &mut Inner, effects: Vec<Outgoing>) {
        for Outgoing { to, msg } in effects {
            let is_leave = matches!(msg, Out::Leave(_));
            if let Some(tx) = inner.sessions.get(&to) {
                // A closed queue means the session is already going away.
                let _ = tx.send(SessionCommand::Signal(msg));
            }
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
        queue: UnboundedSender<SessionCommand>,
    ) -> Joined {
        let mut inner = self.lock();
        let joined = inner.core.join(room, identity, name, permission, now_ms);
        inner.sessions.insert(joined.me.sid.clone(), queue);
        let effects = joined.effects.clone();
        self.deliver(&mut inner, effects);
        joined
    }

    pub fn leave(&self, room: &str, sid: &str, reason: lk::DisconnectReason) {
        let mut inner = self.lock();
        inner.sessions.remove(sid);
        let effects = inner.core.leave(room, sid, reason);
        self.deliver(&mut inner, effects);
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
