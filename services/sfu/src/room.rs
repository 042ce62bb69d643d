//! Rooms and participants as plain data: no sockets, no media, no clocks of its own.
//!
//! Every operation returns the signalling messages it causes, addressed by participant sid; the
//! hub delivers them. `ParticipantInfo.version` goes up on every change, because livekit-client
//! drops an info whose version is not newer than the one it has.

use std::collections::{BTreeMap, HashMap};

use livekit_protocol as lk;
use lk::signal_response::Message as Out;

/// A message for one participant's signalling socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub to: String,
    pub msg: Out,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub room: lk::Room,
    pub me: lk::ParticipantInfo,
    pub others: Vec<lk::ParticipantInfo>,
    /// The sid of a participant with the same identity that this join replaced.
    pub replaced: Option<String>,
    /// Messages for the others (roster update, and the replaced one's `leave`).
    pub effects: Vec<Outgoing>,
}

/// Why a join is refused (before any `JoinResponse`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("room is full: it allows {0} participants")]
    Full(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("no such room")]
    UnknownRoom,
    #[error("no such participant")]
    UnknownParticipant,
    #[error("not allowed to update its own metadata")]
    MetadataNotAllowed,
    #[error("{0} is too long")]
    TooLong(&'static str),
    #[error("remote unmute is not enabled")]
    RemoteUnmute,
    #[error("not allowed to publish")]
    NotAllowed,
    #[error("a track with this cid is already pending or published")]
    DuplicateCid,
    #[error("no such track")]
    UnknownTrack,
}

#[derive(Debug, Clone)]
struct Participant {
    info: lk::ParticipantInfo,
    /// Published tracks by the client's cid (AddTrack) → sid.
    cids: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Room {
    info: lk::Room,
    /// By sid, in join order (sids sort by a join counter).
    participants: BTreeMap<String, Participant>,
    /// Created through the server API: outlives its participants for `empty_timeout` (nobody
    /// came) or `departure_timeout` (everyone left). A room made by a join goes with its last
    /// participant.
    created_by_api: bool,
    /// Since when it has had no participant (ms), and whether anyone ever joined.
    empty_since_ms: Option<i64>,
    ever_joined: bool,
}

/// What `CreateRoom` sets; zero timeouts take LiveKit's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomOptions {
    pub empty_timeout: u32,
    pub departure_timeout: u32,
    pub max_participants: u32,
    pub metadata: String,
}

/// A change to a participant: `None`/empty leaves a field as it is; an attribute set to ""
/// is removed (LiveKit's rule).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParticipantChange {
    pub metadata: Option<String>,
    pub name: Option<String>,
    pub attributes: HashMap<String, String>,
    pub permission: Option<lk::ParticipantPermission>,
}

/// LiveKit's defaults for a room's timeouts, in seconds.
pub const DEFAULT_EMPTY_TIMEOUT: u32 = 300;
pub const DEFAULT_DEPARTURE_TIMEOUT: u32 = 20;
/// Limits on what participants and the API may store (bytes).
pub const MAX_METADATA: usize = 64 * 1024;
pub const MAX_NAME: usize = 256;
pub const MAX_ATTRIBUTES: usize = 64 * 1024;

/// Source of fresh ids; injectable so tests are deterministic.
pub trait IdSource: Send {
    fn next(&mut self, prefix: &str) -> String;
}

/// Random ids like LiveKit's (`PA_…`, `TR_…`, `RM_…`).
pub struct RandomIds;

impl IdSource for RandomIds {
    fn next(&mut self, prefix: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{prefix}{}", &id[..12])
    }
}

pub struct RoomCore {
    rooms: HashMap<String, Room>,
    ids: Box<dyn IdSource>,
}

/// The `leave` that ends a session for good (the client must not try to resume).
pub fn leave_for(reason: lk::DisconnectReason) -> Out {
    Out::Leave(lk::LeaveRequest {
        can_reconnect: false,
        reason: reason as i32,
        action: lk::leave_request::Action::Disconnect as i32,
        regions: None,
    })
}

fn roster(to: &str, infos: Vec<lk::ParticipantInfo>) -> Outgoing {
    Outgoing {
        to: to.to_owned(),
        msg: Out::Update(lk::ParticipantUpdate {
            participants: infos,
        }),
    }
}

impl RoomCore {
    pub fn new(ids: Box<dyn IdSource>) -> Self {
        Self {
            rooms: HashMap::new(),
            ids,
        }
    }

