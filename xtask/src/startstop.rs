//! `cargo xtask bench`, start and stop: how long `podtrace record` takes
//! from its start to "attached" and from SIGINT to its exit, on the real
//! kubelet v1.36.3 and containerd 2.2.9 set-up builds, with uprobe_multi
//! links and with per-site links (what every kernel before 6.10 gets, and
//! what podtrace did before), against bpftrace attaching uprobes at the
//! same points of the same binaries. Then discovery while pods start with
//! 30 unrelated Go programs running: drops and how long events wait.
//!
//! bpftrace 0.17 (Debian 12's) attaches by symbol only: it refuses
//! `func+N` and raw addresses ("compiled without (k|u)probe offset
//! support") and finds no name in a stripped Go binary. So it gets copies
//! of the two binaries with one symbol added per probe site
//! (`podtrace_site_N`, size 1, at the site's address: bpftrace also refuses
//! a symbol of size 0): the code is byte for byte the same, the points are
//! the same file offsets, and it attaches one perf-event uprobe per point,
//! as bpftrace did before uprobe_multi (0.20).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{podtrace_bin, root, sh, step, upstream};

const REPEATS: usize = 3;

/// A probe site: its file offset and virtual address.
#[derive(Debug, Clone, Copy)]
struct Site {
    offset: u64,
    vaddr: u64,
}

/// The sites `podtrace probes` lists for each binary (what `record`
/// attaches).
fn sites(kubelet: &Path, containerd: &Path) -> Result<Vec<Vec<Site>>> {
    let out = Command::new(podtrace_bin())
        .args(["probes", "--format", "json", "--kubelet"])
        .arg(kubelet)
        .arg("--containerd")
        .arg(containerd)
        .output()
        .context("running podtrace probes")?;
    if !out.status.success() {
        bail!(
            "podtrace probes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("podtrace probes JSON")?;
    let n = |v: &Value| v.as_u64().context("not a number");
    let mut all = Vec::new();
    for b in v["binaries"].as_array().context("binaries")? {
        let mut sites = Vec::new();
        for p in b["probes"].as_array().context("probes")? {
            for t in p["targets"].as_array().into_iter().flatten() {
                sites.push(Site {
                    offset: n(&t["entry_site_offset"])?,
                    vaddr: n(&t["entry_site_vaddr"])?,
                });
                let offs = t["ret_offsets"].as_array().context("ret_offsets")?;
                let vas = t["ret_vaddrs"].as_array().context("ret_vaddrs")?;
                for (o, va) in offs.iter().zip(vas) {
                    sites.push(Site {
                        offset: n(o)?,
                        vaddr: n(va)?,
                    });
                }
            }
        }
        all.push(sites);
    }
    Ok(all)
}

fn u16_at(d: &[u8], o: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        d.get(o..o + 2).context("ELF cut short")?.try_into()?,
    ))
}
fn u32_at(d: &[u8], o: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        d.get(o..o + 4).context("ELF cut short")?.try_into()?,
    ))
}
fn u64_at(d: &[u8], o: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(
        d.get(o..o + 8).context("ELF cut short")?.try_into()?,
    ))
}

/// An ELF64 section header: (name, addr, offset, size, link).
type Section = (String, u64, u64, u64, u32);

/// ELF64 section headers.
fn sections(d: &[u8]) -> Result<Vec<Section>> {
    let shoff = u64_at(d, 0x28)? as usize;
    let (entsize, num, strndx) = (
        u16_at(d, 0x3a)? as usize,
        u16_at(d, 0x3c)? as usize,
        u16_at(d, 0x3e)? as usize,
    );
    let raw: Vec<(u32, u64, u64, u64, u32)> = (0..num)
        .map(|i| {
            let o = shoff + i * entsize;
            Ok((
                u32_at(d, o)?,
                u64_at(d, o + 0x10)?,
                u64_at(d, o + 0x18)?,
                u64_at(d, o + 0x20)?,
                u32_at(d, o + 0x28)?,
            ))
        })
        .collect::<Result<_>>()?;
    let strtab = raw.get(strndx).context("no section name table")?.2 as usize;
    raw.iter()
        .map(|&(name, addr, off, size, link)| {
            Ok((cstr(d, strtab + name as usize)?, addr, off, size, link))
        })
        .collect()
}

