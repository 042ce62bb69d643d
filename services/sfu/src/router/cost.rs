//! The forwarding path's cost guard, deterministic so that noise cannot hide a regression:
//! forwarding a packet to a subscriber must not allocate (a counting allocator), and its
//! instruction count (callgrind, on a fixed replay through [`Source::forward`]) must stay within
//! [`INSTRUCTIONS_PER_PACKET_PER_SUBSCRIBER`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use rtc::shared::marshal::{Marshal, Unmarshal};

/// The budget, in instructions per packet per subscriber (debug build of the SFU crate, its
/// dependencies at opt-level 1, as `cargo test` builds them). Measured 3,135–3,137 with the two
/// prefetch stages (see README; the count moves a little with the CPU valgrind emulates); set a
/// little above so that only a real change trips it. Lower it when the path gets cheaper.
const INSTRUCTIONS_PER_PACKET_PER_SUBSCRIBER: u64 = 3_300;
const SUBSCRIBERS: usize = 16;
const ENV_REPLAY: &str = "PPODOK_FORWARD_REPLAY";

/// Counts the allocations made by the current thread (others' go uncounted: tests run in
/// parallel).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A subscriber's PeerConnection reduced to a counter: takes the packet and drops it.
struct Sink(Arc<AtomicU64>);

impl Egress for Sink {
    fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError> {
        std::hint::black_box(&packet);
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A published VP8 track with [`SUBSCRIBERS`] negotiated subscribers, and a sent-packet count.
fn room() -> (Source, Arc<AtomicU64>) {
    let (keyframes, _plis) = KeyframeRequester::channel();
    let source = Source::new(
        "TR_v".into(),
        "PA_p".into(),
        Kind::Video,
        Vec::new(),
        keyframes,
        Metrics::new(),
    );
    let sent = Arc::new(AtomicU64::new(0));
    for i in 0..SUBSCRIBERS {
        let sub = Arc::new(Subscription::new(
            &format!("PA_{i}"),
            1000 + i as u32,
            Kind::Video,
            Box::new(Sink(sent.clone())),
        ));
        sub.set_payload_type(96);
        sub.apply(DownSettings {
            negotiated: true,
            ..Default::default()
        });
        source.attach(sub);
    }
    (source, sent)
}

/// `n` packets of a 30 fps VP8 stream, two ≈1 KB packets a frame with a 15-bit PictureID and
/// TL0PICIDX, a keyframe every 60 frames (the first packet is one).
fn stream(n: usize) -> Vec<IncomingPacket> {
    (0..n)
        .map(|i| {
            let frame = (i / 2) as u16;
            let first = i % 2 == 0;
            let key = first && frame.is_multiple_of(60);
            let mut payload = vec![0u8; 1000];
            payload[..6].copy_from_slice(&[
                if first { 0x90 } else { 0x80 },
                0xC0,
                0x80 | (frame >> 8) as u8 & 0x7f,
                frame as u8,
                frame as u8,
                if key { 0x10 } else { 0x11 },
            ]);
            let mut packet = RtpPacket::default();
            packet.header.version = 2;
            packet.header.ssrc = 77;
            packet.header.payload_type = 96;
            packet.header.sequence_number = i as u16;
            packet.header.timestamp = u32::from(frame) * 3000;
            packet.header.marker = !first;
            packet.payload = payload.into();
            // As `webrtc` hands it over: unmarshalled from the decrypted datagram, the payload
            // a view of that buffer.
            let raw = packet.marshal().expect("marshal");
            let packet = RtpPacket::unmarshal(&mut BytesMut::from(&raw[..])).expect("unmarshal");
            IncomingPacket {
                layer: 0,
                rid: "",
                packet,
            }
        })
        .collect()
}

/// The measured part: forwards every packet. callgrind collects inside this function only.
#[inline(never)]
fn measured_replay(source: &Source, packets: &[IncomingPacket]) {
    for p in packets {
        source.forward(std::hint::black_box(p));
    }
}

const WARMUP: usize = 120;

#[test]
fn forwarding_a_packet_to_a_subscriber_does_not_allocate() {
    let (source, sent) = room();
    let packets = stream(WARMUP + 1000);
    let (warmup, steady) = packets.split_at(WARMUP);
    measured_replay(&source, warmup);
    let before = allocations();
    measured_replay(&source, steady);
    let made = allocations() - before;
    assert_eq!(
        sent.load(Ordering::Relaxed),
        (packets.len() * SUBSCRIBERS) as u64,
        "every packet reached every subscriber"
    );
    assert_eq!(
        made,
        0,
        "{made} allocations for {} packets × {SUBSCRIBERS} subscribers",
        steady.len()
    );
}

/// Run under callgrind by [`forwarding_stays_within_its_instruction_budget`]; does nothing
/// on its own.
#[test]
fn replay_for_callgrind() {
    let Some(n) = std::env::var(ENV_REPLAY)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    let (source, sent) = room();
    let packets = stream(WARMUP + n);
    let (warmup, steady) = packets.split_at(WARMUP);
    // The warm-up runs outside the measured function.
    for p in warmup {
        source.forward(p);
    }
    measured_replay(&source, steady);
    assert_eq!(
        sent.load(Ordering::Relaxed),
        ((WARMUP + n) * SUBSCRIBERS) as u64
    );
}

/// Instructions callgrind counts in [`measured_replay`] for `n` packets.
fn instructions(n: usize) -> u64 {
    crate::callgrind::instructions_in_measured_replay(
        "router::cost::replay_for_callgrind",
        &[(ENV_REPLAY, n.to_string())],
    )
}

#[test]
fn forwarding_stays_within_its_instruction_budget() {
    // Two replays, so that whatever is paid once (first calls, lazy statics) cancels out.
    let (small, large) = (200, 1200);
    let (a, b) = (instructions(small), instructions(large));
    assert!(a > 0 && b > a, "callgrind measured nothing: {a}, {b}");
    let per = (b - a) / ((large - small) * SUBSCRIBERS) as u64;
    println!("forwarding: {per} instructions per packet per subscriber");
    assert!(
        per <= INSTRUCTIONS_PER_PACKET_PER_SUBSCRIBER,
        "forwarding costs {per} instructions per packet per subscriber, over the budget of \
         {INSTRUCTIONS_PER_PACKET_PER_SUBSCRIBER}"
    );
}
