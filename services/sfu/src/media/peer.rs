//! PeerConnections: the [`MediaEngine`] that makes them and the [`Peer`] that wraps one.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc::{self, UnboundedSender};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine as WebrtcMediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};

use crate::quality::LinkStats;

use super::codecs::{opus_codec, register_codecs, vp8_codec, AUDIO_LEVEL_URI};
use super::interceptors::{interceptor_chain, register_nack_feedback, Chain, WireCounters};
use super::nat::{nat_1to1_candidates, NatMapping};
use super::track::{DownTrack, IncomingTrack};
use super::{webrtc_err, Kind, MediaError, MediaEvent, PeerState, Role};

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
    pub nat_1to1: Arc<[NatMapping]>,
    pub ice_servers: Vec<IceServer>,
}

/// Makes PeerConnections with the SFU's codecs, extensions and network settings.
pub struct MediaEngine {
    settings: MediaSettings,
    counters: WireCounters,
    next_port: AtomicU32,
    /// Which interceptors a PeerConnection gets (see [`Chain`]).
    chain: Chain,
}

struct Handler {
    role: Role,
    nat_1to1: Arc<[NatMapping]>,
    events: UnboundedSender<MediaEvent>,
    data: mpsc::Sender<IncomingData>,
}

/// A message a client sent on one of its data channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingData {
    /// Came on `_reliable` (else `_lossy`); the relay keeps the kind.
    pub reliable: bool,
    pub bytes: Vec<u8>,
}

