//! The crate's layers hold: every module imports only from layers below its own (or from a
//! module of its own layer, without a loop), as the table in `src/lib.rs` says.
//!
//! The table is read from `src/lib.rs` itself, so the documentation and this check cannot drift
//! apart. Imports are read from the source: every `crate::` path (in `use` declarations and in
//! code) and every `super::` path of a top-level module's own file, comments and the unit-test
//! section at the end of a file (`#[cfg(test)] mod tests`) left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: each layer's name and its top-level modules.
type Layers = Vec<(String, Vec<String>)>;

/// Reads the layer table of the `//!` doc of `lib.rs`: the rows of the table whose header row
/// starts with `| layer | modules |`, each naming its modules in backticks.
fn layers_of(lib_rs: &str) -> Layers {
    let mut layers = Vec::new();
    let mut in_table = false;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("| layer | modules |") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if !doc.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = doc.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 2 || cells[0].starts_with("---") {
            continue;
        }
        let modules = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .filter(|name| name != "main")
            .collect();
        layers.push((cells[0].to_owned(), modules));
    }
    layers
}

/// One import of one module by another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    /// The importing file, relative to `src/`.
    file: String,
    line: usize,
    /// The top-level module the file belongs to.
    from: String,
    /// The top-level module it imports from.
    to: String,
}

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The identifiers a path continues with after `crate::` (or `super::`) at the start of `rest`:
/// one, or each of a `{...}` group's top-level names.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.push(ident(group[start..i].trim()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(ident(group[start..i].trim()));
                start = i + 1;
            }
            _ => {}
        }
    }
    names
}

/// The module path of a file under `src/`: `store/sqlite/mod.rs` is `["store", "sqlite"]`,
/// `live/socket/join.rs` is `["live", "socket", "join"]`.
fn module_path(relative: &str) -> Vec<String> {
    let mut path: Vec<String> = relative
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The code of a file as the import scan reads it, one entry a line: comments and the text of
/// string literals blanked (a `//` inside a string is not a comment), and the lines of the
/// unit-test module (`#[cfg(test)]` then `mod tests {`, to its matching brace) as `None`.
fn code_of(text: &str) -> Vec<Option<String>> {
    let mut lines = Vec::new();
    let mut in_string = false;
    let mut test_depth: Option<i32> = None;
    let mut cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if test_depth.is_none() && cfg_test && trimmed.starts_with("mod tests {") {
            test_depth = Some(0);
        }
        cfg_test = trimmed.starts_with("#[cfg(test)]");
        let mut code = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_string => {
                    chars.next();
                    code.push_str("  ");
                    continue;
                }
                '"' => in_string = !in_string,
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                _ => {}
            }
            if let Some(depth) = &mut test_depth {
                match c {
                    '{' if !in_string => *depth += 1,
                    '}' if !in_string => *depth -= 1,
                    _ => {}
                }
            }
            // Text inside string literals is not code: blank it, keeping the offsets.
            code.push(if in_string && c != '"' { ' ' } else { c });
        }
        if let Some(depth) = test_depth {
            lines.push(None);
            if depth == 0 && line.contains('}') {
                test_depth = None;
            }
        } else {
            lines.push(Some(code));
        }
    }
    lines
}

/// The names `lib.rs` re-exports at the crate root, and the module each comes from
/// (`pub use startup::App;` maps `App` to `startup`).
fn root_reexports(src: &Path) -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut names = BTreeMap::new();
    for line in code_of(&lib).into_iter().flatten() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item.rsplit("::").next().unwrap_or(item);
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                names.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    names
}

/// The imports between top-level modules in the crate under `src`, and the imports that would
/// hide one (a glob import from the crate root, an alias of the crate).
fn imports(src: &Path) -> (Vec<Import>, Vec<String>) {
    let reexports = root_reexports(src);
    let mut found = BTreeSet::new();
    let mut hidden = Vec::new();
    for path in rust_files(src) {
        let relative = path.strip_prefix(src).unwrap();
        let file = relative.to_string_lossy().replace('\\', "/");
        let module = module_path(&file);
        let from = module[0].clone();
        // The crate roots are not modules: `lib.rs` declares the layers and re-exports, and
        // `main.rs` is the binary, above everything.
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in code_of(&text).iter().enumerate() {
            let Some(line) = line else {
                continue;
            };
            let line_no = n + 1;
            if line.contains("crate as ") || line.contains("extern crate self") {
                hidden.push(format!(
                    "src/{file}:{line_no}: an alias of the crate hides what is imported"
                ));
            }
            for (offset, _) in line
                .match_indices("crate::")
                .chain(line.match_indices("super::"))
            {
                let before = line[..offset].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                // Where the path starts: the crate root, or as many levels up as it has `super`s.
                let mut rest = &line[offset..];
                let mut depth = if let Some(after) = rest.strip_prefix("crate::") {
                    rest = after;
                    Some(0)
                } else {
                    Some(module.len())
                };
                while let Some(after) = rest.strip_prefix("super::") {
                    rest = after;
                    depth = depth.and_then(|d: usize| d.checked_sub(1));
                }
                // Still inside this top-level module: not an import between modules.
                if depth != Some(0) {
                    continue;
                }
                for to in first_segments(rest) {
                    if to.is_empty() && rest.starts_with('*') {
                        hidden.push(format!(
                            "src/{file}:{line_no}: a glob import from the crate root hides which layer it uses"
                        ));
                        continue;
                    }
                    let to = reexports.get(&to).cloned().unwrap_or(to);
                    if to.is_empty() || to == "self" || to == from {
                        continue;
                    }
                    found.insert(Import {
                        file: file.clone(),
                        line: line_no,
                        from: from.clone(),
                        to,
                    });
                }
            }
        }
    }
    (found.into_iter().collect(), hidden)
}

