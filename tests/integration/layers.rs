//! The codebase's shape, checked: the folders of `atlas-actix/src` are its layers, imports flow
//! one way (cli → web → auth → client → entitlements → models), no module imports one that imports it
//! back, and no source file is over 600 lines. ARCHITECTURE.md explains the rule; this keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top to bottom, each named by its folder of `src/`: a module may import its own
/// layer and those below it, never one above. `error.rs`, the crate's error type, is the one
/// loose file with a layer (the client's: the web layer maps it to HTTP answers).
const LAYERS: [(&str, &[&str]); 6] = [
    ("cli", &["cli"]),
    ("web", &["web"]),
    ("auth", &["auth"]),
    ("client", &["client", "error"]),
    ("entitlements", &["entitlements"]),
    ("models", &["models"]),
];

/// The emulator stands apart: a platform of its own that shares only the wire types.
const APART: &str = "emulator";
/// The operator's command (`cargo atlas`) reads emulator data files and may run one.
const USES_THE_EMULATOR: &str = "cli";

/// The layers that know nothing of Actix Web.
const WITHOUT_ACTIX_WEB: [&str; 3] = ["client", "entitlements", "models"];

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
            let code = without_unit_tests(&text)
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            found.push(Module { path, file, code });
        }
    }
    found
}

/// The file without its unit tests: the `mod tests` under a `#[cfg(...)]` naming `test`
/// (`#[cfg(test)]`, `#[cfg(all(test, unix))]`), which imports nothing for the file.
fn without_unit_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("\nmod tests") {
        let at = from + at;
        let attribute = text[..at].lines().last().unwrap_or("").trim();
        if attribute.starts_with("#[cfg(") && attribute.contains("test") {
            return &text[..at - attribute.len()];
        }
        from = at + 1;
    }
    text
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

/// What the crate root re-exports, by the name it is known as at the root (`Atlas` →
/// `web::atlas::Atlas`), so `use crate::Atlas` counts as an import of `web::atlas`.
fn reexports(root: &Module, known: &BTreeSet<Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    let mut rest = root.code.as_str();
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        for path in expand(&rest[..end].replace(char::is_whitespace, " ")) {
            let Some(first) = path.first() else { continue };
            if !known.iter().any(|module| module.first() == Some(first)) {
                // Another crate's item (`atlas_actix_macros::limit`).
                continue;
            }
            let last = path.last().cloned().unwrap_or_default();
            names.insert(last, path);
        }
        // `pub use web::probes as health;`
        let statement = &rest[..end];
        if let Some((path, alias)) = statement.split_once(" as ") {
            if let Some(path) = expand(path.trim()).pop() {
                names.insert(alias.trim().to_owned(), path);
            }
        }
        rest = &rest[end..];
    }
    names
}

