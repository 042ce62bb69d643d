//! The oracle: the official livekit-client 2.23.0 in Debian's headless Chromium.

use std::time::Duration;

use crate::helpers::{now, spawn_sfu, Browser};
use ppodok_tokens::livekit::LivekitKeys;
use ppodok_tokens::livekit::VideoGrant;

const T: Duration = Duration::from_secs(30);

/// Refused before any room is joined, each seen by livekit-client as `NotAllowed`: a token signed
/// with another secret, no token at all, and a token that grants no room join.
#[tokio::test]
async fn bad_and_missing_tokens_are_reported_as_not_allowed() {
    let sfu = spawn_sfu().await;
    let forged = LivekitKeys::new("devkey", "another-secret-another-secret-another")
        .mint_access_token("alice", "", VideoGrant::join("r"), now(), 600);
    let no_join = sfu.token_without_join("alice", "r");
    for token in [forged.as_str(), "", no_join.as_str()] {
        let mut page = Browser::launch("connect", &sfu.ws_url(), token, 60).await;
        let err = page.wait_event("connectError", T).await;
        assert_eq!(err["reasonName"], "NotAllowed", "token {token:?}: {err}");
        assert!(!page.seen.iter().any(|v| v["event"] == "signalConnected"));
        page.close().await;
    }
    assert_eq!(sfu.metric("sfu_participants").await, Some(0.0));
}

#[tokio::test]
async fn an_expired_token_is_reported_as_not_allowed() {
    let sfu = spawn_sfu().await;
    // Issued two hours ago for ten minutes: expired well past any leeway.
    let expired = sfu
        .keys
        .mint_access_token("alice", "", VideoGrant::join("r"), now() - 7200, 600);
    let mut page = Browser::launch("connect", &sfu.ws_url(), &expired, 60).await;
    let err = page.wait_event("connectError", T).await;
    assert_eq!(err["reasonName"], "NotAllowed", "{err}");
    assert!(!page.seen.iter().any(|v| v["event"] == "signalConnected"));
    page.close().await;
    assert_eq!(sfu.metric("sfu_participants").await, Some(0.0));
}

#[tokio::test]
async fn room_connect_resolves_over_the_subscriber_pc() {
    let sfu = spawn_sfu().await;
    let mut page = Browser::launch("connect", &sfu.ws_url(), &sfu.token("alice", "r"), 60).await;
    let signal = page.wait_event("signalConnected", T).await;
    assert_eq!(signal["remotes"], serde_json::json!([]));
    page.wait_event("connected", T).await;
    let resolved = page
        .wait_for("connectResolved", T, |v| {
            v["event"] == "connectResolved" || v["event"] == "connectError"
        })
        .await;
    assert_eq!(resolved["event"], "connectResolved", "{resolved}");
    assert_eq!(resolved["state"], "connected");
    assert!(resolved["sid"].as_str().unwrap().starts_with("PA_"));
    page.close().await;
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn camera_and_mic_publish_and_all_three_simulcast_layers_arrive() {
    let sfu = spawn_sfu().await;
    let mut page = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 90).await;
    page.wait_event("connected", T).await;
    let video = page
        .wait_for("camera published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "camera"
        })
        .await;
    assert_eq!(video["kind"], "video");
    assert!(video["sid"].as_str().unwrap().starts_with("TR_"));
    let audio = page
        .wait_for("microphone published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "microphone"
        })
        .await;
    assert_eq!(audio["kind"], "audio");
    assert!(!page.seen.iter().any(|v| v["event"] == "publishError"));
    sfu.wait_metric("sfu_tracks", T, |v| v == 2.0)
        .await
        .unwrap();
    for rid in ["q", "h", "f"] {
        sfu.wait_metric(
            &format!("sfu_rtp_packets_in_total{{kind=\"video\",rid=\"{rid}\"}}"),
            T,
            |v| v >= 20.0,
        )
        .await
        .unwrap();
    }
    // The page itself sends three active layers, each with frames still going out.
    for rid in ["q", "h", "f"] {
        let layer = |v: &serde_json::Value| {
            v["event"] == "outbound" && v["source"] == "camera" && v["rid"] == rid
        };
        let first = page
            .wait_for(rid, T, |v| {
                layer(v) && v["active"] == true && v["framesSent"].as_u64() > Some(0)
            })
            .await;
        let n = first["framesSent"].as_u64().unwrap();
        let later = page
            .wait_for(rid, T, |v| {
                layer(v) && v["active"] == true && v["framesSent"].as_u64() > Some(n + 10)
            })
            .await;
        eprintln!("layer {rid}: {later}");
    }
    sfu.wait_metric(
        "sfu_rtp_packets_in_total{kind=\"audio\",rid=\"\"}",
        T,
        |v| v >= 20.0,
    )
    .await
    .unwrap();
    page.close().await;
}

