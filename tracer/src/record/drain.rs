//! Draining the ring buffer into the trace file, with a live status line;
//! between drains, what the supervisor (on its own thread) sent is written
//! and the live consumer is told.
//!
//! The eBPF side submits without waking us (BPF_RB_NO_WAKEUP saves 1–13 µs per
//! event here) until the ring is an eighth full, so we drain on a timer:
//! every [`Options::drain_every`] while events flow, stretching to
//! [`IDLE_EVERY`] as they thin out (each wake-up costs the node CPU whether
//! or not there is anything to read; the ring holds far more than
//! [`IDLE_EVERY`] of kubelet's events). A message of the supervisor wakes
//! the loop at once. Each drain takes at most [`BATCH`] events before the
//! loop looks at signals and the clock again, so that an event storm (the
//! kernel filling the ring as fast as we empty it) cannot keep SIGINT,
//! SIGTERM or `--duration` waiting.
//!
//! Owns the recording loop and its stop conditions; it never resolves,
//! plans or attaches (the supervisor does, on its thread); at the end it
//! detaches everything before taking what is left in the ring.

use std::{
    collections::HashSet,
    io::{IsTerminal, Write as _},
    os::fd::{AsFd, OwnedFd},
    process::Child,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use podtrace_common::{Event, KIND_ENTRY};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc::{error::TryRecvError, UnboundedReceiver},
};

use super::{
    bpf::{Events, Program},
    supervise::{lock, Msg},
};
use crate::{
    catalogue::Role,
    clock::mono_now,
    format::{BinaryAdded, CaptureCounts, Footer, Note, ProbeInfo, Rec},
    trace::Writer,
};

/// Events taken from the ring per drain before signals and the deadline are
/// looked at again: a few ms of work at ~1 µs per event.
pub const BATCH: usize = 4096;

/// Longest wait between two drains: when few events arrive. A burst does
/// not wait for it: the eBPF program wakes the loop once the ring is an
/// eighth full (2 k events of the default 8 MiB), and the drains that
/// follow come every [`Options::drain_every`].
pub const IDLE_EVERY: Duration = Duration::from_secs(1);
/// Events a drain aims to find: the wait is stretched (to at most
/// [`IDLE_EVERY`]) while drains find fewer.
const DRAIN_TARGET: u64 = 512;
/// The drop count (a map read per CPU) for the live metrics is read this
/// often, not at every drain.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// A descriptor that becomes readable when the kernel has news for us,
/// watched by the runtime (a duplicate: the runtime owns its registration).
fn notices(fd: &impl AsFd) -> Result<AsyncFd<OwnedFd>> {
    let owned = fd
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating a descriptor to wait on")?;
    // SAFETY: `owned` is a valid open descriptor that the AsyncFd owns, so
    // it stays open and the same file until the AsyncFd is dropped, and
    // OwnedFd's as_raw_fd always returns it.
    unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(|e| anyhow::Error::new(e.into_parts().1))
        .context("waiting on a descriptor")
}

/// Waits until `fd` is readable (its readiness cleared again: the next
/// wait is for the next word).
async fn readable(fd: &AsyncFd<OwnedFd>) {
    if let Ok(mut g) = fd.readable().await {
        g.clear_ready();
    }
}

