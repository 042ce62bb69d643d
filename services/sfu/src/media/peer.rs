//! PeerConnections: the [`MediaEngine`] that makes them and the [`Peer`] that wraps one.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit, RTCDataChannelState};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine as RtcMediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc::{self, UnboundedSender};

use crate::quality::LinkStats;

use super::codecs::{opus_codec, register_codecs, vp8_codec, AUDIO_LEVEL_URI};
use super::driver::{bind, OwnEgress, Shared, Sink};
use super::interceptors::{
    other_chain, register_nack_feedback, sfu_subscriber_chain, Chain, WireCounters,
};
use super::nat::NatMapping;
use super::own_srtp::KeyWitness;
use super::threads::{MediaThreads, Placement};
use super::track::DownTrack;
use super::{bad_sdp, rtc_err, Kind, MediaError, MediaEvent, Role};

#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub bind_ip: IpAddr,
    /// Inclusive; (0, 0) = ephemeral ports.
    pub port_range: (u16, u16),
    pub nat_1to1: Arc<[NatMapping]>,
}

/// Makes PeerConnections with the SFU's codecs, extensions and network settings.
pub struct MediaEngine {
    settings: MediaSettings,
    counters: WireCounters,
    next_port: AtomicU32,
    /// Which interceptors a PeerConnection gets (see [`Chain`]).
    chain: Chain,
    /// Where PeerConnections are driven: on threads of their own, a room to a thread, or (none)
    /// on the runtime that creates them.
    threads: Option<Arc<MediaThreads>>,
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

impl MediaEngine {
    /// The SFU's engine: every PeerConnection carries only the interceptors its direction uses.
    pub fn new(settings: MediaSettings, counters: WireCounters) -> Self {
        Self {
            settings,
            counters,
            next_port: AtomicU32::new(0),
            chain: Chain::Sfu,
            threads: None,
        }
    }

    /// Drives this engine's PeerConnections on `count` media threads of their own (see
    /// [`MediaThreads`]) instead of on the runtime that creates them.
    pub fn with_media_threads(mut self, count: usize) -> std::io::Result<Self> {
        self.threads = Some(MediaThreads::start(count)?);
        Ok(self)
    }

    /// Tasks alive on the media threads (their PeerConnections' drivers); 0 without them.
    pub fn media_thread_tasks(&self) -> usize {
        self.threads.as_ref().map_or(0, |t| t.alive_tasks())
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

    /// A new PeerConnection for `role` in `room`, reporting on `events`. With media threads, a
    /// room's PeerConnections are driven on the same one.
    pub async fn create_peer(
        &self,
        room: &str,
        role: Role,
        events: UnboundedSender<MediaEvent>,
        data: mpsc::Sender<IncomingData>,
    ) -> Result<Peer, MediaError> {
        for port in self.ports() {
            match bind(self.settings.bind_ip, port) {
                Ok(sockets) => {
                    let sink = Sink {
                        role,
                        nat_1to1: self.settings.nat_1to1.clone(),
                        events,
                        data,
                    };
                    let placement = self.threads.as_ref().map(|t| t.place(room));
                    return self.build(role, sockets, sink, placement);
                }
                Err(e) => {
                    tracing::debug!(port, error = %e, "cannot bind a PeerConnection's port")
                }
            }
        }
        Err(MediaError::NoPort)
    }

    fn build(
        &self,
        role: Role,
        sockets: Vec<std::net::UdpSocket>,
        sink: Sink,
        placement: Option<Placement>,
    ) -> Result<Peer, MediaError> {
        let mut media = RtcMediaEngine::default();
        register_codecs(&mut media, role)?;
        media
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(rtc_err)?;
        // The mid/rid/repaired-rid extensions for simulcast, NACK feedback and TWCC feedback
        // (what lets Chrome turn on the higher simulcast layers) are negotiated on both PCs.
        configure_simulcast_extension_headers(&mut media).map_err(rtc_err)?;
        register_nack_feedback(&mut media);
        // Only the negotiation: the interceptor goes in below where wanted.
        configure_twcc_receiver_only(Registry::new(), &mut media).map_err(rtc_err)?;
        let link = Arc::new(LinkStats::default());
        // An SFU subscriber PC protects its media itself once it knows its keys (see
        // `own_srtp`); its crypto provider is the default one, watched for them.
        let (registry, own, witness) =
            match sfu_subscriber_chain(self.chain, role, &self.counters, &link) {
                Some((registry, wire)) => {
                    let (witness, keys) = KeyWitness::new().map_err(rtc_err)?;
                    (registry, OwnEgress::Waiting(keys, wire), Some(witness))
                }
                None => (
                    other_chain(self.chain, role, &self.counters, &link),
                    OwnEgress::Off,
                    None,
                ),
            };
        // Browsers hide their addresses behind mDNS names, so the pair that works is usually
        // peer-reflexive (learnt from the browser's checks); the core waits 1 s (prflx) or
        // 0.5 s (srflx) before nominating such a pair by default, which would be most of a
        // join's media delay, and an SFU has no better pair to wait for. Nor does it resolve
        // mDNS names: the browser's checks reach it first.
        let setting = SettingEngineBuilder::new()
            .with_srflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
        let setting = match witness {
            Some(witness) => setting.with_crypto_provider(witness),
            None => setting,
        }
        .build();
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media)
            .with_setting_engine(setting)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(rtc_err)?;
        Ok(Peer {
            role,
            core: Shared::start(
                pc,
                sockets,
                sink,
                placement.as_ref().map(Placement::runtime),
                own,
                // A client's sockets are plain, as a browser's: on loopback, the reuseport group's
                // pick for every datagram the SFU sends them would be charged to the SFU's sends
                // (4 % of its samples at 8 × 4 × 16), a cost no remote receiver puts on it.
                self.chain == Chain::Sfu,
            )?,
            channels: Vec::new(),
            link,
            _alive: Alive::new(self.counters.peer_connections.clone()),
            _placement: placement,
        })
    }
}

/// One PeerConnection. Dropping it closes it.
pub struct Peer {
    role: Role,
    core: Arc<Shared>,
    channels: Vec<(&'static str, RTCDataChannelId)>,
    link: Arc<LinkStats>,
    _alive: Alive,
    /// Given back (after the close in `drop`) when the PeerConnection goes.
    _placement: Option<Placement>,
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

impl Drop for Peer {
    fn drop(&mut self) {
        self.core.close();
    }
}

#[cfg(test)]
impl Peer {
    /// The core this PeerConnection shares with its driver (for the driver's tests).
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.core
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
        let created = self.core.with_core(|core, _| {
            let mut created = Vec::new();
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
                created.push((label, core.create_channel(label, init)?));
            }
            Ok(created)
        })?;
        self.channels.extend(created);
        Ok(())
    }

