//! The probe catalogue: what to trace in each binary, as data.
//!
//! The built-in catalogue is `tracer/catalogue/*.toml`, embedded at build time;
//! `--catalogue FILE` replaces it. This module parses and checks it, and
//! matches it against a [`GoBinary`] to decide where each probe goes.
//!
//! Data and its matching against a [`crate::resolve::GoBinary`]; nothing
//! here reads registers or attaches.

use std::collections::BTreeSet;

use podtrace_common::{cap, reg, Capture, MAX_CAPTURES, MAX_DEREFS};
use serde::{Deserialize, Serialize};

use crate::resolve::{EntrySite, Function, FunctionSites, GoBinary};

/// What matching the catalogue reads of a binary. [`GoBinary`] reads it
/// from the file; [`crate::fixture::Fixture`] holds the part of it one
/// version's binary gave, so the catalogue can be held against versions
/// whose binaries are not at hand.
pub trait Facts {
    fn functions(&self) -> &[Function];
    fn function(&self, name: &str) -> Option<&Function>;
    /// RET sites, entry site, tail jumps and direct calls of `f`.
    fn sites(&self, f: &Function) -> Result<FunctionSites, String>;
    /// Integer result registers `f` fills before its RETs.
    fn result_regs(&self, f: &Function) -> Result<Option<usize>, String>;
    /// Functions holding an inlined copy of `name`.
    fn inlined_into(&self, name: &str) -> &[String];
    /// Functions inlined into every caller (no code of their own).
    fn inlined_functions(&self) -> Vec<&str>;
    /// A module's version from `.go.buildinfo`.
    fn module_version(&self, path: &str) -> Option<&str>;
    fn file_offset(&self, vaddr: u64) -> Option<u64>;
}

impl Facts for GoBinary {
    fn functions(&self) -> &[Function] {
        GoBinary::functions(self)
    }
    fn function(&self, name: &str) -> Option<&Function> {
        GoBinary::function(self, name)
    }
    fn sites(&self, f: &Function) -> Result<FunctionSites, String> {
        GoBinary::sites(self, f).map_err(|e| e.to_string())
    }
    fn result_regs(&self, f: &Function) -> Result<Option<usize>, String> {
        GoBinary::result_regs(self, f).map_err(|e| e.to_string())
    }
    fn inlined_into(&self, name: &str) -> &[String] {
        GoBinary::inlined_into(self, name)
    }
    fn inlined_functions(&self) -> Vec<&str> {
        GoBinary::inlined_functions(self)
    }
    fn module_version(&self, path: &str) -> Option<&str> {
        GoBinary::module_version(self, path)
    }
    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        GoBinary::file_offset(self, vaddr)
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("kubelet.toml", include_str!("../catalogue/kubelet.toml")),
    (
        "containerd.toml",
        include_str!("../catalogue/containerd.toml"),
    ),
];

/// The built-in catalogue file of binary `name` (`kubelet`: kubelet.toml).
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(file, _)| file.strip_suffix(".toml") == Some(name))
        .map(|(_, text)| *text)
}

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
    /// The operation executor's mount of one volume of a pod (its own
    /// goroutine, started by the reconciler): the plugin's SetUp through
    /// marking the volume mounted. Captures `volume` (kubelet's unique
    /// volume name), `outer_volume` (the pod's name for it) and `pod_uid`.
    VolumeSetup,
    Loop,
    Stage,
    /// Work a loop does for one pod on request, outside its period (PLEG's
    /// `relistPod`, asked for by SyncPod's postSync in kubelet 1.36+):
    /// reported with its pod, after the sync that asked for it, and never
    /// counted as a tick of the periodic loop.
    OnDemand,
    /// A CRI handler in the container runtime.
    Cri,
    /// The RPC server's handling of one call (encloses a Cri span): request
    /// decoding through the response written, i.e. the call as the runtime's
    /// gRPC server saw it.
    Rpc,
}

/// kubelet's stage that creates a pod's sandbox (kuberuntime's
/// createPodSandbox, in kubelet.toml).
pub const SANDBOX_STAGE: &str = "create_sandbox";
/// The runtime's CRI handler that creates a pod's sandbox (containerd.toml).
pub const SANDBOX_CRI: &str = "RunPodSandbox";

