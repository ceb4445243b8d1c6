//! Version fixtures: what the catalogue reads of one real binary, small
//! enough to commit (`cargo xtask matrix --fixtures` writes one per built
//! kubelet and containerd to tracer/tests/fixtures/versions/). A fixture
//! holds the functions any catalogue pattern matches (entry, RETs, entry
//! site, result registers, direct calls among them), the inline facts for
//! those names, the modules' versions from `.go.buildinfo`, and what the
//! catalogue resolved on the real binary when it was written. Matching the
//! catalogue against a fixture ([`Facts`]) gives what it gives against the
//! binary, so a catalogue change that breaks a version not at hand fails
//! the unit test (tracer/tests/versions.rs).
//!
//! A catalogue change that names a function no pattern matched before needs
//! the fixtures written again from the binaries (the matrix builds them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    catalogue::{glob_match, is_glob, BinaryCatalogue, Facts, Resolution},
    resolve::{EntrySite, Function, FunctionSites, GoBinary},
};

/// One function of a fixture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixtureFunction {
    pub name: String,
    pub entry: u64,
    pub end: u64,
    /// `prologue_jump` or `function_start`, and where.
    pub entry_site: String,
    pub entry_site_vaddr: u64,
    pub rets: Vec<u64>,
    pub tail_jumps: usize,
    /// Functions of the fixture it calls directly (by name).
    pub calls: Vec<String>,
    /// Integer result registers before its RETs (None: none found or
    /// not decodable).
    pub result_regs: Option<usize>,
}

/// What one probe resolved to on the real binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub probe: String,
    pub status: String,
    /// Variant used (1-based as `probes` prints it), if any.
    pub variant: Option<usize>,
    /// Functions attached to.
    pub targets: Vec<String>,
}

impl Expected {
    pub fn of(r: &Resolution) -> Expected {
        Expected {
            probe: r.probe.clone(),
            status: r.status.as_str().to_string(),
            variant: r.variant.map(|v| v + 1),
            targets: r.targets.iter().map(|t| t.symbol.clone()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    /// Catalogue binary name (`kubelet`, `containerd`).
    pub binary: String,
    /// The release (`v1.33.13`) and the Go it was built with.
    pub version: String,
    pub go: String,
    /// Module versions from `.go.buildinfo` (main module and deps).
    pub modules: BTreeMap<String, String>,
    pub functions: Vec<FixtureFunction>,
    /// Inlined function → functions holding a copy (names the patterns match).
    pub inlined_into: BTreeMap<String, Vec<String>>,
    /// Functions inlined into every caller (names the patterns match).
    pub inlined_functions: Vec<String>,
    /// File offset − vaddr of the text segment.
    pub text_offset_delta: i64,
    /// What the catalogue resolved on the binary when this was written.
    pub expected: Vec<Expected>,
    #[serde(skip)]
    funcs: Vec<Function>,
}

fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        if is_glob(p) {
            glob_match(p, name)
        } else {
            p == name
        }
    })
}

