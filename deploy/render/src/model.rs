//! The shape of `routes.toml`, and the priority-ordered view the renderers share.

use std::fmt;

use serde::Deserialize;

/// The whole routes file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub router: RouterSettings,
    pub targets: Vec<Target>,
    pub denied: DeniedPaths,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Node-addressed routes (`/sfu/<node>/rtc…` → that node), expanded by [`crate::load`] into
    /// one target and one rule per node.
    #[serde(default)]
    pub node_routes: Vec<NodeRoutes>,
}

/// Routes that address one node of a target each: every node of a StatefulSet (say) gets a
/// target of its own (an nginx upstream, an ALB target group, a Kubernetes Service selecting
/// that pod) and a rule for `<path_prefix>/<node id><path>` for each of `paths`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRoutes {
    /// Node n's rule is `<name>_<n>`.
    pub name: String,
    /// Node n's rule has priority `priority + n`.
    pub priority: u32,
    /// The target whose nodes these are (port, health path; host for local nginx).
    pub target: String,
    #[serde(default)]
    pub websocket: bool,
    pub path_prefix: String,
    /// Prefixes under `<path_prefix>/<node id>`, e.g. `/rtc`.
    pub paths: Vec<String>,
    pub nodes: Vec<NodeAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    /// The node's id: its path segment, its Service / target group / compose host name, and the
    /// pod name in a StatefulSet.
    pub id: String,
    /// For nginx.conf (local runs); default: the target's `upstream_host`.
    #[serde(default)]
    pub upstream_host: Option<String>,
    /// For nginx.conf (local runs); default: the target's `port` (the port everywhere else).
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    /// Load balancer / Ingress name.
    pub name: String,
    pub listen_port: u16,
    pub idle_timeout_seconds: u32,
    /// Receives every path that no rule matches.
    pub default_target: String,
}

/// A service the router forwards to, or a directory of static files (a built web client).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub kind: TargetKind,
    /// Static targets: the directory nginx serves the files from (absolute). The ALB and
    /// Kubernetes forward to `service_name`:`port` instead, a file server holding the same files.
    #[serde(default)]
    pub root: Option<String>,
    pub port: u16,
    pub health_path: String,
    #[serde(default = "default_upstream_host")]
    pub upstream_host: String,
    /// ALB target group name, Kubernetes Service name, and the network alias in compose.yaml.
    pub service_name: String,
    /// Set on the targets [`RouteTable::expand_node_routes`] makes: the node's id.
    #[serde(skip)]
    pub node_id: Option<String>,
    /// A node's own port in nginx.conf (local runs, where nodes share a host); everywhere else
    /// (compose, the ALB, Kubernetes) every node listens on `port`.
    #[serde(skip)]
    pub local_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An HTTP service: every router proxies to it.
    #[default]
    Service,
    /// Built files (a single-page app): nginx serves them from `root`, answering any path that
    /// is not a file with `index.html` so the app's own routes load; the ALB and Kubernetes
    /// forward to a file server. Serving the web client from the router's origin lets its
    /// cookies reach the API.
    Static,
}

fn default_upstream_host() -> String {
    "127.0.0.1".to_owned()
}

/// Paths the router answers with 404 itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeniedPaths {
    pub priority: u32,
    pub paths: Vec<PathPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub priority: u32,
    pub target: String,
    #[serde(default)]
    pub websocket: bool,
    pub paths: Vec<PathPattern>,
}

/// Written in TOML as `{ exact = "/health" }` or `{ prefix = "/rtc" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathPattern {
    /// Matches this path only.
    Exact(String),
    /// Matches the path itself and everything under `path/`, whole segments only
    /// (`/rtc` matches `/rtc` and `/rtc/v1`, not `/rtcx`), which is how Kubernetes
    /// reads `pathType: Prefix`. Never ends in `/` (checked by validation).
    Prefix(String),
}

impl PathPattern {
    pub fn path(&self) -> &str {
        match self {
            PathPattern::Exact(path) | PathPattern::Prefix(path) => path,
        }
    }

    /// True when this pattern matches the request path `path`.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => exact == path,
            PathPattern::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    /// True when some request path is matched by both patterns.
    pub fn overlaps(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Exact(exact), prefix @ PathPattern::Prefix(_))
            | (prefix @ PathPattern::Prefix(_), PathPattern::Exact(exact)) => prefix.matches(exact),
            // Two prefixes overlap when one lies under (or equals) the other.
            (PathPattern::Prefix(a), PathPattern::Prefix(b)) => self.matches(b) || other.matches(a),
        }
    }

    /// True when nginx and Kubernetes would prefer `self` over an overlapping `other`:
    /// exact beats prefix, and a longer prefix beats a shorter one.
    pub fn is_more_specific_than(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(_), PathPattern::Prefix(_)) => true,
            (PathPattern::Prefix(a), PathPattern::Prefix(b)) => a.len() > b.len(),
            _ => false,
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(path) => write!(f, "exact {path}"),
            PathPattern::Prefix(path) => write!(f, "prefix {path}"),
        }
    }
}

/// What the router does with a matched request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Forward(&'a Target),
    /// Answer 404 without reaching any service.
    Deny,
}

/// One rule or the denied block, with its target resolved; what the renderers walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub name: &'a str,
    pub priority: u32,
    pub paths: &'a [PathPattern],
    pub action: Action<'a>,
    pub websocket: bool,
}

/// Name the denied block goes by in generated files and error messages.
pub const DENIED_ROUTE_NAME: &str = "denied";

