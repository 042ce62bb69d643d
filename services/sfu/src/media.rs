//! The media plane behind a small boundary: PeerConnections on `webrtc` 0.21 (pinned), described
//! in this module's own types so that the rest of the SFU never names a `webrtc` type.
//!
//! A [`MediaEngine`] makes [`Peer`]s. A peer reports what happens on it as [`MediaEvent`]s on
//! the queue it was made with; its handler holds only that queue, never the session, so nothing
//! keeps a closed session alive.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use prometheus::IntCounter;
use rtc::interceptor::{
    Attribute, Interceptor, Packet as InterceptorPacket, Slot, StreamInfo, TaggedPacket,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::mpsc::{self, UnboundedSender};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

/// Lets a subscriber's keyframe requests (PLI, FIR) through to the application, which relays
/// them to the publisher. Inbound RTCP otherwise ends inside the interceptor chain; everything
/// else is left there, for the interceptors that act on it.
struct KeyframeRequestTap {
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

fn asks_for_keyframe(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| asks_for_keyframe(p.as_ref()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = InterceptorPacket::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Counters the media plane bumps for what crosses the wire, whichever engine is behind it.
/// Clones share their values; [`WireCounters::default`] gives unregistered ones (tools, tests).
#[derive(Clone)]
pub struct WireCounters {
    /// NACK packets received (subscribers asking for lost packets).
    pub nacks_received: IntCounter,
    /// Sequence numbers those NACKs asked for.
    pub nacked_packets: IntCounter,
    /// NACK packets sent (to publishers, for packets lost on their way in).
    pub nacks_sent: IntCounter,
    /// RTP packets sent again in answer to a NACK.
    pub retransmits: IntCounter,
}

impl Default for WireCounters {
    fn default() -> Self {
        let counter = |name: &str| IntCounter::new(name, name).expect("valid metric");
        Self {
            nacks_received: counter("nacks_received"),
            nacked_packets: counter("nacked_packets"),
            nacks_sent: counter("nacks_sent"),
            retransmits: counter("retransmits"),
        }
    }
}

/// Watches RTCP and RTP at the wire end of the interceptor chain (so it sees what the NACK
/// generator and responder add) and counts it; it changes nothing.
struct WireObserver {
    counters: WireCounters,
    /// Per outgoing SSRC, the highest sequence number sent: anything not after it is a resend.
    highest_sent: HashMap<u32, u16>,
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

impl WireObserver {
    fn new(counters: WireCounters) -> Self {
        Self {
            counters,
            highest_sent: HashMap::new(),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
        }
    }
}

fn as_nack(p: &dyn rtc::rtcp::Packet) -> Option<&TransportLayerNack> {
    p.as_any().downcast_ref::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for WireObserver {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let InterceptorPacket::Rtcp(packets) = &msg.message.packet {
            for nack in packets.iter().filter_map(|p| as_nack(p.as_ref())) {
                self.counters.nacks_received.inc();
                let asked: usize = nack.nacks.iter().map(|n| n.packet_list().len()).sum();
                self.counters.nacked_packets.inc_by(asked as u64);
            }
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            InterceptorPacket::Rtcp(packets) => {
                let nacks = packets.iter().filter(|p| as_nack(p.as_ref()).is_some());
                self.counters.nacks_sent.inc_by(nacks.count() as u64);
            }
            InterceptorPacket::Rtp(packet) => {
                let seq = packet.header.sequence_number;
                match self.highest_sent.entry(packet.header.ssrc) {
                    std::collections::hash_map::Entry::Occupied(mut highest) => {
                        // RFC 1982 order: ahead by less than half the space is new.
                        if seq.wrapping_sub(*highest.get()) as i16 > 0 {
                            highest.insert(seq);
                        } else {
                            self.counters.retransmits.inc();
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(seq);
                    }
                }
            }
            _ => {}
        }
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }
}

impl Interceptor for WireObserver {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.highest_sent.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// An RTP packet as the media plane hands it around.
pub type RtpPacket = rtc::rtp::Packet;
use webrtc::peer_connection::{
    MediaEngine as WebrtcMediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
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
    pub packet: RtpPacket,
}

/// Asks a publisher for a keyframe (RTCP PLI) on one of its streams, without waiting: requests
/// go through a small queue to a task that writes the RTCP (extra requests while it is busy are
/// dropped; keyframe requests are idempotent).
#[derive(Clone, Debug)]
pub struct KeyframeRequester {
    tx: mpsc::Sender<u32>,
}

impl KeyframeRequester {
    /// A requester and the queue it feeds (the media side drains it; tests can too).
    pub fn channel() -> (Self, mpsc::Receiver<u32>) {
        let (tx, rx) = mpsc::channel(8);
        (Self { tx }, rx)
    }

    /// Requests a keyframe on the stream `media_ssrc`; `false` if the request was dropped.
    pub fn request(&self, media_ssrc: u32) -> bool {
        self.tx.try_send(media_ssrc).is_ok()
    }
}

/// A track a client publishes. `track_id` is the msid track id, which livekit-client sets to the
/// `cid` of its `AddTrackRequest`.
pub struct IncomingTrack {
    pub track_id: String,
    pub stream_id: String,
    pub kind: Kind,
    remote: Arc<dyn TrackRemote>,
    /// Per SSRC: its rid, and whether it carries media (not a repair stream such as RTX).
    streams: HashMap<u32, (Option<String>, bool)>,
}

impl IncomingTrack {
    /// A requester whose PLIs go to this track's publisher, for as long as the track lives.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        let (requester, mut rx) = KeyframeRequester::channel();
        let remote = self.remote.clone();
        tokio::spawn(async move {
            while let Some(media_ssrc) = rx.recv().await {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if let Err(e) = remote.write_rtcp(vec![Box::new(pli)]).await {
                    tracing::debug!(error = %e, media_ssrc, "cannot send a PLI");
                }
            }
        });
        requester
    }

    /// The next media RTP packet; `None` once the track has ended. Repair streams are skipped.
    pub async fn next_packet(&mut self) -> Option<IncomingPacket> {
        loop {
            match self.remote.poll().await? {
                TrackRemoteEvent::OnRtpPacket(packet) => {
                    let ssrc = packet.header.ssrc;
                    let (rid, media) = match self.streams.get(&ssrc) {
                        Some(known) => known.clone(),
                        None => {
                            let rid = self.remote.rid(ssrc).await.map(|r| r.to_string());
                            let media =
                                self.remote.codec(ssrc).await.is_none_or(|c| {
                                    !c.mime_type.eq_ignore_ascii_case(MIME_TYPE_RTX)
                                });
                            self.streams.insert(ssrc, (rid.clone(), media));
                            (rid, media)
                        }
                    };
                    if media {
                        return Some(IncomingPacket { rid, packet });
                    }
                }
                TrackRemoteEvent::OnEnded => return None,
                _ => {}
            }
        }
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ],
    }
}

/// The SFU's codecs: Opus and VP8. Nothing else is offered or accepted, so every track that
/// reaches a subscriber is one it can decode. Publishers may repair VP8 with RTX; towards
/// subscribers a lost packet is resent as itself (`webrtc` 0.21 sends its RTX retransmissions
/// without the mid a browser needs to place the repair stream, so they would be dropped).
fn register_codecs(media: &mut WebrtcMediaEngine, role: Role) -> Result<(), MediaError> {
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(webrtc_err)?;
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: 96,
            },
            RtpCodecKind::Video,
        )
        .map_err(webrtc_err)?;
    if role == Role::Subscriber {
        return Ok(());
    }
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.to_owned(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: "apt=96".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 97,
            },
            RtpCodecKind::Video,
        )
        .map_err(webrtc_err)?;
    Ok(())
}

/// One outgoing track on a subscriber PC: the publisher's media, rewritten for this subscriber.
#[derive(Clone)]
pub struct DownTrack {
    local: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    pub ssrc: u32,
    pub kind: Kind,
}

/// What a subscriber negotiated for a downtrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub payload_type: u8,
}

impl DownTrack {
    /// The payload type the subscriber accepted for our codec, once negotiated.
    pub async fn negotiated(&self) -> Option<Negotiated> {
        let params = self.sender.get_parameters().await.ok()?;
        let want = match self.kind {
            Kind::Audio => MIME_TYPE_OPUS,
            Kind::Video => MIME_TYPE_VP8,
        };
        params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(want))
            .map(|c| Negotiated {
                payload_type: c.payload_type,
            })
    }

    /// Waits for the subscriber to ask for a keyframe. `None` when the track is not bound (not
    /// negotiated yet, or gone).
    pub async fn keyframe_request(&self) -> Option<()> {
        loop {
            // TrackLocalEvent is non-exhaustive: other events are skipped.
            #[allow(irrefutable_let_patterns)]
            if let TrackLocalEvent::OnRtcpPacket(packets) = self.local.poll().await? {
                if packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                    return Some(());
                }
            }
        }
    }

    /// Sends one packet whose SSRC, payload type, numbering and extensions are already this
    /// downtrack's. Fails until the track is bound by a completed negotiation.
    pub async fn write(&self, packet: RtpPacket) -> Result<(), MediaError> {
        self.local.write_rtp(packet).await.map_err(webrtc_err)
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
    pub nat_1to1: Arc<[NatMapping]>,
    pub ice_servers: Vec<IceServer>,
}

