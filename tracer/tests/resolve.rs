//! Tests of `podtrace::resolve` against real Go binaries: small programs
//! built here with Go 1.19 and Go 1.27 (stripped, unstripped, PIE), the
//! upstream stripped kubectl release builds when the machine has them, and
//! real kubelets 1.34.4 and 1.36.3 (stripped, Go 1.26.8) with the built-in
//! catalogue.
//!
//! Needs both Go toolchains (`cargo xtask setup` installs them) and the real
//! kubelets (`PODTRACE_KUBELET_134`, `PODTRACE_KUBELET_136`, default
//! /root/.podtrace/bin/kubelet-v1.34.4 and -v1.36.3); a missing one fails
//! the tests.

use podtrace::resolve::{
    EntrySite, GoBinary, GoidSource, ResolveError, SymbolSource, TextStartSource,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const GO19: &str = "/usr/bin/go";
const GO27: &str = "/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go";
const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

const MAIN_GO: &str = r#"package main

import (
	"fmt"
	"os"

	"k8s.io/fakedep"
)

//go:noinline
func manyReturns(a int, s string) (int, error) {
	if a == 1 {
		return 10, nil
	}
	if a == 2 {
		return len(s), fmt.Errorf("two %s", s)
	}
	if a == 3 {
		return fakedep.Poll(a), nil
	}
	if a > 100 {
		return a * 2, nil
	}
	return 0, nil
}

//go:nosplit
//go:noinline
func leaf(a, b int) int {
	return a*b + 7
}

type server struct{ n int }

//go:noinline
func (s *server) Handle(x int) int {
	var buf [64]byte
	for i := range buf {
		buf[i] = byte(x + i)
	}
	f := func() int { return int(buf[3]) + s.n }
	return f()
}

// Frame > 128 bytes: lea r12,[rsp-N]; cmp r12,[r14+0x10].
//
//go:noinline
func mediumFrame(x int) byte {
	var b [1000]byte
	for i := range b {
		b[i] = byte(x * i)
	}
	return b[x%len(b)] + byte(fmt.Sprint(x)[0])
}

// Frame > 4 KiB: mov r12,rsp; sub r12,N; jb; cmp r12,[r14+0x10]; jbe.
//
//go:noinline
func bigFrame(x int) byte {
	var big [100000]byte
	big[x%len(big)] = byte(x)
	return big[(x*7)%len(big)]
}

// Small enough to be inlined into callsTiny; tinyRef keeps its own code too.
func tiny(xs []int, i int) int { return xs[i%len(xs)] }

//go:noinline
func callsTiny(xs []int) int { return tiny(xs, 3) + tiny(xs, 5) }

var tinyRef = tiny

// Only ever inlined: no code of its own, its name only in inline trees.
func onlyInlined(xs []int, i int) int { return xs[(i+1)%len(xs)] }

//go:noinline
func callsOnlyInlined(xs []int) int { return onlyInlined(xs, 2) }

type number interface{ ~int | ~float64 }

//go:noinline
func Sum[T number](xs []T) T {
	var s T
	for _, x := range xs {
		s += x
	}
	return s
}

func main() {
	s := &server{n: len(os.Args)}
	r, err := manyReturns(len(os.Args), "x")
	fmt.Println(r, err, leaf(r, 3), s.Handle(r), mediumFrame(r), bigFrame(r), Sum([]int{r, 2}))
	fmt.Println(callsTiny([]int{r, 2, 3}), tinyRef([]int{r}, 1), callsOnlyInlined([]int{r, 4}))
}
"#;

const DEP_GO: &str = r#"package fakedep

//go:noinline
func Poll(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * 3
	}
	return s
}
"#;

/// Functions of the test program whose sites are checked against objdump.
const CHECKED: &[&str] = &[
    "main.manyReturns",
    "main.leaf",
    "main.(*server).Handle",
    "main.mediumFrame",
    "main.bigFrame",
    "k8s.io/fakedep.Poll",
    "runtime.main",
];

struct Build {
    go: &'static str,
    /// "1.19" or "1.27".
    label: &'static str,
    unstripped: PathBuf,
    stripped: PathBuf,
    pie_unstripped: PathBuf,
    pie_stripped: PathBuf,
}

struct Builds {
    dir: PathBuf,
    go19: Build,
    go27: Build,
}

fn go_cmd(go: &str) -> Command {
    let mut c = Command::new(go);
    c.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOWORK", "off");
    c
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Build the test program once per test run, in a temp dir under the
/// target dir.
fn builds() -> &'static Builds {
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    BUILDS.get_or_init(|| {
        for go in [GO19, GO27] {
            assert!(
                Path::new(go).exists(),
                "Go toolchain {go} is missing: run `cargo xtask setup` to install Go 1.19 and Go 1.27"
            );
        }
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_build_dirs(&tmp);
        let dir = tmp.join(format!("resolve-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("app")).unwrap();
        std::fs::create_dir_all(src.join("fakedep")).unwrap();
        std::fs::write(src.join("fakedep/go.mod"), "module k8s.io/fakedep\n\ngo 1.19\n").unwrap();
        std::fs::write(src.join("fakedep/dep.go"), DEP_GO).unwrap();
        std::fs::write(
            src.join("app/go.mod"),
            "module example.com/resolvetest\n\ngo 1.19\n\nrequire k8s.io/fakedep v0.27.1\n\n\
             replace k8s.io/fakedep => ../fakedep\n",
        )
        .unwrap();
        std::fs::write(src.join("app/main.go"), MAIN_GO).unwrap();

        let build = |go: &'static str, label: &'static str| -> Build {
            let out = |name: &str| dir.join(format!("app-{label}-{name}"));
            let variants: [(&str, &[&str]); 4] = [
                ("unstripped", &[]),
                ("stripped", &["-ldflags=-s -w"]),
                ("pie-unstripped", &["-buildmode=pie"]),
                ("pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]),
            ];
            for (name, flags) in variants {
                run(go_cmd(go)
                    .current_dir(src.join("app"))
                    .arg("build")
                    .args(flags)
                    .arg("-o")
                    .arg(out(name))
                    .arg("."));
            }
            Build {
                go,
                label,
                unstripped: out("unstripped"),
                stripped: out("stripped"),
                pie_unstripped: out("pie-unstripped"),
                pie_stripped: out("pie-stripped"),
            }
        };
        let go19 = build(GO19, "1.19");
        let go27 = build(GO27, "1.27");
        Builds { dir, go19, go27 }
    })
}

/// Build dirs of earlier test runs whose process is gone.
fn remove_stale_build_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("resolve-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn all_builds() -> [&'static Build; 2] {
    let b = builds();
    [&b.go19, &b.go27]
}

fn open(p: &Path) -> GoBinary {
    GoBinary::open(p).unwrap_or_else(|e| panic!("{e}"))
}

/// Go 1.18–1.21 pclntabs abbreviate bracketed name parts to `[...]`.
fn abbreviated(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(i), Some(j)) if i < j => format!("{}[...]{}", &name[..i], &name[j + 1..]),
        _ => name.to_string(),
    }
}

fn name_entry_set(bin: &GoBinary) -> BTreeSet<(String, u64)> {
    bin.functions()
        .iter()
        .map(|f| (abbreviated(&f.name), f.entry))
        .collect()
}

/// Text functions per `go tool nm` (T/t), spelled as the pclntab does.
fn go_nm(go: &str, bin: &Path) -> BTreeSet<(String, u64)> {
    run(go_cmd(go).args(["tool", "nm"]).arg(bin))
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (addr, kind) = (it.next()?, it.next()?);
            let name: Vec<&str> = it.collect();
            let name = name.join(" ");
            if !matches!(kind, "T" | "t") || name == "runtime.text" || name == "runtime.etext" {
                return None;
            }
            let name = name.strip_suffix(".abi0").unwrap_or(&name);
            Some((abbreviated(name), u64::from_str_radix(addr, 16).ok()?))
        })
        .collect()
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Bytes at `vaddr` in `path`, located through the `.text` section header
/// (independent of the resolver's segment-based mapping).
fn text_bytes_via_sections(path: &Path, vaddr: u64, len: usize) -> Vec<u8> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let (off, _) = text.file_range().unwrap();
    let start = (off + vaddr - text.address()) as usize;
    data[start..start + len].to_vec()
}