impl RouteTable {
    /// Adds a target and a rule per node of every `[[node_routes]]` (once: the added targets
    /// carry their `node_id`). Node routes naming a missing target add nothing; validation
    /// reports them.
    pub fn expand_node_routes(&mut self) {
        if self.targets.iter().any(|t| t.node_id.is_some()) {
            return;
        }
        for group in self.node_routes.clone() {
            let Some(base) = self.target(&group.target).cloned() else {
                continue;
            };
            for (n, node) in group.nodes.iter().enumerate() {
                let name = format!("{}_node_{n}", base.name);
                self.targets.push(Target {
                    name: name.clone(),
                    kind: TargetKind::Service,
                    root: None,
                    port: base.port,
                    local_port: node.port,
                    health_path: base.health_path.clone(),
                    upstream_host: node
                        .upstream_host
                        .clone()
                        .unwrap_or_else(|| base.upstream_host.clone()),
                    service_name: node.id.clone(),
                    node_id: Some(node.id.clone()),
                });
                self.rules.push(Rule {
                    name: format!("{}_{n}", group.name),
                    priority: group.priority + n as u32,
                    target: name,
                    websocket: group.websocket,
                    paths: group
                        .paths
                        .iter()
                        .map(|p| {
                            PathPattern::Prefix(format!("{}/{}{p}", group.path_prefix, node.id))
                        })
                        .collect(),
                });
            }
        }
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|target| target.name == name)
    }

    /// # Panics
    /// If the default target does not exist; validation rules that out.
    pub fn default_target(&self) -> &Target {
        self.target(&self.router.default_target)
            .expect("validated route table has its default target")
    }

    /// What the ALB does with a request for `path`: the action of the first route, by
    /// priority, with a matching pattern, else the default target. Validation makes nginx
    /// and Kubernetes (most specific match wins) agree with this.
    pub fn resolve(&self, path: &str) -> Action<'_> {
        self.routes_by_priority()
            .into_iter()
            .find(|route| route.paths.iter().any(|pattern| pattern.matches(path)))
            .map_or(Action::Forward(self.default_target()), |route| route.action)
    }

    /// The denied block and every rule, lowest priority number (evaluated first) first.
    ///
    /// # Panics
    /// If a rule names a missing target; validation rules that out.
    pub fn routes_by_priority(&self) -> Vec<Route<'_>> {
        let denied = Route {
            name: DENIED_ROUTE_NAME,
            priority: self.denied.priority,
            paths: &self.denied.paths,
            action: Action::Deny,
            websocket: false,
        };
        let forwards = self.rules.iter().map(|rule| Route {
            name: &rule.name,
            priority: rule.priority,
            paths: &rule.paths,
            action: Action::Forward(
                self.target(&rule.target)
                    .expect("validated route table has every rule target"),
            ),
            websocket: rule.websocket,
        });
        let mut routes: Vec<Route<'_>> = std::iter::once(denied).chain(forwards).collect();
        routes.sort_by_key(|route| route.priority);
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_table;

    fn exact(path: &str) -> PathPattern {
        PathPattern::Exact(path.to_owned())
    }

    fn prefix(path: &str) -> PathPattern {
        PathPattern::Prefix(path.to_owned())
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let rtc = prefix("/rtc");
        assert!(rtc.matches("/rtc"));
        assert!(rtc.matches("/rtc/"));
        assert!(rtc.matches("/rtc/v1/validate"));
        assert!(!rtc.matches("/rtcx"));
        assert!(!rtc.matches("/api/rtc"));
    }

    #[test]
    fn exact_matches_only_itself() {
        let status = exact("/status");
        assert!(status.matches("/status"));
        assert!(!status.matches("/status/"));
        assert!(!status.matches("/status/x"));
    }

    #[test]
    fn overlap_and_specificity() {
        assert!(prefix("/a").overlaps(&prefix("/a/b")));
        assert!(prefix("/a/b").overlaps(&prefix("/a")));
        assert!(!prefix("/a").overlaps(&prefix("/ab")));
        assert!(exact("/a/b").overlaps(&prefix("/a")));
        assert!(!exact("/ab").overlaps(&prefix("/a")));
        assert!(prefix("/a/b").is_more_specific_than(&prefix("/a")));
        assert!(exact("/a/b").is_more_specific_than(&prefix("/a")));
        assert!(!prefix("/a").is_more_specific_than(&exact("/a/b")));
    }

    #[test]
    fn routes_come_in_priority_order_with_denied_first() {
        let table = sample_table();
        let order: Vec<(&str, u32)> = table
            .routes_by_priority()
            .iter()
            .map(|route| (route.name, route.priority))
            .collect();
        assert_eq!(
            order,
            [
                (DENIED_ROUTE_NAME, 1),
                ("sfu_signalling", 10),
                ("sfu_status", 20),
                ("api_stomp", 30)
            ]
        );
    }

    #[test]
    fn resolve_follows_rules_then_default() {
        let table = sample_table();
        let target_of = |path: &str| match table.resolve(path) {
            Action::Forward(target) => target.name.as_str(),
            Action::Deny => "denied",
        };
        assert_eq!(target_of("/rtc/v1"), "sfu");
        assert_eq!(target_of("/status"), "sfu");
        assert_eq!(target_of("/metrics"), "denied");
        assert_eq!(target_of("/api/v1/rooms"), "api");
        assert_eq!(target_of("/rtcx"), "api");
    }

    #[test]
    fn upstream_host_defaults_to_loopback() {
        let table = sample_table();
        assert_eq!(table.target("api").unwrap().upstream_host, "127.0.0.1");
        assert_eq!(table.target("sfu").unwrap().upstream_host, "10.0.0.5");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text =
            crate::test_support::SAMPLE_ROUTES.replace("websocket = true", "websockets = true");
        let error = crate::parse(&text).unwrap_err().to_string();
        assert!(error.contains("websockets"), "{error}");
    }
}
