//! The crate's layers hold: every module imports only from layers below its own (or from a
//! module of its own layer, without a loop), and never from a module its layer may not import,
//! as the table in `src/lib.rs` says.
//!
//! The table is read from the `//!` doc of `src/lib.rs` itself, so the documentation and this
//! check cannot drift apart, and the copy in `README.md` is compared with it. The sources are
//! parsed, not read as lines: every `use` tree (groups, nested groups, renames, globs, `self`)
//! and every path in code (expressions, types, patterns, attributes, and the bodies of macro
//! calls) that starts with `crate::`, `self::` or `super::` counts, `super::` resolved against
//! the module it is written in (inline `mod x { ... }` blocks included). Comments, string and
//! char literals are not code, and items under `#[cfg(test)]` (the unit tests) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, Spacing, Span, TokenStream, TokenTree};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// One layer of the table: its name, its top-level modules, and the modules below it that its
/// modules may still not import.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layer {
    name: String,
    modules: Vec<String>,
    may_not_import: Vec<String>,
}

/// The layers, lowest first.
type Layers = Vec<Layer>;

/// The layer table among `lines` (markdown): the header row, which starts with
/// `| layer | modules |`, then each row's cells, trimmed; the `| --- |` row left out.
fn table_of<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in lines {
        let line = line.trim();
        if rows.is_empty() && !line.starts_with("| layer | modules |") {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect();
        if !cells[0].starts_with("---") {
            rows.push(cells);
        }
    }
    rows
}

/// The text of the `//!` doc of a Rust source file, one entry a line.
fn doc_lines(source: &str) -> Vec<String> {
    let file = syn::parse_file(source).expect("src/lib.rs parses");
    let mut lines = Vec::new();
    for attr in &file.attrs {
        if !matches!(attr.style, syn::AttrStyle::Inner(_)) || !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(syn::MetaNameValue {
            value:
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }),
            ..
        }) = &attr.meta
        {
            lines.extend(text.value().lines().map(str::to_owned));
        }
    }
    lines
}

/// The names a cell gives in backticks: `` `store`, `hub` `` is `store` and `hub`.
fn names_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The layers of a table as [`table_of`] reads it: each row's modules (`main.rs`, the binary, is
/// no module) and, from the `may not import` column where the table has one, the modules named
/// in it.
fn layers_of(rows: &[Vec<String>]) -> Layers {
    let Some((header, rows)) = rows.split_first() else {
        return Vec::new();
    };
    let column = |name: &str| header.iter().position(|cell| cell == name);
    let modules = column("modules").expect("the table has a `modules` column");
    let may_not = column("may not import");
    rows.iter()
        .map(|cells| {
            let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).map_or("", String::as_str);
            Layer {
                name: cells[0].clone(),
                modules: names_in(cell(Some(modules)))
                    .into_iter()
                    .filter(|name| name != "main.rs")
                    .map(|name| name.trim_end_matches(".rs").to_owned())
                    .collect(),
                may_not_import: names_in(cell(may_not)),
            }
        })
        .collect()
}

/// Where two copies of the layer table differ, one line a row.
fn table_differences(lib: &[Vec<String>], readme: &[Vec<String>]) -> Vec<String> {
    let shown = |row: Option<&Vec<String>>| {
        row.map_or("no row".to_owned(), |cells| {
            format!("| {} |", cells.join(" | "))
        })
    };
    (0..lib.len().max(readme.len()))
        .filter(|&i| lib.get(i) != readme.get(i))
        .map(|i| {
            format!(
                "row {}: src/lib.rs has `{}`, README.md has `{}`",
                i + 1,
                shown(lib.get(i)),
                shown(readme.get(i))
            )
        })
        .collect()
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

/// Whether the attributes make an item exist only in the unit tests: `#[cfg(test)]`, or
/// `#[cfg(all(.., test, ..))]`.
fn test_only(attrs: &[syn::Attribute]) -> bool {
    fn needs_test(meta: &syn::Meta) -> bool {
        match meta {
            syn::Meta::Path(path) => path.is_ident("test"),
            syn::Meta::List(list) if list.path.is_ident("all") => list
                .parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
                .is_ok_and(|metas| metas.iter().any(needs_test)),
            _ => false,
        }
    }
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<syn::Meta>().is_ok_and(|m| needs_test(&m))
    })
}

