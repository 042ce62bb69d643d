//! The interceptor the SFU adds to `rtc`'s chain: an observer at the wire end that counts NACKs
//! and retransmissions and lets keyframe requests through to the application.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::{IntCounter, IntGauge};
use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, NackGeneratorBuilder, Packet as InterceptorPacket,
    ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket,
    TwccReceiverBuilder,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

use super::Role;
use crate::quality::{ntp_middle_now, rtt_ms, LinkStats};
use rtc::sansio::Protocol;

/// Packets a sender keeps for retransmission, per outgoing stream. `rtc` keeps 1,024
/// (about a second and a half of 5 Mbit/s video, ~120 KB of slots per stream before any
/// payload); an SFU forwarding 30 fps video answers NACKs within a round trip, and 256 packets
/// are over 4 s of the bench's 60 packet/s video, well past any NACK worth answering.
pub(super) const NACK_SEND_BUFFER: u16 = 256;

/// Negotiates NACK feedback (and PLI) for video, as `rtc`'s `configure_nack` does.
pub(super) fn register_nack_feedback(
    media: &mut rtc::peer_connection::configuration::media_engine::MediaEngine,
) {
    use rtc::rtp_transceiver::rtp_sender::RTCPFeedback;
    use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
}

/// The NACK responder (answers the remote's NACKs from a send buffer) with the SFU's buffer size.
pub(super) fn nack_responder() -> rtc::interceptor::NackResponderInterceptor {
    rtc::interceptor::NackResponderBuilder::new()
        .with_size(NACK_SEND_BUFFER)
        .build()
}

/// The interceptor chains a [`super::MediaEngine`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    /// The SFU's: each PeerConnection only what its direction uses. A subscriber PC sends media
    /// and receives none: it has one interceptor, [`SubscriberWire`] (send history for NACKs,
    /// sender reports, wire counts), and no NACK generator, TWCC receiver or receiver reports
    /// (they act on inbound RTP, and each is one more hop for every outgoing packet and one
    /// more timer polled on every wakeup of its driver); a publisher PC sends no media, so it
    /// has no NACK responder (a send buffer) and no sender reports.
    Sfu,
    /// Load generators and test clients: the same chain on both PCs (NACK responder and
    /// generator, TWCC receiver; sender and receiver reports on the subscriber PC), so a client
    /// behaves the same towards any server.
    Client,
}

/// The interceptors of a PeerConnection for `role` (whose media the client publishes on it, or
/// receives on it); the slots, not the order of the calls, decide the order. (The engine asks
/// [`sfu_subscriber_chain`] first, for the handle, and [`other_chain`] otherwise.)
#[cfg(test)]
pub(super) fn interceptor_chain(
    chain: Chain,
    role: Role,
    counters: &WireCounters,
    link: &Arc<LinkStats>,
) -> Registry {
    sfu_subscriber_chain(chain, role, counters, link)
        .map(|(registry, _)| registry)
        .unwrap_or_else(|| other_chain(chain, role, counters, link))
}

/// An SFU subscriber PeerConnection's chain and the handle on its send state, for the SFU's own
/// SRTP path (`own_srtp`); `None` for every other PeerConnection.
pub(super) fn sfu_subscriber_chain(
    chain: Chain,
    role: Role,
    counters: &WireCounters,
    link: &Arc<LinkStats>,
) -> Option<(Registry, WireHandle)> {
    if (chain, role) != (Chain::Sfu, Role::Subscriber) {
        return None;
    }
    // One hop for every packet the SFU forwards: the send history, the sender reports and the
    // wire counts in one interceptor (see [`SubscriberWire`]).
    let wire = SubscriberWire::new(counters.clone(), link.clone());
    let handle = WireHandle(wire.state.clone());
    Some((Registry::new().with(Slot::from(500), wire), handle))
}

/// The chain of every PeerConnection but an SFU subscriber one.
pub(super) fn other_chain(
    chain: Chain,
    role: Role,
    counters: &WireCounters,
    link: &Arc<LinkStats>,
) -> Registry {
    let mut registry = Registry::new();
    if chain == Chain::Client {
        // Answers the remote's NACKs from a send buffer.
        registry = registry.with(Slot::NackResponder, nack_responder());
    }
    // Asks for lost packets; reports arrivals (TWCC feedback drives the publisher's bandwidth
    // estimate, and lets Chrome turn on the higher simulcast layers).
    registry = registry
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build());
    // Sender reports let subscribers sync audio with video. A publisher gets no receiver
    // reports: Chrome tags a simulcast layer's packets with mid/rid only until a report
    // acknowledges its SSRC, and `rtc` 0.21 forgets which SSRC is which layer on every
    // renegotiation (a second published track), so it must be able to learn it again from
    // those tags.
    if (chain, role) == (Chain::Client, Role::Subscriber) {
        registry = registry
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
            .with(Slot::SenderReport, SenderReportBuilder::new().build());
    }
    // Wire-most: below the NACK responder (4_000) and generator, so it sees their output.
    registry.with(
        Slot::from(500),
        WireObserver::new(counters.clone(), link.clone()),
    )
}

/// Whether an RTCP packet is a keyframe request (PLI or FIR).
pub(super) fn asks_for_keyframe(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
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
    /// NACK packets dropped unanswered: the subscriber asked for more resends than its budget.
    pub nacks_throttled: IntCounter,
    /// PeerConnections alive (a gauge, counted by the [`super::Peer`]s themselves).
    pub peer_connections: IntGauge,
    /// Subscriber PeerConnections that protect their media themselves (`own_srtp`).
    pub srtp_own: IntCounter,
    /// Subscriber PeerConnections whose derived keys did not match `rtc`'s (left to `rtc`).
    pub srtp_own_refused: IntCounter,
}

