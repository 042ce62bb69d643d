//! The media plane over a real loopback link (see [`super::link`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::link::{connected_link, link_between, packet, replay, send_next, settings};
use super::{MediaEngine, WireCounters};

/// An SFU subscriber PeerConnection protects its media with its own SRTP context once DTLS is
/// up (the keys it derived matched the ones `rtc` built its local context with), and the client
/// (`rtc`'s own SRTP) reads every packet. A client's PeerConnection leaves it to `rtc`.
#[tokio::test]
async fn a_subscriber_pc_protects_its_media_itself_and_the_client_reads_it() {
    let mut link = tokio::time::timeout(Duration::from_secs(10), connected_link(false))
        .await
        .expect("the link came up and the client read the first packets");
    assert!(link.sfu_pc.shared().protects_media_itself());
    assert!(!link.client_pc.shared().protects_media_itself());
    tokio::time::timeout(Duration::from_secs(10), replay(&mut link, 50))
        .await
        .expect("the client read every packet");
    link.sfu_pc.close().await;
    link.client_pc.close().await;

    let link = tokio::time::timeout(Duration::from_secs(10), connected_link(true))
        .await
        .expect("the link came up");
    assert!(!link.sfu_pc.shared().protects_media_itself());
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}

/// A packet lost on the way is resent when the client's NACK asks for it, on the media SSRC
/// (subscribers get no RTX) and so through the PeerConnection's own SRTP context, and the client
/// reads it.
#[tokio::test]
async fn a_nacked_packet_is_resent_through_the_pcs_own_srtp() {
    let mut link = tokio::time::timeout(Duration::from_secs(10), connected_link(false))
        .await
        .expect("the link came up");
    replay(&mut link, 5).await;
    assert!(link.sfu_pc.shared().protects_media_itself());
    let lost = link.next_seq;
    link.next_seq = lost.wrapping_add(1);
    link.sfu_pc
        .shared()
        .lose(&packet(&link.down, link.pt, lost));
    // The next packet shows the client the gap; its NACK brings the lost one.
    let after = send_next(&mut link);
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !read.contains(&lost) {
            let p = link.track.next_packet().await.expect("the track ended");
            read.push(p.packet.header.sequence_number);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the lost packet {lost} was not resent; read {read:?}"));
    assert_eq!(read, [after, lost]);
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}

/// A subscriber's keyframe request (a PLI from the client's receiver) comes out of the SFU PC's
/// interceptor chain to its downtrack, where the SFU relays it to the publisher.
#[tokio::test]
async fn a_subscribers_keyframe_request_reaches_its_downtrack() {
    let mut link = connected_link(false).await;
    replay(&mut link, 5).await;
    let requester = link.track.keyframe_requester();
    assert!(requester.request(link.down.ssrc));
    tokio::time::timeout(Duration::from_secs(5), link.down.keyframe_request())
        .await
        .expect("the PLI reached the downtrack in time")
        .expect("the downtrack is alive");
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}

/// Packets read before a track's handler is set reach the handler first, in the order they were
/// read, and none is left in the track's queue: the forwarder sees the stream as it came.
#[tokio::test]
async fn packets_read_before_the_handler_is_set_reach_it_first_and_in_order() {
    const BEFORE: usize = 5;
    const AFTER: usize = 5;
    let mut link = connected_link(false).await;
    let mut sent = Vec::new();
    for _ in 0..BEFORE {
        sent.push(send_next(&mut link));
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while link.track.packets.len() < BEFORE {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the client read the first packets into the track's queue");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let (into, done) = (seen.clone(), all_seen.clone());
    link.track.deliver_inline(Arc::new(move |packet| {
        let mut seen = into.lock().unwrap();
        seen.push(packet.packet.header.sequence_number);
        if seen.len() == BEFORE + AFTER {
            done.notify_one();
        }
    }));
    for _ in 0..AFTER {
        sent.push(send_next(&mut link));
    }
    tokio::time::timeout(Duration::from_secs(5), all_seen.notified())
        .await
        .expect("every packet reached the handler");
    assert_eq!(*seen.lock().unwrap(), sent);
    assert!(
        link.track.packets.try_recv().is_err(),
        "nothing is left in the track's queue"
    );
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}

/// With media threads, a room's PeerConnections are driven on one thread (a packet they read is
/// handled there) and another room's on another: a fan-out stays on the thread that read it.
#[tokio::test]
async fn a_rooms_peerconnections_are_driven_on_one_media_thread() {
    let senders = MediaEngine::new(settings(), WireCounters::default());
    let receivers = MediaEngine::for_clients(settings(), WireCounters::default())
        .with_media_threads(2)
        .expect("media threads");
    let mut links = Vec::new();
    for room in ["a", "a", "b"] {
        links.push(link_between(&senders, &receivers, room).await);
    }
    let mut threads = Vec::new();
    for link in &mut links {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        link.track.deliver_inline(Arc::new(move |_packet| {
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        }));
        send_next(link);
        let thread = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the packet reached the handler in time")
            .expect("the handler is alive");
        threads.push(thread.expect("media threads are named"));
    }
    assert!(
        threads.iter().all(|t| t.starts_with("ppodok-media-")),
        "{threads:?}"
    );
    assert_eq!(
        threads[0], threads[1],
        "room a's PeerConnections share a thread"
    );
    assert_ne!(threads[0], threads[2], "room b went to the idle thread");
    assert_eq!(receivers.media_thread_tasks(), 3, "one driver each");
    for link in links {
        link.sfu_pc.close().await;
        link.client_pc.close().await;
    }
}

/// A downtrack whose sender was removed refuses packets (the PeerConnection checks its own list
/// of removed senders per packet instead of `rtc`'s transceivers), and a downtrack added after it
/// sends, whether or not `rtc` gave it the removed one's id.
#[tokio::test]
async fn a_removed_downtrack_refuses_packets_and_a_new_one_sends() {
    let mut link = tokio::time::timeout(Duration::from_secs(10), connected_link(false))
        .await
        .expect("the link came up");
    replay(&mut link, 3).await;
    assert!(link.sfu_pc.shared().protects_media_itself());
    link.sfu_pc
        .remove_downtrack(&link.down)
        .await
        .expect("removed");
    assert!(
        link.down
            .try_write(packet(&link.down, link.pt, link.next_seq))
            .is_err(),
        "a removed downtrack's packet was sent"
    );
    let again = link
        .sfu_pc
        .add_downtrack(super::Kind::Video, "PA_cost|TR_again", "TR_again")
        .await
        .expect("a new downtrack");
    assert!(again.try_write(packet(&again, link.pt, 0)).is_ok());
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}
