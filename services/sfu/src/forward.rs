//! The per-downtrack forwarding logic as plain data: which packets of a published track go to
//! one subscriber, and with which sequence number and timestamp.
//!
//! A publisher's video may come in up to three simulcast layers (`q`, `h`, `f`), each its own
//! RTP stream with its own sequence numbers and timestamps. A subscriber sees one stream: the
//! [`Rewriter`] picks a layer, switches only at a keyframe of the new layer, and offsets sequence
//! numbers and timestamps so the output stays continuous across switches. No I/O and no clock of
//! its own: arrival times come in with the packets.

/// Simulcast layer index: 0 = `q` (or a non-simulcast track), 1 = `h`, 2 = `f`.
pub type Layer = u8;

pub const MAX_LAYER: Layer = 2;

/// A layer not heard from for this long is treated as gone.
const LAYER_TIMEOUT_MS: u64 = 1_000;

/// The simulcast layer of a rid (`None` for a track without simulcast).
pub fn layer_of_rid(rid: Option<&str>) -> Layer {
    match rid {
        Some("f") => 2,
        Some("h") => 1,
        _ => 0,
    }
}

/// A simulcast layer as published: its index (= LiveKit's `VideoQuality`: LOW 0, MEDIUM 1,
/// HIGH 2, which livekit-client sends as rids `q`, `h`, `f`) and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSize {
    pub layer: Layer,
    pub width: u32,
    pub height: u32,
}

/// The highest layer to forward for a subscriber's `UpdateTrackSettings`: with a size, the
/// smallest published layer that covers it (the top one if none does); without, the `quality`
/// asked for (out-of-range values clamp).
pub fn max_layer_for(layers: &[LayerSize], width: u32, height: u32, quality: i32) -> Layer {
    if width == 0 && height == 0 {
        return quality.clamp(0, i32::from(MAX_LAYER)) as Layer;
    }
    let mut sorted: Vec<LayerSize> = layers.to_vec();
    sorted.sort_by_key(|l| l.layer);
    sorted
        .iter()
        .find(|l| l.width >= width && l.height >= height)
        .or(sorted.last())
        .map_or(MAX_LAYER, |l| l.layer.min(MAX_LAYER))
}

/// What the rewriter needs to know about one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPacket {
    pub layer: Layer,
    pub seq: u16,
    pub ts: u32,
    /// The first packet of a keyframe (always true for audio).
    pub keyframe_start: bool,
    pub arrival_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward { seq: u16, ts: u32 },
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    arrival_ms: u64,
}

/// Sequence-number order with wrap-around: is `a` after `b`?
fn seq_after(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) > 0
}

#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    /// Video waits for a keyframe before starting or switching; audio does not.
    video: bool,
    max_layer: Layer,
    current: Option<Layer>,
    seq_offset: u16,
    ts_offset: u32,
    /// The first input sequence number forwarded from the current layer.
    switch_seq: u16,
    last: Option<Last>,
    seen: [Option<u64>; 3],
    /// The last forwarded packet started a new layer (or the stream).
    switched: bool,
}

