//! `podtrace probes --kubelet PATH --containerd PATH`: what can be traced in
//! the given binaries, per probe.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::{
    catalogue::{BinaryInfo, Resolution, Status},
    commands::Format,
    resolve::GoBinary,
};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("bins").required(true).multiple(true).args(["kubelet", "containerd"])))]
pub struct ProbesArgs {
    /// kubelet binary to inspect.
    #[arg(long, value_name = "PATH")]
    pub kubelet: Option<PathBuf>,
    /// containerd binary to inspect.
    #[arg(long, value_name = "PATH")]
    pub containerd: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// A catalogue file (format: tracer/catalogue/kubelet.toml). It replaces
    /// the built-in catalogue of the binary its `[binary] name` names
    /// (kubelet or containerd; the other stays built-in); a file for any
    /// other program is the only catalogue.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
}

pub fn run(a: ProbesArgs) -> Result<ExitCode> {
    let cat = crate::catalogue::Catalogue::load(a.catalogue.as_deref())?;
    let mut code = ExitCode::SUCCESS;
    let mut json = Vec::new();
    let wanted = [("kubelet", &a.kubelet), ("containerd", &a.containerd)];
    for (name, path) in wanted {
        let Some(path) = path else { continue };
        let bc = cat.for_binary(name)?;
        let bin = GoBinary::open(path)?;
        let res = bc.resolve(&bin);
        let unseen = bc.binary.unseen(&bin);
        match a.format {
            Format::Json => json.push(serde_json::json!({
                "binary": bin.path(),
                "catalogue": bc.binary.name,
                "go_version": bin.go_version(),
                "main_module": bin.build_info().and_then(|b| b.main.as_ref()).map(|m| (&m.path, &m.version)),
                "versions": detected_versions(&bin, &bc.binary),
                "symbol_source": format!("{:?}", bin.symbol_source()),
                "goid_offset": bin.goid_offset(),
                "layout": res.iter().find(|r| r.status == Status::Ok).map(|r| &r.detail),
                "newest_tested": bc.binary.newest_tested,
                "unseen": unseen,
                "probes": res,
            })),
            Format::Table => {
                print!("{}", probes_table(&bin, &bc.binary, &res));
                // Newer than any version tested: what was trusted, and
                // what was left out.
                if let Some(u) = &unseen {
                    println!();
                    for l in u.summary(&bc.binary.name, &res, true) {
                        println!("{l}");
                    }
                }
                // Which version family the handler symbols belong to.
                if let Some(note) = res.iter().find(|r| r.status == Status::Ok).map(|r| &r.detail) {
                    if !note.is_empty() {
                        println!("layout      {note}");
                    }
                }
                println!();
            }
        }
        if !res.iter().any(|r| r.status == Status::Ok) {
            eprintln!(
                "podtrace: no probe of the {} catalogue resolves in {} (is it a {}?)",
                bc.binary.name,
                path.display(),
                bc.binary.name
            );
            code = ExitCode::from(2);
        }
    }
    if matches!(a.format, Format::Json) {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "binaries": json }))?
        );
    }
    Ok(code)
}

/// Versions that decide probe layouts, as far as the binary tells them:
/// Go, the main module, the catalogue's `modules` and `detect` facts.
fn detected_versions(bin: &GoBinary, info: &BinaryInfo) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(g) = bin.go_version() {
        v.push(("go".to_string(), g.to_string()));
    }
    if let Some(m) = bin.build_info().and_then(|b| b.main.as_ref()) {
        v.push((m.path.clone(), m.version.clone()));
    }
    for module in &info.modules {
        if let Some(ver) = bin.module_version(module) {
            if !v.iter().any(|(m, _)| m == module) {
                v.push((module.clone(), ver.to_string()));
            }
        }
    }
    v.extend(info.detected(bin));
    v
}

fn probes_table(bin: &GoBinary, info: &BinaryInfo, res: &[Resolution]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "binary      {}", bin.path().display());
    let versions = detected_versions(bin, info);
    for (what, ver) in &versions {
        let _ = writeln!(o, "  {what:<32} {ver}");
    }
    if let Some(bi) = bin.build_info() {
        for d in bi.deps.iter().filter(|d| {
            (d.path.starts_with("k8s.io/") || d.path.starts_with("github.com/containerd/"))
                && !versions.iter().any(|(m, _)| *m == d.path)
        }) {
            let _ = writeln!(o, "  {:<32} {} (dependency)", d.path, d.version);
        }
    }
    if let Some(newest) = &info.newest_tested {
        let _ = writeln!(
            o,
            "tested      up to {} {newest}{}",
            info.module,
            match info.unseen(bin) {
                Some(u) => format!(
                    "; this {} is newer: matched by shape only (summary below)",
                    u.version
                ),
                None => String::new(),
            }
        );
    }
    let _ = writeln!(o, "symbols     {:?}", bin.symbol_source());
    let _ = writeln!(
        o,
        "goid        {}",
        bin.goid_offset()
            .map(|g| format!("runtime.g+{g}"))
            .unwrap_or_else(|| "unknown (goroutines keyed by g pointer only)".into())
    );
    let _ = writeln!(
        o,
        "\n{:<16} {:<8} {:<14} {:>10} {:>10} {:>5}  symbol",
        "probe", "status", "entry site", "address", "offset", "rets"
    );
    for r in res {
        if r.targets.is_empty() {
            let _ = writeln!(
                o,
                "{:<16} {:<8} {:<14} {:>10} {:>10} {:>5}  {}",
                r.probe,
                format!("{:?}", r.status).to_lowercase(),
                "-",
                "-",
                "-",
                "-",
                r.detail
            );
        }
        for t in &r.targets {
            let _ = writeln!(
                o,
                "{:<16} {:<8} {:<14} {:>#10x} {:>#10x} {:>5}  {}",
                r.probe,
                "ok",
                match t.entry_site {
                    crate::catalogue::SiteKind::PrologueJump => "prologue-jump",
                    crate::catalogue::SiteKind::FunctionStart => "function-start",
                },
                t.entry_vaddr,
                t.entry_site_offset,
                t.ret_offsets.len(),
                t.symbol
            );
            // Which version's shape it was taken for, and the fact that said so.
            let _ = writeln!(
                o,
                "{:<16} {:<8} variant {} ({}){}{}",
                "",
                "",
                t.variant + 1,
                t.matched_by,
                if t.note.is_empty() { "" } else { ": " },
                t.note
            );
            if !t.inlined_into.is_empty() {
                let _ = writeln!(
                    o,
                    "{:<16} {:<8} {:<50}  also inlined into {}: calls there are not seen",
                    "",
                    "",
                    "",
                    crate::catalogue::list_some(&t.inlined_into)
                );
            }
        }
    }
    o
}
