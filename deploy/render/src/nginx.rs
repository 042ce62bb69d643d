//! Renders a complete `nginx.conf` that routes like the ALB, for local runs.

use std::fmt::{self, Write};

use crate::header_comment;
use crate::model::{Action, PathPattern, Route, RouteTable, Target, TargetKind};

/// What a built web client ships, by extension.
const STATIC_TYPES: &[(&str, &str)] = &[
    ("text/html", "html"),
    ("text/css", "css"),
    ("text/javascript", "js mjs"),
    ("application/json", "json map"),
    ("application/manifest+json", "webmanifest"),
    ("application/wasm", "wasm"),
    ("image/svg+xml", "svg"),
    ("image/png", "png"),
    ("image/jpeg", "jpg jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/x-icon", "ico"),
    ("font/woff", "woff"),
    ("font/woff2", "woff2"),
    ("audio/mpeg", "mp3"),
    ("video/mp4", "mp4"),
];

/// Idle upstream connections nginx keeps open per worker.
const UPSTREAM_KEEPALIVE: u32 = 16;

/// Renders `table`, which must already have passed [`crate::validate`].
pub fn render_nginx(table: &RouteTable) -> String {
    let mut out = String::new();
    write_config(&mut out, table).expect("writing to a String cannot fail");
    out
}

/// The same config for `deploy/compose.yaml`: each upstream is the target's `service_name`, the
/// network alias its containers share there, so nginx spreads requests over every replica the
/// name resolves to (at start-up: nginx resolves upstream names once).
pub fn render_nginx_compose(table: &RouteTable) -> String {
    let mut compose = table.clone();
    for target in &mut compose.targets {
        target.upstream_host = target.service_name.clone();
        target.local_port = None;
    }
    render_nginx(&compose)
}

fn write_config(out: &mut String, table: &RouteTable) -> fmt::Result {
    let idle = table.router.idle_timeout_seconds;
    out.push_str(&header_comment(table));
    writeln!(out, "#")?;
    writeln!(
        out,
        "# Open-source nginx has no active health checks; the ALB and Kubernetes probe"
    )?;
    writeln!(out, "# each target's health path instead.")?;
    writeln!(out)?;
    writeln!(out, "worker_processes auto;")?;
    writeln!(out)?;
    writeln!(out, "events {{")?;
    writeln!(out, "    worker_connections 1024;")?;
    writeln!(out, "}}")?;
    writeln!(out)?;
    writeln!(out, "http {{")?;
    writeln!(out, "    # Same idle timeout as the ALB.")?;
    writeln!(out, "    keepalive_timeout {idle}s;")?;
    writeln!(out)?;
    writeln!(
        out,
        "    # Forward `Connection: upgrade` only when the client asked to upgrade."
    )?;
    writeln!(out, "    map $http_upgrade $connection_upgrade {{")?;
    writeln!(out, "        default upgrade;")?;
    writeln!(out, "        ''      close;")?;
    writeln!(out, "    }}")?;
    if table.targets.iter().any(|t| t.kind == TargetKind::Static) {
        writeln!(out)?;
        writeln!(
            out,
            "    # Content types of the static files (self-contained: no mime.types next to this file)."
        )?;
        writeln!(out, "    types {{")?;
        for (mime, extensions) in STATIC_TYPES {
            writeln!(out, "        {mime} {extensions};")?;
        }
        writeln!(out, "    }}")?;
        writeln!(out, "    default_type application/octet-stream;")?;
    }

    for target in table
        .targets
        .iter()
        .filter(|t| t.kind == TargetKind::Service)
    {
        writeln!(out)?;
        writeln!(out, "    # health check path: {}", target.health_path)?;
        writeln!(out, "    upstream {} {{", target.name)?;
        writeln!(
            out,
            "        server {}:{};",
            target.upstream_host,
            target.local_port.unwrap_or(target.port)
        )?;
        writeln!(out, "        keepalive {UPSTREAM_KEEPALIVE};")?;
        writeln!(out, "    }}")?;
    }

    writeln!(out)?;
    writeln!(out, "    server {{")?;
    writeln!(out, "        listen {};", table.router.listen_port)?;
    writeln!(out, "        server_name _;")?;

    for route in table.routes_by_priority() {
        writeln!(out)?;
        write_route_comment(out, &route)?;
        for pattern in route.paths {
            write_location(out, &route, pattern, idle)?;
        }
    }

    let default_target = table.default_target();
    writeln!(out)?;
    writeln!(
        out,
        "        # Everything no rule matches -> {}",
        default_target.name
    )?;
    writeln!(out, "        location / {{")?;
    write_proxy(out, default_target, false, idle)?;
    writeln!(out, "        }}")?;
    writeln!(out, "    }}")?;
    writeln!(out, "}}")?;
    Ok(())
}

