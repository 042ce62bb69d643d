//! Dynacast: the publisher encodes only the simulcast layers some subscriber needs.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_sfu, Browser};

const T: Duration = Duration::from_secs(30);

/// The frames `rid` of Alice's camera has sent, per outbound report in `lines`.
fn frames_sent(lines: &[(Duration, Value)], rid: &str) -> Vec<(Duration, u64)> {
    lines
        .iter()
        .filter(|(_, v)| v["event"] == "outbound" && v["source"] == "camera" && v["rid"] == rid)
        .map(|(at, v)| (*at, v["framesSent"].as_u64().unwrap_or(0)))
        .collect()
}

/// Over `lines`, whether `rid` sent frames after the first `settle`.
fn sending_after(lines: &[(Duration, Value)], rid: &str, settle: Duration) -> (bool, Vec<u64>) {
    let late: Vec<u64> = frames_sent(lines, rid)
        .into_iter()
        .filter(|(at, _)| *at >= settle)
        .map(|(_, f)| f)
        .collect();
    let moving = late.first() != late.last();
    (moving, late)
}

/// With its only subscriber on low quality, Alice stops encoding `h` and `f` (their
/// `framesSent` stay flat); asking for high brings them back and Bob's picture grows.
#[tokio::test]
async fn unwanted_layers_pause_at_the_publisher_and_come_back_when_asked_for() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch_with_env(
        "publish",
        &sfu.ws_url(),
        &sfu.token("alice", "r"),
        90,
        &[("SFU_BROWSER_ROOM", r#"{"dynacast":true}"#)],
    )
    .await;
    alice
        .wait_for("camera published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "camera"
        })
        .await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 90).await;
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(10)
    })
    .await;

    bob.command("quality low", T).await;
    sfu.wait_metric("sfu_dynacast_updates_total{top=\"q\"}", T, |v| v >= 1.0)
        .await
        .unwrap();
    // A few seconds for the encoder to follow; then two seconds of reports.
    let lines = alice.collect(Duration::from_secs(5)).await;
    for rid in ["h", "f"] {
        let (moving, late) = sending_after(&lines, rid, Duration::from_secs(3));
        assert!(
            !moving && !late.is_empty(),
            "layer {rid} still sending: {late:?}"
        );
    }
    let (q_moving, q) = sending_after(&lines, "q", Duration::from_secs(3));
    assert!(q_moving, "the low layer stopped too: {q:?}");
    let small = bob
        .wait_inbound("alice", "camera", T, |v| v["frameWidth"].as_u64() > Some(0))
        .await;

    bob.command("quality high", T).await;
    sfu.wait_metric("sfu_dynacast_updates_total{top=\"f\"}", T, |v| v >= 1.0)
        .await
        .unwrap();
    let lines = alice.collect(Duration::from_secs(4)).await;
    for rid in ["h", "f"] {
        let (moving, late) = sending_after(&lines, rid, Duration::from_secs(2));
        assert!(moving, "layer {rid} did not come back: {late:?}");
    }
    let width = small["frameWidth"].as_u64().unwrap();
    let grown = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["frameWidth"].as_u64() > Some(width)
        })
        .await;
    eprintln!(
        "bob's picture: {width} px wide on low, then {}",
        grown["frameWidth"]
    );
    alice.close().await;
    bob.close().await;
}
