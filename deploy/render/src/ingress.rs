//! Renders a Kubernetes Ingress for the AWS Load Balancer Controller (`ingressClassName: alb`),
//! so the cluster gets the same ALB the Terraform describes.

use std::fmt::{self, Write};

use crate::header_comment;
use crate::model::{Action, PathPattern, RouteTable};

/// Backend name the controller resolves through the `actions.<name>` annotation.
const DENY_ACTION: &str = "deny-public";

/// Renders `table`, which must already have passed [`crate::validate`].
pub fn render_ingress(table: &RouteTable) -> String {
    let mut out = String::new();
    write_ingress(&mut out, table).expect("writing to a String cannot fail");
    out
}

/// Kubernetes `pathType` for a pattern.
pub fn path_type(pattern: &PathPattern) -> &'static str {
    match pattern {
        PathPattern::Exact(_) => "Exact",
        PathPattern::Prefix(_) => "Prefix",
    }
}

fn write_ingress(out: &mut String, table: &RouteTable) -> fmt::Result {
    let router = &table.router;
    out.push_str(&header_comment(table));
    writeln!(out, "#")?;
    writeln!(
        out,
        "# Each Service is assumed to expose its target's port under the service_name"
    )?;
    writeln!(out, "# given in routes.toml.")?;

    let health_paths = distinct_health_paths(table);
    if health_paths.len() > 1 {
        writeln!(
            out,
            "# Targets differ in health path, so annotate each Service with"
        )?;
        writeln!(out, "# alb.ingress.kubernetes.io/healthcheck-path:")?;
        for target in &table.targets {
            writeln!(out, "#   {}: {}", target.service_name, target.health_path)?;
        }
    }

    writeln!(out, "apiVersion: networking.k8s.io/v1")?;
    writeln!(out, "kind: Ingress")?;
    writeln!(out, "metadata:")?;
    writeln!(out, "  name: {}", router.name)?;
    writeln!(out, "  annotations:")?;
    writeln!(out, "    alb.ingress.kubernetes.io/scheme: internet-facing")?;
    writeln!(out, "    alb.ingress.kubernetes.io/target-type: ip")?;
    writeln!(
        out,
        "    alb.ingress.kubernetes.io/listen-ports: '[{{\"HTTP\": {}}}]'",
        router.listen_port
    )?;
    writeln!(
        out,
        "    alb.ingress.kubernetes.io/load-balancer-attributes: idle_timeout.timeout_seconds={}",
        router.idle_timeout_seconds
    )?;
    if let [health_path] = health_paths.as_slice() {
        writeln!(
            out,
            "    alb.ingress.kubernetes.io/healthcheck-path: {health_path}"
        )?;
    }
    writeln!(
        out,
        "    alb.ingress.kubernetes.io/actions.{DENY_ACTION}: >-"
    )?;
    writeln!(
        out,
        "      {{\"type\":\"fixed-response\",\"fixedResponseConfig\":{{\"contentType\":\"text/plain\",\"statusCode\":\"404\",\"messageBody\":\"Not Found\"}}}}"
    )?;
    writeln!(out, "spec:")?;
    writeln!(out, "  ingressClassName: alb")?;
    let default_target = table.default_target();
    writeln!(out, "  # Everything no rule matches.")?;
    writeln!(out, "  defaultBackend:")?;
    write_service_backend(out, 2, &default_target.service_name, default_target.port)?;
    writeln!(out, "  rules:")?;
    writeln!(out, "    - http:")?;
    writeln!(out, "        paths:")?;
    // Priority order, the same order as the listener rules in alb.tf.
    for route in table.routes_by_priority() {
        let comment = match route.action {
            Action::Deny => format!("{}: not exposed publicly", route.name),
            Action::Forward(target) => format!("{} -> {}", route.name, target.name),
        };
        writeln!(out, "          # {comment}")?;
        for pattern in route.paths {
            writeln!(out, "          - path: {}", pattern.path())?;
            writeln!(out, "            pathType: {}", path_type(pattern))?;
            writeln!(out, "            backend:")?;
            match route.action {
                Action::Deny => {
                    writeln!(out, "              service:")?;
                    writeln!(out, "                name: {DENY_ACTION}")?;
                    writeln!(out, "                port:")?;
                    writeln!(out, "                  name: use-annotation")?;
                }
                Action::Forward(target) => {
                    write_service_backend(out, 7, &target.service_name, target.port)?;
                }
            }
        }
    }
    // One Service per node of node-addressed routes, selecting that pod of the StatefulSet by
    // the pod-name label Kubernetes sets on every StatefulSet pod.
    for target in &table.targets {
        let Some(node) = &target.node_id else {
            continue;
        };
        writeln!(out, "---")?;
        writeln!(
            out,
            "# {}: node {node} only (node-addressed routes)",
            target.name
        )?;
        writeln!(out, "apiVersion: v1")?;
        writeln!(out, "kind: Service")?;
        writeln!(out, "metadata:")?;
        writeln!(out, "  name: {}", target.service_name)?;
        writeln!(out, "  annotations:")?;
        writeln!(
            out,
            "    alb.ingress.kubernetes.io/healthcheck-path: {}",
            target.health_path
        )?;
        writeln!(out, "spec:")?;
        writeln!(out, "  selector:")?;
        writeln!(out, "    statefulset.kubernetes.io/pod-name: {node}")?;
        writeln!(out, "  ports:")?;
        writeln!(out, "    - port: {}", target.port)?;
        writeln!(out, "      targetPort: {}", target.port)?;
    }
    Ok(())
}

