//! The OpenAPI document is the API: schemathesis (PyPI, pinned in tests/openapi/requirements.txt,
//! installed in tests/openapi/.venv by `make openapi-deps`) runs every operation of the real
//! binary's `/api-docs/openapi.json` with every check, authenticated, and finds nothing.
//!
//! Three runs cover every operation: the first with one member's bearer token runs all but
//! logout and withdrawal (which would end that token for the rest of the run); the next two run
//! each of those with a member of its own. Settings: tests/openapi/schemathesis.toml, plus ids the
//! fuzzer's member owns (see `seed`).

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

async fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Ids the fuzzer's member owns (a group, a booked room, a todo), so that half of the generated
/// ids name something real and requests reach the handlers' logic, not only their 404.
async fn seed(base: &str, token: &str) -> (i64, i64, i64) {
    use reqwest::Method;
    let group = call(
        base,
        token,
        Method::POST,
        "/api/v1/groups",
        serde_json::json!({ "groupName": "퍼징" }),
    )
    .await;
    let group_id = group["data"]["groupId"].as_i64().expect("a group");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&chrono_tz::Asia::Seoul)
        .format("%Y-%m-%dT10:00:00")
        .to_string();
    let room = call(
        base,
        token,
        Method::POST,
        "/api/v1/rooms/reservations",
        serde_json::json!({ "groupId": group_id, "startTime": tomorrow }),
    )
    .await;
    let room_id = room["data"]["roomId"].as_i64().expect("a room");
    let todo = call(
        base,
        token,
        Method::POST,
        "/api/v1/todos",
        serde_json::json!({ "groupId": group_id, "content": "퍼징" }),
    )
    .await;
    let todo_id = todo["data"]["todoId"].as_i64().expect("a todo");
    (group_id, room_id, todo_id)
}

/// tests/openapi/schemathesis.toml plus the seeded ids as a dictionary that half of the
/// generated `groupId` / `roomId` / `todoId` values (path, query and body) are drawn from.
fn config_with_ids(dir: &std::path::Path, (group, room, todo): (i64, i64, i64)) -> PathBuf {
    let mut config = std::fs::read_to_string(openapi_dir().join("schemathesis.toml")).unwrap();
    config.push_str(&format!(
        "\n[dictionaries]\ngroups = {{ values = [{group}] }}\nrooms = {{ values = [{room}] }}\ntodos = {{ values = [{todo}] }}\n\n[parameters]\n"
    ));
    for (name, dictionary) in [
        ("groupId", "groups"),
        ("roomId", "rooms"),
        ("todoId", "todos"),
    ] {
        for key in [name.to_owned(), format!("body.{name}")] {
            config.push_str(&format!(
                "\"{key}\" = {{ dictionary = \"{dictionary}\", probability = 0.5 }}\n"
            ));
        }
    }
    let path = dir.join("schemathesis.toml");
    std::fs::write(&path, config).unwrap();
    path
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
    config: &std::path::Path,
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
        // Works around a CPython 3.11 race in `ast.parse` between the two workers (see the file).
        .env("SCHEMATHESIS_HOOKS", openapi_dir().join("hooks.py"))
        .arg("--config-file")
        .arg(config)
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
    // The summary, for `--nocapture` runs.
    let summary = stdout.find("SUMMARY").map_or(&stdout[..], |i| &stdout[i..]);
    eprintln!("{summary}");
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
    let (leaver, withdrawer) = (
        dev_login(&base, "leaver").await,
        dev_login(&base, "withdrawer").await,
    );
    let everything_else = [
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "withdraw",
    ];
    let config = config_with_ids(&dir, seed(&base, &fuzzer).await);
    let (most, total) = schemathesis(&base, &dir, &config, &fuzzer, &everything_else).await;
    // Each session ender with its own member, so that its success path runs too.
    let (logout, _) = schemathesis(
        &base,
        &dir,
        &config,
        &leaver,
        &["--include-operation-id", "logout"],
    )
    .await;
    let (withdraw, _) = schemathesis(
        &base,
        &dir,
        &config,
        &withdrawer,
        &["--include-operation-id", "withdraw"],
    )
    .await;
    assert_eq!((logout, withdraw), (1, 1), "logout and withdrawal");
    assert_eq!(most + 2, total, "every operation of the document ran");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
