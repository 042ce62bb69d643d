//! Tracks: what a publisher sends in ([`IncomingTrack`]) and what a subscriber gets
//! ([`DownTrack`]).

use std::sync::Arc;

use futures::FutureExt;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use super::interceptors::asks_for_keyframe;
use super::{webrtc_err, Kind, MediaError, RtpPacket};
use crate::forward::{layer_of_rid, Layer};

/// One received RTP packet, with the simulcast layer it belongs to.
pub struct IncomingPacket {
    /// The layer of its stream's rid, resolved once per SSRC.
    pub layer: Layer,
    /// Its stream's rid as a metrics label: `q`, `h`, `f`, or empty without simulcast (a rid
    /// other than `h` and `f` counts as `q`).
    pub rid: &'static str,
    pub packet: RtpPacket,
}

/// The metrics label of a rid (see [`IncomingPacket::rid`]).
pub fn rid_label(rid: Option<&str>) -> &'static str {
    match rid {
        None => "",
        Some("f") => "f",
        Some("h") => "h",
        Some(_) => "q",
    }
}

/// Why a packet was not handed to a downtrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The PeerConnection's queue is full (or briefly locked): the packet is lost.
    Busy,
    /// Not bound (negotiation not complete) or closed.
    Failed,
}

/// Asks a publisher for a keyframe (RTCP PLI) on one of its streams, without waiting: requests
/// go through a small queue to a task that writes the RTCP (extra requests while it is busy are
/// dropped; keyframe requests are idempotent).
#[derive(Clone, Debug)]
pub struct KeyframeRequester {
    tx: mpsc::Sender<u32>,
}

impl KeyframeRequester {
    /// A requester and the queue it feeds (the media side drains it; tests can too).
    pub fn channel() -> (Self, mpsc::Receiver<u32>) {
        let (tx, rx) = mpsc::channel(8);
        (Self { tx }, rx)
    }

    /// Requests a keyframe on the stream `media_ssrc`; `false` if the request was dropped.
    pub fn request(&self, media_ssrc: u32) -> bool {
        self.tx.try_send(media_ssrc).is_ok()
    }
}

/// A track a client publishes. `track_id` is the msid track id, which livekit-client sets to the
/// `cid` of its `AddTrackRequest`.
pub struct IncomingTrack {
    pub track_id: String,
    pub stream_id: String,
    pub kind: Kind,
    pub(super) remote: Arc<dyn TrackRemote>,
    /// Per SSRC: its layer and rid label, and whether it carries media (not a repair stream
    /// such as RTX). A handful at most (three layers and their repair streams), so a scan.
    pub(super) streams: Vec<(u32, (Layer, &'static str, bool))>,
}

impl IncomingTrack {
    /// A requester whose PLIs go to this track's publisher, for as long as the track lives.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        let (requester, mut rx) = KeyframeRequester::channel();
        let remote = self.remote.clone();
        tokio::spawn(async move {
            while let Some(media_ssrc) = rx.recv().await {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if let Err(e) = remote.write_rtcp(vec![Box::new(pli)]).await {
                    tracing::debug!(error = %e, media_ssrc, "cannot send a PLI");
                }
            }
        });
        requester
    }

    /// The next media RTP packet; `None` once the track has ended. Repair streams are skipped.
    pub async fn next_packet(&mut self) -> Option<IncomingPacket> {
        loop {
            match self.remote.poll().await? {
                TrackRemoteEvent::OnRtpPacket(packet) => {
                    let ssrc = packet.header.ssrc;
                    let known = self.streams.iter().find(|(s, _)| *s == ssrc);
                    let (layer, rid, media) = match known {
                        Some(&(_, known)) => known,
                        None => {
                            let rid = self.remote.rid(ssrc).await;
                            let rid = rid.as_deref();
                            let media =
                                self.remote.codec(ssrc).await.is_none_or(|c| {
                                    !c.mime_type.eq_ignore_ascii_case(MIME_TYPE_RTX)
                                });
                            let known = (layer_of_rid(rid), rid_label(rid), media);
                            self.streams.push((ssrc, known));
                            known
                        }
                    };
                    if media {
                        return Some(IncomingPacket { layer, rid, packet });
                    }
                }
                TrackRemoteEvent::OnEnded => return None,
                _ => {}
            }
        }
    }
}

/// One outgoing track on a subscriber PC: the publisher's media, rewritten for this subscriber.
#[derive(Clone)]
pub struct DownTrack {
    pub(super) local: Arc<TrackLocalStaticRTP>,
    pub(super) sender: Arc<dyn RtpSender>,
    pub ssrc: u32,
    pub kind: Kind,
}

/// What a subscriber negotiated for a downtrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub payload_type: u8,
}

impl DownTrack {
    /// The payload type the subscriber accepted for our codec, once negotiated.
    pub async fn negotiated(&self) -> Option<Negotiated> {
        let params = self.sender.get_parameters().await.ok()?;
        let want = match self.kind {
            Kind::Audio => MIME_TYPE_OPUS,
            Kind::Video => MIME_TYPE_VP8,
        };
        params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(want))
            .map(|c| Negotiated {
                payload_type: c.payload_type,
            })
    }

    /// Waits for the subscriber to ask for a keyframe. `None` when the track is not bound (not
    /// negotiated yet, or gone).
    pub async fn keyframe_request(&self) -> Option<()> {
        loop {
            // TrackLocalEvent is non-exhaustive: other events are skipped.
            #[allow(irrefutable_let_patterns)]
            if let TrackLocalEvent::OnRtcpPacket(packets) = self.local.poll().await? {
                if packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                    return Some(());
                }
            }
        }
    }

    /// Sends one packet whose SSRC, payload type, numbering and extensions are already this
    /// downtrack's. Fails until the track is bound by a completed negotiation.
    pub async fn write(&self, packet: RtpPacket) -> Result<(), MediaError> {
        self.local.write_rtp(packet).await.map_err(webrtc_err)
    }

    /// [`DownTrack::write`] without waiting: the packet is handed to the PeerConnection's
    /// queue if that can be done at once, else dropped ([`WriteError::Busy`]), so that one
    /// slow subscriber never holds up the others. (`webrtc` boxes the future of its
    /// `write_rtp`: one allocation per call, inside `webrtc`.)
    pub fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError> {
        match self.local.write_rtp(packet).now_or_never() {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(WriteError::Failed),
            None => Err(WriteError::Busy),
        }
    }
}