fn cstr(d: &[u8], at: usize) -> Result<String> {
    let s = d.get(at..).context("string outside the file")?;
    let end = s.iter().position(|&b| b == 0).context("unterminated")?;
    Ok(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// A copy of `bin` at `out` with a function symbol `podtrace_site_N` of
/// size 1 at each site (objcopy adds them with size 0, which bpftrace
/// refuses: the sizes are set here). Checks that the code is unchanged.
fn symbolized(bin: &Path, sites: &[Site], prefix: &str, out: &Path) -> Result<()> {
    let d = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let text = sections(&d)?
        .into_iter()
        .find(|s| s.0 == ".text")
        .context("no .text")?;
    let mut cmd = Command::new("objcopy");
    for s in sites {
        // The symbol's address lands bpftrace on podtrace's file offset.
        if s.vaddr - text.1 + text.2 != s.offset {
            bail!("{}: site {s:?} is not where .text maps it", bin.display());
        }
    }
    for (i, s) in sites.iter().enumerate() {
        cmd.arg("--add-symbol").arg(format!(
            "{prefix}{i}=.text:{:#x},global,function",
            s.vaddr - text.1
        ));
    }
    sh(cmd.arg(bin).arg(out))?;
    let mut c = std::fs::read(out)?;
    let secs = sections(&c)?;
    let symtab = secs
        .iter()
        .find(|s| s.0 == ".symtab")
        .context("objcopy wrote no .symtab")?
        .clone();
    let strtab = secs.get(symtab.4 as usize).context("no .strtab")?.2 as usize;
    for i in 0..(symtab.3 / 24) as usize {
        let o = symtab.2 as usize + i * 24;
        if cstr(&c, strtab + u32_at(&c, o)? as usize)?.starts_with(prefix) {
            c[o + 16..o + 24].copy_from_slice(&1u64.to_le_bytes());
        }
    }
    std::fs::write(out, &c)?;
    let (a, b) = (text.2 as usize, (text.2 + text.3) as usize);
    if d.get(a..b) != c.get(a..b) {
        bail!("{}: objcopy changed the code", out.display());
    }
    Ok(())
}

/// Spawns `cmd` and waits for a line containing `needle` on its stderr
/// (`stderr`) or stdout; returns the child, how long that took, and the
/// lines that come after.
fn until_line(
    cmd: &mut Command,
    needle: &str,
    stderr: bool,
) -> Result<(Child, Duration, mpsc::Receiver<String>)> {
    let t = Instant::now();
    let mut child = if stderr {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped())
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null())
    }
    .spawn()
    .with_context(|| format!("starting {cmd:?}"))?;
    let (tx, rx) = mpsc::channel();
    let pipe: Box<dyn std::io::Read + Send> = if stderr {
        Box::new(child.stderr.take().context("stderr")?)
    } else {
        Box::new(child.stdout.take().context("stdout")?)
    };
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if l.contains(needle) => return Ok((child, t.elapsed(), rx)),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{cmd:?}: no line with {needle:?}");
            }
        }
    }
}

/// SIGINT to `child`, then how long until it was reaped. Sent a second
/// after it said it was attached, and again every 30 s if it is still
/// there (bpftrace 0.17 lost a SIGINT that came too soon after its BEGIN
/// probe once here, and waited forever): the time counts from the last one.
fn interrupt(mut child: Child) -> Result<Duration> {
    std::thread::sleep(Duration::from_secs(1));
    let mut t = Instant::now();
    let mut sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    loop {
        if let Some(st) = child.try_wait()? {
            use std::os::unix::process::ExitStatusExt as _;
            if !st.success() && st.signal().is_some() {
                bail!("killed by a signal: {st}");
            }
            return Ok(t.elapsed());
        }
        if sent.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "    pid {} still running 30 s after SIGINT: again",
                child.id()
            );
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            t = Instant::now();
            sent = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    name: String,
    attach: Duration,
    detach: Duration,
}

