//! Active speakers from the audio-level header extension (RFC 6464,
//! `urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
//!
//! Ingest records each audio packet's level into its track's [`AudioLevel`] (three relaxed
//! atomics, no allocation); every [`TICK`] the hub takes each track's window and a room's
//! [`Speakers`] smooths them and says whether the set of speakers changed, which is when
//! LiveKit's `SpeakersChanged` goes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use livekit_protocol as lk;

use crate::media::RtpPacket;

/// How often speakers are looked at (LiveKit's default is 500 ms).
pub const TICK: Duration = Duration::from_millis(300);
/// A packet at or above this loudness (below this many -dBov) counts as voice (LiveKit's
/// `active_level`).
const ACTIVE_LEVEL: u8 = 35;
/// The share of a window's packets that must be voice for the window to count (LiveKit's
/// `min_percentile`).
const MIN_PERCENT: u32 = 40;
/// Weight of the newest window in the smoothed level.
const SMOOTHING: f32 = 0.6;
/// A smoothed level at or above this is speaking (the linear level of [`ACTIVE_LEVEL`]).
const SPEAKING: f32 = 0.0178;

/// One published audio track's levels since the last [`AudioLevel::take`].
#[derive(Debug, Default)]
pub struct AudioLevel {
    packets: AtomicU32,
    active: AtomicU32,
    /// Sum over the voice packets of (127 - level).
    loudness: AtomicU64,
}

/// What one track heard in one window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub packets: u32,
    pub active: u32,
    pub loudness: u64,
}

impl AudioLevel {
    /// Records one packet's level (-dBov: 0 loudest, 127 silence).
    pub fn record(&self, level: u8) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        let level = level.min(127);
        if level <= ACTIVE_LEVEL {
            self.active.fetch_add(1, Ordering::Relaxed);
            self.loudness
                .fetch_add(u64::from(127 - level), Ordering::Relaxed);
        }
    }

    /// The window so far, and a fresh one begins.
    pub fn take(&self) -> Window {
        Window {
            packets: self.packets.swap(0, Ordering::Relaxed),
            active: self.active.swap(0, Ordering::Relaxed),
            loudness: self.loudness.swap(0, Ordering::Relaxed),
        }
    }
}

/// Reads the level from an audio packet's extension `ext_id` and records it. The one call on
/// the ingest path.
pub fn observe(level: &AudioLevel, packet: &RtpPacket, ext_id: u8) {
    if !packet.header.extension {
        return;
    }
    let found = packet
        .header
        .extensions
        .iter()
        .find(|e| e.id == ext_id)
        .and_then(|e| e.payload.first().copied());
    if let Some(byte) = found {
        // The top bit is the voice-activity flag; the level is the low seven.
        level.record(byte & 0x7f);
    }
}

impl Window {
    /// The window's linear level (0..1), or 0 when too little of it was voice.
    pub fn level(&self) -> f32 {
        if self.packets == 0 || self.active * 100 < self.packets * MIN_PERCENT {
            return 0.0;
        }
        let mean_dbov = 127.0 - self.loudness as f32 / self.active as f32;
        10f32.powf(-mean_dbov / 20.0)
    }

