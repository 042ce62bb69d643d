use reqwest::{Client, Method, StatusCode};

use crate::helpers::{now, spawn_sfu};
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};

#[tokio::test]
async fn health_root_and_metrics_answer() {
    let sfu = spawn_sfu().await;
    let c = Client::new();
    for path in ["/", "/health", "/video/health"] {
        let res = c
            .get(format!("{}{path}", sfu.http_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let head = c.head(sfu.http_url()).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["access-control-allow-origin"], "*");
    let metrics = sfu.metrics().await;
    for name in [
        "sfu_rooms",
        "sfu_participants",
        "sfu_tracks",
        "sfu_signal_connections_total",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }
    let missing = c
        .get(format!("{}/nope", sfu.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rtc_validate_checks_the_token() {
    let sfu = spawn_sfu().await;
    let c = Client::new();
    let url = |t: &str| format!("{}/rtc/validate?access_token={t}", sfu.http_url());
    let ok = c.get(url(&sfu.token("alice", "r1"))).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["access-control-allow-origin"], "*");

    let other = LivekitKeys::new("devkey", "another-secret-another-secret-another");
    let forged = other.mint_access_token("alice", "", VideoGrant::join("r1"), now(), 600);
    let expired =
        sfu.keys
            .mint_access_token("alice", "", VideoGrant::join("r1"), now() - 7200, 600);
    let no_room = sfu
        .keys
        .mint_access_token("alice", "", VideoGrant::join(""), now(), 600);
    for bad in [
        forged.as_str(),
        expired.as_str(),
        no_room.as_str(),
        "garbage",
    ] {
        let res = c.get(url(bad)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
    }
    let none = c
        .get(format!("{}/rtc/validate", sfu.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    // Bearer header works too.
    let bearer = c
        .get(format!("{}/rtc/validate", sfu.http_url()))
        .bearer_auth(sfu.token("bob", "r1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn rtc_v1_is_404_with_cors_so_the_client_falls_back() {
    let sfu = spawn_sfu().await;
    let c = Client::new();
    for path in ["/rtc/v1", "/rtc/v1/validate"] {
        let res = c
            .get(format!(
                "{}{path}?access_token={}",
                sfu.http_url(),
                sfu.token("a", "r")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        let body = res.text().await.unwrap();
        assert!(!body.contains("requested room does not exist"));
        let pre = c
            .request(Method::OPTIONS, format!("{}{path}", sfu.http_url()))
            .header("Origin", "http://127.0.0.1:1")
            .header("Access-Control-Request-Method", "GET")
            .send()
            .await
            .unwrap();
        assert!(pre.status().is_success(), "{path} preflight");
        assert_eq!(pre.headers()["access-control-allow-origin"], "*");
        assert!(pre.headers().contains_key("access-control-allow-methods"));
    }
    // /rtc without an upgrade is not a page.
    let plain = c
        .get(format!("{}/rtc", sfu.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::NOT_FOUND);
}

/// LiveKit signalling has no subprotocol: a client offering one gets a prompt 400 (a browser
/// would abort a 101 naming none of its offers), a client offering none is upgraded as before.
#[tokio::test]
async fn rtc_refuses_a_websocket_subprotocol_offer() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error as WsError;
    let sfu = spawn_sfu().await;
    let url = format!(
        "{}/rtc?access_token={}&protocol=16",
        sfu.ws_url(),
        sfu.token("proto", "r1")
    );
    for offer in ["mqtt", "v12.stomp, mqtt"] {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", offer.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{offer}"),
            other => panic!("{offer}: expected a refused handshake, got {other:?}"),
        }
    }
    let (ws, res) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("no offer: upgraded");
    assert!(!res.headers().contains_key("sec-websocket-protocol"));
    drop(ws);
}

/// Node-addressed signalling: `/sfu/<this node>/rtc…` is this node's `/rtc…`; another node's id,
/// or anything but `/rtc` under the node's prefix, is not found. Draining needs the registry.
#[tokio::test]
async fn node_addressed_paths_reach_only_this_nodes_signalling() {
    let sfu = crate::helpers::spawn_sfu_with(|s| s.cluster.node_id = "ppodok-sfu-7".into()).await;
    let c = Client::new();
    let token = sfu.token("alice", "r1");
    let get = |path: String| {
        let c = c.clone();
        let url = format!("{}{path}", sfu.http_url());
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(
        get(format!(
            "/sfu/ppodok-sfu-7/rtc/validate?access_token={token}"
        ))
        .await,
        StatusCode::OK
    );
    assert_eq!(
        get(format!(
            "/sfu/ppodok-sfu-7/rtc/v1/validate?access_token={token}"
        ))
        .await,
        StatusCode::NOT_FOUND,
        "single-PC mode stays refused under the node prefix"
    );
    for path in [
        format!("/sfu/ppodok-sfu-8/rtc/validate?access_token={token}"),
        format!("/sfu/ppodok-sfu-77/rtc/validate?access_token={token}"),
        "/sfu/ppodok-sfu-7/metrics".to_owned(),
        "/sfu/ppodok-sfu-7/health".to_owned(),
    ] {
        assert_eq!(get(path.clone()).await, StatusCode::NOT_FOUND, "{path}");
    }
    let twirp = c
        .post(format!(
            "{}/sfu/ppodok-sfu-7/twirp/livekit.RoomService/ListRooms",
            sfu.http_url()
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(twirp.status(), StatusCode::NOT_FOUND);
    let drain = c
        .post(format!("{}/admin/drain", sfu.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        drain.status(),
        StatusCode::NOT_FOUND,
        "alone, a node has nothing to drain"
    );
}