impl Default for WireCounters {
    fn default() -> Self {
        let counter = |name: &str| IntCounter::new(name, name).expect("valid metric");
        Self {
            nacks_received: counter("nacks_received"),
            nacked_packets: counter("nacked_packets"),
            nacks_sent: counter("nacks_sent"),
            retransmits: counter("retransmits"),
            nacks_throttled: counter("nacks_throttled"),
            peer_connections: IntGauge::new("peer_connections", "peer_connections")
                .expect("valid metric"),
            srtp_own: counter("srtp_own"),
            srtp_own_refused: counter("srtp_own_refused"),
        }
    }
}

/// What a wire-end interceptor does with inbound RTCP, whichever chain it ends: reception
/// reports feed the link's quality, NACKs are counted and held to the resend budget, and a
/// compound packet holding keyframe requests (PLI, FIR) goes on as it came, for the
/// interceptors, followed by a copy of just those requests marked for the application, which
/// relays them to the publisher (inbound RTCP otherwise ends inside the chain).
struct FeedbackIntake {
    counters: WireCounters,
    /// This PeerConnection's own counts, for its participant's connection quality.
    link: Arc<LinkStats>,
    resends: ResendBudget,
}

impl FeedbackIntake {
    fn new(counters: WireCounters, link: Arc<LinkStats>) -> Self {
        Self {
            counters,
            link,
            resends: ResendBudget::default(),
        }
    }

    /// Reception reports (in receiver and sender reports) about what this side sent.
    fn read_reports(&self, p: &dyn rtc::rtcp::Packet) {
        let any = p.as_any();
        let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            &rr.reports
        } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
            &sr.reports
        } else {
            return;
        };
        let now = ntp_middle_now();
        for r in reports {
            self.link.report(
                r.fraction_lost,
                r.jitter / 90,
                rtt_ms(now, r.last_sender_report, r.delay),
            );
        }
    }

    /// Takes one inbound RTCP message: what goes on towards the application is queued on
    /// `inbound`; each NACK within the budget is handed to `answer`, which returns how many
    /// packets it resent.
    fn read_rtcp(
        &mut self,
        mut msg: TaggedPacket,
        inbound: &mut VecDeque<TaggedPacket>,
        mut answer: impl FnMut(std::time::Instant, &TransportLayerNack) -> u64,
    ) {
        let now = msg.now;
        let InterceptorPacket::Rtcp(packets) = &mut msg.message.packet else {
            inbound.push_back(msg);
            return;
        };
        let mut throttled = false;
        packets.retain(|p| {
            let Some(nack) = as_nack(p.as_ref()) else {
                self.read_reports(p.as_ref());
                return true;
            };
            self.counters.nacks_received.inc();
            let asked: usize = nack.nacks.iter().map(|n| n.packet_list().len()).sum();
            self.counters.nacked_packets.inc_by(asked as u64);
            self.link.nacked(asked as u64);
            if self.resends.take(now, asked as u64) {
                self.counters.retransmits.inc_by(answer(now, nack));
                return true;
            }
            self.counters.nacks_throttled.inc();
            throttled = true;
            false
        });
        if throttled && packets.is_empty() {
            return;
        }
        let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
            .iter()
            .filter(|p| asks_for_keyframe(p.as_ref()))
            .cloned()
            .collect();
        let transport = msg.transport;
        inbound.push_back(msg);
        if !wanted.is_empty() {
            let mut keyframes = TaggedPacket {
                now,
                transport,
                message: AttributedPacket::new(InterceptorPacket::Rtcp(wanted)),
            };
            keyframes.message.add(Attribute::DeliverToApplication);
            inbound.push_back(keyframes);
        }
    }

    /// A packet sent for the first time.
    fn sent(&mut self, now: std::time::Instant) {
        self.link.sent();
        self.resends.sent(now);
    }

    /// Outbound RTCP: the NACKs this side sends.
    fn write_rtcp(&self, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let nacks = packets.iter().filter(|p| as_nack(p.as_ref()).is_some());
        self.counters.nacks_sent.inc_by(nacks.count() as u64);
    }
}

