//! Checks a parsed route table before anything is rendered from it.
//!
//! Every problem is reported, not just the first, so one edit-and-run fixes them all.

use std::collections::HashMap;
use std::fmt;

use crate::alb::alb_path_patterns;
use crate::model::{PathPattern, RouteTable, TargetKind, DENIED_ROUTE_NAME};

/// AWS accepts listener rule priorities in this range.
const ALB_PRIORITIES: std::ops::RangeInclusive<u32> = 1..=50_000;
/// AWS accepts idle timeouts in this range (seconds).
const ALB_IDLE_TIMEOUTS: std::ops::RangeInclusive<u32> = 1..=4_000;
/// An ALB rule holds at most five condition values (a prefix takes two).
const ALB_MAX_VALUES_PER_RULE: usize = 5;
/// ALB target group names are at most 32 characters.
const ALB_MAX_TARGET_GROUP_NAME: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    DuplicateTargetName {
        name: String,
    },
    DuplicateRuleName {
        name: String,
    },
    DuplicatePriority {
        priority: u32,
        first: String,
        second: String,
    },
    PriorityOutOfRange {
        route: String,
        priority: u32,
    },
    UnknownTarget {
        route: String,
        target: String,
    },
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    InvalidPath {
        route: String,
        path: String,
        reason: &'static str,
    },
    DuplicatePath {
        pattern: PathPattern,
        first: String,
        second: String,
    },
    NoPaths {
        route: String,
    },
    TooManyPaths {
        route: String,
        alb_values: usize,
    },
    /// nginx cannot hold the `location = /x` of both an exact and a prefix `/x`.
    ExactCollidesWithPrefix {
        path: String,
        exact_route: String,
        prefix_route: String,
    },
    /// A more specific pattern is evaluated after an overlapping, more general one that
    /// routes elsewhere: the ALB would disagree with nginx and Kubernetes.
    ShadowedPath {
        specific: PathPattern,
        specific_route: String,
        specific_priority: u32,
        general: PathPattern,
        general_route: String,
        general_priority: u32,
    },
    InvalidPort {
        what: String,
    },
    IdleTimeoutOutOfRange {
        seconds: u32,
    },
    /// A static target needs an absolute `root`; a service has none.
    StaticRoot {
        target: String,
        reason: &'static str,
    },
    /// Files cannot answer a WebSocket upgrade.
    WebSocketToStatic {
        route: String,
        target: String,
    },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateTargetName { name } => {
                write!(f, "target `{name}` is defined more than once")
            }
            Self::DuplicateRuleName { name } => {
                write!(f, "rule `{name}` is defined more than once")
            }
            Self::DuplicatePriority { priority, first, second } => write!(
                f,
                "priority {priority} is used by both `{first}` and `{second}`; priorities must be unique"
            ),
            Self::PriorityOutOfRange { route, priority } => write!(
                f,
                "`{route}` has priority {priority}; the ALB accepts {}..={}",
                ALB_PRIORITIES.start(),
                ALB_PRIORITIES.end()
            ),
            Self::UnknownTarget { route, target } => write!(
                f,
                "`{route}` routes to target `{target}`, which is not defined in [[targets]]"
            ),
            Self::InvalidName { what, name, reason } => {
                write!(f, "{what} `{name}` is not a valid name: {reason}")
            }
            Self::InvalidPath { route, path, reason } => {
                write!(f, "`{route}` has path `{path}`, which {reason}")
            }
            Self::DuplicatePath { pattern, first, second } => write!(
                f,
                "path pattern `{pattern}` appears in both `{first}` and `{second}`"
            ),
            Self::NoPaths { route } => write!(f, "`{route}` has no paths"),
            Self::TooManyPaths { route, alb_values } => write!(
                f,
                "`{route}` needs {alb_values} ALB path values (a prefix takes two); an ALB rule \
                 holds at most {ALB_MAX_VALUES_PER_RULE}, so split it"
            ),
            Self::ExactCollidesWithPrefix {
                path,
                exact_route,
                prefix_route,
            } => write!(
                f,
                "`exact {path}` (`{exact_route}`) collides with `prefix {path}` (`{prefix_route}`), \
                 which already matches {path}; drop the exact pattern or rename the prefix"
            ),
            Self::ShadowedPath {
                specific,
                specific_route,
                specific_priority,
                general,
                general_route,
                general_priority,
            } => write!(
                f,
                "`{specific}` (`{specific_route}`, priority {specific_priority}) is more specific than \
                 `{general}` (`{general_route}`, priority {general_priority}) but would be evaluated \
                 after it on the ALB; give `{specific_route}` a lower priority number"
            ),
            Self::InvalidPort { what } => write!(f, "{what} has port 0"),
            Self::StaticRoot { target, reason } => write!(f, "target `{target}` {reason}"),
            Self::WebSocketToStatic { route, target } => write!(
                f,
                "`{route}` is a WebSocket rule but `{target}` is a static target"
            ),
            Self::IdleTimeoutOutOfRange { seconds } => write!(
                f,
                "idle_timeout_seconds is {seconds}; the ALB accepts {}..={}",
                ALB_IDLE_TIMEOUTS.start(),
                ALB_IDLE_TIMEOUTS.end()
            ),
        }
    }
}

