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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("no such participant")]
    UnknownParticipant,
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
}

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
    ) -> Joined {
        let room_sid = self.ids.next("RM_");
        let sid = self.ids.next("PA_");
        let room = self
            .rooms
            .entry(room_name.to_owned())
            .or_insert_with(|| Room {
                info: lk::Room {
                    sid: room_sid,
                    name: room_name.to_owned(),
                    empty_timeout: 300,
                    departure_timeout: 20,
                    creation_time: now_ms / 1000,
                    creation_time_ms: now_ms,
                    ..Default::default()
                },
                participants: BTreeMap::new(),
            });
        let mut effects = Vec::new();
        let replaced = room
            .participants
            .iter()
            .find(|(_, p)| p.info.identity == identity)
            .map(|(sid, _)| sid.clone());
        if let Some(old) = &replaced {
            effects.push(Outgoing {
                to: old.clone(),
                msg: Out::Leave(lk::LeaveRequest {
                    can_reconnect: false,
                    reason: lk::DisconnectReason::DuplicateIdentity as i32,
                    action: lk::leave_request::Action::Disconnect as i32,
                    regions: None,
                }),
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
        Joined {
            room: room_info,
            me,
            others,
            replaced,
            effects,
        }
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
    ) -> Vec<Outgoing> {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return Vec::new();
        };
        let effects = Self::remove(room, sid, reason);
        if room.participants.is_empty() {
            self.rooms.remove(room_name);
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
        let a = c.join("r", "alice", "Alice", perm(), 1_000);
        assert!(a.others.is_empty());
        assert!(a.effects.is_empty());
        assert!(a.me.permission.as_ref().unwrap().can_publish);
        let b = c.join("r", "bob", "Bob", perm(), 2_000);
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
        let a = c.join("r", "alice", "", perm(), 0);
        let b = c.join("r", "bob", "", perm(), 0);
        let effects = c.leave("r", &b.me.sid, lk::DisconnectReason::ClientInitiated);
        let told = updates_for(&effects, &a.me.sid);
        assert_eq!(told[0].sid, b.me.sid);
        assert_eq!(
            told[0].state,
            lk::participant_info::State::Disconnected as i32
        );
        assert!(told[0].version > b.me.version);
        c.leave("r", &a.me.sid, lk::DisconnectReason::ClientInitiated);
        assert_eq!(c.counts(), (0, 0, 0));
        // Leaving twice, or from an unknown room, is a no-op.
        assert!(c
            .leave("r", &a.me.sid, lk::DisconnectReason::ClientInitiated)
            .is_empty());
    }

    #[test]
    fn a_duplicate_identity_replaces_the_old_participant() {
        let mut c = core();
        let a1 = c.join("r", "alice", "", perm(), 0);
        let bob = c.join("r", "bob", "", perm(), 0);
        let a2 = c.join("r", "alice", "", perm(), 0);
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
        let a = c.join("r", "alice", "", perm(), 0);
        let b = c.join("r", "bob", "", perm(), 0);
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
        let a = c.join(
            "r",
            "viewer",
            "",
            lk::ParticipantPermission {
                can_subscribe: true,
                ..Default::default()
            },
            0,
        );
        let req = lk::AddTrackRequest {
            cid: "x".into(),
            ..Default::default()
        };
        assert_eq!(
            c.add_track("r", &a.me.sid, &req),
            Err(CoreError::NotAllowed)
        );
    }
}
