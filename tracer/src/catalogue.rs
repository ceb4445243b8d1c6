//! The probe catalogue: what to trace in each binary, as data.
//!
//! The built-in catalogue is `tracer/catalogue/*.toml`, embedded at build time;
//! `--catalogue FILE` replaces it. This module parses and checks it, and
//! matches it against a [`GoBinary`] to decide where each probe goes.

use std::collections::BTreeSet;

use podtrace_common::{cap, reg, Capture, MAX_CAPTURES, MAX_DEREFS};
use serde::{Deserialize, Serialize};

use crate::resolve::{EntrySite, Function, FunctionSites, GoBinary};

const BUILTIN: &[(&str, &str)] = &[
    ("kubelet.toml", include_str!("../catalogue/kubelet.toml")),
    (
        "containerd.toml",
        include_str!("../catalogue/containerd.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: Box<toml::de::Error>,
    },
    #[error("{file}: probe `{probe}`: {msg}")]
    Invalid {
        file: String,
        probe: String,
        msg: String,
    },
}

/// What a span of this probe means to the correlator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PodSync,
    MountWait,
    PollHelper,
    PollCond,
    PollCheck,
    VolumeMounted,
    Loop,
    Stage,
    /// A CRI handler in the container runtime.
    Cri,
    /// The RPC server's handling of one call (encloses a Cri span): request
    /// decoding through the response written, i.e. the call as the runtime's
    /// gRPC server saw it.
    Rpc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryCatalogue {
    pub binary: BinaryInfo,
    #[serde(rename = "probe")]
    pub probes: Vec<ProbeDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryInfo {
    pub name: String,
    pub module: String,
    #[serde(default)]
    pub process_names: Vec<String>,
    /// Modules whose versions decide layouts: `podtrace probes` shows them.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Facts `podtrace probes` shows, told by which symbols exist: per
    /// label, the first entry whose symbol (glob) resolves.
    #[serde(default, rename = "detect")]
    pub detects: Vec<Detect>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    pub label: String,
    pub symbol: String,
    pub value: String,
}

impl BinaryInfo {
    /// (label, value) of every `detect` that holds in `bin`, first per label.
    pub fn detected(&self, bin: &GoBinary) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for d in &self.detects {
            if !out.iter().any(|(l, _)| *l == d.label)
                && !matching_functions(bin, &d.symbol).is_empty()
            {
                out.push((d.label.clone(), d.value.clone()));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeDef {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub help: String,
    /// Captures used by variants that define none of their own.
    #[serde(default)]
    pub entry: Vec<CaptureDef>,
    #[serde(default)]
    pub exit: Vec<CaptureDef>,
    #[serde(rename = "variant")]
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// One symbol, or `symbols`: alternatives, the first present is used.
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Only if this function calls that one (checks the signature version).
    #[serde(default)]
    pub when_calls: Option<String>,
    /// Only if .go.buildinfo has this module at this version, e.g.
    /// `"k8s.io/cri-api >= v0.34.0"` or `"k8s.io/cri-api < v0.34.0"`.
    #[serde(default)]
    pub when_module: Option<String>,
    /// Only if a function matching this glob exists (e.g. a generated method
    /// that tells which protobuf generator built the request types).
    #[serde(default)]
    pub when_symbol: Option<String>,
    /// Added to every path offset of the captures (a layout where each
    /// struct gained a leading field, as protobuf-go's MessageState).
    #[serde(default)]
    pub path_shift: u32,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub entry: Option<Vec<CaptureDef>>,
    #[serde(default)]
    pub exit: Option<Vec<CaptureDef>>,
}

impl Variant {
    /// Whether its `when_module` and `when_symbol` conditions hold in `bin`.
    fn applies(&self, bin: &GoBinary) -> bool {
        self.when_module
            .as_ref()
            .is_none_or(|c| module_matches(bin, c))
            && self
                .when_symbol
                .as_ref()
                .is_none_or(|pat| !matching_functions(bin, pat).is_empty())
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.symbol
            .iter()
            .chain(self.symbols.iter())
            .map(String::as_str)
    }

    /// Effective (entry, exit) captures, with `path_shift` applied.
    pub fn captures(&self, probe: &ProbeDef) -> (Vec<CaptureDef>, Vec<CaptureDef>) {
        let shift = |caps: &Vec<CaptureDef>| -> Vec<CaptureDef> {
            caps.iter()
                .map(|c| CaptureDef {
                    path: c.path.iter().map(|o| o + self.path_shift).collect(),
                    ..c.clone()
                })
                .collect()
        };
        (
            shift(self.entry.as_ref().unwrap_or(&probe.entry)),
            shift(self.exit.as_ref().unwrap_or(&probe.exit)),
        )
    }
}

/// Parses `"path OP version"` with OP one of >=, >, <, <=, ==.
fn parse_module_cond(cond: &str) -> Option<(&str, &str, &str)> {
    let mut it = cond.split_whitespace();
    let (path, op, ver) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !matches!(op, ">=" | ">" | "<" | "<=" | "==") {
        return None;
    }
    Some((path, op, ver))
}

/// Numeric parts of a Go module version (`v0.34.1-rc.0` → [0, 34, 1]).
fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// Whether the binary's module satisfies `cond`; false if the module (or its
/// version) is unknown, so unconditioned variants after it apply.
pub fn module_matches(bin: &GoBinary, cond: &str) -> bool {
    let Some((path, op, want)) = parse_module_cond(cond) else {
        return false;
    };
    let Some(have) = bin.module_version(path) else {
        return false;
    };
    if !have.starts_with('v') || have.starts_with("v0.0.0") {
        return false;
    }
    let (h, w) = (version_key(have), version_key(want));
    match op {
        ">=" => h >= w,
        ">" => h > w,
        "<" => h < w,
        "<=" => h <= w,
        _ => h == w,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureDef {
    pub name: String,
    pub kind: CaptureKind,
    pub reg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg2: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureKind {
    U64,
    /// The low 4 bytes of a u64 read (a uint32 field).
    U32,
    Str,
    Strregs,
    Nonzero,
}

impl CaptureKind {
    pub fn is_string(self) -> bool {
        matches!(self, CaptureKind::Str | CaptureKind::Strregs)
    }
}

fn reg_index(name: &str) -> Option<u8> {
    Some(match name.to_ascii_uppercase().as_str() {
        "RAX" => reg::RAX,
        "RBX" => reg::RBX,
        "RCX" => reg::RCX,
        "RDI" => reg::RDI,
        "RSI" => reg::RSI,
        "R8" => reg::R8,
        "R9" => reg::R9,
        "R10" => reg::R10,
        "R11" => reg::R11,
        "RDX" => reg::RDX,
        "RSP" => reg::RSP,
        "R14" => reg::R14,
        _ => return None,
    })
}

impl CaptureDef {
    /// The eBPF-side form. Validated by [`Catalogue::parse`], so infallible here.
    pub fn to_capture(&self) -> Capture {
        let mut c = Capture {
            reg: reg_index(&self.reg).unwrap_or(0),
            reg2: self.reg2.as_deref().and_then(reg_index).unwrap_or(0),
            ..Capture::default()
        };
        for (i, off) in self.path.iter().take(MAX_DEREFS + 1).enumerate() {
            c.offs[i] = *off;
        }
        let (kind, nderef) = match self.kind {
            CaptureKind::U64 | CaptureKind::U32 => (cap::U64, self.path.len()),
            CaptureKind::Nonzero => (cap::NONZERO, self.path.len()),
            CaptureKind::Str => (cap::STR_HDR, self.path.len().saturating_sub(1)),
            CaptureKind::Strregs => (cap::STR_REGS, 0),
        };
        c.kind = kind;
        c.nderef = nderef.min(MAX_DEREFS) as u8;
        c
    }

    fn check(&self) -> Result<(), String> {
        if reg_index(&self.reg).is_none() {
            return Err(format!(
                "capture `{}`: unknown register {}",
                self.name, self.reg
            ));
        }
        match (self.kind, &self.reg2) {
            (CaptureKind::Strregs, Some(r2)) if reg_index(r2).is_some() => {}
            (CaptureKind::Strregs, _) => {
                return Err(format!(
                    "capture `{}`: strregs needs reg2 (the length register)",
                    self.name
                ))
            }
            (_, Some(_)) => {
                return Err(format!("capture `{}`: reg2 is only for strregs", self.name))
            }
            _ => {}
        }
        let max = match self.kind {
            CaptureKind::Str => MAX_DEREFS + 1,
            CaptureKind::Strregs => 0,
            _ => MAX_DEREFS,
        };
        if self.path.len() > max {
            return Err(format!(
                "capture `{}`: path has {} offsets, at most {max} allowed for {:?}",
                self.name,
                self.path.len(),
                self.kind
            ));
        }
        if self.kind == CaptureKind::Str && self.path.is_empty() {
            return Err(format!(
                "capture `{}`: str needs a path ending at the string header",
                self.name
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Catalogue {
    pub binaries: Vec<BinaryCatalogue>,
}

impl Catalogue {
    pub fn builtin() -> Result<Self, CatalogueError> {
        let binaries = BUILTIN
            .iter()
            .map(|(file, text)| Self::parse(file, text))
            .collect::<Result<_, _>>()?;
        Ok(Catalogue { binaries })
    }

    /// Parses and checks one catalogue file.
    pub fn parse(file: &str, text: &str) -> Result<BinaryCatalogue, CatalogueError> {
        let cat: BinaryCatalogue = toml::from_str(text).map_err(|e| CatalogueError::Parse {
            file: file.to_string(),
            source: Box::new(e),
        })?;
        let mut names = BTreeSet::new();
        for p in &cat.probes {
            let invalid = |msg: String| CatalogueError::Invalid {
                file: file.to_string(),
                probe: p.name.clone(),
                msg,
            };
            if !names.insert(p.name.as_str()) {
                return Err(invalid("defined twice".into()));
            }
            if p.variants.is_empty() {
                return Err(invalid("has no [[probe.variant]]".into()));
            }
            for v in &p.variants {
                let name = v.symbols().next().unwrap_or("").to_string();
                if name.is_empty() {
                    return Err(invalid("a variant has no symbol".into()));
                }
                if let Some(c) = &v.when_module {
                    if parse_module_cond(c).is_none() {
                        return Err(invalid(format!(
                            "{name}: when_module `{c}` is not `module OP version`"
                        )));
                    }
                }
                let (entry, exit) = v.captures(p);
                for caps in [&entry, &exit] {
                    if caps.len() > MAX_CAPTURES {
                        return Err(invalid(format!(
                            "{name}: {} captures, at most {MAX_CAPTURES}",
                            caps.len()
                        )));
                    }
                    for c in caps {
                        c.check().map_err(|m| invalid(format!("{name}: {m}")))?;
                    }
                }
            }
        }
        Ok(cat)
    }

    pub fn binary(&self, name: &str) -> Option<&BinaryCatalogue> {
        self.binaries.iter().find(|b| b.binary.name == name)
    }
}

/// Pattern parts between wildcards. A `*` is a wildcard (any run of
/// characters) except right after `(`, where it is Go's pointer receiver:
/// `pkg.(*T).M` names that one method, not `pkg.(*OtherT).M` too.
fn glob_parts(pattern: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut from = 0;
    for (i, _) in pattern.match_indices('*') {
        if pattern[..i].ends_with('(') {
            continue;
        }
        parts.push(&pattern[from..i]);
        from = i + 1;
    }
    parts.push(&pattern[from..]);
    parts
}

/// Whether `pattern` has a wildcard (see [`glob_match`]).
pub fn is_glob(pattern: &str) -> bool {
    glob_parts(pattern).len() > 1
}

/// Glob match where `*` stands for any run of characters, except in `(*`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts = glob_parts(pattern);
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return pattern == text;
    }
    let Some(mut t) = text.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        if i == rest.len() - 1 {
            return t.ends_with(part);
        }
        match t.find(part) {
            Some(at) => t = &t[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Where one catalogue probe landed in one binary.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub probe: String,
    pub role: Role,
    pub status: Status,
    /// Variant used (index into the probe's variants) and what it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<usize>,
    /// What the probe reads at entry and at each RET (that variant's).
    pub entry_captures: Vec<CaptureDef>,
    pub exit_captures: Vec<CaptureDef>,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// No variant's symbol is in the binary.
    Missing,
    /// The symbol exists but its expected callee is not called (inlined or other version).
    Mismatch,
    /// The compiler inlined the function into every caller: its name is in
    /// the binary's tables, its code only inside other functions.
    Inlined,
}

/// One function to attach to (a pattern may match several closures).
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub symbol: String,
    pub entry_vaddr: u64,
    pub entry_site: SiteKind,
    pub entry_site_vaddr: u64,
    pub entry_site_offset: u64,
    pub ret_vaddrs: Vec<u64>,
    pub ret_offsets: Vec<u64>,
    pub tail_jumps: usize,
    /// Functions holding an inlined copy of this one: calls made there run
    /// that copy and are not seen by the probe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inlined_into: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// The prologue's stack-check jump: emulated by x86 uprobes, no single step.
    PrologueJump,
    /// The first instruction (leaf/NOSPLIT functions): single-stepped.
    FunctionStart,
}

impl BinaryCatalogue {
    /// Decides for every probe which variant and which functions to use.
    pub fn resolve(&self, bin: &GoBinary) -> Vec<Resolution> {
        self.probes.iter().map(|p| resolve_probe(p, bin)).collect()
    }
}

fn matching_functions<'a>(bin: &'a GoBinary, pattern: &str) -> Vec<&'a Function> {
    if is_glob(pattern) {
        bin.functions()
            .iter()
            .filter(|f| glob_match(pattern, &f.name))
            .collect()
    } else {
        bin.function(pattern).into_iter().collect()
    }
}

fn calls_named(bin: &GoBinary, sites: &FunctionSites, callee: &str) -> bool {
    let Some(target) = bin.function(callee) else {
        return false;
    };
    sites.calls.iter().any(|&(_, to)| to == target.entry)
}

fn resolve_probe(p: &ProbeDef, bin: &GoBinary) -> Resolution {
    let mut res = Resolution {
        probe: p.name.clone(),
        role: p.role,
        status: Status::Missing,
        variant: None,
        entry_captures: Vec::new(),
        exit_captures: Vec::new(),
        targets: Vec::new(),
        detail: String::new(),
    };
    let mut problems = Vec::new();
    for (vi, v) in p.variants.iter().enumerate() {
        if !v.applies(bin) {
            continue;
        }
        let Some(funcs) = v
            .symbols()
            .map(|sym| matching_functions(bin, sym))
            .find(|f| !f.is_empty())
        else {
            continue;
        };
        let mut targets = Vec::new();
        for f in funcs {
            let sites = match bin.sites(f) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{}: {e}", f.name));
                    continue;
                }
            };
            if let Some(callee) = &v.when_calls {
                if !calls_named(bin, &sites, callee) {
                    res.status = Status::Mismatch;
                    problems.push(format!("{} does not call {callee}", f.name));
                    continue;
                }
            }
            match make_target(bin, f, &sites) {
                Some(t) => targets.push(t),
                None => problems.push(format!("{}: address outside every PT_LOAD segment", f.name)),
            }
        }
        if !targets.is_empty() {
            res.status = Status::Ok;
            res.variant = Some(vi);
            (res.entry_captures, res.exit_captures) = v.captures(p);
            res.targets = targets;
            res.detail = v.note.clone();
            return res;
        }
    }
    if res.status == Status::Missing && problems.is_empty() {
        if let Some(name) = inlined_match(p, bin) {
            res.status = Status::Inlined;
            let callers = bin.inlined_into(&name);
            let into = if callers.is_empty() {
                "its callers".to_string()
            } else {
                list_some(callers)
            };
            res.detail = format!(
                "{name} was inlined into {into}: no code of its own to attach to \
                 (probe a caller, or build with -gcflags=all=-l)"
            );
            return res;
        }
        let mut tried: Vec<&str> = p.variants.iter().flat_map(|v| v.symbols()).collect();
        tried.dedup();
        res.detail = format!("not in binary: {}", tried.join(", "));
    } else {
        res.detail = problems.join("; ");
    }
    res
}

/// `a, b, c and 4 more`: a list for one line of output.
pub fn list_some(names: &[String]) -> String {
    const SHOW: usize = 3;
    let mut s = names
        .iter()
        .take(SHOW)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOW {
        s.push_str(&format!(" and {} more", names.len() - SHOW));
    }
    s
}

/// First name, over the variants that apply to `bin`, that the compiler
/// inlined away (see GoBinary::inlined_functions).
fn inlined_match(p: &ProbeDef, bin: &GoBinary) -> Option<String> {
    let inlined = bin.inlined_functions();
    if inlined.is_empty() {
        return None;
    }
    p.variants
        .iter()
        .filter(|v| v.applies(bin))
        .flat_map(|v| v.symbols())
        .find_map(|sym| {
            let hit = if is_glob(sym) {
                inlined.iter().find(|n| glob_match(sym, n))
            } else {
                inlined.binary_search(&sym).ok().map(|i| &inlined[i])
            };
            hit.map(|n| n.to_string())
        })
}

fn make_target(bin: &GoBinary, f: &Function, sites: &FunctionSites) -> Option<Target> {
    let (kind, site) = match sites.entry_site {
        EntrySite::PrologueJump { vaddr } => (SiteKind::PrologueJump, vaddr),
        EntrySite::FunctionStart { vaddr } => (SiteKind::FunctionStart, vaddr),
    };
    let ret_offsets = sites
        .rets
        .iter()
        .map(|&r| bin.file_offset(r))
        .collect::<Option<Vec<_>>>()?;
    Some(Target {
        symbol: f.name.clone(),
        entry_vaddr: f.entry,
        entry_site: kind,
        entry_site_vaddr: site,
        entry_site_offset: bin.file_offset(site)?,
        ret_vaddrs: sites.rets.clone(),
        ret_offsets,
        tail_jumps: sites.tail_jumps.len(),
        inlined_into: bin.inlined_into(&f.name).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_parses() {
        let c = Catalogue::builtin().expect("builtin catalogue");
        let k = c.binary("kubelet").expect("kubelet");
        assert!(k.probes.iter().any(|p| p.role == Role::PodSync));
        assert!(k.probes.iter().any(|p| p.role == Role::PollCheck));
    }

    #[test]
    fn glob() {
        assert!(glob_match("a.(*b).f.func*", "a.(*b).f.func1"));
        assert!(glob_match("a.(*b).f.func*", "a.(*b).f.func12"));
        assert!(!glob_match("a.(*b).f.func*", "a.(*b).g.func1"));
        assert!(glob_match("*x*", "abxcd"));
        assert!(glob_match("plain", "plain"));
        // `(*` is a pointer receiver, not a wildcard.
        assert!(!is_glob("sync.(*Mutex).Lock"));
        assert!(glob_match("sync.(*Mutex).Lock", "sync.(*Mutex).Lock"));
        assert!(!glob_match("sync.(*Mutex).Lock", "sync.(*RWMutex).Lock"));
        assert!(is_glob("a.(*b).f.func*"));
        assert!(!glob_match("a.(*b).f.func*", "a.(*xb).f.func1"));
        assert!(glob_match("a.*.f", "a.(*b).f"));
        assert!(!glob_match("plain", "plainer"));
    }

    #[test]
    fn capture_encoding() {
        let c = CaptureDef {
            name: "uid".into(),
            kind: CaptureKind::Str,
            reg: "RDI".into(),
            reg2: None,
            path: vec![0, 8, 96],
        };
        let e = c.to_capture();
        assert_eq!((e.kind, e.reg, e.nderef), (cap::STR_HDR, reg::RDI, 2));
        assert_eq!(&e.offs[..3], &[0, 8, 96]);
    }

    #[test]
    fn bad_catalogue_is_an_error() {
        let bad = r#"
[binary]
name = "x"
module = "m"
[[probe]]
name = "p"
role = "stage"
[[probe.variant]]
symbol = "f"
entry = [{ name = "a", kind = "str", reg = "RZZ", path = [1] }]
"#;
        let e = Catalogue::parse("bad.toml", bad).expect_err("must fail");
        assert!(e.to_string().contains("unknown register RZZ"), "{e}");
        let e = Catalogue::parse("bad.toml", "[binary]\nname=1").expect_err("must fail");
        assert!(e.to_string().starts_with("bad.toml:"), "{e}");
    }
}