    /// Adds `identity` to `room_name` (created on demand). A participant already there with the
    /// same identity is replaced: it gets `leave{DUPLICATE_IDENTITY}` and the others see it go.
    pub fn join(
        &mut self,
        room_name: &str,
        identity: &str,
        name: &str,
        permission: lk::ParticipantPermission,
        now_ms: i64,
    ) -> Result<Joined, JoinError> {
        let replaced = self.rooms.get(room_name).and_then(|room| {
            room.participants
                .iter()
                .find(|(_, p)| p.info.identity == identity)
                .map(|(sid, _)| sid.clone())
        });
        if let Some(room) = self.rooms.get(room_name) {
            let max = room.info.max_participants;
            // A same-identity join replaces a seat rather than taking one.
            if max > 0 && replaced.is_none() && room.participants.len() >= max as usize {
                return Err(JoinError::Full(max));
            }
        }
        let sid = self.ids.next("PA_");
        let room = self.room_entry(room_name, false, now_ms);
        room.ever_joined = true;
        room.empty_since_ms = None;
        let mut effects = Vec::new();
        if let Some(old) = &replaced {
            effects.push(Outgoing {
                to: old.clone(),
                msg: leave_for(lk::DisconnectReason::DuplicateIdentity),
            });
            effects.extend(Self::remove(
                room,
                old,
                lk::DisconnectReason::DuplicateIdentity,
            ));
        }
        let me = lk::ParticipantInfo {
            sid: sid.clone(),
            identity: identity.to_owned(),
            name: name.to_owned(),
            state: lk::participant_info::State::Joined as i32,
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            version: 1,
            is_publisher: false,
            permission: Some(permission),
            ..Default::default()
        };
        let others: Vec<_> = room.participants.values().map(|p| p.info.clone()).collect();
        for other in &others {
            effects.push(roster(&other.sid, vec![me.clone()]));
        }
        room.participants.insert(
            sid,
            Participant {
                info: me.clone(),
                cids: HashMap::new(),
            },
        );
        let mut room_info = room.info.clone();
        room_info.num_participants = room.participants.len() as u32;
        Ok(Joined {
            room: room_info,
            me,
            others,
            replaced,
            effects,
        })
    }

    fn room_entry(&mut self, room_name: &str, by_api: bool, now_ms: i64) -> &mut Room {
        let ids = &mut self.ids;
        self.rooms
            .entry(room_name.to_owned())
            .or_insert_with(|| Room {
                info: lk::Room {
                    sid: ids.next("RM_"),
                    name: room_name.to_owned(),
                    empty_timeout: DEFAULT_EMPTY_TIMEOUT,
                    departure_timeout: DEFAULT_DEPARTURE_TIMEOUT,
                    creation_time: now_ms / 1000,
                    creation_time_ms: now_ms,
                    ..Default::default()
                },
                participants: BTreeMap::new(),
                created_by_api: by_api,
                empty_since_ms: Some(now_ms),
                ever_joined: false,
            })
    }

    fn remove(room: &mut Room, sid: &str, reason: lk::DisconnectReason) -> Vec<Outgoing> {
        let Some(mut gone) = room.participants.remove(sid) else {
            return Vec::new();
        };
        gone.info.state = lk::participant_info::State::Disconnected as i32;
        gone.info.disconnect_reason = reason as i32;
        gone.info.version += 1;
        room.participants
            .keys()
            .map(|to| roster(to, vec![gone.info.clone()]))
            .collect()
    }

