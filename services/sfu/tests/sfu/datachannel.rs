//! Data after media: a participant whose first publisher offer carries its camera and
//! microphone (and the data channels with them) can send data at once.

use std::time::Duration;

use crate::helpers::{spawn_sfu, Browser};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn data_flows_when_the_first_publish_carries_media() {
    let sfu = spawn_sfu().await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 60).await;
    bob.wait_event("connected", T).await;
    // As the web client: adaptive stream and dynacast on.
    let mut alice = Browser::launch_with_env(
        "publish",
        &sfu.ws_url(),
        &sfu.token("alice", "r"),
        60,
        &[(
            "SFU_BROWSER_ROOM",
            r#"{"dynacast":true,"adaptiveStream":true}"#,
        )],
    )
    .await;
    // While the first offer (camera, microphone and the data channels) is being negotiated.
    alice.wait_event("connectResolved", T).await;
    let sent = alice.command_outcome("data * after media", T).await;
    assert_eq!(sent["event"], "cmdDone", "{sent}");
    let got = bob
        .wait_for("alice's data", Duration::from_secs(10), |v| {
            v["event"] == "dataReceived" && v["text"] == "after media"
        })
        .await;
    assert_eq!(got["identity"], "alice");
    eprintln!("publishData took {} ms", sent["ms"]);
    alice.close().await;
    bob.close().await;
}
