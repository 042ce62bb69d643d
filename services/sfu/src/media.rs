//! The media plane behind a small boundary: PeerConnections on `webrtc` 0.21 (pinned), described
//! in this module's own types so that the rest of the SFU never names a `webrtc` type.
//!
//! A [`MediaEngine`] makes [`Peer`]s. A peer reports what happens on it as [`MediaEvent`]s on
//! the queue it was made with; its handler holds only that queue, never the session, so nothing
//! keeps a closed session alive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use tokio::sync::mpsc::UnboundedSender;
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine as WebrtcMediaEngine, PeerConnection,
    PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceCandidateType, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

/// Which of a participant's two PeerConnections (LiveKit's v0 dual-PC mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The client publishes on it; the client offers.
    Publisher,
    /// The client receives on it; the server offers.
    Subscriber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

#[derive(thiserror::Error, Debug)]
pub enum MediaError {
    #[error("bad session description: {0}")]
    BadSdp(String),
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    #[error("webrtc: {0}")]
    Webrtc(String),
    #[error("no UDP port free in the configured range")]
    NoPort,
}

fn webrtc_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Webrtc(e.to_string())
}

/// What a peer reports.
pub enum MediaEvent {
    /// A local ICE candidate, as the JSON of an `RTCIceCandidateInit` (LiveKit's trickle format).
    Candidate {
        role: Role,
        init_json: String,
    },
    State {
        role: Role,
        state: PeerState,
    },
    /// A remote track started (publisher side).
    Track(IncomingTrack),
}

impl std::fmt::Debug for MediaEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Candidate { role, .. } => write!(f, "Candidate({role:?})"),
            Self::State { role, state } => write!(f, "State({role:?}, {state:?})"),
            Self::Track(t) => write!(f, "Track({}, {:?})", t.track_id, t.kind),
        }
    }
}

/// One received RTP packet, with the simulcast layer it belongs to.
pub struct IncomingPacket {
    pub rid: Option<String>,
    pub ssrc: u32,
    pub payload_len: usize,
}

/// A track a client publishes. `track_id` is the msid track id, which livekit-client sets to the
/// `cid` of its `AddTrackRequest`.
pub struct IncomingTrack {
    pub track_id: String,
    pub stream_id: String,
    pub kind: Kind,
    remote: Arc<dyn TrackRemote>,
    rids: HashMap<u32, Option<String>>,
}

