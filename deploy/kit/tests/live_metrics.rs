//! Starts the real `ppodok-api` and `ppodok-sfu` binaries (debug build, embedded defaults, free
//! ports) and checks that every metric the Grafana dashboards and the alert rules name is on
//! their live `/metrics`, and that the Dockerfiles' HEALTHCHECK commands pass against them.
//!
//! The binaries are the ones `make test` has just built (target/debug, next to this test):
//! cargo cannot make one package's test depend on another package's binary, so this crate's
//! tests run after the API's and the SFU's in `make test`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ppodok_deploy_kit::{
    dashboard_queries, dockerfile_stages, exposition_names, healthcheck_command, metric_names,
    read, repo_root, rule_queries, yaml,
};

/// Series Prometheus makes itself for every target, not exported by the services.
const SYNTHESISED: &[&str] = &["up"];

/// The service's binary in this build's target directory, refused when older than its sources.
fn binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let dir = test_exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it first (`cargo build -p {name}`; `make test` builds both before this test)",
                path.display()
            )
        });
    let service = repo_root()
        .join("services")
        .join(name.trim_start_matches("ppodok-"));
    let sources = [
        service.join("src"),
        service.join("config"),
        repo_root().join("crates"),
    ];
    let newest = sources
        .iter()
        .filter_map(|dir| newest_file(dir))
        .max()
        .unwrap();
    assert!(
        built >= newest,
        "{} is older than its sources: rebuild it (`cargo build -p {name}`)",
        path.display()
    );
    path
}

fn newest_file(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                newest_file(&entry.path())
            } else {
                meta.modified().ok()
            }
        })
        .max()
}

/// A child process killed when dropped.
struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` with `env` and reads its port from the `listening on http://127.0.0.1:PORT`
/// line both services print once they serve.
fn start(binary: PathBuf, env: &[(&str, String)]) -> Running {
    let mut child = Command::new(&binary)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split("listening on http://127.0.0.1:")
                .nth(1)
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{} did not start listening within 60 s", binary.display()));
    Running { child, port }
}

fn start_both() -> (Running, Running, tempdir::Dir) {
    let data = tempdir::Dir::new();
    let api = start(
        binary("ppodok-api"),
        &[
            ("PPODOK__SERVER__PORT", "0".into()),
            (
                "PPODOK__DATABASE__URL",
                format!("sqlite://{}/api.sqlite?mode=rwc", data.path.display()),
            ),
            ("PPODOK__CACHE__WARM_ON_BOOT", "false".into()),
        ],
    );
    let sfu = start(
        binary("ppodok-sfu"),
        &[
            ("PPODOK_SFU__HOST", "127.0.0.1".into()),
            ("PPODOK_SFU__PORT", "0".into()),
            ("PPODOK_SFU__RTC__UDP_PORT_MIN", "0".into()),
            ("PPODOK_SFU__RTC__UDP_PORT_MAX", "0".into()),
        ],
    );
    (api, sfu, data)
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "ppodok-kit-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `GET path` over HTTP/1.0 (a close-delimited body, no client library needed).
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("GET {path} on :{port}: {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path} on :{port}: no status in {head:?}"));
    (status, body.to_owned())
}

/// Every metric name in the dashboards and the alert rules, with where it is used.
fn names_in_use() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for file in ["ppodok-api.json", "ppodok-sfu.json"] {
        let dashboard: serde_json::Value =
            serde_json::from_str(&read(&format!("deploy/grafana/dashboards/{file}"))).unwrap();
        for (panel, expr) in dashboard_queries(&dashboard) {
            queries.push((format!("{file} / {panel}"), expr));
        }
    }
    for (alert, expr) in rule_queries(&yaml("deploy/prometheus/alerts.yml")) {
        queries.push((format!("alerts.yml / {alert}"), expr));
    }
    assert!(queries.len() > 40, "only {} queries found", queries.len());
    let mut names = Vec::new();
    for (place, expr) in queries {
        for name in metric_names(&expr).unwrap_or_else(|e| panic!("{place}: {e}")) {
            names.push((name, place.clone()));
        }
    }
    names
}

#[test]
fn every_metric_in_the_dashboards_and_alerts_is_exported_live() {
    let (api, sfu, _data) = start_both();
    // Some traffic, so the per-request series exist (as they do on any serving replica).
    assert_eq!(get(api.port, "/health").0, 200);
    assert_eq!(get(api.port, "/ready").0, 200);
    assert_eq!(get(sfu.port, "/health").0, 200);

    let (status, api_text) = get(api.port, "/metrics");
    assert_eq!(status, 200);
    let (status, sfu_text) = get(sfu.port, "/metrics");
    assert_eq!(status, 200);
    let api_names = exposition_names(&api_text);
    let sfu_names = exposition_names(&sfu_text);
    assert!(api_text.contains("ppodok_api_dependency_up{dependency=\"database\"} 1"));

    let mut missing = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for (name, place) in names_in_use() {
        let found = if name.starts_with("ppodok_api_") {
            api_names.contains(&name)
        } else if name.starts_with("sfu_") {
            sfu_names.contains(&name)
        } else {
            SYNTHESISED.contains(&name.as_str())
        };
        if !found {
            missing.insert(format!("{name} (in {place})"));
        }
        checked.insert(name);
    }
    assert!(
        missing.is_empty(),
        "names no service exports:\n  {}\n\nAPI exports: {api_names:?}\nSFU exports: {sfu_names:?}",
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    assert!(
        checked.len() >= 30,
        "only {} distinct metric names checked",
        checked.len()
    );
}

/// The HEALTHCHECK each image runs (bash over /dev/tcp, no curl in the image) passes against
/// the live service on the port its environment names, and fails where nothing listens.
#[test]
fn the_images_health_checks_pass_against_the_live_services() {
    let (api, sfu, _data) = start_both();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (dockerfile, port_var, live) in [
        (
            "deploy/docker/api.Dockerfile",
            "PPODOK__SERVER__PORT",
            api.port,
        ),
        ("deploy/docker/sfu.Dockerfile", "PPODOK_SFU__PORT", sfu.port),
    ] {
        let stages = dockerfile_stages(&read(dockerfile));
        let command = healthcheck_command(stages.last().unwrap().last("HEALTHCHECK").unwrap());
        let run = |port: u16| {
            let started = Instant::now();
            let status = Command::new(&command[0])
                .args(&command[1..])
                .env(port_var, port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            (status.success(), started.elapsed())
        };
        let (ok, took) = run(live);
        assert!(
            ok,
            "{dockerfile}: health check failed against the live service"
        );
        assert!(
            took < Duration::from_secs(3),
            "{dockerfile}: slower than its 3 s timeout"
        );
        assert!(
            !run(closed).0,
            "{dockerfile}: health check passed with nothing listening"
        );
    }
}
