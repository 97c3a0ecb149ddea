//! The codebase's shape, checked: imports flow one way (request → auth → web layer → client →
//! engine → models), no module imports one that imports it back, and no source file is over
//! 600 lines. ARCHITECTURE.md explains the rule; this keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules of the client layer and below (and the emulator, which stands apart): they know
/// nothing of Actix Web nor of the layers above them.
const LOWER_LAYERS: [&str; 16] = [
    "thread_local",
    "telemetry",
    "client",
    "entitlements",
    "reasons",
    "findings",
    "names",
    "cache",
    "events",
    "limits",
    "models",
    "registration",
    "spool",
    "outage",
    "error",
    "emulator",
];

/// The web layer: the scope, the guards and what they share.
const WEB_LAYER: [&str; 12] = [
    "health",
    "atlas",
    "config",
    "scope",
    "guard",
    "middleware",
    "extractor",
    "denial",
    "csrf",
    "throttle",
    "exclusive",
    "error_response",
];

/// The request layer: who the user is. Above the web layer, which asks it.
const AUTH_LAYER: [&str; 3] = ["auth", "clerk", "jwks"];

/// Who imports whom, by module path.
type Edges = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

struct Module {
    path: Vec<String>,
    file: PathBuf,
    code: String,
}

/// Every module of a crate's `src`, by its path (`client::lifecycle`), with its code minus
/// comments. Binaries (`src/bin`) are left out: nothing imports them.
fn modules(src: &Path) -> Vec<Module> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            if file.is_dir() {
                if file.file_name().unwrap() != "bin" {
                    stack.push(file);
                }
                continue;
            }
            if file.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if path
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                path.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // A file's unit tests (`mod tests { use super::*; }`) import nothing for it.
            let text = text
                .split("\n#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or(&text);
            let code = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            found.push(Module { path, file, code });
        }
    }
    found
}

/// The paths a piece of code names from `crate::`, `super::` or `self::`, resolved to
/// absolute module paths (items included; the caller finds the module).
fn named_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base: Vec<String> = match start {
                "crate::" => Vec::new(),
                "self::" => module.to_vec(),
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            for tail in expand(&code[from..]) {
                let mut path = base.clone();
                path.extend(tail);
                paths.push(path);
            }
        }
    }
    paths
}

/// The paths written at the start of `text`: `a::b::C`, or `a::{b, c::D}` expanded.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_owned());
        rest = &rest[end..];
        if let Some(next) = rest.strip_prefix("::") {
            rest = next;
        } else {
            return vec![segments];
        }
    }
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut close = group.len();
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    close = i;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let mut out = Vec::new();
        let mut depth = 0;
        let mut item_start = 0;
        let inner = &group[..close];
        let mut items = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[item_start..i]);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[item_start..]);
        for item in items {
            for tail in expand(item.trim()) {
                let mut path = segments.clone();
                path.extend(tail);
                out.push(path);
            }
        }
        return out;
    }
    vec![segments]
}

/// The module a path lands in: its longest prefix that is a module.
fn module_of(path: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// Who imports whom, between modules (the crate root, which only re-exports, left out).
fn graph(src: &Path) -> (Edges, Vec<Module>) {
    let modules = modules(src);
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges = Edges::new();
    for module in &modules {
        if module.path.is_empty() {
            continue;
        }
        for path in named_paths(&module.path, &module.code) {
            let target = module_of(&path, &known);
            if target != module.path && !target.is_empty() {
                edges.entry(module.path.clone()).or_default().insert(target);
            }
        }
    }
    (edges, modules)
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".to_owned()
    } else {
        path.join("::")
    }
}

/// A module that reaches itself again through imports, if any: the loop.
fn find_loop(edges: &Edges) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        edges: &Edges,
        trail: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = trail.iter().position(|n| n == node) {
            let mut cycle: Vec<String> = trail[at..].iter().map(|n| name(n)).collect();
            cycle.push(name(node));
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        trail.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, trail, done) {
                return Some(cycle);
            }
        }
        trail.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

fn crate_src(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(name)
        .join("src")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in ["atlas-actix", "atlas-actix-macros"] {
        let (edges, _) = graph(&crate_src(krate));
        if let Some(cycle) = find_loop(&edges) {
            panic!("{krate}: an import loop: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_client_and_below_know_nothing_of_the_web_layer() {
    let (edges, modules) = graph(&crate_src("atlas-actix"));
    for module in &modules {
        let Some(top) = module.path.first() else {
            continue;
        };
        if !LOWER_LAYERS.contains(&top.as_str()) {
            continue;
        }
        // The emulator is a web server of its own: Actix Web is its business.
        assert!(
            top == "emulator" || !module.code.contains("actix_web"),
            "{} names actix_web",
            module.file.display()
        );
        for target in edges.get(&module.path).into_iter().flatten() {
            let above =
                WEB_LAYER.contains(&target[0].as_str()) || AUTH_LAYER.contains(&target[0].as_str());
            assert!(
                !above,
                "{} imports {} from a layer above it",
                name(&module.path),
                name(target)
            );
        }
    }
}

#[test]
fn who_the_user_is_is_decided_without_the_web_layer() {
    let (edges, _) = graph(&crate_src("atlas-actix"));
    for auth in AUTH_LAYER {
        for target in edges.get(&vec![auth.to_owned()]).into_iter().flatten() {
            assert!(
                !WEB_LAYER.contains(&target[0].as_str()),
                "{auth} imports {} from the web layer below it",
                name(target)
            );
        }
    }
}

#[test]
fn the_checker_sees_loops_and_layer_breaks() {
    let dir = std::env::temp_dir().join(format!("atlas-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("client")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod client;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::client::Thing;\n").unwrap();
    std::fs::write(
        dir.join("client/mod.rs"),
        "// crate::a in a comment does not count\nuse crate::{a::Other, models};\n",
    )
    .unwrap();
    let (edges, _) = graph(&dir);
    let cycle = find_loop(&edges).expect("the loop is found");
    assert!(cycle.contains(&"a".to_owned()) && cycle.contains(&"client".to_owned()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_source_file_is_over_600_lines() {
    for krate in ["atlas-actix", "atlas-actix-macros"] {
        for module in modules(&crate_src(krate)) {
            let text = std::fs::read_to_string(&module.file).unwrap();
            // Unit tests at the bottom of a file do not count.
            let code = text
                .split("\n#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or(&text);
            let lines = code.lines().count();
            assert!(
                lines <= 600,
                "{} has {lines} lines of code",
                module.file.display()
            );
        }
    }
}