impl Fixture {
    /// Extracts the fixture of `bin` for `cat` (whose resolution on `bin`
    /// becomes the expected one).
    pub fn extract(
        bin: &GoBinary,
        cat: &BinaryCatalogue,
        version: &str,
    ) -> Result<Fixture, String> {
        let patterns = cat.patterns();
        let picked: Vec<&Function> = bin
            .functions()
            .iter()
            .filter(|f| matches_any(&patterns, &f.name))
            .collect();
        let by_entry: BTreeMap<u64, &str> =
            picked.iter().map(|f| (f.entry, f.name.as_str())).collect();
        let mut functions = Vec::new();
        for f in &picked {
            let s = bin.sites(f).map_err(|e| format!("{}: {e}", f.name))?;
            let (kind, site) = match s.entry_site {
                EntrySite::PrologueJump { vaddr } => ("prologue_jump", vaddr),
                EntrySite::FunctionStart { vaddr } => ("function_start", vaddr),
            };
            let mut calls: Vec<String> = s
                .calls
                .iter()
                .filter_map(|(_, to)| by_entry.get(to).map(|n| n.to_string()))
                .collect();
            calls.sort();
            calls.dedup();
            functions.push(FixtureFunction {
                name: f.name.clone(),
                entry: f.entry,
                end: f.end,
                entry_site: kind.to_string(),
                entry_site_vaddr: site,
                rets: s.rets.clone(),
                tail_jumps: s.tail_jumps.len(),
                calls,
                result_regs: bin.result_regs(f).ok().flatten(),
            });
        }
        let inlined_functions: Vec<String> = bin
            .inlined_functions()
            .into_iter()
            .filter(|n| matches_any(&patterns, n))
            .map(str::to_string)
            .collect();
        let mut inlined_into = BTreeMap::new();
        let mut names: Vec<&str> = picked.iter().map(|f| f.name.as_str()).collect();
        names.extend(inlined_functions.iter().map(String::as_str));
        for n in names {
            let callers = bin.inlined_into(n);
            if !callers.is_empty() {
                inlined_into.insert(n.to_string(), callers.to_vec());
            }
        }
        let mut modules = BTreeMap::new();
        if let Some(bi) = bin.build_info() {
            if let Some(m) = &bi.main {
                modules.insert(m.path.clone(), m.version.clone());
            }
            for d in &bi.deps {
                if let Some(v) = bin.module_version(&d.path) {
                    modules.insert(d.path.clone(), v.to_string());
                }
            }
        }
        let text_offset_delta = picked
            .first()
            .and_then(|f| bin.file_offset(f.entry).map(|o| o as i64 - f.entry as i64))
            .unwrap_or(0);
        let mut fx = Fixture {
            binary: cat.binary.name.clone(),
            version: version.to_string(),
            go: bin.go_version().unwrap_or_default().to_string(),
            modules,
            functions,
            inlined_into,
            inlined_functions,
            text_offset_delta,
            expected: cat.resolve(bin).iter().map(Expected::of).collect(),
            funcs: Vec::new(),
        };
        fx.index();
        // The fixture must tell the catalogue what the binary told it.
        let again: Vec<Expected> = cat.resolve_facts(&fx).iter().map(Expected::of).collect();
        if again != fx.expected {
            return Err(format!(
                "the fixture resolves differently from the binary: {again:?} vs {:?}",
                fx.expected
            ));
        }
        Ok(fx)
    }

    /// Parses a fixture written by [`Fixture::to_json`].
    pub fn from_json(text: &str) -> Result<Fixture, serde_json::Error> {
        let mut fx: Fixture = serde_json::from_str(text)?;
        fx.index();
        Ok(fx)
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self).map(|s| s + "\n")
    }

    fn index(&mut self) {
        self.functions.sort_by(|a, b| a.name.cmp(&b.name));
        self.funcs = self
            .functions
            .iter()
            .map(|f| Function {
                name: f.name.clone(),
                entry: f.entry,
                end: f.end,
            })
            .collect();
    }

    fn fixture_function(&self, name: &str) -> Option<&FixtureFunction> {
        self.functions
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.functions[i])
    }
}

impl Facts for Fixture {
    fn functions(&self) -> &[Function] {
        &self.funcs
    }

    fn function(&self, name: &str) -> Option<&Function> {
        self.funcs
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.funcs[i])
    }

    fn sites(&self, f: &Function) -> Result<FunctionSites, String> {
        let ff = self
            .fixture_function(&f.name)
            .ok_or_else(|| format!("{} is not in the fixture", f.name))?;
        let entry_site = match ff.entry_site.as_str() {
            "prologue_jump" => EntrySite::PrologueJump {
                vaddr: ff.entry_site_vaddr,
            },
            _ => EntrySite::FunctionStart {
                vaddr: ff.entry_site_vaddr,
            },
        };
        Ok(FunctionSites {
            entry: ff.entry,
            entry_site,
            rets: ff.rets.clone(),
            tail_jumps: vec![0; ff.tail_jumps],
            calls: ff
                .calls
                .iter()
                .filter_map(|c| self.function(c).map(|t| (0, t.entry)))
                .collect(),
        })
    }

    fn result_regs(&self, f: &Function) -> Result<Option<usize>, String> {
        Ok(self.fixture_function(&f.name).and_then(|ff| ff.result_regs))
    }

    fn inlined_into(&self, name: &str) -> &[String] {
        self.inlined_into.get(name).map_or(&[], Vec::as_slice)
    }

    fn inlined_functions(&self) -> Vec<&str> {
        self.inlined_functions.iter().map(String::as_str).collect()
    }

    fn module_version(&self, path: &str) -> Option<&str> {
        self.modules.get(path).map(String::as_str)
    }

    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        u64::try_from(vaddr as i64 + self.text_offset_delta).ok()
    }
}
