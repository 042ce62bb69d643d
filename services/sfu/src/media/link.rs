//! Test support: an SFU subscriber PeerConnection connected over loopback to a client
//! PeerConnection, with one video downtrack the client receives, and a replay that writes packets
//! to it one at a time. Used by the send path's cost guard ([`super::cost`]) and by the tests of
//! what flows back from the client ([`super::tests`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::*;

pub(super) fn settings() -> MediaSettings {
    MediaSettings {
        bind_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port_range: (0, 0),
        nat_1to1: Arc::from([]),
    }
}

/// Offers from `offerer`, answers on `answerer`, and trickles candidates both ways until both
/// are connected.
async fn connect(
    offerer: &Peer,
    offerer_events: &mut mpsc::UnboundedReceiver<MediaEvent>,
    answerer: &Peer,
    answerer_events: &mut mpsc::UnboundedReceiver<MediaEvent>,
) {
    let offer = offerer.create_offer().await.expect("offer");
    let answer = answerer.answer_offer(&offer).await.expect("answer");
    offerer.apply_answer(&answer).await.expect("apply answer");
    let mut up = (false, false);
    while !(up.0 && up.1) {
        tokio::select! {
            Some(event) = offerer_events.recv() => match event {
                MediaEvent::Candidate { init_json, .. } => {
                    answerer.add_remote_candidate(&init_json).await.expect("candidate");
                }
                MediaEvent::State { state, .. } => up.0 = state == PeerState::Connected,
                MediaEvent::Track(_) => {}
            },
            Some(event) = answerer_events.recv() => match event {
                MediaEvent::Candidate { init_json, .. } => {
                    offerer.add_remote_candidate(&init_json).await.expect("candidate");
                }
                MediaEvent::State { state, .. } => up.1 = state == PeerState::Connected,
                MediaEvent::Track(_) => panic!("a track before any packet"),
            },
        }
    }
}

pub(super) fn packet(down: &DownTrack, pt: u8, seq: u16) -> RtpPacket {
    let mut p = RtpPacket::default();
    p.header.version = 2;
    p.header.ssrc = down.ssrc;
    p.header.payload_type = pt;
    p.header.sequence_number = seq;
    p.header.timestamp = u32::from(seq / 2) * 3000;
    p.header.marker = seq % 2 == 1;
    // A VP8 descriptor and 1 KB, as the load bench sends.
    let mut payload = vec![0u8; 1000];
    payload[..4].copy_from_slice(&[0x90, 0x80, (seq / 2) as u8 & 0x7f, 0x00]);
    p.payload = payload.into();
    p
}

/// An SFU subscriber PC connected to a client, with one video downtrack the client receives.
pub(super) struct Link {
    pub(super) sfu_pc: Peer,
    pub(super) client_pc: Peer,
    pub(super) down: DownTrack,
    pub(super) pt: u8,
    pub(super) track: IncomingTrack,
    pub(super) next_seq: u16,
}

pub(super) async fn connected_link(sfu_chain_of_clients: bool) -> Link {
    let sfu = if sfu_chain_of_clients {
        MediaEngine::for_clients(settings(), WireCounters::default())
    } else {
        MediaEngine::new(settings(), WireCounters::default())
    };
    let client = MediaEngine::for_clients(settings(), WireCounters::default());
    link_between(&sfu, &client, "link").await
}

/// A [`Link`] from `sfu`'s PeerConnection to `client`'s, the client's in `client_room`.
pub(super) async fn link_between(
    sfu: &MediaEngine,
    client: &MediaEngine,
    client_room: &str,
) -> Link {
    let (sfu_tx, mut sfu_events) = mpsc::unbounded_channel();
    let (client_tx, mut client_events) = mpsc::unbounded_channel();
    let (data_tx, mut data_rx) = mpsc::channel(16);
    tokio::spawn(async move { while data_rx.recv().await.is_some() {} });
    let mut sfu_pc = sfu
        .create_peer("link", Role::Subscriber, sfu_tx, data_tx.clone())
        .await
        .expect("SFU PC");
    // As the SFU's subscriber PCs have: an SCTP association beside the media.
    sfu_pc
        .create_livekit_data_channels()
        .await
        .expect("data channels");
    let client_pc = client
        .create_peer(client_room, Role::Subscriber, client_tx, data_tx)
        .await
        .expect("client PC");
    let down = sfu_pc
        .add_downtrack(Kind::Video, "PA_cost|TR_cost", "TR_cost")
        .await
        .expect("downtrack");
    connect(&sfu_pc, &mut sfu_events, &client_pc, &mut client_events).await;
    let pt = loop {
        if let Some(n) = down.negotiated().await {
            break n.payload_type;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    // The first packet that gets through announces the track.
    let mut seq = 0u16;
    let mut track = loop {
        let _ = down.try_write(packet(&down, pt, seq));
        seq = seq.wrapping_add(1);
        tokio::select! {
            Some(MediaEvent::Track(t)) = client_events.recv() => break t,
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    };
    // Whatever else got through meanwhile, so that from here on one packet written is one read.
    loop {
        tokio::select! {
            p = track.next_packet() => { p.expect("the track ended"); }
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => break,
        }
    }
    Link {
        sfu_pc,
        client_pc,
        down,
        pt,
        track,
        next_seq: seq,
    }
}

/// Writes the next packet to the SFU's downtrack (sent on this thread as a burst of one, as a
/// driver sends what it forwards; a [`DownTrack`] is never busy); its sequence number.
pub(super) fn send_next(link: &mut Link) -> u16 {
    let seq = link.next_seq;
    link.next_seq = seq.wrapping_add(1);
    let packet = packet(&link.down, link.pt, seq);
    if super::outbox::batched(|| link.down.try_write(packet)).is_err() {
        panic!("the downtrack failed");
    }
    seq
}

/// `n` packets, each written to the SFU's downtrack and awaited at the client.
pub(super) async fn replay(link: &mut Link, n: usize) {
    for _ in 0..n {
        send_next(link);
        let got = link.track.next_packet().await.expect("the track ended");
        assert_eq!(got.packet.payload.len(), 1000);
    }
}
