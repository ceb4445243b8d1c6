//! Value parsers and formats shared by the commands' arguments.

use std::time::Duration;

/// A duration with units, more than zero: 500ms, 30s, 1.5s, 5m, 1h30m
/// (humantime's syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("`{s}`: not a valid duration")),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}`: {e} (expected e.g. 500ms, 30s, 1.5s, 5m, 1h30m)"))?,
    };
    if d.is_zero() {
        return Err(format!("`{s}`: must be more than zero"));
    }
    Ok(d)
}

/// A duration for people, to the millisecond: `2m 3s 40ms`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Smallest `--max-size`: below this a file would hold little more than
/// its header (the probe table).
pub const MIN_MAX_SIZE: u64 = 16 << 10;

/// `--max-size`: bytes, with an optional K, M or G (powers of 1024; `KiB`,
/// `MB` and the like are read the same), at least [`MIN_MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 100M, 1G or 512K"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("`{s}`: unknown unit `{u}` (use K, M or G)")),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{s}`: too large"));
    }
    let bytes = bytes as u64;
    if bytes < MIN_MAX_SIZE {
        return Err(format!(
            "`{s}` is below the smallest trace file size, {} KiB (a file must hold its header, the probe table)",
            MIN_MAX_SIZE >> 10
        ));
    }
    Ok(bytes)
}

/// Largest `--ring-mib`. The kernel takes any power of two that fits its u32
/// size field (2 GiB), but the ring is locked kernel memory for the whole
/// recording and 16 MiB already lost nothing at 1M events/s here.
pub const MAX_RING_MIB: u32 = 1024;

/// `--ring-mib`: a power of two, 1..=[`MAX_RING_MIB`].
pub fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let n: u32 = s.trim().parse().map_err(|_| {
        format!("`{s}`: expected a whole number of MiB (a power of two, 1 to {MAX_RING_MIB})")
    })?;
    if n == 0 || n > MAX_RING_MIB {
        return Err(format!(
            "{n} MiB is out of range: the ring buffer is 1 to {MAX_RING_MIB} MiB"
        ));
    }
    if !n.is_power_of_two() {
        return Err(format!(
            "{n} MiB is not a power of two (the kernel's ring buffer must be one): try {} or {}",
            n.next_power_of_two() / 2,
            n.next_power_of_two().min(MAX_RING_MIB)
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).map_err(|e| e.to_string());
        assert_eq!(ok("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(ok("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(ok("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(ok("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(ok("30"), Ok(Duration::from_secs(30)));
        for bad in ["0s", "0", "-3s", "5 parsecs", "", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("5 parsecs").is_err_and(|e| e.contains("e.g. 500ms")));
        assert_eq!(
            format_duration(Duration::from_nanos(123_456_789_012)),
            "2m 3s 456ms"
        );
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_mib("16"), Ok(16));
        assert_eq!(parse_ring_mib("1024"), Ok(1024));
        assert!(parse_ring_mib("4096").is_err_and(|e| e.contains("1 to 1024 MiB")));
        assert!(parse_ring_mib("0").is_err_and(|e| e.contains("1 to 1024 MiB")));
        assert!(parse_ring_mib("24").is_err_and(|e| e.contains("try 16 or 32")));
        assert!(parse_ring_mib("-1").is_err_and(|e| e.contains("whole number")));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("1K").is_err_and(|e| e.contains("smallest")));
        assert!(parse_size("10 parsecs").is_err_and(|e| e.contains("unknown unit")));
        assert!(parse_size("lots").is_err_and(|e| e.contains("such as 100M")));
    }
}