#[test]
fn stripped_pclntab_matches_symtab_and_go_nm() {
    for b in all_builds() {
        for (full, stripped) in [
            (&b.unstripped, &b.stripped),
            (&b.pie_unstripped, &b.pie_stripped),
        ] {
            let u = open(full);
            let s = open(stripped);
            assert_eq!(
                u.symbol_source(),
                SymbolSource::Symtab,
                "{}",
                full.display()
            );
            assert_eq!(
                s.symbol_source(),
                SymbolSource::Pclntab,
                "{}",
                stripped.display()
            );
            let (text, how) = s.text_start().unwrap();
            let expected_how = if b.label == "1.19" {
                TextStartSource::PcHeader
            } else {
                TextStartSource::Moduledata
            };
            assert_eq!(how, expected_how, "{}", stripped.display());
            assert_eq!(
                text,
                symbol_address(full, "runtime.text"),
                "{}",
                stripped.display()
            );

            let from_symtab = name_entry_set(&u);
            let from_pclntab = name_entry_set(&s);
            assert_eq!(
                from_symtab
                    .symmetric_difference(&from_pclntab)
                    .collect::<Vec<_>>(),
                Vec::<&(String, u64)>::new(),
                "{} (symtab) vs {} (pclntab)",
                full.display(),
                stripped.display()
            );
            assert_eq!(
                from_symtab,
                go_nm(b.go, full),
                "{} vs go tool nm",
                full.display()
            );
            println!(
                "Go {} {}: {} functions, pclntab == .symtab == go tool nm",
                b.label,
                stripped.file_name().unwrap().to_string_lossy(),
                from_pclntab.len()
            );

            // pclntab ends run to the next entry: the symbol's end plus
            // INT3 padding.
            let data = std::fs::read(stripped).unwrap();
            for f in u.functions() {
                let g = s.function(&f.name).filter(|g| g.entry == f.entry);
                let Some(g) = g else { continue };
                assert!(g.end >= f.end && g.end - f.end < 64, "{f:?} vs {g:?}");
                if g.end > f.end {
                    let pad = s.file_offset(f.end).unwrap() as usize
                        ..s.file_offset(g.end - 1).unwrap() as usize + 1;
                    assert!(
                        data[pad].iter().all(|&b| b == 0xcc),
                        "padding after {}",
                        f.name
                    );
                }
            }
        }
    }
}

/// (code, length) of the instructions in `bytes`: the same instructions
/// compare equal even where their RIP-relative displacements differ.
fn instruction_shapes(bytes: &[u8], ip: u64) -> Vec<(iced_x86::Code, usize)> {
    let mut d = iced_x86::Decoder::with_ip(64, bytes, ip, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        out.push((i.code(), i.len()));
    }
    out.pop(); // the last one may be cut off by the window
    out
}

#[test]
fn file_offsets_hold_the_code() {
    for b in all_builds() {
        for (full, stripped) in [
            (&b.unstripped, &b.stripped),
            (&b.pie_unstripped, &b.pie_stripped),
        ] {
            let s = open(stripped);
            let mut checked = 0;
            for f in s.functions() {
                let len = (f.end - f.entry).min(48) as usize;
                let off = s.file_offset(f.entry).unwrap();
                let ours = read_at(stripped, off, len);
                // Exactly the bytes the section headers point at.
                assert_eq!(
                    ours,
                    text_bytes_via_sections(stripped, f.entry, len),
                    "{} in {}",
                    f.name,
                    stripped.display()
                );
                // The same code as the unstripped build has at that address
                // (data moves when symbols are dropped, so compare
                // instructions, not displacement bytes).
                assert_eq!(
                    instruction_shapes(&ours, f.entry),
                    instruction_shapes(&text_bytes_via_sections(full, f.entry, len), f.entry),
                    "{} in {} vs {}",
                    f.name,
                    stripped.display(),
                    full.display()
                );
                checked += 1;
            }
            assert!(checked > 1000);
            assert_eq!(s.file_offset(0), None);
        }
    }
}

#[test]
fn go_version_and_modules() {
    for b in all_builds() {
        for p in [&b.unstripped, &b.stripped, &b.pie_stripped] {
            let bin = open(p);
            // `go version <file>` prints "<file>: go1.19.8".
            let want = run(go_cmd(b.go).arg("version").arg(p));
            let want = want.trim().rsplit(' ').next().unwrap();
            assert_eq!(bin.go_version(), Some(want), "{}", p.display());

            let info = bin.build_info().unwrap();
            assert_eq!(info.path, "example.com/resolvetest");
            let main = info.main.as_ref().unwrap();
            assert_eq!(
                (main.path.as_str(), main.version.as_str()),
                ("example.com/resolvetest", "(devel)")
            );
            let dep = info.module("k8s.io/fakedep").unwrap();
            assert_eq!(dep.version, "v0.27.1");
            let r = dep.replace.as_ref().unwrap();
            assert_eq!(
                (r.path.as_str(), r.version.as_str()),
                ("../fakedep", "(devel)")
            );
            assert_eq!(bin.module_version("k8s.io/fakedep"), Some("v0.27.1"));
            assert_eq!(bin.module_version("k8s.io/nothere"), None);
            let setting = |k: &str| {
                info.settings
                    .iter()
                    .find(|s| s.0 == k)
                    .map(|s| s.1.as_str())
            };
            assert_eq!(setting("GOARCH"), Some("amd64"));
            if p == &b.stripped {
                assert_eq!(setting("-ldflags"), Some("-s -w"));
            }

            // Same modules as `go version -m`.
            let m = run(go_cmd(b.go).args(["version", "-m"]).arg(p));
            let deps: Vec<Vec<&str>> = m
                .lines()
                .map(|l| l.trim_start_matches('\t').split('\t').collect::<Vec<_>>())
                .filter(|f| f[0] == "dep")
                .collect();
            assert_eq!(deps.len(), info.deps.len());
            for (d, ours) in deps.iter().zip(&info.deps) {
                assert_eq!((d[1], d[2]), (ours.path.as_str(), ours.version.as_str()));
            }
        }
    }
}

/// RET addresses of a function and the JBE after its stack check (if it
/// has one: a CMPQ with 0x10(R14) among the first instructions), per
/// `go tool objdump`.
fn objdump(go: &str, bin: &Path, func: &str) -> (Vec<u64>, Option<u64>) {
    let re = format!(
        "^{}$",
        func.replace('(', r"\(")
            .replace(')', r"\)")
            .replace('*', r"\*")
            .replace('.', r"\.")
    );
    let text = run(go_cmd(go).args(["tool", "objdump", "-s", &re]).arg(bin));
    let mut rets = Vec::new();
    let mut jbe = None;
    let mut check_seen = false;
    for (n, line) in text.lines().filter(|l| !l.starts_with("TEXT")).enumerate() {
        let f: Vec<&str> = line
            .split('\t')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let Some(addr) = f
            .get(1)
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        let asm = f.get(3).copied().unwrap_or("");
        if asm == "RET" || asm.starts_with("RET ") {
            rets.push(addr);
        }
        // Go 1.19 prints `CMPQ 0x10(R14), SP`, Go 1.27 `CMPQ SP, 0x10(R14)`.
        if n < 5 && asm.starts_with("CMPQ ") && asm.contains("0x10(R14)") {
            check_seen = true;
        } else if check_seen && asm.starts_with("JBE ") && jbe.is_none() {
            jbe = Some(addr);
        }
    }
    (rets, jbe)
}

