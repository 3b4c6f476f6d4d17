//! The module-cycle check (`scripts/test.sh` runs it first): no two top-level modules of the
//! crate may import each other, directly or through others. Stages depend on `config` and on
//! leaf modules, never the reverse, so each module can be read (and tested) knowing only what
//! it imports.
//!
//! It reads `src/` as text: every `crate::a` path and `crate::{a, b}` group (and `super::`
//! paths that climb to the crate root) outside comments, string literals and `#[cfg(test)]`
//! items (test modules may import anything) is an edge from the file's top-level module to
//! `a`. A strongly connected component of more than one module is a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles that exist on this branch but are being removed elsewhere (issue 15: the `plan`
/// slice). Each entry is the exact set of modules of one cycle; the check fails on any other
/// cycle, and on an entry that no longer matches a cycle found (so this list only shrinks).
/// Empty it once that slice is merged.
const KNOWN_CYCLES: &[&[&str]] = &[];

/// Where an import was seen: the file (relative to the crate) and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Site {
    file: PathBuf,
    line: usize,
}

/// Top-level module -> the top-level modules it imports, each with the first place it does.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

#[test]
fn the_modules_import_each_other_in_one_direction_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = read_graph(root, Path::new("src")).expect("read src/");
    assert!(
        graph.contains_key("config") && graph.len() > 10,
        "the crate's modules were not found: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let found = cycles(&graph);
    let known: Vec<BTreeSet<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    let mut problems = Vec::new();
    for cycle in &found {
        if !known.contains(cycle) {
            problems.push(format!("module cycle:\n{}", describe(&graph, cycle)));
        }
    }
    for cycle in &known {
        if !found.contains(cycle) {
            problems.push(format!(
                "{cycle:?} is listed in KNOWN_CYCLES (src/module_cycles.rs) but is no cycle now: remove the entry"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The import graph of the crate whose root is `root`, reading the files under `root/src`.
fn read_graph(root: &Path, src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join(src)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut texts = Vec::new();
    let mut test_only: Vec<PathBuf> = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root.join(src))
            .unwrap_or(&path)
            .to_owned();
        let (code, test_mods) = strip_tests(&clean(&std::fs::read_to_string(&path)?));
        // `#[cfg(test)] mod x;` in `a/mod.rs` or `a.rs` is the file `a/x.rs` or `a/x/mod.rs`.
        let dir = match rel.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => rel.parent().unwrap_or(Path::new("")).into(),
            _ => rel.with_extension(""),
        };
        test_only.extend(test_mods.iter().map(|m| dir.join(m)));
        texts.push((rel, code));
    }
    let mut graph = Graph::new();
    for (rel, code) in &texts {
        let in_test_module = test_only
            .iter()
            .any(|t| rel.with_extension("") == *t || rel.starts_with(t));
        let mut parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let Some(first) = parts.first().copied() else {
            continue;
        };
        if in_test_module || parts == ["lib.rs"] || parts == ["main.rs"] {
            continue;
        }
        let top = first.trim_end_matches(".rs").to_owned();
        // How many `super::` reach the crate root: one per directory level, and one for the
        // file's own module unless it is a `mod.rs`.
        if parts.last() == Some(&"mod.rs") {
            parts.pop();
        }
        let depth = parts.len();
        let edges = graph.entry(top.clone()).or_default();
        for (module, line) in imports(code, depth) {
            if module != top {
                edges.entry(module).or_insert_with(|| Site {
                    file: Path::new("src").join(rel),
                    line,
                });
            }
        }
    }
    // Only edges to modules of the crate (not `crate::SOME_CONST` at the root).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|m, _| modules.contains(m));
    }
    Ok(graph)
}

/// `text` with comments, string and char literals blanked (newlines kept, so lines still
/// count).
fn clean(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (at(0) == 'r' || (at(0) == 'b' && at(1) == 'r'))
            && !c.get(i.wrapping_sub(1)).is_some_and(|p| is_ident(*p))
            && {
                let s = if at(0) == 'b' { 1 } else { 0 };
                let mut k = s + 1;
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"..." or r#"..."#, ends at the quote with as many hashes.
            let start = i;
            while c[i] != '"' {
                i += 1;
            }
            let hashes = i - start - if c[start] == 'b' { 2 } else { 1 };
            for _ in start..=i {
                out.push(' ');
            }
            i += 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| c.get(i + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A char literal ('x', '\n', '\u{..}'); a lifetime ('a) has no closing quote.
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `code` (cleaned) with every `#[cfg(test)]` item blanked, and the names of the test modules
/// declared there as files (`#[cfg(test)] mod tests;`).
fn strip_tests(code: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut out: Vec<char> = code.chars().collect();
    let mut test_mods = Vec::new();
    let text: String = out.iter().collect();
    let mut from = 0;
    while let Some(found) = text[from..].find(ATTR) {
        let start = from + found;
        // Byte offsets equal char offsets only for ASCII: work on chars from here.
        let cstart = text[..start].chars().count();
        let chars: &[char] = &out;
        let mut i = cstart + ATTR.chars().count();
        let mut end = None;
        let mut depth = 0usize;
        let mut brackets = 0usize;
        while i < chars.len() {
            match chars[i] {
                '[' => brackets += 1,
                ']' => brackets = brackets.saturating_sub(1),
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                ';' if depth == 0 && brackets == 0 => {
                    let item: String = chars[cstart..i].iter().collect();
                    let words: Vec<&str> = item.split_whitespace().collect();
                    if let Some(k) = words.iter().position(|w| *w == "mod")
                        && let Some(name) = words.get(k + 1)
                    {
                        test_mods.push((*name).to_owned());
                    }
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let end = end.unwrap_or(chars.len().saturating_sub(1));
        for ch in &mut out[cstart..=end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        from = start + ATTR.len();
    }
    (out.into_iter().collect(), test_mods)
}

/// The top-level modules `code` (cleaned) imports, each with a line it does so on. `depth`:
/// how many `super::` lead from this file's module to the crate root.
fn imports(code: &str, depth: usize) -> Vec<(String, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let line_of = |i: usize| c[..i].iter().filter(|ch| **ch == '\n').count() + 1;
    let word_at = |i: usize, w: &str| {
        let n = w.chars().count();
        c.get(i..i + n)
            .is_some_and(|s| s.iter().copied().eq(w.chars()))
            && !i.checked_sub(1).is_some_and(|p| is_ident(c[p]))
            && !c.get(i + n).is_some_and(|ch| is_ident(*ch))
    };
    let skip_ws = |mut i: usize| {
        while c.get(i).is_some_and(|ch| ch.is_whitespace()) {
            i += 1;
        }
        i
    };
    let sep_at = |i: usize| {
        let i = skip_ws(i);
        (c.get(i) == Some(&':') && c.get(i + 1) == Some(&':')).then(|| skip_ws(i + 2))
    };
    let mut i = 0;
    while i < c.len() {
        // `crate::` (or `$crate::`), or `super::` repeated up to the root.
        let after = if word_at(i, "crate") {
            sep_at(i + 5)
        } else if word_at(i, "super")
            && !i
                .checked_sub(2)
                .is_some_and(|p| c[p] == ':' && c[p + 1] == ':')
        {
            let mut k = i;
            let mut n = 0;
            while word_at(k, "super")
                && let Some(next) = sep_at(k + 5)
            {
                n += 1;
                k = next;
            }
            (n >= depth && depth > 0).then_some(k)
        } else {
            None
        };
        let Some(at) = after else {
            i += 1;
            continue;
        };
        let line = line_of(i);
        if c.get(at) == Some(&'{') {
            // A group: the first word of each top-level item.
            let mut k = at + 1;
            let mut level = 1;
            let mut item_start = true;
            while k < c.len() && level > 0 {
                match c[k] {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 1 => item_start = true,
                    ch if item_start && level == 1 && is_ident(ch) => {
                        let w: String = c[k..].iter().take_while(|ch| is_ident(**ch)).collect();
                        k += w.chars().count();
                        if w != "self" {
                            found.push((w, line));
                        }
                        item_start = false;
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
            i = k;
        } else {
            let w: String = c[at..].iter().take_while(|ch| is_ident(**ch)).collect();
            if !w.is_empty() {
                found.push((w, line));
            }
            i = at + 1;
        }
    }
    found
}

/// The cycles of `graph`: its strongly connected components of more than one module.
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    component.insert(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// `{a, b}` and each of its edges with the file and line that makes it.
fn describe(graph: &Graph, cycle: &BTreeSet<String>) -> String {
    let mut lines = vec![format!(
        "  {{{}}}",
        cycle.iter().cloned().collect::<Vec<_>>().join(", ")
    )];
    for from in cycle {
        for (to, site) in graph.get(from).into_iter().flatten() {
            if cycle.contains(to) {
                lines.push(format!(
                    "  {from} -> {to} ({}:{})",
                    site.file.display(),
                    site.line
                ));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn imports_are_read_from_paths_and_groups_not_from_comments_strings_or_tests() {
    let code = r##"
use crate::{alpha, beta::{Gamma, delta}, self};
use crate::epsilon::Zeta as Eta;
// crate::in_comment
/* crate::in_block /* nested */ crate::still_comment */
const S: &str = "crate::in_string";
const R: &str = r#"crate::in_raw "string""#;
fn f<'a>(x: &'a str) -> char { let _ = crate ::
    spaced::f(); 'c' }
#[cfg(test)]
mod tests { use crate::only_in_tests; }
#[cfg(test)]
mod more_tests;
fn g() { super::super::up::h() }
"##;
    let (code, test_mods) = strip_tests(&clean(code));
    let got: Vec<(String, usize)> = imports(&code, 2);
    let names: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "beta", "epsilon", "spaced", "up"],
        "{code}"
    );
    assert_eq!(got[3].1, 8, "the line of `crate`");
    assert_eq!(test_mods, ["more_tests"]);
    // One level deeper, two `super::` stay inside the crate's top-level module.
    assert!(imports(&clean("fn g() { super::super::up::h() }"), 3).is_empty());
}

#[test]
fn a_cycle_is_named_with_one_file_per_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).expect("mkdir");
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).expect("write");
    write("lib.rs", "pub mod a; pub mod b; pub mod c;");
    write("a.rs", "use crate::b::X;");
    write("b/mod.rs", "mod inner;\n#[cfg(test)]\nmod tests;");
    write("b/inner.rs", "\nuse crate::{self as _, a as _};");
    write("b/tests.rs", "use crate::c;");
    write("c.rs", "pub struct C;");
    let graph = read_graph(dir.path(), Path::new("src")).expect("graph");
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{graph:?}");
    assert_eq!(
        describe(&graph, &found[0]),
        "  {a, b}\n  a -> b (src/a.rs:1)\n  b -> a (src/b/inner.rs:2)"
    );
    assert!(!graph["b"].contains_key("c"), "b's tests are no edge");
}
