//! `podtrace report TRACE`: per-pod stage tables, poll checks and loop
//! periods; or containerd's CRI log lines (`--journal`).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;

use crate::{
    analysis::report::Report,
    commands::{args::parse_duration, Format},
    correlate::read_correlated,
};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Trace written by `podtrace record`.
    pub trace: PathBuf,
    /// Also write a self-contained HTML page with a waterfall per pod.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the waterfalls as one standalone SVG picture.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Print the CRI calls as containerd's log lines would (journalctl -u
    /// containerd), instead of the tables.
    #[arg(long)]
    pub journal: bool,
    /// A call still open after this long is taken to have ended without a
    /// RET (panic, tail call, goroutine exit) and counted as aged out.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub max_open: Duration,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let (t, corr) = read_correlated(&a.trace, a.max_open.as_nanos() as u64)?;
    if a.journal {
        print!("{}", crate::analysis::journal::journal(&t, &corr));
        return Ok(ExitCode::SUCCESS);
    }
    let r = Report::build(&t, &corr);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => print!("{}", r.to_table()),
    }
    crate::html::write_report_pictures(&r, a.html.as_deref(), a.svg.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
