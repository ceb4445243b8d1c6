//! The events' clock (CLOCK_MONOTONIC, what bpf_ktime_get_ns reads) and
//! its offset to Unix time.
//!
//! rustix reads the clocks (the vDSO, as libc would) without an `unsafe`
//! call and a timespec of our own to fill.

use rustix::time::{clock_gettime, ClockId};

fn clock_ns(clock: ClockId) -> i64 {
    let ts = clock_gettime(clock);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, from the tightest of a few bracketed reads.
pub fn mono_to_unix_offset() -> i64 {
    let mut best = (i64::MAX, 0);
    for _ in 0..16 {
        let m0 = clock_ns(ClockId::Monotonic);
        let r = clock_ns(ClockId::Realtime);
        let m1 = clock_ns(ClockId::Monotonic);
        if m1 - m0 < best.0 {
            best = (m1 - m0, r - (m0 + (m1 - m0) / 2));
        }
    }
    best.1
}

/// CLOCK_MONOTONIC now, in ns (the clock of bpf_ktime_get_ns).
pub fn mono_now() -> u64 {
    clock_ns(ClockId::Monotonic) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two clocks are the ones named: monotonic time plus the offset is
    /// the wall clock std reads, and monotonic time is about the uptime
    /// (CLOCK_BOOTTIME; equal but for time spent suspended).
    #[test]
    fn monotonic_plus_offset_is_wall_time() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let ours = mono_now() as i64 + mono_to_unix_offset();
        assert!((ours - wall).abs() < 50_000_000, "{ours} vs {wall}");
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let mono = mono_now() as f64 / 1e9;
        assert!(
            mono <= uptime + 0.05,
            "monotonic {mono} s, uptime {uptime} s"
        );
        let (a, b) = (mono_now(), mono_now());
        assert!(b >= a);
    }
}