impl IncomingTrack {
    /// The next RTP packet; `None` once the track has ended.
    pub async fn next_packet(&mut self) -> Option<IncomingPacket> {
        loop {
            match self.remote.poll().await? {
                TrackRemoteEvent::OnOpen(init) => {
                    self.rids.insert(init.ssrc, init.rid.map(|r| r.to_string()));
                }
                TrackRemoteEvent::OnRtpPacket(packet) => {
                    let ssrc = packet.header.ssrc;
                    let rid = match self.rids.get(&ssrc) {
                        Some(rid) => rid.clone(),
                        None => {
                            let rid = self.remote.rid(ssrc).await.map(|r| r.to_string());
                            self.rids.insert(ssrc, rid.clone());
                            rid
                        }
                    };
                    return Some(IncomingPacket {
                        rid,
                        ssrc,
                        payload_len: packet.payload.len(),
                    });
                }
                TrackRemoteEvent::OnEnded => return None,
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub bind_ip: IpAddr,
    /// Inclusive; (0, 0) = ephemeral ports.
    pub port_range: (u16, u16),
    pub nat_1to1_ips: Vec<String>,
    pub ice_servers: Vec<IceServer>,
}

/// Makes PeerConnections with the SFU's codecs, extensions and network settings.
pub struct MediaEngine {
    settings: MediaSettings,
    next_port: AtomicU32,
}

struct Handler {
    role: Role,
    events: UnboundedSender<MediaEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => match serde_json::to_string(&init) {
                Ok(init_json) => {
                    let _ = self.events.send(MediaEvent::Candidate {
                        role: self.role,
                        init_json,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialise a local candidate"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot describe a local candidate"),
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let state = match state {
            RTCPeerConnectionState::Connected => PeerState::Connected,
            RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
            RTCPeerConnectionState::Failed => PeerState::Failed,
            RTCPeerConnectionState::Closed => PeerState::Closed,
            _ => PeerState::Connecting,
        };
        let _ = self.events.send(MediaEvent::State {
            role: self.role,
            state,
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Audio => Kind::Audio,
            _ => Kind::Video,
        };
        let incoming = IncomingTrack {
            track_id: track.track_id().await,
            stream_id: track.stream_id().await,
            kind,
            remote: track,
            rids: HashMap::new(),
        };
        let _ = self.events.send(MediaEvent::Track(incoming));
    }
}

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

impl MediaEngine {
    pub fn new(settings: MediaSettings) -> Self {
        Self {
            settings,
            next_port: AtomicU32::new(0),
        }
    }

    fn ports(&self) -> Vec<u16> {
        let (lo, hi) = self.settings.port_range;
        if lo == 0 {
            return vec![0];
        }
        let span = u32::from(hi - lo) + 1;
        let start = self.next_port.fetch_add(1, Ordering::Relaxed) % span;
        (0..span.min(64))
            .map(|i| lo + ((start + i) % span) as u16)
            .collect()
    }

    /// A new PeerConnection for `role`, reporting on `events`.
    pub async fn create_peer(
        &self,
        role: Role,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Peer, MediaError> {
        let mut last_err = MediaError::NoPort;
        for port in self.ports() {
            match self.try_build(role, events.clone(), port).await {
                Ok(peer) => return Ok(peer),
                Err(e) => {
                    tracing::debug!(port, error = %e, "cannot build a PeerConnection on this port");
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    async fn try_build(
        &self,
        role: Role,
        events: UnboundedSender<MediaEvent>,
        port: u16,
    ) -> Result<Peer, MediaError> {
        let mut media = WebrtcMediaEngine::default();
        media.register_default_codecs().map_err(webrtc_err)?;
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(webrtc_err)?;
        // NACK, the mid/rid/repaired-rid extensions for simulcast, a TWCC receiver (its feedback
        // is what lets Chrome turn on the higher simulcast layers) and RTCP reports.
        let registry =
            register_default_interceptors(Registry::new(), &mut media).map_err(webrtc_err)?;
        let mut setting = SettingEngineBuilder::new();
        if !self.settings.nat_1to1_ips.is_empty() {
            setting = setting.with_nat_1to1_ips(
                self.settings.nat_1to1_ips.clone(),
                RTCIceCandidateType::Host,
            );
        }
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                self.settings
                    .ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone(),
                        credential: s.credential.clone(),
                    })
                    .collect(),
            )
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(setting.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler { role, events }))
            .with_udp_addrs(vec![format!("{}:{port}", self.settings.bind_ip)])
            .build()
            .await
            .map_err(webrtc_err)?;
        Ok(Peer {
            role,
            pc: Box::new(pc),
            channels: Vec::new(),
        })
    }
}

/// One PeerConnection.
pub struct Peer {
    role: Role,
    pc: Box<dyn PeerConnection>,
    channels: Vec<Arc<dyn DataChannel>>,
}

impl Peer {
    pub fn role(&self) -> Role {
        self.role
    }

    /// Creates LiveKit's data channels (`_reliable` ordered; `_lossy` and `_data_track`
    /// unordered without retransmits). The server does this on the subscriber PC.
    pub async fn create_livekit_data_channels(&mut self) -> Result<(), MediaError> {
        for (label, reliable) in [
            ("_reliable", true),
            ("_lossy", false),
            ("_data_track", false),
        ] {
            let init = RTCDataChannelInit {
                ordered: reliable,
                max_retransmits: if reliable { None } else { Some(0) },
                ..Default::default()
            };
            let dc = self
                .pc
                .create_data_channel(label, Some(init))
                .await
                .map_err(webrtc_err)?;
            self.channels.push(dc);
        }
        Ok(())
    }

    /// Creates an offer and sets it as the local description; returns its SDP.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        let offer = self.pc.create_offer(None).await.map_err(webrtc_err)?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(offer)
            .await
            .map_err(webrtc_err)?;
        Ok(sdp)
    }

    /// Applies the remote answer to our offer.
    pub async fn apply_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let desc = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(|e| MediaError::BadSdp(e.to_string()))
    }

    /// Applies a remote offer, answers it, and returns the answer's SDP.
    pub async fn answer_offer(&self, sdp: &str) -> Result<String, MediaError> {
        let desc = RTCSessionDescription::offer(sdp.to_owned())
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let answer = self.pc.create_answer(None).await.map_err(webrtc_err)?;
        let out = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(webrtc_err)?;
        Ok(out)
    }

    pub async fn has_remote_description(&self) -> bool {
        self.pc.remote_description().await.is_some()
    }

    /// Adds a remote candidate given as `RTCIceCandidateInit` JSON.
    pub async fn add_remote_candidate(&self, init_json: &str) -> Result<(), MediaError> {
        let init: RTCIceCandidateInit =
            serde_json::from_str(init_json).map_err(|e| MediaError::BadCandidate(e.to_string()))?;
        if init.candidate.is_empty() {
            // End-of-candidates.
            return Ok(());
        }
        self.pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| MediaError::BadCandidate(e.to_string()))
    }

    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing a PeerConnection");
        }
    }
}
