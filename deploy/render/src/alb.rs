//! Renders the AWS ALB, its target groups, listener and listener rules as Terraform.

use std::fmt::{self, Write};

use crate::header_comment;
use crate::model::{Action, PathPattern, Route, RouteTable};

/// Terraform resource name of the HTTP listener every rule hangs off.
const LISTENER: &str = "aws_lb_listener.http";

/// Renders `table`, which must already have passed [`crate::validate`].
pub fn render_alb(table: &RouteTable) -> String {
    let mut out = String::new();
    write_terraform(&mut out, table).expect("writing to a String cannot fail");
    out
}

/// ALB path-pattern values for one pattern (`*` is the ALB's wildcard). A prefix needs
/// two: the bare path and everything under it.
pub fn alb_path_patterns(pattern: &PathPattern) -> Vec<String> {
    match pattern {
        PathPattern::Exact(path) => vec![path.clone()],
        PathPattern::Prefix(path) => vec![path.clone(), format!("{path}/*")],
    }
}

fn write_terraform(out: &mut String, table: &RouteTable) -> fmt::Result {
    out.push_str(&header_comment(table));
    writeln!(out)?;
    writeln!(out, "terraform {{")?;
    writeln!(out, "  required_providers {{")?;
    writeln!(out, "    aws = {{")?;
    write_attributes(
        out,
        3,
        &[
            ("source", quoted("hashicorp/aws")),
            ("version", quoted(">= 5.0")),
        ],
    )?;
    writeln!(out, "    }}")?;
    writeln!(out, "  }}")?;
    writeln!(out, "}}")?;
    writeln!(out)?;

    write_variable(out, "vpc_id", "string", "VPC the target groups live in.")?;
    write_variable(
        out,
        "public_subnet_ids",
        "list(string)",
        "Public subnets for the load balancer, in at least two availability zones.",
    )?;
    write_variable(
        out,
        "security_group_ids",
        "list(string)",
        "Security groups for the load balancer; they need the listener port open.",
    )?;

    writeln!(out, "resource \"aws_lb\" \"router\" {{")?;
    write_attributes(
        out,
        1,
        &[
            ("name", quoted(&table.router.name)),
            ("load_balancer_type", quoted("application")),
            ("internal", "false".to_owned()),
            ("subnets", "var.public_subnet_ids".to_owned()),
            ("security_groups", "var.security_group_ids".to_owned()),
        ],
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "  # WebSocket signalling stays open because the services ping well inside this."
    )?;
    write_attributes(
        out,
        1,
        &[(
            "idle_timeout",
            table.router.idle_timeout_seconds.to_string(),
        )],
    )?;
    writeln!(out, "}}")?;

    for target in &table.targets {
        writeln!(out)?;
        writeln!(
            out,
            "resource \"aws_lb_target_group\" \"{}\" {{",
            target.name
        )?;
        write_attributes(
            out,
            1,
            &[
                ("name", quoted(&target.service_name)),
                ("port", target.port.to_string()),
                ("protocol", quoted("HTTP")),
                ("target_type", quoted("ip")),
                ("vpc_id", "var.vpc_id".to_owned()),
            ],
        )?;
        writeln!(out)?;
        writeln!(out, "  health_check {{")?;
        write_attributes(
            out,
            2,
            &[
                ("path", quoted(&target.health_path)),
                ("matcher", quoted("200")),
            ],
        )?;
        writeln!(out, "  }}")?;
        writeln!(out, "}}")?;
    }

    let default_target = table.default_target();
    writeln!(out)?;
    writeln!(out, "resource \"aws_lb_listener\" \"http\" {{")?;
    write_attributes(
        out,
        1,
        &[
            ("load_balancer_arn", "aws_lb.router.arn".to_owned()),
            ("port", table.router.listen_port.to_string()),
            ("protocol", quoted("HTTP")),
        ],
    )?;
    writeln!(out)?;
    writeln!(out, "  # Everything no rule matches.")?;
    writeln!(out, "  default_action {{")?;
    write_attributes(
        out,
        2,
        &[
            ("type", quoted("forward")),
            (
                "target_group_arn",
                format!("aws_lb_target_group.{}.arn", default_target.name),
            ),
        ],
    )?;
    writeln!(out, "  }}")?;
    writeln!(out, "}}")?;

    for route in table.routes_by_priority() {
        writeln!(out)?;
        write_rule(out, &route)?;
    }
    Ok(())
}

fn write_rule(out: &mut String, route: &Route<'_>) -> fmt::Result {
    match route.action {
        Action::Deny => writeln!(out, "# Not exposed publicly.")?,
        Action::Forward(_) if route.websocket => writeln!(
            out,
            "# WebSocket: the ALB passes the upgrade through on its own."
        )?,
        Action::Forward(_) => {}
    }
    writeln!(
        out,
        "resource \"aws_lb_listener_rule\" \"{}\" {{",
        route.name
    )?;
    write_attributes(
        out,
        1,
        &[
            ("listener_arn", format!("{LISTENER}.arn")),
            ("priority", route.priority.to_string()),
        ],
    )?;
    writeln!(out)?;
    writeln!(out, "  action {{")?;
    match route.action {
        Action::Deny => {
            write_attributes(out, 2, &[("type", quoted("fixed-response"))])?;
            writeln!(out)?;
            writeln!(out, "    fixed_response {{")?;
            write_attributes(
                out,
                3,
                &[
                    ("content_type", quoted("text/plain")),
                    ("message_body", quoted("Not Found")),
                    ("status_code", quoted("404")),
                ],
            )?;
            writeln!(out, "    }}")?;
        }
        Action::Forward(target) => write_attributes(
            out,
            2,
            &[
                ("type", quoted("forward")),
                (
                    "target_group_arn",
                    format!("aws_lb_target_group.{}.arn", target.name),
                ),
            ],
        )?,
    }
    writeln!(out, "  }}")?;
    writeln!(out)?;
    let values: Vec<String> = route
        .paths
        .iter()
        .flat_map(alb_path_patterns)
        .map(|value| quoted(&value))
        .collect();
    writeln!(out, "  condition {{")?;
    writeln!(out, "    path_pattern {{")?;
    write_attributes(out, 3, &[("values", format!("[{}]", values.join(", ")))])?;
    writeln!(out, "    }}")?;
    writeln!(out, "  }}")?;
    writeln!(out, "}}")
}

