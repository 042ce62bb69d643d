//! Subscription control with livekit-client: `autoSubscribe: false`, `setSubscribed`, and a
//! publisher's `setTrackSubscriptionPermissions`, each judged by what the subscriber's browser
//! decodes.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_sfu, Browser, TestSfu};

const T: Duration = Duration::from_secs(30);

async fn publishing(sfu: &TestSfu, identity: &str) -> Browser {
    let mut page = Browser::launch("publish", &sfu.ws_url(), &sfu.token(identity, "r"), 90).await;
    page.wait_for("camera published", T, |v| {
        v["event"] == "localTrackPublished" && v["source"] == "camera"
    })
    .await;
    sfu.wait_metric(
        "sfu_rtp_packets_in_total{kind=\"video\",rid=\"q\"}",
        T,
        |v| v >= 20.0,
    )
    .await
    .unwrap();
    page
}

fn camera_of(v: &Value, identity: &str) -> bool {
    v["identity"] == identity && v["source"] == "camera"
}

fn subscribed_count(page: &Browser, identity: &str) -> usize {
    page.seen
        .iter()
        .filter(|v| v["event"] == "trackSubscribed" && camera_of(v, identity))
        .count()
}

/// Waits for a new subscription to `identity`'s camera (beyond `before`) and for its frames.
async fn frames_arrive(page: &mut Browser, identity: &str, before: usize) {
    let deadline = tokio::time::Instant::now() + T;
    while subscribed_count(page, identity) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new subscription to {identity}'s camera; saw {:#?}",
            page.tail()
        );
        page.collect(Duration::from_millis(250)).await;
    }
    page.wait_inbound(identity, "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(10)
    })
    .await;
}

/// Watches `identity`'s camera receiver for three seconds: from one second on, the decoded
/// frame count must not move. Returns (frames decoded in the first second, lines looked at).
async fn frames_stop_within_a_second(page: &mut Browser, identity: &str) -> (u64, usize) {
    let lines = page.collect(Duration::from_secs(3)).await;
    let frames: Vec<(Duration, u64)> = lines
        .iter()
        .filter(|(_, v)| {
            (v["event"] == "inbound" || v["event"] == "inboundKept") && camera_of(v, identity)
        })
        .map(|(at, v)| (*at, v["framesDecoded"].as_u64().unwrap_or(0)))
        .collect();
    let late: Vec<u64> = frames
        .iter()
        .filter(|(at, _)| *at >= Duration::from_secs(1))
        .map(|(_, f)| *f)
        .collect();
    let (lo, hi) = (
        late.iter().min().copied().unwrap_or(0),
        late.iter().max().copied().unwrap_or(0),
    );
    assert_eq!(
        lo, hi,
        "{identity}'s camera still decoding 1-3 s after the change: {frames:?}"
    );
    let early = frames.first().map_or(0, |(_, f)| *f);
    (hi.saturating_sub(early), late.len())
}

/// `autoSubscribe: false`: the track is announced but no media flows until `setSubscribed(true)`;
/// `setSubscribed(false)` stops the decoding within a second; subscribing again restarts it.
#[tokio::test]
async fn without_auto_subscribe_media_flows_only_while_subscribed() {
    let sfu = spawn_sfu().await;
    let alice = publishing(&sfu, "alice").await;
    let mut bob = Browser::launch_with_env(
        "connect",
        &sfu.ws_url(),
        &sfu.token("bob", "r"),
        90,
        &[("SFU_BROWSER_CONNECT", r#"{"autoSubscribe":false}"#)],
    )
    .await;
    let resolved = bob.wait_event("connectResolved", T).await;
    assert!(
        resolved["remoteTracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| camera_of(t, "alice")),
        "{resolved}"
    );
    // Known, not received.
    let quiet = bob.collect(Duration::from_millis(2500)).await;
    assert!(
        !quiet
            .iter()
            .any(|(_, v)| v["event"] == "trackSubscribed" || v["event"] == "inbound"),
        "media without a subscription: {quiet:#?}"
    );
    assert_eq!(
        sfu.metric("sfu_rtp_packets_out_total{kind=\"video\"}")
            .await,
        Some(0.0)
    );

    bob.command("subscribe alice camera true", T).await;
    frames_arrive(&mut bob, "alice", 0).await;

    bob.command("subscribe alice camera false", T).await;
    let (frames, lines) = frames_stop_within_a_second(&mut bob, "alice").await;
    eprintln!("after unsubscribing: {frames} frames in the first second, {lines} later reports");
    assert!(
        sfu.metric("sfu_subscription_changes_total{change=\"unsubscribe\"}")
            .await
            >= Some(1.0)
    );

    let before = subscribed_count(&bob, "alice");
    bob.command("subscribe alice camera true", T).await;
    frames_arrive(&mut bob, "alice", before).await;
    alice.close().await;
    bob.close().await;
}

/// A publisher that allows only someone else stops a subscriber's media (and tells it); allowing
/// everyone again brings it back.
#[tokio::test]
async fn a_publishers_permissions_stop_and_restart_a_subscribers_media() {
    let sfu = spawn_sfu().await;
    let mut alice = publishing(&sfu, "alice").await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 90).await;
    frames_arrive(&mut bob, "alice", 0).await;
    // On loopback, both connections are excellent (LiveKit's ConnectionQualityUpdate).
    for who in ["alice", "bob"] {
        let q = bob
            .wait_for("a connection quality", T, |v| {
                v["event"] == "connectionQuality" && v["identity"] == who
            })
            .await;
        assert_eq!(q["quality"], "excellent", "{q}");
    }

    alice.command("permissions carol", T).await;
    let (frames, lines) = frames_stop_within_a_second(&mut bob, "alice").await;
    eprintln!("after the revocation: {frames} frames in the first second, {lines} later reports");
    let denied = bob
        .wait_for("permission revoked", T, |v| {
            v["event"] == "permissionChanged" && camera_of(v, "alice")
        })
        .await;
    assert_eq!(denied["status"], "not_allowed", "{denied}");
    assert!(
        sfu.metric("sfu_subscription_permission_updates_total{allowed=\"false\"}")
            .await
            >= Some(1.0)
    );

    let before = subscribed_count(&bob, "alice");
    alice.command("permissions *", T).await;
    frames_arrive(&mut bob, "alice", before).await;
    alice.close().await;
    bob.close().await;
}