impl Rewriter {
    pub fn new(video: bool, clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            video,
            max_layer: MAX_LAYER,
            current: None,
            seq_offset: 0,
            ts_offset: 0,
            switch_seq: 0,
            last: None,
            seen: [None; 3],
            switched: false,
        }
    }

    /// Caps the layer forwarded (from the subscriber's `UpdateTrackSettings`).
    pub fn set_max_layer(&mut self, layer: Layer) {
        self.max_layer = layer.min(MAX_LAYER);
    }

    /// Forgets the current layer (e.g. a keyframe may not have reached the subscriber): nothing
    /// is forwarded until the next keyframe, and numbering then continues where it stopped.
    pub fn resync(&mut self) {
        self.current = None;
    }

    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    fn alive(&self, layer: Layer, now_ms: u64) -> bool {
        self.seen[layer as usize].is_some_and(|t| now_ms.saturating_sub(t) <= LAYER_TIMEOUT_MS)
    }

    /// The layer we want: the highest live one within the cap, else the lowest live one above it.
    pub fn target(&self, now_ms: u64) -> Option<Layer> {
        // Plain loops: this runs twice per packet and subscriber.
        let mut l = self.max_layer;
        loop {
            if self.alive(l, now_ms) {
                return Some(l);
            }
            if l == 0 {
                break;
            }
            l -= 1;
        }
        let mut l = self.max_layer + 1;
        while l <= MAX_LAYER {
            if self.alive(l, now_ms) {
                return Some(l);
            }
            l += 1;
        }
        None
    }

    /// The layer a keyframe is needed on, if the rewriter is waiting for one.
    pub fn wants_keyframe(&self, now_ms: u64) -> Option<Layer> {
        if !self.video {
            return None;
        }
        match self.target(now_ms) {
            Some(t) if Some(t) != self.current => Some(t),
            _ => None,
        }
    }

    pub fn push(&mut self, p: InPacket) -> Decision {
        let layer = p.layer.min(MAX_LAYER);
        self.seen[layer as usize] = Some(p.arrival_ms);
        let target = self.target(p.arrival_ms);
        self.switched = false;
        if Some(layer) != self.current {
            // Switch (or start) only onto the wanted layer, and for video only at a keyframe.
            let can_switch = Some(layer) == target && (!self.video || p.keyframe_start);
            if !can_switch {
                return Decision::Drop;
            }
            self.switch_to(layer, &p);
        } else if seq_after(self.switch_seq, p.seq) {
            // Older than the switch point: belongs to a stretch we never forwarded.
            return Decision::Drop;
        }
        let seq = p.seq.wrapping_add(self.seq_offset);
        let ts = p.ts.wrapping_add(self.ts_offset);
        match self.last {
            Some(last) if !seq_after(seq, last.seq) => {}
            _ => {
                self.last = Some(Last {
                    seq,
                    ts,
                    arrival_ms: p.arrival_ms,
                })
            }
        }
        Decision::Forward { seq, ts }
    }

    fn switch_to(&mut self, layer: Layer, p: &InPacket) {
        if let Some(last) = self.last {
            let out_seq = last.seq.wrapping_add(1);
            // Advance the timestamp by the wall-clock time since the last forwarded packet (at
            // least one tick), so the receiver's jitter buffer sees time move on.
            let elapsed = p.arrival_ms.saturating_sub(last.arrival_ms);
            let ticks = (elapsed.saturating_mul(u64::from(self.clock_rate)) / 1000).max(1);
            let out_ts = last.ts.wrapping_add(ticks as u32);
            self.seq_offset = out_seq.wrapping_sub(p.seq);
            self.ts_offset = out_ts.wrapping_sub(p.ts);
        }
        self.current = Some(layer);
        self.switch_seq = p.seq;
        self.switched = true;
    }

    /// Whether the packet just forwarded is the first of a newly taken layer.
    pub fn switched(&self) -> bool {
        self.switched
    }
}

/// Where the numbered fields of a VP8 payload descriptor (RFC 7741) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vp8Fields {
    /// Offset and width (7 or 15 bits) of the PictureID.
    picture_id: Option<(usize, bool)>,
    tl0: Option<usize>,
}

fn vp8_fields(payload: &[u8]) -> Option<Vp8Fields> {
    let first = *payload.first()?;
    let mut fields = Vp8Fields {
        picture_id: None,
        tl0: None,
    };
    if first & 0x80 == 0 {
        return Some(fields);
    }
    let x = *payload.get(1)?;
    let mut i = 2;
    if x & 0x80 != 0 {
        let long = payload.get(i)? & 0x80 != 0;
        if long {
            payload.get(i + 1)?;
        }
        fields.picture_id = Some((i, long));
        i += if long { 2 } else { 1 };
    }
    if x & 0x40 != 0 {
        payload.get(i)?;
        fields.tl0 = Some(i);
    }
    Some(fields)
}