/// All the errors found by [`validate`], one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A denied block or a rule, as seen by the cross-route checks.
struct RouteView<'a> {
    name: &'a str,
    priority: u32,
    paths: &'a [PathPattern],
    /// `None` for the denied block; two routes with the same destination may overlap freely.
    destination: Option<&'a str>,
}

pub fn validate(table: &RouteTable) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    check_router(table, &mut errors);
    check_targets(table, &mut errors);

    let routes: Vec<RouteView<'_>> = std::iter::once(RouteView {
        name: DENIED_ROUTE_NAME,
        priority: table.denied.priority,
        paths: &table.denied.paths,
        destination: None,
    })
    .chain(table.rules.iter().map(|rule| RouteView {
        name: &rule.name,
        priority: rule.priority,
        paths: &rule.paths,
        destination: Some(&rule.target),
    }))
    .collect();

    check_rule_names_and_targets(table, &mut errors);
    for group in &table.node_routes {
        match table.target(&group.target) {
            None => errors.push(ValidationError::UnknownTarget {
                route: group.name.clone(),
                target: group.target.clone(),
            }),
            Some(target) if target.kind == TargetKind::Static => {
                errors.push(ValidationError::StaticRoot {
                    target: group.target.clone(),
                    reason: "is static; node routes need a service",
                })
            }
            Some(_) => {}
        }
        if group.nodes.is_empty() || group.paths.is_empty() {
            errors.push(ValidationError::NoPaths {
                route: group.name.clone(),
            });
        }
    }
    check_priorities(&routes, &mut errors);
    check_paths(&routes, &mut errors);
    check_exact_prefix_collisions(&routes, &mut errors);
    check_overlaps(&routes, &mut errors);

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn check_router(table: &RouteTable, errors: &mut Vec<ValidationError>) {
    let router = &table.router;
    if let Err(reason) = check_dns_label(&router.name) {
        errors.push(ValidationError::InvalidName {
            what: "router",
            name: router.name.clone(),
            reason,
        });
    }
    if router.listen_port == 0 {
        errors.push(ValidationError::InvalidPort {
            what: "router listen_port".to_owned(),
        });
    }
    if !ALB_IDLE_TIMEOUTS.contains(&router.idle_timeout_seconds) {
        errors.push(ValidationError::IdleTimeoutOutOfRange {
            seconds: router.idle_timeout_seconds,
        });
    }
    if table.target(&router.default_target).is_none() {
        errors.push(ValidationError::UnknownTarget {
            route: "router default_target".to_owned(),
            target: router.default_target.clone(),
        });
    }
}