fn write_route_comment(out: &mut String, route: &Route<'_>) -> fmt::Result {
    let priority = route.priority;
    match route.action {
        Action::Deny => writeln!(
            out,
            "        # {} (priority {priority}): not exposed publicly -> 404",
            route.name
        ),
        Action::Forward(target) => {
            let websocket = if route.websocket { ", websocket" } else { "" };
            writeln!(
                out,
                "        # {} (priority {priority}) -> {}{websocket}",
                route.name, target.name
            )
        }
    }
}

/// The `location` matchers for one pattern. A prefix needs two: nginx would otherwise
/// answer the bare path with a 301 to `path/` instead of proxying it.
pub fn nginx_locations(pattern: &PathPattern) -> Vec<String> {
    match pattern {
        PathPattern::Exact(path) => vec![format!("= {path}")],
        // `^~` keeps regex locations (none today) from overriding a matched prefix,
        // so the longest listed prefix always wins, as validation assumes.
        PathPattern::Prefix(path) => vec![format!("= {path}"), format!("^~ {path}/")],
    }
}

fn write_location(
    out: &mut String,
    route: &Route<'_>,
    pattern: &PathPattern,
    idle_timeout_seconds: u32,
) -> fmt::Result {
    for matcher in nginx_locations(pattern) {
        writeln!(out, "        location {matcher} {{")?;
        match route.action {
            Action::Deny => writeln!(out, "            return 404;")?,
            Action::Forward(target) => {
                write_proxy(out, target, route.websocket, idle_timeout_seconds)?;
            }
        }
        writeln!(out, "        }}")?;
    }
    Ok(())
}