/// Whether a call of this probe creates a pod's sandbox: what a pod's first
/// sync does and a kubelet re-adopting a running pod after its restart
/// does not.
pub fn creates_sandbox(role: Role, probe: &str) -> bool {
    (role == Role::Stage && probe == SANDBOX_STAGE) || (role == Role::Cri && probe == SANDBOX_CRI)
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
    /// The newest release of `module` the catalogue was proven on (the
    /// matrix's newest row). A binary of a newer minor is resolved by
    /// shape alone: see [`BinaryInfo::unseen`].
    #[serde(default)]
    pub newest_tested: Option<String>,
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
    pub fn detected(&self, bin: &dyn Facts) -> Vec<(String, String)> {
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

    /// The binary's version of the catalogue's module: `module` itself or
    /// its major-version path (`github.com/containerd/containerd/v2`), the
    /// highest major present. (module path, version).
    pub fn component_version<'b>(&self, bin: &'b dyn Facts) -> Option<(String, &'b str)> {
        module_any_major(bin, &self.module)
    }

    /// Whether `bin` is newer than any version the catalogue was tested on
    /// (see [`is_unseen`]); then no `module` condition holds in it.
    pub fn unseen(&self, bin: &dyn Facts) -> Option<Unseen> {
        let newest = self.newest_tested.as_deref()?;
        let (module, version) = self.component_version(bin)?;
        is_unseen(version, newest).then(|| Unseen {
            module,
            version: version.to_string(),
            newest_tested: newest.to_string(),
        })
    }
}

/// A binary newer than the catalogue's newest tested version: its
/// probes resolve by shape only (a version range such as `>= v1.36.0`
/// also "holds" on v1.38, whose registers nobody has read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unseen {
    pub module: String,
    pub version: String,
    pub newest_tested: String,
}

impl Unseen {
    /// Why a `module` condition does not hold in an unseen binary.
    pub fn why(&self) -> String {
        format!(
            "{} {} is newer than the newest tested {}: a version range says nothing of its layout",
            self.module, self.version, self.newest_tested
        )
    }

    /// One line for the trace header (`report` shows it): the version,
    /// and the probes left out.
    pub fn line(&self, res: &[Resolution]) -> String {
        let not: Vec<&str> = res
            .iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| r.probe.as_str())
            .collect();
        format!(
            "{} {} is newer than the newest tested {}: {} probes matched by a known shape only, {} not attached{}",
            self.module,
            self.version,
            self.newest_tested,
            res.len() - not.len(),
            not.len(),
            if not.is_empty() {
                String::new()
            } else {
                format!(" ({})", not.join(", "))
            }
        )
    }

    /// What the user is told: a headline, the probes that matched by a
    /// known shape (with the fact, when `facts`) and the ones not attached
    /// with why.
    pub fn summary(&self, binary: &str, res: &[Resolution], facts: bool) -> Vec<String> {
        let mut out = vec![format!(
            "{binary}: {} {} is newer than the newest version this catalogue was tested on ({}): \
             probes are matched by known shapes only, never by version ranges",
            self.module, self.version, self.newest_tested
        )];
        let ok: Vec<&Resolution> = res.iter().filter(|r| r.status == Status::Ok).collect();
        let not: Vec<&Resolution> = res.iter().filter(|r| r.status != Status::Ok).collect();
        if facts {
            out.push(format!("{} probes matched by a known shape:", ok.len()));
            for r in &ok {
                let by: Vec<&str> = r.targets.iter().map(|t| t.matched_by.as_str()).collect();
                let mut by_uniq = by.clone();
                by_uniq.dedup();
                out.push(format!("  {}: {}", r.probe, by_uniq.join("; ")));
            }
            out.push(format!("{} not attached:", not.len()));
            for r in &not {
                out.push(format!(
                    "  {} ({}): {}",
                    r.probe,
                    r.status.as_str(),
                    r.detail
                ));
            }
        } else {
            let names = |v: &[&Resolution]| {
                v.iter()
                    .map(|r| r.probe.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "{binary}: {} probes matched by a known shape ({}); {} not attached ({}): `podtrace probes` says why",
                ok.len(),
                names(&ok),
                not.len(),
                names(&not)
            ));
        }
        out
    }
}