fn check_targets(table: &RouteTable, errors: &mut Vec<ValidationError>) {
    let mut seen = HashMap::new();
    for target in &table.targets {
        if seen.insert(target.name.as_str(), ()).is_some() {
            errors.push(ValidationError::DuplicateTargetName {
                name: target.name.clone(),
            });
        }
        if let Err(reason) = check_identifier(&target.name) {
            errors.push(ValidationError::InvalidName {
                what: "target",
                name: target.name.clone(),
                reason,
            });
        }
        if let Err(reason) = check_dns_label(&target.service_name) {
            errors.push(ValidationError::InvalidName {
                what: "service_name",
                name: target.service_name.clone(),
                reason,
            });
        }
        let root_problem = match (target.kind, target.root.as_deref()) {
            (TargetKind::Static, None) => Some("is static and needs `root`, the files' directory"),
            (TargetKind::Static, Some(root)) if !root.starts_with('/') => {
                Some("has a `root` that is not an absolute path")
            }
            (TargetKind::Static, Some(root)) if root.contains(['"', ';', '{', '}', '\n']) => {
                Some("has a `root` nginx cannot hold (quote, `;`, brace or newline)")
            }
            (TargetKind::Service, Some(_)) => Some("is a service; only static targets have `root`"),
            _ => None,
        };
        if let Some(reason) = root_problem {
            errors.push(ValidationError::StaticRoot {
                target: target.name.clone(),
                reason,
            });
        }
        if target.port == 0 {
            errors.push(ValidationError::InvalidPort {
                what: format!("target `{}`", target.name),
            });
        }
        if let Err(reason) = check_path_text(&target.health_path) {
            errors.push(ValidationError::InvalidPath {
                route: format!("target {} health_path", target.name),
                path: target.health_path.clone(),
                reason,
            });
        }
    }
}

fn check_rule_names_and_targets(table: &RouteTable, errors: &mut Vec<ValidationError>) {
    let mut seen = HashMap::new();
    for rule in &table.rules {
        if rule.name == DENIED_ROUTE_NAME || seen.insert(rule.name.as_str(), ()).is_some() {
            errors.push(ValidationError::DuplicateRuleName {
                name: rule.name.clone(),
            });
        }
        if let Err(reason) = check_identifier(&rule.name) {
            errors.push(ValidationError::InvalidName {
                what: "rule",
                name: rule.name.clone(),
                reason,
            });
        }
        match table.target(&rule.target) {
            None => errors.push(ValidationError::UnknownTarget {
                route: rule.name.clone(),
                target: rule.target.clone(),
            }),
            Some(target) if rule.websocket && target.kind == TargetKind::Static => {
                errors.push(ValidationError::WebSocketToStatic {
                    route: rule.name.clone(),
                    target: rule.target.clone(),
                });
            }
            Some(_) => {}
        }
    }
}

