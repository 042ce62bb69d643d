//! Media routing between sessions: a [`Source`] per published track fans its packets out to one
//! bounded queue per subscriber, and a [`run_downtrack`] task per (subscriber, track) rewrites
//! them with a [`Rewriter`] onto that subscriber's [`DownTrack`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::forward::{
    layer_of_rid, vp8_keyframe_start, Decision, InPacket, Layer, LayerSize, Rewriter, Vp8Munger,
};
use crate::media::{DownTrack, IncomingPacket, KeyframeRequester, Kind, RtpPacket};
use crate::metrics::Metrics;

/// Packets queued per subscriber before the newest are dropped.
const SINK_CAPACITY: usize = 512;
/// At most one PLI per layer this often (LiveKit: 500 ms low, 1 s mid/high).
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// One received packet, shared by every subscriber of its track.
pub struct Forwarded {
    pub layer: Layer,
    pub keyframe_start: bool,
    pub arrival: Instant,
    pub packet: RtpPacket,
}

struct Sink {
    subscriber: String,
    tx: mpsc::Sender<Arc<Forwarded>>,
}

struct SourceState {
    sinks: Vec<Sink>,
    layer_ssrcs: [Option<u32>; 3],
    last_pli: [Option<Instant>; 3],
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
    metrics: Metrics,
    state: Mutex<SourceState>,
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
        Self {
            track_sid,
            participant_sid,
            kind,
            layers,
            epoch: Instant::now(),
            keyframes,
            metrics,
            state: Mutex::new(SourceState {
                sinks: Vec::new(),
                layer_ssrcs: [None; 3],
                last_pli: [None; 3],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The LiveKit stream id of this track on a subscriber PC: `<participant sid>|<track sid>`.
    pub fn stream_id(&self) -> String {
        format!("{}|{}", self.participant_sid, self.track_sid)
    }

    /// A queue of this track's packets for `subscriber` (replacing any earlier one).
    pub fn attach(&self, subscriber: &str) -> mpsc::Receiver<Arc<Forwarded>> {
        let (tx, rx) = mpsc::channel(SINK_CAPACITY);
        let mut st = self.lock();
        st.sinks.retain(|s| s.subscriber != subscriber);
        st.sinks.push(Sink {
            subscriber: subscriber.to_owned(),
            tx,
        });
        rx
    }

    pub fn detach(&self, subscriber: &str) {
        self.lock().sinks.retain(|s| s.subscriber != subscriber);
    }

    pub fn subscriber_count(&self) -> usize {
        self.lock().sinks.len()
    }

    /// Classifies a received packet and hands it to every subscriber without waiting: a full
    /// queue loses the packet (counted), a closed one is removed.
    pub fn dispatch(&self, incoming: IncomingPacket) {
        let layer = layer_of_rid(incoming.rid.as_deref());
        let keyframe_start = match self.kind {
            Kind::Audio => true,
            Kind::Video => vp8_keyframe_start(&incoming.packet.payload),
        };
        let fwd = Arc::new(Forwarded {
            layer,
            keyframe_start,
            arrival: Instant::now(),
            packet: incoming.packet,
        });
        let mut st = self.lock();
        st.layer_ssrcs[layer as usize] = Some(fwd.packet.header.ssrc);
        st.sinks.retain(|sink| match sink.tx.try_send(fwd.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics
                    .forward_drops
                    .with_label_values(&["queue_full"])
                    .inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Asks the publisher for a keyframe on `layer`, at most once per [`PLI_INTERVAL`].
    pub fn request_keyframe(&self, layer: Layer) {
        let mut st = self.lock();
        let i = layer as usize;
        let Some(ssrc) = st.layer_ssrcs.get(i).copied().flatten() else {
            return;
        };
        let now = Instant::now();
        if st.last_pli[i].is_some_and(|t| now.duration_since(t) < PLI_INTERVAL) {
            return;
        }
        st.last_pli[i] = Some(now);
        if self.keyframes.request(ssrc) {
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

/// Forwards one source to one subscriber until either side goes away. Holds the source weakly:
/// the source owns this task's queue, so a strong reference would keep both alive forever.
pub async fn run_downtrack(
    source: std::sync::Weak<Source>,
    down: DownTrack,
    mut rx: mpsc::Receiver<Arc<Forwarded>>,
    mut settings: watch::Receiver<DownSettings>,
    metrics: Metrics,
) {
    let Some((kind, track_sid)) = source.upgrade().map(|s| (s.kind, s.track_sid.clone())) else {
        return;
    };
    let video = kind == Kind::Video;
    let clock = if video { 90_000 } else { 48_000 };
    let mut rewriter = Rewriter::new(video, clock);
    let mut vp8 = Vp8Munger::default();
    let kind = kind.as_str();
    let packets_out = metrics.packets_out.with_label_values(&[kind]);
    let bytes_out = metrics.bytes_out.with_label_values(&[kind]);
    let write_errors = metrics.forward_drops.with_label_values(&["write_failed"]);
    let mut payload_type: Option<u8> = None;
    // Keyframe requests can only be read once the track is bound; until then, look again later.
    let mut feedback_after = Instant::now();
    let mut was_paused = false;
    loop {
        let feedback_on = settings.borrow().negotiated && Instant::now() >= feedback_after;
        let fwd = tokio::select! {
            fwd = rx.recv() => match fwd {
                Some(fwd) => fwd,
                None => break,
            },
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            request = down.keyframe_request(), if feedback_on => {
                match (request, rewriter.current()) {
                    (Some(()), Some(layer)) => {
                        metrics.keyframe_requests_in.inc();
                        if let Some(source) = source.upgrade() {
                            source.request_keyframe(layer);
                        }
                    }
                    (Some(()), None) => {}
                    (None, _) => feedback_after = Instant::now() + Duration::from_millis(250),
                }
                continue;
            }
        };
        let st = *settings.borrow();
        if !st.negotiated || st.paused {
            was_paused = st.paused;
            continue;
        }
        if was_paused {
            // Frames were skipped: the subscriber's decoder needs a fresh keyframe.
            was_paused = false;
            rewriter.resync();
        }
        rewriter.set_max_layer(st.max_layer);
        if payload_type.is_none() {
            payload_type = down.negotiated().await.map(|n| n.payload_type);
            if payload_type.is_none() {
                continue;
            }
        }
        let Some(src) = source.upgrade() else {
            break;
        };
        let now_ms = src.ms(fwd.arrival);
        let decision = rewriter.push(InPacket {
            layer: fwd.layer,
            seq: fwd.packet.header.sequence_number,
            ts: fwd.packet.header.timestamp,
            keyframe_start: fwd.keyframe_start,
            arrival_ms: now_ms,
        });
        if let Some(layer) = rewriter.wants_keyframe(now_ms) {
            src.request_keyframe(layer);
        }
        drop(src);
        let Decision::Forward { seq, ts } = decision else {
            continue;
        };
        let mut packet = fwd.packet.clone();
        if video {
            let mut payload = packet.payload.to_vec();
            vp8.munge(&mut payload, rewriter.switched());
            packet.payload = payload.into();
        }
        packet.header.ssrc = down.ssrc;
        packet.header.payload_type = payload_type.unwrap_or_default();
        packet.header.sequence_number = seq;
        packet.header.timestamp = ts;
        // The publisher's extension ids mean nothing on this PC (and mid/rid/transport-cc
        // values belong to the publisher's transport): none is forwarded.
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extension_profile = 0;
        let len = packet.payload.len() as u64;
        match down.write(packet).await {
            Ok(()) => {
                packets_out.inc();
                bytes_out.inc_by(len);
                metrics
                    .forward_latency
                    .observe(fwd.arrival.elapsed().as_secs_f64());
            }
            Err(e) => {
                write_errors.inc();
                tracing::debug!(track = %track_sid, error = %e, "downtrack write failed");
                // The subscriber may have missed a keyframe: start over from the next one.
                rewriter.resync();
            }
        }
    }
    tracing::debug!(track = %track_sid, "downtrack ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(rid: Option<&str>, ssrc: u32, seq: u16, payload: &[u8]) -> IncomingPacket {
        let mut packet = RtpPacket::default();
        packet.header.ssrc = ssrc;
        packet.header.sequence_number = seq;
        packet.payload = payload.to_vec().into();
        IncomingPacket {
            rid: rid.map(str::to_owned),
            packet,
        }
    }

    fn source(kind: Kind) -> (Source, mpsc::Receiver<u32>, Metrics) {
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

    #[test]
    fn packets_reach_every_subscriber_with_layer_and_keyframe_marked() {
        let (s, _plis, _) = source(Kind::Video);
        assert_eq!(s.stream_id(), "PA_1|TR_1");
        let mut a = s.attach("PA_a");
        let mut b = s.attach("PA_b");
        s.dispatch(packet(Some("f"), 30, 1, &[0x10, 0x00]));
        s.dispatch(packet(Some("q"), 10, 1, &[0x10, 0x01]));
        for rx in [&mut a, &mut b] {
            let first = rx.try_recv().unwrap();
            assert_eq!((first.layer, first.keyframe_start), (2, true));
            let second = rx.try_recv().unwrap();
            assert_eq!((second.layer, second.keyframe_start), (0, false));
        }
        // A closed subscriber is forgotten; a detached one gets nothing more.
        drop(a);
        s.detach("PA_b");
        s.dispatch(packet(None, 10, 2, &[]));
        assert_eq!(s.subscriber_count(), 0);
        assert!(b.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_loses_packets_not_the_subscriber() {
        let (s, _plis, metrics) = source(Kind::Audio);
        let _rx = s.attach("PA_slow");
        for seq in 0..(SINK_CAPACITY as u16 + 10) {
            s.dispatch(packet(None, 1, seq, &[1]));
        }
        assert_eq!(s.subscriber_count(), 1);
        assert_eq!(
            metrics
                .forward_drops
                .with_label_values(&["queue_full"])
                .get(),
            10
        );
    }

    #[test]
    fn keyframe_requests_go_to_the_layer_ssrc_and_are_throttled() {
        let (s, mut plis, metrics) = source(Kind::Video);
        // Unknown layer: nothing to ask.
        s.request_keyframe(1);
        assert!(plis.try_recv().is_err());
        s.dispatch(packet(Some("h"), 20, 1, &[0x90]));
        s.request_keyframe(1);
        s.request_keyframe(1);
        assert_eq!(plis.try_recv().unwrap(), 20);
        assert!(
            plis.try_recv().is_err(),
            "second request within the interval"
        );
        assert_eq!(metrics.plis_sent.get(), 1);
    }
}
