//! The crate's rooms and which way they depend, read from the sources (no build needed).
//!
//! Each top-level module of `src/` (`src/x.rs` or `src/x/`) imports others through
//! `crate::x…` paths. Comments and test code (`#[cfg(test)]` items and the files they name)
//! are left out: they document or exercise, they do not depend. Checked:
//!
//! - no import cycle between top-level modules (a room that imports another imports nothing
//!   that imports it back, however far round);
//! - the domain rooms (`call`, `channels`, `agent`, `memory`) import neither `api` nor
//!   `server`, nor the HTTP crates (`axum`, `utoipa`): HTTP handlers live in `api/`.
//!
//! A cycle not yet broken is listed in `KNOWN_CYCLE_EDGES` with why; the test fails when one
//! listed there is gone too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Rooms that hold the domain: they know nothing of HTTP.
const DOMAIN: &[&str] = &["call", "channels", "agent", "memory"];
/// What the domain rooms must not import: the server, the HTTP layer and its crates.
const HTTP: &[&str] = &["api", "server"];
const HTTP_CRATES: &[&str] = &["axum", "utoipa"];

/// Edges that still close a cycle, each with why it is there.
const KNOWN_CYCLE_EDGES: &[(&str, &str, &str)] = &[];

/// `module -> (imported module -> first place seen)`, with the HTTP crates as `"axum"` /
/// `"utoipa"` entries.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The line without its `//` comment (a `//` inside a string literal is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '/' if !in_str && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    line
}

/// The source's lines that are code outside tests, and the files of test modules it
/// declares (`#[cfg(test)] mod x;`, with or without `#[path]`).
fn production_lines(source: &str, dir: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let mut lines = Vec::new();
    let mut test_files = Vec::new();
    let mut block_comment = false;
    let mut it = source.lines().peekable();
    while let Some(raw) = it.next() {
        let mut line = raw.to_string();
        if block_comment {
            match line.find("*/") {
                Some(end) => {
                    line = line[end + 2..].to_string();
                    block_comment = false;
                }
                None => continue,
            }
        }
        if let Some(start) = line.find("/*") {
            match line[start..].find("*/") {
                Some(end) => line.replace_range(start..start + end + 2, ""),
                None => {
                    line.truncate(start);
                    block_comment = true;
                }
            }
        }
        let code = strip_comment(&line).trim().to_string();
        // `#[cfg(test)]`, `#[cfg(all(test, …))]`: compiled only for tests (not `not(test)`).
        let test_only =
            code.starts_with("#[cfg(") && code.contains("test") && !code.contains("not(test");
        if !test_only {
            lines.push(code);
            continue;
        }
        // Skip the item under #[cfg(test)]: its other attributes, then a `mod x;` (its file
        // is test code) or a braced item.
        let mut path_attr = None;
        while let Some(next) = it.next() {
            let next = strip_comment(next).trim();
            if next.is_empty() {
                continue;
            }
            if let Some(rest) = next.strip_prefix("#[path = \"") {
                path_attr = rest.split('"').next().map(str::to_string);
                continue;
            }
            if next.starts_with("#[") {
                continue;
            }
            if let Some(name) = next
                .strip_prefix("mod ")
                .or_else(|| next.strip_prefix("pub mod "))
                .and_then(|n| n.strip_suffix(';'))
            {
                match &path_attr {
                    Some(p) => test_files.push(dir.join(p)),
                    None => {
                        test_files.push(dir.join(format!("{name}.rs")));
                        test_files.push(dir.join(name).join("mod.rs"));
                    }
                }
                break;
            }
            let mut depth: i64 = 0;
            let mut opened = false;
            let mut line = next.to_string();
            loop {
                for c in line.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && line.ends_with(';')) {
                    break;
                }
                match it.next() {
                    Some(l) => line = strip_comment(l).to_string(),
                    None => break,
                }
            }
            break;
        }
    }
    (lines, test_files)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a line names through `crate::` (also `crate::{a, b::c}`), and the
/// HTTP crates it names.
fn imports(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `parley_crate::` or the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        start = true;
                        continue;
                    }
                    c if c.is_whitespace() => continue,
                    _ if start && depth == 1 => {
                        let name = ident_at(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            out.push(name.to_string());
                        }
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                out.push(name.to_string());
            }
        }
    }
    for krate in HTTP_CRATES {
        let pattern = format!("{krate}::");
        let mut from = 0;
        while let Some(i) = line[from..].find(&pattern) {
            let at = from + i;
            let before = line[..at].chars().last();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                out.push(krate.to_string());
                break;
            }
            from = at + pattern.len();
        }
    }
    out
}

