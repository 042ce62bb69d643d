//! The server API (Twirp RoomService) and participants' self-updates: driven by the official
//! Node livekit-server-sdk with livekit-client pages watching, and by raw JSON over HTTP with raw
//! signalling clients watching.

use std::time::Duration;

use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use ppodok_tokens::livekit::VideoGrant;
use serde_json::{json, Value};

use crate::helpers::{now, spawn_sfu, Browser, ServerApi, TestSfu};
use crate::signal::{connect, next_non_trickle, send};

const T: Duration = Duration::from_secs(30);

fn token_with(sfu: &TestSfu, identity: &str, grant: VideoGrant) -> String {
    sfu.keys
        .mint_access_token(identity, identity, grant, now(), 600)
}

fn may_update_own(room: &str) -> VideoGrant {
    VideoGrant {
        can_update_own_metadata: Some(true),
        ..VideoGrant::join(room)
    }
}

/// Polls the SDK's `listParticipants` until `n` are in.
async fn until_participants(api: &mut ServerApi, room: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let list = api
            .ok(json!({"call":"listParticipants","args":[room]}))
            .await;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() == n {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room} has {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_node_server_sdk_drives_every_room_service_method_and_pages_see_the_effects() {
    let sfu = spawn_sfu().await;
    let mut api = ServerApi::start(&sfu);

    let created = api
        .ok(json!({"call":"createRoom","args":[{"name":"api","emptyTimeout":60,"maxParticipants":5,"metadata":"hello"}]}))
        .await;
    assert_eq!(created["name"], "api");
    assert_eq!(created["emptyTimeout"], 60);
    assert_eq!(created["maxParticipants"], 5);
    assert_eq!(created["metadata"], "hello");

    let mut alice =
        Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "api"), 120).await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "api"), 120).await;
    alice.wait_event("connected", T).await;
    bob.wait_event("connected", T).await;
    let cam = alice
        .wait_for("camera published", T, |v| {
            v["event"] == "localTrackPublished" && v["source"] == "camera"
        })
        .await;
    let cam_sid = cam["sid"].as_str().unwrap().to_owned();
    bob.wait_for("alice's camera", T, |v| {
        v["event"] == "trackSubscribed" && v["sid"] == cam_sid.as_str()
    })
    .await;

    // Listing.
    let listed = api.ok(json!({"call":"listRooms","args":[]})).await;
    let rooms = listed.as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{listed}");
    assert_eq!(rooms[0]["name"], "api");
    assert_eq!(rooms[0]["numParticipants"], 2);
    assert_eq!(
        api.ok(json!({"call":"listRooms","args":[["nope"]]})).await,
        json!([])
    );
    let people = until_participants(&mut api, "api", 2).await;
    let mut identities: Vec<_> = people.iter().map(|p| p["identity"].clone()).collect();
    identities.sort_by_key(|v| v.to_string());
    assert_eq!(identities, vec![json!("alice"), json!("bob")]);
    let got = api
        .ok(json!({"call":"getParticipant","args":["api","alice"]}))
        .await;
    assert_eq!(got["identity"], "alice");
    assert!(got["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["sid"] == cam_sid.as_str()));
    let missing = api
        .call(json!({"call":"getParticipant","args":["api","nobody"]}))
        .await;
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");

    // Mute: everyone sees alice's camera muted.
    let muted = api
        .ok(json!({"call":"mutePublishedTrack","args":["api","alice",cam_sid,true]}))
        .await;
    assert_eq!(muted["muted"], true);
    bob.wait_for("camera muted", T, |v| {
        v["event"] == "trackMuted" && v["sid"] == cam_sid.as_str()
    })
    .await;

    // Data: to the room with a topic, then to one identity.
    api.ok(json!({"call":"sendData","args":["api",{"$text":"to all"},0,{"topic":"news"}]}))
        .await;
    for page in [&mut alice, &mut bob] {
        let got = page
            .wait_for("data to all", T, |v| {
                v["event"] == "dataReceived" && v["text"] == "to all"
            })
            .await;
        assert_eq!(got["topic"], "news");
    }
    api.ok(json!({"call":"sendData","args":["api",{"$text":"for bob"},0,{"destinationIdentities":["bob"]}]}))
        .await;
    api.ok(json!({"call":"sendData","args":["api",{"$text":"for alice"},0,{"destinationIdentities":["alice"]}]}))
        .await;
    bob.wait_for("data for bob", T, |v| {
        v["event"] == "dataReceived" && v["text"] == "for bob"
    })
    .await;
    alice
        .wait_for("data for alice", T, |v| {
            v["event"] == "dataReceived" && v["text"] == "for alice"
        })
        .await;
    // Sent before "for alice" on the same ordered channel: had it been delivered, it was seen.
    assert!(!alice.seen.iter().any(|v| v["text"] == "for bob"));

    // Participant and room updates reach every page.
    let updated = api
        .ok(json!({"call":"updateParticipant","args":["api","bob",{"metadata":"m1","name":"Bobby","attributes":{"role":"host"}}]}))
        .await;
    assert_eq!(updated["name"], "Bobby");
    for page in [&mut alice, &mut bob] {
        page.wait_for("metadata", T, |v| {
            v["event"] == "metadataChanged" && v["identity"] == "bob" && v["metadata"] == "m1"
        })
        .await;
        page.wait_for("name", T, |v| {
            v["event"] == "nameChanged" && v["identity"] == "bob" && v["name"] == "Bobby"
        })
        .await;
        page.wait_for("attributes", T, |v| {
            v["event"] == "attributesChanged"
                && v["identity"] == "bob"
                && v["attributes"]["role"] == "host"
        })
        .await;
    }
    let room = api
        .ok(json!({"call":"updateRoomMetadata","args":["api","topic 2"]}))
        .await;
    assert_eq!(room["metadata"], "topic 2");
    for page in [&mut alice, &mut bob] {
        page.wait_for("room metadata", T, |v| {
            v["event"] == "roomMetadataChanged" && v["metadata"] == "topic 2"
        })
        .await;
    }
    api.ok(json!({"call":"updateSubscriptions","args":["api","bob",[cam_sid],false]}))
        .await;

    // Tokens without the grant are refused by the SDK with a permission error.
    for grant in [
        json!({"canSubscribe":true,"room":"api"}),
        json!({"roomAdmin":true,"room":"other"}),
    ] {
        let denied = api
            .call(json!({"as":grant,"call":"listParticipants","args":["api"]}))
            .await;
        assert_eq!(denied["error"]["code"], "permission_denied", "{denied}");
        assert_eq!(denied["error"]["status"], 403);
    }
    let denied = api
        .call(json!({"as":{"roomAdmin":true,"room":"api"},"call":"listRooms","args":[]}))
        .await;
    assert_eq!(denied["error"]["code"], "permission_denied", "{denied}");

    // Remove: bob's page is told why; alice sees him go.
    api.ok(json!({"call":"removeParticipant","args":["api","bob"]}))
        .await;
    let gone = bob.wait_event("disconnected", T).await;
    assert_eq!(gone["reasonName"], "PARTICIPANT_REMOVED", "{gone}");
    alice
        .wait_for("bob leaves", T, |v| {
            v["event"] == "participantDisconnected" && v["identity"] == "bob"
        })
        .await;
    until_participants(&mut api, "api", 1).await;

    // Delete: everyone out, the room gone.
    api.ok(json!({"call":"deleteRoom","args":["api"]})).await;
    let gone = alice.wait_event("disconnected", T).await;
    assert_eq!(gone["reasonName"], "ROOM_DELETED", "{gone}");
    assert_eq!(
        api.ok(json!({"call":"listRooms","args":[]})).await,
        json!([])
    );
    sfu.wait_metric("sfu_participants", T, |v| v == 0.0)
        .await
        .unwrap();
    assert!(
        sfu.metric(
            "sfu_twirp_requests_total{method=\"ListParticipants\",outcome=\"permission_denied\"}"
        )
        .await
            >= Some(2.0)
    );
    assert!(
        sfu.metric("sfu_twirp_requests_total{method=\"RemoveParticipant\",outcome=\"ok\"}")
            .await
            == Some(1.0)
    );
    alice.close().await;
    bob.close().await;
}

async fn post(sfu: &TestSfu, method: &str, token: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!(
            "{}/twirp/livekit.RoomService/{method}",
            sfu.http_url()
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn api_token(sfu: &TestSfu, grant: VideoGrant) -> String {
    sfu.keys.mint_access_token("", "", grant, now(), 600)
}

/// The next message of one of the kinds `pick` accepts (others are skipped).
async fn next_matching<T>(
    ws: &mut crate::signal::Ws,
    what: &str,
    pick: impl Fn(Out) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {what}");
        if let Some(v) = pick(next_non_trickle(ws).await) {
            return v;
        }
    }
}

#[tokio::test]
async fn raw_json_over_http_drives_the_same_calls_and_raw_clients_see_the_effects() {
    let sfu = spawn_sfu().await;
    let creator = api_token(
        &sfu,
        VideoGrant {
            room_create: true,
            room_list: true,
            ..Default::default()
        },
    );
    let admin = api_token(
        &sfu,
        VideoGrant {
            room_admin: true,
            room: "raw".into(),
            ..Default::default()
        },
    );
    let (status, room) = post(
        &sfu,
        "CreateRoom",
        &creator,
        json!({"name":"raw","max_participants":2,"metadata":"m"}),
    )
    .await;
    assert_eq!(status, 200, "{room}");
    // snake_case in, protobuf JSON (camelCase) out.
    assert_eq!(room["maxParticipants"], 2);

    let mut a = connect(&sfu, &sfu.token("alice", "raw")).await.unwrap();
    let mut b = connect(&sfu, &sfu.token("bob", "raw")).await.unwrap();
    for ws in [&mut a, &mut b] {
        next_matching(ws, "join", |m| matches!(m, Out::Join(_)).then_some(())).await;
    }
    // Full: a third is refused before the upgrade, with the reason.
    let refused = connect(&sfu, &sfu.token("carol", "raw")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 403);
            let body =
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("room is full"), "{body}");
        }
        other => panic!("a third participant got {:?}", other.map(|_| "a socket")),
    }
    let validate = reqwest::get(format!(
        "{}/rtc/validate?access_token={}",
        sfu.http_url(),
        sfu.token("carol", "raw")
    ))
    .await
    .unwrap();
    assert_eq!(validate.status().as_u16(), 403);

    let (status, list) = post(&sfu, "ListParticipants", &admin, json!({"room":"raw"})).await;
    assert_eq!(status, 200);
    assert_eq!(list["participants"].as_array().unwrap().len(), 2);
    let (status, p) = post(
        &sfu,
        "GetParticipant",
        &admin,
        json!({"room":"raw","identity":"bob"}),
    )
    .await;
    assert_eq!((status, p["identity"].as_str()), (200, Some("bob")));
    let (status, rooms) = post(&sfu, "ListRooms", &creator, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"][0]["numParticipants"], 2);

    let (status, _) = post(
        &sfu,
        "UpdateParticipant",
        &admin,
        json!({"room":"raw","identity":"bob","metadata":"x","attributes":{"k":"v"}}),
    )
    .await;
    assert_eq!(status, 200);
    for ws in [&mut a, &mut b] {
        let info = next_matching(ws, "bob's update", |m| match m {
            Out::Update(u) => u
                .participants
                .into_iter()
                .find(|p| p.identity == "bob" && p.metadata == "x"),
            _ => None,
        })
        .await;
        assert_eq!(info.attributes["k"], "v");
    }
    let (status, _) = post(
        &sfu,
        "UpdateRoomMetadata",
        &admin,
        json!({"room":"raw","metadata":"new"}),
    )
    .await;
    assert_eq!(status, 200);
    let room = next_matching(&mut a, "room update", |m| match m {
        Out::RoomUpdate(u) => u.room,
        _ => None,
    })
    .await;
    assert_eq!(room.metadata, "new");

    // SendData: base64 bytes in JSON, to bob only.
    let (status, _) = post(&sfu, "SendData", &admin, json!({"room":"raw","data":"aGk=","kind":"RELIABLE","destinationIdentities":["bob"],"topic":"t"})).await;
    assert_eq!(status, 200);

    // A participant token is no admin token; a forged one is no token.
    let (status, err) = post(
        &sfu,
        "ListParticipants",
        &sfu.token("alice", "raw"),
        json!({"room":"raw"}),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let (status, err) = post(&sfu, "ListParticipants", "garbage", json!({"room":"raw"})).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, err) = post(&sfu, "ListParticipants", &admin, json!({"room": 5})).await;
    assert_eq!((status, err["code"].as_str()), (400, Some("malformed")));
    let (status, err) = post(
        &sfu,
        "MutePublishedTrack",
        &admin,
        json!({"room":"raw","identity":"bob","trackSid":"TR_x","muted":true}),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));

    let (status, _) = post(
        &sfu,
        "RemoveParticipant",
        &admin,
        json!({"room":"raw","identity":"bob"}),
    )
    .await;
    assert_eq!(status, 200);
    let leave = next_matching(&mut b, "leave", |m| match m {
        Out::Leave(l) => Some(l),
        _ => None,
    })
    .await;
    assert_eq!(
        leave.reason,
        lk::DisconnectReason::ParticipantRemoved as i32
    );
    let (status, _) = post(&sfu, "DeleteRoom", &creator, json!({"room":"raw"})).await;
    assert_eq!(status, 200);
    let leave = next_matching(&mut a, "leave", |m| match m {
        Out::Leave(l) => Some(l),
        _ => None,
    })
    .await;
    assert_eq!(leave.reason, lk::DisconnectReason::RoomDeleted as i32);
    let (_, rooms) = post(&sfu, "ListRooms", &creator, json!({})).await;
    assert_eq!(rooms, json!({}));
}