/// Keeps VP8 PictureID and TL0PICIDX continuous across layer switches. Each simulcast layer
/// numbers its pictures on its own; a receiver that saw the numbers jump back would take the
/// new layer's frames for old ones and drop them.
#[derive(Debug, Clone, Default)]
pub struct Vp8Munger {
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<(u16, bool)>,
    last_tl0: Option<u8>,
}

/// The numbered fields of one VP8 descriptor, as they go out: (offset, 15-bit, value) of the
/// PictureID and (offset, value) of the TL0PICIDX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Vp8Edit {
    picture_id: Option<(usize, bool, u16)>,
    tl0: Option<(usize, u8)>,
}

impl Vp8Edit {
    /// Whether writing the edit would change `payload`.
    fn changes(&self, payload: &[u8]) -> bool {
        let pid = self.picture_id.is_some_and(|(at, long, out)| {
            if long {
                payload[at] != 0x80 | (out >> 8) as u8 || payload[at + 1] != out as u8
            } else {
                payload[at] != out as u8
            }
        });
        pid || self.tl0.is_some_and(|(at, out)| payload[at] != out)
    }

    fn apply(&self, payload: &mut [u8]) {
        if let Some((at, long, out)) = self.picture_id {
            if long {
                payload[at] = 0x80 | (out >> 8) as u8;
                payload[at + 1] = out as u8;
            } else {
                payload[at] = out as u8;
            }
        }
        if let Some((at, out)) = self.tl0 {
            payload[at] = out;
        }
    }
}

impl Vp8Munger {
    /// Rewrites `payload` in place; `switched` marks the first packet of a newly taken layer.
    pub fn munge(&mut self, payload: &mut [u8], switched: bool) {
        let edit = self.next(payload, switched);
        edit.apply(payload);
    }

    /// The payload to send for a payload shared with other subscribers: the same bytes (no
    /// copy) when the numbers go out unchanged, the usual case without layer switches; else a
    /// rewritten copy made in `scratch`.
    pub fn rewrite(
        &mut self,
        payload: &bytes::Bytes,
        switched: bool,
        scratch: &mut bytes::BytesMut,
    ) -> bytes::Bytes {
        let edit = self.next(payload, switched);
        if !edit.changes(payload) {
            return payload.clone();
        }
        scratch.clear();
        scratch.extend_from_slice(payload);
        edit.apply(scratch);
        scratch.split().freeze()
    }

    /// Advances the state past one packet and says what its fields become.
    fn next(&mut self, payload: &[u8], switched: bool) -> Vp8Edit {
        let mut edit = Vp8Edit::default();
        let Some(fields) = vp8_fields(payload) else {
            return edit;
        };
        if let Some((at, long)) = fields.picture_id {
            let (mask, pid) = if long {
                (
                    0x7fff,
                    (u16::from(payload[at] & 0x7f) << 8) | u16::from(payload[at + 1]),
                )
            } else {
                (0x7f, u16::from(payload[at] & 0x7f))
            };
            if switched {
                self.pid_offset = match self.last_pid {
                    Some((last, _)) => last.wrapping_add(1).wrapping_sub(pid) & mask,
                    None => 0,
                };
            }
            let out = pid.wrapping_add(self.pid_offset) & mask;
            edit.picture_id = Some((at, long, out));
            let newer = match self.last_pid {
                Some((last, _)) => {
                    let d = out.wrapping_sub(last) & mask;
                    d != 0 && d < (mask / 2 + 1)
                }
                None => true,
            };
            if newer || switched {
                self.last_pid = Some((out, long));
            }
        }
        if let Some(at) = fields.tl0 {
            let tl0 = payload[at];
            if switched {
                self.tl0_offset = match self.last_tl0 {
                    Some(last) => last.wrapping_add(1).wrapping_sub(tl0),
                    None => 0,
                };
            }
            let out = tl0.wrapping_add(self.tl0_offset);
            edit.tl0 = Some((at, out));
            let newer = self
                .last_tl0
                .is_none_or(|last| (out.wrapping_sub(last) as i8) > 0);
            if newer || switched {
                self.last_tl0 = Some(out);
            }
        }
        edit
    }
}