#[tokio::test]
async fn pages_see_each_other_join_publish_and_leave() {
    let sfu = spawn_sfu().await;
    // Bob is there first: Alice's arrival and her publications reach him as live updates.
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 90).await;
    bob.wait_event("connected", T).await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 90).await;
    let signal = alice.wait_event("signalConnected", T).await;
    assert_eq!(signal["remotes"], serde_json::json!(["bob"]));
    bob.wait_for("alice connected", T, |v| {
        v["event"] == "participantConnected" && v["identity"] == "alice"
    })
    .await;
    let mut sids = Vec::new();
    for source in ["camera", "microphone"] {
        let published = bob
            .wait_for(source, T, |v| {
                v["event"] == "trackPublished" && v["identity"] == "alice" && v["source"] == source
            })
            .await;
        let local = alice
            .wait_for(source, T, |v| {
                v["event"] == "localTrackPublished" && v["source"] == source
            })
            .await;
        assert_eq!(published["sid"], local["sid"]);
        sids.push(local["sid"].clone());
    }

    // Carol comes later: she learns both and Alice's tracks from her JoinResponse.
    let mut carol = Browser::launch("connect", &sfu.ws_url(), &sfu.token("carol", "r"), 90).await;
    let signal = carol.wait_event("signalConnected", T).await;
    let mut remotes: Vec<String> = serde_json::from_value(signal["remotes"].clone()).unwrap();
    remotes.sort();
    assert_eq!(remotes, ["alice", "bob"]);
    let resolved = carol.wait_event("connectResolved", T).await;
    let known: Vec<_> = resolved["remoteTracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["identity"] == "alice")
        .map(|t| t["sid"].clone())
        .collect();
    for sid in &sids {
        assert!(known.contains(sid), "{sid} not in {resolved}");
    }

    alice.close().await;
    for page in [&mut bob, &mut carol] {
        page.wait_for("alice disconnected", T, |v| {
            v["event"] == "participantDisconnected" && v["identity"] == "alice"
        })
        .await;
    }
    bob.close().await;
    carol.close().await;
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
}

/// The same identity joining from a second tab replaces the first, which livekit-client reports
/// as disconnected for DUPLICATE_IDENTITY; the room keeps Bob and the new Alice.
#[tokio::test]
async fn a_second_tab_with_the_same_identity_disconnects_the_first() {
    let sfu = spawn_sfu().await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 90).await;
    bob.wait_event("connected", T).await;
    let mut first = Browser::launch("connect", &sfu.ws_url(), &sfu.token("alice", "r"), 90).await;
    first.wait_event("connectResolved", T).await;
    let mut second = Browser::launch("connect", &sfu.ws_url(), &sfu.token("alice", "r"), 90).await;
    let signal = second.wait_event("signalConnected", T).await;
    assert_eq!(signal["remotes"], serde_json::json!(["bob"]), "{signal}");
    second.wait_event("connectResolved", T).await;
    let gone = first.wait_event("disconnected", T).await;
    assert_eq!(gone["reasonName"], "DUPLICATE_IDENTITY", "{gone}");
    // The second tab stays in the room.
    assert!(
        !second.seen.iter().any(|v| v["event"] == "disconnected"),
        "{:#?}",
        second.tail()
    );
    sfu.wait_metric("sfu_participants", T, |v| v == 2.0)
        .await
        .unwrap();
    first.close().await;
    second.close().await;
    bob.close().await;
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
}