/// Everything wrong with the crate under `src` against `layers`: modules in no layer, imports
/// from a higher layer, and loops between modules. Empty when the layering holds.
fn violations(src: &Path, layers: &Layers) -> Vec<String> {
    let rank: BTreeMap<&str, (usize, &str)> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, (layer, modules))| {
            modules
                .iter()
                .map(move |module| (module.as_str(), (i, layer.as_str())))
        })
        .collect();
    let mut problems = Vec::new();
    let mut modules = BTreeSet::new();
    for path in std::fs::read_dir(src).unwrap() {
        let path = path.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs").to_owned();
        let is_module = path.is_dir() && path.join("mod.rs").exists()
            || name.ends_with(".rs") && module != "lib" && module != "main";
        if is_module {
            if !rank.contains_key(module.as_str()) {
                problems.push(format!(
                    "src/{name}: the module `{module}` is in no layer of the table in src/lib.rs"
                ));
            }
            modules.insert(module);
        }
    }
    let (imports, hidden) = imports(src);
    problems.extend(hidden);
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        if !modules.contains(&import.to) {
            // A name at the crate root that is not a module: a re-export or a macro.
            continue;
        }
        graph
            .entry(import.from.as_str())
            .or_default()
            .insert(import.to.as_str());
        if let (Some(&(from_rank, from_layer)), Some(&(to_rank, to_layer))) =
            (rank.get(import.from.as_str()), rank.get(import.to.as_str()))
            && to_rank > from_rank
        {
            problems.push(format!(
                "src/{}:{}: `{}` ({from_layer}) imports `crate::{}` ({to_layer}), a higher layer",
                import.file, import.line, import.from, import.to
            ));
        }
    }
    // Loops, also within a layer: each set of modules that reach one another, once, with one
    // loop through it as the example.
    let reach = |start: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_owned()];
        while let Some(module) = todo.pop() {
            for &next in graph.get(module.as_str()).into_iter().flatten() {
                if seen.insert(next.to_owned()) {
                    todo.push(next.to_owned());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<String>> = graph
        .keys()
        .map(|&module| (module, reach(module)))
        .collect();
    let mut reported = BTreeSet::new();
    for (&module, reachable) in &reached {
        if !reachable.contains(module) || reported.contains(module) {
            continue;
        }
        let members: BTreeSet<&str> = reachable
            .iter()
            .map(String::as_str)
            .filter(|other| reached.get(other).is_some_and(|r| r.contains(module)))
            .collect();
        // One loop from `module` back to itself, through members only (breadth first).
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([module]);
        'search: while let Some(at) = queue.pop_front() {
            for &next in graph.get(at).into_iter().flatten() {
                if !members.contains(next) || previous.contains_key(next) {
                    continue;
                }
                previous.insert(next, at);
                if next == module {
                    break 'search;
                }
                queue.push_back(next);
            }
        }
        let mut example = vec![module];
        let mut at = previous[module];
        while at != module {
            example.push(at);
            at = previous[at];
        }
        example.push(module);
        example.reverse();
        let edges: Vec<String> = example
            .windows(2)
            .map(|pair| {
                let import = imports
                    .iter()
                    .find(|i| i.from == pair[0] && i.to == pair[1])
                    .expect("an edge comes from an import");
                format!(
                    "{} -> {} (src/{}:{})",
                    pair[0], pair[1], import.file, import.line
                )
            })
            .collect();
        problems.push(format!(
            "a loop among {}: {}",
            members.iter().copied().collect::<Vec<_>>().join(", "),
            edges.join(", ")
        ));
        reported.extend(members.iter().map(|m| m.to_string()));
    }
    problems
}

fn crate_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn crate_layers() -> Layers {
    let lib = std::fs::read_to_string(crate_src().join("lib.rs")).unwrap();
    let layers = layers_of(&lib);
    assert!(
        layers.len() >= 3,
        "src/lib.rs has no layer table (a `| layer | modules | may import |` table in its //! doc)"
    );
    layers
}

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    let problems = violations(&crate_src(), &crate_layers());
    assert!(
        problems.is_empty(),
        "the layering of src/lib.rs does not hold:\n{}",
        problems.join("\n")
    );
}

