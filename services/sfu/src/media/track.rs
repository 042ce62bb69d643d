//! Tracks: what a publisher sends in ([`IncomingTrack`]) and what a subscriber gets
//! ([`DownTrack`]).

use std::sync::{Arc, Weak};
use std::time::Instant;

use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use tokio::sync::mpsc;

use super::driver::Shared;
use super::{rtc_err, Kind, MediaError, RtpPacket};
use crate::forward::Layer;

/// One received RTP packet, with the simulcast layer it belongs to.
pub struct IncomingPacket {
    /// The layer of its stream's rid, resolved once per SSRC.
    pub layer: Layer,
    /// Its stream's rid as a metrics label: `q`, `h`, `f`, or empty without simulcast (a rid
    /// other than `h` and `f` counts as `q`).
    pub rid: &'static str,
    pub packet: RtpPacket,
}

/// Takes a track's packets on the publisher's driver task (see [`IncomingTrack::deliver_inline`]).
pub type PacketHandler = Arc<dyn Fn(IncomingPacket) + Send + Sync>;

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
    /// The egress cannot take it now (a queueing egress whose queue is full): the packet is
    /// lost. [`DownTrack`] sends at once and never answers this.
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
    /// Its media packets, as the driver reads them (repair streams left out).
    pub(super) packets: mpsc::Receiver<IncomingPacket>,
    pub(super) core: Weak<Shared>,
    pub(super) receiver: RTCRtpReceiverId,
}

impl IncomingTrack {
    /// A requester whose PLIs go to this track's publisher, for as long as the track lives.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        let (requester, mut rx) = KeyframeRequester::channel();
        let (core, receiver) = (self.core.clone(), self.receiver);
        tokio::spawn(async move {
            while let Some(media_ssrc) = rx.recv().await {
                let Some(shared) = core.upgrade() else { break };
                let sent = shared.with_core(|core, now| {
                    let pli = PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    };
                    match core.pc.rtp_receiver(receiver) {
                        Some(mut r) => r.write_rtcp(now, vec![Box::new(pli)]).map_err(rtc_err),
                        None => Ok(()),
                    }
                });
                if let Err(e) = sent {
                    tracing::debug!(error = %e, media_ssrc, "cannot send a PLI");
                }
            }
        });
        requester
    }

    /// From now on the publisher's driver calls `handler` with each media packet, on its own
    /// task, right after reading it: no queue that could drop and no task to wake per packet.
    /// `handler` runs outside the PeerConnection's lock and must not wait. Packets read before
    /// this call go to `handler` first, in the order they were read, also from the driver;
    /// [`IncomingTrack::next_packet`] then only yields `None`, when the track ends.
    pub fn deliver_inline(&mut self, handler: PacketHandler) {
        let Some(shared) = self.core.upgrade() else {
            return;
        };
        {
            let mut guard = shared.lock();
            let Some(core) = guard.as_mut() else { return };
            // Under the core's lock the driver reads nothing more into the queue: what is in it
            // now is all that came before the handler.
            let backlog = std::iter::from_fn(|| self.packets.try_recv().ok()).collect();
            core.deliver_inline(&self.track_id, handler, backlog);
        }
        shared.wake();
    }

    /// The next media RTP packet; `None` once the track has ended.
    pub async fn next_packet(&mut self) -> Option<IncomingPacket> {
        self.packets.recv().await
    }
}

/// One outgoing track on a subscriber PC: the publisher's media, rewritten for this subscriber.
#[derive(Clone)]
pub struct DownTrack {
    pub(super) core: Arc<Shared>,
    pub(super) sender: RTCRtpSenderId,
    pub(super) track_id: Arc<str>,
    /// Signalled by the driver when the subscriber asks for a keyframe.
    pub(super) keyframes: Arc<tokio::sync::Mutex<mpsc::Receiver<()>>>,
    pub ssrc: u32,
    pub kind: Kind,
    /// Where its packets land in the PeerConnection's send state.
    pub(super) send_hint: super::interceptors::SendHint,
}

/// What a subscriber negotiated for a downtrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub payload_type: u8,
}

impl DownTrack {
    /// The payload type the subscriber accepted for our codec, once negotiated.
    pub async fn negotiated(&self) -> Option<Negotiated> {
        let want = match self.kind {
            Kind::Audio => MIME_TYPE_OPUS,
            Kind::Video => MIME_TYPE_VP8,
        };
        let mut guard = self.core.lock();
        let core = guard.as_mut()?;
        let mut sender = core.pc.rtp_sender(self.sender)?;
        sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(want))
            .map(|c| Negotiated {
                payload_type: c.payload_type,
            })
    }

    /// Waits for the subscriber to ask for a keyframe. `None` once the track is gone.
    pub async fn keyframe_request(&self) -> Option<()> {
        self.keyframes.lock().await.recv().await
    }

    /// Sends one packet whose SSRC, payload type, numbering and extensions are already this
    /// downtrack's. Fails until the track is bound by a completed negotiation.
    pub async fn write(&self, packet: RtpPacket) -> Result<(), MediaError> {
        self.send(packet)
    }

    /// Whether a packet written now reaches the subscriber: false until the PeerConnection's
    /// DTLS is up (SRTP has no keys before), so a forwarder can hold back a keyframe rather
    /// than lose it.
    pub fn ready(&self) -> bool {
        self.core.connected()
    }

    /// [`DownTrack::write`] without waiting: the packet goes through the interceptors and SRTP
    /// to the socket on this thread, under the PeerConnection's lock (held for that send only),
    /// so one slow subscriber never holds up the others.
    pub fn try_write(&self, packet: RtpPacket) -> Result<(), WriteError> {
        self.send(packet).map_err(|_| WriteError::Failed)
    }

    /// The cache lines a write reads first: this handle and the first two of the
    /// PeerConnection's shared state (flag, lock, the send path's fields).
    pub(crate) fn hot_addresses(&self) -> [usize; 3] {
        let shared = Arc::as_ptr(&self.core) as usize;
        [self as *const Self as usize, shared, shared + 64]
    }

    /// Asks for the PeerConnection's own send state (its SRTP context, its send history), whose
    /// addresses its shared state keeps.
    pub(crate) fn prefetch_deeper(&self) {
        self.core.prefetch_own_state();
        self.send_hint.prefetch();
    }

    fn send(&self, packet: RtpPacket) -> Result<(), MediaError> {
        let mut guard = self.core.lock();
        let core = guard.as_mut().ok_or(MediaError::Closed)?;
        if !core.sends(self.sender) {
            return Err(MediaError::Closed);
        }
        // Protected and sent by the PeerConnection itself once it can (see `own_srtp`).
        let Some(packet) = core.send_own(packet, &self.send_hint) else {
            self.core.note_own_state(core);
            return Ok(());
        };
        let mut sender = core.pc.rtp_sender(self.sender).ok_or(MediaError::Closed)?;
        sender.write_rtp(Instant::now(), packet).map_err(rtc_err)?;
        core.flush();
        Ok(())
    }
}