fn write_variable(out: &mut String, name: &str, type_expr: &str, description: &str) -> fmt::Result {
    writeln!(out, "variable \"{name}\" {{")?;
    write_attributes(
        out,
        1,
        &[
            ("description", quoted(description)),
            ("type", type_expr.to_owned()),
        ],
    )?;
    writeln!(out, "}}")?;
    writeln!(out)
}

/// Writes consecutive attributes with their `=` aligned, as `terraform fmt` does.
fn write_attributes(out: &mut String, depth: usize, attributes: &[(&str, String)]) -> fmt::Result {
    let indent = "  ".repeat(depth);
    let key_width = attributes
        .iter()
        .map(|(key, _)| key.len())
        .max()
        .unwrap_or(0);
    for (key, value) in attributes {
        writeln!(out, "{indent}{key:<key_width$} = {value}")?;
    }
    Ok(())
}

/// Values come from validated names and paths, which hold no `"`, `\` or `${`.
fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_table;

    /// The text of `resource "<kind>" "<name>" { ... }`, up to its closing brace.
    fn resource_block<'a>(terraform: &'a str, kind: &str, name: &str) -> &'a str {
        let opening = format!("resource \"{kind}\" \"{name}\" {{\n");
        let start = terraform
            .find(&opening)
            .unwrap_or_else(|| panic!("no {kind}.{name} in:\n{terraform}"));
        let end = start + terraform[start..].find("\n}\n").expect("block is closed");
        &terraform[start..end]
    }

    #[test]
    fn listener_rules_come_in_priority_order() {
        let terraform = render_alb(&sample_table());
        let rule_names: Vec<&str> = terraform
            .lines()
            .filter_map(|line| line.strip_prefix("resource \"aws_lb_listener_rule\" \""))
            .map(|rest| rest.trim_end_matches("\" {"))
            .collect();
        assert_eq!(
            rule_names,
            ["denied", "sfu_signalling", "sfu_status", "api_stomp"]
        );

        let priorities: Vec<&str> = terraform
            .lines()
            .filter_map(|line| line.trim().strip_prefix("priority     = "))
            .collect();
        assert_eq!(priorities, ["1", "10", "20", "30"]);
    }

    #[test]
    fn forward_rules_use_path_pattern_conditions() {
        let terraform = render_alb(&sample_table());
        let signalling = resource_block(&terraform, "aws_lb_listener_rule", "sfu_signalling");
        assert!(signalling.contains("target_group_arn = aws_lb_target_group.sfu.arn"));
        assert!(signalling.contains("path_pattern {\n      values = [\"/rtc\", \"/rtc/*\"]\n"));

        let status = resource_block(&terraform, "aws_lb_listener_rule", "sfu_status");
        assert!(status.contains("values = [\"/status\"]"));
    }

    #[test]
    fn denied_paths_get_a_fixed_404() {
        let terraform = render_alb(&sample_table());
        let denied = resource_block(&terraform, "aws_lb_listener_rule", "denied");
        assert!(denied.contains("type = \"fixed-response\""));
        assert!(denied.contains("status_code  = \"404\""));
        assert!(denied.contains("values = [\"/metrics\", \"/metrics/*\"]"));
        assert!(!denied.contains("target_group_arn"));
    }

    #[test]
    fn target_groups_carry_port_and_health_check() {
        let terraform = render_alb(&sample_table());
        let sfu = resource_block(&terraform, "aws_lb_target_group", "sfu");
        assert!(sfu.contains("name        = \"ppodok-sfu\""));
        assert!(sfu.contains("port        = 7880"));
        assert!(sfu.contains("health_check {\n    path    = \"/health\""));
    }

    #[test]
    fn listener_defaults_to_the_default_target_and_lb_has_idle_timeout() {
        let terraform = render_alb(&sample_table());
        let listener = resource_block(&terraform, "aws_lb_listener", "http");
        assert!(listener.contains("port              = 80"));
        assert!(listener.contains("target_group_arn = aws_lb_target_group.api.arn"));
        let load_balancer = resource_block(&terraform, "aws_lb", "router");
        assert!(load_balancer.contains("idle_timeout = 60"));
        assert!(load_balancer.contains("name               = \"test-router\""));
    }

    #[test]
    fn attributes_are_aligned_like_terraform_fmt() {
        let mut out = String::new();
        write_attributes(&mut out, 1, &[("a", "1".into()), ("long_key", "2".into())]).unwrap();
        assert_eq!(out, "  a        = 1\n  long_key = 2\n");
    }
}