fn check_priorities(routes: &[RouteView<'_>], errors: &mut Vec<ValidationError>) {
    let mut owner_by_priority: HashMap<u32, &str> = HashMap::new();
    for route in routes {
        if !ALB_PRIORITIES.contains(&route.priority) {
            errors.push(ValidationError::PriorityOutOfRange {
                route: route.name.to_owned(),
                priority: route.priority,
            });
        }
        if let Some(first) = owner_by_priority.insert(route.priority, route.name) {
            errors.push(ValidationError::DuplicatePriority {
                priority: route.priority,
                first: first.to_owned(),
                second: route.name.to_owned(),
            });
        }
    }
}

fn check_paths(routes: &[RouteView<'_>], errors: &mut Vec<ValidationError>) {
    let mut owner_by_pattern: HashMap<&PathPattern, &str> = HashMap::new();
    for route in routes {
        if route.paths.is_empty() {
            errors.push(ValidationError::NoPaths {
                route: route.name.to_owned(),
            });
        }
        let alb_values: usize = route.paths.iter().map(|p| alb_path_patterns(p).len()).sum();
        if alb_values > ALB_MAX_VALUES_PER_RULE {
            errors.push(ValidationError::TooManyPaths {
                route: route.name.to_owned(),
                alb_values,
            });
        }
        for pattern in route.paths {
            if let Err(reason) = check_pattern(pattern) {
                errors.push(ValidationError::InvalidPath {
                    route: route.name.to_owned(),
                    path: pattern.path().to_owned(),
                    reason,
                });
            }
            if let Some(first) = owner_by_pattern.insert(pattern, route.name) {
                errors.push(ValidationError::DuplicatePath {
                    pattern: pattern.clone(),
                    first: first.to_owned(),
                    second: route.name.to_owned(),
                });
            }
        }
    }
}

fn check_exact_prefix_collisions(routes: &[RouteView<'_>], errors: &mut Vec<ValidationError>) {
    for exact_route in routes {
        for prefix_route in routes {
            for exact in exact_route.paths {
                let PathPattern::Exact(path) = exact else {
                    continue;
                };
                let colliding_prefix = PathPattern::Prefix(path.clone());
                if prefix_route.paths.contains(&colliding_prefix) {
                    errors.push(ValidationError::ExactCollidesWithPrefix {
                        path: path.clone(),
                        exact_route: exact_route.name.to_owned(),
                        prefix_route: prefix_route.name.to_owned(),
                    });
                }
            }
        }
    }
}

fn check_overlaps(routes: &[RouteView<'_>], errors: &mut Vec<ValidationError>) {
    for specific_route in routes {
        for general_route in routes {
            if specific_route.destination == general_route.destination
                || specific_route.priority < general_route.priority
            {
                continue;
            }
            for specific in specific_route.paths {
                for general in general_route.paths {
                    if specific.overlaps(general) && specific.is_more_specific_than(general) {
                        errors.push(ValidationError::ShadowedPath {
                            specific: specific.clone(),
                            specific_route: specific_route.name.to_owned(),
                            specific_priority: specific_route.priority,
                            general: general.clone(),
                            general_route: general_route.name.to_owned(),
                            general_priority: general_route.priority,
                        });
                    }
                }
            }
        }
    }
}

fn check_pattern(pattern: &PathPattern) -> Result<(), &'static str> {
    match pattern {
        PathPattern::Prefix(path) if path == "/" => {
            Err("would match everything; use router.default_target instead")
        }
        PathPattern::Prefix(path) if path.ends_with('/') => Err(
            "is a prefix and must not end in `/`: prefix `/rtc` already matches `/rtc` and everything under `/rtc/`",
        ),
        _ => check_path_text(pattern.path()),
    }
}

/// Characters every renderer can emit unquoted and unescaped; `*` and `?` are left out
/// because the ALB reads them as wildcards.
fn check_path_text(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with `/`");
    }
    if path.contains("//") {
        return Err("must not contain `//`");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~');
    if !path.chars().all(allowed) {
        return Err("may only contain letters, digits and `/-_.~`");
    }
    Ok(())
}

/// Rule and target names become nginx upstream names and Terraform resource names.
fn check_identifier(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_with_letter {
        return Err("must start with a lowercase letter");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("may only contain lowercase letters, digits and `_`");
    }
    Ok(())
}

/// Service and load balancer names must satisfy both Kubernetes (RFC 1035 label) and AWS.
fn check_dns_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > ALB_MAX_TARGET_GROUP_NAME {
        return Err("must be 1 to 32 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
        return Err("must start with a lowercase letter and not end with `-`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may only contain lowercase letters, digits and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rule;
    use crate::test_support::sample_table;

    /// Validation errors after `edit` is applied to the (valid) sample table.
    fn errors_after(edit: impl FnOnce(&mut RouteTable)) -> Vec<ValidationError> {
        let mut table = sample_table();
        edit(&mut table);
        match validate(&table) {
            Ok(()) => Vec::new(),
            Err(ValidationErrors(errors)) => errors,
        }
    }

    fn rule_mut<'a>(table: &'a mut RouteTable, name: &str) -> &'a mut Rule {
        table
            .rules
            .iter_mut()
            .find(|rule| rule.name == name)
            .expect("sample rule exists")
    }

    #[test]
    fn sample_table_is_valid() {
        assert_eq!(errors_after(|_| {}), []);
    }

    #[test]
    fn duplicate_priorities_are_rejected() {
        let errors = errors_after(|table| rule_mut(table, "sfu_status").priority = 10);
        assert_eq!(
            errors,
            [ValidationError::DuplicatePriority {
                priority: 10,
                first: "sfu_signalling".into(),
                second: "sfu_status".into(),
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "priority 10 is used by both `sfu_signalling` and `sfu_status`; priorities must be unique"
        );
    }

    #[test]
    fn a_rule_may_not_share_the_denied_priority() {
        let errors = errors_after(|table| rule_mut(table, "sfu_status").priority = 1);
        assert!(errors.contains(&ValidationError::DuplicatePriority {
            priority: 1,
            first: DENIED_ROUTE_NAME.into(),
            second: "sfu_status".into(),
        }));
    }

    #[test]
    fn priorities_outside_the_alb_range_are_rejected() {
        let errors = errors_after(|table| rule_mut(table, "api_stomp").priority = 50_001);
        assert_eq!(
            errors,
            [ValidationError::PriorityOutOfRange {
                route: "api_stomp".into(),
                priority: 50_001,
            }]
        );
    }

    #[test]
    fn unknown_rule_target_is_rejected() {
        let errors = errors_after(|table| rule_mut(table, "sfu_status").target = "media".into());
        assert_eq!(
            errors,
            [ValidationError::UnknownTarget {
                route: "sfu_status".into(),
                target: "media".into(),
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "`sfu_status` routes to target `media`, which is not defined in [[targets]]"
        );
    }

    #[test]
    fn unknown_default_target_is_rejected() {
        let errors = errors_after(|table| table.router.default_target = "web".into());
        assert_eq!(
            errors,
            [ValidationError::UnknownTarget {
                route: "router default_target".into(),
                target: "web".into(),
            }]
        );
    }

    #[test]
    fn paths_must_start_with_a_slash() {
        let errors = errors_after(|table| {
            rule_mut(table, "sfu_status").paths = vec![PathPattern::Exact("status".into())];
        });
        assert_eq!(
            errors,
            [ValidationError::InvalidPath {
                route: "sfu_status".into(),
                path: "status".into(),
                reason: "must start with `/`",
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "`sfu_status` has path `status`, which must start with `/`"
        );
    }

    #[test]
    fn health_paths_must_start_with_a_slash() {
        let errors = errors_after(|table| table.targets[0].health_path = "health".into());
        assert!(matches!(
            errors.as_slice(),
            [ValidationError::InvalidPath { path, .. }] if path == "health"
        ));
    }

    #[test]
    fn wildcards_and_odd_characters_are_rejected() {
        for bad in ["/rtc/*", "/a b", "/a?b", "/a//b"] {
            let errors = errors_after(|table| {
                rule_mut(table, "sfu_status").paths = vec![PathPattern::Exact(bad.into())];
            });
            assert!(
                matches!(errors.as_slice(), [ValidationError::InvalidPath { .. }]),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn prefixes_must_not_end_in_a_slash_or_be_the_root() {
        for bad in ["/rtc/", "/"] {
            let errors = errors_after(|table| {
                rule_mut(table, "sfu_signalling").paths = vec![PathPattern::Prefix(bad.into())];
            });
            assert!(
                matches!(errors.as_slice(), [ValidationError::InvalidPath { path, .. }] if path == bad),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn duplicate_path_patterns_are_rejected() {
        let errors = errors_after(|table| {
            rule_mut(table, "sfu_status")
                .paths
                .push(PathPattern::Prefix("/rtc".into()));
        });
        assert_eq!(
            errors,
            [ValidationError::DuplicatePath {
                pattern: PathPattern::Prefix("/rtc".into()),
                first: "sfu_signalling".into(),
                second: "sfu_status".into(),
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "path pattern `prefix /rtc` appears in both `sfu_signalling` and `sfu_status`"
        );
    }

    #[test]
    fn a_denied_path_cannot_also_be_routed() {
        let errors = errors_after(|table| {
            rule_mut(table, "sfu_status").paths = vec![PathPattern::Prefix("/metrics".into())];
        });
        assert!(errors.contains(&ValidationError::DuplicatePath {
            pattern: PathPattern::Prefix("/metrics".into()),
            first: DENIED_ROUTE_NAME.into(),
            second: "sfu_status".into(),
        }));
    }

    #[test]
    fn exact_and_prefix_of_the_same_path_collide() {
        let errors = errors_after(|table| {
            rule_mut(table, "sfu_signalling")
                .paths
                .push(PathPattern::Exact("/rtc".into()));
        });
        assert_eq!(
            errors,
            [ValidationError::ExactCollidesWithPrefix {
                path: "/rtc".into(),
                exact_route: "sfu_signalling".into(),
                prefix_route: "sfu_signalling".into(),
            }]
        );
    }

    #[test]
    fn a_specific_path_evaluated_after_a_general_one_is_rejected() {
        // `/rtc/admin` to the API, but at priority 40, after `/rtc` (10) has already
        // sent it to the SFU on the ALB, while nginx would pick the longer prefix.
        let errors = errors_after(|table| {
            table.rules.push(Rule {
                name: "rtc_admin".into(),
                priority: 40,
                target: "api".into(),
                websocket: false,
                paths: vec![PathPattern::Prefix("/rtc/admin".into())],
            });
        });
        assert_eq!(
            errors,
            [ValidationError::ShadowedPath {
                specific: PathPattern::Prefix("/rtc/admin".into()),
                specific_route: "rtc_admin".into(),
                specific_priority: 40,
                general: PathPattern::Prefix("/rtc".into()),
                general_route: "sfu_signalling".into(),
                general_priority: 10,
            }]
        );
        assert!(errors[0]
            .to_string()
            .ends_with("give `rtc_admin` a lower priority number"));
    }

    #[test]
    fn a_specific_path_evaluated_first_is_fine() {
        let errors = errors_after(|table| {
            table.rules.push(Rule {
                name: "rtc_admin".into(),
                priority: 5,
                target: "api".into(),
                websocket: false,
                paths: vec![PathPattern::Prefix("/rtc/admin".into())],
            });
        });
        assert_eq!(errors, []);
    }

    #[test]
    fn empty_and_oversized_path_lists_are_rejected() {
        let errors = errors_after(|table| rule_mut(table, "sfu_status").paths.clear());
        assert_eq!(
            errors,
            [ValidationError::NoPaths {
                route: "sfu_status".into()
            }]
        );

        // Three prefixes need six ALB values, one more than a rule holds.
        let errors = errors_after(|table| {
            rule_mut(table, "sfu_status").paths = ["/a", "/b", "/c"]
                .map(|path| PathPattern::Prefix(path.into()))
                .to_vec();
        });
        assert_eq!(
            errors,
            [ValidationError::TooManyPaths {
                route: "sfu_status".into(),
                alb_values: 6,
            }]
        );
    }

    #[test]
    fn names_must_be_usable_in_every_output() {
        let errors = errors_after(|table| rule_mut(table, "sfu_status").name = "SFU-status".into());
        assert!(matches!(
            errors.as_slice(),
            [ValidationError::InvalidName { what: "rule", .. }]
        ));

        let errors = errors_after(|table| table.targets[1].service_name = "ppodok_sfu".into());
        assert!(matches!(
            errors.as_slice(),
            [ValidationError::InvalidName {
                what: "service_name",
                ..
            }]
        ));

        let errors = errors_after(|table| table.rules[0].name = DENIED_ROUTE_NAME.into());
        assert!(errors.contains(&ValidationError::DuplicateRuleName {
            name: DENIED_ROUTE_NAME.into()
        }));
    }

    #[test]
    fn static_targets_need_an_absolute_root_and_no_websocket() {
        let web = |root: Option<&str>| crate::Target {
            name: "web".into(),
            kind: TargetKind::Static,
            root: root.map(str::to_owned),
            port: 8081,
            health_path: "/".into(),
            upstream_host: "127.0.0.1".into(),
            service_name: "ppodok-web".into(),
            node_id: None,
            local_port: None,
        };
        assert!(errors_after(|table| table.targets.push(web(Some("/srv/web")))).is_empty());
        for root in [None, Some("srv/web"), Some("/srv/web;")] {
            let errors = errors_after(|table| table.targets.push(web(root)));
            assert!(
                matches!(errors.as_slice(), [ValidationError::StaticRoot { .. }]),
                "{root:?}: {errors:?}"
            );
        }
        let errors = errors_after(|table| table.targets[0].root = Some("/srv/api".into()));
        assert!(matches!(
            errors.as_slice(),
            [ValidationError::StaticRoot { .. }]
        ));
        let errors = errors_after(|table| {
            table.targets.push(web(Some("/srv/web")));
            rule_mut(table, "sfu_signalling").target = "web".into();
        });
        assert!(errors.contains(&ValidationError::WebSocketToStatic {
            route: "sfu_signalling".into(),
            target: "web".into()
        }));
    }

    #[test]
    fn duplicate_targets_ports_and_timeouts_are_rejected() {
        let errors = errors_after(|table| {
            let copy = table.targets[0].clone();
            table.targets.push(copy);
            table.targets[1].port = 0;
            table.router.idle_timeout_seconds = 0;
        });
        assert!(errors.contains(&ValidationError::DuplicateTargetName { name: "api".into() }));
        assert!(errors.contains(&ValidationError::InvalidPort {
            what: "target `sfu`".into()
        }));
        assert!(errors.contains(&ValidationError::IdleTimeoutOutOfRange { seconds: 0 }));
    }
}
