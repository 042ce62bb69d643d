//! The crate's module graph, checked from the sources (a deterministic test, no build needed).
//!
//! Nodes are the top-level modules (`rooms`, `realtime`, `routes`, …: a directory module with all
//! its files is one node). `a → b` when code in `a` names `crate::b` (in `use` lines or inline
//! paths; comments, string literals and `#[cfg(test)]` items do not count). Three rules:
//!
//! 1. The graph has no cycle: a module can be understood (and tested) without those that use it.
//! 2. Only the wiring (`state`, `startup`) and the STOMP endpoint (`stomp`) import `realtime`:
//!    domain modules announce through the `events` port.
//! 3. The domain modules in [`EXPLICIT`] take their dependencies explicitly: no `AppState`, no
//!    HTTP error type, no HTTP framework.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that may import `realtime`.
const MAY_IMPORT_REALTIME: &[&str] = &["state", "startup", "stomp"];

/// Domain modules that take explicit dependencies (a connection or transaction, the clock, the
/// cache, an event sink) and return their own errors.
const EXPLICIT: &[&str] = &[
    "accounts",
    "attendance",
    "calendar",
    "calendar_body",
    "events",
    "groups",
    "membership",
    "rooms",
    "sessions",
    "study",
    "timers",
    "video",
    "views",
    "webhooks",
];

/// What an `EXPLICIT` module must not name.
const NOT_IN_DOMAIN: &[&str] = &["crate::state", "crate::error", "crate::routes", "actix_web"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (None for the crate roots and this file).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "module_graph")).then(|| name.to_owned())
}

/// The code of a file without comments, string and char literals, and `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((prefix, hashes)) =
            raw_string_start(rest).filter(|_| !after_ident(text, i))
        {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + prefix + hashes + 1;
            i = text[body..]
                .find(&close)
                .map_or(b.len(), |p| body + p + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only literals are skipped.
            let lit_end = if rest[1..].starts_with('\\') {
                rest[2..].find('\'').map(|p| p + 3)
            } else {
                let c = rest[1..].chars().next().map_or(0, char::len_utf8);
                rest[1 + c..].starts_with('\'').then_some(c + 2)
            };
            match lit_end {
                Some(n) => i += n,
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_items(&out)
}

fn after_ident(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `(prefix length, number of #)` when `s` starts a raw string (`r"`, `r#"`, `br#"`, …).
fn raw_string_start(s: &str) -> Option<(usize, usize)> {
    let prefix = if s.starts_with("br") { 2 } else { 1 };
    let after = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = after.len() - after.trim_start_matches('#').len();
    after[hashes..].starts_with('"').then_some((prefix, hashes))
}

/// Removes each `#[cfg(test)]` item (up to its `;` or its balanced `{ … }`).
fn strip_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let (Some(open), semi) = (item.find('{'), item.find(';')) else {
            return out;
        };
        if semi.is_some_and(|s| s < open) {
            rest = &item[semi.expect("checked") + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, c) in item[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of the paths after each `crate::` (`crate::{a, b::c}` names a and b).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 {
            let before = code[..at].chars().next_back().expect("at > 0");
            if before.is_ascii_alphanumeric() || before == '_' || before == '$' {
                continue;
            }
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        item_start = false;
                        let name = ident_at(&group[k..]);
                        if !name.is_empty() && name != "self" {
                            names.insert(name.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

struct Crate {
    graph: Graph,
    /// Module → its code (all files of it, concatenated).
    code: BTreeMap<String, String>,
}

fn read_crate(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph = Graph::new();
    let mut code = BTreeMap::<String, String>::new();
    for file in &files {
        let Some(module) = top_module(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        let stripped = code_of(&text);
        let edges = graph.entry(module.clone()).or_default();
        for name in crate_references(&stripped) {
            if name != module && modules.contains(&name) {
                edges.insert(name);
            }
        }
        code.entry(module).or_default().push_str(&stripped);
    }
    Crate { graph, code }
}

/// One cycle of the graph, if any, as the modules along it (first = last).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|n| n == next).expect("open = on path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn this_crate() -> Crate {
    read_crate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let krate = this_crate();
    assert!(
        krate.graph.len() > 20,
        "too few modules found: {:?}",
        krate.graph.keys()
    );
    if let Some(cycle) = find_cycle(&krate.graph) {
        panic!("module cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn only_the_wiring_and_the_stomp_endpoint_import_realtime() {
    let krate = this_crate();
    let importers: Vec<&String> = krate
        .graph
        .iter()
        .filter(|(m, deps)| deps.contains("realtime") && !MAY_IMPORT_REALTIME.contains(&m.as_str()))
        .map(|(m, _)| m)
        .collect();
    assert!(
        importers.is_empty(),
        "these modules import realtime; publish through crate::events instead: {importers:?}"
    );
}

#[test]
fn explicit_domain_modules_know_no_app_state_and_no_http() {
    let krate = this_crate();
    for module in EXPLICIT {
        let code = krate
            .code
            .get(*module)
            .unwrap_or_else(|| panic!("no module {module}"));
        for banned in NOT_IN_DOMAIN {
            assert!(!code.contains(banned), "{module} names {banned}");
        }
    }
}

#[test]
fn the_reader_sees_imports_and_ignores_comments_strings_and_tests() {
    let code = code_of(
        "use crate::{a, b::{c, d}, self};\n// crate::commented\nfn f<'x>(c: char) { let s = \"crate::quoted\"; let r = r#\"crate::raw\"#; if c == '\"' { crate::e::f(); } }\n#[cfg(test)]\nmod tests { use crate::tested; }\npub use crate::g as h;\n",
    );
    let names: Vec<String> = crate_references(&code).into_iter().collect();
    assert_eq!(names, ["a", "b", "e", "g"]);

    let mut graph = Graph::new();
    graph.entry("x".into()).or_default().insert("y".into());
    graph.entry("y".into()).or_default().insert("z".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("z".into()).or_default().insert("x".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["x".into(), "y".into(), "z".into(), "x".into()])
    );
}