fn write_proxy(
    out: &mut String,
    target: &Target,
    websocket: bool,
    idle_timeout_seconds: u32,
) -> fmt::Result {
    const INDENT: &str = "            ";
    if let (TargetKind::Static, Some(root)) = (target.kind, &target.root) {
        // A single-page app: a path that is no file gets index.html, so the app's own
        // routes (an invite link, say) load and route in the page.
        writeln!(out, "{INDENT}root \"{root}\";")?;
        return writeln!(out, "{INDENT}try_files $uri /index.html =404;");
    }
    writeln!(out, "{INDENT}proxy_pass http://{};", target.name)?;
    writeln!(out, "{INDENT}proxy_http_version 1.1;")?;
    // $http_host keeps the port, so a service can compare a browser's Origin with it.
    writeln!(out, "{INDENT}proxy_set_header Host $http_host;")?;
    writeln!(out, "{INDENT}proxy_set_header X-Real-IP $remote_addr;")?;
    writeln!(
        out,
        "{INDENT}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    )?;
    writeln!(out, "{INDENT}proxy_set_header X-Forwarded-Proto $scheme;")?;
    if websocket {
        writeln!(out, "{INDENT}proxy_set_header Upgrade $http_upgrade;")?;
        writeln!(
            out,
            "{INDENT}proxy_set_header Connection $connection_upgrade;"
        )?;
    } else {
        // An empty Connection header lets nginx reuse upstream keepalive connections.
        writeln!(out, "{INDENT}proxy_set_header Connection \"\";")?;
    }
    writeln!(out, "{INDENT}proxy_read_timeout {idle_timeout_seconds}s;")?;
    writeln!(out, "{INDENT}proxy_send_timeout {idle_timeout_seconds}s;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_table;

    /// The body of `location <matcher> { ... }`, or a panic naming the missing block.
    fn location_block<'a>(config: &'a str, matcher: &str) -> &'a str {
        let opening = format!("        location {matcher} {{\n");
        let start = config
            .find(&opening)
            .unwrap_or_else(|| panic!("no `location {matcher}` in:\n{config}"))
            + opening.len();
        let end = start
            + config[start..]
                .find("\n        }")
                .expect("block is closed");
        &config[start..end]
    }

    #[test]
    fn prefix_becomes_exact_and_prefix_locations_to_the_upstream_with_upgrade() {
        let config = render_nginx(&sample_table());
        for matcher in ["= /rtc", "^~ /rtc/"] {
            let block = location_block(&config, matcher);
            assert!(block.contains("proxy_pass http://sfu;"), "{block}");
            assert!(block.contains("proxy_set_header Upgrade $http_upgrade;"));
            assert!(block.contains("proxy_set_header Connection $connection_upgrade;"));
            assert!(block.contains("proxy_read_timeout 60s;"));
        }
        assert!(config.contains("map $http_upgrade $connection_upgrade {"));
    }

    #[test]
    fn plain_routes_keep_upstream_connections_alive_instead_of_upgrading() {
        let config = render_nginx(&sample_table());
        let block = location_block(&config, "= /status");
        assert!(block.contains("proxy_pass http://sfu;"));
        assert!(block.contains("proxy_set_header Connection \"\";"));
        assert!(!block.contains("Upgrade"));
        assert!(!config.contains("location ^~ /status/"));
    }

    #[test]
    fn denied_paths_return_404_without_proxying() {
        let config = render_nginx(&sample_table());
        for matcher in ["= /metrics", "^~ /metrics/"] {
            assert_eq!(location_block(&config, matcher).trim(), "return 404;");
        }
    }

    #[test]
    fn one_upstream_per_target_and_a_server_on_the_listen_port() {
        let config = render_nginx(&sample_table());
        assert!(config.contains("    upstream api {\n        server 127.0.0.1:8080;\n"));
        assert!(config.contains("    upstream sfu {\n        server 10.0.0.5:7880;\n"));
        assert!(config.contains("        listen 80;\n"));
        assert!(config.contains("    keepalive_timeout 60s;\n"));
    }

    #[test]
    fn the_compose_config_names_each_service_and_routes_the_same() {
        let local = render_nginx(&sample_table());
        let compose = render_nginx_compose(&sample_table());
        assert!(compose.contains("    upstream api {\n        server ppodok-api:8080;\n"));
        assert!(compose.contains("    upstream sfu {\n        server ppodok-sfu:7880;\n"));
        let locations = |config: &str| config[config.find("    server {").unwrap()..].to_owned();
        assert_eq!(locations(&local), locations(&compose));
    }

    #[test]
    fn everything_else_goes_to_the_default_target() {
        let config = render_nginx(&sample_table());
        let block = location_block(&config, "/");
        assert!(block.contains("proxy_pass http://api;"));
        assert!(!block.contains("Upgrade"));
    }

    #[test]
    fn locations_follow_priority_order() {
        let config = render_nginx(&sample_table());
        let position = |matcher: &str| config.find(&format!("location {matcher} {{")).unwrap();
        assert!(position("= /metrics") < position("= /rtc"));
        assert!(position("= /rtc") < position("= /status"));
        assert!(position("= /status") < position("= /bbodok-websocket"));
        assert!(position("= /bbodok-websocket") < position("/"));
    }

    #[test]
    fn a_static_target_is_served_from_its_root_with_the_app_fallback() {
        let mut table = sample_table();
        table.targets.push(crate::Target {
            name: "web".into(),
            kind: TargetKind::Static,
            root: Some("/srv/ppodok web".into()),
            port: 8081,
            health_path: "/".into(),
            upstream_host: "127.0.0.1".into(),
            service_name: "ppodok-web".into(),
            node_id: None,
            local_port: None,
        });
        table.router.default_target = "web".into();
        let config = render_nginx(&table);
        let block = location_block(&config, "/");
        assert!(block.contains("root \"/srv/ppodok web\";"), "{block}");
        assert!(
            block.contains("try_files $uri /index.html =404;"),
            "{block}"
        );
        assert!(!block.contains("proxy_pass"), "{block}");
        assert!(!config.contains("upstream web"), "no upstream for files");
        assert!(config.contains("        text/html html;\n"), "{config}");
        assert!(!render_nginx(&sample_table()).contains("types {"));
        assert!(location_block(&config, "= /rtc").contains("proxy_pass http://sfu;"));
    }

    #[test]
    fn braces_balance() {
        let config = render_nginx(&sample_table());
        let opened = config.matches('{').count();
        let closed = config.matches('}').count();
        assert_eq!(opened, closed);
        assert!(config.ends_with("    }\n}\n"));
    }
}
