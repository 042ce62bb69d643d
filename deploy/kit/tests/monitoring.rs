//! Prometheus config and alert rules through promtool (Debian's `prometheus` package), and the
//! Grafana provisioning and dashboards: every query parses as PromQL (promtool's parser) and
//! reads the provisioned datasource.

use std::process::Command;

use ppodok_deploy_kit::{dashboard_queries, repo_root, yaml};

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root().join("deploy/prometheus"))
        .output()
        .expect("promtool is installed (apt-get install prometheus; .ci/run does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_the_config_and_the_rules() {
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(config.contains("SUCCESS: 1 rule files found"), "{config}");
    let rules = promtool(&["check", "rules", "alerts.yml"]);
    assert!(rules.contains("SUCCESS"), "{rules}");
}

/// alerts_test.yml: node down, replica down vs all down, database unreachable, error rate with
/// its traffic floor, p99, SFU drops and webhook failures.
#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_alerts_the_design_asks_for_exist() {
    let rules = yaml("deploy/prometheus/alerts.yml");
    let names: Vec<String> = ppodok_deploy_kit::rule_queries(&rules)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for want in [
        "PpodokSfuNodeDown",
        "PpodokApiDown",
        "PpodokDatabaseUnreachable",
        "PpodokRedisUnreachable",
        "PpodokApiHighErrorRate",
        "PpodokApiHighLatencyP99",
        "PpodokSfuForwardLatencyHigh",
    ] {
        assert!(names.iter().any(|n| n == want), "alerts.yml lacks {want}");
    }
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{rule:?}");
            assert!(rule["annotations"]["summary"].is_string(), "{rule:?}");
        }
    }
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = repo_root().join("deploy/grafana/dashboards");
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn dashboards_are_provisioned_against_the_provisioned_datasource() {
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasources["datasources"][0]["uid"].as_str().unwrap();
    assert_eq!(
        datasources["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090"),
        "the compose service name"
    );
    let dashboards = dashboards();
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ppodok-api.json", "ppodok-sfu.json"]);
    let mut uids = Vec::new();
    for (name, dashboard) in &dashboards {
        uids.push(dashboard["uid"].as_str().unwrap().to_owned());
        assert!(dashboard["title"].is_string(), "{name}");
        let mut ids = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            ids.push(panel["id"].as_i64().unwrap());
            assert_eq!(
                panel["datasource"]["uid"].as_str(),
                Some(uid),
                "{name}: {}",
                panel["title"]
            );
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"].as_str(), Some(uid), "{name}");
            }
        }
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "{name}: panel ids are unique");
        assert!(
            dashboard_queries(dashboard).len() >= 15,
            "{name}: too few queries"
        );
    }
    uids.dedup();
    assert_eq!(uids.len(), 2);
    // The SFU dashboard shows each node apart.
    let sfu = &dashboards[1].1;
    for metric in [
        "sfu_rooms",
        "sfu_participants",
        "sfu_rtp_bytes_out_total",
        "sfu_nacked_packets_total",
        "sfu_forward_latency_seconds_bucket",
    ] {
        assert!(
            dashboard_queries(sfu)
                .iter()
                .any(|(_, e)| e.contains(metric) && e.contains("instance")),
            "no per-node panel for {metric}"
        );
    }
}

/// Each dashboard query goes through Prometheus's own PromQL parser: promtool checks them as
/// recording rules (Grafana's `$__rate_interval` stands in as `1m`).
#[test]
fn every_dashboard_query_parses_as_promql() {
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut count = 0;
    for (name, dashboard) in dashboards() {
        for (panel, expr) in dashboard_queries(&dashboard) {
            let expr = expr.replace("$__rate_interval", "1m");
            assert!(
                !expr.contains('$'),
                "{name} / {panel}: unknown Grafana variable in {expr}"
            );
            rules.push_str(&format!(
                "      - record: dashboard:query:{count}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
            count += 1;
        }
    }
    let dir = std::env::temp_dir().join(format!("ppodok-dashboard-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("SUCCESS: {count} rules found")));
}
