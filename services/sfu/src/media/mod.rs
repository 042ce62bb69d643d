//! The media plane behind a small boundary: PeerConnections on `rtc` 0.21 (pinned; the sans-I/O
//! core of webrtc-rs) driven by our own event loop ([`driver`]), described in this module's own
//! types so that the rest of the SFU never names an `rtc` PeerConnection type.
//!
//! A [`MediaEngine`] makes [`Peer`]s. A peer reports what happens on it as [`MediaEvent`]s on
//! the queue it was made with; its handler holds only that queue, never the session, so nothing
//! keeps a closed session alive.

mod codecs;
#[cfg(test)]
mod cost;
mod driver;
mod interceptors;
#[cfg(test)]
mod link;
mod nat;
mod outbox;
mod own_srtp;
mod peer;
#[cfg(test)]
mod tests;
mod threads;
mod track;

pub use codecs::AUDIO_LEVEL_URI;
pub use interceptors::WireCounters;
pub use nat::{nat_1to1_candidates, NatMapping};
pub(crate) use peer::Alive;
pub use peer::{IncomingData, MediaEngine, MediaSettings, Peer, MAX_DATA_MESSAGE};
pub use track::{
    rid_label, DownTrack, IncomingPacket, IncomingTrack, KeyframeRequester, Negotiated,
    PacketHandler, WriteError,
};

/// An RTP packet as the media plane hands it around.
pub type RtpPacket = rtc::rtp::Packet;

/// Asks the CPU to bring `address`'s cache line in (a hint: it never faults and changes
/// nothing; 0 is skipped).
#[inline(always)]
pub(crate) fn prefetch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    if address != 0 {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of x86_64's baseline, and a prefetch reads nothing (an address
        // that is not mapped is ignored).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Sets a socket option whose value is the plain struct or integer `value` (the options `socket2`
/// has no setter for).
///
/// # Safety
/// `T` must be the layout the option `level`/`name` takes, and any pointer inside `value` must be
/// valid for the call.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn set_socket_option<T>(
    socket: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: `value` is borrowed for the call and the length passed is its type's size; the
    // rest is the caller's promise.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

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
    #[error("rtc: {0}")]
    Rtc(String),
    #[error("no UDP port free in the configured range")]
    NoPort,
    #[error("the PeerConnection is closed")]
    Closed,
}

fn rtc_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Rtc(e.to_string())
}

fn bad_sdp(e: impl std::fmt::Display) -> MediaError {
    MediaError::BadSdp(e.to_string())
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