    /// Sends a relayed data packet on our `_reliable` or `_lossy` channel. Dropped (`false`)
    /// when the channel is missing, not open yet, or its send buffer is full.
    pub async fn send_data(&self, reliable: bool, bytes: &[u8]) -> bool {
        let label = if reliable { "_reliable" } else { "_lossy" };
        let Some(&(_, id)) = self.channels.iter().find(|(l, _)| *l == label) else {
            return false;
        };
        let sent = self.core.with_core(|core, now| {
            let Some(mut channel) = core.pc.data_channel(id) else {
                return Ok(false);
            };
            if channel.ready_state() != RTCDataChannelState::Open
                || channel.outstanding_bytes() + bytes.len() > DATA_SEND_BUFFER
            {
                return Ok(false);
            }
            channel
                .send(now, bytes::BytesMut::from(bytes))
                .map_err(rtc_err)?;
            Ok(true)
        });
        match sent {
            Ok(sent) => sent,
            Err(e) => {
                tracing::debug!(label, error = %e, "data not sent");
                false
            }
        }
    }

    /// Creates an offer and sets it as the local description; returns its SDP.
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        self.core.with_core(|core, now| {
            let offer = core.pc.create_offer(None).map_err(rtc_err)?;
            let sdp = offer.sdp.clone();
            core.pc.set_local_description(now, offer).map_err(rtc_err)?;
            core.gather();
            Ok(sdp)
        })
    }

    /// Applies the remote answer to our offer.
    pub async fn apply_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let desc = RTCSessionDescription::answer(sdp.to_owned()).map_err(bad_sdp)?;
        self.core
            .with_core(|core, now| core.pc.set_remote_description(now, desc).map_err(bad_sdp))
    }

    /// Applies a remote offer, answers it, and returns the answer's SDP.
    pub async fn answer_offer(&self, sdp: &str) -> Result<String, MediaError> {
        let desc = RTCSessionDescription::offer(sdp.to_owned()).map_err(bad_sdp)?;
        self.core.with_core(|core, now| {
            core.pc.set_remote_description(now, desc).map_err(bad_sdp)?;
            let answer = core.pc.create_answer(None).map_err(rtc_err)?;
            let out = answer.sdp.clone();
            core.pc
                .set_local_description(now, answer)
                .map_err(rtc_err)?;
            core.gather();
            Ok(out)
        })
    }

    pub async fn has_remote_description(&self) -> bool {
        self.core
            .lock()
            .as_ref()
            .is_some_and(|core| core.pc.remote_description().is_some())
    }

    /// Adds a remote candidate given as `RTCIceCandidateInit` JSON.
    pub async fn add_remote_candidate(&self, init_json: &str) -> Result<(), MediaError> {
        let init: RTCIceCandidateInit =
            serde_json::from_str(init_json).map_err(|e| MediaError::BadCandidate(e.to_string()))?;
        if init.candidate.is_empty() {
            // End-of-candidates.
            return Ok(());
        }
        self.core.with_core(|core, _| {
            core.pc
                .add_remote_candidate(init)
                .map_err(|e| MediaError::BadCandidate(e.to_string()))
        })
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
        let track = MediaStreamTrack::new(
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
        );
        // One pending request stands for any number: a keyframe answers them all.
        let (signal, keyframes) = mpsc::channel(1);
        let sender = self.core.with_core(|core, _| {
            let sender = core.pc.add_track(track).map_err(rtc_err)?;
            core.sender_added(sender);
            core.route_keyframes(track_id, sender, signal);
            Ok(sender)
        })?;
        Ok(DownTrack {
            core: self.core.clone(),
            sender,
            track_id: Arc::from(track_id),
            keyframes: Arc::new(tokio::sync::Mutex::new(keyframes)),
            ssrc,
            kind,
            send_hint: Default::default(),
        })
    }

    /// Stops sending a downtrack; takes effect with the next offer.
    pub async fn remove_downtrack(&self, down: &DownTrack) -> Result<(), MediaError> {
        self.core.with_core(|core, _| {
            core.unroute_keyframes(&down.track_id, down.sender);
            core.remove_sender(down.sender)
        })
    }

    pub async fn close(&self) {
        self.core.close();
    }
}