/// Makes PeerConnections with the SFU's codecs, extensions and network settings.
pub struct MediaEngine {
    settings: MediaSettings,
    counters: WireCounters,
    next_port: AtomicU32,
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
            streams: HashMap::new(),
        };
        let _ = self.events.send(MediaEvent::Track(incoming));
    }
}

/// One `rtc.nat_1to1_ips` entry: `public` stands for every local address, `public/private` for
/// `private` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatMapping {
    pub public: IpAddr,
    pub private: Option<IpAddr>,
}

impl NatMapping {
    /// `None` unless the entry is an IP address or a `public/private` pair of them.
    pub fn parse(entry: &str) -> Option<Self> {
        Some(match entry.split_once('/') {
            Some((public, private)) => Self {
                public: public.parse().ok()?,
                private: Some(private.parse().ok()?),
            },
            None => Self {
                public: entry.parse().ok()?,
                private: None,
            },
        })
    }
}

/// A local ICE candidate as clients should see it behind a 1:1 NAT: a host candidate whose
/// address a mapping stands for is announced with that mapping's public address instead, once
/// per matching mapping. Other candidates pass unchanged.
pub fn nat_1to1_candidates(candidate: &str, mappings: &[NatMapping]) -> Vec<String> {
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> …
    let fields: Vec<&str> = candidate.split(' ').collect();
    let is_host = fields.len() >= 8 && fields[6] == "typ" && fields[7] == "host";
    let Some(address) = is_host.then(|| fields[4].parse::<IpAddr>().ok()).flatten() else {
        return vec![candidate.to_owned()];
    };
    let mapped: Vec<String> = mappings
        .iter()
        .filter(|m| m.private.is_none_or(|private| private == address))
        .map(|m| {
            let public = m.public.to_string();
            let mut f = fields.clone();
            f[4] = &public;
            f.join(" ")
        })
        .collect();
    if mapped.is_empty() {
        vec![candidate.to_owned()]
    } else {
        mapped
    }
}

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

