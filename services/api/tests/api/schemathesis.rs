//! The OpenAPI document is the API: schemathesis (PyPI, pinned in tests/openapi/requirements.txt,
//! installed in tests/openapi/.venv by `make openapi-deps`) runs every operation of the real
//! binary's `/api-docs/openapi.json` with every check, authenticated, and finds nothing.
//!
//! Two runs cover every operation: the first with one member's bearer token runs all but
//! logout and withdrawal (which would end that token for the rest of the run); the second runs
//! those two with another member's token. Settings: tests/openapi/schemathesis.toml.

use std::path::PathBuf;
use std::time::Duration;

use crate::binary::start_binary;
use crate::helpers::{KakaoMock, KAKAO_REST_KEY};

/// Test cases per operation and phase; with the fixed seed the run is repeatable.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261202";

fn openapi_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openapi")
}

async fn dev_login(base: &str, name: &str) -> String {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/members/dev-login"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["data"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// Runs schemathesis; returns (operations selected, operations in the document).
async fn schemathesis(
    base: &str,
    dir: &std::path::Path,
    token: &str,
    filter: &[&str],
) -> (usize, usize) {
    let st = openapi_dir().join(".venv/bin/st");
    assert!(
        st.exists(),
        "run `make openapi-deps` (make test does) before the schemathesis test"
    );
    let mut command = tokio::process::Command::new(st);
    command
        .current_dir(dir)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .arg("--config-file")
        .arg(openapi_dir().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/api-docs/openapi.json"))
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "2"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), command.output())
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // "Selected: 46/48" and "Tested: 46": every selected operation was exercised.
    let number_after = |label: &str| {
        let rest = stdout
            .split(label)
            .nth(1)
            .unwrap_or_else(|| panic!("no {label}:\n{stdout}"));
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit() && c != '/')
            .next()
            .unwrap()
            .to_owned()
    };
    let selected = number_after("Selected:");
    let (selected, total) = selected.split_once('/').expect("selected/total");
    let (selected, total): (usize, usize) = (selected.parse().unwrap(), total.parse().unwrap());
    assert_eq!(
        number_after("Tested:").parse::<usize>().unwrap(),
        selected,
        "{stdout}"
    );
    (selected, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_difference_between_the_document_and_the_api() {
    let dir =
        std::env::temp_dir().join(format!("ppodok-openapi-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // SQLite, no Redis: the embedded defaults `make run` uses; Kakao is a local server playing
    // its documented protocol (it knows no code, so logins get Kakao's refusal: 400).
    let kakao = KakaoMock::start().await;
    let env = [
        (
            "PPODOK__KAKAO__TOKEN_URL",
            format!("{}/oauth/token", kakao.base),
        ),
        (
            "PPODOK__KAKAO__USER_INFO_URL",
            format!("{}/v2/user/me", kakao.base),
        ),
        (
            "PPODOK__KAKAO__UNLINK_URL",
            format!("{}/v1/user/unlink", kakao.base),
        ),
        ("PPODOK__KAKAO__REST_API_KEY", KAKAO_REST_KEY.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut child, base) = start_binary(&dir, &env).await;
    let fuzzer = dev_login(&base, "fuzzer").await;
    let leaver = dev_login(&base, "leaver").await;
    let session_enders = [
        "--include-operation-id",
        "logout",
        "--include-operation-id",
        "withdraw",
    ];
    let everything_else = [
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "withdraw",
    ];
    let (most, total) = schemathesis(&base, &dir, &fuzzer, &everything_else).await;
    let (two, _) = schemathesis(&base, &dir, &leaver, &session_enders).await;
    assert_eq!(two, 2, "logout and withdrawal");
    assert_eq!(most + two, total, "every operation of the document ran");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