#[test]
fn ret_sites_and_prologues_match_objdump() {
    for b in all_builds() {
        for p in [&b.unstripped, &b.stripped, &b.pie_stripped] {
            let bin = open(p);
            let full = open(&b.unstripped);
            for name in CHECKED {
                let f = bin
                    .function(name)
                    .unwrap_or_else(|| panic!("{name} in {}", p.display()));
                let sites = bin.sites(f).unwrap();
                // objdump needs symbols: use the unstripped build (same code;
                // the PIE build is linked at other addresses, so shift).
                let base = full.function(name).unwrap().entry;
                let (rets, jbe) = objdump(b.go, &b.unstripped, name);
                let shifted = |a: u64| a - base + f.entry;
                let rets: Vec<u64> = rets.into_iter().map(shifted).collect();
                assert_eq!(sites.rets, rets, "RETs of {name} in {}", p.display());
                let want = match jbe {
                    Some(a) => EntrySite::PrologueJump { vaddr: shifted(a) },
                    None => EntrySite::FunctionStart { vaddr: f.entry },
                };
                assert_eq!(sites.entry_site, want, "{name} in {}", p.display());
                if p == &b.stripped {
                    println!(
                        "Go {} {name}: {} RET(s), entry {:#x}, entry site {:#x} ({})",
                        b.label,
                        sites.rets.len(),
                        f.entry,
                        sites.entry_site.vaddr(),
                        match sites.entry_site {
                            EntrySite::PrologueJump { .. } => "prologue JBE",
                            EntrySite::FunctionStart { .. } => "function start",
                        }
                    );
                }
            }

            let many = bin
                .sites(bin.function("main.manyReturns").unwrap())
                .unwrap();
            assert_eq!(
                many.entry_site,
                EntrySite::PrologueJump {
                    vaddr: many.entry + 4
                }
            );
            assert!(many.rets.len() >= 4, "several returns: {:?}", many.rets);
            let poll = bin.function("k8s.io/fakedep.Poll").unwrap().entry;
            assert!(
                many.calls.iter().any(|&(_, t)| t == poll),
                "manyReturns calls Poll"
            );
            let leaf = bin.sites(bin.function("main.leaf").unwrap()).unwrap();
            assert_eq!(
                leaf.entry_site,
                EntrySite::FunctionStart { vaddr: leaf.entry }
            );
            assert_eq!(leaf.rets.len(), 1);

            // The three prologue shapes.
            let jump_after = |name: &str, pattern: &[u8]| {
                let f = bin.function(name).unwrap();
                let s = bin.sites(f).unwrap();
                let EntrySite::PrologueJump { vaddr } = s.entry_site else {
                    panic!("{name}: {:?}", s.entry_site)
                };
                let code = bin.code(f).unwrap();
                let at = (vaddr - f.entry) as usize;
                assert_eq!(&code[at - pattern.len()..at], pattern, "{name}");
                assert_eq!(code[at], 0x0f, "{name}: jbe rel32");
            };
            jump_after("main.manyReturns", &[0x49, 0x3b, 0x66, 0x10]);
            jump_after("main.mediumFrame", &[0x4d, 0x3b, 0x66, 0x10]);
            jump_after("main.bigFrame", &[0x4d, 0x3b, 0x66, 0x10]);

            // Assembly tail call: morestack_noctxt jumps to morestack.
            let noctxt = bin
                .sites(bin.function("runtime.morestack_noctxt").unwrap())
                .unwrap();
            assert_eq!(noctxt.tail_jumps.len(), 1, "{noctxt:?}");

            // A generic instantiation by its full name, also where the
            // Go 1.19 pclntab abbreviates it to main.Sum[...].
            let sum = if b.label == "1.19" {
                "main.Sum[go.shape.int_0]"
            } else {
                "main.Sum[go.shape.int]"
            };
            assert!(bin.function(sum).is_some(), "{sum} in {}", p.display());
        }
    }
}

