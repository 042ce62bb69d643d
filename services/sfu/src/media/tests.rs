//! The media plane over a real loopback link (see [`super::link`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::link::{connected_link, replay, send_next};

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