fn write_service_backend(out: &mut String, depth: usize, service: &str, port: u16) -> fmt::Result {
    let indent = "  ".repeat(depth);
    writeln!(out, "{indent}service:")?;
    writeln!(out, "{indent}  name: {service}")?;
    writeln!(out, "{indent}  port:")?;
    writeln!(out, "{indent}    number: {port}")
}

/// Health paths in target order, each once.
fn distinct_health_paths(table: &RouteTable) -> Vec<&str> {
    let mut paths: Vec<&str> = Vec::new();
    for target in &table.targets {
        if !paths.contains(&target.health_path.as_str()) {
            paths.push(&target.health_path);
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_table;

    /// The lines of the path entry for `path` with `path_type`, up to the next entry.
    fn path_entry<'a>(yaml: &'a str, path: &str, path_type: &str) -> &'a str {
        let opening = format!("          - path: {path}\n            pathType: {path_type}\n");
        let start = yaml
            .find(&opening)
            .unwrap_or_else(|| panic!("no {path_type} {path} in:\n{yaml}"));
        let rest = &yaml[start + opening.len()..];
        let end = rest.find("          - path:").unwrap_or(rest.len());
        &rest[..end]
    }

    #[test]
    fn exact_and_prefix_patterns_get_their_path_types() {
        let yaml = render_ingress(&sample_table());
        let rtc = path_entry(&yaml, "/rtc", "Prefix");
        assert!(rtc.contains("name: ppodok-sfu\n"));
        assert!(rtc.contains("number: 7880\n"));
        let status = path_entry(&yaml, "/status", "Exact");
        assert!(status.contains("name: ppodok-sfu\n"));
        assert!(!yaml.contains("path: /rtc/"));
    }

    #[test]
    fn denied_paths_use_the_fixed_response_action() {
        let yaml = render_ingress(&sample_table());
        let metrics = path_entry(&yaml, "/metrics", "Prefix");
        assert!(metrics.contains("name: deny-public\n"));
        assert!(metrics.contains("name: use-annotation\n"));
        assert!(yaml.contains("alb.ingress.kubernetes.io/actions.deny-public: >-\n"));
        assert!(yaml.contains("\"statusCode\":\"404\""));
    }

    #[test]
    fn paths_follow_priority_order() {
        let yaml = render_ingress(&sample_table());
        let paths: Vec<&str> = yaml
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- path: "))
            .collect();
        assert_eq!(paths, ["/metrics", "/rtc", "/status", "/bbodok-websocket"]);
    }

    #[test]
    fn router_settings_become_annotations_and_default_backend() {
        let yaml = render_ingress(&sample_table());
        assert!(yaml.contains("  name: test-router\n"));
        assert!(yaml.contains("  ingressClassName: alb\n"));
        assert!(yaml.contains(
            "alb.ingress.kubernetes.io/load-balancer-attributes: idle_timeout.timeout_seconds=60\n"
        ));
        assert!(yaml.contains("alb.ingress.kubernetes.io/listen-ports: '[{\"HTTP\": 80}]'\n"));
        assert!(yaml.contains(
            "  defaultBackend:\n    service:\n      name: ppodok-api\n      port:\n        number: 8080\n"
        ));
    }

    #[test]
    fn a_shared_health_path_is_an_annotation_and_differing_ones_are_spelled_out() {
        let mut table = sample_table();
        let shared = render_ingress(&table);
        assert!(shared.contains("    alb.ingress.kubernetes.io/healthcheck-path: /health\n"));

        table.targets[1].health_path = "/video/health".into();
        let differing = render_ingress(&table);
        assert!(!differing.contains("    alb.ingress.kubernetes.io/healthcheck-path:"));
        assert!(differing.contains("#   ppodok-api: /health\n#   ppodok-sfu: /video/health\n"));
    }
}
