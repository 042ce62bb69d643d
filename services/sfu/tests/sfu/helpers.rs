//! Starts the real SFU on port 0 and drives clients against it: a raw WebSocket speaking LiveKit's
//! protobuf, and the official livekit-client in headless Chromium (tests/sfu-browser/run.mjs).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ppodok_sfu::config::Settings;
use ppodok_sfu::startup::{Application, ShutdownHandle};
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct TestSfu {
    pub port: u16,
    pub hub: std::sync::Arc<ppodok_sfu::hub::Hub>,
    pub keys: LivekitKeys,
    shutdown: ShutdownHandle,
}

impl Drop for TestSfu {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub async fn spawn_sfu() -> TestSfu {
    spawn_sfu_with(|_| {}).await
}

pub async fn spawn_sfu_with(adjust: impl FnOnce(&mut Settings)) -> TestSfu {
    ppodok_telemetry::init(ppodok_telemetry::LogFormat::Text, "error,ppodok_sfu=warn");
    let mut settings = Settings::defaults();
    settings.host = "127.0.0.1".into();
    settings.port = 0;
    // Ephemeral media ports: tests run in parallel with other users of the configured range.
    settings.rtc.udp_port_min = 0;
    settings.rtc.udp_port_max = 0;
    // No resume unless a test asks for it: a page that goes away leaves at once.
    settings.signal.resume_grace_secs = 0;
    adjust(&mut settings);
    let keys = LivekitKeys::new(&settings.livekit.api_key, &settings.livekit.api_secret);
    let app = Application::build(settings).await.expect("SFU builds");
    let port = app.port();
    let shutdown = app.shutdown_handle();
    let hub = app.hub();
    tokio::spawn(app.run_until_stopped());
    TestSfu {
        port,
        hub,
        keys,
        shutdown,
    }
}

impl TestSfu {
    pub fn stop(&self) {
        self.shutdown.shutdown();
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn token(&self, identity: &str, room: &str) -> String {
        self.keys
            .mint_access_token(identity, identity, VideoGrant::join(room), now(), 600)
    }

    /// A valid token whose grant names `room` but does not allow joining it.
    pub fn token_without_join(&self, identity: &str, room: &str) -> String {
        let grant = VideoGrant {
            room: room.into(),
            ..Default::default()
        };
        self.keys.mint_access_token(identity, "", grant, now(), 600)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of `/metrics`, e.g. `sfu_participants`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls `sample` until `pred` holds or `within` passes.
    pub async fn wait_metric(
        &self,
        sample: &str,
        within: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> Result<f64, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.metric(sample).await;
            if let Some(v) = v.filter(|v| pred(*v)) {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{sample} = {v:?} after {within:?}; metrics:\n{}",
                    self.metrics().await
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One headless Chromium page running livekit-client, reporting JSON lines.
pub struct Browser {
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
}

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sfu-browser")
}

impl Browser {
    pub async fn launch(scenario: &str, url: &str, token: &str, hold_secs: u32) -> Browser {
        Self::launch_with_env(scenario, url, token, hold_secs, &[]).await
    }

    /// As [`Browser::launch`], with extra environment for the harness (see run.mjs).
    pub async fn launch_with_env(
        scenario: &str,
        url: &str,
        token: &str,
        hold_secs: u32,
        env: &[(&str, &str)],
    ) -> Browser {
        let dir = harness_dir();
        assert!(
            dir.join("node_modules/livekit-client").exists()
                && dir.join("node_modules/puppeteer-core").exists(),
            "tests/sfu-browser/node_modules is missing: run `make node-deps` (npm ci)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("run.mjs"))
            .args([scenario, url, token, &hold_secs.to_string()])
            .current_dir(&dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (apt-get install nodejs)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("harness: {line}"),
                }
            }
        });
        Browser {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first event (already seen or upcoming) matching `pred`, within `within`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["event"] == "fatal" {
                        panic!("browser harness failed: {v}");
                    }
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!("browser exited before {what}; saw {:#?}", self.seen),
                Err(_) => panic!("no {what} within {within:?}; saw {:#?}", self.seen),
            }
        }
    }

    pub async fn wait_event(&mut self, event: &str, within: Duration) -> Value {
        self.wait_for(event, within, |v| v["event"] == event).await
    }

    /// Sends one harness command and returns how it ended: its `cmdDone` or `cmdError` line
    /// (both carry `ms`, the call's duration in the page).
    pub async fn command_outcome(&mut self, line: &str, within: Duration) -> Value {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("harness stdin");
        stdin.flush().await.expect("harness stdin");
        let done = self
            .wait_for(line, within, |v| {
                (v["event"] == "cmdDone" || v["event"] == "cmdError") && v["cmd"] == line
            })
            .await;
        // A later identical command must wait for its own completion.
        self.seen.retain(|v| {
            !((v["event"] == "cmdDone" || v["event"] == "cmdError") && v["cmd"] == line)
        });
        done
    }

    /// Sends one harness command (see run.mjs) and waits for it to complete in the page.
    pub async fn command(&mut self, line: &str, within: Duration) {
        let done = self.command_outcome(line, within).await;
        assert_eq!(done["event"], "cmdDone", "{done}");
    }

    /// Inbound stats lines for a remote `identity`'s `source` that satisfy `pred`, waiting for
    /// the first one seen after this call.
    pub async fn wait_inbound(
        &mut self,
        identity: &str,
        source: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let skip = self.seen.len();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self.seen[skip..].iter().find(|v| {
                v["event"] == "inbound"
                    && v["identity"] == identity
                    && v["source"] == source
                    && pred(v)
            });
            if let Some(v) = found {
                return v.clone();
            }
            let what = format!("inbound {identity}/{source}");
            self.next_line(&what, deadline).await;
        }
    }

