//! Connection quality per participant, LiveKit's `ConnectionQualityUpdate`, from what its two
//! PeerConnections see on the wire: loss (packets the subscriber asked for again, the loss its
//! receiver reports name, gaps in what the publisher sends), jitter and round-trip time (from
//! its receiver reports).
//!
//! The media plane counts into a [`LinkStats`] per PeerConnection (relaxed atomics); every
//! [`INTERVAL`] the session takes a [`LinkWindow`] from each and [`judge`]s it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use livekit_protocol as lk;

/// How often each participant's quality is judged and sent.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Fewer packets than this in a window say too little to judge (taken as excellent).
const MIN_PACKETS: u64 = 20;

/// One PeerConnection's counters since the last [`LinkStats::take`].
#[derive(Debug, Default)]
pub struct LinkStats {
    /// RTP packets sent for the first time.
    sent: AtomicU64,
    /// Sequence numbers the remote asked for again (NACK).
    nacked: AtomicU64,
    /// RTP packets received.
    received: AtomicU64,
    /// Sequence numbers skipped in what was received.
    gaps: AtomicU64,
    /// The worst `fraction_lost` (of 256) a receiver report named.
    report_loss: AtomicU32,
    /// The worst jitter a receiver report named, in ms (taking the 90 kHz video clock).
    jitter_ms: AtomicU32,
    /// The worst round-trip time computed from a receiver report, in ms.
    rtt_ms: AtomicU32,
}

/// What one PeerConnection saw in one window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkWindow {
    pub sent: u64,
    pub nacked: u64,
    pub received: u64,
    pub gaps: u64,
    pub report_loss: u32,
    pub jitter_ms: u32,
    pub rtt_ms: u32,
}

impl LinkStats {
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
    pub fn nacked(&self, packets: u64) {
        self.nacked.fetch_add(packets, Ordering::Relaxed);
    }
    pub fn received(&self, gap: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if gap > 0 {
            self.gaps.fetch_add(gap, Ordering::Relaxed);
        }
    }
    /// One reception report about what this side sent.
    pub fn report(&self, fraction_lost: u8, jitter_ms: u32, rtt_ms: Option<u32>) {
        self.report_loss
            .fetch_max(u32::from(fraction_lost), Ordering::Relaxed);
        self.jitter_ms.fetch_max(jitter_ms, Ordering::Relaxed);
        if let Some(rtt) = rtt_ms {
            self.rtt_ms.fetch_max(rtt, Ordering::Relaxed);
        }
    }

    pub fn take(&self) -> LinkWindow {
        LinkWindow {
            sent: self.sent.swap(0, Ordering::Relaxed),
            nacked: self.nacked.swap(0, Ordering::Relaxed),
            received: self.received.swap(0, Ordering::Relaxed),
            gaps: self.gaps.swap(0, Ordering::Relaxed),
            report_loss: self.report_loss.swap(0, Ordering::Relaxed),
            jitter_ms: self.jitter_ms.swap(0, Ordering::Relaxed),
            rtt_ms: self.rtt_ms.swap(0, Ordering::Relaxed),
        }
    }
}