    /// Two tracks of one participant: the louder counts.
    pub fn louder(self, other: Window) -> Window {
        if other.level() > self.level() {
            other
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Speaker {
    level: f32,
    speaking: bool,
}

/// One room's speakers.
#[derive(Debug, Default)]
pub struct Speakers {
    by_sid: HashMap<String, Speaker>,
}

impl Speakers {
    pub fn new() -> Self {
        Self::default()
    }

    /// One window per participant with audio (participants missing have none any more).
    /// `Some` with LiveKit's update (who speaks now, and who stopped) when the set changed.
    pub fn observe(&mut self, windows: &HashMap<String, Window>) -> Option<Vec<lk::SpeakerInfo>> {
        let mut changed = Vec::new();
        self.by_sid.retain(|sid, s| {
            let keep = windows.contains_key(sid);
            if !keep && s.speaking {
                changed.push(lk::SpeakerInfo {
                    sid: sid.clone(),
                    level: 0.0,
                    active: false,
                });
            }
            keep
        });
        for (sid, w) in windows {
            let s = self.by_sid.entry(sid.clone()).or_insert(Speaker {
                level: 0.0,
                speaking: false,
            });
            s.level += (w.level() - s.level) * SMOOTHING;
            let speaking = s.level >= SPEAKING;
            if speaking != s.speaking {
                s.speaking = speaking;
                changed.push(lk::SpeakerInfo {
                    sid: sid.clone(),
                    level: if speaking { s.level } else { 0.0 },
                    active: speaking,
                });
            }
        }
        if changed.is_empty() {
            return None;
        }
        // The current speakers with their levels, loudest first, then those who stopped.
        let mut update = self.current();
        update.extend(changed.into_iter().filter(|c| !c.active));
        Some(update)
    }
}

impl Speakers {
    /// Who speaks now, loudest first (what a participant who just joined is told).
    pub fn current(&self) -> Vec<lk::SpeakerInfo> {
        let mut now: Vec<lk::SpeakerInfo> = self
            .by_sid
            .iter()
            .filter(|(_, s)| s.speaking)
            .map(|(sid, s)| lk::SpeakerInfo {
                sid: sid.clone(),
                level: s.level,
                active: true,
            })
            .collect();
        now.sort_by(|a, b| b.level.total_cmp(&a.level).then(a.sid.cmp(&b.sid)));
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(levels: &[u8]) -> Window {
        let l = AudioLevel::default();
        for &x in levels {
            l.record(x);
        }
        l.take()
    }

    #[test]
    fn a_window_counts_only_when_enough_of_it_is_voice() {
        assert_eq!(window(&[]).level(), 0.0);
        assert_eq!(window(&[127; 10]).level(), 0.0);
        // 3 of 10 loud: under 40 %.
        let mut some = vec![127u8; 7];
        some.extend([10, 10, 10]);
        assert_eq!(window(&some).level(), 0.0);
        let loud = window(&[6; 10]).level();
        assert!((loud - 0.501).abs() < 0.01, "{loud}");
        // Taking resets.
        let l = AudioLevel::default();
        l.record(5);
        assert_eq!(l.take().packets, 1);
        assert_eq!(l.take(), Window::default());
    }

    #[test]
    fn the_set_is_reported_only_when_it_changes() {
        let mut s = Speakers::new();
        let w = |pairs: &[(&str, &[u8])]| {
            pairs
                .iter()
                .map(|(sid, l)| (sid.to_string(), window(l)))
                .collect::<HashMap<_, _>>()
        };
        let update = s
            .observe(&w(&[("PA_a", &[6; 10]), ("PA_b", &[127; 10])]))
            .unwrap();
        assert_eq!(s.current(), update);
        assert_eq!(update.len(), 1);
        assert_eq!((update[0].sid.as_str(), update[0].active), ("PA_a", true));
        // Same speakers: nothing to say.
        assert!(s
            .observe(&w(&[("PA_a", &[6; 10]), ("PA_b", &[127; 10])]))
            .is_none());
        // B starts and A stops: A lingers for a tick (smoothing), then goes.
        let both = s
            .observe(&w(&[("PA_a", &[127; 10]), ("PA_b", &[6; 10])]))
            .unwrap();
        assert!(both.iter().any(|i| i.sid == "PA_b" && i.active));
        let mut later = None;
        for _ in 0..5 {
            if let Some(u) = s.observe(&w(&[("PA_a", &[127; 10]), ("PA_b", &[6; 10])])) {
                later = Some(u);
                break;
            }
        }
        let later = later.expect("A stops speaking");
        assert_eq!(later[0].sid, "PA_b");
        assert!(later.iter().any(|i| i.sid == "PA_a" && !i.active));
        // A speaker who leaves is reported inactive.
        let gone = s.observe(&w(&[])).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].sid.as_str(), gone[0].active), ("PA_b", false));
    }

    #[test]
    fn the_level_comes_from_the_negotiated_extension() {
        let l = AudioLevel::default();
        let mut p = RtpPacket::default();
        observe(&l, &p, 1);
        p.header.extension = true;
        p.header.extensions.push(rtc::rtp::header::Extension {
            id: 1,
            payload: vec![0x80 | 20].into(),
        });
        observe(&l, &p, 3);
        assert_eq!(l.take().packets, 0);
        observe(&l, &p, 1);
        let w = l.take();
        assert_eq!((w.packets, w.active, w.loudness), (1, 1, 107));
    }
}