/// Whether a VP8 RTP payload (RFC 7741) starts a keyframe: the first packet of a partition 0
/// whose VP8 frame header has the P (inter-frame) bit clear. Malformed payloads are `false`.
pub fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(layer: Layer, seq: u16, ts: u32, key: bool, at: u64) -> InPacket {
        InPacket {
            layer,
            seq,
            ts,
            keyframe_start: key,
            arrival_ms: at,
        }
    }

    #[test]
    fn video_waits_for_a_keyframe_then_passes_through() {
        let mut r = Rewriter::new(true, 90_000);
        assert_eq!(r.push(pkt(0, 10, 1000, false, 0)), Decision::Drop);
        assert_eq!(r.wants_keyframe(0), Some(0));
        assert_eq!(
            r.push(pkt(0, 11, 4000, true, 33)),
            Decision::Forward { seq: 11, ts: 4000 }
        );
        assert_eq!(r.wants_keyframe(33), None);
        assert_eq!(
            r.push(pkt(0, 12, 4000, false, 34)),
            Decision::Forward { seq: 12, ts: 4000 }
        );
        // A late packet from before the start is not forwarded.
        assert_eq!(r.push(pkt(0, 10, 1000, false, 35)), Decision::Drop);
    }

    #[test]
    fn a_resync_waits_for_a_keyframe_and_keeps_numbering() {
        let mut r = Rewriter::new(true, 90_000);
        r.push(pkt(0, 10, 0, true, 0));
        r.resync();
        assert_eq!(r.wants_keyframe(1), Some(0));
        assert_eq!(r.push(pkt(0, 11, 3000, false, 33)), Decision::Drop);
        assert_eq!(
            r.push(pkt(0, 12, 6000, true, 66)),
            Decision::Forward {
                seq: 11,
                ts: 66 * 90
            }
        );
    }

    #[test]
    fn audio_starts_at_once() {
        let mut r = Rewriter::new(false, 48_000);
        assert_eq!(
            r.push(pkt(0, 500, 960, false, 0)),
            Decision::Forward { seq: 500, ts: 960 }
        );
        assert_eq!(r.wants_keyframe(0), None);
    }

    #[test]
    fn a_higher_layer_is_taken_at_its_keyframe_with_continuous_numbering() {
        let mut r = Rewriter::new(true, 90_000);
        assert!(matches!(
            r.push(pkt(0, 100, 9000, true, 0)),
            Decision::Forward { .. }
        ));
        assert!(matches!(
            r.push(pkt(0, 101, 12000, false, 33)),
            Decision::Forward { .. }
        ));
        // `f` appears: it becomes the target but is not taken before its keyframe; `q` goes on
        // being forwarded meanwhile, so the picture does not freeze.
        assert_eq!(r.push(pkt(2, 7000, 500_000, false, 40)), Decision::Drop);
        assert_eq!(r.wants_keyframe(40), Some(2));
        assert_eq!(
            r.push(pkt(0, 102, 15000, false, 66)),
            Decision::Forward {
                seq: 102,
                ts: 15000
            }
        );
        // The keyframe on `f`: output seq follows on from 102, ts advances by the 34 ms gap.
        let d = r.push(pkt(2, 7001, 503_000, true, 100));
        assert_eq!(
            d,
            Decision::Forward {
                seq: 103,
                ts: 15000 + 34 * 90
            }
        );
        assert_eq!(r.current(), Some(2));
        assert_eq!(
            r.push(pkt(2, 7002, 506_000, false, 133)),
            Decision::Forward {
                seq: 104,
                ts: 15000 + 34 * 90 + 3000
            }
        );
        assert_eq!(r.push(pkt(0, 103, 18000, true, 134)), Decision::Drop);
        assert_eq!(r.wants_keyframe(134), None);
    }

    #[test]
    fn numbering_wraps_around() {
        let mut r = Rewriter::new(true, 90_000);
        assert!(matches!(
            r.push(pkt(0, 65_534, u32::MAX - 100, true, 0)),
            Decision::Forward { .. }
        ));
        assert_eq!(
            r.push(pkt(0, 65_535, u32::MAX, false, 1)),
            Decision::Forward {
                seq: 65_535,
                ts: u32::MAX
            }
        );
        assert_eq!(
            r.push(pkt(0, 0, 2999, false, 2)),
            Decision::Forward { seq: 0, ts: 2999 }
        );
        // Switching after the wrap still continues at last + 1.
        r.push(pkt(1, 40, 77, false, 3));
        assert_eq!(
            r.push(pkt(1, 41, 80, true, 4)),
            Decision::Forward { seq: 1, ts: 3179 }
        );
    }

    #[test]
    fn the_cap_holds_and_a_vanished_layer_is_left() {
        let mut r = Rewriter::new(true, 90_000);
        r.set_max_layer(1);
        assert_eq!(r.push(pkt(1, 1, 0, false, 0)), Decision::Drop);
        assert_eq!(r.push(pkt(2, 1, 0, true, 0)), Decision::Drop);
        assert_eq!(r.target(0), Some(1));
        assert!(matches!(
            r.push(pkt(1, 2, 0, true, 2)),
            Decision::Forward { seq: 2, .. }
        ));
        // `h` goes quiet for over a second while `q` keeps coming: fall back to `q`.
        r.push(pkt(0, 50, 0, false, 1500));
        assert_eq!(r.wants_keyframe(1500), Some(0));
        assert!(matches!(
            r.push(pkt(0, 51, 0, true, 1510)),
            Decision::Forward { seq: 3, .. }
        ));
        // Only a layer above the cap is left: it is used rather than nothing.
        let mut r = Rewriter::new(true, 90_000);
        r.set_max_layer(0);
        r.push(pkt(2, 1, 0, false, 0));
        assert_eq!(r.target(0), Some(2));
    }

    #[test]
    fn the_layer_cap_follows_the_requested_size_or_quality() {
        let layers = [
            LayerSize {
                layer: 2,
                width: 1280,
                height: 720,
            },
            LayerSize {
                layer: 0,
                width: 320,
                height: 180,
            },
            LayerSize {
                layer: 1,
                width: 640,
                height: 360,
            },
        ];
        assert_eq!(max_layer_for(&layers, 0, 0, 0), 0);
        assert_eq!(max_layer_for(&layers, 0, 0, 2), 2);
        assert_eq!(max_layer_for(&layers, 0, 0, 99), 2);
        assert_eq!(max_layer_for(&layers, 0, 0, -3), 0);
        assert_eq!(max_layer_for(&layers, 300, 170, 0), 0);
        assert_eq!(max_layer_for(&layers, 321, 100, 0), 1);
        assert_eq!(max_layer_for(&layers, 640, 360, 0), 1);
        assert_eq!(max_layer_for(&layers, 1920, 1080, 0), 2);
        assert_eq!(max_layer_for(&[], 640, 360, 0), MAX_LAYER);
    }

    fn pid_of(p: &[u8]) -> (u16, u8) {
        ((u16::from(p[2] & 0x7f) << 8) | u16::from(p[3]), p[4])
    }

    #[test]
    fn vp8_picture_ids_continue_across_a_switch() {
        let mut m = Vp8Munger::default();
        // Layer q: picture 20000, TL0 200.
        let mut a = [
            0x90,
            0xC0,
            0x80 | (20000u16 >> 8) as u8,
            20000u16 as u8,
            200,
            0x10,
        ];
        m.munge(&mut a, true);
        assert_eq!(pid_of(&a), (20000, 200));
        let mut b = [
            0x90,
            0xC0,
            0x80 | (20001u16 >> 8) as u8,
            20001u16 as u8,
            201,
            0x11,
        ];
        m.munge(&mut b, false);
        assert_eq!(pid_of(&b), (20001, 201));
        // Switch to layer f, numbered 5 / 17 on its own: continues at 20002 / 202.
        let mut c = [0x90, 0xC0, 0x80, 5, 17, 0x10];
        m.munge(&mut c, true);
        assert_eq!(pid_of(&c), (20002, 202));
        assert_eq!(c[0], 0x90);
        assert_eq!(c[5], 0x10, "the VP8 frame header is untouched");
        let mut d = [0x90, 0xC0, 0x80, 6, 17, 0x11];
        m.munge(&mut d, false);
        assert_eq!(pid_of(&d), (20003, 202));
        // 15-bit wrap-around.
        let mut m = Vp8Munger::default();
        let mut e = [0x90, 0x80, 0xFF, 0xFF, 0x10];
        m.munge(&mut e, true);
        let mut f = [0x90, 0x80, 0x80, 0x09, 0x10];
        m.munge(&mut f, true);
        assert_eq!(((u16::from(f[2] & 0x7f) << 8) | u16::from(f[3])), 0);
        // Short or descriptor-less payloads are left alone.
        let mut g = [0x90, 0x80];
        m.munge(&mut g, true);
        assert_eq!(g, [0x90, 0x80]);
        let mut h = [0x10, 0x00];
        m.munge(&mut h, true);
        assert_eq!(h, [0x10, 0x00]);
    }

    #[test]
    fn a_shared_payload_is_copied_only_when_its_numbers_change() {
        let mut m = Vp8Munger::default();
        let mut scratch = bytes::BytesMut::new();
        let a = bytes::Bytes::from_static(&[0x90, 0xC0, 0x80, 9, 17, 0x10]);
        let out = m.rewrite(&a, true, &mut scratch);
        assert_eq!(
            out.as_ptr(),
            a.as_ptr(),
            "unchanged numbers: the same bytes"
        );
        let b = bytes::Bytes::from_static(&[0x90, 0xC0, 0x80, 10, 18, 0x11]);
        assert_eq!(m.rewrite(&b, false, &mut scratch).as_ptr(), b.as_ptr());
        // Another layer, numbered on its own: a rewritten copy; the shared bytes stay as they were.
        let c = bytes::Bytes::from_static(&[0x90, 0xC0, 0x80, 3, 4, 0x10]);
        let out = m.rewrite(&c, true, &mut scratch);
        assert_ne!(out.as_ptr(), c.as_ptr());
        assert_eq!(pid_of(&out), (11, 19));
        assert_eq!(c[3], 3);
    }

    #[test]
    fn vp8_keyframes_are_recognised() {
        // X=1, S=1, PID=0; I=1 with a 15-bit picture id; then a frame header with P=0.
        assert!(vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        // Same, inter frame (P=1).
        assert!(!vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x11]));
        // Not the start of a partition.
        assert!(!vp8_keyframe_start(&[0x80, 0x80, 0x81, 0x23, 0x10]));
        // No extension: header right after the first byte.
        assert!(vp8_keyframe_start(&[0x10, 0x00]));
        // I, L, T all set, 7-bit picture id.
        assert!(vp8_keyframe_start(&[0x90, 0xE0, 0x05, 0x01, 0x02, 0x9c]));
        // Truncated or empty payloads.
        assert!(!vp8_keyframe_start(&[0x90, 0x80, 0x81]));
        assert!(!vp8_keyframe_start(&[]));
    }
}