/// The NTP time (RFC 5905's 32.32 fixed point: seconds since 1900 and a binary fraction) of
/// `at`, a moment of the monotonic clock no later than now.
pub fn ntp_at(at: std::time::Instant) -> u64 {
    let wall = std::time::SystemTime::now()
        .checked_sub(std::time::Instant::now().saturating_duration_since(at))
        .unwrap_or(std::time::UNIX_EPOCH);
    let since_unix = wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of the NTP time now (the unit of RTCP's LSR and DLSR: 1/65536 s).
pub fn ntp_middle_now() -> u32 {
    (ntp_at(std::time::Instant::now()) >> 16) as u32
}

/// Round-trip time from a reception report's LSR and DLSR (RFC 3550 §6.4.1), in ms.
pub fn rtt_ms(now_middle: u32, lsr: u32, dlsr: u32) -> Option<u32> {
    if lsr == 0 {
        return None;
    }
    let rtt = now_middle.wrapping_sub(lsr).wrapping_sub(dlsr);
    // More than a minute: a clock or report mix-up, not a round trip.
    (rtt < 60 << 16).then(|| ((u64::from(rtt) * 1000) >> 16) as u32)
}

/// Loss in percent over both directions of a participant's links.
fn loss_pct(w: &LinkWindow) -> Option<f32> {
    let mut worst: Option<f32> = None;
    let mut take = |v: f32| worst = Some(worst.map_or(v, |w: f32| w.max(v)));
    if w.sent >= MIN_PACKETS {
        take(100.0 * w.nacked.min(w.sent) as f32 / w.sent as f32);
        take(100.0 * w.report_loss as f32 / 256.0);
    }
    if w.received + w.gaps >= MIN_PACKETS {
        take(100.0 * w.gaps as f32 / (w.received + w.gaps) as f32);
    }
    worst
}

/// The quality of one window (the subscriber and publisher PCs' windows summed into one).
pub fn judge(w: &LinkWindow) -> lk::ConnectionQuality {
    let loss = loss_pct(w).unwrap_or(0.0);
    if loss >= 2.5 || w.rtt_ms >= 400 || w.jitter_ms >= 150 {
        lk::ConnectionQuality::Poor
    } else if loss >= 1.0 || w.rtt_ms >= 200 || w.jitter_ms >= 50 {
        lk::ConnectionQuality::Good
    } else {
        lk::ConnectionQuality::Excellent
    }
}

/// LiveKit's score for a level (its MOS-like 1..5).
pub fn score(q: lk::ConnectionQuality) -> f32 {
    match q {
        lk::ConnectionQuality::Excellent => 4.5,
        lk::ConnectionQuality::Good => 3.5,
        lk::ConnectionQuality::Poor => 2.0,
        lk::ConnectionQuality::Lost => 1.0,
    }
}

impl LinkWindow {
    /// Both PeerConnections of a participant as one.
    pub fn merge(self, o: LinkWindow) -> LinkWindow {
        LinkWindow {
            sent: self.sent + o.sent,
            nacked: self.nacked + o.nacked,
            received: self.received + o.received,
            gaps: self.gaps + o.gaps,
            report_loss: self.report_loss.max(o.report_loss),
            jitter_ms: self.jitter_ms.max(o.jitter_ms),
            rtt_ms: self.rtt_ms.max(o.rtt_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_links_are_excellent_and_loss_delay_or_jitter_lower_the_level() {
        let clean = LinkWindow {
            sent: 1000,
            received: 500,
            rtt_ms: 5,
            ..Default::default()
        };
        assert_eq!(judge(&clean), lk::ConnectionQuality::Excellent);
        assert_eq!(
            judge(&LinkWindow::default()),
            lk::ConnectionQuality::Excellent
        );
        // One packet in 25 asked for again: 4 %.
        let lossy = LinkWindow {
            nacked: 40,
            ..clean
        };
        assert_eq!(judge(&lossy), lk::ConnectionQuality::Poor);
        let some = LinkWindow {
            nacked: 15,
            ..clean
        };
        assert_eq!(judge(&some), lk::ConnectionQuality::Good);
        let gaps = LinkWindow { gaps: 50, ..clean };
        assert_eq!(judge(&gaps), lk::ConnectionQuality::Poor);
        assert_eq!(
            judge(&LinkWindow {
                rtt_ms: 450,
                ..clean
            }),
            lk::ConnectionQuality::Poor
        );
        assert_eq!(
            judge(&LinkWindow {
                jitter_ms: 60,
                ..clean
            }),
            lk::ConnectionQuality::Good
        );
        // Too few packets to judge loss by.
        assert_eq!(
            judge(&LinkWindow {
                sent: 5,
                nacked: 5,
                ..Default::default()
            }),
            lk::ConnectionQuality::Excellent
        );
    }

    #[test]
    fn counters_reset_per_window_and_reports_keep_the_worst() {
        let s = LinkStats::default();
        s.sent();
        s.nacked(2);
        s.received(3);
        s.report(10, 4, Some(30));
        s.report(5, 9, None);
        let w = s.take();
        assert_eq!(
            w,
            LinkWindow {
                sent: 1,
                nacked: 2,
                received: 1,
                gaps: 3,
                report_loss: 10,
                jitter_ms: 9,
                rtt_ms: 30
            }
        );
        assert_eq!(s.take(), LinkWindow::default());
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        // Sent at 100 s, held 0.5 s by the receiver, back at 100.75 s: 250 ms.
        let now = (100 << 16) + (3 << 14);
        assert_eq!(rtt_ms(now, 100 << 16, 1 << 15), Some(250));
        assert_eq!(rtt_ms(now, 0, 0), None);
        assert_eq!(rtt_ms(1, 100 << 16, 0), None);
    }
}
