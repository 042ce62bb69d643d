//! The existing web client's video flow through the real router: nginx rendered from
//! deploy/routes.toml serves the client's files from its own origin, sends `/video/api/url` and
//! `/video/getToken` to the API and `/rtc` to the SFU. A member booked into the room gets a token
//! (from the header, or from its cookie on a same-origin request) that joins the SFU in Chromium;
//! everything else is refused in the error envelope, never with a token.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use ppodok_api::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{spawn_sfu_with, Browser, TestSfu};
use crate::with_api::{TestApi, LIVEKIT_SECRET};

const T: Duration = Duration::from_secs(30);
const NGINX: &str = "/usr/sbin/nginx";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// nginx running the config rendered from deploy/routes.toml, on local ports.
struct Router {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Router {
    async fn start(listen: u16, api_port: u16, sfu: &TestSfu) -> Router {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install nginx-light"
        );
        let dir = std::env::temp_dir().join(format!("ppodok-router-{}", uuid::Uuid::new_v4()));
        let web = dir.join("web");
        std::fs::create_dir_all(&web).unwrap();
        write_web_client(&web);

        let text = std::fs::read_to_string(repo_dir().join("deploy/routes.toml")).unwrap();
        let mut table = ppodok_deploy_render::load(&text).expect("deploy/routes.toml is valid");
        table.router.listen_port = listen;
        for target in &mut table.targets {
            target.upstream_host = "127.0.0.1".into();
            if target.node_id.is_some() {
                // Node-addressed routes (several nodes): this test runs the one node.
                target.port = sfu.port;
                target.local_port = None;
                continue;
            }
            match target.name.as_str() {
                "api" => target.port = api_port,
                "sfu" => target.port = sfu.port,
                "web" => target.root = Some(web.display().to_string()),
                other => panic!("a target this test does not know: {other}"),
            }
        }
        ppodok_deploy_render::validate(&table).expect("still valid on local ports");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, ppodok_deploy_render::render_nginx(&table)).unwrap();
        // One process (no master and workers), so killing it on drop leaves nothing behind:
        // orphaned workers would keep every descriptor this test inherited open.
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let mut router = Router {
            child,
            dir,
            base: format!("http://127.0.0.1:{listen}"),
        };
        let deadline = tokio::time::Instant::now() + T;
        while reqwest::get(format!("{}/video/api/url", router.base))
            .await
            .map_or(true, |r| r.status() != StatusCode::OK)
        {
            let exited = router.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "nginx never answered; {}",
                std::fs::read_to_string(router.dir.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        router
    }
}

/// The "built client": the harness page (tests/sfu-browser/run.mjs) and livekit-client's bundle.
fn write_web_client(root: &Path) {
    let bundle =
        repo_dir().join("tests/sfu-browser/node_modules/livekit-client/dist/livekit-client.umd.js");
    std::fs::copy(&bundle, root.join("livekit-client.umd.js"))
        .unwrap_or_else(|e| panic!("{}: {e} (run `make sfu-browser-deps`)", bundle.display()));
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><meta charset=\"utf-8\"><title>sfu test</title>\n\
         <script src=\"/livekit-client.umd.js\"></script><body></body>",
    )
    .unwrap();
}