/// Larger data messages are dropped (LiveKit's clients stay below 15 KiB per packet).
pub const MAX_DATA_MESSAGE: usize = 64 * 1024;
/// Bytes queued per data channel before further sends to it are dropped.
const DATA_SEND_BUFFER: usize = 1024 * 1024;

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let init = match event.candidate.to_json() {
            Ok(init) => init,
            Err(e) => {
                tracing::warn!(error = %e, "cannot describe a local candidate");
                return;
            }
        };
        // `webrtc` 0.21 gathers host candidates itself and ignores its setting engine's NAT
        // 1:1 list, so the public address goes in here.
        for candidate in nat_1to1_candidates(&init.candidate, &self.nat_1to1) {
            let init = RTCIceCandidateInit {
                candidate,
                ..init.clone()
            };
            match serde_json::to_string(&init) {
                Ok(init_json) => {
                    let _ = self.events.send(MediaEvent::Candidate {
                        role: self.role,
                        init_json,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot serialise a local candidate"),
            }
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

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let label = dc.label().await.unwrap_or_default();
        let reliable = match label.as_str() {
            "_reliable" => true,
            "_lossy" => false,
            other => {
                tracing::debug!(label = other, "ignoring a data channel");
                return;
            }
        };
        let data = self.data.clone();
        tokio::spawn(async move {
            while let Some(event) = dc.poll().await {
                match event {
                    DataChannelEvent::OnMessage(msg) => {
                        if msg.data.len() > MAX_DATA_MESSAGE {
                            tracing::warn!(
                                len = msg.data.len(),
                                "dropping an oversized data message"
                            );
                            continue;
                        }
                        let incoming = IncomingData {
                            reliable,
                            bytes: msg.data.to_vec(),
                        };
                        // Waiting here pushes back on the sender's SCTP stream.
                        if data.send(incoming).await.is_err() {
                            break;
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
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
            streams: Vec::new(),
        };
        let _ = self.events.send(MediaEvent::Track(incoming));
    }
}

impl MediaEngine {
    /// The SFU's engine: every PeerConnection carries only the interceptors its direction uses.
    pub fn new(settings: MediaSettings, counters: WireCounters) -> Self {
        Self {
            settings,
            counters,
            next_port: AtomicU32::new(0),
            chain: Chain::Sfu,
        }
    }

    /// An engine for clients (load generators, tests): both directions' interceptors on every
    /// PeerConnection, whichever way its media flows.
    pub fn for_clients(settings: MediaSettings, counters: WireCounters) -> Self {
        Self {
            chain: Chain::Client,
            ..Self::new(settings, counters)
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

    /// Whether a PeerConnection could get a UDP port now (probed by binding and releasing each
    /// candidate port; always true with ephemeral ports).
    pub fn has_free_port(&self) -> bool {
        let (lo, _) = self.settings.port_range;
        lo == 0
            || self
                .ports()
                .into_iter()
                .any(|port| std::net::UdpSocket::bind((self.settings.bind_ip, port)).is_ok())
    }

    /// A new PeerConnection for `role`, reporting on `events`.
    pub async fn create_peer(
        &self,
        role: Role,
        events: UnboundedSender<MediaEvent>,
        data: mpsc::Sender<IncomingData>,
    ) -> Result<Peer, MediaError> {
        let mut last_err = MediaError::NoPort;
        for port in self.ports() {
            match self
                .try_build(role, events.clone(), data.clone(), port)
                .await
            {
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
        data: mpsc::Sender<IncomingData>,
        port: u16,
    ) -> Result<Peer, MediaError> {
        let mut media = WebrtcMediaEngine::default();
        register_codecs(&mut media, role)?;
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(webrtc_err)?;
        // The mid/rid/repaired-rid extensions for simulcast, NACK feedback and TWCC feedback
        // (what lets Chrome turn on the higher simulcast layers) are negotiated on both PCs.
        configure_simulcast_extension_headers(&mut media).map_err(webrtc_err)?;
        register_nack_feedback(&mut media);
        // Only the negotiation: the interceptor goes in below where wanted.
        configure_twcc_receiver_only(Registry::new(), &mut media).map_err(webrtc_err)?;
        let link = Arc::new(LinkStats::default());
        let registry = interceptor_chain(self.chain, role, &self.counters, &link);
        // Browsers hide their addresses behind mDNS names, so the pair that works is usually
        // peer-reflexive (learnt from the browser's checks). webrtc-rs waits 1 s (prflx) or
        // 0.5 s (srflx) before nominating such a pair, which is most of a join's media delay;
        // an SFU has no better pair to wait for.
        let setting = SettingEngineBuilder::new()
            .with_srflx_acceptance_min_wait(Some(std::time::Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
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
            .with_handler(Arc::new(Handler {
                role,
                nat_1to1: self.settings.nat_1to1.clone(),
                events,
                data,
            }))
            .with_data_channel_send_buffer_limit(DATA_SEND_BUFFER)
            .with_udp_addrs(vec![format!("{}:{port}", self.settings.bind_ip)])
            .build()
            .await
            .map_err(webrtc_err)?;
        Ok(Peer {
            role,
            pc: Box::new(pc),
            channels: Vec::new(),
            link,
            _alive: Alive::new(self.counters.peer_connections.clone()),
        })
    }
}

/// One PeerConnection.
pub struct Peer {
    role: Role,
    pc: Box<dyn PeerConnection>,
    channels: Vec<(&'static str, Arc<dyn DataChannel>)>,
    link: Arc<LinkStats>,
    _alive: Alive,
}

/// Counts one in a gauge for as long as it lives.
pub(crate) struct Alive(prometheus::IntGauge);

impl Alive {
    pub(crate) fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Peer {
    pub fn role(&self) -> Role {
        self.role
    }

    /// What this PeerConnection's wire saw (for connection quality).
    pub fn link_stats(&self) -> &LinkStats {
        &self.link
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
            self.channels.push((label, dc));
        }
        Ok(())
    }

    /// Sends a relayed data packet on our `_reliable` or `_lossy` channel. Dropped (`false`)
    /// when the channel is missing, not open yet, or its send buffer is full.
    pub async fn send_data(&self, reliable: bool, bytes: &[u8]) -> bool {
        let label = if reliable { "_reliable" } else { "_lossy" };
        let Some((_, dc)) = self.channels.iter().find(|(l, _)| *l == label) else {
            return false;
        };
        match dc.try_send(bytes::BytesMut::from(bytes)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(label, error = %e, "data not sent");
                false
            }
        }
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

    /// Adds an outgoing track whose msid is `stream_id track_id` (LiveKit: `PA_…|TR_… TR_…`).
    /// Takes effect with the next offer.
    pub async fn add_downtrack(
        &self,
        kind: Kind,
        stream_id: &str,
        track_id: &str,
    ) -> Result<DownTrack, MediaError> {
        let ssrc = loop {
            let s = rand::random::<u32>();
            if s != 0 {
                break s;
            }
        };
        let (rtc_kind, codec) = match kind {
            Kind::Audio => (RtpCodecKind::Audio, opus_codec()),
            Kind::Video => (RtpCodecKind::Video, vp8_codec()),
        };
        let local = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = self
            .pc
            .add_track(local.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_err)?;
        Ok(DownTrack {
            local,
            sender,
            ssrc,
            kind,
        })
    }

    /// Stops sending a downtrack; takes effect with the next offer.
    pub async fn remove_downtrack(&self, down: &DownTrack) -> Result<(), MediaError> {
        self.pc.remove_track(&down.sender).await.map_err(webrtc_err)
    }

    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing a PeerConnection");
        }
    }
}