/// Step 5 of the plan: forwarding. Alice and Bob both publish camera (simulcast) and mic; each
/// decodes the other's media. Carol joins later and must see both videos quickly.
#[tokio::test]
async fn subscribers_decode_forwarded_video_and_audio_and_a_late_joiner_sees_both_videos() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    let mut bob = Browser::launch("publish", &sfu.ws_url(), &sfu.token("bob", "r"), 120).await;
    bob.wait_event("connected", T).await;

    for (page, other) in [(&mut bob, "alice"), (&mut alice, "bob")] {
        for (source, kind) in [("camera", "video"), ("microphone", "audio")] {
            let sub = page
                .wait_for("trackSubscribed", T, |v| {
                    v["event"] == "trackSubscribed"
                        && v["identity"] == other
                        && v["source"] == source
                })
                .await;
            assert_eq!(sub["kind"], kind, "{sub}");
            assert!(sub["sid"].as_str().unwrap().starts_with("TR_"));
        }
        // Video: frames decoded, with a size, and still rising a second later.
        let first = page
            .wait_inbound(other, "camera", T, |v| {
                v["framesDecoded"].as_u64() > Some(0) && v["frameWidth"].as_u64() > Some(0)
            })
            .await;
        let n = first["framesDecoded"].as_u64().unwrap();
        let later = page
            .wait_inbound(other, "camera", T, |v| {
                v["framesDecoded"].as_u64() > Some(n + 10)
            })
            .await;
        eprintln!(
            "{other}'s camera decoded: {} → {} frames, width {}",
            n, later["framesDecoded"], later["frameWidth"]
        );
        // Both streams' sender reports (the SFU's own, one a second) reach the browser, which
        // needs them to sync audio with video.
        for source in ["camera", "microphone"] {
            page.wait_inbound(other, source, T, |v| {
                v["senderReports"].as_u64() >= Some(1)
                    && v["reportedPacketsSent"].as_u64() > Some(0)
            })
            .await;
        }
        // Audio: samples received, and rising.
        let first = page
            .wait_inbound(other, "microphone", T, |v| {
                v["totalSamplesReceived"].as_u64() > Some(0)
            })
            .await;
        let n = first["totalSamplesReceived"].as_u64().unwrap();
        page.wait_inbound(other, "microphone", T, |v| {
            v["totalSamplesReceived"].as_u64() > Some(n + 48_000)
        })
        .await;
    }
    sfu.wait_metric("sfu_rtp_packets_out_total{kind=\"video\"}", T, |v| {
        v > 100.0
    })
    .await
    .unwrap();
    sfu.wait_metric("sfu_rtp_packets_out_total{kind=\"audio\"}", T, |v| v > 50.0)
        .await
        .unwrap();

    let mut carol = Browser::launch("connect", &sfu.ws_url(), &sfu.token("carol", "r"), 60).await;
    let mut seen_at = Vec::new();
    let mut first_decoded = Vec::new();
    for who in ["alice", "bob"] {
        let v = carol
            .wait_inbound(who, "camera", T, |v| v["framesDecoded"].as_u64() > Some(0))
            .await;
        seen_at.push(v["sinceConnectMs"].as_u64().unwrap());
        first_decoded.push(v);
    }
    let plis = sfu.metric("sfu_plis_sent_total").await;
    let both = *seen_at.iter().max().unwrap();
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        carol.seen.iter().find(|v| pred(v)).map(|v| v["t"].clone())
    };
    eprintln!(
        "carol: both videos decoding {both} ms after connect() started (alice {} ms, bob {} ms); \
         signalConnected {:?}, connected {:?}, first trackSubscribed {:?}, first video packet {:?}; \
         PLIs the SFU sent {plis:?}; carol's PLIs/NACKs/lost at first decode {:?} (a PLI \
         there: she had to ask for a keyframe, e.g. one spent before her DTLS was up)",
        seen_at[0],
        seen_at[1],
        at(&|v| v["event"] == "signalConnected"),
        at(&|v| v["event"] == "connected"),
        at(&|v| v["event"] == "trackSubscribed"),
        at(&|v| v["event"] == "inbound"
            && v["kind"] == "video"
            && v["packetsReceived"].as_u64() > Some(0)),
        first_decoded
            .iter()
            .map(|v| (&v["pliCount"], &v["nackCount"], &v["packetsLost"]))
            .collect::<Vec<_>>(),
    );
    assert!(both <= 2_000, "carol saw both videos only after {both} ms");

    for page in [alice, bob, carol] {
        page.close().await;
    }
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
}

