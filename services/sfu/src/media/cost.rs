//! The send path's cost guard: what one forwarded packet costs past `Source::forward` (guarded
//! by `router::cost`) — an SFU subscriber PeerConnection's own SRTP path (marshal, protect, the
//! send history and the socket write; see `own_srtp`) — counted in instructions by callgrind, so
//! that noise cannot hide a regression, nor a PeerConnection falling back to `rtc`'s pipeline.
//!
//! One process, one thread: an SFU subscriber PeerConnection (as [`MediaEngine::new`] builds it)
//! and a client PeerConnection (as [`MediaEngine::for_clients`] builds it) connected over
//! loopback on a current-thread runtime. The replay writes one VP8-sized packet to the SFU's
//! downtrack (sent on the writing thread) and waits for the client to receive it (one wakeup of
//! the client's driver), then the next, as at low load. The count therefore holds the SFU's send path **and**
//! the client's receive path (its chain is fixed, so a change on the SFU side is all that moves
//! it). Two replay lengths, so that set-up and the handshakes cancel out. The link and the replay
//! are in [`super::link`].

use super::link::{connected_link, replay, Link};

/// The budget, in instructions per packet (SFU send + client receive; debug build of the SFU
/// crate, dependencies at opt-level 1 with debug assertions, as `cargo test` builds them).
/// Measured ≈ 53,200–53,400 (AMD and Intel VMs) with the SFU protecting its media itself and sending it as a burst of one
/// through the thread's outbox (≈ 51,800 before the outbox, whose copy into its buffer this
/// unoptimised build counts in full; ≈ 60,700 through `rtc`'s write pipeline, ≈ 120,000 on
/// `webrtc` 0.21's driver; see README); set 5 % above that so that only a real change trips it.
const INSTRUCTIONS_PER_PACKET: u64 = 56_000;
const ENV_REPLAY: &str = "PPODOK_SEND_REPLAY";
/// `client` = the SFU side built with the clients' chain (what the SFU had before its chains
/// were trimmed per direction), for comparison.
const ENV_CHAIN: &str = "PPODOK_SEND_CHAIN";

/// The measured part: callgrind collects inside this function only, which runs the replay and
/// every task the runtime (current-thread) polls meanwhile: both drivers included.
#[inline(never)]
fn measured_replay(rt: &tokio::runtime::Runtime, link: &mut Link, n: usize) {
    rt.block_on(replay(link, n));
}

/// Run under callgrind by [`sending_stays_within_its_instruction_budget`]; does nothing on its
/// own.
#[test]
fn send_replay_for_callgrind() {
    let Some(n) = std::env::var(ENV_REPLAY)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    let client_chain = std::env::var(ENV_CHAIN).as_deref() == Ok("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut link = rt.block_on(connected_link(client_chain));
    // The warm-up, outside the measured function: buffers filled, streams seen by SRTP and the
    // interceptors.
    rt.block_on(replay(&mut link, 100));
    measured_replay(&rt, &mut link, n);
    rt.block_on(async {
        link.sfu_pc.close().await;
        link.client_pc.close().await;
    });
}

/// Instructions callgrind counts in [`measured_replay`] for `n` packets.
fn instructions(n: usize, chain: &str) -> u64 {
    crate::callgrind::instructions_in_measured_replay(
        "media::cost::send_replay_for_callgrind",
        &[(ENV_REPLAY, n.to_string()), (ENV_CHAIN, chain.to_owned())],
    )
}

fn per_packet(chain: &str) -> u64 {
    let (small, large) = (100, 500);
    let (a, b) = (instructions(small, chain), instructions(large, chain));
    assert!(a > 0 && b > a, "callgrind measured nothing: {a}, {b}");
    (b - a) / (large - small) as u64
}

#[test]
fn sending_stays_within_its_instruction_budget() {
    let per = per_packet("sfu");
    println!("sending: {per} instructions per packet (SFU send + client receive)");
    if std::env::var(ENV_CHAIN).as_deref() == Ok("client") {
        let before = per_packet("client");
        println!("with the clients' chain on the SFU side: {before}");
    }
    assert!(
        per <= INSTRUCTIONS_PER_PACKET,
        "sending costs {per} instructions per packet, over the budget of \
         {INSTRUCTIONS_PER_PACKET}"
    );
}