    /// Waits for the next line from the harness (kept in `seen`).
    async fn next_line(&mut self, what: &str, deadline: tokio::time::Instant) {
        match tokio::time::timeout_at(deadline, self.lines.recv()).await {
            Ok(Some(v)) => {
                self.seen.push(v.clone());
                if v["event"] == "fatal" {
                    panic!("browser harness failed: {v}");
                }
            }
            Ok(None) => panic!("browser exited before {what}; saw {:#?}", self.seen),
            Err(_) => panic!("no {what} in time; saw {:#?}", self.tail()),
        }
    }

    /// Every line that arrives within `dur`, with when it arrived (from this call).
    pub async fn collect(&mut self, dur: Duration) -> Vec<(Duration, Value)> {
        let start = tokio::time::Instant::now();
        let deadline = start + dur;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["event"] == "fatal" {
                        panic!("browser harness failed: {v}");
                    }
                    out.push((start.elapsed(), v));
                }
                Ok(None) => panic!("browser exited; saw {:#?}", self.tail()),
                Err(_) => return out,
            }
        }
    }

    /// The last lines seen, for failure messages.
    pub fn tail(&self) -> &[Value] {
        &self.seen[self.seen.len().saturating_sub(40)..]
    }

    /// Closes the page's process (and so its room connection).
    pub async fn close(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The official livekit-server-sdk's `RoomServiceClient` in Node (tests/sfu-browser/server-api.mjs),
/// one call at a time.
pub struct ServerApi {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl ServerApi {
    pub fn start(sfu: &TestSfu) -> ServerApi {
        let settings = Settings::defaults();
        let dir = harness_dir();
        assert!(
            dir.join("node_modules/livekit-server-sdk").exists(),
            "tests/sfu-browser/node_modules is missing: run `make node-deps` (npm ci)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server-api.mjs"))
            .current_dir(&dir)
            .env("LIVEKIT_URL", sfu.http_url())
            .env("LIVEKIT_API_KEY", &settings.livekit.api_key)
            .env("LIVEKIT_API_SECRET", &settings.livekit.api_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ServerApi { child, lines }
    }

    /// One call: `{"call":…,"args":[…]}` (and `"as"` for a restricted token). Returns the
    /// answer line: `{"ok":…}` or `{"error":{"status","code","message"}}`.
    pub async fn call(&mut self, request: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {request}"))
            .unwrap()
            .unwrap_or_else(|| panic!("server-api.mjs exited on {request}"));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// A call that must succeed; its result.
    pub async fn ok(&mut self, request: Value) -> Value {
        let answer = self.call(request.clone()).await;
        assert!(answer.get("error").is_none(), "{request} failed: {answer}");
        answer["ok"].clone()
    }
}

/// The `ppodok-sfu` binary set up as a lone node on loopback: HTTP and UDP on free ports, the
/// given API key, no resume grace (a participant that leaves is gone at once), stderr shown.
pub fn sfu_binary(api_key: &str, api_secret: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ppodok-sfu"));
    command
        .env("PPODOK_SFU__HOST", "127.0.0.1")
        .env("PPODOK_SFU__PORT", "0")
        .env("PPODOK_SFU__LIVEKIT__API_KEY", api_key)
        .env("PPODOK_SFU__LIVEKIT__API_SECRET", api_secret)
        .env("PPODOK_SFU__RTC__BIND_IP", "127.0.0.1")
        .env("PPODOK_SFU__RTC__UDP_PORT_MIN", "0")
        .env("PPODOK_SFU__RTC__UDP_PORT_MAX", "0")
        .env("PPODOK_SFU__SIGNAL__RESUME_GRACE_SECS", "0")
        .stderr(Stdio::inherit());
    command
}

/// Spawns a service binary as `command` sets it up (stdout is taken over) and returns it with the
/// port from its `listening on http://127.0.0.1:PORT` line, which must come within 60 s; the rest
/// of its stdout is read and dropped.
pub fn spawn_listening(mut command: std::process::Command) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(port) = line
                .split("listening on http://127.0.0.1:")
                .nth(1)
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(port) => (child, port),
        Err(_) => {
            let _ = child.kill();
            panic!("the binary printed no listening line within 60 s");
        }
    }
}