/// Step 6 of the brief: mute/unmute and unpublish reach a subscriber; so does the publisher's
/// departure.
#[tokio::test]
async fn mute_unmute_unpublish_and_leave_reach_the_subscriber() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 120).await;
    let is = |event: &'static str, source: &'static str| {
        move |v: &serde_json::Value| {
            v["event"] == event && v["identity"] == "alice" && v["source"] == source
        }
    };
    bob.wait_for("camera subscribed", T, is("trackSubscribed", "camera"))
        .await;
    bob.wait_for(
        "microphone subscribed",
        T,
        is("trackSubscribed", "microphone"),
    )
    .await;
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(0)
    })
    .await;
    alice
        .wait_for("camera published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "camera"
        })
        .await;

    alice.command("mute camera", T).await;
    bob.wait_for("camera muted", T, is("trackMuted", "camera"))
        .await;
    alice.command("unmute camera", T).await;
    bob.wait_for("camera unmuted", T, is("trackUnmuted", "camera"))
        .await;
    // Video flows again after the unmute.
    let now = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(0)
        })
        .await;
    let n = now["framesDecoded"].as_u64().unwrap();
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(n + 10)
    })
    .await;

    alice.command("mute microphone", T).await;
    bob.wait_for("microphone muted", T, is("trackMuted", "microphone"))
        .await;

    alice.command("unpublish camera", T).await;
    bob.wait_for("camera unsubscribed", T, is("trackUnsubscribed", "camera"))
        .await;
    bob.wait_for("camera unpublished", T, is("trackUnpublished", "camera"))
        .await;
    sfu.wait_metric("sfu_tracks", T, |v| v == 1.0)
        .await
        .unwrap();
    // The microphone is still there.
    assert!(!bob
        .seen
        .iter()
        .any(|v| is("trackUnpublished", "microphone")(v)));

    alice.close().await;
    bob.wait_for("alice disconnected", T, |v| {
        v["event"] == "participantDisconnected" && v["identity"] == "alice"
    })
    .await;
    bob.wait_for(
        "microphone unsubscribed",
        T,
        is("trackUnsubscribed", "microphone"),
    )
    .await;
    bob.close().await;
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
}

