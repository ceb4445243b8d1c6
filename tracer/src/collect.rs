//! Draining the ring buffer into the trace file, with a live status line.
//!
//! The eBPF side submits without waking us (BPF_RB_NO_WAKEUP saves 1–13 µs per
//! event here), so we drain on a short timer instead of epoll.

use std::{
    collections::HashSet,
    io::{IsTerminal, Write as _},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use podtrace_common::{Event, KIND_ENTRY};

use crate::{
    attach::{Loaded, ProbeInfo},
    catalogue::Role,
    trace::{Footer, Rec, Writer},
};

pub struct Options {
    pub duration: Option<Duration>,
    pub drain_every: Duration,
    /// Print the status line (also when stderr is not a terminal, once a second).
    pub status: bool,
}

/// Records until the duration passes, SIGINT/SIGTERM arrives or `child` exits.
pub async fn run(
    loaded: &mut Loaded,
    probes: &[ProbeInfo],
    mut writer: Writer,
    mut child: Option<Child>,
    opts: &Options,
) -> Result<(Footer, Option<std::process::ExitStatus>)> {
    let started = Instant::now();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing SIGINT handler")?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let mut tick = tokio::time::interval(opts.drain_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tty = std::io::stderr().is_terminal();
    let mut pods = HashSet::new();
    let uid_slots = pod_uid_slots(probes);
    let mut last_status = Instant::now();
    let mut last_events = 0u64;
    let mut child_status = None;
    let stopped_by = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sigint.recv() => break "SIGINT".to_string(),
            _ = sigterm.recv() => break "SIGTERM".to_string(),
        }
        drain(loaded, probes, &uid_slots, &mut writer, &mut pods)?;
        if let Some(c) = child.as_mut() {
            if let Some(st) = c.try_wait().context("waiting for the traced command")? {
                child_status = Some(st);
                break format!("command exited ({st})");
            }
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration".to_string();
        }
        let since = last_status.elapsed();
        if opts.status
            && (since >= Duration::from_secs(1) || (tty && since >= Duration::from_millis(250)))
        {
            let (drops, _) = loaded.counters();
            let rate = (writer.events - last_events) as f64 / since.as_secs_f64();
            let line = format!(
                "recording {:>6.1}s  events {}  ({:.0}/s)  pods {}  drops {}",
                started.elapsed().as_secs_f64(),
                writer.events,
                rate,
                pods.len(),
                drops
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last_status = Instant::now();
            last_events = writer.events;
        }
    };
    if tty && opts.status {
        eprintln!();
    }
    // Whatever the kernel wrote before we stopped.
    drain(loaded, probes, &uid_slots, &mut writer, &mut pods)?;
    let (drops, hits) = loaded.counters();
    let footer = Footer {
        events: writer.events,
        drops,
        hits,
        duration_ns: started.elapsed().as_nanos() as u64,
        stopped_by,
    };
    writer.finish(footer.clone())?;
    Ok((footer, child_status))
}

/// Per probe id: which entry capture names the pod (for the live pod
/// count), worked out once instead of per event.
fn pod_uid_slots(probes: &[ProbeInfo]) -> Vec<Option<usize>> {
    probes
        .iter()
        .map(|p| {
            matches!(p.role, Role::PodSync | Role::Cri)
                .then(|| p.entry_captures.iter().position(|c| c.name == "pod_uid"))
                .flatten()
        })
        .collect()
}

fn drain(
    loaded: &mut Loaded,
    probes: &[ProbeInfo],
    uid_slots: &[Option<usize>],
    writer: &mut Writer,
    pods: &mut HashSet<String>,
) -> Result<()> {
    while let Some(item) = loaded.ring.next() {
        if item.len() < Event::SIZE {
            continue;
        }
        // SAFETY: the record holds at least size_of::<Event>() bytes written by
        // our eBPF program as an Event; read_unaligned copes with alignment and
        // every bit pattern is a valid Event.
        let ev: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
        drop(item);
        let probe = probes.get(ev.probe_id as usize);
        let rec = Rec::from_event(&ev, probe);
        if ev.kind == KIND_ENTRY {
            if let Some(uid) = uid_slots
                .get(ev.probe_id as usize)
                .copied()
                .flatten()
                .and_then(|i| rec.a.get(i))
                .and_then(|v| v.as_ref())
                .and_then(|v| v.as_str())
            {
                if !pods.contains(uid) {
                    pods.insert(uid.to_string());
                }
            }
        }
        writer.event(rec)?;
    }
    writer.flush()
}