pub fn attach_detach() -> Result<()> {
    let dir = root().join("target/bench/startstop");
    std::fs::create_dir_all(&dir)?;
    let kubelet = upstream::kubelet("v1.36.3", false);
    let containerd = upstream::containerd_dir().join("containerd");
    let per_binary = sites(&kubelet, &containerd)?;
    let total: usize = per_binary.iter().map(Vec::len).sum();
    step(&format!(
        "start and stop: {total} uprobes in kubelet v1.36.3 and containerd 2.2.9 (podtrace both link modes, bpftrace)"
    ));
    let trace = dir.join("attach.trace");
    let mut rows = Vec::new();
    for (mode, name) in [
        ("auto", "podtrace, uprobe_multi links"),
        ("per-site", "podtrace, one perf-event link per site"),
    ] {
        let (mut attach, mut detach, mut said) = (Vec::new(), Vec::new(), String::new());
        for _ in 0..REPEATS {
            let _ = std::fs::remove_file(&trace);
            let mut cmd = Command::new(podtrace_bin());
            cmd.args(["record", "-q", "--links", mode, "--kubelet"])
                .arg(&kubelet)
                .arg("--containerd")
                .arg(&containerd)
                .arg("-o")
                .arg(&trace);
            let (child, a, _) = until_line(&mut cmd, "recording to", true)?;
            attach.push(a);
            detach.push(interrupt(child)?);
        }
        // What it says of itself, once more for the line.
        let out = Command::new(podtrace_bin())
            .args([
                "record",
                "-q",
                "--links",
                mode,
                "--duration",
                "10ms",
                "--kubelet",
            ])
            .arg(&kubelet)
            .arg("--containerd")
            .arg(&containerd)
            .arg("-o")
            .arg(&trace)
            .output()?;
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            if l.contains("attached") {
                said = l.trim_start_matches("podtrace: ").to_string();
            }
        }
        eprintln!("    {name}: {said}");
        rows.push(Row {
            name: name.into(),
            attach: median(attach),
            detach: median(detach),
        });
    }
    // bpftrace: the same points in symbolized copies.
    let bins = [kubelet.clone(), containerd.clone()];
    let mut probes = Vec::new();
    for (i, (bin, sites)) in bins.iter().zip(&per_binary).enumerate() {
        let copy = dir.join(format!("sym-{i}"));
        let prefix = format!("podtrace_site_{i}_");
        symbolized(bin, sites, &prefix, &copy)?;
        probes.extend((0..sites.len()).map(|n| format!("uprobe:{}:{prefix}{n}", copy.display())));
    }
    let script = dir.join("sites.bt");
    // BEGIN fires once every probe is attached.
    std::fs::write(
        &script,
        format!(
            "{} {{ @c = count(); }}\nBEGIN {{ printf(\"attached\\n\"); }}\n",
            probes.join(",\n")
        ),
    )?;
    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let (child, a, _) = until_line(Command::new("bpftrace").arg(&script), "attached", false)?;
        attach.push(a);
        detach.push(interrupt(child)?);
    }
    rows.push(Row {
        name: format!("bpftrace 0.17, {} uprobes (perf events)", probes.len()),
        attach: median(attach),
        detach: median(detach),
    });
    println!(
        "\nstart and stop on kubelet v1.36.3 + containerd 2.2.9, {total} uprobes (median of {REPEATS}; start includes reading and resolving both binaries)"
    );
    println!("{:<46} {:>16} {:>14}", "", "start→attached", "SIGINT→exit");
    for r in &rows {
        println!(
            "{:<46} {:>14.3} s {:>12.3} s",
            r.name,
            r.attach.as_secs_f64(),
            r.detach.as_secs_f64()
        );
    }
    Ok(())
}

