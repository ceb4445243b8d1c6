//! The events' clock (CLOCK_MONOTONIC, what bpf_ktime_get_ns reads) and
//! its offset to Unix time.

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, from the tightest of a few bracketed reads.
pub fn mono_to_unix_offset() -> i64 {
    let mut best = (i64::MAX, 0);
    for _ in 0..16 {
        let m0 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        if m1 - m0 < best.0 {
            best = (m1 - m0, r - (m0 + (m1 - m0) / 2));
        }
    }
    best.1
}

/// CLOCK_MONOTONIC now, in ns (the clock of bpf_ktime_get_ns).
pub fn mono_now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}
