//! The little SDP reading the SFU needs beyond what webrtc-rs does for it.

use std::collections::HashSet;

/// The ICE username fragment of a description (its first; BUNDLE shares one).
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .map(str::trim_end)
        .find_map(|line| line.strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

/// The id the offer gives the header extension `uri` (`a=extmap:<id>[/<direction>] <uri>`).
pub fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().map(str::trim_end).find_map(|line| {
        let rest = line.strip_prefix("a=extmap:")?;
        let (id, name) = rest.split_once(' ')?;
        let name = name.split_whitespace().next()?;
        (name == uri).then(|| id.split('/').next()?.parse().ok())?
    })
}

/// The msid track ids of the m-sections in `sdp` that send media (direction `sendrecv` or
/// `sendonly`, the default being `sendrecv`). A publisher that stops sending a track (livekit-
/// client's unpublish) turns its section `recvonly`/`inactive` and drops its msid.
pub fn sending_track_ids(sdp: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut section: Option<(bool, Vec<String>)> = None;
    let mut flush = |section: &mut Option<(bool, Vec<String>)>| {
        if let Some((sending, ids)) = section.take() {
            if sending {
                out.extend(ids);
            }
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            flush(&mut section);
            section = Some((true, Vec::new()));
            continue;
        }
        let Some((sending, ids)) = section.as_mut() else {
            continue;
        };
        match line {
            "a=recvonly" | "a=inactive" => *sending = false,
            "a=sendrecv" | "a=sendonly" => *sending = true,
            _ => {
                if let Some(rest) = line.strip_prefix("a=msid:") {
                    if let Some(track) = rest.split_whitespace().nth(1) {
                        ids.push(track.to_owned());
                    }
                }
            }
        }
    }
    flush(&mut section);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_ids_and_ice_ufrag_are_read_from_the_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\n\
                   a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
                   a=extmap:4/sendonly urn:example:other\r\n";
        assert_eq!(
            extmap_id(sdp, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            Some(1)
        );
        assert_eq!(extmap_id(sdp, "urn:example:other"), Some(4));
        assert_eq!(extmap_id(sdp, "urn:example:absent"), None);
        assert_eq!(ice_ufrag(sdp).as_deref(), Some("abcd"));
    }

    #[test]
    fn only_sending_sections_count() {
        let sdp = "v=0\r\n\
            o=- 1 2 IN IP4 127.0.0.1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=mid:0\r\n\
            a=sendonly\r\n\
            a=msid:stream-a mic-cid\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=mid:1\r\n\
            a=inactive\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=mid:2\r\n\
            a=msid:stream-b cam-cid\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=recvonly\r\n\
            a=msid:- old-cid\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let ids = sending_track_ids(sdp);
        assert_eq!(
            ids,
            HashSet::from(["mic-cid".to_owned(), "cam-cid".to_owned()])
        );
        assert!(sending_track_ids("").is_empty());
        assert!(sending_track_ids("a=msid:x y\nm=audio\na=msid:\n").is_empty());
    }
}