#[tokio::test]
async fn a_self_update_is_answered_with_its_request_id_allowed_or_not() {
    let sfu = spawn_sfu().await;
    let mut allowed = connect(&sfu, &token_with(&sfu, "alice", may_update_own("r")))
        .await
        .unwrap();
    let mut plain = connect(&sfu, &sfu.token("bob", "r")).await.unwrap();
    for ws in [&mut allowed, &mut plain] {
        next_matching(ws, "join", |m| matches!(m, Out::Join(_)).then_some(())).await;
    }
    let update = |request_id| {
        In::UpdateMetadata(lk::UpdateParticipantMetadata {
            metadata: "busy".into(),
            name: "Al".into(),
            attributes: [("mood".to_owned(), "ok".to_owned())].into(),
            request_id,
        })
    };
    send(&mut allowed, update(7)).await;
    let answer = next_matching(&mut allowed, "answer", |m| match m {
        Out::RequestResponse(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(answer.request_id, 7);
    assert_eq!(answer.reason, lk::request_response::Reason::Ok as i32);
    let seen = next_matching(&mut plain, "alice's update", |m| match m {
        Out::Update(u) => u.participants.into_iter().find(|p| p.identity == "alice"),
        _ => None,
    })
    .await;
    assert_eq!((seen.metadata.as_str(), seen.name.as_str()), ("busy", "Al"));
    assert_eq!(seen.attributes["mood"], "ok");

    send(&mut plain, update(9)).await;
    let answer = next_matching(&mut plain, "refusal", |m| match m {
        Out::RequestResponse(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(answer.request_id, 9);
    assert_eq!(
        answer.reason,
        lk::request_response::Reason::NotAllowed as i32
    );
}

#[tokio::test]
async fn in_the_browser_self_updates_resolve_promptly_and_reach_the_other_page() {
    let sfu = spawn_sfu().await;
    let mut alice = Browser::launch(
        "connect",
        &sfu.ws_url(),
        &token_with(&sfu, "alice", may_update_own("r")),
        90,
    )
    .await;
    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "r"), 90).await;
    alice.wait_event("connected", T).await;
    bob.wait_event("connected", T).await;
    bob.wait_for("alice", T, |v| {
        (v["event"] == "participantConnected" && v["identity"] == "alice")
            || ((v["event"] == "signalConnected" || v["event"] == "connectResolved")
                && v["remotes"].as_array().unwrap().contains(&json!("alice")))
    })
    .await;
    for (cmd, event, check) in [
        (
            "setMetadata studying",
            "metadataChanged",
            json!({"metadata":"studying"}),
        ),
        ("setName Alice K", "nameChanged", json!({"name":"Alice K"})),
        (
            "setAttributes desk 7",
            "attributesChanged",
            json!({"attributes":{"desk":"7"}}),
        ),
    ] {
        let done = alice.command_outcome(cmd, T).await;
        assert_eq!(done["event"], "cmdDone", "{done}");
        assert!(done["ms"].as_u64().unwrap() < 1000, "{cmd} took {done}");
        let (key, want) = check.as_object().unwrap().iter().next().unwrap();
        let seen = bob
            .wait_for(event, T, |v| {
                v["event"] == event && v["identity"] == "alice" && &v[key] == want
            })
            .await;
        eprintln!("{cmd}: {}ms, seen {seen}", done["ms"]);
    }
    // Without canUpdateOwnMetadata: an error, promptly (not the SDK's 5 s timeout).
    let refused = bob.command_outcome("setMetadata nope", T).await;
    assert_eq!(refused["event"], "cmdError", "{refused}");
    assert!(refused["ms"].as_u64().unwrap() < 1000, "{refused}");
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn joins_beyond_max_participants_and_publishing_without_permission_fail_fast_in_the_browser()
{
    let sfu = spawn_sfu().await;
    let mut api = ServerApi::start(&sfu);
    api.ok(json!({"call":"createRoom","args":[{"name":"small","maxParticipants":1}]}))
        .await;
    let viewer = VideoGrant {
        can_publish: Some(false),
        ..VideoGrant::join("small")
    };
    let mut alice = Browser::launch(
        "publish",
        &sfu.ws_url(),
        &token_with(&sfu, "alice", viewer),
        60,
    )
    .await;
    let resolved = alice.wait_event("connectResolved", T).await;
    let failed = alice.wait_event("publishError", T).await;
    let took = failed["t"].as_i64().unwrap() - resolved["t"].as_i64().unwrap();
    assert!(took < 1000, "publish refusal took {took} ms: {failed}");
    assert!(!alice
        .seen
        .iter()
        .any(|v| v["event"] == "localTrackPublished"));

    let mut bob = Browser::launch("connect", &sfu.ws_url(), &sfu.token("bob", "small"), 60).await;
    let err = bob.wait_event("connectError", T).await;
    assert_eq!(err["reasonName"], "NotAllowed", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("room is full"),
        "{err}"
    );
    assert!(!bob.seen.iter().any(|v| v["event"] == "signalConnected"));
    assert!(sfu.metric("sfu_joins_refused_total").await >= Some(1.0));
    alice.close().await;
    bob.close().await;
}