/// Watches RTCP and RTP at the wire end of a chain that has `rtc`'s own NACK generator and
/// responder (publisher PCs, clients), so it sees their output: counts what crosses the wire and
/// tells resends (from the responder above it) from first sends by sequence number.
pub(super) struct WireObserver {
    feedback: FeedbackIntake,
    /// Per outgoing SSRC, the highest sequence number sent: anything not after it is a resend.
    highest_sent: SsrcMap,
    /// Per incoming SSRC, the highest sequence number received (for gaps).
    highest_received: SsrcMap,
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

impl WireObserver {
    pub(super) fn new(counters: WireCounters, link: Arc<LinkStats>) -> Self {
        Self {
            feedback: FeedbackIntake::new(counters, link),
            highest_sent: SsrcMap::default(),
            highest_received: SsrcMap::default(),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
        }
    }
}

/// How many resends a PeerConnection's NACKs may ask for: an eighth of what it was sent in the
/// current or the previous second, and 64 more. A saturated receiver NACKs much of what it missed,
/// each resend adds to the load that made it miss them, and the resends queue up inside the
/// PeerConnection: without a budget a saturated node's loss and memory run away (measured at
/// 8 × 4 × 16 on a saturated machine: 7–74 % loss and up to 650 MiB with every NACK answered,
/// against 0.01 % and 78 MiB with none). Beyond the budget a NACK is dropped whole (counted in
/// `sfu_nacks_throttled_total`); ordinary loss (a few per cent) stays well inside it.
#[derive(Default)]
struct ResendBudget {
    window_start: Option<std::time::Instant>,
    sent: u64,
    sent_before: u64,
    asked: u64,
}

const RESEND_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
const RESEND_FLOOR: u64 = 64;
const RESEND_SHARE: u64 = 8;

impl ResendBudget {
    fn roll(&mut self, now: std::time::Instant) {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < RESEND_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.sent_before = self.sent;
                self.sent = 0;
                self.asked = 0;
            }
        }
    }

    fn sent(&mut self, now: std::time::Instant) {
        self.roll(now);
        self.sent += 1;
    }

    /// Whether a NACK asking for `asked` resends fits; if so it is charged.
    fn take(&mut self, now: std::time::Instant, asked: u64) -> bool {
        self.roll(now);
        let budget = RESEND_FLOOR + self.sent.max(self.sent_before) / RESEND_SHARE;
        if self.asked + asked > budget {
            return false;
        }
        self.asked += asked;
        true
    }
}

/// A sequence number per SSRC. A PeerConnection carries a handful of streams, so a scan of a
/// short vector beats hashing the SSRC on every packet.
#[derive(Default)]
struct SsrcMap(Vec<(u32, u16)>);

impl SsrcMap {
    fn get_mut(&mut self, ssrc: u32) -> Option<&mut u16> {
        self.0.iter_mut().find(|(s, _)| *s == ssrc).map(|(_, v)| v)
    }

    /// Adds an SSRC not in the map yet.
    fn insert(&mut self, ssrc: u32, value: u16) {
        self.0.push((ssrc, value));
    }