/// Discovery while pods start, with and without 30 unrelated Go programs
/// (the bench program, idle, at 30 paths) started as the pods do: every
/// event must arrive, and the wait from probe hit to trace must not grow.
pub fn discovery_load(bench: &Path) -> Result<()> {
    let dir = root().join("target/bench/discovery");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("node"))?;
    let kubelet = dir.join("node/kubelet");
    std::fs::copy(root().join("target/workload/go1.19/kubelet"), &kubelet)
        .context("copying the workload (cargo xtask build makes it)")?;
    let copies: Vec<PathBuf> = (0..30)
        .map(|i| {
            let p = dir.join(format!("apps/{i}/app-{i}"));
            std::fs::create_dir_all(p.parent().unwrap_or(&dir))?;
            std::fs::copy(bench, &p)?;
            Ok(p)
        })
        .collect::<Result<_>>()?;
    let mut table = Vec::new();
    for with in [false, true] {
        step(&format!(
            "discovery while 40 pods start{}",
            if with {
                ", 30 unrelated Go programs starting too"
            } else {
                ""
            }
        ));
        let trace = dir.join("d.trace");
        let _ = std::fs::remove_file(&trace);
        // The node's kubelet runs first: discovery finds it.
        let mut wl = Command::new(&kubelet)
            .args(["--preset", "tuned", "--pods", "40", "--rate", "10"])
            .args(["--start-delay", "2s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(300));
        let mut cmd = Command::new(podtrace_bin());
        cmd.args(["record", "-q", "-o"]).arg(&trace);
        let (pt, _, lines) = until_line(&mut cmd, "recording to", true)?;
        std::thread::sleep(Duration::from_millis(1800));
        let mut apps = Vec::new();
        if with {
            for p in &copies {
                apps.push(
                    Command::new(p)
                        .args(["-n", "0", "-sleep", "30s"])
                        .stdout(Stdio::null())
                        .spawn()?,
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        wl.wait()?;
        interrupt(pt)?;
        for mut a in apps {
            let _ = a.kill();
            let _ = a.wait();
        }
        // record's summary: "... N events, D dropped ..." and "probe hit
        // to written: median under X ms, p99 under Y ms, max Z ms".
        let said: Vec<String> = lines.try_iter().collect();
        let find = |key: &str| {
            said.iter()
                .find(|l| l.contains(key))
                .cloned()
                .unwrap_or_default()
        };
        let stopped = find("podtrace: stopped");
        let latency = find("probe hit to written");
        let number_before = |line: &str, word: &str| -> String {
            line.split(", ")
                .flat_map(|part| part.split(": "))
                .find_map(|part| part.strip_suffix(word))
                .map(|n| n.trim().rsplit(' ').next().unwrap_or("?").to_string())
                .unwrap_or_else(|| "?".into())
        };
        let number_after = |line: &str, word: &str| -> String {
            line.split(word)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("?")
                .to_string()
        };
        table.push(format!(
            "{:<44} {:>8} {:>6} {:>10} {:>10} {:>10}",
            if with {
                "40 pods, 30 unrelated Go programs starting"
            } else {
                "40 pods"
            },
            number_before(&stopped, " events"),
            number_before(&stopped, " dropped"),
            number_after(&latency, "median under"),
            number_after(&latency, "p99 under"),
            number_after(&latency, "max"),
        ));
        if with {
            let found: Vec<&String> = said.iter().filter(|l| l.contains("app-")).collect();
            if !found.is_empty() {
                bail!("discovery attached to an unrelated Go program: {found:?}");
            }
        }
    }
    println!("\ndiscovery under load (workload kubelet, 40 pods at 10/s): events, drops, probe hit → written (ms; median and p99 are bucket bounds)");
    println!(
        "{:<44} {:>8} {:>6} {:>10} {:>10} {:>10}",
        "", "events", "drops", "median", "p99", "max"
    );
    for l in table {
        println!("{l}");
    }
    Ok(())
}