struct Refusal<'a> {
    what: &'a str,
    query: String,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_clients_video_flow_works_through_the_router_and_refuses_the_rest() {
    use reqwest::Method;
    // Day-long rooms in UTC (see with_api.rs): today's room holds the real time.
    let real_now = Utc::now();
    let today: DateTime<Utc> = real_now.duration_trunc(TimeDelta::days(1)).unwrap();
    let listen = free_port();
    let router_ws = format!("ws://127.0.0.1:{listen}");
    let api = TestApi::spawn_with(Clock::manual(today - TimeDelta::hours(1)), |s| {
        s.livekit.sfu_url = router_ws.clone();
    })
    .await;
    let sfu = spawn_sfu_with(|s| {
        s.livekit.api_key = "devkey".into();
        s.livekit.api_secret = LIVEKIT_SECRET.into();
    })
    .await;
    let api_port: u16 = api.base.rsplit(':').next().unwrap().parse().unwrap();
    let router = Router::start(listen, api_port, &sfu).await;

    let alice = api.dev_login("앨리스").await;
    let bob = api.dev_login("밥").await;
    let carol = api.dev_login("캐롤").await;
    let member_id = |token: &str| {
        let api = &api;
        let token = token.to_owned();
        async move {
            api.call(Method::GET, "/api/v1/members", &token, Value::Null)
                .await["memberId"]
                .as_i64()
                .map(|id| id.to_string())
                .expect("memberId")
        }
    };
    let (alice_id, bob_id) = (member_id(&alice).await, member_id(&bob).await);
    let group = api
        .call(
            Method::POST,
            "/api/v1/groups",
            &alice,
            json!({ "groupName": "옛 화상", "secret": false, "password": null }),
        )
        .await["groupId"]
        .as_i64()
        .unwrap();
    for who in [&bob, &carol] {
        api.call(
            Method::POST,
            &format!("/api/v1/groups/{group}"),
            who,
            json!({ "password": null }),
        )
        .await;
    }
    let book = |who: &str, start: DateTime<Utc>| {
        let api = &api;
        let who = who.to_owned();
        async move {
            api.call(
                Method::POST,
                "/api/v1/rooms/reservations",
                &who,
                json!({ "groupId": group, "startTime": start.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string() }),
            )
            .await["roomId"]
                .as_i64()
                .unwrap()
        }
    };
    let room = book(&alice, today).await;
    assert_eq!(book(&bob, today).await, room);
    let tomorrows = book(&alice, today + TimeDelta::days(1)).await;
    api.clock.set(real_now - TimeDelta::minutes(1));

    let http = reqwest::Client::new();
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let req = headers
            .into_iter()
            .fold(http.get(format!("{}{path}", router.base)), |r, (k, v)| {
                r.header(k, v)
            });
        async move {
            let res = req.send().await.expect("the router answers");
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Where the SFU is: the router's own origin, whose /rtc goes to the SFU.
    let (status, body) = get("/video/api/url".into(), vec![]).await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &json!({ "url": router_ws }))
    );

    // A token with the header: the query's identity and name are ignored.
    let mallory = format!("/video/getToken?identity=mallory&name=mallory&roomName={room}");
    let (status, body) = get(
        mallory.clone(),
        vec![("authorization", format!("Bearer {alice}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity"], alice_id.as_str());
    let claims = sfu
        .keys
        .verify_access_token(body["accessToken"].as_str().unwrap())
        .expect("a token the SFU accepts");
    assert_eq!(claims.sub, alice_id);
    assert_eq!(claims.name, "앨리스");
    assert_eq!(claims.video.expect("a video grant").room, room.to_string());

    // Everything else is refused in the envelope, never with a token.
    let cookie = |token: &str| ("cookie", format!("accessToken={token}"));
    let refusals = [
        Refusal {
            what: "no credentials",
            query: mallory.clone(),
            headers: vec![],
            status: StatusCode::UNAUTHORIZED,
        },
        Refusal {
            what: "a member without a reservation",
            query: mallory.clone(),
            headers: vec![("authorization", format!("Bearer {carol}"))],
            status: StatusCode::FORBIDDEN,
        },
        Refusal {
            what: "outside the room's window",
            query: format!("/video/getToken?roomName={tomorrows}"),
            headers: vec![("authorization", format!("Bearer {alice}"))],
            status: StatusCode::BAD_REQUEST,
        },
        Refusal {
            what: "a cookie sent from another site",
            query: mallory.clone(),
            headers: vec![
                cookie(&alice),
                ("origin", "http://evil.example".into()),
                ("sec-fetch-site", "cross-site".into()),
            ],
            status: StatusCode::FORBIDDEN,
        },
        Refusal {
            what: "a cookie sent from another origin of this site",
            query: mallory.clone(),
            headers: vec![
                cookie(&alice),
                ("origin", "http://127.0.0.1:1".into()),
                ("sec-fetch-site", "same-site".into()),
            ],
            status: StatusCode::FORBIDDEN,
        },
        Refusal {
            what: "a cookie with another Origin (a browser without Sec-Fetch-Site)",
            query: mallory.clone(),
            headers: vec![cookie(&alice), ("origin", "http://evil.example".into())],
            status: StatusCode::FORBIDDEN,
        },
        Refusal {
            what: "a cookie on a request that does not say where it comes from",
            query: mallory.clone(),
            headers: vec![cookie(&alice)],
            status: StatusCode::FORBIDDEN,
        },
        Refusal {
            what: "no roomName",
            query: "/video/getToken?identity=x".into(),
            headers: vec![("authorization", format!("Bearer {alice}"))],
            status: StatusCode::BAD_REQUEST,
        },
    ];
    for r in refusals {
        let (status, body) = get(r.query, r.headers).await;
        assert_eq!(status, r.status, "{}: {body}", r.what);
        assert_eq!(body["code"], "fail", "{}: {body}", r.what);
        assert!(body["message"].is_string(), "{}: {body}", r.what);
        assert!(body.get("accessToken").is_none(), "{}: {body}", r.what);
    }

    // The router serves the client's files, and its own routes (an invite link) load the app.
    for path in ["/", "/invite/Q7vTz2LmK9"] {
        let res = http
            .get(format!("{}{path}", router.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["content-type"], "text/html", "{path}");
        assert!(res.text().await.unwrap().contains("livekit-client.umd.js"));
    }
    let (status, body) = get("/api/v1/no-such-route".into(), vec![]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("fail"))
    );
    let (status, _) = get("/video/health".into(), vec![]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the SFU still answers the rest of /video"
    );
    for denied in ["/socket.io/?EIO=4&transport=polling", "/metrics"] {
        let (status, _) = get(denied.into(), vec![]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{denied}");
    }

    // In Chromium, each page served by the router keeps its token in the client's cookie, asks
    // /video/api/url and /video/getToken as the old client does (identity = its nickname), joins
    // the SFU through the router and decodes the other member's video.
    let launch = |token: &str, nickname: &str| {
        let legacy = json!({
            "cookie": token, "roomName": room.to_string(), "identity": nickname, "name": nickname,
        })
        .to_string();
        let origin = router.base.clone();
        async move {
            Browser::launch_with_env(
                "publish",
                "-",
                "-",
                90,
                &[
                    ("SFU_BROWSER_ORIGIN", origin.as_str()),
                    ("SFU_BROWSER_LEGACY", legacy.as_str()),
                ],
            )
            .await
        }
    };
    let mut a = launch(&alice, "앨리스").await;
    let got = a.wait_event("legacyToken", T).await;
    assert_eq!(
        (
            got["status"].as_u64(),
            got["identity"].as_str(),
            got["url"].as_str()
        ),
        (Some(200), Some(alice_id.as_str()), Some(router_ws.as_str())),
        "{got}"
    );
    a.wait_event("connected", T).await;
    let mut b = launch(&bob, "앨리스").await;
    let got = b.wait_event("legacyToken", T).await;
    assert_eq!(
        got["identity"],
        bob_id.as_str(),
        "the same nickname, yet its own identity"
    );
    let signal = b.wait_event("signalConnected", T).await;
    assert_eq!(signal["remotes"], json!([alice_id]));
    for (page, other) in [(&mut a, &bob_id), (&mut b, &alice_id)] {
        let first = page
            .wait_inbound(other, "camera", T, |v| {
                v["framesDecoded"].as_u64() > Some(0) && v["frameWidth"].as_u64() > Some(0)
            })
            .await;
        let n = first["framesDecoded"].as_u64().unwrap();
        page.wait_inbound(other, "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(n + 10)
        })
        .await;
    }
    a.close().await;
    b.close().await;
    drop(router);
}
