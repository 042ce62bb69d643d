//! The interceptor the SFU adds to `rtc`'s chain: an observer at the wire end that counts NACKs
//! and retransmissions and lets keyframe requests through to the application.

use std::collections::VecDeque;
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
    /// and receives none, so it has no NACK generator, TWCC receiver or receiver reports (they
    /// act on inbound RTP, and each is one more hop for every outgoing packet and one more timer
    /// polled on every wakeup of its driver); a publisher PC sends no media, so it has no NACK
    /// responder (a send buffer).
    Sfu,
    /// Load generators and test clients: the same chain on both PCs (NACK responder and
    /// generator, TWCC receiver; sender and receiver reports on the subscriber PC), so a client
    /// behaves the same towards any server.
    Client,
}

/// The interceptors of a PeerConnection for `role` (whose media the client publishes on it, or
/// receives on it); the slots, not the order of the calls, decide the order.
pub(super) fn interceptor_chain(
    chain: Chain,
    role: Role,
    counters: &WireCounters,
    link: &Arc<LinkStats>,
) -> Registry {
    let (sends, receives) = match (chain, role) {
        (Chain::Client, _) => (true, true),
        (Chain::Sfu, Role::Subscriber) => (true, false),
        (Chain::Sfu, Role::Publisher) => (false, true),
    };
    let mut registry = Registry::new();
    if sends {
        // Answers the remote's NACKs from a send buffer.
        registry = registry.with(Slot::NackResponder, nack_responder());
    }
    if receives {
        // Asks for lost packets; reports arrivals (TWCC feedback drives the publisher's
        // bandwidth estimate, and lets Chrome turn on the higher simulcast layers).
        registry = registry
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build());
    }
    // Sender reports let subscribers sync audio with video. A publisher gets no receiver
    // reports: Chrome tags a simulcast layer's packets with mid/rid only until a report
    // acknowledges its SSRC, and `rtc` 0.21 forgets which SSRC is which layer on every
    // renegotiation (a second published track), so it must be able to learn it again from
    // those tags. The SFU's subscriber PCs receive no RTP to report on.
    registry = match (chain, role) {
        (Chain::Client, Role::Subscriber) => registry
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
            .with(Slot::SenderReport, SenderReportBuilder::new().build()),
        (Chain::Sfu, Role::Subscriber) => {
            registry.with(Slot::SenderReport, SenderReportBuilder::new().build())
        }
        (_, Role::Publisher) => registry,
    };
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
        }
    }
}

/// Watches RTCP and RTP at the wire end of the interceptor chain (so it sees what the NACK
/// generator and responder add) and counts it. Inbound RTCP otherwise ends inside the chain: a
/// compound packet holding a subscriber's keyframe requests (PLI, FIR) goes on as it came, for
/// the interceptors, followed by a copy of just those requests marked for the application, which
/// relays them to the publisher. (A tap at the application end did this before, at the cost of
/// one more queue hop for every packet sent.)
pub(super) struct WireObserver {
    counters: WireCounters,
    /// This PeerConnection's own counts, for its participant's connection quality.
    link: Arc<LinkStats>,
    /// Per outgoing SSRC, the highest sequence number sent: anything not after it is a resend.
    highest_sent: SsrcMap,
    /// Per incoming SSRC, the highest sequence number received (for gaps).
    highest_received: SsrcMap,
    resends: ResendBudget,
    pub(super) inbound: VecDeque<TaggedPacket>,
    pub(super) outbound: VecDeque<TaggedPacket>,
}

impl WireObserver {
    pub(super) fn new(counters: WireCounters, link: Arc<LinkStats>) -> Self {
        Self {
            counters,
            link,
            highest_sent: SsrcMap::default(),
            highest_received: SsrcMap::default(),
            resends: ResendBudget::default(),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
        }
    }
}