/// `module`'s version in `bin`, under its own path or a major-version
/// path (`module/v2`; the highest present): (path found, version).
pub fn module_any_major<'b>(bin: &'b dyn Facts, module: &str) -> Option<(String, &'b str)> {
    (2..=9)
        .rev()
        .map(|n| format!("{module}/v{n}"))
        .chain(std::iter::once(module.to_string()))
        .find_map(|m| bin.module_version(&m).map(|v| (m, v)))
}

/// Whether a binary at module `version` is newer than `newest_tested`:
/// a greater (major, minor). Patches and pre-releases of a tested minor
/// are seen (their layouts are the minor's); an unknown version (an
/// in-tree build's `(devel)`, a pseudo-version) is not unseen: no module
/// condition holds there anyway, so it resolves by shape already.
pub fn is_unseen(version: &str, newest_tested: &str) -> bool {
    if !known_version(version) {
        return false;
    }
    let minor = |v: &str| {
        let k = version_key(v);
        (
            k.first().copied().unwrap_or(0),
            k.get(1).copied().unwrap_or(0),
        )
    };
    minor(version) > minor(newest_tested)
}

/// A release version (`v1.36.3`, `v1.38.0-beta.0`), not `(devel)` or a
/// pseudo-version of an untagged commit.
fn known_version(v: &str) -> bool {
    v.starts_with('v') && !v.starts_with("v0.0.0")
}

