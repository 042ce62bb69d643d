//! The real binary, as `make run` starts it: embedded defaults, graceful stop on SIGTERM, and a
//! production configuration that refuses to start without its secret.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ppodok-api");

/// Starts the real binary in `dir` on a free port with `env` on top of the embedded defaults;
/// returns the child and its base URL (from the "listening on" line).
pub async fn start_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env("PPODOK__SERVER__PORT", "0")
        .env_remove("PPODOK_CONFIG")
        .env_remove("PPODOK__DATABASE__URL")
        .env_remove("PPODOK__REDIS__URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    // Log lines share stdout; keep draining it so the child never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ppodok-api listening on ") {
                let _ = tx.send(line);
            }
        }
    });
    let line = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("listening line")
    })
    .await
    .unwrap();
    let base = line
        .trim_start_matches("ppodok-api listening on ")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    (child, base)
}

#[tokio::test]
async fn binary_serves_on_embedded_defaults_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("ppodok-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut child, base) = start_binary(&dir, &[]).await;

    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let login = http
        .post(format!("{base}/api/v1/members/dev-login"))
        .json(&serde_json::json!({ "name": "newcomer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "dev login is on by default");
    assert!(
        dir.join("data/ppodok.sqlite").exists(),
        "SQLite file under ./data"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn production_config_refuses_to_start_without_a_secret() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/production.toml");
    let out = Command::new(BIN)
        .env("PPODOK_CONFIG", config)
        .env_remove("PPODOK__AUTH__JWT_SECRET")
        .env("PPODOK__DATABASE__URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
}