/// A path's segments, each with the line it is on.
type Segments = Vec<(String, usize)>;

fn line_of(span: Span) -> usize {
    span.start().line
}

/// What a path that starts at `crate`, `self` or `super` reaches, written in `module`.
#[derive(Debug, PartialEq, Eq)]
enum Reach {
    /// Not a path from the crate root (a crate, a local name), or not a valid one.
    Elsewhere,
    /// The crate root itself, with nothing after it: `crate::*`, `super::*` from a top-level
    /// module.
    Root(usize),
    /// A top-level module (or a name at the crate root), on the line where it is named.
    Module(String, usize),
}

fn reach(module: &[String], segments: &[(String, usize)]) -> Reach {
    let Some((first, first_line)) = segments.first() else {
        return Reach::Elsewhere;
    };
    let (base, rest) = match first.as_str() {
        "crate" => (&module[..0], &segments[1..]),
        "self" => (module, &segments[1..]),
        "super" => {
            let ups = segments.iter().take_while(|(s, _)| s == "super").count();
            let Some(depth) = module.len().checked_sub(ups) else {
                return Reach::Elsewhere;
            };
            (&module[..depth], &segments[ups..])
        }
        _ => return Reach::Elsewhere,
    };
    match (base.first(), rest.first()) {
        (Some(top), _) => Reach::Module(top.clone(), *first_line),
        (None, Some((name, line))) => Reach::Module(name.clone(), *line),
        (None, None) => Reach::Root(segments.last().map_or(*first_line, |(_, line)| *line)),
    }
}

/// The walk over one parsed file: what it imports, and what hides an import.
struct Scan<'a> {
    /// The module the walk is in: the file's, and any inline `mod x { ... }` around it.
    module: Vec<String>,
    /// The names `lib.rs` re-exports at the crate root, and the module each comes from.
    reexports: &'a BTreeMap<String, String>,
    /// Each top-level module (or crate-root name) reached, and the line it is named on.
    found: BTreeSet<(usize, String)>,
    /// What hides an import: a glob from the crate root, an alias of the crate.
    hidden: Vec<(usize, &'static str)>,
    /// The module paths of `#[cfg(test)] mod x;` declarations: their files are unit tests.
    test_modules: Vec<Vec<String>>,
}

const GLOB: &str = "a glob import from the crate root hides which layer it uses";
const ALIAS: &str = "an alias of the crate hides what is imported";

impl Scan<'_> {
    fn path(&mut self, segments: &[(String, usize)]) {
        if let Reach::Module(name, line) = reach(&self.module, segments) {
            let to = self.reexports.get(&name).cloned().unwrap_or(name);
            self.found.insert((line, to));
        }
    }

    /// A name a `use` tree ends in (`self` is the path before it); `alias` for a renamed one.
    fn use_leaf(&mut self, prefix: &mut Segments, ident: &syn::Ident, alias: bool) {
        let pushed = ident != "self";
        if pushed {
            prefix.push((ident.to_string(), line_of(ident.span())));
        }
        match reach(&self.module, prefix) {
            Reach::Root(line) if alias => self.hidden.push((line, ALIAS)),
            _ => self.path(prefix),
        }
        if pushed {
            prefix.pop();
        }
    }

    fn use_tree(&mut self, prefix: &mut Segments, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push((path.ident.to_string(), line_of(path.ident.span())));
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.use_leaf(prefix, &name.ident, false),
            syn::UseTree::Rename(rename) => self.use_leaf(prefix, &rename.ident, true),
            syn::UseTree::Glob(glob) => match reach(&self.module, prefix) {
                Reach::Root(_) => self.hidden.push((line_of(glob.star_token.spans[0]), GLOB)),
                _ => self.path(prefix),
            },
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Tokens that do not parse as code (a macro body, an attribute's arguments): every
    /// `crate :: x`, `self :: x` and `super :: ... :: x` among them, at any depth.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ident == "crate" || ident == "self" || ident == "super" =>
                {
                    at = self.token_path(&trees, at);
                }
                _ => {}
            }
            at += 1;
        }
    }

    /// The path that starts at `trees[at]` (`crate`, `self` or `super`): its segments as far as
    /// they go, or a `use` group after them (`crate::{a::B, c}`). Returns where the path ends.
    fn token_path(&mut self, trees: &[TokenTree], mut at: usize) -> usize {
        let segment = |tree: &TokenTree| match tree {
            TokenTree::Ident(ident) => Some((ident.to_string(), line_of(ident.span()))),
            _ => None,
        };
        let path_separator = |at: usize| {
            matches!(
                (trees.get(at), trees.get(at + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
            )
        };
        let mut segments: Segments = segment(&trees[at]).into_iter().collect();
        while path_separator(at + 1) {
            match trees.get(at + 3) {
                Some(TokenTree::Ident(_)) => {
                    segments.extend(segment(&trees[at + 3]));
                    at += 3;
                }
                Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                    let group = Punctuated::<syn::UseTree, syn::Token![,]>::parse_terminated
                        .parse2(group.stream());
                    for tree in group.iter().flatten() {
                        self.use_tree(&mut segments.clone(), tree);
                    }
                    return at + 3;
                }
                _ => break,
            }
        }
        self.path(&segments);
        at
    }
}