impl MediaEngine {
    pub fn new(settings: MediaSettings, counters: WireCounters) -> Self {
        Self {
            settings,
            counters,
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
        // NACK, the mid/rid/repaired-rid extensions for simulcast, and a TWCC receiver (its
        // feedback is what lets Chrome turn on the higher simulcast layers).
        let registry = configure_nack(Registry::new(), &mut media);
        configure_simulcast_extension_headers(&mut media).map_err(webrtc_err)?;
        let registry = configure_twcc_receiver_only(registry, &mut media).map_err(webrtc_err)?;
        // Sender reports let subscribers sync audio with video. A publisher gets no receiver
        // reports: Chrome tags a simulcast layer's packets with mid/rid only until a report
        // acknowledges its SSRC, and `webrtc` 0.21 forgets which SSRC is which layer on every
        // renegotiation (a second published track), so it must be able to learn it again from
        // those tags. TWCC feedback still drives the publisher's bandwidth estimate.
        let registry = match role {
            Role::Subscriber => configure_rtcp_reports(registry),
            Role::Publisher => registry,
        };
        // Application-most, after every interceptor that reads RTCP.
        let registry = registry.with(
            Slot::from(14_000),
            KeyframeRequestTap {
                inbound: VecDeque::new(),
                outbound: VecDeque::new(),
            },
        );
        // Wire-most: below the NACK responder (4_000) and generator, so it sees their output.
        let registry = registry.with(Slot::from(500), WireObserver::new(self.counters.clone()));
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
        })
    }
}