/// goid member offset of runtime.g per DWARF (readelf, from binutils,
/// which `cargo xtask setup` installs), if the DWARF has one.
fn dwarf_goid(bin: &Path) -> Option<u32> {
    let out = Command::new("readelf")
        .arg("--debug-dump=info")
        .arg(bin)
        .output()
        .unwrap_or_else(|e| {
            panic!("running readelf ({e}): `cargo xtask setup` installs it (apt-get install -y binutils)")
        });
    assert!(
        out.status.success(),
        "readelf --debug-dump=info {}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut in_g = false;
    let mut member = false;
    for line in text.lines() {
        if line.contains("DW_TAG_structure_type") {
            in_g = false;
        } else if line.contains("DW_TAG_member") {
            member = true;
            continue;
        } else if line.contains("DW_TAG_") {
            member = false;
        }
        if line.contains("DW_AT_name") {
            let name = line.rsplit(": ").next().unwrap_or("").trim();
            if !member {
                in_g = name == "runtime.g";
            } else if !(in_g && name == "goid") {
                member = false;
            }
        } else if in_g && member && line.contains("DW_AT_data_member_location") {
            return line.rsplit(": ").next()?.trim().parse().ok();
        }
    }
    None
}

#[test]
fn goid_offset_from_runtime_code_matches_dwarf() {
    for b in all_builds() {
        let dwarf = dwarf_goid(&b.unstripped).unwrap_or_else(|| {
            panic!(
                "no runtime.g goid member in the DWARF of {}",
                b.unstripped.display()
            )
        });
        for p in [&b.unstripped, &b.stripped, &b.pie_stripped] {
            let g = open(p).goid_info().unwrap();
            assert_eq!(g.source, GoidSource::Decoded, "{}", p.display());
            assert_eq!(g.offset, 152, "Go {}", b.label);
            assert_eq!(g.offset, dwarf, "DWARF of {}", b.unstripped.display());
        }
        println!(
            "Go {}: goid offset 152 (decoded; DWARF says {dwarf})",
            b.label
        );
    }
}

/// Inline trees: which functions hold an inlined copy of which.
#[test]
fn inline_trees_name_the_callers() {
    for b in all_builds() {
        for path in [
            &b.unstripped,
            &b.stripped,
            &b.pie_unstripped,
            &b.pie_stripped,
        ] {
            let bin = open(path);
            let at = format!("Go {} {}", b.label, path.display());
            // Out of line (a func value refers to it) and inlined once.
            assert!(bin.function("main.tiny").is_some(), "{at}");
            assert_eq!(bin.inlined_into("main.tiny"), ["main.callsTiny"], "{at}");
            assert!(!bin.inlined_functions().contains(&"main.tiny"), "{at}");
            // Inlined everywhere: no code, name only in the trees.
            assert!(bin.function("main.onlyInlined").is_none(), "{at}");
            assert!(
                bin.inlined_functions().contains(&"main.onlyInlined"),
                "{at}"
            );
            assert_eq!(
                bin.inlined_into("main.onlyInlined"),
                ["main.callsOnlyInlined"],
                "{at}"
            );
            // Never inlined.
            assert!(bin.inlined_into("main.manyReturns").is_empty(), "{at}");
            assert!(bin.inlined_into("main.callsTiny").is_empty(), "{at}");
        }
    }
    // Release builds (moduledata.gofunc moves between Go versions): the
    // runtime's small helpers are inlined all over every Go program.
    let mut real: Vec<PathBuf> = kubectls().into_iter().map(|(_, p)| p).collect();
    real.push(debian_containerd().to_path_buf());
    for path in &real {
        let bin = open(path);
        let into = bin.inlined_into("sync.(*Mutex).Lock");
        assert!(
            into.len() > 50,
            "{} ({:?}): sync.(*Mutex).Lock inlined into {} functions",
            path.display(),
            bin.go_version(),
            into.len()
        );
    }
}

/// Upstream kubectl release builds 1.27..1.33 (stripped like release
/// kubelets, Go 1.22.5 → 1.24.2). They come with this machine image's
/// `kubectl` package of the Google Cloud CLI, beside the `kubectl`
/// dispatcher; no registry has them, so `cargo xtask setup` cannot install
/// them: without them these tests fail and say so.
fn kubectls() -> Vec<(u32, PathBuf)> {
    let dir = std::env::var_os("PODTRACE_KUBECTL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KUBECTL_DIR));
    let all: Vec<(u32, PathBuf)> = (27..=33)
        .map(|v| (v, dir.join(format!("kubectl.1.{v}"))))
        .collect();
    let missing: Vec<String> = all
        .iter()
        .filter(|(_, p)| !p.exists())
        .map(|(_, p)| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "upstream kubectl release builds missing: {}. They ship with the machine image's Google Cloud CLI `kubectl` package (not installable from a registry); set PODTRACE_KUBECTL_DIR if they live elsewhere",
        missing.join(", ")
    );
    all
}

/// Debian's containerd (`cargo xtask setup` installs the package).
fn debian_containerd() -> &'static Path {
    let p = Path::new("/usr/bin/containerd");
    assert!(
        p.exists(),
        "{} not installed: `cargo xtask setup` installs it (apt-get install -y containerd)",
        p.display()
    );
    p
}

#[test]
fn upstream_kubectl_release_builds() {
    for (minor, path) in kubectls() {
        let t = std::time::Instant::now();
        let bin = open(&path);
        let elapsed = t.elapsed();
        assert_eq!(bin.symbol_source(), SymbolSource::Pclntab);
        assert_eq!(bin.text_start().unwrap().1, TextStartSource::PcHeader);

        let want = run(go_cmd(GO19).arg("version").arg(&path));
        let version = bin.go_version().unwrap();
        assert_eq!(version, want.trim().rsplit(' ').next().unwrap());
        let (_, go_minor) = bin.go_release().unwrap();
        let info = bin.build_info().unwrap();
        assert_eq!(info.path, "k8s.io/kubernetes/cmd/kubectl");
        assert_eq!(info.main.as_ref().unwrap().path, "k8s.io/kubernetes");
        let apimachinery = bin.module_version("k8s.io/apimachinery").unwrap();
        assert!(!apimachinery.is_empty());
        assert!(bin
            .module_version("github.com/spf13/cobra")
            .unwrap()
            .starts_with('v'));

        let goid = bin.goid_info().unwrap();
        assert_eq!(goid.source, GoidSource::Decoded);
        let want_goid = if (23..=24).contains(&go_minor) {
            160
        } else {
            152
        };
        assert_eq!(goid.offset, want_goid, "{}", path.display());

        let mut names = vec![
            "runtime.main",
            "k8s.io/apimachinery/pkg/util/wait.JitterUntil",
        ];
        // Older kubectl releases do not link PollUntilContextTimeout.
        if minor >= 31 {
            names.push("k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout");
        }
        for name in names {
            let f = bin
                .function(name)
                .unwrap_or_else(|| panic!("{name} in {}", path.display()));
            let s = bin.sites(f).unwrap();
            let EntrySite::PrologueJump { vaddr } = s.entry_site else {
                panic!("{name}: no prologue");
            };
            // Read the file directly: the stack check ends right at the JBE.
            let head = read_at(
                &path,
                bin.file_offset(f.entry).unwrap(),
                (vaddr - f.entry) as usize + 2,
            );
            let at = (vaddr - f.entry) as usize;
            assert!(
                head[at - 4..at] == [0x49, 0x3b, 0x66, 0x10]
                    || head[at - 4..at] == [0x4d, 0x3b, 0x66, 0x10],
                "{name}: {head:02x?}"
            );
            assert!(
                head[at] == 0x76 || head[at..at + 2] == [0x0f, 0x86],
                "{name}: jbe"
            );
            assert!(!s.rets.is_empty(), "{name}");
            for r in &s.rets {
                assert_eq!(
                    read_at(&path, bin.file_offset(*r).unwrap(), 1),
                    [0xc3],
                    "{name} RET"
                );
            }
            println!(
                "kubectl.1.{minor} ({version}) {name}: entry {:#x}, {} RETs, {} calls",
                f.entry,
                s.rets.len(),
                s.calls.len()
            );
        }

        // Sampled over the whole binary: every function that starts with
        // the small-frame check gets its JBE at entry+4, and every RET found
        // is a C3/C2 byte.
        let (mut sampled, mut with_check) = (0, 0);
        for f in bin.functions().iter().step_by(97) {
            let s = bin.sites(f).unwrap();
            let code = bin.code(f).unwrap();
            if code.starts_with(&[0x49, 0x3b, 0x66, 0x10, 0x76])
                || code.starts_with(&[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86])
            {
                assert_eq!(
                    s.entry_site,
                    EntrySite::PrologueJump { vaddr: f.entry + 4 },
                    "{}",
                    f.name
                );
            }
            // Any stack check near the start (the r12 forms too) is found.
            let head = &code[..code.len().min(24)];
            let check = |w: &[u8]| w == [0x49, 0x3b, 0x66, 0x10] || w == [0x4d, 0x3b, 0x66, 0x10];
            if head.windows(4).any(check) {
                assert!(
                    matches!(s.entry_site, EntrySite::PrologueJump { .. }),
                    "{}",
                    f.name
                );
                with_check += 1;
            }
            for r in &s.rets {
                assert!(
                    matches!(code[(r - f.entry) as usize], 0xc3 | 0xc2),
                    "{}",
                    f.name
                );
            }
            sampled += 1;
        }
        println!(
            "kubectl.1.{minor}: {version}, {} functions, apimachinery {apimachinery}, \
             goid {} ({:?}), open() {:.0?}, {sampled} functions decoded \
             ({with_check} with a stack check)",
            bin.functions().len(),
            goid.offset,
            goid.source,
            elapsed
        );
        assert!(bin.functions().len() > 60_000);
    }
}

/// Debian's containerd exports every Go function in `.dynsym`; its `.text`
/// starts 0x100 before runtime.text, the trap for readers that take the
/// text base from the section. The pclntab (read here by hiding the section
/// headers) must give the same entries as the exported symbols.
#[test]
fn debian_containerd_dynsym_agrees_with_pclntab() {
    let path = debian_containerd();
    let data = std::fs::read(path).unwrap();
    let dynsym = GoBinary::from_bytes(data.clone(), path.into()).unwrap();
    assert_eq!(dynsym.symbol_source(), SymbolSource::Dynsym);
    let pcln = GoBinary::from_bytes(without_section_headers(&data), path.into()).unwrap();
    assert_eq!(pcln.symbol_source(), SymbolSource::Pclntab);
    let (text, how) = pcln.text_start().unwrap();
    assert_eq!(how, TextStartSource::PcHeader);
    // The first Go function sits at runtime.text, past the C start-up code
    // at the start of .text.
    assert_eq!(pcln.functions()[0].entry, text);
    let text_section = {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*data).unwrap();
        file.section_by_name(".text").unwrap().address()
    };
    assert!(text > text_section, "{text:#x} vs .text {text_section:#x}");

    // Names exported in .dynsym (abbreviated as in the Go 1.19 pclntab):
    // each must sit at the same entry as in the pclntab. The pclntab also
    // has local assembly labels that are not exported; .dynsym also has C.
    let exported = name_entry_set(&dynsym);
    let names: BTreeSet<&str> = exported.iter().map(|(n, _)| n.as_str()).collect();
    let from_pclntab = name_entry_set(&pcln);
    let mut matched = 0;
    for (name, entry) in &from_pclntab {
        if names.contains(name.as_str()) {
            assert!(
                exported.contains(&(name.clone(), *entry)),
                "{name} at {entry:#x}"
            );
            matched += 1;
        }
    }
    assert!(matched > 45_000, "{matched}");
    assert_eq!(dynsym.go_version(), pcln.go_version());
    assert_eq!(dynsym.goid_info(), pcln.goid_info());
    println!(
        "containerd ({:?}): {} .dynsym functions, {} pclntab functions, {matched} agree; \
         text start {text:#x} from {how:?} (.text at {text_section:#x}); \
         main package {:?} (GOPATH build: no module versions)",
        dynsym.go_version(),
        dynsym.functions().len(),
        pcln.functions().len(),
        dynsym.build_info().map(|b| &b.path),
    );
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = &builds().dir;
    let not_elf = dir.join("not-elf");
    std::fs::write(&not_elf, b"#!/bin/sh\necho hi\n").unwrap();
    let e = GoBinary::open(&not_elf).unwrap_err();
    assert!(matches!(e, ResolveError::NotElf { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{}: not an ELF file", not_elf.display())
    );

    let missing = dir.join("no-such-file");
    let e = GoBinary::open(&missing).unwrap_err();
    assert!(
        matches!(e, ResolveError::Io { .. })
            && e.to_string().starts_with(&*missing.to_string_lossy())
    );

    let e = GoBinary::open(Path::new("/bin/true")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/bin/true: not a Go binary (no .go.buildinfo and no pclntab found)"
    );

    for b in all_builds() {
        let data = std::fs::read(&b.stripped).unwrap();
        let pcln = pclntab_range(&b.stripped);
        let path = PathBuf::from("/x/cut");

        // Cut inside the pclntab: section headers (at the end) are gone too.
        let cut = pcln.start + (pcln.end - pcln.start) / 2;
        let e = GoBinary::from_bytes(data[..cut].to_vec(), path.clone()).unwrap_err();
        assert!(matches!(e, ResolveError::PclntabTruncated { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("/x/cut: pclntab truncated at offset 0x"),
            "{e}"
        );

        // Garbage in the function table (at pcHeader.pclnOffset).
        let mut bad = data.clone();
        let word = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
        let functab = pcln.start + word(pcln.start + 64);
        for byte in &mut bad[functab + 64..functab + 4160] {
            *byte = 0x5a;
        }
        let e = GoBinary::from_bytes(bad, path.clone()).unwrap_err();
        assert!(matches!(e, ResolveError::BadPclntab { .. }), "{e}");
        println!("Go {}: garbage → {e}", b.label);

        // Unknown magic.
        let mut bad = data.clone();
        bad[pcln.start..pcln.start + 4].copy_from_slice(&0xffff_fffbu32.to_le_bytes());
        let e = GoBinary::from_bytes(bad, path.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/cut: unsupported pclntab version (magic 0xfffffffb)"
        );
        println!(
            "Go {}: cut → {}",
            b.label,
            GoBinary::from_bytes(data[..cut].to_vec(), path).unwrap_err()
        );
    }
}

/// Real stripped builds whose pclntab header or table is patched to claim
/// more than the section holds: each is refused, naming the file and the
/// field, before anything is sized by the claim.
#[test]
fn pclntab_claims_beyond_the_section_are_refused() {
    for b in all_builds() {
        let data = std::fs::read(&b.stripped).unwrap();
        let pcln = pclntab_range(&b.stripped);
        let size = pcln.end - pcln.start;
        let path = PathBuf::from("/x/crafted");
        let word = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
        let u32_at = |d: &[u8], o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
        let err = |bad: Vec<u8>| {
            let e = GoBinary::from_bytes(bad, path.clone()).unwrap_err();
            assert!(matches!(e, ResolveError::BadPclntab { .. }), "{e}");
            let prefix = format!(
                "/x/crafted: malformed pclntab at offset {:#x}: ",
                pcln.start
            );
            let msg = e.to_string();
            assert!(msg.starts_with(&prefix), "{msg}");
            msg[prefix.len()..].to_string()
        };
        let pcln_off = word(&data, pcln.start + 64) as usize;
        // The functab: nfunc (entry, funcoff) u32 pairs and an end entry.
        let room = ((size - pcln_off) / 4 - 1) / 2;

        for claim in [u64::from(u32::MAX), u64::MAX, room as u64 + 1] {
            let mut bad = data.clone();
            bad[pcln.start + 8..pcln.start + 16].copy_from_slice(&claim.to_le_bytes());
            assert_eq!(
                err(bad),
                format!(
                    "pclntab claims {claim} functions (pcHeader.nfunc) but holds room for {room}"
                ),
                "Go {}",
                b.label
            );
        }

        // pclnOffset (the last sub-table) past the end of the section.
        let mut bad = data.clone();
        let huge = 1u64 << 40;
        bad[pcln.start + 64..pcln.start + 72].copy_from_slice(&huge.to_le_bytes());
        assert_eq!(
            err(bad),
            format!("pcHeader.pclnOffset {huge:#x} is past the end of the {size:#x}-byte pclntab"),
            "Go {}",
            b.label
        );

        // Every function named by the longest name: more name bytes than
        // the name table holds (decoded, n copies of it).
        let nfunc = word(&data, pcln.start + 8) as usize;
        let funcname = pcln.start + word(&data, pcln.start + 32) as usize;
        let cu = pcln.start + word(&data, pcln.start + 40) as usize;
        let names = &data[funcname..cu];
        let func_at = |i: usize| {
            pcln.start + pcln_off + u32_at(&data, pcln.start + pcln_off + (2 * i + 1) * 4) as usize
        };
        let longest = (0..nfunc)
            .map(|i| u32_at(&data, func_at(i) + 4))
            .max_by_key(|&off| names[off as usize..].iter().position(|&c| c == 0))
            .unwrap();
        let mut bad = data.clone();
        for i in 0..nfunc {
            let at = func_at(i) + 4;
            bad[at..at + 4].copy_from_slice(&longest.to_le_bytes());
        }
        let msg = err(bad);
        assert!(
            msg.contains(&format!(
                "more than the {}-byte name table holds (names overlap)",
                cu - funcname
            )),
            "Go {}: {msg}",
            b.label
        );
        println!("Go {}: every function named alike → {msg}", b.label);
    }
}

/// File range of the pclntab section (`.gopclntab`, or
/// `.data.rel.ro.gopclntab` in Go 1.19 PIE builds).
fn pclntab_range(path: &Path) -> std::ops::Range<usize> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let s = file
        .sections()
        .find(|s| s.name().is_ok_and(|n| n.ends_with(".gopclntab")))
        .unwrap();
    let (off, len) = s.file_range().unwrap();
    off as usize..(off + len) as usize
}

/// The address of a symbol in an unstripped build, read with `object`.
fn symbol_address(path: &Path, name: &str) -> u64 {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file.symbols().find(|s| s.name() == Ok(name)).unwrap();
    sym.address()
}

/// A copy of an ELF file without section headers (e_shoff, e_shnum,
/// e_shstrndx zeroed), as some packagers ship them.
fn without_section_headers(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[0x28..0x30].fill(0);
    d[0x3c..0x40].fill(0);
    d
}

#[test]
fn no_section_headers_found_by_scanning() {
    for b in all_builds() {
        for p in [&b.stripped, &b.pie_stripped] {
            let data = std::fs::read(p).unwrap();
            let with = open(p);
            let without = GoBinary::from_bytes(without_section_headers(&data), p.clone()).unwrap();
            assert_eq!(with.functions(), without.functions(), "{}", p.display());
            assert_eq!(with.build_info(), without.build_info());
            assert_eq!(with.text_start(), without.text_start());
            assert_eq!(with.goid_info(), without.goid_info());
            assert!(without.go_version().is_some());
        }
    }
}

/// xorshift64*: deterministic, no crate needed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FLIP_ROUNDS: usize = 250;

/// Truncations and random byte flips of real binaries: errors, no panics,
/// and whatever opens still answers every query without panicking.
#[test]
fn fuzz_truncations_and_flips_never_panic() {
    let exercise = |bin: &GoBinary| {
        for f in bin.functions().iter().step_by(53) {
            let _ = bin.sites(f);
            let _ = bin.file_offset(f.entry);
        }
        let _ = (
            bin.goid_offset(),
            bin.go_version(),
            bin.module_version("k8s.io/fakedep"),
            bin.inlined_functions().len(),
            bin.inlined_into("main.tiny").len(),
        );
    };
    for b in all_builds() {
        for p in [&b.stripped, &b.pie_stripped] {
            let data = std::fs::read(p).unwrap();
            let pcln = pclntab_range(p);
            let path = PathBuf::from("/fuzz");

            // Every 997 bytes through the pclntab, every 8 through its last
            // 512 bytes, and every 16 KiB through the whole file.
            let mut cuts: Vec<usize> = (pcln.start..pcln.end).step_by(997).collect();
            cuts.extend((pcln.end - 512..pcln.end).step_by(8));
            cuts.extend((0..data.len()).step_by(16384));
            let full = open(p);
            let mut truncated = 0;
            for &cut in &cuts {
                let r = GoBinary::from_bytes(data[..cut].to_vec(), path.clone());
                match &r {
                    // Whatever still opens must tell the truth.
                    Ok(bin) => {
                        assert_eq!(bin.functions(), full.functions(), "cut at {cut:#x}");
                        exercise(bin);
                    }
                    Err(ResolveError::PclntabTruncated { .. }) => truncated += 1,
                    Err(_) => {}
                }
                // Past the header and before the last _func: must say so.
                // (Go 1.27 keeps its text start in runtime.moduledata, after
                // the pclntab: once the table is whole, that is what's missing.)
                if cut >= pcln.start + 80 && cut < pcln.end - 256 {
                    let no_text = |e: &ResolveError| e.to_string().contains("no text start");
                    assert!(
                        matches!(&r, Err(ResolveError::PclntabTruncated { .. }))
                            || (b.label == "1.27" && r.as_ref().is_err_and(no_text)),
                        "cut at {cut:#x} in pclntab {pcln:x?}: {r:?}"
                    );
                }
            }

            // Random flips, mostly in the pclntab, some anywhere.
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ data.len() as u64);
            let (mut ok, mut err) = (0, 0);
            for round in 0..FLIP_ROUNDS {
                let mut d = data.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = if round % 4 == 0 {
                        rng.below(d.len())
                    } else {
                        pcln.start + rng.below(pcln.end - pcln.start)
                    };
                    d[at] ^= 1 << rng.below(8);
                }
                match GoBinary::from_bytes(d, path.clone()) {
                    Ok(bin) => {
                        exercise(&bin);
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
            println!(
                "{}: {} cuts ({truncated} truncated), {FLIP_ROUNDS} flip rounds: {ok} opened, {err} errors",
                p.display(),
                cuts.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Real upstream kubelets, built from the k8s.io/kubernetes module with Go
// 1.26.8 like a release (-trimpath, -s -w, CGO_ENABLED=0): the catalogue must
// resolve every probe with the variant of that version, for the reason the
// code gives (see docs/probe-points.md). `cargo xtask setup` builds them.

/// A real kubelet: (label, path) from `env` or its default path; a missing
/// binary fails the test with what to do.
fn real_kubelet(env: &str, default: &str) -> (String, PathBuf) {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "real kubelet {} is missing (set {env} or run `cargo xtask setup`, which builds it \
         from the k8s.io/kubernetes module)",
        path.display()
    );
    (path.display().to_string(), path)
}

fn kubelet_134() -> (String, PathBuf) {
    real_kubelet(
        "PODTRACE_KUBELET_134",
        "/root/.podtrace/bin/kubelet-v1.34.4",
    )
}

fn kubelet_136() -> (String, PathBuf) {
    real_kubelet(
        "PODTRACE_KUBELET_136",
        "/root/.podtrace/bin/kubelet-v1.36.3",
    )
}

fn kubelet_catalogue(text: &str) -> podtrace::catalogue::BinaryCatalogue {
    podtrace::catalogue::Catalogue::parse("kubelet.toml", text).expect("kubelet catalogue")
}

const KUBELET_TOML: &str = include_str!("../catalogue/kubelet.toml");

/// The catalogue without its module conditions: what an in-tree build,
/// whose k8s.io/kubernetes version reads "(devel)", gets.
fn kubelet_catalogue_without_modules() -> podtrace::catalogue::BinaryCatalogue {
    let text: Vec<&str> = KUBELET_TOML
        .lines()
        .filter(|l| !l.trim_start().starts_with("{ module ="))
        .collect();
    kubelet_catalogue(&text.join("\n"))
}

const K: &str = "k8s.io/kubernetes/pkg/kubelet";

/// (probe, status, 1-based variant, symbol) expected in a real kubelet.
type Want = (&'static str, &'static str, usize, String);

/// The operation executor's mount closure (probe `volume_setup`).
const MOUNT_CLOSURE: &str =
    "k8s.io/kubernetes/pkg/volume/util/operationexecutor.(*operationGenerator).GenerateMountVolumeFunc.func1";

fn want_common() -> Vec<Want> {
    vec![
        ("mount_wait", "ok", 1, format!("{K}/volumemanager.(*volumeManager).WaitForAttachAndMount")),
        ("poll_helper", "ok", 1, "k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout".into()),
        (
            "poll_cond",
            "ok",
            1,
            format!(
                "{K}/volumemanager.(*volumeManager).WaitForAttachAndMount.(*volumeManager).verifyVolumesMountedFunc.func1"
            ),
        ),
        ("volume_mounted", "ok", 1, format!("{K}/volumemanager/cache.(*actualStateOfWorld).MarkVolumeAsMounted")),
        ("reconcile", "ok", 1, format!("{K}/volumemanager/reconciler.(*reconciler).reconcile")),
        ("mount_volumes", "ok", 1, format!("{K}/volumemanager/reconciler.(*reconciler).mountOrAttachVolumes")),
        (
            "populate",
            "ok",
            1,
            format!("{K}/volumemanager/populator.(*desiredStateOfWorldPopulator).findAndAddNewPods"),
        ),
        ("relist", "ok", 1, format!("{K}/pleg.(*GenericPLEG).Relist")),
        ("runtime_sync", "ok", 1, format!("{K}/kuberuntime.(*kubeGenericRuntimeManager).SyncPod")),
        ("create_sandbox", "ok", 1, format!("{K}/kuberuntime.(*kubeGenericRuntimeManager).createPodSandbox")),
        ("start_container", "ok", 1, format!("{K}/kuberuntime.(*kubeGenericRuntimeManager).startContainer")),
    ]
}

fn check_resolutions(label: &str, res: &[podtrace::catalogue::Resolution], want: &[Want]) {
    for (probe, status, variant, symbol) in want {
        let r = res
            .iter()
            .find(|r| r.probe == *probe)
            .unwrap_or_else(|| panic!("{label}: no probe {probe}"));
        let st = serde_json::to_value(r.status).expect("status");
        assert_eq!(st, *status, "{label}: {probe}: {}", r.detail);
        if *status != "ok" {
            continue;
        }
        assert_eq!(r.targets.len(), 1, "{label}: {probe}: {:#?}", r.targets);
        let t = &r.targets[0];
        assert_eq!(t.symbol, *symbol, "{label}: {probe}");
        assert_eq!(
            t.variant + 1,
            *variant,
            "{label}: {probe}: {}",
            t.matched_by
        );
        assert!(!t.ret_offsets.is_empty(), "{label}: {probe}: no RET");
        assert!(
            t.inlined_into.is_empty(),
            "{label}: {probe}: also inlined into {:?}",
            t.inlined_into
        );
    }
    assert_eq!(
        res.len(),
        want.len(),
        "{label}: a probe without expectation"
    );
}

/// Go version, k8s.io/kubernetes version and goid offset of a real kubelet.
fn check_versions(label: &str, bin: &GoBinary, k8s: &str) {
    assert_eq!(bin.go_version(), Some("go1.26.8"), "{label}");
    assert_eq!(
        bin.module_version("k8s.io/kubernetes"),
        Some(k8s),
        "{label}"
    );
    assert_eq!(
        bin.symbol_source(),
        SymbolSource::Pclntab,
        "{label}: stripped"
    );
    // Go 1.26 leaves pcHeader.textStart 0: the base comes from moduledata.
    assert_eq!(
        bin.text_start().unwrap().1,
        TextStartSource::Moduledata,
        "{label}"
    );
    let goid = bin.goid_info().expect("goid offset");
    assert_eq!(
        (goid.offset, goid.source),
        (152, GoidSource::Decoded),
        "{label}: goid read from runtime.goroutineheader"
    );
}

/// Resolves a real kubelet with the kubelet catalogue, with and without
/// module versions: both must give `want`, and the sync probe's error
/// capture must read `error_reg`, where SyncPod's `results` leave the
/// error's type word.
fn check_both_catalogues(
    label: &str,
    bin: &GoBinary,
    want: &[Want],
    error_reg: &str,
    results: &str,
) {
    for (how, cat) in [
        ("with module versions", kubelet_catalogue(KUBELET_TOML)),
        ("by code alone", kubelet_catalogue_without_modules()),
    ] {
        let res = cat.resolve(bin);
        check_resolutions(&format!("{label} {how}"), &res, want);
        let sync = res.iter().find(|r| r.probe == "sync").expect("sync");
        let error = sync
            .exit_captures
            .iter()
            .find(|c| c.name == "error")
            .expect("error");
        assert_eq!(
            error.reg, error_reg,
            "{label} {how}: {results}: the error's type word is {error_reg}"
        );
    }
}

#[test]
fn real_kubelet_1_34_probes() {
    let (label, path) = kubelet_134();
    let bin = open(&path);
    check_versions(&label, &bin, "v1.34.4");
    let mut want = want_common();
    want.push(("sync", "ok", 2, format!("{K}.(*Kubelet).SyncPod")));
    // 1.32-1.34 check the volumes in the condition closure itself.
    want.push(("poll_check", "mismatch", 0, String::new()));
    want.push(("relist_pod", "missing", 0, String::new()));
    // OuterVolumeSpecName (a string) and Pod @56: the variant for <= 1.34.
    want.push(("volume_setup", "ok", 2, MOUNT_CLOSURE.into()));
    check_both_catalogues(&label, &bin, &want, "RBX", "(bool, error)");
    let res = kubelet_catalogue(KUBELET_TOML).resolve(&bin);
    let check = res
        .iter()
        .find(|r| r.probe == "poll_check")
        .expect("poll_check");
    assert!(
        check.detail.contains(
            "no volumemanager.(*volumeManager).*verifyVolumesMountedFunc.func* calls volumemanager.(*volumeManager).getUnmountedVolumes"
        ),
        "{}",
        check.detail
    );
    let sync = res.iter().find(|r| r.probe == "sync").expect("sync");
    assert_eq!(sync.targets[0].matched_by, "k8s.io/kubernetes v1.34.4");
}

#[test]
fn real_kubelet_1_36_probes() {
    let (label, path) = kubelet_136();
    let bin = open(&path);
    check_versions(&label, &bin, "v1.36.3");
    let mut want = want_common();
    want.push(("sync", "ok", 1, format!("{K}.(*Kubelet).SyncPod")));
    want.push((
        "poll_check",
        "ok",
        1,
        format!("{K}/volumemanager.(*volumeManager).getUnmountedVolumes"),
    ));
    // relistPod(podUID): 1.36's variant (the first is 1.37's (ctx, podUID)).
    want.push((
        "relist_pod",
        "ok",
        2,
        format!("{K}/pleg.(*GenericPLEG).relistPod"),
    ));
    // OuterVolumeSpecNames (a slice) and Pod @64: the 1.35+ variant.
    want.push(("volume_setup", "ok", 1, MOUNT_CLOSURE.into()));
    check_both_catalogues(&label, &bin, &want, "RCX", "(bool, func(), error)");
    // Without module versions the postSync closure says "1.36 shape".
    let res = kubelet_catalogue_without_modules().resolve(&bin);
    let sync = res.iter().find(|r| r.probe == "sync").expect("sync");
    assert_eq!(
        sync.targets[0].matched_by,
        "kubelet.(*Kubelet).SyncPod.func2 calls kubelet.(*Kubelet).RequestPodRelist"
    );
    let f = bin
        .function(&format!("{K}.(*Kubelet).SyncPod"))
        .expect("SyncPod");
    assert_eq!(bin.result_regs(f).expect("decodes"), Some(4));
}

/// The registers the catalogue reads, checked against the real code: the
/// arguments the call sites set and the stack the callee reads.
#[test]
fn real_kubelet_capture_registers_match_the_code() {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
    let decode = |bin: &GoBinary, name: &str| -> (u64, Vec<Instruction>) {
        let f = bin.function(name).unwrap_or_else(|| panic!("no {name}"));
        let code = bin.code(f).expect("code");
        (
            f.entry,
            Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE)
                .into_iter()
                .collect(),
        )
    };
    for (label, path) in [kubelet_134(), kubelet_136()] {
        let bin = open(&path);
        // WaitForAttachAndMount calls PollUntilContextTimeout with the
        // interval (300 ms) in RCX, the timeout (2m3s) in RDI: poll_helper's
        // interval_ns capture is RCX.
        let poll = bin
            .function("k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout")
            .expect("PollUntilContextTimeout")
            .entry;
        let (_, wfam) = decode(
            &bin,
            &format!("{K}/volumemanager.(*volumeManager).WaitForAttachAndMount"),
        );
        let call = wfam
            .iter()
            .position(|i| i.mnemonic() == Mnemonic::Call && i.near_branch_target() == poll)
            .unwrap_or_else(|| panic!("{label}: no call to PollUntilContextTimeout"));
        let imm_to = |reg: Register| {
            wfam[..call].iter().rev().take(12).find_map(|i| {
                (i.op0_kind() == OpKind::Register
                    && i.op0_register().full_register() == reg
                    && matches!(
                        i.op1_kind(),
                        OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate32to64
                    ))
                .then(|| i.immediate(1))
            })
        };
        assert_eq!(
            imm_to(Register::RCX),
            Some(300_000_000),
            "{label}: interval in RCX"
        );
        assert_eq!(
            imm_to(Register::RDI),
            Some(123_000_000_000),
            "{label}: timeout in RDI"
        );

        // MarkVolumeAsMounted reads MarkVolumeOpts from the caller's frame:
        // after `push rbp; sub rsp, N` entry SP+8 is rsp+N+16.
        let (_, mark) = decode(
            &bin,
            &format!("{K}/volumemanager/cache.(*actualStateOfWorld).MarkVolumeAsMounted"),
        );
        let frame = mark
            .iter()
            .find(|i| i.mnemonic() == Mnemonic::Sub && i.op0_register() == Register::RSP)
            .map(|i| i.immediate(1))
            .expect("frame size");
        assert!(
            mark.iter().any(|i| i.mnemonic() == Mnemonic::Lea
                && i.memory_base() == Register::RSP
                && i.memory_displacement64() == frame + 16),
            "{label}: MarkVolumeOpts not read from entry SP+8"
        );

        // The mount closure (volume_setup): its context holds
        // &volumeToMount at RDX+16 (loaded first thing), and it reads the
        // pod's UID through volumeToMount.Pod at the offset the variant
        // chosen for this version says (1.34: 56, 1.36: 64).
        let res = kubelet_catalogue(KUBELET_TOML).resolve(&bin);
        let setup = res
            .iter()
            .find(|r| r.probe == "volume_setup")
            .expect("volume_setup");
        let uid = setup
            .entry_captures
            .iter()
            .find(|c| c.name == "pod_uid")
            .expect("pod_uid capture");
        assert_eq!(
            (uid.reg.as_str(), uid.path[0], uid.path[2]),
            ("RDX", 16, 96),
            "{label}"
        );
        let pod_at = uid.path[1];
        let (_, closure) = decode(&bin, MOUNT_CLOSURE);
        assert!(
            closure
                .iter()
                .take(12)
                .any(|i| i.mnemonic() == Mnemonic::Mov
                    && i.op1_kind() == OpKind::Memory
                    && i.memory_base() == Register::RDX
                    && i.memory_displacement64() == 16),
            "{label}: the closure does not load its context's +16 first"
        );
        let reads_uid_via = |off: u64| {
            closure.windows(2).any(|w| {
                w[0].mnemonic() == Mnemonic::Mov
                    && w[0].op1_kind() == OpKind::Memory
                    && w[0].memory_displacement64() == off
                    && w[0].op0_kind() == OpKind::Register
                    && w[1].mnemonic() == Mnemonic::Mov
                    && w[1].op1_kind() == OpKind::Memory
                    && w[1].memory_base() == w[0].op0_register()
                    && w[1].memory_displacement64() == 96
            })
        };
        assert!(
            reads_uid_via(u64::from(pod_at)),
            "{label}: no pod.UID read through volumeToMount+{pod_at}"
        );
    }
    // 1.36: SyncPod's RETs load isTerminal into AL, postSync into RBX and
    // the error into RCX (type) / RDI (data) after the deferred call.
    let bin = open(&kubelet_136().1);
    let (_, sync) = decode(&bin, &format!("{K}.(*Kubelet).SyncPod"));
    let rets: Vec<usize> = (0..sync.len())
        .filter(|&i| sync[i].mnemonic() == Mnemonic::Ret)
        .collect();
    assert!(!rets.is_empty());
    let loaded_before_ret = |at: usize, reg: Register| {
        sync[at.saturating_sub(8)..at]
            .iter()
            .any(|i| i.op0_kind() == OpKind::Register && i.op0_register().full_register() == reg)
    };
    let full = rets
        .iter()
        .filter(|&&r| {
            [Register::RAX, Register::RBX, Register::RCX, Register::RDI]
                .iter()
                .all(|&g| loaded_before_ret(r, g))
        })
        .count();
    assert!(
        full * 2 > rets.len(),
        "most RETs reload all four result registers ({full} of {})",
        rets.len()
    );
}

/// Each per-pod probe that reads a `*v1.Pod` argument reads the register
/// the function itself treats as the pod: the one it spills at entry and
/// reloads into RBX to pass to `klog.KObj(pod)`, with RAX the `*v1.Pod`
/// type — the same type Kubelet.SyncPod passes with its pod (RSI).
#[test]
fn real_kubelet_pod_arguments_match_the_code() {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
    let reg_of = |name: &str| match name {
        "RDI" => Register::RDI,
        "RSI" => Register::RSI,
        "R10" => Register::R10,
        other => panic!("register {other} not handled here"),
    };
    for (label, path) in [kubelet_134(), kubelet_136()] {
        let bin = open(&path);
        let kobj = bin
            .function("k8s.io/klog/v2.KObj")
            .unwrap_or_else(|| panic!("{label}: no klog.KObj"))
            .entry;
        let res = kubelet_catalogue(KUBELET_TOML).resolve(&bin);
        let mut types = BTreeSet::new();
        for probe in ["sync", "runtime_sync", "create_sandbox", "start_container"] {
            let r = res.iter().find(|r| r.probe == probe).expect("probe");
            let cap = r
                .entry_captures
                .iter()
                .find(|c| c.name == "pod_uid")
                .unwrap_or_else(|| panic!("{label}: {probe} reads no pod_uid"));
            assert_eq!(cap.path, vec![96], "{label}: {probe}: pod.UID at +96");
            let reg = reg_of(&cap.reg);
            let f = bin.function(&r.targets[0].symbol).expect("function");
            let code = bin.code(f).expect("code");
            let ins: Vec<Instruction> = Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE)
                .into_iter()
                .collect();
            // Go spills the register arguments in the first block.
            let slot = ins
                .iter()
                .take(40)
                .find(|i| {
                    i.mnemonic() == Mnemonic::Mov
                        && i.op0_kind() == OpKind::Memory
                        && i.memory_base() == Register::RSP
                        && i.op1_kind() == OpKind::Register
                        && i.op1_register() == reg
                })
                .map(|i| i.memory_displacement64())
                .unwrap_or_else(|| panic!("{label}: {probe}: {reg:?} not spilled at entry"));
            let calls: Vec<usize> = (0..ins.len())
                .filter(|&i| {
                    ins[i].mnemonic() == Mnemonic::Call && ins[i].near_branch_target() == kobj
                })
                .collect();
            let pod_type = calls.iter().find_map(|&c| {
                let before = &ins[c.saturating_sub(4)..c];
                let rbx_is_pod = before.iter().any(|i| {
                    i.mnemonic() == Mnemonic::Mov
                        && i.op0_kind() == OpKind::Register
                        && i.op0_register() == Register::RBX
                        && i.op1_kind() == OpKind::Memory
                        && i.memory_base() == Register::RSP
                        && i.memory_displacement64() == slot
                });
                let rax_type = before.iter().find_map(|i| {
                    (i.mnemonic() == Mnemonic::Lea
                        && i.op0_register() == Register::RAX
                        && i.is_ip_rel_memory_operand())
                    .then(|| i.ip_rel_memory_address())
                });
                rax_type.filter(|_| rbx_is_pod)
            });
            let t = pod_type.unwrap_or_else(|| {
                panic!(
                    "{label}: {probe}: no klog.KObj call with the {reg:?} spill slot (rsp+{slot:#x}) in RBX ({} KObj calls)",
                    calls.len()
                )
            });
            types.insert(t);
        }
        assert_eq!(
            types.len(),
            1,
            "{label}: the pods passed to KObj have one type: {types:x?}"
        );
    }
}