/// The outer attributes of an item (none for tokens syn does not know).
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The attributes of an item of an `impl` block.
fn impl_item_attrs(item: &syn::ImplItem) -> &[syn::Attribute] {
    match item {
        syn::ImplItem::Const(i) => &i.attrs,
        syn::ImplItem::Fn(i) => &i.attrs,
        syn::ImplItem::Type(i) => &i.attrs,
        syn::ImplItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !test_only(item_attrs(item)) {
            return syn::visit::visit_item(self, item);
        }
        if let syn::Item::Mod(module) = item
            && module.content.is_none()
        {
            let mut path = self.module.clone();
            path.push(module.ident.to_string());
            self.test_modules.push(path);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        self.module.push(module.ident.to_string());
        syn::visit::visit_item_mod(self, module);
        self.module.pop();
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        if !test_only(impl_item_attrs(item)) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_trait_item(self, item),
        };
        if !test_only(attrs) {
            syn::visit::visit_trait_item(self, item);
        }
    }

    fn visit_field(&mut self, field: &'ast syn::Field) {
        if !test_only(&field.attrs) {
            syn::visit::visit_field(self, field);
        }
    }

    fn visit_variant(&mut self, variant: &'ast syn::Variant) {
        if !test_only(&variant.attrs) {
            syn::visit::visit_variant(self, variant);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !test_only(&arm.attrs) {
            syn::visit::visit_arm(self, arm);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        if item.ident == "self" {
            self.hidden.push((line_of(item.ident.span()), ALIAS));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Segments = path
                .segments
                .iter()
                .map(|s| (s.ident.to_string(), line_of(s.ident.span())))
                .collect();
            self.path(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        // Most macro calls are a list of expressions (`format!`, `assert_eq!`, `vec!`); what is
        // not (`tracing::info!(field = %value, ..)`, a `macro_rules!` body) is read as tokens.
        let exprs =
            Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated.parse2(mac.tokens.clone());
        match exprs {
            Ok(exprs) => exprs.iter().for_each(|expr| self.visit_expr(expr)),
            Err(_) => self.tokens(mac.tokens.clone()),
        }
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        syn::visit::visit_attribute(self, attr);
        if let syn::Meta::List(list) = &attr.meta {
            self.tokens(list.tokens.clone());
        }
    }
}

/// The names `lib.rs` re-exports at the crate root, and the module each comes from
/// (`pub use startup::App;` maps `App` to `startup`), and the globs among them, which hide
/// where a name comes from.
fn root_reexports(src: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    fn walk(
        prefix: &mut Vec<String>,
        tree: &syn::UseTree,
        names: &mut BTreeMap<String, String>,
        globs: &mut Vec<String>,
    ) {
        let module = |prefix: &[String], last: &str| {
            let mut path = prefix.iter().map(String::as_str).chain([last]);
            path.find(|s| *s != "crate" && *s != "self")
                .map(str::to_owned)
        };
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                walk(prefix, &path.tree, names, globs);
                prefix.pop();
            }
            syn::UseTree::Name(syn::UseName { ident })
            | syn::UseTree::Rename(syn::UseRename { ident, .. }) => {
                let name = match tree {
                    syn::UseTree::Rename(rename) => rename.rename.to_string(),
                    _ if ident == "self" => prefix.last().cloned().unwrap_or_default(),
                    _ => ident.to_string(),
                };
                if let Some(module) = module(prefix, &ident.to_string()) {
                    names.insert(name, module);
                }
            }
            syn::UseTree::Glob(glob) => globs.push(format!(
                "src/lib.rs:{}: a glob re-export at the crate root hides which module a name comes from",
                line_of(glob.star_token.spans[0])
            )),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    walk(prefix, tree, names, globs);
                }
            }
        }
    }
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut names = BTreeMap::new();
    let mut globs = Vec::new();
    let Ok(file) = syn::parse_file(&lib) else {
        return (names, vec!["src/lib.rs: does not parse".to_owned()]);
    };
    for item in &file.items {
        if let syn::Item::Use(item) = item
            && !test_only(&item.attrs)
        {
            walk(&mut Vec::new(), &item.tree, &mut names, &mut globs);
        }
    }
    (names, globs)
}

