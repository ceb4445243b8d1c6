//! The project's own layout lint: no import circles between the files of a
//! crate (files that `use` each other, directly or around a loop), so that
//! each crate reads top-down. Run by `cargo xtask test` on tracer/src and
//! xtask/src.
//!
//! Edges come from `use crate::…`, `use super::…`, `use self::…` trees
//! (nested braces included) and inline `crate::a::b` paths, each resolved
//! to the deepest file that defines the module; `#[cfg(test)]` modules are
//! left out. A line-based reading, not a parser: enough for rustfmt'ed code.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// Module path (e.g. ["record", "drain"]) → file (relative to src/).
type Files = BTreeMap<Vec<String>, PathBuf>;

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(src: &Path, dir: &Path, out: &mut Files) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            rust_files(src, &p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(src)?.to_path_buf();
            out.insert(module_of(&rel), rel);
        }
    }
    Ok(())
}

/// `a::{b, c::{d, e}}` → [[a, b], [a, c, d], [a, c, e]].
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let name = tree.split(" as ").next().unwrap_or("");
        return vec![name
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
            .map(String::from)
            .collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut out, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for ch in inner.chars().chain(std::iter::once(',')) {
        match ch {
            ',' if depth == 0 => {
                if !cur.trim().is_empty() {
                    for p in expand(&cur) {
                        let mut full = prefix.clone();
                        full.extend(p.into_iter().filter(|s| s != "self"));
                        out.push(full);
                    }
                }
                cur.clear();
            }
            _ => {
                depth += i32::from(ch == '{') - i32::from(ch == '}');
                cur.push(ch);
            }
        }
    }
    if out.is_empty() {
        out.push(prefix);
    }
    out
}

/// The file that defines the longest prefix of `path`.
fn owner<'f>(files: &'f Files, path: &[String]) -> Option<&'f PathBuf> {
    (1..=path.len()).rev().find_map(|k| files.get(&path[..k]))
}

fn resolve<'f>(files: &'f Files, me: &[String], path: &[String]) -> Option<&'f PathBuf> {
    match path.first().map(String::as_str)? {
        "crate" => owner(files, &path[1..]),
        "self" => owner(files, &[me, &path[1..]].concat()),
        "super" => {
            let mut base = me.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            owner(files, &[base.as_slice(), rest].concat())
        }
        _ => None,
    }
}

/// The text of a file without comments and without its test module.
fn code(text: &str) -> String {
    let mut s: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(i) = s.find("#[cfg(test)]\nmod ") {
        s.truncate(i);
    }
    s
}

/// Files each file imports.
fn edges(src: &Path, files: &Files) -> Result<BTreeMap<PathBuf, BTreeSet<PathBuf>>> {
    let mut out = BTreeMap::new();
    for (module, rel) in files {
        let text = code(&std::fs::read_to_string(src.join(rel))?);
        let mut to = BTreeSet::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("use ") {
            let before = rest[..i].chars().last();
            rest = &rest[i + 4..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let Some(end) = rest.find(';') else { break };
            let tree = &rest[..end];
            if ["crate", "super", "self"]
                .iter()
                .any(|p| tree.trim_start().starts_with(p))
            {
                for p in expand(tree) {
                    to.extend(resolve(files, module, &p).cloned());
                }
            }
        }
        for (i, _) in text.match_indices("crate::") {
            let prev = text[..i].chars().last();
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<String> = std::iter::once("crate".to_string())
                .chain(
                    text[i + 7..]
                        .split("::")
                        .map_while(|seg| {
                            let id: String = seg
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            (!id.is_empty()).then_some((id.len() == seg.len(), id))
                        })
                        .scan(true, |go, (whole, id)| {
                            let r = go.then_some(id);
                            *go = whole;
                            r
                        }),
                )
                .collect();
            to.extend(resolve(files, module, &path).cloned());
        }
        to.remove(rel);
        out.insert(rel.clone(), to);
    }
    Ok(out)
}

/// Strongly connected sets of more than one file (Tarjan).
fn circles(g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'g> {
        g: &'g BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'g PathBuf, usize>,
        low: BTreeMap<&'g PathBuf, usize>,
        stack: Vec<&'g PathBuf>,
        on: BTreeSet<&'g PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g PathBuf) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v].min(lw);
                t.low.insert(v, lv);
            } else if t.on.contains(w) {
                let lv = t.low[v].min(t.index[w]);
                t.low.insert(v, lv);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The import circles among the files of `src` (a crate's src/).
pub fn import_circles(src: &Path) -> Result<Vec<Vec<PathBuf>>> {
    let mut files = Files::new();
    rust_files(src, src, &mut files)?;
    Ok(circles(&edges(src, &files)?))
}

/// Fails naming every circle found in the given crates' src/ directories.
pub fn check(dirs: &[PathBuf]) -> Result<()> {
    let mut found = Vec::new();
    for d in dirs {
        for c in import_circles(d)? {
            let names: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
            found.push(format!("{}: {}", d.display(), names.join(" <-> ")));
        }
    }
    if !found.is_empty() {
        bail!(
            "import circles (files that import each other; the layout should read top-down):\n  {}",
            found.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("xtask-lint-{}-{}", std::process::id(), files.len()));
        let _ = std::fs::remove_dir_all(&d);
        for (name, text) in files {
            let p = d.join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        d
    }

    #[test]
    fn finds_a_circle_through_nested_uses_and_inline_paths_but_not_tests() {
        let d = tree(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a/mod.rs", "pub mod x;\nuse crate::{b::{self, Thing}};\n"),
            ("a/x.rs", "fn f() { super::super::c::g() }\n"),
            ("b.rs", "fn g() -> crate::a::Y { todo!() }\n"),
            (
                "c.rs",
                "pub fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n",
            ),
        ]);
        let c = import_circles(&d).expect("lint");
        // a -> b (nested use), b -> a (inline path); a/x -> c through
        // super::super, and c's test module's use of a/x is left out.
        assert_eq!(
            c,
            vec![vec![PathBuf::from("a/mod.rs"), PathBuf::from("b.rs")]]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_tree_that_reads_top_down_has_none() {
        let d = tree(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            ("b.rs", "// use crate::a;  (a comment)\npub struct Thing;\n"),
        ]);
        assert!(import_circles(&d).expect("lint").is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