/// Writes a tiny crate (`src/` with `lib.rs` and the given files) into a temporary folder.
fn planted(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("high")).unwrap();
    let lib = "//! | layer | modules | may import |\n\
               //! | --- | --- | --- |\n\
               //! | low | `low` | crates |\n\
               //! | high | `high` | low |\n\
               \n\
               pub mod high;\n\
               pub mod low;\n";
    std::fs::write(src.join("lib.rs"), lib).unwrap();
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    dir
}

#[test]
fn a_planted_upward_import_is_reported_with_its_file_and_line() {
    let dir = planted(&[
        ("low.rs", "//! Low.\n\nuse crate::high::Thing;\n"),
        ("high/mod.rs", "pub struct Thing;\n"),
    ]);
    let src = dir.path().join("src");
    let layers = layers_of(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let problems = violations(&src, &layers);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/low.rs:3:") && p.contains("imports `crate::high`")),
        "{problems:?}"
    );
}

#[test]
fn imports_in_groups_inline_paths_and_super_count_and_tests_and_comments_do_not() {
    let dir = planted(&[
        (
            "low.rs",
            "// use crate::high::Commented;\n\
             /// See [`crate::high::Doc`].\n\
             pub fn f() { let _ = super::high::g(); }\n\
             #[cfg(test)]\n\
             mod tests {\n    use crate::high::Tested;\n}\n",
        ),
        (
            "high/mod.rs",
            "use crate::{low::f, low};\npub fn g() { crate::low::f() }\n",
        ),
    ]);
    let src = dir.path().join("src");
    let found: Vec<(String, usize, String)> = imports(&src)
        .0
        .into_iter()
        .map(|i| (i.file, i.line, i.to))
        .collect();
    assert_eq!(
        found,
        vec![
            ("high/mod.rs".to_owned(), 1, "low".to_owned()),
            ("high/mod.rs".to_owned(), 2, "low".to_owned()),
            ("low.rs".to_owned(), 3, "high".to_owned()),
        ]
    );
    let layers = layers_of(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let problems = violations(&src, &layers);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("a loop among high, low")),
        "{problems:?}"
    );
}

#[test]
fn a_module_missing_from_the_table_is_reported() {
    let dir = planted(&[("low.rs", ""), ("high/mod.rs", ""), ("stray.rs", "")]);
    let src = dir.path().join("src");
    let layers = layers_of(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let problems = violations(&src, &layers);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`stray` is in no layer")),
        "{problems:?}"
    );
}

/// The lines of `text` outside its unit-test module.
fn code_lines(text: &str) -> usize {
    code_of(text).iter().filter(|line| line.is_some()).count()
}

/// Each file small enough to read in one sitting: at most 500 lines before its unit tests.
#[test]
fn no_source_file_is_over_500_lines_of_code() {
    let src = crate_src();
    let long: Vec<String> = rust_files(&src)
        .into_iter()
        .filter_map(|path| {
            let lines = code_lines(&std::fs::read_to_string(&path).unwrap());
            (lines > 500).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these along their seams: {long:?}");
}

#[test]
fn re_exports_nested_supers_globs_and_strings_are_read_for_what_they_are() {
    let dir = planted(&[
        (
            "low.rs",
            "pub mod inner;\n\
             pub fn f() -> crate::Thing { todo!() }\n\
             const URL: &str = \"http://x\"; use crate::high::AfterString;\n",
        ),
        ("high/mod.rs", "pub mod deep;\npub struct Thing;\n"),
        (
            "high/deep.rs",
            "use super::Thing;\nuse super::super::low::f;\n",
        ),
    ]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(src.join("low/inner.rs"), "use super::f;\nuse crate::*;\n").unwrap();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    std::fs::write(src.join("lib.rs"), format!("{lib}pub use high::Thing;\n")).unwrap();
    let (found, hidden) = imports(&src);
    let found: Vec<(String, usize, String)> =
        found.into_iter().map(|i| (i.file, i.line, i.to)).collect();
    assert_eq!(
        found,
        vec![
            // `super::super::low` from `high::deep` reaches the crate root, then `low`.
            ("high/deep.rs".to_owned(), 2, "low".to_owned()),
            // `crate::Thing` is `high`'s, re-exported at the root.
            ("low.rs".to_owned(), 2, "high".to_owned()),
            // A `//` inside a string is not a comment.
            ("low.rs".to_owned(), 3, "high".to_owned()),
        ]
    );
    assert!(
        hidden
            .iter()
            .any(|h| h.starts_with("src/low/inner.rs:2:") && h.contains("glob")),
        "{hidden:?}"
    );
}