    fn remove(&mut self, ssrc: u32) {
        self.0.retain(|(s, _)| *s != ssrc);
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
        if let InterceptorPacket::Rtp(packet) = &msg.message.packet {
            let ssrc = packet.header.ssrc;
            let seq = packet.header.sequence_number;
            let gap = match self.highest_received.get_mut(ssrc) {
                Some(highest) => {
                    let ahead = seq.wrapping_sub(*highest) as i16;
                    if ahead > 0 {
                        *highest = seq;
                        // A jump of thousands is a restart, not loss.
                        u64::from((ahead as u16 - 1).min(1000))
                    } else {
                        // Late or repeated.
                        0
                    }
                }
                None => {
                    self.highest_received.insert(ssrc, seq);
                    0
                }
            };
            self.feedback.link.received(gap);
        }
        // The responder above answers the NACKs: nothing is resent here (its resends come
        // back down through `handle_write`, counted there).
        self.feedback.read_rtcp(msg, &mut self.inbound, |_, _| 0);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            InterceptorPacket::Rtcp(packets) => self.feedback.write_rtcp(packets),
            InterceptorPacket::Rtp(packet) => {
                let seq = packet.header.sequence_number;
                match self.highest_sent.get_mut(packet.header.ssrc) {
                    Some(highest) => {
                        // RFC 1982 order: ahead by less than half the space is new.
                        if seq.wrapping_sub(*highest) as i16 > 0 {
                            *highest = seq;
                            self.feedback.sent(msg.now);
                        } else {
                            self.feedback.counters.retransmits.inc();
                        }
                    }
                    None => {
                        self.highest_sent.insert(packet.header.ssrc, seq);
                        self.feedback.sent(msg.now);
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
        self.highest_sent.remove(info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// How often a subscriber PC sends a sender report per stream (RFC 3550's usual interval; what
/// `rtc`'s own sender-report interceptor does).
const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The whole chain of an SFU subscriber PeerConnection, in one hop: every packet the SFU
/// forwards crosses it, and each interceptor in `rtc`'s chain costs a queue hop (moves of a
/// ~250-byte message) and a dispatch per packet, plus a pass on every poll. It does what
/// `rtc`'s NACK responder and sender-report interceptor and the [`WireObserver`] did there:
/// keeps the last [`NACK_SEND_BUFFER`] packets of each stream that negotiated NACK and resends
/// the ones a NACK asks for (within the resend budget; as RTX when the stream has it), sends a
/// sender report per stream every second (so subscribers can sync audio with video), and counts
/// what crosses the wire. Everything the application writes is a first send: resends come only
/// from here.
pub(super) struct SubscriberWire {
    /// Shared with the PeerConnection's core, which sends media past the chain once it protects
    /// it itself (see [`WireHandle`]).
    state: Arc<std::sync::Mutex<WireState>>,
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

/// What a subscriber PC knows of what it sent.
struct WireState {
    feedback: FeedbackIntake,
    /// A handful per PC (audio, video, their repair streams), so a scan.
    streams: Vec<SentStream>,
    next_report: Option<std::time::Instant>,
    /// Once the PC protects its media itself: the resends on media SSRCs (streams without RTX)
    /// that a NACK asked for, for the core to send with its own context (`rtc`'s must never
    /// protect a packet on an SSRC the other context protects).
    own_resends: Option<Vec<crate::media::RtpPacket>>,
}

/// One outgoing stream of a subscriber PC.
struct SentStream {
    ssrc: u32,
    clock_rate: u32,
    /// When the stream negotiated NACK.
    history: Option<SendHistory>,
    /// RTX SSRC, payload type and next sequence number, when the stream negotiated RTX.
    rtx: Option<(u32, u8, u16)>,
    report: SendCounts,
}

impl SubscriberWire {
    pub(super) fn new(counters: WireCounters, link: Arc<LinkStats>) -> Self {
        Self {
            state: Arc::new(std::sync::Mutex::new(WireState {
                feedback: FeedbackIntake::new(counters, link),
                streams: Vec::new(),
                next_report: None,
                own_resends: None,
            })),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WireState> {
        WireState::lock(&self.state)
    }
}

/// The core's hold on its subscriber PC's [`SubscriberWire`]: media the core protects and sends
/// itself is accounted here exactly as a packet crossing the chain is.
#[derive(Clone)]
pub(super) struct WireHandle(Arc<std::sync::Mutex<WireState>>);

impl WireHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, WireState> {
        WireState::lock(&self.0)
    }

    /// Where the shared state and the link counts each send bumps live (for prefetching).
    pub(super) fn addresses(&self) -> [usize; 2] {
        let link = Arc::as_ptr(&self.state().feedback.link) as usize;
        [Arc::as_ptr(&self.0) as usize, link]
    }

    /// From now on the core protects the media: resends on media SSRCs are handed to it.
    pub(super) fn protect_media_here(&self) {
        let mut state = self.state();
        state.own_resends.get_or_insert_with(Vec::new);
        state.feedback.counters.srtp_own.inc();
    }

    /// The core's keys did not match `rtc`'s: `rtc` protects everything.
    pub(super) fn leave_media_to_rtc(&self) {
        self.state().feedback.counters.srtp_own_refused.inc();
    }

    /// A packet the core sent for the first time (send history, sender report, budget): kept
    /// as it is, not copied. `hint` is its downtrack's (see [`SendHint`]).
    pub(super) fn sent(
        &self,
        now: std::time::Instant,
        packet: crate::media::RtpPacket,
        hint: Option<&SendHint>,
    ) {
        let (ssrc, packet) = KeptPacket::new(packet);
        self.state().first_send(now, ssrc, packet, hint);
    }

    /// Moves the resends waiting for the core into `out`.
    pub(super) fn take_resends(&self, out: &mut Vec<crate::media::RtpPacket>) {
        if let Some(resends) = self.state().own_resends.as_mut() {
            out.append(resends);
        }
    }
}

impl WireState {
    /// The state, whatever a panicking holder left (the SFU's one policy for poisoned locks).
    fn lock(state: &std::sync::Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn first_send(
        &mut self,
        now: std::time::Instant,
        ssrc: u32,
        packet: KeptPacket,
        hint: Option<&SendHint>,
    ) {
        let hinted = hint
            .map(|h| h.stream.load(Ordering::Relaxed))
            .filter(|&i| self.streams.get(i).is_some_and(|s| s.ssrc == ssrc));
        let found = hinted.or_else(|| self.streams.iter().position(|s| s.ssrc == ssrc));
        if let Some(i) = found {
            let stream = &mut self.streams[i];
            stream.report.count(now, &packet);
            if let Some(history) = &mut stream.history {
                history.keep(packet);
            }
            if let Some(hint) = hint {
                hint.note(i, stream);
            }
            self.next_report.get_or_insert(now + REPORT_INTERVAL);
        }
        self.feedback.sent(now);
    }
}

impl SentStream {
    /// The packet a NACK asks for, ready to send again: itself, or wrapped as RTX (RFC 4588).
    fn resend(&mut self, seq: u16) -> Option<crate::media::RtpPacket> {
        let original = self.history.as_ref()?.get(seq)?;
        let Some((ssrc, payload_type, next)) = &mut self.rtx else {
            return Some(original.packet(self.ssrc));
        };
        let mut payload = Vec::with_capacity(2 + original.payload.len());
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.extend_from_slice(&original.payload);
        let sequence_number = *next;
        *next = next.wrapping_add(1);
        let mut packet = crate::media::RtpPacket::default();
        packet.header.version = 2;
        packet.header.ssrc = *ssrc;
        packet.header.payload_type = *payload_type;
        packet.header.sequence_number = sequence_number;
        packet.header.timestamp = original.timestamp;
        packet.header.marker = original.marker;
        packet.payload = payload.into();
        Some(packet)
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SubscriberWire {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let mut state = WireState::lock(&self.state);
        let WireState {
            feedback,
            streams,
            own_resends,
            ..
        } = &mut *state;
        let outbound = &mut self.outbound;
        feedback.read_rtcp(msg, &mut self.inbound, |now, nack| {
            let Some(stream) = streams.iter_mut().find(|s| s.ssrc == nack.media_ssrc) else {
                return 0;
            };
            let mut resent = 0;
            for seq in nack.nacks.iter().flat_map(|n| n.packet_list()) {
                let Some(packet) = stream.resend(seq) else {
                    continue;
                };
                resent += 1;
                // Without RTX the resend is on the media SSRC: whoever protects the media sends it.
                if let (None, Some(own)) = (&stream.rtx, own_resends.as_mut()) {
                    own.push(packet);
                    continue;
                }
                outbound.push_back(TaggedPacket {
                    now,
                    transport: Default::default(),
                    message: AttributedPacket::new(InterceptorPacket::Rtp(packet))
                        .with(Attribute::Retransmission),
                });
            }
            resent
        });
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            InterceptorPacket::Rtcp(packets) => self.state().feedback.write_rtcp(packets),
            InterceptorPacket::Rtp(packet) => {
                let (ssrc, packet) = KeptPacket::new(packet.clone());
                self.state().first_send(msg.now, ssrc, packet, None)
            }
            _ => {}
        }
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.outbound.pop_front()
    }

    fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), Self::Error> {
        let state = &mut *WireState::lock(&self.state);
        if state.next_report.is_none_or(|at| now < at) {
            return Ok(());
        }
        state.next_report = Some(now + REPORT_INTERVAL);
        let ntp_time = crate::quality::ntp_at(now);
        for stream in &state.streams {
            if let Some(report) =
                stream
                    .report
                    .report(stream.ssrc, stream.clock_rate, now, ntp_time)
            {
                self.outbound.push_back(TaggedPacket {
                    now,
                    transport: Default::default(),
                    message: AttributedPacket::new(InterceptorPacket::Rtcp(vec![Box::new(report)])),
                });
            }
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<std::time::Instant> {
        self.state().next_report
    }
}

impl Interceptor for SubscriberWire {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let mut state = self.state();
        state.streams.retain(|s| s.ssrc != info.ssrc);
        let nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        state.streams.push(SentStream {
            ssrc: info.ssrc,
            clock_rate: info.clock_rate,
            history: nack.then(SendHistory::default),
            rtx: info
                .ssrc_rtx
                .zip(info.payload_type_rtx)
                .map(|(s, pt)| (s, pt, 0)),
            report: SendCounts::default(),
        });
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.state().streams.retain(|s| s.ssrc != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Where a downtrack's packets land in its PeerConnection's send state, kept by the downtrack:
/// its stream's place in the state's list (checked before use: a stale one costs only the scan
/// it saves), and, for the fan-out to prefetch one subscriber ahead, the addresses of that
/// stream and of the history slot its next packet takes. Measured on `perf annotate` at
/// 8 × 4 × 16: the scan over the list (each stream on its own cold line) and the slot were three
/// quarters of `first_send`'s samples.
#[derive(Default)]
pub(crate) struct SendHint {
    stream: AtomicUsize,
    addresses: [AtomicUsize; 2],
}

/// A copy starts with no hint: a hint only saves work, and each copy of a downtrack that
/// sends learns its own.
impl Clone for SendHint {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl SendHint {
    fn note(&self, index: usize, stream: &SentStream) {
        self.stream.store(index, Ordering::Relaxed);
        let next_slot = stream.history.as_ref().map_or(0, SendHistory::next_slot);
        self.addresses[0].store(stream as *const SentStream as usize, Ordering::Relaxed);
        self.addresses[1].store(next_slot, Ordering::Relaxed);
    }

    /// Asks for what the next packet's send reads first (a hint: a stale address is harmless).
    pub(crate) fn prefetch(&self) {
        for address in &self.addresses {
            super::prefetch(address.load(Ordering::Relaxed));
        }
    }
}

/// A packet as a send history keeps it, its SSRC being the stream's. The SFU's packets carry no
/// CSRCs, extensions or padding, so their header is these few fields: 48 bytes a slot where
/// `rtc`'s packet takes 112, and a stream's history (written for every packet sent, and cold
/// by the time the next one comes) is under half the cache lines. A header with more in it
/// (`rtc`'s own pipeline may add extensions) is kept whole, boxed.
struct KeptPacket {
    payload: bytes::Bytes,
    timestamp: u32,
    sequence_number: u16,
    payload_type: u8,
    marker: bool,
    /// The whole header, when it holds more than the fields above.
    full: Option<Box<rtc::rtp::header::Header>>,
}

impl KeptPacket {
    /// The packet's SSRC, and the packet to keep.
    fn new(packet: crate::media::RtpPacket) -> (u32, Self) {
        let crate::media::RtpPacket { header, payload } = packet;
        let plain = header.version == 2
            && !header.padding
            && !header.extension
            && header.csrc.is_empty()
            && header.extensions.is_empty();
        let ssrc = header.ssrc;
        let kept = Self {
            payload,
            timestamp: header.timestamp,
            sequence_number: header.sequence_number,
            payload_type: header.payload_type,
            marker: header.marker,
            full: (!plain).then(|| Box::new(header)),
        };
        (ssrc, kept)
    }

    /// The packet again, as it was sent on `ssrc`.
    fn packet(&self, ssrc: u32) -> crate::media::RtpPacket {
        let header = match &self.full {
            Some(header) => (**header).clone(),
            None => rtc::rtp::header::Header {
                version: 2,
                marker: self.marker,
                payload_type: self.payload_type,
                sequence_number: self.sequence_number,
                timestamp: self.timestamp,
                ssrc,
                ..Default::default()
            },
        };
        crate::media::RtpPacket {
            header,
            payload: self.payload.clone(),
        }
    }
}

/// The last [`NACK_SEND_BUFFER`] sequence numbers of a stream, each with the packet sent under
/// it if any.
struct SendHistory {
    slots: Box<[Option<KeptPacket>]>,
    highest: Option<u16>,
}

impl Default for SendHistory {
    fn default() -> Self {
        Self {
            slots: (0..NACK_SEND_BUFFER).map(|_| None).collect(),
            highest: None,
        }
    }
}

impl SendHistory {
    fn slot(seq: u16) -> usize {
        usize::from(seq % NACK_SEND_BUFFER)
    }

    fn keep(&mut self, packet: KeptPacket) {
        let seq = packet.sequence_number;
        if self.highest.is_none_or(|h| seq.wrapping_sub(h) as i16 > 0) {
            self.highest = Some(seq);
        }
        self.slots[Self::slot(seq)] = Some(packet);
    }

    /// Where the packet after the highest one sent goes (for prefetching).
    fn next_slot(&self) -> usize {
        self.highest.map_or(0, |h| {
            &self.slots[Self::slot(h.wrapping_add(1))] as *const Option<KeptPacket> as usize
        })
    }

    /// A slot answers only for the number it was filled under, and only while that number is
    /// among the last [`NACK_SEND_BUFFER`].
    fn get(&self, seq: u16) -> Option<&KeptPacket> {
        if self.highest?.wrapping_sub(seq) >= NACK_SEND_BUFFER {
            return None;
        }
        self.slots[Self::slot(seq)]
            .as_ref()
            .filter(|p| p.sequence_number == seq)
    }
}

/// What a sender report says about one stream: counts, and the RTP timestamp of the newest
/// in-order packet with the moment it was sent (to extrapolate the RTP clock to the report).
#[derive(Default)]
struct SendCounts {
    newest: Option<u16>,
    rtp_time: u32,
    rtp_time_at: Option<std::time::Instant>,
    packets: u32,
    octets: u32,
}

impl SendCounts {
    fn count(&mut self, now: std::time::Instant, packet: &KeptPacket) {
        let seq = packet.sequence_number;
        if self.newest.is_none_or(|n| seq.wrapping_sub(n) as i16 > 0) {
            self.newest = Some(seq);
            if self.rtp_time_at.is_none() || packet.timestamp != self.rtp_time {
                self.rtp_time = packet.timestamp;
                self.rtp_time_at = Some(now);
            }
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(packet.payload.len() as u32);
    }

    fn report(
        &self,
        ssrc: u32,
        clock_rate: u32,
        now: std::time::Instant,
        ntp_time: u64,
    ) -> Option<SenderReport> {
        let since = now.saturating_duration_since(self.rtp_time_at?);
        Some(SenderReport {
            ssrc,
            ntp_time,
            rtp_time: self
                .rtp_time
                .wrapping_add((since.as_secs_f64() * f64::from(clock_rate)) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::media::RtpPacket;
    use rtc::interceptor::{AttributedPacket, RTCPFeedback as Fb};
    use rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers;
    use std::time::{Duration, Instant};

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

    /// A VP8 stream (SSRC 7) that negotiated NACK, and RTX (SSRC 8, payload type 97) when `rtx`.
    fn vp8_with_nack(rtx: bool) -> StreamInfo {
        StreamInfo {
            ssrc: 7,
            ssrc_rtx: rtx.then_some(8),
            payload_type: 96,
            payload_type_rtx: rtx.then_some(97),
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90_000,
            rtcp_feedback: vec![Fb {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        }
    }

    /// An SFU subscriber PC's chain, bound to [`vp8_with_nack`].
    fn subscriber_chain_with(counters: &WireCounters, rtx: bool) -> impl Interceptor {
        let mut chain =
            interceptor_chain(Chain::Sfu, Role::Subscriber, counters, &Default::default()).build();
        chain.bind_local_stream(&vp8_with_nack(rtx));
        chain
    }

    fn responder_chain(counters: &WireCounters) -> impl Interceptor {
        subscriber_chain_with(counters, false)
    }

    /// Hands `chain` a NACK for `seqs` of SSRC 7 and returns the RTP packets it sends in answer.
    fn nack(chain: &mut (impl Interceptor + ?Sized), seqs: &[u16]) -> Vec<RtpPacket> {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            nacks: nack_pairs_from_sequence_numbers(seqs),
        };
        chain
            .handle_read(tagged(InterceptorPacket::Rtcp(vec![Box::new(nack)])))
            .unwrap();
        while chain.poll_read().is_some() {}
        let mut resent = Vec::new();
        while let Some(out) = chain.poll_write() {
            if let InterceptorPacket::Rtp(p) = out.message.packet {
                resent.push(p);
            }
        }
        resent
    }

    fn send(chain: &mut impl Interceptor, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            chain.handle_write(tagged(rtp(7, seq))).unwrap();
            while chain.poll_write().is_some() {}
        }
    }

    #[test]
    fn a_resend_is_only_ever_the_packet_sent_under_that_number() {
        let counters = WireCounters::default();
        let mut chain = responder_chain(&counters);
        send(&mut chain, 100..110);
        // A jump: 110..399 were never sent, and 100..143 are now too old to answer for.
        send(&mut chain, [400]);
        // 361 and 399 share slots with 105 and 143 (one sent, one not).
        assert!(nack(&mut chain, &[105, 361, 399]).is_empty());
        let resent: Vec<u16> = nack(&mut chain, &[400])
            .iter()
            .map(|p| p.header.sequence_number)
            .collect();
        assert_eq!(resent, [400]);
        assert_eq!(counters.retransmits.get(), 1);
    }

    /// A resend is the packet as it went out: a plain header (the SFU's) rebuilt from the
    /// slot's fields, a header with more in it kept whole; and a slot, written for every packet
    /// sent, stays under half of `rtc`'s packet.
    #[test]
    fn a_resend_is_the_packet_as_sent_and_a_slot_stays_small() {
        assert!(std::mem::size_of::<Option<KeptPacket>>() <= 48);
        let counters = WireCounters::default();
        let mut chain = responder_chain(&counters);
        let InterceptorPacket::Rtp(mut plain) = rtp(7, 100) else {
            unreachable!()
        };
        plain.header.marker = true;
        plain.header.payload_type = 96;
        plain.header.timestamp = 123_456;
        let mut extended = plain.clone();
        extended.header.sequence_number = 101;
        extended.header.marker = false;
        extended.header.extension = true;
        extended.header.extension_profile = 0xBEDE;
        extended.header.extensions = vec![rtc::rtp::header::Extension {
            id: 3,
            payload: bytes::Bytes::from_static(&[7, 7]),
        }];
        for packet in [&plain, &extended] {
            chain
                .handle_write(tagged(InterceptorPacket::Rtp(packet.clone())))
                .unwrap();
            while chain.poll_write().is_some() {}
        }
        assert_eq!(nack(&mut chain, &[100, 101]), [plain, extended]);
    }

    /// A downtrack's hint finds its stream without a scan; a stale one (the stream list changed
    /// under it, another stream now in its place) still finds the right stream.
    #[test]
    fn a_stale_send_hint_still_finds_its_stream() {
        let counters = WireCounters::default();
        let (registry, wire) =
            sfu_subscriber_chain(Chain::Sfu, Role::Subscriber, &counters, &Default::default())
                .expect("an SFU subscriber chain");
        let mut chain = registry.build();
        let stream = |ssrc| StreamInfo {
            ssrc,
            ..vp8_with_nack(false)
        };
        chain.bind_local_stream(&stream(5));
        chain.bind_local_stream(&stream(7));
        wire.protect_media_here();
        let hint = SendHint::default();
        let send = |seq| {
            let InterceptorPacket::Rtp(packet) = rtp(7, seq) else {
                unreachable!()
            };
            wire.sent(Instant::now(), packet, Some(&hint));
        };
        send(100);
        assert_eq!(hint.stream.load(Ordering::Relaxed), 1);
        assert!(hint
            .addresses
            .iter()
            .all(|a| a.load(Ordering::Relaxed) != 0));
        // 7 moves to the front and 9 takes its old place.
        chain.unbind_local_stream(&stream(5));
        chain.bind_local_stream(&stream(9));
        send(101);
        assert_eq!(hint.stream.load(Ordering::Relaxed), 0);
        assert!(nack(&mut chain, &[100, 101]).is_empty());
        let mut resent = Vec::new();
        wire.take_resends(&mut resent);
        let seqs: Vec<(u32, u16)> = resent
            .iter()
            .map(|p| (p.header.ssrc, p.header.sequence_number))
            .collect();
        assert_eq!(seqs, [(7, 100), (7, 101)]);
    }

    /// Once the core protects the media itself, a resend on the media SSRC (no RTX) goes to the
    /// core and never down `rtc`'s pipeline (whose SRTP context must not protect that SSRC),
    /// while an RTX resend still does; what the core sends counts as sent through the chain.
    #[test]
    fn media_protected_by_the_core_is_resent_by_the_core() {
        for rtx in [false, true] {
            let counters = WireCounters::default();
            let (registry, wire) =
                sfu_subscriber_chain(Chain::Sfu, Role::Subscriber, &counters, &Default::default())
                    .expect("an SFU subscriber chain");
            let mut chain = registry.build();
            chain.bind_local_stream(&vp8_with_nack(rtx));
            wire.protect_media_here();
            let now = Instant::now();
            for seq in 100..110 {
                let InterceptorPacket::Rtp(packet) = rtp(7, seq) else {
                    unreachable!()
                };
                wire.sent(now, packet, None);
            }
            let down_the_pipeline = nack(&mut chain, &[103, 105]);
            let mut to_the_core = Vec::new();
            wire.take_resends(&mut to_the_core);
            let seqs = |packets: &[RtpPacket]| -> Vec<(u32, u16)> {
                packets
                    .iter()
                    .map(|p| (p.header.ssrc, p.header.sequence_number))
                    .collect()
            };
            if rtx {
                assert_eq!(seqs(&down_the_pipeline), [(8, 0), (8, 1)]);
                assert!(to_the_core.is_empty());
            } else {
                assert!(
                    down_the_pipeline.is_empty(),
                    "{:?}",
                    seqs(&down_the_pipeline)
                );
                assert_eq!(seqs(&to_the_core), [(7, 103), (7, 105)]);
            }
            assert_eq!(counters.retransmits.get(), 2);
        }
    }

    #[test]
    fn a_stream_with_rtx_is_repaired_on_its_rtx_stream() {
        let counters = WireCounters::default();
        let mut chain = subscriber_chain_with(&counters, true);
        send(&mut chain, 100..110);
        let resent = nack(&mut chain, &[103, 105]);
        let shape: Vec<(u32, u8, u16)> = resent
            .iter()
            .map(|p| {
                (
                    p.header.ssrc,
                    p.header.payload_type,
                    p.header.sequence_number,
                )
            })
            .collect();
        assert_eq!(shape, [(8, 97, 0), (8, 97, 1)]);
        // RFC 4588: the original sequence number, then the original payload.
        assert_eq!(resent[1].payload[..2], 105u16.to_be_bytes());
        assert_eq!(resent[1].payload[2..], [105u8; 100]);
    }

    #[test]
    fn a_subscriber_pc_reports_what_it_sent_every_second() {
        let counters = WireCounters::default();
        let mut chain = responder_chain(&counters);
        let start = Instant::now();
        for seq in 0..10u16 {
            let InterceptorPacket::Rtp(mut packet) = rtp(7, seq) else {
                unreachable!()
            };
            packet.header.timestamp = 1_000 + 3_000 * u32::from(seq / 5);
            let mut msg = tagged(InterceptorPacket::Rtp(packet));
            msg.now = start + Duration::from_millis(10 * u64::from(seq));
            chain.handle_write(msg).unwrap();
            while chain.poll_write().is_some() {}
        }
        let reports = |chain: &mut dyn Interceptor, at: Instant| {
            chain.handle_timeout(at).unwrap();
            let mut found = Vec::new();
            while let Some(out) = chain.poll_write() {
                if let InterceptorPacket::Rtcp(packets) = out.message.packet {
                    for p in packets {
                        found.push(p.as_any().downcast_ref::<SenderReport>().cloned().unwrap());
                    }
                }
            }
            found
        };
        assert_eq!(chain.poll_timeout(), Some(start + REPORT_INTERVAL));
        assert!(reports(&mut chain, start + Duration::from_millis(500)).is_empty());
        let at = start + REPORT_INTERVAL;
        let sent = reports(&mut chain, at);
        assert_eq!(sent.len(), 1);
        let report = &sent[0];
        assert_eq!(report.ssrc, 7);
        assert_eq!((report.packet_count, report.octet_count), (10, 1_000));
        // The newest timestamp (4,000, first sent at 50 ms) carried on to the report's moment
        // at 90 kHz: 950 ms later.
        assert_eq!(report.rtp_time, 4_000 + 85_500);
        let wall = crate::quality::ntp_at(Instant::now()) >> 32;
        assert!((report.ntp_time >> 32).abs_diff(wall) <= 1);
        assert_eq!(chain.poll_timeout(), Some(at + REPORT_INTERVAL));
    }

    #[test]
    fn a_nack_is_answered_from_the_send_buffer_and_counted() {
        // The SFU's own chain, and the clients' (`rtc`'s responder above the wire observer).
        for chain_kind in [Chain::Sfu, Chain::Client] {
            let counters = WireCounters::default();
            let mut chain = if chain_kind == Chain::Sfu {
                Box::new(responder_chain(&counters)) as Box<dyn Interceptor>
            } else {
                let mut chain = interceptor_chain(
                    Chain::Client,
                    Role::Subscriber,
                    &counters,
                    &Default::default(),
                )
                .build();
                chain.bind_local_stream(&vp8_with_nack(false));
                Box::new(chain)
            };
            let mut sent = 0;
            for seq in 100..110 {
                chain.handle_write(tagged(rtp(7, seq))).unwrap();
                while chain.poll_write().is_some() {
                    sent += 1;
                }
            }
            assert_eq!(sent, 10);
            let resent: Vec<u16> = nack(&mut chain, &[103, 105])
                .iter()
                .map(|p| p.header.sequence_number)
                .collect();
            assert_eq!(resent, vec![103, 105], "{chain_kind:?}");
            assert_eq!(counters.nacks_received.get(), 1);
            assert_eq!(counters.nacked_packets.get(), 2);
            assert_eq!(counters.retransmits.get(), 2, "{chain_kind:?}");
        }
    }

    #[test]
    fn nacks_past_the_resend_budget_are_dropped_and_counted() {
        let counters = WireCounters::default();
        let mut chain = responder_chain(&counters);
        // 200 packets sent: a budget of 64 + 200 / 8 = 89 resends in this second.
        send(&mut chain, 0..200);
        let sixty: Vec<u16> = (0..60).collect();
        assert_eq!(
            nack(&mut chain, &sixty).len(),
            60,
            "inside the budget: answered"
        );
        let forty: Vec<u16> = (100..140).collect();
        assert_eq!(
            nack(&mut chain, &forty).len(),
            0,
            "60 + 40 > 89: dropped whole"
        );
        assert_eq!(
            nack(&mut chain, &[150, 151]).len(),
            2,
            "what is left of the budget still answers"
        );
        assert_eq!(counters.nacks_received.get(), 3);
        assert_eq!(counters.nacks_throttled.get(), 1);
        assert_eq!(counters.retransmits.get(), 62);
    }

    fn names(chain: Chain, role: Role) -> Vec<String> {
        interceptor_chain(chain, role, &WireCounters::default(), &Default::default())
            .slots()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    #[test]
    fn each_sfu_peer_connection_has_only_what_its_direction_uses() {
        // Wire-most first.
        assert_eq!(names(Chain::Sfu, Role::Subscriber), ["SubscriberWire"]);
        assert_eq!(
            names(Chain::Sfu, Role::Publisher),
            [
                "WireObserver",
                "NackGeneratorInterceptor",
                "TwccReceiverInterceptor"
            ]
        );
        // Clients keep both directions' interceptors on both PCs.
        assert_eq!(
            names(Chain::Client, Role::Subscriber),
            [
                "WireObserver",
                "NackResponderInterceptor",
                "NackGeneratorInterceptor",
                "TwccReceiverInterceptor",
                "ReceiverReportInterceptor",
                "SenderReportInterceptor"
            ]
        );
        assert_eq!(names(Chain::Client, Role::Publisher).len(), 4);
    }
}