impl WireObserver {
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

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        match &mut msg.message.packet {
            InterceptorPacket::Rtcp(packets) => {
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
                        return true;
                    }
                    self.counters.nacks_throttled.inc();
                    throttled = true;
                    false
                });
                if throttled && packets.is_empty() {
                    return Ok(());
                }
                let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                    .iter()
                    .filter(|p| asks_for_keyframe(p.as_ref()))
                    .cloned()
                    .collect();
                if !wanted.is_empty() {
                    let mut keyframes = TaggedPacket {
                        now,
                        transport: msg.transport,
                        message: AttributedPacket::new(InterceptorPacket::Rtcp(wanted)),
                    };
                    keyframes.message.add(Attribute::DeliverToApplication);
                    self.inbound.push_back(msg);
                    self.inbound.push_back(keyframes);
                    return Ok(());
                }
            }
            InterceptorPacket::Rtp(packet) => {
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
                self.link.received(gap);
            }
            _ => {}
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
                match self.highest_sent.get_mut(packet.header.ssrc) {
                    Some(highest) => {
                        // RFC 1982 order: ahead by less than half the space is new.
                        if seq.wrapping_sub(*highest) as i16 > 0 {
                            *highest = seq;
                            self.link.sent();
                            self.resends.sent(msg.now);
                        } else {
                            self.counters.retransmits.inc();
                        }
                    }
                    None => {
                        self.highest_sent.insert(packet.header.ssrc, seq);
                        self.link.sent();
                        self.resends.sent(msg.now);
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

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::media::RtpPacket;
    use rtc::interceptor::{AttributedPacket, RTCPFeedback as Fb};
    use rtc::peer_connection::configuration::media_engine::MediaEngine as WebrtcMediaEngine;
    use rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8;
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

    /// A subscriber PC's NACK path: the responder and the wire observer, bound to one VP8 stream
    /// (SSRC 7) that negotiated NACK.
    fn responder_chain(counters: &WireCounters) -> impl Interceptor {
        let mut chain = Registry::new()
            .with(Slot::NackResponder, super::nack_responder())
            .with(
                Slot::from(500),
                WireObserver::new(counters.clone(), Default::default()),
            )
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
        chain
    }

    #[test]
    fn a_nack_is_answered_from_the_send_buffer_and_counted() {
        let counters = WireCounters::default();
        let mut media = WebrtcMediaEngine::default();
        super::register_nack_feedback(&mut media);
        let mut chain = responder_chain(&counters);
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

    #[test]
    fn nacks_past_the_resend_budget_are_dropped_and_counted() {
        let counters = WireCounters::default();
        let mut chain = responder_chain(&counters);
        // 200 packets sent: a budget of 64 + 200 / 8 = 89 resends in this second.
        for seq in 0..200 {
            chain.handle_write(tagged(rtp(7, seq))).unwrap();
            while chain.poll_write().is_some() {}
        }
        let mut nack_for = |seqs: &[u16]| {
            let nack = TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: 7,
                nacks: nack_pairs_from_sequence_numbers(seqs),
            };
            chain
                .handle_read(tagged(InterceptorPacket::Rtcp(vec![Box::new(nack)])))
                .unwrap();
            while chain.poll_read().is_some() {}
            let mut resent = 0;
            while let Some(out) = chain.poll_write() {
                if let InterceptorPacket::Rtp(_) = out.message.packet {
                    resent += 1;
                }
            }
            resent
        };
        let sixty: Vec<u16> = (0..60).collect();
        assert_eq!(nack_for(&sixty), 60, "inside the budget: answered");
        let forty: Vec<u16> = (100..140).collect();
        assert_eq!(nack_for(&forty), 0, "60 + 40 > 89: dropped whole");
        assert_eq!(
            nack_for(&[150, 151]),
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
        assert_eq!(
            names(Chain::Sfu, Role::Subscriber),
            [
                "WireObserver",
                "NackResponderInterceptor",
                "SenderReportInterceptor"
            ]
        );
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