/// Simulcast layer switching: the subscriber's requested quality picks the layer forwarded; the
/// switch waits for a keyframe, so the picture changes size without freezing.
#[tokio::test]
async fn the_forwarded_layer_follows_the_subscribers_requested_quality() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 120).await;
    let top = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["frameWidth"].as_u64() == Some(1280)
        })
        .await;
    eprintln!("high: {top}");

    bob.command("quality low", T).await;
    let low = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["frameWidth"].as_u64() == Some(320)
        })
        .await;
    eprintln!(
        "low after {} ms: {low}",
        low["t"].as_u64().unwrap() - top["t"].as_u64().unwrap()
    );
    bob.command("quality medium", T).await;
    let medium = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["frameWidth"].as_u64() == Some(640)
        })
        .await;
    eprintln!("medium: {medium}");
    bob.command("quality high", T).await;
    let high = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["frameWidth"].as_u64() == Some(1280)
        })
        .await;
    let n = high["framesDecoded"].as_u64().unwrap();
    let later = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(n + 30)
        })
        .await;
    eprintln!("high again: {high}; later: {later}");
    // Each switch was taken at a keyframe: no freezes, and the decoder did not have to ask for
    // more than a few keyframes of its own.
    assert_eq!(
        later["freezeCount"].as_u64(),
        top["freezeCount"].as_u64(),
        "{later}"
    );
    assert!(later["pliCount"].as_u64().unwrap() <= 5, "{later}");
    sfu.wait_metric("sfu_plis_sent_total", T, |v| v >= 3.0)
        .await
        .unwrap();
    // Bob's video was protected by the SFU itself (Chrome negotiates AES-CM with HMAC-SHA1),
    // not by `rtc`'s pipeline: what Chrome decoded above went that way.
    assert!(sfu.metric("sfu_srtp_own_total").await.unwrap() >= 1.0);
    assert_eq!(sfu.metric("sfu_srtp_own_refused_total").await, Some(0.0));
    alice.close().await;
    bob.close().await;
}

/// Chat and data: relayed with the sender's identity; a destination list is respected; a packet
/// whose bytes claim another participant's identity and sid arrives stamped with the real sender.
#[tokio::test]
async fn chat_text_and_data_are_relayed_with_the_senders_identity() {
    let sfu = spawn_sfu().await;
    let mut pages = Vec::new();
    for who in ["alice", "bob", "carol"] {
        let mut page = Browser::launch("connect", &sfu.ws_url(), &sfu.token(who, "r"), 90).await;
        page.wait_event("connectResolved", T).await;
        pages.push(page);
    }
    let [alice, bob, carol] = &mut pages[..] else {
        unreachable!()
    };
    alice.command("chat hello room", T).await;
    alice.command("text streamed hello", T).await;
    for page in [&mut *bob, &mut *carol] {
        let chat = page.wait_event("chatMessage", T).await;
        assert_eq!(chat["identity"], "alice", "{chat}");
        assert_eq!(chat["text"], "hello room");
        let text = page.wait_event("textReceived", T).await;
        assert_eq!(text["identity"], "alice", "{text}");
        assert_eq!(text["text"], "streamed hello");
    }
    // To Bob only, then to everyone: the reliable channel keeps order, so Carol getting the
    // second without the first shows the first was never sent to her.
    alice.command("data bob for bob only", T).await;
    alice.command("data * for everyone", T).await;
    for page in [&mut *bob, &mut *carol] {
        page.wait_for("data for everyone", T, |v| {
            v["event"] == "dataReceived" && v["text"] == "for everyone"
        })
        .await;
    }
    let got = |page: &Browser, text: &str| {
        page.seen
            .iter()
            .any(|v| v["event"] == "dataReceived" && v["text"] == text && v["identity"] == "alice")
    };
    assert!(got(bob, "for bob only") && got(bob, "for everyone"));
    assert!(!got(carol, "for bob only"), "{:?}", carol.tail());
    // Nobody hears their own messages back (livekit-client itself echoes a sent chat message
    // locally, once).
    let own = |event: &str| alice.seen.iter().filter(|v| v["event"] == event).count();
    assert_eq!(own("chatMessage"), 1, "{:?}", alice.tail());
    assert_eq!(
        own("dataReceived") + own("textReceived"),
        0,
        "{:?}",
        alice.tail()
    );
    // Alice's page puts Bob's identity and sid on the wire; the others still see Alice.
    let bob_sid = bob.wait_event("connectResolved", T).await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .command(&format!("forge bob {bob_sid} claims to be bob"), T)
        .await;
    alice.wait_event("forged", T).await;
    for page in [&mut *bob, &mut *carol] {
        let forged = page
            .wait_for("the forged packet", T, |v| {
                v["event"] == "dataReceived" && v["text"] == "claims to be bob"
            })
            .await;
        assert_eq!(forged["identity"], "alice", "{forged}");
    }
    sfu.wait_metric("sfu_data_relayed_total", T, |v| v >= 5.0)
        .await
        .unwrap();
    for page in pages {
        page.close().await;
    }
}

