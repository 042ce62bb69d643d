//! Connects the room core to the participants' signalling sessions: applies an operation under
//! one lock, then hands each resulting message to its session's queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use livekit_protocol as lk;
use lk::signal_response::Message as Out;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::dynacast::Dynacast;
use crate::forward::Layer;
use crate::metrics::Metrics;
use crate::room::{
    CoreError, JoinError, Joined, Outgoing, ParticipantChange, RandomIds, RoomCore, RoomOptions,
};
use crate::router::Source;
use crate::speakers::{AudioLevel, Speakers, Window};
use crate::subscription::Permissions;
use crate::webhook::Webhooks;

/// Commands queued per session before the session counts as stuck and is dropped.
pub const SESSION_QUEUE: usize = 1024;

/// What the hub asks of a session.
pub enum SessionCommand {
    /// Send this to the client. A `leave` is followed by closing the session.
    Signal(Box<Out>),
    /// This track's media is flowing; whether its publisher allows this session to receive it
    /// (the session decides whether it wants it).
    Subscribe(Arc<Source>, bool),
    /// The publisher of `track_sid` changed whether this session may receive it.
    Permission {
        publisher_sid: String,
        track_sid: String,
        allowed: bool,
    },
    /// Subscribe to or unsubscribe from these tracks (the server API's `UpdateSubscriptions`).
    Want {
        track_sids: Vec<String>,
        subscribe: bool,
    },
    /// Stop receiving this track.
    Unsubscribe(String),
    /// A relayed data packet for the client's data channel of this kind.
    Data { reliable: bool, bytes: Arc<Vec<u8>> },
    /// Close the socket without a `leave`, as a lost connection would (the client resumes, or
    /// rejoins when resume is off).
    Drop,
    /// As `Drop`, and leave at once as if the resume grace period had passed.
    Expire,
}

/// A new signalling socket for a session, handed over on resume (its concrete type is the
/// session's own; the hub only carries it).
pub type ResumeSocket = Box<dyn std::any::Any + Send>;

impl std::fmt::Debug for SessionCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signal(m) => write!(f, "Signal({m:?})"),
            Self::Subscribe(s, allowed) => write!(f, "Subscribe({}, {allowed})", s.track_sid),
            Self::Permission {
                track_sid, allowed, ..
            } => write!(f, "Permission({track_sid}, {allowed})"),
            Self::Want {
                track_sids,
                subscribe,
            } => write!(f, "Want({track_sids:?}, {subscribe})"),
            Self::Unsubscribe(t) => write!(f, "Unsubscribe({t})"),
            Self::Data { reliable, bytes } => write!(f, "Data({reliable}, {} bytes)", bytes.len()),
            Self::Drop => write!(f, "Drop"),
            Self::Expire => write!(f, "Expire"),
        }
    }
}

struct Inner {
    core: RoomCore,
    sessions: HashMap<String, mpsc::Sender<SessionCommand>>,
    /// Published tracks with media, by room name.
    sources: HashMap<String, Vec<Arc<Source>>>,
    /// Where a resuming client's new socket goes, by participant sid.
    resumers: HashMap<String, mpsc::Sender<ResumeSocket>>,
    /// Publishers' `SubscriptionPermission`s, by participant sid (absent = everyone allowed).
    permissions: HashMap<String, Permissions>,
    /// Audio levels of published tracks, by track sid (kept while the track is a source).
    levels: HashMap<String, Arc<AudioLevel>>,
    /// Each room's speakers, by room name.
    speakers: HashMap<String, Speakers>,
    /// Which simulcast layers of each video track some subscriber needs.
    dynacast: Dynacast,
    /// Each participant's last judged connection quality, by sid.
    qualities: HashMap<String, lk::ConnectionQuality>,
    /// Participants whose client has settled (see [`Hub::settle_quality`]): only they are told
    /// of other participants' quality.
    quality_listeners: HashSet<String>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    metrics: Metrics,
    /// Lifecycle events, queued under the lock so that their order is the rooms' order.
    webhooks: Webhooks,
}