/// One PeerConnection.
pub struct Peer {
    role: Role,
    pc: Box<dyn PeerConnection>,
    channels: Vec<(&'static str, Arc<dyn DataChannel>)>,
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

#[cfg(test)]
mod tests {
    use super::{nat_1to1_candidates, NatMapping};

    const HOST: &str = "candidate:1 1 udp 2130706431 10.0.1.5 50000 typ host";

    fn nat(entries: &[&str]) -> Vec<NatMapping> {
        entries
            .iter()
            .map(|e| NatMapping::parse(e).unwrap())
            .collect()
    }

    #[test]
    fn entries_are_an_ip_or_a_public_private_pair() {
        assert!(NatMapping::parse("54.1.2.3").is_some());
        assert!(NatMapping::parse("54.1.2.3/10.0.1.5").is_some());
        assert!(NatMapping::parse("2001:db8::1").is_some());
        for bad in ["sfu.example.com", "54.1.2.3/", "/10.0.1.5", ""] {
            assert_eq!(NatMapping::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_candidates_take_the_public_address() {
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.1.2.3"])),
            vec!["candidate:1 1 udp 2130706431 54.1.2.3 50000 typ host"]
        );
        // Mapped by private address: only the matching one.
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.1.2.3/10.0.1.5", "54.9.9.9/10.0.2.7"])),
            vec!["candidate:1 1 udp 2130706431 54.1.2.3 50000 typ host"]
        );
    }

    #[test]
    fn other_candidates_and_unmapped_addresses_pass_unchanged() {
        assert_eq!(nat_1to1_candidates(HOST, &[]), vec![HOST]);
        assert_eq!(
            nat_1to1_candidates(HOST, &nat(&["54.9.9.9/10.0.2.7"])),
            vec![HOST]
        );
        let srflx = "candidate:2 1 udp 1694498815 54.1.2.3 50000 typ srflx raddr 0.0.0.0 rport 0";
        assert_eq!(nat_1to1_candidates(srflx, &nat(&["1.1.1.1"])), vec![srflx]);
        assert_eq!(
            nat_1to1_candidates("garbage", &nat(&["1.1.1.1"])),
            vec!["garbage"]
        );
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, RTCPFeedback as Fb, Registry};
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers;
    use std::time::Instant;

    fn tagged(packet: InterceptorPacket) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: AttributedPacket::new(packet),
        }
    }

    fn rtp(ssrc: u32, seq: u16) -> InterceptorPacket {
        let mut p = RtpPacket::default();
        p.header.version = 2;
        p.header.ssrc = ssrc;
        p.header.sequence_number = seq;
        p.payload = vec![seq as u8; 100].into();
        InterceptorPacket::Rtp(p)
    }

    #[test]
    fn a_nack_is_answered_from_the_send_buffer_and_counted() {
        let counters = WireCounters::default();
        let mut media = WebrtcMediaEngine::default();
        let mut chain = configure_nack(Registry::new(), &mut media)
            .with(Slot::from(500), WireObserver::new(counters.clone()))
            .build();
        chain.bind_local_stream(&StreamInfo {
            ssrc: 7,
            payload_type: 96,
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90_000,
            rtcp_feedback: vec![Fb {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        });
        let mut sent = Vec::new();
        for seq in 100..110 {
            chain.handle_write(tagged(rtp(7, seq))).unwrap();
            while let Some(out) = chain.poll_write() {
                sent.push(out);
            }
        }
        assert_eq!(sent.len(), 10);
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            nacks: nack_pairs_from_sequence_numbers(&[103, 105]),
        };
        chain
            .handle_read(tagged(InterceptorPacket::Rtcp(vec![Box::new(nack)])))
            .unwrap();
        while chain.poll_read().is_some() {}
        let mut resent = Vec::new();
        while let Some(out) = chain.poll_write() {
            if let InterceptorPacket::Rtp(p) = out.message.packet {
                resent.push(p.header.sequence_number);
            }
        }
        assert_eq!(resent, vec![103, 105]);
        assert_eq!(counters.nacks_received.get(), 1);
        assert_eq!(counters.nacked_packets.get(), 2);
        assert_eq!(counters.retransmits.get(), 2);
    }
}