/// Step 8 of the plan: the server drops a subscriber's socket (no `leave`, as a network failure
/// would); with resume disabled livekit-client reconnects from scratch and media flows again.
#[tokio::test]
async fn a_dropped_socket_is_followed_by_a_full_reconnect_and_media_flows_again() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 120).await;
    bob.wait_event("connected", T).await;
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(0)
    })
    .await;

    assert!(sfu.hub.drop_connection("r", "bob"));
    assert!(!sfu.hub.drop_connection("r", "nobody"));
    bob.wait_event("reconnecting", T).await;
    bob.wait_event("reconnected", T).await;
    assert!(
        !bob.seen.iter().any(|v| v["event"] == "disconnected"),
        "{:#?}",
        bob.tail()
    );
    let first = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(0)
        })
        .await;
    let n = first["framesDecoded"].as_u64().unwrap();
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(n + 10)
    })
    .await;
    sfu.wait_metric("sfu_participants", T, |v| v == 2.0)
        .await
        .unwrap();
    // Bob joined again over a new socket (no resume).
    assert_eq!(sfu.metric("sfu_signal_connections_total").await, Some(3.0));
    alice.close().await;
    bob.close().await;
}

/// Screen share is a track source of its own: the subscriber sees a `screen_share` publication
/// beside the camera, decodes it, and sees it go when it is unpublished.
#[tokio::test]
async fn a_screen_share_is_published_decoded_and_unpublished_beside_the_camera() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 120).await;
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(0)
    })
    .await;
    alice.command("screenshare", T).await;
    let published = alice
        .wait_for("screen share published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "screen_share"
        })
        .await;
    let subscribed = bob
        .wait_for("screen share subscribed", T, |v| {
            v["event"] == "trackSubscribed"
                && v["identity"] == "alice"
                && v["source"] == "screen_share"
        })
        .await;
    assert_eq!(subscribed["sid"], published["sid"], "{subscribed}");
    assert_eq!(subscribed["kind"], "video");
    let first = bob
        .wait_inbound("alice", "screen_share", T, |v| {
            v["framesDecoded"].as_u64() > Some(0) && v["frameWidth"].as_u64() == Some(1280)
        })
        .await;
    let n = first["framesDecoded"].as_u64().unwrap();
    bob.wait_inbound("alice", "screen_share", T, |v| {
        v["framesDecoded"].as_u64() > Some(n + 10)
    })
    .await;
    // The camera keeps flowing alongside.
    let cam = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(0)
        })
        .await;
    let c = cam["framesDecoded"].as_u64().unwrap();
    bob.wait_inbound("alice", "camera", T, |v| {
        v["framesDecoded"].as_u64() > Some(c + 10)
    })
    .await;
    sfu.wait_metric("sfu_tracks", T, |v| v == 3.0)
        .await
        .unwrap();
    alice.command("unpublish screen_share", T).await;
    bob.wait_for("screen share unpublished", T, |v| {
        v["event"] == "trackUnpublished"
            && v["identity"] == "alice"
            && v["source"] == "screen_share"
    })
    .await;
    sfu.wait_metric("sfu_tracks", T, |v| v == 2.0)
        .await
        .unwrap();
    assert!(!bob
        .seen
        .iter()
        .any(|v| v["event"] == "trackUnpublished" && v["source"] == "camera"));
    alice.close().await;
    bob.close().await;
}