/// Who imports whom, between modules (the crate root, which only re-exports, left out).
fn graph(src: &Path) -> (Edges, Vec<Module>) {
    let modules = modules(src);
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let root_names = modules
        .iter()
        .find(|m| m.path.is_empty())
        .map(|root| reexports(root, &known))
        .unwrap_or_default();
    let mut edges = Edges::new();
    for module in &modules {
        if module.path.is_empty() {
            continue;
        }
        for mut path in named_paths(&module.path, &module.code) {
            if let Some(target) = path.first().and_then(|first| root_names.get(first)) {
                path.splice(..1, target.iter().cloned());
            }
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

/// Where a module stands: its layer's depth (0 is the top), `Apart` for the emulator, or an
/// error for a module in no known folder (a loose file, a new folder): the tree must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Layer(usize),
    Apart,
}

fn place(module: &[String]) -> Result<Place, String> {
    let top = module.first().map(String::as_str).unwrap_or_default();
    if top == APART {
        return Ok(Place::Apart);
    }
    LAYERS
        .iter()
        .position(|(_, folders)| folders.contains(&top))
        .map(Place::Layer)
        .ok_or_else(|| {
            format!(
                "{} is in no layer: put it in one of the layers' folders ({}) or `{APART}/`, or add its layer to LAYERS",
                name(module),
                LAYERS.map(|(layer, _)| layer).join(", ")
            )
        })
}

/// Every break of the layering in the crate at `src`: a module of no known layer, an import
/// of a layer above, Actix Web below the web layer, the emulator reaching into the SDK.
fn layer_breaks(src: &Path) -> Vec<String> {
    let (edges, modules) = graph(src);
    let mut breaks = Vec::new();
    for module in modules.iter().filter(|m| !m.path.is_empty()) {
        let here = match place(&module.path) {
            Ok(here) => here,
            Err(unknown) => {
                breaks.push(unknown);
                continue;
            }
        };
        let top = module.path[0].as_str();
        let layer = LAYERS.iter().find(|(_, folders)| folders.contains(&top));
        if layer.is_some_and(|(layer, _)| WITHOUT_ACTIX_WEB.contains(layer))
            && module.code.contains("actix_web")
        {
            breaks.push(format!("{} names actix_web", module.file.display()));
        }
        for target in edges.get(&module.path).into_iter().flatten() {
            let there = match place(target) {
                Ok(there) => there,
                Err(unknown) => {
                    breaks.push(unknown);
                    continue;
                }
            };
            let allowed = match (here, there) {
                (Place::Layer(here), Place::Layer(there)) => there >= here,
                // The emulator speaks the platform's wire format, nothing more.
                (Place::Apart, Place::Layer(there)) => there == LAYERS.len() - 1,
                (Place::Apart, Place::Apart) => true,
                (Place::Layer(_), Place::Apart) => top == USES_THE_EMULATOR,
            };
            if !allowed {
                breaks.push(format!(
                    "{} imports {}, which is not below it",
                    name(&module.path),
                    name(target)
                ));
            }
        }
    }
    breaks
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
fn imports_flow_down_the_layers_the_folders_are() {
    let breaks = layer_breaks(&crate_src("atlas-actix"));
    assert!(breaks.is_empty(), "{}", breaks.join("\n"));
}

#[test]
fn at_most_four_files_lie_loose_at_the_top() {
    let loose: Vec<_> = std::fs::read_dir(crate_src("atlas-actix"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    assert!(loose.len() <= 4, "{loose:?}");
}

/// A scratch crate `src` for the checker's own tests.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("atlas-layers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (file, code) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, code).unwrap();
        }
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_checker_sees_loops() {
    let tree = Scratch::new(
        "loop",
        &[
            ("lib.rs", "mod web;\nmod client;\n"),
            ("web/mod.rs", "use crate::client::Thing;\n"),
            (
                "client/mod.rs",
                "// crate::web in a comment does not count\nuse crate::{web::Other, models};\n",
            ),
        ],
    );
    let (edges, _) = graph(&tree.0);
    let cycle = find_loop(&edges).expect("the loop is found");
    assert!(cycle.contains(&"web".to_owned()) && cycle.contains(&"client".to_owned()));
}

#[test]
fn the_checker_refuses_a_module_of_no_known_layer() {
    let tree = Scratch::new(
        "unknown",
        &[
            ("lib.rs", "mod client;\nmod stray;\n"),
            ("client/mod.rs", "use crate::models::Customer;\n"),
            ("models/mod.rs", "pub struct Customer;\n"),
            ("stray.rs", "pub fn helper() {}\n"),
        ],
    );
    let breaks = layer_breaks(&tree.0);
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert!(breaks[0].starts_with("stray is in no layer"), "{breaks:?}");
}

#[test]
fn the_checker_sees_an_import_up_through_the_root_reexports() {
    let tree = Scratch::new(
        "reexport",
        &[
            (
                "lib.rs",
                "mod client;\nmod web;\npub use web::atlas::{Atlas, Other};\npub use web::probes as health;\n",
            ),
            ("web/mod.rs", "pub mod atlas;\npub mod probes;\n"),
            ("web/atlas.rs", "pub struct Atlas;\n"),
            ("web/probes.rs", "pub fn liveness() {}\n"),
            (
                "client/mod.rs",
                "use crate::Atlas;\nfn f() { crate::health::liveness() }\n",
            ),
        ],
    );
    let breaks = layer_breaks(&tree.0);
    assert_eq!(
        breaks,
        [
            "client imports web::atlas, which is not below it",
            "client imports web::probes, which is not below it"
        ]
    );
}

#[test]
fn the_checker_sees_actix_web_below_the_web_layer() {
    let tree = Scratch::new(
        "actix",
        &[
            ("lib.rs", "mod entitlements;\n"),
            ("entitlements/mod.rs", "use actix_web::HttpRequest;\n"),
        ],
    );
    let breaks = layer_breaks(&tree.0);
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert!(breaks[0].ends_with("names actix_web"), "{breaks:?}");
}

#[test]
fn no_source_file_is_over_600_lines() {
    for krate in ["atlas-actix", "atlas-actix-macros"] {
        for module in modules(&crate_src(krate)) {
            let text = std::fs::read_to_string(&module.file).unwrap();
            // Unit tests at the bottom of a file do not count.
            let code = without_unit_tests(&text);
            let lines = code.lines().count();
            assert!(
                lines <= 600,
                "{} has {lines} lines of code",
                module.file.display()
            );
        }
    }
}

#[test]
fn unit_tests_under_any_test_cfg_import_nothing_for_their_file() {
    let text =
        "use crate::models::X;\n\n#[cfg(all(test, unix))]\nmod tests {\n    use super::*;\n}\n";
    assert_eq!(without_unit_tests(text), "use crate::models::X;\n\n");
    let plain = "use crate::models::X;\n#[cfg(feature = \"redis\")]\nmod testsuite;\n";
    assert_eq!(without_unit_tests(plain), plain);
}
