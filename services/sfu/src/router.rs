//! Media routing between sessions. A [`Source`] per published track forwards each received
//! packet to every subscriber itself, in the task that reads the track: it walks an immutable
//! snapshot of its [`Subscription`]s (swapped whole on subscribe and unsubscribe, so no lock is
//! held while writing), rewrites the packet for each with its [`Rewriter`] and hands it to the
//! subscriber's PeerConnection without waiting. Nothing on that path allocates or takes an
//! async lock: the header is built directly, the payload is shared (copied only when a VP8
//! descriptor has to change), counters are atomics resolved once. A [`run_downtrack`] task per
//! subscription handles what is not per packet: settings, payload type, keyframe requests.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use prometheus::{Histogram, IntCounter};
use tokio::sync::watch;

use crate::forward::{
    vp8_keyframe_start, Decision, InPacket, Layer, LayerSize, Rewriter, Vp8Munger,
};
use crate::media::{
    prefetch, DownTrack, IncomingPacket, KeyframeRequester, Kind, RtpPacket, WriteError,
};
use crate::metrics::Metrics;

/// At most one PLI per layer this often (LiveKit: 500 ms low, 1 s mid/high).
const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// No payload type negotiated yet.
const NO_PT: u16 = u16::MAX;
/// No layer being forwarded.
const NO_LAYER: u8 = u8::MAX;

/// Where a subscription's packets go: a subscriber's downtrack (tests use their own).
pub trait Egress: Send + Sync {
    /// Hands over one packet without waiting.
    fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError>;
    /// Whether a packet handed over now can reach the subscriber (its transport is up).
    fn ready(&self) -> bool {
        true
    }
    /// The cache lines a write reads first (0: none), for the fan-out to fetch two subscribers
    /// ahead.
    fn hot_addresses(&self) -> [usize; 3] {
        [0; 3]
    }
    /// Asks for what that state points to (read from it: called a subscriber ahead, once
    /// [`Egress::hot_addresses`] are in the cache).
    fn prefetch_deeper(&self) {}
}

impl Egress for DownTrack {
    fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError> {
        DownTrack::try_write(self, packet)
    }
    fn ready(&self) -> bool {
        DownTrack::ready(self)
    }
    fn hot_addresses(&self) -> [usize; 3] {
        DownTrack::hot_addresses(self)
    }
    fn prefetch_deeper(&self) {
        DownTrack::prefetch_deeper(self);
    }
}

/// A subscription as the fan-out walks it, with the addresses its write touches first: a
/// forwarded packet visits each subscriber's state once, cold (a room's subscribers' state is
/// far more than a core's cache holds once the kernel's sends have been through it), so the
/// fan-out asks for the next subscribers' while it writes to this one.
#[derive(Clone)]
struct Fanout {
    sub: Arc<Subscription>,
    hot: [usize; 5],
}

impl Fanout {
    fn new(sub: Arc<Subscription>) -> Self {
        let at = Arc::as_ptr(&sub) as usize;
        let [a, b, c] = sub.egress.hot_addresses();
        Self {
            hot: [at, at + 64, a, b, c],
            sub,
        }
    }

    fn prefetch(&self) {
        let [a, b, c, d, e] = self.hot;
        prefetch(a);
        prefetch(b);
        prefetch(c);
        prefetch(d);
        prefetch(e);
    }
}

/// The per-subscription state only the forwarding task touches (behind an uncontended lock).
struct FwdState {
    rewriter: Rewriter,
    vp8: Vp8Munger,
    /// Where a VP8 payload whose descriptor must change is rewritten.
    scratch: BytesMut,
    was_paused: bool,
}

/// One subscriber's view of a published track.
pub struct Subscription {
    subscriber: String,
    ssrc: u32,
    egress: Box<dyn Egress>,
    /// Settings, mirrored from the session by [`run_downtrack`] and read per packet.
    negotiated: AtomicBool,
    paused: AtomicBool,
    max_layer: AtomicU8,
    payload_type: AtomicU16,
    /// The layer being forwarded ([`NO_LAYER`] if none), for the subscriber's keyframe requests.
    current: AtomicU8,
    state: Mutex<FwdState>,
}

