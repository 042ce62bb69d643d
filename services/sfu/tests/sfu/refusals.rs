//! Joins the SFU cannot take are refused before any `JoinResponse`, with a reason the client
//! can show.

use std::time::Duration;

use crate::helpers::{spawn_sfu_with, Browser};

const T: Duration = Duration::from_secs(30);

/// Every media port taken: the join is refused before the upgrade (livekit-client reads the
/// reason from /rtc/validate), and nobody in the room ever sees the participant.
#[tokio::test]
async fn a_join_without_a_free_media_port_is_refused_before_the_join_response() {
    // The one port the SFU may use, held by this test.
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let sfu = spawn_sfu_with(|s| {
        s.rtc.udp_port_min = port;
        s.rtc.udp_port_max = port;
    })
    .await;
    let mut page = Browser::launch("connect", &sfu.ws_url(), &sfu.token("alice", "r"), 60).await;
    let err = page.wait_event("connectError", T).await;
    assert_eq!(err["reasonName"], "NotAllowed", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no media port free"),
        "{err}"
    );
    assert!(!page.seen.iter().any(|v| v["event"] == "signalConnected"));
    assert!(sfu.metric("sfu_joins_refused_total").await >= Some(1.0));
    assert_eq!(sfu.metric("sfu_participants").await, Some(0.0));
    page.close().await;
    drop(holder);
}
