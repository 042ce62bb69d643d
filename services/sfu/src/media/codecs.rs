//! The codecs and header extensions the SFU negotiates.

use rtc::peer_connection::configuration::media_engine::MediaEngine as WebrtcMediaEngine;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};

use super::{rtc_err, MediaError, Role};

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(super) fn vp8_codec() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ],
    }
}

/// The SFU's codecs: Opus and VP8. Nothing else is offered or accepted, so every track that
/// reaches a subscriber is one it can decode. Publishers may repair VP8 with RTX; towards
/// subscribers a lost packet is resent as itself (`rtc` 0.21 sends its RTX retransmissions
/// without the mid a browser needs to place the repair stream, so they would be dropped).
pub(super) fn register_codecs(media: &mut WebrtcMediaEngine, role: Role) -> Result<(), MediaError> {
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err)?;
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: 96,
            },
            RtpCodecKind::Video,
        )
        .map_err(rtc_err)?;
    if role == Role::Subscriber {
        return Ok(());
    }
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.to_owned(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: "apt=96".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: 97,
            },
            RtpCodecKind::Video,
        )
        .map_err(rtc_err)?;
    Ok(())
}

pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