/// The next message of the supervisor, or never once it is gone (or there
/// is none).
async fn message(rx: Option<&mut UnboundedReceiver<Msg>>) -> Msg {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(m) => m,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The wait before the next drain: long enough for [`DRAIN_TARGET`]
/// events at the rate the last one saw (`n` events over `since`), between
/// `least` and [`IDLE_EVERY`].
fn next_wait(n: usize, since: Duration, least: Duration) -> Duration {
    let per_event = since.as_nanos() as u64 / (n as u64).max(1);
    Duration::from_nanos(per_event.saturating_mul(DRAIN_TARGET)).clamp(least, IDLE_EVERY.max(least))
}

/// Something that sees every event the collector writes, in ring order
/// (`record --metrics` / `--otlp-endpoint`: [`crate::live`]).
pub trait Consumer {
    /// Each event, after it was written (the consumer may keep it).
    fn event(&mut self, rec: Rec);
    /// A binary attached while recording (a replaced binary attached anew,
    /// one found later): its probes' ids follow the ones already known.
    fn binary_added(&mut self, added: &BinaryAdded);
    /// A note of the supervisor (restart, replaced binary, ...).
    fn note(&mut self, note: &Note);
    /// After each drain, with the ring's drop count so far.
    fn drained(&mut self, drops: u64);
    /// The recording ended and every event was seen.
    fn finish(&mut self, drops: u64);
}

pub struct Options {
    pub duration: Option<Duration>,
    pub drain_every: Duration,
    /// Print the status line (also when stderr is not a terminal, once a second).
    pub status: bool,
}

/// The drain loop's end of the supervisor's thread.
pub struct Supervised {
    /// Notes and probe tables it sends.
    pub rx: UnboundedReceiver<Msg>,
    /// Closed to tell it to stop (the write end of its wake-up pipe).
    pub stop: OwnedFd,
}

/// How long events waited in the ring: from the probe hit (its ktime) to
/// being written, over the whole recording (log2 buckets of µs).
#[derive(Debug, Clone, Default)]
pub struct Latency {
    buckets: [u64; 32],
    pub max_ns: u64,
    pub count: u64,
}

impl Latency {
    fn add(&mut self, ns: u64) {
        let us = ns / 1000;
        let b = (64 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[b] += 1;
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
    }

    /// Upper bound (ns) of the bucket holding quantile `q`.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return ((1u64 << b) * 1000).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// Records until the duration passes, SIGINT/SIGTERM arrives or `child`
/// exits (a traced process exiting does not stop it). The supervisor, if
/// any, looks after restarts and replaced binaries on its thread and sends
/// notes and appended probes through `supervised`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    program: &Mutex<Program>,
    events: &mut Events,
    probes: &mut Vec<ProbeInfo>,
    mut writer: Writer,
    mut child: Option<Child>,
    opts: &Options,
    supervised: Option<Supervised>,
    live: Option<&mut dyn Consumer>,
) -> Result<(Footer, Option<std::process::ExitStatus>, Latency)> {
    let started = Instant::now();
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing SIGINT handler")?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .context("installing SIGCHLD handler")?;
    // The kernel's word (the ring an eighth full) instead of a short timer.
    let ring_ready = notices(&events.ring)?;
    let mut wait = opts.drain_every;
    let mut last_drain = Instant::now();
    let mut drops = 0;
    let mut drops_read: Option<Instant> = None;
    let mut status = StatusLine::new(opts.status);
    let mut child_status = None;
    let mut state = DrainState {
        uid_slots: pod_uid_slots(probes),
        pods: HashSet::new(),
        captures: CaptureCounts::default(),
        live,
        latency: Latency::default(),
    };
    let (mut rx, stop) = match supervised {
        Some(s) => (Some(s.rx), Some(s.stop)),
        None => (None, None),
    };
    // Set when the last drain stopped at BATCH with events still waiting:
    // then drain again at once (after a look at the signals) instead of
    // waiting for the next tick.
    let mut backlog = false;
    let stopped_by = loop {
        let mut msg = None;
        tokio::select! {
            biased;
            _ = sigint.recv() => break "SIGINT".to_string(),
            _ = sigterm.recv() => break "SIGTERM".to_string(),
            // yield_now lets the runtime poll its drivers (signals, timers)
            // before we go on.
            _ = tokio::task::yield_now(), if backlog => {}
            // The supervisor waits for its probe table to be written.
            m = message(rx.as_mut()) => msg = Some(m),
            _ = readable(&ring_ready), if !backlog => {}
            _ = sigchld.recv(), if child.is_some() => {}
            _ = tokio::time::sleep(wait), if !backlog => {}
        }
        let n = drain(events, probes, &mut state, &mut writer, BATCH)?;
        backlog = n >= BATCH;
        wait = next_wait(n, last_drain.elapsed(), opts.drain_every).min(status.every());
        if let Some(d) = opts.duration {
            wait = wait.min(d.saturating_sub(started.elapsed()));
        }
        last_drain = Instant::now();
        events.flush_log();
        if let Some(m) = msg {
            supervised_msg(m, probes, &mut writer, &mut state)?;
        }
        if let Some(rx) = rx.as_mut() {
            supervised_msgs(rx, probes, &mut writer, &mut state)?;
        }
        if let Some(l) = state.live.as_mut() {
            if drops_read.is_none_or(|t| t.elapsed() >= COUNTERS_EVERY) {
                drops = events.counters().0;
                drops_read = Some(Instant::now());
            }
            l.drained(drops);
        }
        if let Some(c) = child.as_mut() {
            if let Some(st) = c.try_wait().context("waiting for the traced command")? {
                child_status = Some(st);
                break format!("command exited ({st})");
            }
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration".to_string();
        }
        status.show(started, writer.events, state.pods.len(), || {
            events.counters().0
        });
    };
    let recorded = started.elapsed();
    status.end();
    // The supervisor stops (it may be between two steps of an attach: it
    // looks before each) ...
    drop(stop);
    // ... and everything is detached first, so that what is left in the
    // ring is finite however fast the probes were firing; then all of it
    // is taken, with whatever the supervisor still sends until it is gone.
    {
        let mut p = lock(program);
        if opts.status && p.attached > 20 && p.mode() == super::bpf::LinkMode::PerSite {
            eprintln!(
                "podtrace: {stopped_by}: detaching {} uprobes (the kernel takes up to 0.1 s for each)",
                p.attached
            );
        }
        p.detach()?;
    }
    if let Some(rx) = rx.as_mut() {
        while !supervised_msgs(rx, probes, &mut writer, &mut state)? {
            drain(events, probes, &mut state, &mut writer, BATCH)?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    while drain(events, probes, &mut state, &mut writer, BATCH)? >= BATCH {}
    events.flush_log();
    let (drops, hits) = events.counters();
    if let Some(l) = state.live.as_mut() {
        l.finish(drops);
    }
    let footer = Footer {
        events: writer.events,
        drops,
        hits,
        duration_ns: recorded.as_nanos() as u64,
        stopped_by,
        capture_problems: state.captures.problems(probes),
    };
    writer.finish(footer.clone())?;
    Ok((footer, child_status, state.latency))
}

/// Writes what the supervisor sent: notes, and appended probes (a `binary`
/// line; the consumers learn of them and the pod-UID slots are worked out
/// again), acknowledged once written so that it attaches only then.
/// Returns true once the supervisor is gone.
fn supervised_msgs(
    rx: &mut UnboundedReceiver<Msg>,
    probes: &mut Vec<ProbeInfo>,
    writer: &mut Writer,
    state: &mut DrainState<'_>,
) -> Result<bool> {
    loop {
        match rx.try_recv() {
            Ok(m) => supervised_msg(m, probes, writer, state)?,
            Err(TryRecvError::Empty) => return Ok(false),
            Err(TryRecvError::Disconnected) => return Ok(true),
        }
    }
}

fn supervised_msg(
    m: Msg,
    probes: &mut Vec<ProbeInfo>,
    writer: &mut Writer,
    state: &mut DrainState<'_>,
) -> Result<()> {
    match m {
        Msg::Note(n) => {
            if let Some(l) = state.live.as_mut() {
                l.note(&n);
            }
            writer.note(n)?;
        }
        Msg::Binary(b, ack) => {
            probes.extend(b.probes.iter().cloned());
            if let Some(l) = state.live.as_mut() {
                l.binary_added(&b);
            }
            writer.binary_added(*b)?;
            state.uid_slots = pod_uid_slots(probes);
            // Gone: it stopped meanwhile.
            let _ = ack.send(());
        }
    }
    Ok(())
}

/// The `recording 12.3s events 456 (78/s) pods 3 drops 0` line: redrawn in
/// place on a terminal every 250 ms, a line a second otherwise.
struct StatusLine {
    on: bool,
    tty: bool,
    last: Instant,
    last_events: u64,
}

impl StatusLine {
    fn new(on: bool) -> StatusLine {
        StatusLine {
            on,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
            last_events: 0,
        }
    }

    /// The longest wait between two drains that keeps the line current.
    fn every(&self) -> Duration {
        if self.on && self.tty {
            Duration::from_millis(250)
        } else {
            IDLE_EVERY
        }
    }

    fn show(&mut self, started: Instant, events: u64, pods: usize, drops: impl FnOnce() -> u64) {
        let since = self.last.elapsed();
        let due =
            since >= Duration::from_secs(1) || (self.tty && since >= Duration::from_millis(250));
        if !self.on || !due {
            return;
        }
        let rate = (events - self.last_events) as f64 / since.as_secs_f64();
        let line = format!(
            "recording {:>6.1}s  events {}  ({:.0}/s)  pods {}  drops {}",
            started.elapsed().as_secs_f64(),
            events,
            rate,
            pods,
            drops()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        self.last = Instant::now();
        self.last_events = events;
    }

    /// Ends the redrawn line before other output.
    fn end(&self) {
        if self.tty && self.on {
            eprintln!();
        }
    }
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

/// What the collector keeps across drains.
struct DrainState<'l> {
    uid_slots: Vec<Option<usize>>,
    /// Pod UIDs seen, for the status line.
    pods: HashSet<String>,
    captures: CaptureCounts,
    live: Option<&'l mut dyn Consumer>,
    latency: Latency,
}

/// Writes up to `max` events from the ring to the trace. Returns how many
/// it took (`max`: more may be waiting).
fn drain(
    events: &mut Events,
    probes: &[ProbeInfo],
    st: &mut DrainState<'_>,
    writer: &mut Writer,
    max: usize,
) -> Result<usize> {
    if writer.rotates() {
        // A file rotated during this drain gets the hits and drops up to
        // here in its footer (each file's own: the writer subtracts the
        // count when the file began).
        writer.counters = events.counters();
    }
    let mut n = 0;
    // One clock read per drain: an event's wait is measured to the start
    // of the drain that took it (what a batch adds is the writing).
    let now = mono_now();
    while n < max {
        let Some(item) = events.ring.next() else {
            if n > 0 {
                writer.flush()?;
            }
            return Ok(n);
        };
        n += 1;
        if item.len() < Event::SIZE {
            continue;
        }
        // SAFETY: the record holds at least size_of::<Event>() bytes written by
        // our eBPF program as an Event; read_unaligned copes with alignment and
        // every bit pattern is a valid Event.
        let ev: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
        // Hand the record back to the kernel before the slower decoding.
        drop(item);
        st.latency.add(now.saturating_sub(ev.ktime_ns));
        let probe = probes.get(ev.probe_id as usize);
        let rec = Rec::from_event(&ev, probe);
        st.captures.add(&rec);
        if ev.kind == KIND_ENTRY {
            if let Some(uid) = st
                .uid_slots
                .get(ev.probe_id as usize)
                .copied()
                .flatten()
                .and_then(|i| rec.a.get(i))
                .and_then(|v| v.as_ref())
                .and_then(|v| v.as_str())
            {
                if !st.pods.contains(uid) {
                    st.pods.insert(uid.to_string());
                }
            }
        }
        writer.event(&rec)?;
        if let Some(l) = st.live.as_mut() {
            l.event(rec);
        }
    }
    writer.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few events stretch the wait to IDLE_EVERY; many bring it down to
    /// the least, so that a storm is drained as often as before.
    #[test]
    fn the_wait_follows_the_event_rate() {
        let least = Duration::from_millis(20);
        let ms = Duration::from_millis;
        // Idle, and kubelet at rest (40 events/s).
        assert_eq!(next_wait(0, ms(250), least), IDLE_EVERY);
        assert_eq!(next_wait(40, ms(1000), least), IDLE_EVERY);
        // 1k events/s: 512 events take 512 ms.
        let w = next_wait(250, ms(250), least);
        assert!(w > ms(500) && w < ms(520), "{w:?}");
        // 5k events/s: about 100 ms for 512 events.
        let w = next_wait(500, ms(100), least);
        assert!(w > ms(90) && w < ms(110), "{w:?}");
        // A storm: every 20 ms.
        assert_eq!(next_wait(BATCH, ms(20), least), least);
        // Never under the least asked for, whatever IDLE_EVERY.
        assert_eq!(next_wait(BATCH, ms(1), ms(400)), ms(400));
    }

    #[test]
    fn latency_quantiles_are_bucket_bounds_capped_by_the_max() {
        let mut l = Latency::default();
        // 98 waits of 3 µs, one of 1.5 ms, one of 40 ms.
        for _ in 0..98 {
            l.add(3_000);
        }
        l.add(1_500_000);
        l.add(40_000_000);
        assert_eq!(l.count, 100);
        // 3 µs is in [2, 4) µs: "under 4 µs".
        assert_eq!(l.quantile_ns(0.5), 4_000);
        // The 99th of 100 is the 1.5 ms one: [1024, 2048) µs.
        assert_eq!(l.quantile_ns(0.99), 2_048_000);
        assert_eq!(l.quantile_ns(1.0), 40_000_000);
        assert_eq!(l.max_ns, 40_000_000);
        assert_eq!(Latency::default().quantile_ns(0.5), 0);
    }
}