/// The imports between top-level modules in the crate under `src`, and what would hide one (a
/// glob import from the crate root, an alias of the crate, a file that does not parse).
fn imports(src: &Path) -> (Vec<Import>, Vec<String>) {
    let (reexports, mut hidden) = root_reexports(src);
    let mut scanned = Vec::new();
    let mut test_modules = Vec::new();
    for path in rust_files(src) {
        let relative = path.strip_prefix(src).unwrap();
        let file = relative.to_string_lossy().replace('\\', "/");
        let module = module_path(&file);
        // The crate roots are not modules: `lib.rs` declares the layers and re-exports, and
        // `main.rs` is the binary, above everything.
        if module[0] == "lib" || module[0] == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = match syn::parse_file(&text) {
            Ok(parsed) => parsed,
            Err(e) => {
                let at = e.span().start();
                hidden.push(format!(
                    "src/{file}:{}: does not parse, so its imports cannot be read: {e}",
                    at.line
                ));
                continue;
            }
        };
        let mut scan = Scan {
            module: module.clone(),
            reexports: &reexports,
            found: BTreeSet::new(),
            hidden: Vec::new(),
            test_modules: Vec::new(),
        };
        scan.visit_file(&parsed);
        test_modules.append(&mut scan.test_modules);
        scanned.push((file, module, scan.found, scan.hidden));
    }
    let mut found = BTreeSet::new();
    for (file, module, imports, hides) in scanned {
        // A file of a `#[cfg(test)] mod x;` is a unit test.
        if test_modules.iter().any(|test| module.starts_with(test)) {
            continue;
        }
        let from = &module[0];
        for (line, to) in imports {
            if to != *from {
                found.insert(Import {
                    file: file.clone(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
        hidden.extend(
            hides
                .into_iter()
                .map(|(line, what)| format!("src/{file}:{line}: {what}")),
        );
    }
    (found.into_iter().collect(), hidden)
}

/// Everything wrong with the crate under `src` against `layers`: modules in no layer, imports
/// from a higher layer or from a module the layer may not import, and loops between modules.
/// Empty when the layering holds.
fn violations(src: &Path, layers: &Layers) -> Vec<String> {
    let rank: BTreeMap<&str, (usize, &Layer)> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| {
            layer
                .modules
                .iter()
                .map(move |module| (module.as_str(), (i, layer)))
        })
        .collect();
    let mut problems = Vec::new();
    for layer in layers {
        for module in &layer.may_not_import {
            if !rank.contains_key(module.as_str()) {
                problems.push(format!(
                    "src/lib.rs: the layer {} may not import `{module}`, which is in no layer of the table",
                    layer.name
                ));
            }
        }
    }
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
        let (Some(&(from_rank, from_layer)), Some(&(to_rank, to_layer))) =
            (rank.get(import.from.as_str()), rank.get(import.to.as_str()))
        else {
            continue;
        };
        let (from_name, to_name) = (&from_layer.name, &to_layer.name);
        if to_rank > from_rank {
            problems.push(format!(
                "src/{}:{}: `{}` ({from_name}) imports `crate::{}` ({to_name}), a higher layer",
                import.file, import.line, import.from, import.to
            ));
        } else if from_layer.may_not_import.contains(&import.to) {
            problems.push(format!(
                "src/{}:{}: `{}` ({from_name}) imports `crate::{}` ({to_name}), which the {from_name} layer may not import",
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

/// The layer table of `src/lib.rs`, as [`table_of`] reads it.
fn crate_table() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(crate_src().join("lib.rs")).unwrap();
    let lines = doc_lines(&lib);
    table_of(lines.iter().map(String::as_str))
}

fn crate_layers() -> Layers {
    let table = crate_table();
    assert!(
        table
            .first()
            .is_some_and(|header| header == &["layer", "modules", "may import", "may not import"]),
        "src/lib.rs has no layer table (a `| layer | modules | may import | may not import |` \
         table in its //! doc): {table:?}"
    );
    let layers = layers_of(&table);
    assert!(
        layers.len() >= 3,
        "the layer table of src/lib.rs: {layers:?}"
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

#[test]
fn the_readme_has_the_same_layer_table_as_lib_rs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let readme = table_of(readme.lines());
    assert!(!readme.is_empty(), "README.md has no layer table");
    let differences = table_differences(&crate_table(), &readme);
    assert!(
        differences.is_empty(),
        "README.md's layer table is not the one in src/lib.rs:\n{}",
        differences.join("\n")
    );
}

#[test]
fn a_readme_table_that_drifted_is_reported_by_its_row() {
    let lib = "| layer | modules | may import | may not import |\n\
               | --- | --- | --- | --- |\n\
               | ground | `clock` | crates | — |\n\
               | domain | `session`, `link` | ground | — |\n";
    let readme = lib.replace(", `link`", "");
    let differences = table_differences(&table_of(lib.lines()), &table_of(readme.lines()));
    assert_eq!(
        differences,
        [
            "row 3: src/lib.rs has `| domain | `session`, `link` | ground | — |`, \
          README.md has `| domain | `session` | ground | — |`"
        ]
    );
}

/// The table of the crates [`planted`] writes: `low` below `high`, and `http` above both, which
/// may not import `store` (below it).
const PLANTED_LIB: &str = "//! | layer | modules | may import | may not import |\n\
                           //! | --- | --- | --- | --- |\n\
                           //! | low | `low`, `store` | crates | — |\n\
                           //! | high | `high` | low | — |\n\
                           //! | serving | `http` | high and below | `store` |\n\
                           \n\
                           pub mod high;\n\
                           pub mod http;\n\
                           pub mod low;\n\
                           pub mod store;\n";

/// Writes a tiny crate (`src/` with `lib.rs` and the given files, `low.rs`, `store.rs`,
/// `high/mod.rs` and `http/mod.rs` empty unless given) into a temporary folder.
fn planted(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let defaults = [
        ("lib.rs", PLANTED_LIB),
        ("low.rs", ""),
        ("store.rs", ""),
        ("high/mod.rs", ""),
        ("http/mod.rs", ""),
    ];
    for (name, text) in defaults.iter().chain(files) {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The problems [`violations`] finds in a planted crate, against the table of its `lib.rs`.
fn planted_violations(dir: &tempfile::TempDir) -> Vec<String> {
    let src = dir.path().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let lines = doc_lines(&lib);
    violations(
        &src,
        &layers_of(&table_of(lines.iter().map(String::as_str))),
    )
}

/// The imports [`imports`] finds in a planted crate: file, line and module imported.
fn planted_imports(dir: &tempfile::TempDir) -> Vec<(String, usize, String)> {
    imports(&dir.path().join("src"))
        .0
        .into_iter()
        .map(|i| (i.file, i.line, i.to))
        .collect()
}

fn found(list: &[(&str, usize, &str)]) -> Vec<(String, usize, String)> {
    list.iter()
        .map(|&(file, line, to)| (file.to_owned(), line, to.to_owned()))
        .collect()
}

#[test]
fn the_table_and_its_may_not_import_column_are_read() {
    let lines = doc_lines(PLANTED_LIB);
    let layers = layers_of(&table_of(lines.iter().map(String::as_str)));
    let names: Vec<(&str, Vec<String>, Vec<String>)> = layers
        .iter()
        .map(|l| (l.name.as_str(), l.modules.clone(), l.may_not_import.clone()))
        .collect();
    let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names,
        [
            ("low", strings(&["low", "store"]), vec![]),
            ("high", strings(&["high"]), vec![]),
            ("serving", strings(&["http"]), strings(&["store"])),
        ]
    );
}

#[test]
fn a_planted_upward_import_is_reported_with_its_file_and_line() {
    let dir = planted(&[("low.rs", "//! Low.\n\nuse crate::high::Thing;\n")]);
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/low.rs:3:") && p.contains("imports `crate::high`")),
        "{problems:?}"
    );
}

#[test]
fn a_wrapped_use_group_is_read() {
    let dir = planted(&[(
        "low.rs",
        "use crate::{\n    high::Thing,\n    store::{self, Store as S},\n};\n",
    )]);
    assert_eq!(
        planted_imports(&dir),
        found(&[("low.rs", 2, "high"), ("low.rs", 3, "store")])
    );
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/low.rs:2:") && p.contains("a higher layer")),
        "{problems:?}"
    );
}

#[test]
fn a_char_literal_quote_does_not_hide_the_code_after_it() {
    let dir = planted(&[(
        "low.rs",
        "pub fn quote(c: char) -> bool { c == '\"' }\n\
         use crate::high::Thing;\n\
         pub const S: &str = \"' use crate::high::InAString;\";\n",
    )]);
    assert_eq!(planted_imports(&dir), found(&[("low.rs", 2, "high")]));
}

#[test]
fn a_path_in_an_expression_is_read() {
    let dir = planted(&[(
        "high/mod.rs",
        "pub fn open() {\n    let _ = crate::store::open();\n}\n",
    )]);
    assert_eq!(planted_imports(&dir), found(&[("high/mod.rs", 2, "store")]));
}

#[test]
fn paths_in_types_patterns_and_attributes_are_read() {
    let dir = planted(&[(
        "low.rs",
        "pub fn f(x: Option<crate::high::A>) -> bool {\n\
         matches!(x, Some(crate::high::A::B))\n\
         }\n\
         #[serde(with = \"x\", crate::high::C)]\n\
         pub struct S;\n\
         pub fn g(v: crate::store::V) { let crate::store::V(_) = v; }\n",
    )]);
    assert_eq!(
        planted_imports(&dir),
        found(&[
            ("low.rs", 1, "high"),
            ("low.rs", 2, "high"),
            ("low.rs", 4, "high"),
            ("low.rs", 6, "store"),
        ])
    );
}

#[test]
fn super_super_from_a_nested_file_reaches_the_layer_it_names() {
    let dir = planted(&[
        ("low.rs", "pub mod inner;\n"),
        (
            "low/inner.rs",
            "use super::super::store;\n\
             pub fn f() {\n    super::super::high::g();\n}\n",
        ),
    ]);
    assert_eq!(
        planted_imports(&dir),
        found(&[("low/inner.rs", 1, "store"), ("low/inner.rs", 3, "high")])
    );
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/low/inner.rs:3:") && p.contains("imports `crate::high`")),
        "{problems:?}"
    );
}

#[test]
fn an_inline_module_is_one_level_further_from_the_root() {
    let dir = planted(&[(
        "low.rs",
        "mod inner {\n    use super::super::high::Thing;\n    use super::Own;\n}\n\
         use self::inner::X;\n",
    )]);
    assert_eq!(planted_imports(&dir), found(&[("low.rs", 2, "high")]));
}

#[test]
fn a_path_inside_a_macro_call_is_read() {
    let dir = planted(&[(
        "low.rs",
        "pub fn f() {\n\
         let _ = format!(\"{}\", crate::high::NAME);\n\
         tracing::info!(name = %crate::store::name(), \"told\");\n\
         tracing::info!(\"crate::high::InAString\");\n\
         }\n\
         macro_rules! m {\n    () => { $crate::high::g() };\n}\n\
         items! { use crate::{low::Own, store::{\n    Y,\n}}; }\n",
    )]);
    assert_eq!(
        planted_imports(&dir),
        found(&[
            ("low.rs", 2, "high"),
            ("low.rs", 3, "store"),
            ("low.rs", 7, "high"),
            ("low.rs", 9, "store"),
        ])
    );
}

#[test]
fn a_module_below_that_the_layer_may_not_import_is_reported() {
    let dir = planted(&[
        ("http/mod.rs", "mod routes;\nuse crate::high::Fine;\n"),
        (
            "http/routes.rs",
            "//! Routes.\nuse crate::{\n    low::Fine,\n    store::Store,\n};\n",
        ),
    ]);
    let problems = planted_violations(&dir);
    assert_eq!(
        problems,
        [
            "src/http/routes.rs:4: `http` (serving) imports `crate::store` (low), \
          which the serving layer may not import"
        ],
    );
}

#[test]
fn a_may_not_import_entry_that_names_no_module_is_reported() {
    let dir = planted(&[("lib.rs", &PLANTED_LIB.replace("| `store` |", "| `stroe` |"))]);
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("may not import `stroe`, which is in no layer")),
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
             mod tests {\n    use crate::high::Tested;\n}\n\
             #[cfg(all(test, unix))]\n\
             fn helper() { crate::high::g() }\n\
             #[cfg(test)]\n\
             mod more;\n",
        ),
        ("low/more.rs", "use crate::high::InATestFile;\n"),
        (
            "high/mod.rs",
            "use crate::{low::f, low};\npub fn g() { crate::low::f() }\n",
        ),
    ]);
    assert_eq!(
        planted_imports(&dir),
        found(&[
            ("high/mod.rs", 1, "low"),
            ("high/mod.rs", 2, "low"),
            ("low.rs", 3, "high"),
        ])
    );
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("a loop among high, low")),
        "{problems:?}"
    );
}

