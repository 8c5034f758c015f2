//! The shape of the tree, checked: plumbing names no system, and a system reaches into
//! another only through what is meant to be shared (ARCHITECTURE.md, "Adding a system").
//!
//! Server (`server/src`): plumbing is `auth`, `realtime`, `platform`, `db`, `error`,
//! `clock`, `config`, `web`, `health`, `openapi`, `trace_context` and `objects`; the composition root
//! (`lib.rs`, `cli.rs`, `main.rs`) wires the systems; every other top-level module is a
//! system. Web UI (`frontend/src`): plumbing is `net`, `store`, `components`, `pages`
//! (the pages of no system: home, sign-in, status), `browser`, `session`; `app.rs` and
//! `lib.rs` are the composition root; every other top-level module is a system.
//!
//! Between systems (and from plumbing) only these are allowed: the ID generator's handle
//! (`ids::Ids`, `ids::IdError`), the flags SDK (`flags::sdk`, `flags::feature_enabled`,
//! `flags::LocalFlags`, `flags::OWN_ENVIRONMENT`) and tracing (`tracing::...`, once it
//! exists).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SERVER_PLUMBING: &[&str] = &[
    "auth",
    "realtime",
    "platform",
    "db",
    "error",
    "clock",
    "config",
    "web",
    "health",
    "openapi",
    "trace_context",
    "objects",
];
const SERVER_ROOT: &[&str] = &["lib", "cli", "main"];
const WEB_PLUMBING: &[&str] = &["net", "store", "components", "pages", "browser", "session"];
const WEB_ROOT: &[&str] = &["app", "lib"];

/// `system::item` paths any module may use.
const SHARED_BETWEEN_SYSTEMS: &[&str] = &[
    "ids::Ids",
    "ids::IdError",
    "flags::sdk",
    "flags::feature_enabled",
    "flags::LocalFlags",
    "flags::OWN_ENVIRONMENT",
    "tracing",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`cart` for `src/cart/store.rs`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("the file is under src");
    let first = relative.components().next().expect("a path component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The code of a file without its comments (line comments, doc comments and block
/// comments; string contents are kept, which is harmless for `crate::` paths).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
            out.push('\n');
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Every `crate::a::b` path in `code`, as `a::b` (or `a`), expanding `crate::{a::b, c}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    /// Expands one path tree (`a::b`, `a::{b, c::d}`, `{a, b}`), first two segments.
    fn expand(tree: &str, prefix: Option<&str>, out: &mut BTreeSet<String>) {
        let tree = tree.trim();
        if let Some(inner) = tree.strip_prefix('{') {
            let inner = &inner[..inner.rfind('}').unwrap_or(inner.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], prefix, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], prefix, out);
            return;
        }
        let first = ident(tree);
        if first.is_empty() || first == "self" {
            if let Some(p) = prefix {
                out.insert(p.to_owned());
            }
            return;
        }
        match prefix {
            Some(p) => {
                out.insert(format!("{p}::{first}"));
            }
            None => match tree[first.len()..].strip_prefix("::") {
                Some(rest) => expand(rest, Some(first), out),
                None => {
                    out.insert(first.to_owned());
                }
            },
        }
    }
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let tree = if rest.starts_with('{') {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(j, _)| j + 1);
            &rest[..end]
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':');
            if rest[end..].starts_with('{') {
                // `crate::a::{b, c::{d, e}}`: up to the matching brace.
                let mut depth = 0;
                let close = rest[end..]
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(rest.len() - end, |(j, _)| j + 1);
                &rest[..end + close]
            } else {
                path
            }
        };
        expand(tree, None, &mut out);
    }
    out
}

struct Layout<'a> {
    src: PathBuf,
    plumbing: &'a [&'a str],
    root: &'a [&'a str],
}

impl Layout<'_> {
    fn kind(&self, module: &str) -> &'static str {
        if module == "AppState" {
            // The composition root's state: systems may take it, plumbing never does.
            "state"
        } else if module.starts_with(char::is_uppercase) {
            // A re-export at the crate root of a plumbing type (`Db`, `Clock`, `Config`).
            "plumbing"
        } else if !self.src.join(module).is_dir()
            && !self.src.join(format!("{module}.rs")).is_file()
        {
            // An item of the composition root itself (`crate::openapi_json_text`).
            "root"
        } else if self.root.contains(&module) {
            "root"
        } else if self.plumbing.contains(&module) {
            "plumbing"
        } else {
            "system"
        }
    }

    /// Every import that breaks the rules, as `file: path (why)`.
    fn violations(&self) -> Vec<String> {
        let mut files = Vec::new();
        rust_files(&self.src, &mut files);
        files.sort();
        let mut found = Vec::new();
        for file in &files {
            let from = top_module(&self.src, file);
            let from_kind = self.kind(&from);
            if from_kind == "root" {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("read a source file");
            for path in crate_paths(&without_comments(&text)) {
                let target = path.split("::").next().expect("a segment").to_owned();
                if self.kind(&target) == "state" && from_kind == "plumbing" {
                    found.push(format!(
                        "{}: crate::AppState (plumbing takes narrow handles, never the whole state)",
                        file.strip_prefix(workspace()).unwrap_or(file).display()
                    ));
                    continue;
                }
                if target == from || self.kind(&target) != "system" {
                    continue;
                }
                if SHARED_BETWEEN_SYSTEMS.iter().any(|allowed| {
                    path == *allowed || (allowed.split("::").count() == 1 && target == *allowed)
                }) {
                    continue;
                }
                let why = if from_kind == "plumbing" {
                    "plumbing names a system"
                } else {
                    "a system reaches into another's internals"
                };
                found.push(format!(
                    "{}: crate::{path} ({why})",
                    file.strip_prefix(workspace()).unwrap_or(file).display()
                ));
            }
        }
        found
    }
}

#[test]
fn the_path_parser_sees_grouped_and_nested_imports() {
    let code = "use crate::{cart::store, ids::{Ids, IdError}, error::ApiError};\n\
                use crate::realtime::{hub::{Hub, Registration}, Events};\n\
                let x = crate::flags::feature_enabled(&s);\nuse crate::docs;";
    let paths: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(
        paths,
        [
            "cart::store",
            "docs",
            "error::ApiError",
            "flags::feature_enabled",
            "ids::IdError",
            "ids::Ids",
            "realtime::Events",
            "realtime::hub"
        ]
    );
    assert_eq!(
        without_comments("a // crate::cart\n/* crate::docs */b"),
        "a \nb"
    );
}

#[test]
fn the_server_keeps_its_layers() {
    let layout = Layout {
        src: workspace().join("server/src"),
        plumbing: SERVER_PLUMBING,
        root: SERVER_ROOT,
    };
    let violations = layout.violations();
    assert!(
        violations.is_empty(),
        "imports across the server's layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_web_ui_keeps_its_layers() {
    let layout = Layout {
        src: workspace().join("frontend/src"),
        plumbing: WEB_PLUMBING,
        root: WEB_ROOT,
    };
    let violations = layout.violations();
    assert!(
        violations.is_empty(),
        "imports across the web UI's layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_plumbing_module_exists() {
    // A renamed plumbing module would silently turn into a "system" here.
    for (src, names) in [
        ("server/src", SERVER_PLUMBING),
        ("frontend/src", WEB_PLUMBING),
    ] {
        for name in names {
            let dir = workspace().join(src).join(name);
            let file = workspace().join(src).join(format!("{name}.rs"));
            assert!(dir.is_dir() || file.is_file(), "{src}/{name} is gone");
        }
    }
}