    /// Removes a participant; an empty room is forgotten.
    pub fn leave(
        &mut self,
        room_name: &str,
        sid: &str,
        reason: lk::DisconnectReason,
        now_ms: i64,
    ) -> Vec<Outgoing> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        let effects = Self::remove(room, sid, reason);
        if room.participants.is_empty() {
            if room.created_by_api {
                room.empty_since_ms = Some(now_ms);
            } else {
                self.rooms.remove(room_name);
            }
        }
        effects
    }

    /// Registers a track the client is about to publish. Returns the `TrackInfo` for
    /// `TrackPublishedResponse` and the roster updates for the others.
    // `layers` and `simulcast` are deprecated in the protocol but livekit-client 2.23 still reads
    // them for the publication's dimensions and simulcast flag.
    #[allow(deprecated)]
    pub fn add_track(
        &mut self,
        room_name: &str,
        sid: &str,
        req: &lk::AddTrackRequest,
    ) -> Result<(lk::TrackInfo, Vec<Outgoing>), CoreError> {
        let new_sid = self.ids.next("TR_");
        let room = self
            .rooms
            .get_mut(room_name)
            .ok_or(CoreError::UnknownParticipant)?;
        let p = room
            .participants
            .get_mut(sid)
            .ok_or(CoreError::UnknownParticipant)?;
        if !p.info.permission.as_ref().is_some_and(|x| x.can_publish) {
            return Err(CoreError::NotAllowed);
        }
        if req.cid.is_empty() || p.cids.contains_key(&req.cid) {
            return Err(CoreError::DuplicateCid);
        }
        let is_video = req.r#type == lk::TrackType::Video as i32;
        let mime = if is_video {
            let codec = req
                .simulcast_codecs
                .first()
                .map(|c| c.codec.to_ascii_lowercase())
                .unwrap_or_else(|| "vp8".into());
            match codec.as_str() {
                "h264" => "video/H264".to_owned(),
                "vp9" => "video/VP9".to_owned(),
                "av1" => "video/AV1".to_owned(),
                _ => "video/VP8".to_owned(),
            }
        } else {
            "audio/opus".to_owned()
        };
        let track = lk::TrackInfo {
            sid: new_sid.clone(),
            r#type: req.r#type,
            name: req.name.clone(),
            muted: req.muted,
            width: req.width,
            height: req.height,
            simulcast: is_video && req.layers.len() > 1,
            source: req.source,
            layers: req.layers.clone(),
            mime_type: mime.clone(),
            codecs: vec![lk::SimulcastCodecInfo {
                mime_type: mime,
                cid: req.cid.clone(),
                layers: req.layers.clone(),
                ..Default::default()
            }],
            disable_red: req.disable_red,
            encryption: req.encryption,
            stream: req.stream.clone(),
            ..Default::default()
        };
        p.cids.insert(req.cid.clone(), new_sid);
        p.info.tracks.push(track.clone());
        p.info.is_publisher = true;
        p.info.version += 1;
        let info = p.info.clone();
        let effects = room
            .participants
            .keys()
            .filter(|to| to.as_str() != sid)
            .map(|to| roster(to, vec![info.clone()]))
            .collect();
        Ok((track, effects))
    }

    /// The published track a media track id (the client's cid) belongs to.
    pub fn track_by_cid(&self, room_name: &str, sid: &str, cid: &str) -> Option<lk::TrackInfo> {
        let p = self.rooms.get(room_name)?.participants.get(sid)?;
        let track_sid = p.cids.get(cid)?;
        p.info.tracks.iter().find(|t| &t.sid == track_sid).cloned()
    }

    /// Sets a track's muted flag; the others see the new info.
    pub fn set_muted(
        &mut self,
        room_name: &str,
        sid: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<Vec<Outgoing>, CoreError> {
        let room = self
            .rooms
            .get_mut(room_name)
            .ok_or(CoreError::UnknownParticipant)?;
        let p = room
            .participants
            .get_mut(sid)
            .ok_or(CoreError::UnknownParticipant)?;
        let track = p
            .info
            .tracks
            .iter_mut()
            .find(|t| t.sid == track_sid)
            .ok_or(CoreError::UnknownTrack)?;
        if track.muted == muted {
            return Ok(Vec::new());
        }
        track.muted = muted;
        p.info.version += 1;
        let info = p.info.clone();
        Ok(room
            .participants
            .keys()
            .filter(|to| to.as_str() != sid)
            .map(|to| roster(to, vec![info.clone()]))
            .collect())
    }

    /// Unpublishes a track; the others see the info without it (livekit-client treats `tracks`
    /// as authoritative and unpublishes what is missing).
    pub fn remove_track(
        &mut self,
        room_name: &str,
        sid: &str,
        track_sid: &str,
    ) -> Result<Vec<Outgoing>, CoreError> {
        let room = self
            .rooms
            .get_mut(room_name)
            .ok_or(CoreError::UnknownParticipant)?;
        let p = room
            .participants
            .get_mut(sid)
            .ok_or(CoreError::UnknownParticipant)?;
        let before = p.info.tracks.len();
        p.info.tracks.retain(|t| t.sid != track_sid);
        if p.info.tracks.len() == before {
            return Err(CoreError::UnknownTrack);
        }
        p.cids.retain(|_, t| t != track_sid);
        p.info.version += 1;
        let info = p.info.clone();
        Ok(room
            .participants
            .keys()
            .filter(|to| to.as_str() != sid)
            .map(|to| roster(to, vec![info.clone()]))
            .collect())
    }

    /// `CreateRoom`: a new room with these options, or the existing one unchanged (as LiveKit).
    pub fn create_room(&mut self, name: &str, opts: &RoomOptions, now_ms: i64) -> lk::Room {
        let exists = self.rooms.contains_key(name);
        let room = self.room_entry(name, true, now_ms);
        if !exists {
            if opts.empty_timeout > 0 {
                room.info.empty_timeout = opts.empty_timeout;
            }
            if opts.departure_timeout > 0 {
                room.info.departure_timeout = opts.departure_timeout;
            }
            room.info.max_participants = opts.max_participants;
            room.info.metadata = opts.metadata.clone();
        }
        let mut info = room.info.clone();
        info.num_participants = room.participants.len() as u32;
        info
    }

    /// Forgets API-made rooms that stayed empty past their timeout; returns their last info.
    pub fn reap(&mut self, now_ms: i64) -> Vec<lk::Room> {
        let expired: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.participants.is_empty())
            .filter(|(_, r)| {
                let timeout = if r.ever_joined {
                    r.info.departure_timeout
                } else {
                    r.info.empty_timeout
                };
                r.empty_since_ms
                    .is_some_and(|since| now_ms - since >= i64::from(timeout) * 1000)
            })
            .map(|(name, _)| name.clone())
            .collect();
        expired
            .iter()
            .filter_map(|name| self.rooms.remove(name).map(|r| r.info))
            .collect()
    }

    /// `DeleteRoom`: everyone gets `leave{ROOM_DELETED}`; returns the room and who was in it.
    pub fn delete_room(
        &mut self,
        name: &str,
    ) -> Result<(lk::Room, Vec<lk::ParticipantInfo>, Vec<Outgoing>), CoreError> {
        let room = self.rooms.remove(name).ok_or(CoreError::UnknownRoom)?;
        let gone: Vec<_> = room.participants.into_values().map(|p| p.info).collect();
        let effects = gone
            .iter()
            .map(|p| Outgoing {
                to: p.sid.clone(),
                msg: leave_for(lk::DisconnectReason::RoomDeleted),
            })
            .collect();
        let mut info = room.info;
        info.num_participants = 0;
        Ok((info, gone, effects))
    }

    /// `ListRooms`: all rooms, or those named.
    pub fn list_rooms(&self, names: &[String]) -> Vec<lk::Room> {
        let mut rooms: Vec<_> = self
            .rooms
            .keys()
            .filter(|n| names.is_empty() || names.contains(n))
            .filter_map(|n| self.room_info(n))
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// A room's participants in join order; `None` if there is no such room.
    pub fn participants(&self, room_name: &str) -> Option<Vec<lk::ParticipantInfo>> {
        self.rooms
            .get(room_name)
            .map(|r| r.participants.values().map(|p| p.info.clone()).collect())
    }

    fn sid_of(&self, room_name: &str, identity: &str) -> Result<String, CoreError> {
        let room = self.rooms.get(room_name).ok_or(CoreError::UnknownRoom)?;
        room.participants
            .iter()
            .find(|(_, p)| p.info.identity == identity)
            .map(|(sid, _)| sid.clone())
            .ok_or(CoreError::UnknownParticipant)
    }

    pub fn participant_by_identity(
        &self,
        room_name: &str,
        identity: &str,
    ) -> Result<lk::ParticipantInfo, CoreError> {
        let sid = self.sid_of(room_name, identity)?;
        self.participant(room_name, &sid)
            .ok_or(CoreError::UnknownParticipant)
    }

    /// `RemoveParticipant`: it gets `leave{PARTICIPANT_REMOVED}`, the others see it go.
    pub fn remove_participant(
        &mut self,
        room_name: &str,
        identity: &str,
        now_ms: i64,
    ) -> Result<(lk::ParticipantInfo, Vec<Outgoing>), CoreError> {
        let sid = self.sid_of(room_name, identity)?;
        let info = self
            .participant(room_name, &sid)
            .ok_or(CoreError::UnknownParticipant)?;
        let mut effects = vec![Outgoing {
            to: sid.clone(),
            msg: leave_for(lk::DisconnectReason::ParticipantRemoved),
        }];
        effects.extend(self.leave(
            room_name,
            &sid,
            lk::DisconnectReason::ParticipantRemoved,
            now_ms,
        ));
        Ok((info, effects))
    }

    /// `MutePublishedTrack`: the publisher is asked to mute (`mute` message) and everyone sees
    /// the track muted at once. Unmuting someone else is refused, as LiveKit does by default.
    pub fn mute_by_admin(
        &mut self,
        room_name: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<(lk::TrackInfo, Vec<Outgoing>), CoreError> {
        if !muted {
            return Err(CoreError::RemoteUnmute);
        }
        let sid = self.sid_of(room_name, identity)?;
        let mut effects = self.set_muted(room_name, &sid, track_sid, true)?;
        effects.push(Outgoing {
            to: sid.clone(),
            msg: Out::Mute(lk::MuteTrackRequest {
                sid: track_sid.to_owned(),
                muted: true,
            }),
        });
        let track = self
            .participant(room_name, &sid)
            .and_then(|p| p.tracks.into_iter().find(|t| t.sid == track_sid))
            .ok_or(CoreError::UnknownTrack)?;
        Ok((track, effects))
    }

    /// Applies `change` to a participant; everyone, the participant included, gets its new info.
    /// `by_self` checks `canUpdateMetadata` and refuses permission changes.
    pub fn update_participant(
        &mut self,
        room_name: &str,
        sid: &str,
        change: ParticipantChange,
        by_self: bool,
    ) -> Result<(lk::ParticipantInfo, Vec<Outgoing>), CoreError> {
        let room = self
            .rooms
            .get_mut(room_name)
            .ok_or(CoreError::UnknownRoom)?;
        let p = room
            .participants
            .get_mut(sid)
            .ok_or(CoreError::UnknownParticipant)?;
        if by_self
            && (change.permission.is_some()
                || !p
                    .info
                    .permission
                    .as_ref()
                    .is_some_and(|x| x.can_update_metadata))
        {
            return Err(CoreError::MetadataNotAllowed);
        }
        let metadata = change.metadata.filter(|m| !m.is_empty());
        let name = change.name.filter(|n| !n.is_empty());
        if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA) {
            return Err(CoreError::TooLong("metadata"));
        }
        if name.as_ref().is_some_and(|n| n.len() > MAX_NAME) {
            return Err(CoreError::TooLong("name"));
        }
        let mut attributes = p.info.attributes.clone();
        for (k, v) in change.attributes {
            if v.is_empty() {
                attributes.remove(&k);
            } else {
                attributes.insert(k, v);
            }
        }
        if attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            > MAX_ATTRIBUTES
        {
            return Err(CoreError::TooLong("attributes"));
        }
        p.info.attributes = attributes;
        if let Some(m) = metadata {
            p.info.metadata = m;
        }
        if let Some(n) = name {
            p.info.name = n;
        }
        if let Some(perm) = change.permission {
            p.info.permission = Some(perm);
        }
        p.info.version += 1;
        let info = p.info.clone();
        let effects = room
            .participants
            .keys()
            .map(|to| roster(to, vec![info.clone()]))
            .collect();
        Ok((info, effects))
    }

    /// The sid of `identity` in `room`, for the API's by-identity calls.
    pub fn find_sid(&self, room_name: &str, identity: &str) -> Result<String, CoreError> {
        self.sid_of(room_name, identity)
    }

    /// `UpdateRoomMetadata`: everyone gets a `room_update`.
    pub fn update_room_metadata(
        &mut self,
        room_name: &str,
        metadata: &str,
    ) -> Result<(lk::Room, Vec<Outgoing>), CoreError> {
        if metadata.len() > MAX_METADATA {
            return Err(CoreError::TooLong("metadata"));
        }
        let room = self
            .rooms
            .get_mut(room_name)
            .ok_or(CoreError::UnknownRoom)?;
        room.info.metadata = metadata.to_owned();
        let mut info = room.info.clone();
        info.num_participants = room.participants.len() as u32;
        let effects = room
            .participants
            .keys()
            .map(|to| Outgoing {
                to: to.clone(),
                msg: Out::RoomUpdate(lk::RoomUpdate {
                    room: Some(info.clone()),
                }),
            })
            .collect();
        Ok((info, effects))
    }

    /// A room's info with its current participant count.
    pub fn room_info(&self, room_name: &str) -> Option<lk::Room> {
        self.rooms.get(room_name).map(|r| {
            let mut info = r.info.clone();
            info.num_participants = r.participants.len() as u32;
            info
        })
    }

    /// A participant's current info.
    pub fn participant(&self, room_name: &str, sid: &str) -> Option<lk::ParticipantInfo> {
        self.rooms
            .get(room_name)
            .and_then(|r| r.participants.get(sid))
            .map(|p| p.info.clone())
    }

    /// Whether a participant may receive media.
    pub fn can_subscribe(&self, room_name: &str, sid: &str) -> bool {
        self.rooms
            .get(room_name)
            .and_then(|r| r.participants.get(sid))
            .and_then(|p| p.info.permission.as_ref())
            .is_some_and(|p| p.can_subscribe)
    }

    /// (sid, identity) of a room's participants, in join order.
    pub fn members(&self, room_name: &str) -> Vec<(String, String)> {
        self.rooms
            .get(room_name)
            .map(|r| {
                r.participants
                    .iter()
                    .map(|(sid, p)| (sid.clone(), p.info.identity.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The sids of a room's participants, in join order.
    pub fn participant_sids(&self, room_name: &str) -> Vec<String> {
        self.rooms
            .get(room_name)
            .map(|r| r.participants.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// (rooms, participants, published tracks)
    pub fn counts(&self) -> (usize, usize, usize) {
        let participants = self.rooms.values().map(|r| r.participants.len()).sum();
        let tracks = self
            .rooms
            .values()
            .flat_map(|r| r.participants.values())
            .map(|p| p.info.tracks.len())
            .sum();
        (self.rooms.len(), participants, tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl IdSource for Counter {
        fn next(&mut self, prefix: &str) -> String {
            self.0 += 1;
            format!("{prefix}{:04}", self.0)
        }
    }

    fn core() -> RoomCore {
        RoomCore::new(Box::new(Counter(0)))
    }

    fn perm() -> lk::ParticipantPermission {
        lk::ParticipantPermission {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            ..Default::default()
        }
    }

    fn updates_for(effects: &[Outgoing], to: &str) -> Vec<lk::ParticipantInfo> {
        effects
            .iter()
            .filter(|o| o.to == to)
            .filter_map(|o| match &o.msg {
                Out::Update(u) => Some(u.participants.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn the_second_joiner_sees_the_first_and_the_first_is_told() {
        let mut c = core();
        let a = c.join("r", "alice", "Alice", perm(), 1_000).unwrap();
        assert!(a.others.is_empty());
        assert!(a.effects.is_empty());
        assert!(a.me.permission.as_ref().unwrap().can_publish);
        let b = c.join("r", "bob", "Bob", perm(), 2_000).unwrap();
        assert_eq!(b.others.len(), 1);
        assert_eq!(b.others[0].identity, "alice");
        assert_eq!(b.room.sid, a.room.sid);
        assert_eq!(b.room.num_participants, 2);
        let told = updates_for(&b.effects, &a.me.sid);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].identity, "bob");
        assert_eq!(c.counts(), (1, 2, 0));
    }

    #[test]
    fn leaving_bumps_the_version_and_marks_disconnected() {
        let mut c = core();
        let a = c.join("r", "alice", "", perm(), 0).unwrap();
        let b = c.join("r", "bob", "", perm(), 0).unwrap();
        let effects = c.leave("r", &b.me.sid, lk::DisconnectReason::ClientInitiated, 0);
        let told = updates_for(&effects, &a.me.sid);
        assert_eq!(told[0].sid, b.me.sid);
        assert_eq!(
            told[0].state,
            lk::participant_info::State::Disconnected as i32
        );
        assert!(told[0].version > b.me.version);
        c.leave("r", &a.me.sid, lk::DisconnectReason::ClientInitiated, 0);
        assert_eq!(c.counts(), (0, 0, 0));
        // Leaving twice, or from an unknown room, is a no-op.
        assert!(c
            .leave("r", &a.me.sid, lk::DisconnectReason::ClientInitiated, 0)
            .is_empty());
    }

    #[test]
    fn a_duplicate_identity_replaces_the_old_participant() {
        let mut c = core();
        let a1 = c.join("r", "alice", "", perm(), 0).unwrap();
        let bob = c.join("r", "bob", "", perm(), 0).unwrap();
        let a2 = c.join("r", "alice", "", perm(), 0).unwrap();
        assert_eq!(a2.replaced.as_deref(), Some(a1.me.sid.as_str()));
        assert!(a2.effects.iter().any(|o| o.to == a1.me.sid
            && matches!(&o.msg, Out::Leave(l) if l.reason == lk::DisconnectReason::DuplicateIdentity as i32)));
        let told = updates_for(&a2.effects, &bob.me.sid);
        assert!(told
            .iter()
            .any(|p| p.sid == a1.me.sid
                && p.state == lk::participant_info::State::Disconnected as i32));
        assert!(told.iter().any(|p| p.sid == a2.me.sid));
        assert_eq!(a2.others.len(), 1);
        assert_eq!(c.counts(), (1, 2, 0));
    }

    #[test]
    #[allow(deprecated)]
    fn add_track_matches_cid_and_announces_the_track() {
        let mut c = core();
        let a = c.join("r", "alice", "", perm(), 0).unwrap();
        let b = c.join("r", "bob", "", perm(), 0).unwrap();
        let req = lk::AddTrackRequest {
            cid: "cam-cid".into(),
            r#type: lk::TrackType::Video as i32,
            source: lk::TrackSource::Camera as i32,
            width: 1280,
            height: 720,
            layers: vec![Default::default(), Default::default(), Default::default()],
            ..Default::default()
        };
        let (track, effects) = c.add_track("r", &a.me.sid, &req).unwrap();
        assert!(track.sid.starts_with("TR_"));
        assert!(track.simulcast);
        assert_eq!(track.mime_type, "video/VP8");
        let told = updates_for(&effects, &b.me.sid);
        assert_eq!(told[0].tracks[0].sid, track.sid);
        assert!(told[0].version > a.me.version);
        assert_eq!(
            c.track_by_cid("r", &a.me.sid, "cam-cid").unwrap().sid,
            track.sid
        );
        assert_eq!(c.track_by_cid("r", &a.me.sid, "nope"), None);
        assert_eq!(
            c.add_track("r", &a.me.sid, &req),
            Err(CoreError::DuplicateCid)
        );
        assert_eq!(
            c.add_track("r", "PA_unknown", &req),
            Err(CoreError::UnknownParticipant)
        );
        let muted = c.set_muted("r", &a.me.sid, &track.sid, true).unwrap();
        assert!(updates_for(&muted, &b.me.sid)[0].tracks[0].muted);
        assert_eq!(
            c.set_muted("r", &a.me.sid, "TR_nope", true),
            Err(CoreError::UnknownTrack)
        );
        assert_eq!(c.counts(), (1, 2, 1));
        let gone = c.remove_track("r", &a.me.sid, &track.sid).unwrap();
        let told = updates_for(&gone, &b.me.sid);
        assert!(told[0].tracks.is_empty());
        assert_eq!(c.track_by_cid("r", &a.me.sid, "cam-cid"), None);
        assert_eq!(
            c.remove_track("r", &a.me.sid, &track.sid),
            Err(CoreError::UnknownTrack)
        );
        assert_eq!(c.counts(), (1, 2, 0));
        assert_eq!(
            c.participant_sids("r"),
            vec![a.me.sid.clone(), b.me.sid.clone()]
        );
    }

    #[test]
    fn publishing_without_permission_is_refused() {
        let mut c = core();
        let a = c
            .join(
                "r",
                "viewer",
                "",
                lk::ParticipantPermission {
                    can_subscribe: true,
                    ..Default::default()
                },
                0,
            )
            .unwrap();
        let req = lk::AddTrackRequest {
            cid: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            c.add_track("r", &a.me.sid, &req),
            Err(CoreError::NotAllowed)
        );
    }

    fn leaves_for(effects: &[Outgoing], to: &str) -> Vec<i32> {
        effects
            .iter()
            .filter(|o| o.to == to)
            .filter_map(|o| match &o.msg {
                Out::Leave(l) => Some(l.reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_api_room_keeps_its_options_caps_joins_and_expires_when_empty() {
        let mut c = core();
        let opts = RoomOptions {
            empty_timeout: 10,
            max_participants: 2,
            metadata: "m".into(),
            ..Default::default()
        };
        let room = c.create_room("r", &opts, 0);
        assert_eq!((room.max_participants, room.empty_timeout), (2, 10));
        assert_eq!(room.departure_timeout, DEFAULT_DEPARTURE_TIMEOUT);
        // Creating it again returns it unchanged.
        let again = c.create_room("r", &RoomOptions::default(), 5);
        assert_eq!(again.sid, room.sid);
        assert_eq!(again.metadata, "m");
        assert!(c.reap(9_999).is_empty());
        let a = c.join("r", "alice", "", perm(), 1_000).unwrap();
        assert_eq!(a.room.metadata, "m");
        c.join("r", "bob", "", perm(), 1_000).unwrap();
        assert_eq!(
            c.join("r", "carol", "", perm(), 1_000),
            Err(JoinError::Full(2))
        );
        // The same identity takes its own seat back.
        let a2 = c.join("r", "alice", "", perm(), 1_000).unwrap();
        assert_eq!(c.participants("r").unwrap().len(), 2);
        for sid in c.participant_sids("r") {
            c.leave("r", &sid, lk::DisconnectReason::ClientInitiated, 50_000);
        }
        let _ = a2;
        // Empty now: kept for departure_timeout, then gone.
        assert_eq!(c.list_rooms(&[]).len(), 1);
        assert!(c.reap(50_000 + 19_999).is_empty());
        assert_eq!(c.reap(50_000 + 20_000)[0].name, "r");
        assert!(c.list_rooms(&[]).is_empty());
        // Never joined: empty_timeout.
        c.create_room("x", &opts, 0);
        assert_eq!(c.reap(10_000).len(), 1);
    }

    #[test]
    fn admin_operations_reach_the_participants() {
        let mut c = core();
        let a = c.join("r", "alice", "", perm(), 0).unwrap();
        let b = c.join("r", "bob", "", perm(), 0).unwrap();
        c.join("s", "sam", "", perm(), 0).unwrap();
        assert_eq!(
            c.list_rooms(&[])
                .iter()
                .map(|r| (r.name.as_str(), r.num_participants))
                .collect::<Vec<_>>(),
            vec![("r", 2), ("s", 1)]
        );
        assert_eq!(c.list_rooms(&["s".into()]).len(), 1);
        assert_eq!(c.participant_by_identity("r", "bob").unwrap().sid, b.me.sid);
        assert_eq!(
            c.participant_by_identity("r", "nobody"),
            Err(CoreError::UnknownParticipant)
        );
        assert_eq!(
            c.participant_by_identity("zz", "bob"),
            Err(CoreError::UnknownRoom)
        );

        let (track, _) = c
            .add_track(
                "r",
                &a.me.sid,
                &lk::AddTrackRequest {
                    cid: "mic".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let (muted, effects) = c.mute_by_admin("r", "alice", &track.sid, true).unwrap();
        assert!(muted.muted);
        assert!(updates_for(&effects, &b.me.sid)[0].tracks[0].muted);
        assert!(effects
            .iter()
            .any(|o| o.to == a.me.sid
                && matches!(&o.msg, Out::Mute(m) if m.sid == track.sid && m.muted)));
        assert_eq!(
            c.mute_by_admin("r", "alice", &track.sid, false),
            Err(CoreError::RemoteUnmute)
        );

        let change = ParticipantChange {
            metadata: Some("meta".into()),
            name: Some("Alice A.".into()),
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        };
        let (info, effects) = c
            .update_participant("r", &a.me.sid, change.clone(), false)
            .unwrap();
        assert_eq!(
            (info.metadata.as_str(), info.name.as_str()),
            ("meta", "Alice A.")
        );
        // Everyone, the participant too, gets the new info.
        for to in [&a.me.sid, &b.me.sid] {
            assert_eq!(updates_for(&effects, to)[0].attributes["k"], "v");
        }
        // An empty attribute value removes it; empty metadata/name leave them.
        let (info, _) = c
            .update_participant(
                "r",
                &a.me.sid,
                ParticipantChange {
                    metadata: Some(String::new()),
                    attributes: [("k".to_owned(), String::new())].into(),
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        assert!(info.attributes.is_empty());
        assert_eq!(info.metadata, "meta");
        // Self-updates need canUpdateMetadata and never touch permissions.
        assert_eq!(
            c.update_participant("r", &a.me.sid, change.clone(), true),
            Err(CoreError::MetadataNotAllowed)
        );
        let mut allowed = perm();
        allowed.can_update_metadata = true;
        c.update_participant(
            "r",
            &a.me.sid,
            ParticipantChange {
                permission: Some(allowed),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert!(c.update_participant("r", &a.me.sid, change, true).is_ok());
        let too_long = ParticipantChange {
            name: Some("n".repeat(MAX_NAME + 1)),
            ..Default::default()
        };
        assert_eq!(
            c.update_participant("r", &a.me.sid, too_long, true),
            Err(CoreError::TooLong("name"))
        );

        let (room, effects) = c.update_room_metadata("r", "topic").unwrap();
        assert_eq!(room.metadata, "topic");
        assert_eq!(
            effects
                .iter()
                .filter(|o| matches!(&o.msg, Out::RoomUpdate(u) if u.room.as_ref().unwrap().metadata == "topic"))
                .count(),
            2
        );

        let (gone, effects) = c.remove_participant("r", "bob", 0).unwrap();
        assert_eq!(gone.sid, b.me.sid);
        assert_eq!(
            leaves_for(&effects, &b.me.sid),
            vec![lk::DisconnectReason::ParticipantRemoved as i32]
        );
        assert_eq!(updates_for(&effects, &a.me.sid)[0].sid, b.me.sid);

        let (_, gone, effects) = c.delete_room("r").unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(
            leaves_for(&effects, &a.me.sid),
            vec![lk::DisconnectReason::RoomDeleted as i32]
        );
        assert_eq!(c.delete_room("r").unwrap_err(), CoreError::UnknownRoom);
        assert!(c.participants("r").is_none());
    }
}
