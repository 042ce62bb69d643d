//! Dynacast as plain data: the simulcast layers of a published video track that some subscriber
//! actually needs. When that changes, the publisher gets LiveKit's `SubscribedQualityUpdate` and
//! stops (or resumes) encoding the layers above it.

use std::collections::HashMap;

use livekit_protocol as lk;

use crate::forward::{Layer, MAX_LAYER};

/// The tracks' subscribers' wishes, as the hub keeps them.
#[derive(Debug, Default)]
pub struct Dynacast {
    /// Per track sid: each subscriber's highest wanted layer.
    wants: HashMap<String, HashMap<String, Layer>>,
    /// Per track sid: the top layer last told to its publisher (`None`: nothing needed).
    told: HashMap<String, Option<Layer>>,
}

impl Dynacast {
    pub fn new() -> Self {
        Self::default()
    }

    /// A subscriber's wish for a track: its highest layer, or `None` (paused or unsubscribed).
    /// Returns the track's new top layer when it changed (what the publisher must be told).
    pub fn set(
        &mut self,
        track_sid: &str,
        subscriber: &str,
        want: Option<Layer>,
    ) -> Option<Option<Layer>> {
        if want.is_none() && !self.wants.contains_key(track_sid) {
            // Nothing known of it (never wished for, or already gone).
            return None;
        }
        let wants = self.wants.entry(track_sid.to_owned()).or_default();
        match want {
            Some(layer) => {
                wants.insert(subscriber.to_owned(), layer.min(MAX_LAYER));
            }
            None => {
                wants.remove(subscriber);
            }
        }
        let top = wants.values().copied().max();
        if wants.is_empty() {
            self.wants.remove(track_sid);
        }
        let told = self
            .told
            .entry(track_sid.to_owned())
            .or_insert(Some(MAX_LAYER));
        if *told == top {
            return None;
        }
        *told = top;
        Some(top)
    }

    /// A subscriber is gone: its wishes go. Returns the tracks whose top layer changed.
    pub fn forget_subscriber(&mut self, subscriber: &str) -> Vec<(String, Option<Layer>)> {
        let tracks: Vec<String> = self
            .wants
            .iter()
            .filter(|(_, w)| w.contains_key(subscriber))
            .map(|(t, _)| t.clone())
            .collect();
        tracks
            .into_iter()
            .filter_map(|t| self.set(&t, subscriber, None).map(|top| (t, top)))
            .collect()
    }

    /// A track is gone.
    pub fn forget_track(&mut self, track_sid: &str) {
        self.wants.remove(track_sid);
        self.told.remove(track_sid);
    }
}

/// LiveKit's update for a VP8 track whose layers up to `top` are needed.
pub fn quality_update(track_sid: &str, top: Option<Layer>) -> lk::SubscribedQualityUpdate {
    let qualities: Vec<lk::SubscribedQuality> = [
        lk::VideoQuality::Low,
        lk::VideoQuality::Medium,
        lk::VideoQuality::High,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, quality)| lk::SubscribedQuality {
        quality: quality as i32,
        enabled: top.is_some_and(|t| i as Layer <= t),
    })
    .collect();
    // The per-codec list is what current clients read; the flat one is for older ones.
    #[allow(deprecated)]
    lk::SubscribedQualityUpdate {
        track_sid: track_sid.to_owned(),
        subscribed_qualities: qualities.clone(),
        subscribed_codecs: vec![lk::SubscribedCodec {
            codec: "vp8".into(),
            qualities,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_hears_only_when_the_top_wanted_layer_changes() {
        let mut d = Dynacast::new();
        // Everything is sent to begin with: a subscriber wanting the top changes nothing.
        assert_eq!(d.set("TR_v", "PA_a", Some(2)), None);
        assert_eq!(d.set("TR_v", "PA_a", Some(0)), Some(Some(0)));
        assert_eq!(d.set("TR_v", "PA_b", Some(0)), None);
        assert_eq!(d.set("TR_v", "PA_b", Some(1)), Some(Some(1)));
        assert_eq!(
            d.forget_subscriber("PA_b"),
            vec![("TR_v".to_owned(), Some(0))]
        );
        // Nobody wants it: nothing is needed.
        assert_eq!(d.set("TR_v", "PA_a", None), Some(None));
        assert_eq!(d.set("TR_v", "PA_a", Some(2)), Some(Some(2)));
        d.forget_track("TR_v");
        assert_eq!(d.set("TR_v", "PA_a", Some(2)), None);
    }

    #[test]
    fn an_update_enables_the_layers_up_to_the_top() {
        let u = quality_update("TR_v", Some(0));
        let enabled: Vec<bool> = u.subscribed_codecs[0]
            .qualities
            .iter()
            .map(|q| q.enabled)
            .collect();
        assert_eq!(enabled, [true, false, false]);
        let none = quality_update("TR_v", None);
        assert!(none.subscribed_codecs[0]
            .qualities
            .iter()
            .all(|q| !q.enabled));
    }
}