fn quality_update<'a>(
    levels: impl IntoIterator<Item = (&'a str, lk::ConnectionQuality)>,
) -> lk::ConnectionQualityUpdate {
    lk::ConnectionQualityUpdate {
        updates: levels
            .into_iter()
            .map(|(sid, level)| lk::ConnectionQualityInfo {
                participant_sid: sid.to_owned(),
                quality: level as i32,
                score: crate::quality::score(level),
            })
            .collect(),
    }
}

pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Hub {
    pub fn new(metrics: Metrics) -> Self {
        let webhooks = Webhooks::disabled(metrics.clone());
        Self::with_webhooks(metrics, webhooks)
    }

    pub fn with_webhooks(metrics: Metrics, webhooks: Webhooks) -> Self {
        Self {
            webhooks,
            inner: Mutex::new(Inner {
                core: RoomCore::new(Box::new(RandomIds)),
                sessions: HashMap::new(),
                sources: HashMap::new(),
                resumers: HashMap::new(),
                permissions: HashMap::new(),
                levels: HashMap::new(),
                speakers: HashMap::new(),
                dynacast: Dynacast::new(),
                qualities: HashMap::new(),
                quality_listeners: HashSet::new(),
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
                inner.resumers.remove(&to);
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
    ) -> Result<Joined, JoinError> {
        let mut inner = self.lock();
        let existed = inner.core.room_info(room).is_some();
        let replaced_info = inner
            .core
            .members(room)
            .into_iter()
            .find(|(_, id)| id == identity)
            .and_then(|(sid, _)| inner.core.participant(room, &sid));
        let joined = inner
            .core
            .join(room, identity, name, permission, now_ms)
            .inspect_err(|_| self.metrics.joins_refused.inc())?;
        if !existed {
            self.webhooks.emit("room_started", &joined.room, None, None);
        }
        if let Some(old) = &replaced_info {
            self.emit_left(&joined.room, old);
        }
        self.webhooks
            .emit("participant_joined", &joined.room, Some(&joined.me), None);
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
                let allowed = Self::allows(&inner, &source, &me, identity);
                self.send_to(&mut inner, &me, SessionCommand::Subscribe(source, allowed));
            }
        }
        Ok(joined)
    }

    /// Whether `identity` could join `room` now (the same check as the join itself, made before
    /// the socket is upgraded so that a refusal is an HTTP error with a reason).
    pub fn admits(&self, room: &str, identity: &str) -> Result<(), JoinError> {
        let inner = self.lock();
        let Some(info) = inner.core.room_info(room) else {
            return Ok(());
        };
        let present = inner
            .core
            .members(room)
            .iter()
            .any(|(_, id)| id == identity);
        if info.max_participants > 0 && !present && info.num_participants >= info.max_participants {
            return Err(JoinError::Full(info.max_participants));
        }
        Ok(())
    }

    /// Drops the signalling socket of `identity` in `room` as a network failure would (operations
    /// and tests). False if no such participant.
    pub fn drop_connection(&self, room: &str, identity: &str) -> bool {
        self.command_identity(room, identity, SessionCommand::Drop)
    }

    /// Drops the signalling socket of `identity` and makes its session leave at once, as when
    /// the resume grace period has passed (operations and tests). False if no such participant.
    pub fn expire_connection(&self, room: &str, identity: &str) -> bool {
        self.command_identity(room, identity, SessionCommand::Expire)
    }

    fn command_identity(&self, room: &str, identity: &str, cmd: SessionCommand) -> bool {
        let mut inner = self.lock();
        let Some(sid) = inner.core.find_sid(room, identity).ok() else {
            return false;
        };
        if matches!(cmd, SessionCommand::Expire) {
            inner.resumers.remove(&sid);
        }
        self.send_to(&mut inner, &sid, cmd);
        true
    }

    /// A session accepts resumed sockets here until it leaves.
    pub fn accept_resumes(&self, sid: &str, tx: mpsc::Sender<ResumeSocket>) {
        self.lock().resumers.insert(sid.to_owned(), tx);
    }

    /// Where to hand the new socket of a client resuming as `sid`: only to that participant,
    /// still in `room` under the same identity.
    pub fn resume_target(
        &self,
        room: &str,
        identity: &str,
        sid: &str,
    ) -> Option<mpsc::Sender<ResumeSocket>> {
        let inner = self.lock();
        let present = inner
            .core
            .participant(room, sid)
            .is_some_and(|p| p.identity == identity);
        if !present {
            return None;
        }
        inner.resumers.get(sid).cloned()
    }

    pub fn leave(&self, room: &str, sid: &str, reason: lk::DisconnectReason) {
        let mut inner = self.lock();
        inner.sessions.remove(sid);
        inner.resumers.remove(sid);
        inner.permissions.remove(sid);
        inner.qualities.remove(sid);
        inner.quality_listeners.remove(sid);
        for (track, top) in inner.dynacast.forget_subscriber(sid) {
            self.tell_publisher(&mut inner, room, &track, top);
        }
        self.drop_sources_of(&mut inner, room, sid);
        let before = inner.core.room_info(room);
        let gone = inner.core.participant(room, sid);
        let effects = inner.core.leave(room, sid, reason, wall_ms());
        self.deliver(&mut inner, effects);
        if let (Some(mut info), Some(gone)) = (before, gone) {
            info.num_participants = info.num_participants.saturating_sub(1);
            self.emit_left(&info, &gone);
            if inner.core.room_info(room).is_none() {
                self.webhooks.emit("room_finished", &info, None, None);
            }
        }
    }

    /// A participant's tracks go with it, then the participant.
    fn emit_left(&self, room: &lk::Room, gone: &lk::ParticipantInfo) {
        for track in &gone.tracks {
            self.webhooks
                .emit("track_unpublished", room, Some(gone), Some(track));
        }
        self.webhooks
            .emit("participant_left", room, Some(gone), None);
    }

    /// Removes a participant's sources and unsubscribes everyone from them.
    fn drop_sources_of(&self, inner: &mut Inner, room: &str, sid: &str) {
        inner.permissions.remove(sid);
        let Some(list) = inner.sources.get_mut(room) else {
            return;
        };
        let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|s| s.participant_sid == sid);
        *list = kept;
        if list.is_empty() {
            inner.sources.remove(room);
        }
        for source in gone {
            inner.dynacast.forget_track(&source.track_sid);
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
        for (to, identity) in inner.core.members(room) {
            if to != source.participant_sid && inner.core.can_subscribe(room, &to) {
                let allowed = Self::allows(&inner, &source, &to, &identity);
                let cmd = SessionCommand::Subscribe(source.clone(), allowed);
                self.send_to(&mut inner, &to, cmd);
            }
        }
        true
    }

    /// A subscriber's wish for a video track: its highest layer, or `None` (paused or gone).
    /// The publisher is told when the layers anyone needs change (dynacast).
    pub fn want_layer(&self, room: &str, track_sid: &str, subscriber: &str, want: Option<Layer>) {
        let mut inner = self.lock();
        if let Some(top) = inner.dynacast.set(track_sid, subscriber, want) {
            self.tell_publisher(&mut inner, room, track_sid, top);
        }
    }

    fn tell_publisher(&self, inner: &mut Inner, room: &str, track_sid: &str, top: Option<Layer>) {
        let publisher = inner.sources.get(room).and_then(|l| {
            l.iter()
                .find(|s| s.track_sid == track_sid && s.kind == crate::media::Kind::Video)
                .map(|s| s.participant_sid.clone())
        });
        let Some(publisher) = publisher else {
            return;
        };
        let label = match top {
            None => "none",
            Some(0) => "q",
            Some(1) => "h",
            Some(_) => "f",
        };
        self.metrics
            .dynacast_updates
            .with_label_values(&[label])
            .inc();
        tracing::debug!(track = %track_sid, ?top, "dynacast: layers wanted changed");
        let msg = Out::SubscribedQualityUpdate(crate::dynacast::quality_update(track_sid, top));
        self.send_to(inner, &publisher, SessionCommand::Signal(Box::new(msg)));
    }

    /// A participant's connection quality, sent to everyone in the room.
    /// Records `sid`'s quality and, when it changed, tells `sid` itself and every settled
    /// participant of `room`. livekit-client only surfaces a change, and drops a remote
    /// participant's change that arrives before its room is connected while keeping the value,
    /// so telling an unsettled client would hide that participant's quality from it for good;
    /// it gets the room's qualities when it settles instead.
    pub fn report_quality(&self, room: &str, sid: &str, level: lk::ConnectionQuality) {
        let mut inner = self.lock();
        if inner.qualities.insert(sid.to_owned(), level) == Some(level) {
            return;
        }
        let update = quality_update([(sid, level)]);
        for to in inner.core.participant_sids(room) {
            if to == sid || inner.quality_listeners.contains(&to) {
                let msg = Out::ConnectionQuality(update.clone());
                self.send_to(&mut inner, &to, SessionCommand::Signal(Box::new(msg)));
            }
        }
    }

    /// `sid`'s client is connected: from now on it hears of quality changes, and this is the
    /// room's quality so far (the others' last judgements; `None` when nobody was judged yet).
    pub fn settle_quality(&self, room: &str, sid: &str) -> Option<lk::ConnectionQualityUpdate> {
        let mut inner = self.lock();
        inner.quality_listeners.insert(sid.to_owned());
        let sids = inner.core.participant_sids(room);
        let known: Vec<(&str, lk::ConnectionQuality)> = sids
            .iter()
            .filter(|other| other.as_str() != sid)
            .filter_map(|other| Some((other.as_str(), *inner.qualities.get(other)?)))
            .collect();
        (!known.is_empty()).then(|| quality_update(known))
    }

    /// Who is speaking in `room` now (the set is otherwise sent only when it changes).
    pub fn current_speakers(&self, room: &str) -> Vec<lk::SpeakerInfo> {
        self.lock()
            .speakers
            .get(room)
            .map(|s| s.current())
            .unwrap_or_default()
    }

    /// Where a published audio track's levels are recorded (read by [`Hub::tick_speakers`]).
    pub fn watch_level(&self, track_sid: &str, level: Arc<AudioLevel>) {
        self.lock().levels.insert(track_sid.to_owned(), level);
    }

    /// Takes every audio track's level window and tells each room whose set of speakers
    /// changed (every [`crate::speakers::TICK`]).
    pub fn tick_speakers(&self) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut rooms: Vec<(String, Vec<lk::SpeakerInfo>)> = Vec::new();
        let mut live = std::collections::HashSet::new();
        for (room, sources) in &inner.sources {
            let mut windows: HashMap<String, Window> = HashMap::new();
            for source in sources {
                let Some(level) = inner.levels.get(&source.track_sid) else {
                    continue;
                };
                live.insert(source.track_sid.clone());
                let muted = inner
                    .core
                    .participant(room, &source.participant_sid)
                    .is_some_and(|p| {
                        p.tracks
                            .iter()
                            .any(|t| t.sid == source.track_sid && t.muted)
                    });
                let mut w = level.take();
                if muted {
                    w = Window::default();
                }
                let entry = windows.entry(source.participant_sid.clone()).or_default();
                *entry = entry.louder(w);
            }
            let speakers = inner.speakers.entry(room.clone()).or_default();
            if let Some(update) = speakers.observe(&windows) {
                rooms.push((room.clone(), update));
            }
        }
        // Forget what is no longer published, and rooms without sources.
        inner.levels.retain(|t, _| live.contains(t));
        let sources = &inner.sources;
        inner.speakers.retain(|room, _| sources.contains_key(room));
        for (room, speakers) in rooms {
            self.metrics.speakers_updates.inc();
            for sid in inner.core.participant_sids(&room) {
                let msg = Out::SpeakersChanged(lk::SpeakersChanged {
                    speakers: speakers.clone(),
                });
                self.send_to(inner, &sid, SessionCommand::Signal(Box::new(msg)));
            }
        }
    }

    /// Whether `source`'s publisher lets the subscriber (`sid`, `identity`) receive it.
    fn allows(inner: &Inner, source: &Source, sid: &str, identity: &str) -> bool {
        inner
            .permissions
            .get(&source.participant_sid)
            .is_none_or(|p| p.allows(sid, identity, &source.track_sid))
    }

    /// A publisher's `SubscriptionPermission`: every other participant is told, per track with
    /// media, whether it may receive it.
    pub fn set_subscription_permission(&self, room: &str, publisher_sid: &str, perms: Permissions) {
        let mut inner = self.lock();
        if inner.core.participant(room, publisher_sid).is_none() {
            return;
        }
        inner.permissions.insert(publisher_sid.to_owned(), perms);
        let sources: Vec<Arc<Source>> = inner
            .sources
            .get(room)
            .map(|l| {
                l.iter()
                    .filter(|s| s.participant_sid == publisher_sid)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for (to, identity) in inner.core.members(room) {
            if to == publisher_sid {
                continue;
            }
            for source in &sources {
                let cmd = SessionCommand::Permission {
                    publisher_sid: publisher_sid.to_owned(),
                    track_sid: source.track_sid.clone(),
                    allowed: Self::allows(&inner, source, &to, &identity),
                };
                self.send_to(&mut inner, &to, cmd);
            }
        }
    }

    /// The server API's `UpdateSubscriptions` for the participant `identity`.
    pub fn update_subscriptions(
        &self,
        room: &str,
        identity: &str,
        track_sids: Vec<String>,
        subscribe: bool,
    ) -> Result<(), CoreError> {
        let mut inner = self.lock();
        let sid = inner.core.find_sid(room, identity)?;
        let cmd = SessionCommand::Want {
            track_sids,
            subscribe,
        };
        self.send_to(&mut inner, &sid, cmd);
        Ok(())
    }

    /// A published track's media ended (unpublished, or the publisher's PC went away): drop
    /// the track from the roster and from every subscriber.
    pub fn unpublish(&self, room: &str, sid: &str, track_sid: &str) {
        let mut inner = self.lock();
        let before = inner.core.participant(room, sid);
        let source = inner.sources.get_mut(room).and_then(|list| {
            let i = list.iter().position(|s| s.track_sid == track_sid)?;
            Some(list.remove(i))
        });
        if let Some(source) = source {
            inner.dynacast.forget_track(&source.track_sid);
            self.unsubscribe_all(&mut inner, room, &source);
        }
        if let Ok(effects) = inner.core.remove_track(room, sid, track_sid) {
            self.deliver(&mut inner, effects);
            let track = before.and_then(|p| {
                let t = p.tracks.iter().find(|t| t.sid == track_sid).cloned()?;
                Some((p, t))
            });
            if let (Some(info), Some((p, t))) = (inner.core.room_info(room), track) {
                let p = inner.core.participant(room, sid).unwrap_or(p);
                self.webhooks
                    .emit("track_unpublished", &info, Some(&p), Some(&t));
            }
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
        if let (Some(info), Some(p)) = (
            inner.core.room_info(room),
            inner.core.participant(room, sid),
        ) {
            self.webhooks
                .emit("track_published", &info, Some(&p), Some(&track));
        }
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

    // ---- the server API (RoomService) and participants' self-updates ----

    pub fn create_room(&self, name: &str, opts: &RoomOptions) -> lk::Room {
        let mut inner = self.lock();
        let existed = inner.core.room_info(name).is_some();
        let info = inner.core.create_room(name, opts, wall_ms());
        if !existed {
            self.webhooks.emit("room_started", &info, None, None);
        }
        self.deliver(&mut inner, Vec::new());
        info
    }

    pub fn list_rooms(&self, names: &[String]) -> Vec<lk::Room> {
        self.lock().core.list_rooms(names)
    }

    /// Everyone is told `ROOM_DELETED` and the room is gone.
    pub fn delete_room(&self, name: &str) -> Result<(), CoreError> {
        let mut inner = self.lock();
        let (info, gone, effects) = inner.core.delete_room(name)?;
        for p in &gone {
            self.drop_sources_of(&mut inner, name, &p.sid);
        }
        inner.sources.remove(name);
        self.deliver(&mut inner, effects);
        for p in &gone {
            self.emit_left(&info, p);
        }
        self.webhooks.emit("room_finished", &info, None, None);
        Ok(())
    }

    /// Forgets API-made rooms left empty past their timeout (called periodically).
    pub fn reap(&self, now_ms: i64) {
        let mut inner = self.lock();
        let gone = inner.core.reap(now_ms);
        if gone.is_empty() {
            return;
        }
        for info in &gone {
            inner.sources.remove(&info.name);
            self.webhooks.emit("room_finished", info, None, None);
        }
        self.deliver(&mut inner, Vec::new());
    }

    pub fn list_participants(&self, room: &str) -> Result<Vec<lk::ParticipantInfo>, CoreError> {
        self.lock()
            .core
            .participants(room)
            .ok_or(CoreError::UnknownRoom)
    }

    pub fn get_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<lk::ParticipantInfo, CoreError> {
        self.lock().core.participant_by_identity(room, identity)
    }

    /// The participant is told `PARTICIPANT_REMOVED` and leaves; its tracks go with it.
    pub fn remove_participant(&self, room: &str, identity: &str) -> Result<(), CoreError> {
        let mut inner = self.lock();
        let before = inner.core.room_info(room);
        let (gone, effects) = inner.core.remove_participant(room, identity, wall_ms())?;
        self.drop_sources_of(&mut inner, room, &gone.sid);
        self.deliver(&mut inner, effects);
        if let Some(mut info) = before {
            info.num_participants = info.num_participants.saturating_sub(1);
            self.emit_left(&info, &gone);
        }
        Ok(())
    }

    pub fn mute_published_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<lk::TrackInfo, CoreError> {
        let mut inner = self.lock();
        let (track, effects) = inner.core.mute_by_admin(room, identity, track_sid, muted)?;
        self.deliver(&mut inner, effects);
        Ok(track)
    }

    /// Metadata, name, attributes or permission of a participant, by identity (server API).
    pub fn update_participant(
        &self,
        room: &str,
        identity: &str,
        change: ParticipantChange,
    ) -> Result<lk::ParticipantInfo, CoreError> {
        let mut inner = self.lock();
        let sid = inner.core.find_sid(room, identity)?;
        let (info, effects) = inner.core.update_participant(room, &sid, change, false)?;
        self.deliver(&mut inner, effects);
        Ok(info)
    }

    /// A participant's own `UpdateParticipantMetadata` (needs `canUpdateMetadata`).
    pub fn update_self(
        &self,
        room: &str,
        sid: &str,
        change: ParticipantChange,
    ) -> Result<lk::ParticipantInfo, CoreError> {
        let mut inner = self.lock();
        let (info, effects) = inner.core.update_participant(room, sid, change, true)?;
        self.deliver(&mut inner, effects);
        Ok(info)
    }

    pub fn update_room_metadata(&self, room: &str, metadata: &str) -> Result<lk::Room, CoreError> {
        let mut inner = self.lock();
        let (info, effects) = inner.core.update_room_metadata(room, metadata)?;
        self.deliver(&mut inner, effects);
        Ok(info)
    }

    /// `SendData`: a packet from the server (no sender identity) to the room or the named
    /// identities.
    pub fn send_server_data(
        &self,
        room: &str,
        bytes: Vec<u8>,
        destinations: Vec<String>,
        reliable: bool,
    ) -> Result<(), CoreError> {
        if self.lock().core.room_info(room).is_none() {
            return Err(CoreError::UnknownRoom);
        }
        let relayed = crate::data::Relayed {
            bytes,
            destinations,
        };
        self.relay_data(room, "", relayed, reliable);
        Ok(())
    }

    pub fn track_by_cid(&self, room: &str, sid: &str, cid: &str) -> Option<lk::TrackInfo> {
        self.lock().core.track_by_cid(room, sid, cid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{KeyframeRequester, Kind};

    fn perm(subscribe: bool) -> lk::ParticipantPermission {
        lk::ParticipantPermission {
            can_publish: true,
            can_subscribe: subscribe,
            can_publish_data: true,
            ..Default::default()
        }
    }

    fn drain(rx: &mut mpsc::Receiver<SessionCommand>) -> Vec<SessionCommand> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn subscribes(cmds: &[SessionCommand]) -> Vec<String> {
        cmds.iter()
            .filter_map(|c| match c {
                SessionCommand::Subscribe(s, _) => Some(s.track_sid.clone()),
                _ => None,
            })
            .collect()
    }

    fn unsubscribes(cmds: &[SessionCommand]) -> Vec<String> {
        cmds.iter()
            .filter_map(|c| match c {
                SessionCommand::Unsubscribe(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    struct Member {
        sid: String,
        rx: mpsc::Receiver<SessionCommand>,
    }

    fn join(hub: &Hub, identity: &str, subscribe: bool) -> Member {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let joined = hub.join("r", identity, "", perm(subscribe), 0, tx).unwrap();
        Member {
            sid: joined.me.sid,
            rx,
        }
    }

    fn publish(hub: &Hub, publisher: &Member, cid: &str) -> Arc<Source> {
        let track = hub
            .add_track(
                "r",
                &publisher.sid,
                &lk::AddTrackRequest {
                    cid: cid.into(),
                    r#type: lk::TrackType::Audio as i32,
                    ..Default::default()
                },
            )
            .unwrap();
        let source = Arc::new(Source::new(
            track.sid,
            publisher.sid.clone(),
            Kind::Audio,
            Vec::new(),
            KeyframeRequester::channel().0,
            Metrics::new(),
        ));
        assert!(hub.publish_source("r", source.clone()));
        source
    }

    #[test]
    fn tracks_are_offered_to_everyone_else_now_and_later_and_withdrawn() {
        let hub = Hub::new(Metrics::new());
        let mut alice = join(&hub, "alice", true);
        let mut bob = join(&hub, "bob", true);
        let mut no_subscribe = join(&hub, "nosub", false);
        let mic = publish(&hub, &alice, "mic");
        assert_eq!(subscribes(&drain(&mut bob.rx)), vec![mic.track_sid.clone()]);
        assert!(subscribes(&drain(&mut alice.rx)).is_empty());
        assert!(subscribes(&drain(&mut no_subscribe.rx)).is_empty());

        // A later joiner is offered what is already there.
        let mut carol = join(&hub, "carol", true);
        assert_eq!(
            subscribes(&drain(&mut carol.rx)),
            vec![mic.track_sid.clone()]
        );

        // Unpublish: everyone else is unsubscribed and sees the track gone from the roster.
        hub.unpublish("r", &alice.sid, &mic.track_sid);
        for m in [&mut bob, &mut carol] {
            let cmds = drain(&mut m.rx);
            assert_eq!(unsubscribes(&cmds), vec![mic.track_sid.clone()]);
            assert!(cmds.iter().any(|c| matches!(c,
                SessionCommand::Signal(out) if matches!(&**out,
                    Out::Update(u) if u.participants.iter().any(|p| p.identity == "alice" && p.tracks.is_empty())))));
        }
        // A newcomer no longer gets it.
        let mut dave = join(&hub, "dave", true);
        assert!(subscribes(&drain(&mut dave.rx)).is_empty());

        // The publisher leaving withdraws its tracks.
        let cam = publish(&hub, &alice, "cam");
        drain(&mut bob.rx);
        hub.leave("r", &alice.sid, lk::DisconnectReason::ClientInitiated);
        assert_eq!(
            unsubscribes(&drain(&mut bob.rx)),
            vec![cam.track_sid.clone()]
        );
        // Media arriving after the publisher left is refused.
        let late = Arc::new(Source::new(
            "TR_late".into(),
            alice.sid.clone(),
            Kind::Audio,
            Vec::new(),
            KeyframeRequester::channel().0,
            Metrics::new(),
        ));
        assert!(!hub.publish_source("r", late));
    }

    #[test]
    fn data_goes_to_the_listed_identities_or_everyone_else() {
        let hub = Hub::new(Metrics::new());
        let mut alice = join(&hub, "alice", true);
        let mut bob = join(&hub, "bob", true);
        let mut carol = join(&hub, "carol", true);
        drain(&mut alice.rx);
        drain(&mut bob.rx);
        let data = |cmds: Vec<SessionCommand>| {
            cmds.into_iter()
                .filter_map(|c| match c {
                    SessionCommand::Data { bytes, reliable } => Some((bytes.to_vec(), reliable)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let relayed = |bytes: &[u8], to: &[&str]| crate::data::Relayed {
            bytes: bytes.to_vec(),
            destinations: to.iter().map(|s| s.to_string()).collect(),
        };
        hub.relay_data("r", &alice.sid, relayed(b"all", &[]), true);
        hub.relay_data("r", &alice.sid, relayed(b"bob", &["bob"]), false);
        assert_eq!(
            data(drain(&mut bob.rx)),
            [(b"all".to_vec(), true), (b"bob".to_vec(), false)]
        );
        assert_eq!(data(drain(&mut carol.rx)), [(b"all".to_vec(), true)]);
        assert!(data(drain(&mut alice.rx)).is_empty());
    }

    #[test]
    fn a_session_that_stops_reading_is_dropped_not_waited_for() {
        let metrics = Metrics::new();
        let hub = Hub::new(metrics.clone());
        let (tx, mut stuck) = mpsc::channel(1);
        let _ = hub.join("r", "stuck", "", perm(true), 0, tx);
        // Two roster updates for a queue of one: the second overflows.
        let _a = join(&hub, "a", true);
        let _b = join(&hub, "b", true);
        assert_eq!(metrics.slow_sessions.get(), 1);
        assert!(stuck.try_recv().is_ok());
        // Its queue is closed: the session sees that and ends.
        assert!(matches!(
            stuck.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    fn qualities(cmds: Vec<SessionCommand>) -> Vec<(String, i32)> {
        cmds.into_iter()
            .filter_map(|c| match c {
                SessionCommand::Signal(out) => match *out {
                    Out::ConnectionQuality(u) => Some(u.updates),
                    _ => None,
                },
                _ => None,
            })
            .flatten()
            .map(|q| (q.participant_sid, q.quality))
            .collect()
    }

    #[test]
    fn quality_reaches_a_client_once_settled_and_then_only_when_it_changes() {
        use lk::ConnectionQuality::{Excellent, Good, Poor};
        let hub = Hub::new(Metrics::new());
        let mut alice = join(&hub, "alice", true);
        let mut bob = join(&hub, "bob", true);
        drain(&mut alice.rx);
        drain(&mut bob.rx);

        // Bob's client is still connecting: it would drop alice's quality and keep the value.
        hub.report_quality("r", &alice.sid, Excellent);
        assert_eq!(
            qualities(drain(&mut alice.rx)),
            [(alice.sid.clone(), Excellent as i32)]
        );
        assert!(qualities(drain(&mut bob.rx)).is_empty());

        // Settled: the room so far, not bob himself.
        hub.report_quality("r", &bob.sid, Good);
        assert_eq!(
            qualities(drain(&mut bob.rx)),
            [(bob.sid.clone(), Good as i32)]
        );
        let snapshot = hub.settle_quality("r", &bob.sid).expect("alice was judged");
        let snapshot: Vec<_> = snapshot
            .updates
            .into_iter()
            .map(|q| (q.participant_sid, q.quality))
            .collect();
        assert_eq!(snapshot, [(alice.sid.clone(), Excellent as i32)]);

        // The same judgement again goes to nobody; a change goes to alice and to bob.
        hub.report_quality("r", &alice.sid, Excellent);
        assert!(qualities(drain(&mut alice.rx)).is_empty());
        assert!(qualities(drain(&mut bob.rx)).is_empty());
        hub.report_quality("r", &alice.sid, Poor);
        assert_eq!(
            qualities(drain(&mut bob.rx)),
            [(alice.sid.clone(), Poor as i32)]
        );
        assert_eq!(
            qualities(drain(&mut alice.rx)),
            [(alice.sid.clone(), Poor as i32)]
        );

        // Alone in a room nobody else was judged in, or gone: nothing to settle with.
        hub.leave("r", &alice.sid, lk::DisconnectReason::ClientInitiated);
        assert!(hub.settle_quality("r", &bob.sid).is_none());
    }
}
