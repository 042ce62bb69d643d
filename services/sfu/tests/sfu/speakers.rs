//! Active speakers: the SFU reads the audio-level header extension and livekit-client's
//! `room.activeSpeakers` follows who is talking.

use std::time::Duration;

use crate::helpers::{spawn_sfu, Browser};

const T: Duration = Duration::from_secs(30);

/// Alice and Bob each have a steady tone on their fake microphones; one is muted at a time.
/// Carol, who only listens, sees the unmuted one as the active speaker, and the change when they
/// swap.
#[tokio::test]
async fn active_speakers_follow_who_is_unmuted() {
    let sfu = spawn_sfu().await;
    let tone = [("SFU_BROWSER_TONE", "1")];
    let mut pages = Vec::new();
    for who in ["alice", "bob"] {
        let mut page =
            Browser::launch_with_env("mic", &sfu.ws_url(), &sfu.token(who, "r"), 90, &tone).await;
        page.wait_for("microphone published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "microphone"
        })
        .await;
        pages.push(page);
    }
    let [mut alice, mut bob] = <[Browser; 2]>::try_from(pages).ok().unwrap();
    bob.command("mute microphone", T).await;
    let mut carol = Browser::launch("connect", &sfu.ws_url(), &sfu.token("carol", "r"), 90).await;
    carol.wait_event("connectResolved", T).await;
    let speaking = |who: &'static str| {
        move |v: &serde_json::Value| {
            v["event"] == "activeSpeakers" && v["identities"] == serde_json::json!([who])
        }
    };
    let first = carol.wait_for("alice speaking", T, speaking("alice")).await;
    eprintln!("alice speaking at {} ms", first["t"]);

    let skip = carol.seen.len();
    alice.command("mute microphone", T).await;
    bob.command("unmute microphone", T).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if carol.seen[skip..].iter().any(speaking("bob")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never the only speaker; saw {:#?}",
            carol.tail()
        );
        carol.collect(Duration::from_millis(200)).await;
    }
    assert!(sfu.metric("sfu_speakers_updates_total").await >= Some(2.0));
    for page in [alice, bob, carol] {
        page.close().await;
    }
}
