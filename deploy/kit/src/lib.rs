//! Readers for the deploy kit's files, shared by its tests (`deploy/kit/tests`): metric names in
//! PromQL, sample names in a Prometheus exposition, Dockerfile stages, the compose file, the
//! queries of the Grafana dashboards and of the alert rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `deploy/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("deploy/kit is two levels below the root")
        .to_path_buf()
}

pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A YAML file of the repository, with `<<` merge keys applied (the compose file uses them).
pub fn yaml(relative: &str) -> serde_yaml_ng::Value {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
    value
}

/// PromQL functions and aggregation operators (Prometheus 2.x) a query here may call.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
];
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Followed by a parenthesised label list that names labels, not metrics.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
];

/// The metric names a PromQL expression selects. Label matchers, ranges, strings and
/// grouping label lists are skipped; Grafana variables (`$__rate_interval`) are allowed.
/// An unknown function is an error, so a typo cannot pass as a metric name.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            i = skip_to(&chars, i, close)?;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration: 0.99, 1e-9, 5m.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                let exponent = matches!(chars[i], 'e' | 'E');
                i += 1;
                if exponent && matches!(chars.get(i), Some('+' | '-')) {
                    i += 1;
                }
            }
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                let next = skip_ws(i);
                if chars.get(next) == Some(&'(') {
                    i = skip_to(&chars, next, ')')?;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || AGGREGATIONS.contains(&word.as_str()) {
            } else if chars.get(skip_ws(i)) == Some(&'(') {
                if !FUNCTIONS.contains(&word.as_str()) {
                    return Err(format!("unknown PromQL function `{word}` in `{expr}`"));
                }
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

fn skip_string(chars: &[char], open: usize) -> Result<usize, String> {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return Ok(i + 1);
        }
        i += 1;
    }
    Err("unterminated string".into())
}

/// Index after the `close` matching the bracket at `open` (strings inside are skipped).
fn skip_to(chars: &[char], open: usize, close: char) -> Result<usize, String> {
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == close => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unclosed `{}`", chars[open]))
}

/// Every name in a Prometheus text exposition: sample names (`x_bucket`, `x_sum`, …) and the
/// family names of `# TYPE` lines.
pub fn exposition_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                names.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// `(panel title, expr)` for every query of a Grafana dashboard (rows' nested panels too).
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(alert or record name, expr)` for every rule of a Prometheus rules file.
pub fn rule_queries(rules: &serde_yaml_ng::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("")
                .to_owned();
            if let Some(expr) = rule["expr"].as_str() {
                out.push((name, expr.to_owned()));
            }
        }
    }
    out
}

/// One `FROM` stage of a Dockerfile: its base image, name, and instructions in order
/// (continuation lines joined, comments dropped).
#[derive(Debug)]
pub struct Stage {
    pub base: String,
    pub name: Option<String>,
    pub instructions: Vec<(String, String)>,
}

impl Stage {
    pub fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).last().copied()
    }
}

pub fn dockerfile_stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => None,
            };
            stages.push(Stage {
                base: words.first().copied().unwrap_or("").to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, rest));
        }
    }
    stages
}

/// The exec-form command of a `HEALTHCHECK … CMD [...]` instruction.
pub fn healthcheck_command(instruction: &str) -> Vec<String> {
    let json = &instruction[instruction.find("CMD").expect("HEALTHCHECK has a CMD") + 3..];
    serde_json::from_str(json.trim()).expect("HEALTHCHECK CMD is a JSON array (exec form)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).unwrap().into_iter().collect()
    }

    #[test]
    fn finds_metrics_and_skips_labels_ranges_and_grouping() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!="x{y}",status=~"5.."}[$__rate_interval])))"#
            ),
            ["a_bucket"]
        );
        assert_eq!(
            names(
                "sum(rate(a_total[5m])) / on (instance) group_left (node) b > 1e-9 and c offset 5m"
            ),
            ["a_total", "b", "c"]
        );
        assert_eq!(names(r#"absent(up{job="x"} == 1)"#), ["up"]);
        assert_eq!(names("topk(10, x) * 8 unless bool y"), ["x", "y"]);
    }

    #[test]
    fn an_unknown_function_is_an_error() {
        assert!(metric_names("rates(a_total[5m])").is_err());
        assert!(metric_names(r#"a{b="unterminated}"#).is_err());
    }

    #[test]
    fn exposition_names_include_samples_and_families() {
        let text = "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\nc_total{k=\"v\"} 3\ng 1\n";
        let got: Vec<String> = exposition_names(text).into_iter().collect();
        assert_eq!(got, ["c_total", "g", "h", "h_bucket", "h_count", "h_sum"]);
    }

    #[test]
    fn dockerfile_stages_join_continuations() {
        let stages = dockerfile_stages(
            "# c\nFROM rust:1 AS build\nRUN a \\\n    && b\nFROM debian:slim\nUSER 1:1\nHEALTHCHECK --interval=1s CMD [\"bash\", \"-c\", \"x\"]\n",
        );
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].name.as_deref(), Some("build"));
        assert_eq!(stages[0].last("RUN"), Some("a  && b"));
        assert_eq!(stages[1].base, "debian:slim");
        assert_eq!(
            healthcheck_command(stages[1].last("HEALTHCHECK").unwrap()),
            ["bash", "-c", "x"]
        );
    }
}