/// The graph of `src/` (or of `root`, for the tests of this test).
fn graph(root: &Path) -> Graph {
    let mut files = Vec::new();
    rs_files(root, &mut files);
    files.sort();
    let mut tests = BTreeSet::new();
    let mut parsed = Vec::new();
    for file in &files {
        let source = fs::read_to_string(file).unwrap();
        let (lines, test_files) = production_lines(&source, file.parent().unwrap());
        tests.extend(test_files);
        parsed.push((file, lines));
    }
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(root, f)).collect();
    let mut graph = Graph::new();
    for (file, lines) in parsed {
        if tests.contains(file) {
            continue;
        }
        let Some(module) = module_of(root, file) else {
            continue;
        };
        let node = graph.entry(module.clone()).or_default();
        for (n, line) in lines.iter().enumerate() {
            for target in imports(line) {
                let known = modules.contains(&target) || HTTP_CRATES.contains(&target.as_str());
                if target != module && known {
                    node.entry(target).or_insert_with(|| {
                        format!(
                            "{}:{}: {line}",
                            file.strip_prefix(root).unwrap().display(),
                            n + 1
                        )
                    });
                }
            }
        }
    }
    graph
}

/// `x` for `src/x.rs` and `src/x/…`; none for the crate roots.
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The strongly connected components with more than one module (Tarjan's).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every broken rule, one line each.
fn violations(graph: &Graph, known: &[(&str, &str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for room in DOMAIN {
        for (target, at) in graph.get(*room).into_iter().flatten() {
            let http = HTTP.contains(&target.as_str()) || HTTP_CRATES.contains(&target.as_str());
            if http {
                out.push(format!("`{room}` (a domain room) imports `{target}`: {at}"));
            }
        }
    }
    let edges: BTreeMap<String, BTreeSet<String>> = graph
        .iter()
        .map(|(m, targets)| {
            let targets = targets
                .keys()
                .filter(|t| !HTTP_CRATES.contains(&t.as_str()))
                .filter(|t| !known.iter().any(|(a, b, _)| a == m && b == t))
                .cloned()
                .collect();
            (m.clone(), targets)
        })
        .collect();
    for component in cycles(&edges) {
        let mut lines = Vec::new();
        for a in &component {
            for b in &component {
                if edges[a].contains(b) {
                    lines.push(format!("  {a} -> {b}: {}", graph[a][b]));
                }
            }
        }
        out.push(format!(
            "import cycle between {}:\n{}",
            component.join(", "),
            lines.join("\n")
        ));
    }
    for (a, b, why) in known {
        if !graph.get(*a).is_some_and(|t| t.contains_key(*b)) {
            out.push(format!(
                "`{a}` no longer imports `{b}` ({why}): take it off KNOWN_CYCLE_EDGES"
            ));
        }
    }
    out
}

#[test]
fn top_level_modules_depend_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&root);
    assert!(
        graph.contains_key("call") && graph["call"].contains_key("sip"),
        "the sources were not read: {graph:?}"
    );
    let found = violations(&graph, KNOWN_CYCLE_EDGES);
    let listing: Vec<String> = graph
        .iter()
        .map(|(m, t)| format!("{m} -> {}", t.keys().cloned().collect::<Vec<_>>().join(" ")))
        .collect();
    assert!(
        found.is_empty(),
        "module boundaries broken:\n{}\n\nthe graph:\n{}",
        found.join("\n"),
        listing.join("\n")
    );
}

/// The checker itself finds what it must, on a small tree written for it.
#[test]
fn the_checker_catches_cycles_http_in_the_domain_and_skips_tests_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub mod api;\n",
    );
    write(
        "a/mod.rs",
        "use crate::b::Thing;\n/// see [`crate::c::X`]\n",
    );
    write(
        "b.rs",
        "use crate::{c::Y, store};\n#[cfg(test)]\nmod tests {\n    use crate::a::Z;\n}\n",
    );
    write("c.rs", "fn f() { crate::a::g() } // crate::api\n");
    write("store.rs", "");
    write(
        "call/mod.rs",
        "use axum::Router;\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod tests;\n",
    );
    write("call/t.rs", "use crate::api::X;\n");
    write("api.rs", "use crate::call::Y;\n");

    let graph = graph(src);
    let names = |m: &str| graph[m].keys().cloned().collect::<Vec<_>>();
    assert_eq!(names("a"), ["b"]);
    assert_eq!(names("b"), ["c", "store"]);
    assert_eq!(names("c"), ["a"]);
    assert_eq!(names("call"), ["axum"]);
    let found = violations(&graph, &[]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("`call` (a domain room) imports `axum`"));
    assert!(found[1].starts_with("import cycle between a, b, c:"));
    // A known edge breaks the cycle; one that is gone is reported.
    let found = violations(&graph, &[("c", "a", "why"), ("a", "c", "why")]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[1].contains("`a` no longer imports `c`"));
}