/// The catalogue `text` as it was before it knew `version`: without every
/// variant one of whose `module` conditions has a lower bound at or above
/// `version` (`>= v1.37.0` for "v1.37.0"), without probes left with no
/// variant, and with `newest_tested` set to `newest_tested`. How the
/// tests and `cargo xtask matrix` hold a real binary against a catalogue
/// that has never seen it. Comments are not kept.
pub fn forget_from(text: &str, version: &str, newest_tested: &str) -> Result<String, String> {
    use toml::Value;
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let cut = version_key(version);
    let newer = |cond: &str| -> Result<bool, String> {
        let (_, bounds) =
            parse_module_cond(cond).ok_or_else(|| format!("bad module condition `{cond}`"))?;
        Ok(bounds
            .iter()
            .any(|(op, v)| matches!(*op, ">=" | ">" | "==") && version_key(v) >= cut))
    };
    let knows_it = |variant: &Value| -> Result<bool, String> {
        let mut modules: Vec<&str> = variant
            .get("when")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("module").and_then(Value::as_str))
            .collect();
        modules.extend(variant.get("when_module").and_then(Value::as_str));
        for m in modules {
            if newer(m)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let binary = doc
        .get_mut("binary")
        .and_then(Value::as_table_mut)
        .ok_or("no [binary]")?;
    binary.insert("newest_tested".into(), Value::String(newest_tested.into()));
    let probes = doc
        .get_mut("probe")
        .and_then(Value::as_array_mut)
        .ok_or("no [[probe]]")?;
    let mut kept = Vec::new();
    for mut p in std::mem::take(probes) {
        if let Some(vs) = p.get_mut("variant").and_then(Value::as_array_mut) {
            let mut left = Vec::new();
            for v in std::mem::take(vs) {
                if !knows_it(&v)? {
                    left.push(v);
                }
            }
            if left.is_empty() {
                continue;
            }
            *vs = left;
        }
        kept.push(p);
    }
    *probes = kept;
    toml::to_string(&doc).map_err(|e| e.to_string())
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
    /// Said after the reasons when no variant's condition holds: what that
    /// usually means (a known version whose shape has no probe here).
    #[serde(default)]
    pub mismatch_note: String,
    /// Attach every variant whose condition holds, not just the first:
    /// for functions a binary compiles in side by side (one picked at run
    /// time, e.g. kubelet 1.28-1.30's `reconcile` and `reconcileNew`).
    /// Their captures must be the same.
    #[serde(default)]
    pub every_variant: bool,
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
    /// Positive conditions: the variant is used only if one of them holds
    /// (each a table whose keys must all hold, see [`Cond`]). A variant is
    /// never chosen just because the ones before it did not apply.
    #[serde(default)]
    pub when: Vec<Cond>,
    /// Shorthands for one more `when` entry (all given must hold):
    /// `calls`, `module`, `symbol`.
    #[serde(default)]
    pub when_calls: Option<String>,
    #[serde(default)]
    pub when_module: Option<String>,
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

/// One positive fact about the binary or the probed function; every key
/// given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cond {
    /// `"path OP version[, OP version]"` with OP one of >=, >, <, <=, ==:
    /// .go.buildinfo has the module at a version in that range (false when
    /// the version is unknown, e.g. `(devel)` of an in-tree build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// A function matching this glob exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// And no function matches this glob (only beside a positive key: it
    /// tells two generations apart, it never decides alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without: Option<String>,
    /// The probed function (with `from`: some function matching that glob)
    /// calls this one: a direct CALL, or an inlined copy of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The probed function fills exactly this many integer result
    /// registers (see `GoBinary::result_regs`): its result shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_regs: Option<usize>,
}

impl Cond {
    fn check(&self) -> Result<(), String> {
        if self.module.is_none()
            && self.symbol.is_none()
            && self.calls.is_none()
            && self.result_regs.is_none()
        {
            return Err("a `when` entry needs module, symbol, calls or result_regs".into());
        }
        if self.from.is_some() && self.calls.is_none() {
            return Err("`from` only goes with `calls`".into());
        }
        if let Some(c) = &self.module {
            if parse_module_cond(c).is_none() {
                return Err(format!(
                    "module `{c}` is not `module OP version[, OP version]`"
                ));
            }
        }
        if self.result_regs == Some(0) {
            return Err("result_regs must be at least 1".into());
        }
        Ok(())
    }

    /// Whether it holds for `f` (the probed function) in `bin`: Ok(what
    /// held) or Err(what did not).
    fn holds(
        &self,
        bin: &dyn Facts,
        f: &Function,
        sites: &FunctionSites,
        unseen: Option<&Unseen>,
    ) -> Result<String, String> {
        let mut held = Vec::new();
        if let Some(c) = &self.module {
            module_cond(bin, c, unseen).map(|m| held.push(m))?;
        }
        if let Some(pat) = &self.symbol {
            if matching_functions(bin, pat).is_empty() {
                return Err(format!("no function {}", short(pat)));
            }
            held.push(format!("has {}", short(pat)));
        }
        if let Some(pat) = &self.without {
            if let Some(g) = matching_functions(bin, pat).first() {
                return Err(format!("has {}", g.name));
            }
            held.push(format!("no {}", short(pat)));
        }
        if let Some(callee) = &self.calls {
            match &self.from {
                None => {
                    if !calls_or_inlines(bin, f, sites, callee) {
                        return Err(format!(
                            "{} neither calls {} nor holds an inlined copy",
                            short(&f.name),
                            short(callee)
                        ));
                    }
                    held.push(format!("calls {}", short(callee)));
                }
                Some(from) => {
                    let callers = matching_functions(bin, from);
                    let hit = callers.iter().find(|c| {
                        bin.sites(c)
                            .is_ok_and(|s| calls_or_inlines(bin, c, &s, callee))
                    });
                    match hit {
                        Some(c) => held.push(format!("{} calls {}", short(&c.name), short(callee))),
                        None if callers.is_empty() => {
                            return Err(format!("no function {}", short(from)))
                        }
                        None => {
                            return Err(format!(
                                "no {} calls {} (nor holds an inlined copy)",
                                short(from),
                                short(callee)
                            ))
                        }
                    }
                }
            }
        }
        if let Some(want) = self.result_regs {
            let have = bin.result_regs(f)?;
            if have != Some(want) {
                return Err(format!(
                    "{} fills {} result registers, not {want}",
                    short(&f.name),
                    have.map_or("no".to_string(), |n| n.to_string())
                ));
            }
            held.push(format!("{want} result registers"));
        }
        Ok(held.join(", "))
    }

    /// Holds without looking at a function (module, symbol, without only).
    fn holds_for_binary(&self, bin: &dyn Facts, unseen: Option<&Unseen>) -> bool {
        self.calls.is_none()
            && self.result_regs.is_none()
            && self
                .module
                .as_ref()
                .is_none_or(|c| module_cond(bin, c, unseen).is_ok())
            && self.symbol.as_ref().is_none_or(|p| {
                // A name the compiler inlined away still tells the version.
                !matching_functions(bin, p).is_empty()
                    || bin.inlined_functions().iter().any(|n| glob_match(p, n))
            })
            && self
                .without
                .as_ref()
                .is_none_or(|p| matching_functions(bin, p).is_empty())
    }
}

/// The last path element of a symbol, for one-line messages.
fn short(sym: &str) -> &str {
    let pkg_end = sym.rfind('/').map_or(0, |i| i + 1);
    &sym[pkg_end..]
}

impl Variant {
    /// Its conditions: `when`, plus the `when_*` shorthands as one entry.
    pub fn conditions(&self) -> Vec<Cond> {
        let mut c = self.when.clone();
        if self.when_calls.is_some() || self.when_module.is_some() || self.when_symbol.is_some() {
            c.push(Cond {
                calls: self.when_calls.clone(),
                module: self.when_module.clone(),
                symbol: self.when_symbol.clone(),
                ..Cond::default()
            });
        }
        c
    }

    /// The first condition that holds for `f`: Ok((what held, whether it
    /// named a version range)), or Err(why none did).
    fn applies_to(
        &self,
        bin: &dyn Facts,
        f: &Function,
        sites: &FunctionSites,
        unseen: Option<&Unseen>,
    ) -> Result<(String, bool), String> {
        let mut why = Vec::new();
        for c in self.conditions() {
            match c.holds(bin, f, sites, unseen) {
                Ok(held) => return Ok((held, c.module.is_some())),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    /// Whether a condition can hold in `bin` at all, judged without the
    /// function (for names the compiler inlined away): conditions about
    /// the function itself count as possible.
    fn may_apply(&self, bin: &dyn Facts, unseen: Option<&Unseen>) -> bool {
        self.conditions().iter().any(|c| {
            c.calls.is_some() || c.result_regs.is_some() || c.holds_for_binary(bin, unseen)
        })
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

/// Parses `"path OP version[, OP version]"` with OP one of >=, >, <, <=, ==.
fn parse_module_cond(cond: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let cond = cond.trim();
    let (path, rest) = cond.split_once(char::is_whitespace)?;
    let mut bounds = Vec::new();
    for part in rest.split(',') {
        let mut it = part.split_whitespace();
        let (op, ver) = (it.next()?, it.next()?);
        if it.next().is_some()
            || !matches!(op, ">=" | ">" | "<" | "<=" | "==")
            || !ver.starts_with('v')
        {
            return None;
        }
        bounds.push((op, ver));
    }
    Some((path, bounds))
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

/// Ok("path version") if the binary's module version is in range, else
/// why not. Never in an `unseen` binary: a range open to newer versions
/// would claim layouts nobody read.
fn module_cond(bin: &dyn Facts, cond: &str, unseen: Option<&Unseen>) -> Result<String, String> {
    let (path, bounds) =
        parse_module_cond(cond).ok_or_else(|| format!("bad module condition `{cond}`"))?;
    if let Some(u) = unseen {
        return Err(u.why());
    }
    let have = bin
        .module_version(path)
        .ok_or_else(|| format!("no {path} in the build info"))?;
    if !known_version(have) {
        return Err(format!("{path} version unknown: {have}"));
    }
    let h = version_key(have);
    for (op, want) in bounds {
        let w = version_key(want);
        let ok = match op {
            ">=" => h >= w,
            ">" => h > w,
            "<" => h < w,
            "<=" => h <= w,
            _ => h == w,
        };
        if !ok {
            return Err(format!("{path} {have} is not {op} {want}"));
        }
    }
    Ok(format!("{path} {have}"))
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
    /// 1 if the low byte of a u64 read is nonzero, else 0: a Go bool (in a
    /// register only its low byte is defined).
    Bool,
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
            CaptureKind::U64 | CaptureKind::U32 | CaptureKind::Bool => (cap::U64, self.path.len()),
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
                let conds = v.conditions();
                if conds.is_empty() {
                    return Err(invalid(format!(
                        "{name}: the variant states no condition (`when`): every variant needs a \
                         positive one, it is never chosen just because others did not apply"
                    )));
                }
                for c in &conds {
                    c.check().map_err(|m| invalid(format!("{name}: {m}")))?;
                }
                let (entry, exit) = v.captures(p);
                if p.every_variant && (entry.clone(), exit.clone()) != p.variants[0].captures(p) {
                    return Err(invalid(format!(
                        "{name}: every_variant needs the same captures in every variant"
                    )));
                }
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

    /// The built-in catalogue, or with `--catalogue FILE` (one `[binary]`):
    /// a file for a binary the built-in catalogue has (`name = "kubelet"`)
    /// replaces that binary's part only, so that one binary can be
    /// overridden while the others are still traced; a file for any other
    /// program is the whole catalogue.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Catalogue> {
        use anyhow::Context as _;
        let mut cat = Catalogue::builtin()?;
        if let Some(p) = path {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            cat.replace(Catalogue::parse(&p.display().to_string(), &text)?);
        }
        Ok(cat)
    }

    /// Puts `file` in place of the binary of its name; a binary of another
    /// name becomes the only one.
    pub fn replace(&mut self, file: BinaryCatalogue) {
        match self
            .binaries
            .iter_mut()
            .find(|b| b.binary.name == file.binary.name)
        {
            Some(slot) => *slot = file,
            None => self.binaries = vec![file],
        }
    }

    /// The `[binary]` of this name, or the only one of a single-binary
    /// `--catalogue` file.
    pub fn for_binary(&self, name: &str) -> anyhow::Result<&BinaryCatalogue> {
        use anyhow::Context as _;
        self.binary(name)
            .or_else(|| (self.binaries.len() == 1).then(|| &self.binaries[0]))
            .with_context(|| format!("the catalogue has no [binary] named {name}"))
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
    /// A variant's function exists, but no variant's condition holds for
    /// it (another version's shape): attaching would read the wrong
    /// registers, so the probe is not attached.
    Mismatch,
    /// The compiler inlined the function into every caller: its name is in
    /// the binary's tables, its code only inside other functions.
    Inlined,
}

impl Status {
    /// The name `probes` and the metrics show (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Mismatch => "mismatch",
            Status::Inlined => "inlined",
        }
    }
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
    /// The variant used for this function (index), its note, and the
    /// condition that held.
    pub variant: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    pub matched_by: String,
    /// Whether the condition that held was a `module` version range
    /// (false: a shape of the code; never true in an unseen binary).
    pub by_version: bool,
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
        self.resolve_facts(bin)
    }

    /// The same from any [`Facts`] (a version fixture).
    pub fn resolve_facts(&self, bin: &dyn Facts) -> Vec<Resolution> {
        let unseen = self.binary.unseen(bin);
        self.probes
            .iter()
            .map(|p| resolve_probe(p, bin, unseen.as_ref()))
            .collect()
    }

    /// Every function name pattern the catalogue matches: variants'
    /// symbols, conditions' symbol/without/calls/from, detect symbols.
    pub fn patterns(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .binary
            .detects
            .iter()
            .map(|d| d.symbol.clone())
            .collect();
        for p in &self.probes {
            for var in &p.variants {
                v.extend(var.symbols().map(str::to_string));
                for c in var.conditions() {
                    v.extend([c.symbol, c.without, c.calls, c.from].into_iter().flatten());
                }
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn matching_functions<'a>(bin: &'a dyn Facts, pattern: &str) -> Vec<&'a Function> {
    if is_glob(pattern) {
        bin.functions()
            .iter()
            .filter(|f| glob_match(pattern, &f.name))
            .collect()
    } else {
        bin.function(pattern).into_iter().collect()
    }
}

/// Whether `caller` calls `callee` directly, or the compiler inlined a copy
/// of `callee` into it (then no CALL exists, but the shape is the same).
fn calls_or_inlines(
    bin: &dyn Facts,
    caller: &Function,
    sites: &FunctionSites,
    callee: &str,
) -> bool {
    let direct = bin
        .function(callee)
        .is_some_and(|t| sites.calls.iter().any(|&(_, to)| to == t.entry));
    direct || bin.inlined_into(callee).contains(&caller.name)
}

fn resolve_probe(p: &ProbeDef, bin: &dyn Facts, unseen: Option<&Unseen>) -> Resolution {
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
    // Why each variant whose function exists was not used.
    let mut problems = Vec::new();
    let mut found_any = false;
    for (vi, v) in p.variants.iter().enumerate() {
        let Some(funcs) = v
            .symbols()
            .map(|sym| matching_functions(bin, sym))
            .find(|f| !f.is_empty())
        else {
            continue;
        };
        found_any = true;
        let mut targets = Vec::new();
        let mut why = Vec::new();
        for f in funcs {
            let sites = match bin.sites(f) {
                Ok(s) => s,
                Err(e) => {
                    why.push(format!("{}: {e}", f.name));
                    continue;
                }
            };
            let held = match v.applies_to(bin, f, &sites, unseen) {
                Ok(h) => h,
                Err(e) => {
                    why.push(e);
                    continue;
                }
            };
            match make_target(bin, f, &sites, (vi, &v.note), held) {
                Some(t) => targets.push(t),
                None => why.push(format!("{}: address outside every PT_LOAD segment", f.name)),
            }
        }
        if targets.is_empty() {
            problems.push(format!("variant {}: {}", vi + 1, why.join("; ")));
            continue;
        }
        if res.variant.is_none() {
            res.status = Status::Ok;
            res.variant = Some(vi);
            (res.entry_captures, res.exit_captures) = v.captures(p);
            res.detail = v.note.clone();
        }
        res.targets.extend(targets);
        if !p.every_variant {
            return res;
        }
    }
    if res.status == Status::Ok {
        return res;
    }
    if found_any {
        res.status = Status::Mismatch;
        res.detail = format!("no variant's condition holds: {}", problems.join(" | "));
        if !p.mismatch_note.is_empty() {
            res.detail = format!("{} ({})", res.detail, p.mismatch_note);
        }
        return res;
    }
    if let Some(name) = inlined_match(p, bin, unseen) {
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
fn inlined_match(p: &ProbeDef, bin: &dyn Facts, unseen: Option<&Unseen>) -> Option<String> {
    let inlined = bin.inlined_functions();
    if inlined.is_empty() {
        return None;
    }
    p.variants
        .iter()
        .filter(|v| v.may_apply(bin, unseen))
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

fn make_target(
    bin: &dyn Facts,
    f: &Function,
    sites: &FunctionSites,
    (variant, note): (usize, &str),
    (matched_by, by_version): (String, bool),
) -> Option<Target> {
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
        variant,
        note: note.to_string(),
        matched_by,
        by_version,
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
when = [{ symbol = "f" }]
entry = [{ name = "a", kind = "str", reg = "RZZ", path = [1] }]
"#;
        let e = Catalogue::parse("bad.toml", bad).expect_err("must fail");
        assert!(e.to_string().contains("unknown register RZZ"), "{e}");
        let e = Catalogue::parse("bad.toml", "[binary]\nname=1").expect_err("must fail");
        assert!(e.to_string().starts_with("bad.toml:"), "{e}");
    }

    fn one_variant(variant: &str) -> String {
        format!(
            "[binary]\nname = \"x\"\nmodule = \"m\"\n[[probe]]\nname = \"p\"\nrole = \"stage\"\n\
             [[probe.variant]]\nsymbol = \"f\"\n{variant}\n"
        )
    }

    #[test]
    fn every_variant_needs_a_positive_condition() {
        let e = Catalogue::parse("c.toml", &one_variant("")).expect_err("no condition");
        assert!(e.to_string().contains("states no condition"), "{e}");
        for (bad, why) in [
            (
                "when = [{ without = \"g\" }]",
                "needs module, symbol, calls or result_regs",
            ),
            (
                "when = [{ symbol = \"f\", from = \"g\" }]",
                "`from` only goes with `calls`",
            ),
            (
                "when = [{ module = \"k8s.io/kubernetes 1.28\" }]",
                "is not `module OP version",
            ),
            ("when = [{ result_regs = 0 }]", "at least 1"),
        ] {
            let e = Catalogue::parse("c.toml", &one_variant(bad)).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        for good in [
            "when = [{ calls = \"g\" }]",
            "when = [{ module = \"k8s.io/kubernetes >= v1.27.0, < v1.36.0\" }, { result_regs = 3 }]",
            "when_symbol = \"g\"",
        ] {
            Catalogue::parse("c.toml", &one_variant(good)).expect(good);
        }
    }

    #[test]
    fn module_ranges() {
        let (path, b) =
            parse_module_cond("k8s.io/kubernetes >= v1.27.0, < v1.36.0").expect("range");
        assert_eq!(path, "k8s.io/kubernetes");
        assert_eq!(b, vec![(">=", "v1.27.0"), ("<", "v1.36.0")]);
        assert!(parse_module_cond("k8s.io/kubernetes").is_none());
        assert!(parse_module_cond("k8s.io/kubernetes >= v1, ").is_none());
        assert!(parse_module_cond("k8s.io/kubernetes ~ v1").is_none());
        assert!(version_key("v1.36.0-rc.1") < version_key("v1.36.1"));
    }

    #[test]
    fn unseen_is_a_newer_minor_than_the_newest_tested() {
        assert!(
            !is_unseen("v1.37.5", "v1.37.2"),
            "a patch of a tested minor"
        );
        assert!(!is_unseen("v1.37.0-rc.1", "v1.37.2"));
        assert!(!is_unseen("v1.36.3", "v1.37.2"));
        assert!(is_unseen("v1.38.0-beta.0", "v1.37.2"));
        assert!(is_unseen("v1.38.0", "v1.37.2"));
        assert!(is_unseen("v2.0.0", "v1.37.2"));
        assert!(is_unseen("v2.5.0", "v2.4.2"));
        // Unknown versions resolve by shape already: not unseen.
        assert!(!is_unseen("(devel)", "v1.37.2"));
        assert!(!is_unseen("v0.0.0-20260101000000-abcdef123456", "v1.37.2"));
    }

    const RANGES: &str = r#"
[binary]
name = "x"
module = "m"
newest_tested = "v1.2.0"
[[probe]]
name = "p"
role = "stage"
[[probe.variant]]
symbol = "f"
note = "new"
when = [{ module = "m >= v1.3.0", calls = "g" }, { result_regs = 2 }]
[[probe.variant]]
symbol = "f"
note = "old"
when = [{ module = "m >= v1.0.0, < v1.3.0" }, { symbol = "f" }]
[[probe]]
name = "only_new"
role = "stage"
[[probe.variant]]
symbol = "h"
when_module = "m == v1.3.1"
"#;

    #[test]
    fn forgetting_a_version_drops_the_variants_that_need_it() {
        let t = forget_from(RANGES, "v1.3.0", "v1.2.5").expect("forget");
        let c = Catalogue::parse("forgot.toml", &t).expect("still a catalogue");
        assert_eq!(c.binary.newest_tested.as_deref(), Some("v1.2.5"));
        let p: Vec<(&str, Vec<&str>)> = c
            .probes
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.variants.iter().map(|v| v.note.as_str()).collect(),
                )
            })
            .collect();
        // `< v1.3.0` is an upper bound: that variant stays.
        assert_eq!(p, vec![("p", vec!["old"])]);
        // Nothing needs v1.4: all stays.
        let t = forget_from(RANGES, "v1.4.0", "v1.3.1").expect("forget");
        let c = Catalogue::parse("forgot.toml", &t).expect("parses");
        assert_eq!(c.probes.len(), 2);
        assert_eq!(c.probes[0].variants.len(), 2);
        assert!(forget_from("[binary]\nname = 1", "v1.0.0", "v0.9.0").is_err());
    }

    #[test]
    fn a_catalogue_file_replaces_only_the_binary_it_names() {
        let mut cat = Catalogue::builtin().expect("builtin");
        let mut kubelet = cat.binary("kubelet").expect("kubelet").clone();
        kubelet.probes.truncate(1);
        cat.replace(kubelet);
        let names: Vec<&str> = cat
            .binaries
            .iter()
            .map(|b| b.binary.name.as_str())
            .collect();
        assert_eq!(names, vec!["kubelet", "containerd"]);
        assert_eq!(cat.binary("kubelet").map(|b| b.probes.len()), Some(1));
        assert!(cat.binary("containerd").is_some_and(|b| b.probes.len() > 1));
        // Another program's catalogue is the whole catalogue.
        let other = Catalogue::parse("x.toml", RANGES).expect("parses");
        cat.replace(other);
        let names: Vec<&str> = cat
            .binaries
            .iter()
            .map(|b| b.binary.name.as_str())
            .collect();
        assert_eq!(names, vec!["x"]);
    }

    #[test]
    fn every_variant_needs_equal_captures() {
        let t =
            "[binary]\nname = \"x\"\nmodule = \"m\"\n[[probe]]\nname = \"p\"\nrole = \"loop\"\n\
                 every_variant = true\n[[probe.variant]]\nsymbol = \"f\"\nwhen_symbol = \"f\"\n\
                 [[probe.variant]]\nsymbol = \"g\"\nwhen_symbol = \"g\"\n\
                 entry = [{ name = \"a\", kind = \"u64\", reg = \"RAX\" }]\n";
        let e = Catalogue::parse("c.toml", t).expect_err("different captures");
        assert!(e.to_string().contains("same captures"), "{e}");
    }
}