#[test]
fn a_module_missing_from_the_table_is_reported() {
    let dir = planted(&[("stray.rs", "")]);
    let problems = planted_violations(&dir);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`stray` is in no layer")),
        "{problems:?}"
    );
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
        ("low/inner.rs", "use super::f;\nuse crate::*;\n"),
        ("store.rs", "use crate as root;\n"),
        (
            "lib.rs",
            &format!("{PLANTED_LIB}pub use high::{{Thing, deep::Other as Renamed}};\n"),
        ),
    ]);
    let (found_imports, hidden) = imports(&dir.path().join("src"));
    let found_imports: Vec<(String, usize, String)> = found_imports
        .into_iter()
        .map(|i| (i.file, i.line, i.to))
        .collect();
    assert_eq!(
        found_imports,
        found(&[
            // `super::super::low` from `high::deep` reaches the crate root, then `low`.
            ("high/deep.rs", 2, "low"),
            // `crate::Thing` is `high`'s, re-exported at the root.
            ("low.rs", 2, "high"),
            // A `//` inside a string is not a comment.
            ("low.rs", 3, "high"),
        ])
    );
    assert_eq!(
        hidden,
        [
            "src/low/inner.rs:2: a glob import from the crate root hides which layer it uses",
            "src/store.rs:1: an alias of the crate hides what is imported",
        ]
    );
    let (names, _) = root_reexports(&dir.path().join("src"));
    assert_eq!(names.get("Renamed").map(String::as_str), Some("high"));
}

/// The lines of `text` outside its unit tests (the items under `#[cfg(test)]`).
fn code_lines(text: &str) -> usize {
    struct Tests(BTreeSet<usize>);
    impl Tests {
        fn add(&mut self, span: Span) {
            self.0.extend(span.start().line..=span.end().line);
        }
    }
    impl<'ast> Visit<'ast> for Tests {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            if test_only(item_attrs(item)) {
                self.add(item.span());
            } else {
                syn::visit::visit_item(self, item);
            }
        }
        fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
            if test_only(impl_item_attrs(item)) {
                self.add(item.span());
            } else {
                syn::visit::visit_impl_item(self, item);
            }
        }
    }
    let file = syn::parse_file(text).expect("a source file parses");
    let mut tests = Tests(BTreeSet::new());
    tests.visit_file(&file);
    text.lines().count() - tests.0.len()
}

#[test]
fn unit_tests_do_not_count_as_lines_of_code() {
    let text = "pub fn f() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
    assert_eq!(code_lines(text), 2);
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
