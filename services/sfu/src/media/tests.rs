//! The media plane over a real loopback link (see [`super::link`]).

use super::link::{connected_link, replay};

/// A subscriber's keyframe request (a PLI from the client's receiver) comes out of the SFU PC's
/// interceptor chain to its downtrack, where the SFU relays it to the publisher.
#[tokio::test]
async fn a_subscribers_keyframe_request_reaches_its_downtrack() {
    let mut link = connected_link(false).await;
    replay(&mut link, 5).await;
    let requester = link.track.keyframe_requester();
    assert!(requester.request(link.down.ssrc));
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        link.down.keyframe_request(),
    )
    .await
    .expect("the PLI reached the downtrack in time")
    .expect("the downtrack is alive");
    link.sfu_pc.close().await;
    link.client_pc.close().await;
}
