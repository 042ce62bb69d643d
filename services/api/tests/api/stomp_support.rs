//! STOMP clients for tests: the official `@stomp/stompjs` run by Node (a scripted client we did not
//! write the protocol of), and a raw WebSocket for frames no well-behaved library would send.

use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestApp;

pub const WAIT: Duration = Duration::from_secs(10);
const BROWSER_WAIT: Duration = Duration::from_secs(30);

fn script() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/stomp");
    assert!(
        dir.join("node_modules/@stomp/stompjs").exists(),
        "run `npm ci --prefix tests/stomp` (make test does) before the STOMP tests"
    );
    dir.join("client.mjs")
}

pub fn ws_url(app: &TestApp) -> String {
    format!("{}/bbodok-websocket", app.base.replace("http://", "ws://"))
}

/// Where the `@stomp/stompjs` session runs, and what it offers as WebSocket subprotocols.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// Node with `ws`: offers no subprotocol.
    Node,
    /// Headless Chromium, stompjs opening the socket itself: offers `v10.stomp, v11.stomp,
    /// v12.stomp`, as the existing web client does, and the browser enforces the answer.
    Browser,
    /// Headless Chromium offering exactly these subprotocols (none if empty).
    BrowserOffering(&'static [&'static str]),
}

/// A `@stomp/stompjs` client in a Node process (itself, or driving a Chromium page).
pub struct StompJs {
    /// How long `next` waits for an event (a browser starts slower under a loaded test run).
    wait: Duration,
    /// The subprotocol the socket settled on, from the `connected` event ("" = none).
    protocol: Option<String>,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl StompJs {
    /// Connects with `token` and subscribes to `destinations`; waits until every subscription is
    /// acknowledged by a RECEIPT (or returns early on an error, see `next`).
    pub async fn connect(app: &TestApp, token: Option<&str>, destinations: &[&str]) -> Self {
        Self::connect_via(Via::Node, app, token, destinations).await
    }

    /// As `connect`, with the session run `via` Node or a browser.
    pub async fn connect_via(
        via: Via,
        app: &TestApp,
        token: Option<&str>,
        destinations: &[&str],
    ) -> Self {
        let mut config = json!({ "url": ws_url(app), "token": token, "subscribe": destinations });
        let runner = match via {
            Via::Node => "client.mjs",
            Via::Browser => "browser.mjs",
            Via::BrowserOffering(protocols) => {
                config["protocols"] = json!(protocols);
                "browser.mjs"
            }
        };
        if runner == "browser.mjs" {
            assert!(
                script()
                    .with_file_name("node_modules/puppeteer-core")
                    .exists(),
                "run `npm ci --prefix tests/stomp` (make test does) before the browser STOMP tests"
            );
        }
        let mut child = Command::new("node")
            .arg(script().with_file_name(runner))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // A browser runner is left to finish when its stdin closes (it closes Chromium and
            // removes the profile); killing it would leave the profile behind.
            .kill_on_drop(runner == "client.mjs")
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let wait = if runner == "browser.mjs" {
            BROWSER_WAIT
        } else {
            WAIT
        };
        Self {
            wait,
            protocol: None,
            child,
            stdin,
            stdout,
        }
    }

    /// The next event the client printed, or None when it ended or the wait passed.
    pub async fn next(&mut self) -> Option<Value> {
        let event: Value = match tokio::time::timeout(self.wait, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).expect("client prints JSON"),
            _ => return None,
        };
        if event["type"] == "connected" {
            self.protocol = event["protocol"].as_str().map(str::to_owned);
        }
        Some(event)
    }

    /// The WebSocket subprotocol of the connected session ("" when none was agreed).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Skips events until one of `kind` arrives (None if the stream ends first).
    pub async fn next_of(&mut self, kind: &str) -> Option<Value> {
        while let Some(event) = self.next().await {
            if event["type"] == kind {
                return Some(event);
            }
            assert_ne!(event["type"], "fatal", "the STOMP client harness failed");
            if event["type"] == "error" || event["type"] == "closed" {
                return if kind == event["type"] {
                    Some(event)
                } else {
                    panic!("expected {kind}, got {event}")
                };
            }
        }
        None
    }

    /// The next MESSAGE body, parsed as JSON.
    pub async fn message(&mut self) -> Value {
        let event = self.next_of("message").await.expect("a message arrives");
        serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
    }

    pub async fn ready(mut self) -> Self {
        self.next_of("ready")
            .await
            .expect("subscriptions acknowledged");
        self
    }

    pub async fn send(&mut self, destination: &str, body: Value, receipt: Option<&str>) {
        let cmd = json!({ "send": { "destination": destination, "body": body.to_string(), "receipt": receipt } });
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.stdin.write_all(b"{\"disconnect\":true}\n").await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// A raw WebSocket speaking STOMP text by hand.
pub struct RawStomp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawStomp {
    pub async fn open(app: &TestApp) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(app))
            .await
            .expect("websocket handshake");
        Self { ws }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    pub async fn connect(app: &TestApp, token: &str) -> Self {
        let mut raw = Self::open(app).await;
        raw.send_text(&format!(
            "CONNECT\naccept-version:1.2\nheart-beat:0,0\nAuthorization:Bearer {token}\n\n\0"
        ))
        .await;
        let reply = raw.frame().await.expect("a reply to CONNECT");
        assert!(reply.starts_with("CONNECTED\n"), "{reply}");
        raw
    }

    /// The next non-heartbeat text frame, or None when the server closed the socket.
    pub async fn frame(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) if t.trim().is_empty() => continue,
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// True when the server closes the socket within `WAIT` (heart-beats aside); false when it
    /// stays open and silent, or sends a frame instead.
    pub async fn closes(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) if t.trim().is_empty() => continue,
                Ok(Some(Ok(Message::Text(_)))) => return false,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Expects an ERROR frame carrying `message`, then the socket closing.
    pub async fn expect_error(&mut self, message: &str) {
        let frame = self.frame().await.expect("an ERROR frame");
        assert!(
            frame.starts_with("ERROR\n"),
            "expected ERROR, got {frame:?}"
        );
        assert!(frame.contains(message), "{frame:?} lacks {message:?}");
        assert!(self.closes().await, "the server closes after ERROR");
    }
}