impl Subscription {
    pub fn new(subscriber: &str, ssrc: u32, kind: Kind, egress: Box<dyn Egress>) -> Self {
        let video = kind == Kind::Video;
        Self {
            subscriber: subscriber.to_owned(),
            ssrc,
            egress,
            negotiated: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            max_layer: AtomicU8::new(crate::forward::MAX_LAYER),
            payload_type: AtomicU16::new(NO_PT),
            current: AtomicU8::new(NO_LAYER),
            state: Mutex::new(FwdState {
                rewriter: Rewriter::new(video, if video { 90_000 } else { 48_000 }),
                vp8: Vp8Munger::default(),
                scratch: BytesMut::new(),
                was_paused: false,
            }),
        }
    }

    /// Applies the session's settings for this subscription.
    pub fn apply(&self, settings: DownSettings) {
        self.max_layer.store(settings.max_layer, Ordering::Relaxed);
        self.paused.store(settings.paused, Ordering::Relaxed);
        self.negotiated
            .store(settings.negotiated, Ordering::Release);
    }

    /// The payload type the subscriber accepted; packets flow once it is known.
    pub fn set_payload_type(&self, pt: u8) {
        self.payload_type.store(u16::from(pt), Ordering::Release);
    }

    /// The layer being forwarded, if any.
    pub fn current_layer(&self) -> Option<Layer> {
        match self.current.load(Ordering::Relaxed) {
            NO_LAYER => None,
            l => Some(l),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FwdState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This subscriber's copy of one packet, if it gets it; `wants` is set to a layer a
    /// keyframe is needed on.
    fn rewrite(&self, p: &Classified<'_>, wants: &mut Option<Layer>) -> Option<RtpPacket> {
        let pt = self.payload_type.load(Ordering::Acquire);
        // Until the subscriber's transport is up a packet is lost: a keyframe spent then would
        // leave the subscriber waiting for the next one, a throttled request away.
        if !self.negotiated.load(Ordering::Acquire) || pt == NO_PT || !self.egress.ready() {
            return None;
        }
        let mut st = self.lock();
        if self.paused.load(Ordering::Relaxed) {
            st.was_paused = true;
            return None;
        }
        if st.was_paused {
            // Frames were skipped: the subscriber's decoder needs a fresh keyframe.
            st.was_paused = false;
            st.rewriter.resync();
        }
        st.rewriter
            .set_max_layer(self.max_layer.load(Ordering::Relaxed));
        let header = &p.packet.header;
        let decision = st.rewriter.push(InPacket {
            layer: p.layer,
            seq: header.sequence_number,
            ts: header.timestamp,
            keyframe_start: p.keyframe_start,
            arrival_ms: p.arrival_ms,
        });
        *wants = st.rewriter.wants_keyframe(p.arrival_ms);
        self.current
            .store(st.rewriter.current().unwrap_or(NO_LAYER), Ordering::Relaxed);
        let Decision::Forward { seq, ts } = decision else {
            return None;
        };
        let payload = if p.video {
            let switched = st.rewriter.switched();
            let FwdState { vp8, scratch, .. } = &mut *st;
            vp8.rewrite(&p.packet.payload, switched, scratch)
        } else {
            p.packet.payload.clone()
        };
        // The publisher's extension ids mean nothing on this PC (and mid/rid/transport-cc
        // values belong to the publisher's transport): none is forwarded.
        Some(RtpPacket {
            header: rtc::rtp::header::Header {
                version: 2,
                padding: false,
                extension: false,
                marker: header.marker,
                payload_type: pt as u8,
                sequence_number: seq,
                timestamp: ts,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        })
    }

    fn resync(&self) {
        let mut st = self.lock();
        st.rewriter.resync();
        self.current.store(NO_LAYER, Ordering::Relaxed);
    }
}

/// One received packet, classified once for all subscribers.
struct Classified<'a> {
    packet: &'a RtpPacket,
    layer: Layer,
    keyframe_start: bool,
    video: bool,
    arrival_ms: u64,
}

/// Metric handles resolved once per source.
struct SourceMetrics {
    packets_out: IntCounter,
    bytes_out: IntCounter,
    queue_full: IntCounter,
    write_failed: IntCounter,
    plis_sent: IntCounter,
    latency: Histogram,
}

/// A published track's media, as the router sees it.
pub struct Source {
    pub track_sid: String,
    pub participant_sid: String,
    pub kind: Kind,
    /// The published simulcast layers (empty for audio).
    pub layers: Vec<LayerSize>,
    /// Time zero for arrival times handed to rewriters.
    epoch: Instant,
    keyframes: KeyframeRequester,
    metrics: SourceMetrics,
    /// Replaced whole (under `edit`) on subscribe and unsubscribe; read per packet.
    subscriptions: ArcSwap<Vec<Fanout>>,
    edit: Mutex<()>,
    /// Per layer: `1 << 32 | ssrc` once seen (0 before).
    layer_ssrcs: [AtomicU64; 3],
    /// Per layer: ms since `epoch` + 1 of the last PLI (0 = never).
    last_pli: [AtomicU64; 3],
}

impl Source {
    pub fn new(
        track_sid: String,
        participant_sid: String,
        kind: Kind,
        layers: Vec<LayerSize>,
        keyframes: KeyframeRequester,
        metrics: Metrics,
    ) -> Self {
        let k = kind.as_str();
        Self {
            track_sid,
            participant_sid,
            kind,
            layers,
            epoch: Instant::now(),
            keyframes,
            metrics: SourceMetrics {
                packets_out: metrics.packets_out.with_label_values(&[k]),
                bytes_out: metrics.bytes_out.with_label_values(&[k]),
                queue_full: metrics.forward_drops.with_label_values(&["queue_full"]),
                write_failed: metrics.forward_drops.with_label_values(&["write_failed"]),
                plis_sent: metrics.plis_sent.clone(),
                latency: metrics.forward_latency.clone(),
            },
            subscriptions: ArcSwap::from_pointee(Vec::new()),
            edit: Mutex::new(()),
            layer_ssrcs: Default::default(),
            last_pli: Default::default(),
        }
    }

    /// The LiveKit stream id of this track on a subscriber PC: `<participant sid>|<track sid>`.
    pub fn stream_id(&self) -> String {
        format!("{}|{}", self.participant_sid, self.track_sid)
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Fanout>)) {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::clone(&self.subscriptions.load());
        change(&mut next);
        self.subscriptions.store(Arc::new(next));
    }

    /// Starts forwarding to `sub` (replacing any earlier subscription of the same subscriber).
    pub fn attach(&self, sub: Arc<Subscription>) {
        self.update(|subs| {
            subs.retain(|s| s.sub.subscriber != sub.subscriber);
            subs.push(Fanout::new(sub));
        });
    }

    pub fn detach(&self, subscriber: &str) {
        self.update(|subs| subs.retain(|s| s.sub.subscriber != subscriber));
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscriptions.load().len()
    }

    /// Forwards one received packet to every subscriber, without waiting: a subscriber whose
    /// queue is full loses the packet (counted).
    pub fn forward(&self, incoming: &IncomingPacket) {
        let arrival = Instant::now();
        let layer = incoming.layer.min(crate::forward::MAX_LAYER);
        let video = self.kind == Kind::Video;
        let p = Classified {
            packet: &incoming.packet,
            layer,
            keyframe_start: !video || vp8_keyframe_start(&incoming.packet.payload),
            video,
            arrival_ms: self.ms(arrival),
        };
        self.layer_ssrcs[layer as usize].store(
            1 << 32 | u64::from(incoming.packet.header.ssrc),
            Ordering::Relaxed,
        );
        let subs = self.subscriptions.load();
        // Summed here and added once: the counters are shared by every forwarding thread.
        let (mut sent, mut sent_bytes, mut busy) = (0, 0, 0);
        for first in subs.iter().take(2) {
            first.prefetch();
        }
        for (i, Fanout { sub, .. }) in subs.iter().enumerate() {
            // Two ahead, the first lines; one ahead, what those lines (fetched by now) point to.
            if let Some(next) = subs.get(i + 2) {
                next.prefetch();
            }
            if let Some(next) = subs.get(i + 1) {
                next.sub.egress.prefetch_deeper();
            }
            let mut wants = None;
            let packet = sub.rewrite(&p, &mut wants);
            if let Some(layer) = wants {
                self.request_keyframe(layer);
            }
            let Some(packet) = packet else {
                continue;
            };
            let len = packet.payload.len() as u64;
            match sub.egress.try_write(packet) {
                Ok(()) => {
                    sent += 1;
                    sent_bytes += len;
                    self.metrics
                        .latency
                        .observe(arrival.elapsed().as_secs_f64());
                }
                Err(WriteError::Busy) => busy += 1,
                Err(WriteError::Failed) => {
                    self.metrics.write_failed.inc();
                    // The subscriber may have missed a keyframe: start over from the next one.
                    sub.resync();
                }
            }
        }
        if sent > 0 {
            self.metrics.packets_out.inc_by(sent);
            self.metrics.bytes_out.inc_by(sent_bytes);
        }
        if busy > 0 {
            self.metrics.queue_full.inc_by(busy);
        }
    }

    /// Asks the publisher for a keyframe on `layer`, at most once per [`PLI_INTERVAL`].
    pub fn request_keyframe(&self, layer: Layer) {
        let i = usize::from(layer.min(crate::forward::MAX_LAYER));
        let ssrc = self.layer_ssrcs[i].load(Ordering::Relaxed);
        if ssrc == 0 {
            return;
        }
        let now = self.ms(Instant::now()) + 1;
        let last = self.last_pli[i].load(Ordering::Relaxed);
        let interval = PLI_INTERVAL.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        if self.last_pli[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if self.keyframes.request(ssrc as u32) {
            self.metrics.plis_sent.inc();
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// Settings a subscriber can change while a downtrack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownSettings {
    /// True once the subscriber's answer covering this downtrack is applied.
    pub negotiated: bool,
    pub max_layer: Layer,
    pub paused: bool,
}

impl Default for DownSettings {
    fn default() -> Self {
        Self {
            negotiated: false,
            max_layer: crate::forward::MAX_LAYER,
            paused: false,
        }
    }
}

/// What a subscription needs besides its packets, until the session drops `settings`: mirrors
/// the settings into it, learns the negotiated payload type, and relays the subscriber's
/// keyframe requests to the publisher. Holds the source weakly (the session owns it).
pub async fn run_downtrack(
    source: std::sync::Weak<Source>,
    sub: Arc<Subscription>,
    down: DownTrack,
    mut settings: watch::Receiver<DownSettings>,
    metrics: Metrics,
) {
    // Keyframe requests can only be read once the track is bound, and the payload type only
    // once negotiated: until then, look again a little later.
    let mut feedback_after = Instant::now();
    let mut pt_after: Option<Instant> = None;
    loop {
        let st = *settings.borrow_and_update();
        sub.apply(st);
        if st.negotiated && sub.payload_type.load(Ordering::Relaxed) == NO_PT {
            match down.negotiated().await {
                Some(n) => {
                    sub.set_payload_type(n.payload_type);
                    pt_after = None;
                }
                None => pt_after = Some(Instant::now() + Duration::from_millis(100)),
            }
        }
        let now = Instant::now();
        let feedback_on = st.negotiated && now >= feedback_after;
        let wake = [
            pt_after,
            (st.negotiated && !feedback_on).then_some(feedback_after),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            request = down.keyframe_request(), if feedback_on => {
                match (request, sub.current_layer()) {
                    (Some(()), Some(layer)) => {
                        metrics.keyframe_requests_in.inc();
                        if let Some(source) = source.upgrade() {
                            source.request_keyframe(layer);
                        }
                    }
                    (Some(()), None) => {}
                    (None, _) => feedback_after = Instant::now() + Duration::from_millis(250),
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(now).into()), if wake.is_some() => {}
        }
    }
    tracing::debug!(subscriber = %sub.subscriber, "downtrack ended");
}

#[cfg(test)]
mod cost;

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a subscription sends; `busy` refuses everything; `connecting` says the
    /// transport is not up yet.
    #[derive(Default)]
    struct Collect {
        sent: Mutex<Vec<RtpPacket>>,
        busy: bool,
        connecting: AtomicBool,
    }

    impl Egress for Arc<Collect> {
        fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError> {
            if self.busy {
                return Err(WriteError::Busy);
            }
            self.sent.lock().unwrap().push(packet);
            Ok(())
        }
        fn ready(&self) -> bool {
            !self.connecting.load(Ordering::Relaxed)
        }
    }

    fn packet(layer: Layer, ssrc: u32, seq: u16, payload: &[u8]) -> IncomingPacket {
        let mut packet = RtpPacket::default();
        packet.header.ssrc = ssrc;
        packet.header.sequence_number = seq;
        packet.header.timestamp = 1000 + u32::from(seq);
        packet.header.payload_type = 111;
        packet.header.extension = true;
        packet.header.extensions = vec![rtc::rtp::header::Extension {
            id: 1,
            payload: bytes::Bytes::from_static(&[7]),
        }];
        packet.payload = bytes::Bytes::copy_from_slice(payload);
        IncomingPacket {
            layer,
            rid: "",
            packet,
        }
    }

    fn source(kind: Kind) -> (Source, tokio::sync::mpsc::Receiver<u32>, Metrics) {
        let (keyframes, plis) = KeyframeRequester::channel();
        let metrics = Metrics::new();
        let s = Source::new(
            "TR_1".into(),
            "PA_1".into(),
            kind,
            Vec::new(),
            keyframes,
            metrics.clone(),
        );
        (s, plis, metrics)
    }

    fn subscribe(
        s: &Source,
        who: &str,
        ssrc: u32,
        busy: bool,
    ) -> (Arc<Subscription>, Arc<Collect>) {
        let out = Arc::new(Collect {
            busy,
            ..Default::default()
        });
        let sub = Arc::new(Subscription::new(who, ssrc, s.kind, Box::new(out.clone())));
        s.attach(sub.clone());
        (sub, out)
    }

    fn negotiate(sub: &Subscription, pt: u8) {
        sub.set_payload_type(pt);
        sub.apply(DownSettings {
            negotiated: true,
            ..Default::default()
        });
    }

    #[test]
    fn each_subscriber_gets_its_own_header_over_the_shared_payload() {
        let (s, _plis, metrics) = source(Kind::Video);
        assert_eq!(s.stream_id(), "PA_1|TR_1");
        let (a, out_a) = subscribe(&s, "PA_a", 501, false);
        let (b, out_b) = subscribe(&s, "PA_b", 502, false);
        // Nothing before the subscriber's answer is applied.
        let key = packet(0, 30, 1, &[0x10, 0x00, 0x9d]);
        s.forward(&key);
        assert!(out_a.sent.lock().unwrap().is_empty());
        negotiate(&a, 96);
        negotiate(&b, 98);
        s.forward(&key);
        s.forward(&packet(0, 30, 2, &[0x00, 0x01]));
        for (out, ssrc, pt) in [(&out_a, 501, 96), (&out_b, 502, 98)] {
            let sent = out.sent.lock().unwrap();
            assert_eq!(sent.len(), 2);
            let h = &sent[0].header;
            assert_eq!(
                (h.ssrc, h.payload_type, h.sequence_number, h.timestamp),
                (ssrc, pt, 1, 1001)
            );
            assert!(
                !h.extension && h.extensions.is_empty(),
                "no publisher extension goes out"
            );
            assert_eq!(
                sent[0].payload.as_ptr(),
                key.packet.payload.as_ptr(),
                "shared, not copied"
            );
        }
        assert_eq!(metrics.packets_out.with_label_values(&["video"]).get(), 4);
        // A detached subscriber gets nothing more.
        s.detach("PA_b");
        assert_eq!(s.subscriber_count(), 1);
        s.forward(&packet(0, 30, 3, &[0x00, 0x02]));
        assert_eq!(out_a.sent.lock().unwrap().len(), 3);
        assert_eq!(out_b.sent.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_busy_subscriber_loses_packets_not_its_place() {
        let (s, _plis, metrics) = source(Kind::Audio);
        let (slow, _) = subscribe(&s, "PA_slow", 1, true);
        let (fast, out) = subscribe(&s, "PA_fast", 2, false);
        negotiate(&slow, 111);
        negotiate(&fast, 111);
        for seq in 0..10 {
            s.forward(&packet(0, 1, seq, &[1]));
        }
        assert_eq!(s.subscriber_count(), 2);
        assert_eq!(out.sent.lock().unwrap().len(), 10);
        assert_eq!(
            metrics
                .forward_drops
                .with_label_values(&["queue_full"])
                .get(),
            10
        );
    }

    #[test]
    fn a_paused_subscription_resumes_at_a_keyframe() {
        let (s, _plis, _) = source(Kind::Video);
        let (sub, out) = subscribe(&s, "PA_a", 9, false);
        negotiate(&sub, 96);
        s.forward(&packet(0, 30, 1, &[0x10, 0x00]));
        sub.apply(DownSettings {
            negotiated: true,
            paused: true,
            ..Default::default()
        });
        s.forward(&packet(0, 30, 2, &[0x00, 0x01]));
        negotiate(&sub, 96);
        s.forward(&packet(0, 30, 3, &[0x00, 0x01]));
        assert_eq!(
            out.sent.lock().unwrap().len(),
            1,
            "nothing until a keyframe"
        );
        s.forward(&packet(0, 30, 4, &[0x10, 0x00]));
        let sent = out.sent.lock().unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].header.sequence_number, 2, "numbering continues");
    }

    #[test]
    fn a_keyframe_is_not_spent_before_the_subscribers_transport_is_up() {
        let (s, mut plis, _) = source(Kind::Video);
        let (sub, out) = subscribe(&s, "PA_a", 9, false);
        out.connecting.store(true, Ordering::Relaxed);
        negotiate(&sub, 96);
        // Answer applied, DTLS still under way: what is written now would be lost.
        s.forward(&packet(0, 30, 1, &[0x10, 0x00]));
        s.forward(&packet(0, 30, 2, &[0x00, 0x01]));
        assert!(
            out.sent.lock().unwrap().is_empty(),
            "written before the transport was up"
        );
        assert!(
            plis.try_recv().is_err(),
            "nothing asked for a subscriber that cannot receive"
        );
        out.connecting.store(false, Ordering::Relaxed);
        s.forward(&packet(0, 30, 3, &[0x00, 0x01]));
        assert!(
            out.sent.lock().unwrap().is_empty(),
            "a delta frame is no start"
        );
        assert_eq!(
            plis.try_recv().unwrap(),
            30,
            "the subscriber's keyframe is asked for"
        );
        s.forward(&packet(0, 30, 4, &[0x10, 0x00]));
        let sent = out.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].header.sequence_number, 4);
    }

    #[test]
    fn keyframe_requests_go_to_the_layer_ssrc_and_are_throttled() {
        let (s, mut plis, metrics) = source(Kind::Video);
        // Unknown layer: nothing to ask.
        s.request_keyframe(1);
        assert!(plis.try_recv().is_err());
        s.forward(&packet(1, 20, 1, &[0x90]));
        s.request_keyframe(1);
        s.request_keyframe(1);
        assert_eq!(plis.try_recv().unwrap(), 20);
        assert!(
            plis.try_recv().is_err(),
            "second request within the interval"
        );
        assert_eq!(metrics.plis_sent.get(), 1);
        // A subscriber waiting for a keyframe asks for one itself.
        let (sub, _) = subscribe(&s, "PA_a", 9, false);
        negotiate(&sub, 96);
        s.forward(&packet(2, 10, 1, &[0x00, 0x01]));
        assert_eq!(plis.try_recv().unwrap(), 10);
    }
}
