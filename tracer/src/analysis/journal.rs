//! `podtrace report --journal`: the CRI calls of a trace as the lines
//! containerd's own log (`journalctl -u containerd`) prints for them, so a
//! recording can be held against the old way of measuring.

use std::fmt::Write as _;

use crate::{catalogue::Role, correlate::Correlated, correlate::Span, trace::TraceMeta};

/// Unix ns → `2025-07-10T17:02:21.030699020Z`.
pub fn rfc3339_utc(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn arg(s: &Span, k: &str) -> String {
    s.arg_str(k).unwrap_or("?").to_string()
}

fn num(s: &Span, k: &str) -> String {
    s.arg_u64(k)
        .map(|v| v.to_string())
        .unwrap_or_else(|| "?".into())
}

/// (message at entry, message at a successful return).
fn messages(s: &Span) -> (String, String) {
    match &*s.name {
        "RunPodSandbox" => {
            let md = format!(
                "&PodSandboxMetadata{{Name:{},Uid:{},Namespace:{},Attempt:{},}}",
                arg(s, "pod_name"),
                arg(s, "pod_uid"),
                arg(s, "pod_namespace"),
                num(s, "attempt")
            );
            (
                format!("RunPodSandbox for {md}"),
                format!(
                    "RunPodSandbox for {md} returns sandbox id \"{}\"",
                    arg(s, "sandbox_id")
                ),
            )
        }
        "PullImage" => (
            format!("PullImage \"{}\"", arg(s, "image")),
            format!(
                "PullImage \"{}\" returns image reference \"{}\"",
                arg(s, "image"),
                arg(s, "image_ref")
            ),
        ),
        "CreateContainer" => {
            let md = format!(
                "&ContainerMetadata{{Name:{},Attempt:{},}}",
                arg(s, "container_name"),
                num(s, "container_attempt")
            );
            let sb = arg(s, "sandbox_id");
            (
                format!("CreateContainer within sandbox \"{sb}\" for container {md}"),
                format!(
                    "CreateContainer within sandbox \"{sb}\" for {md} returns container id \"{}\"",
                    arg(s, "container_id")
                ),
            )
        }
        "StartContainer" | "StopContainer" | "RemoveContainer" => {
            let id = arg(s, "container_id");
            (
                format!("{} for \"{id}\"", s.name),
                format!("{} for \"{id}\" returns successfully", s.name),
            )
        }
        "StopPodSandbox" | "RemovePodSandbox" => {
            let id = arg(s, "sandbox_id");
            (
                format!("{} for \"{id}\"", s.name),
                format!("{} for \"{id}\" returns successfully", s.name),
            )
        }
        other => (other.to_string(), format!("{other} returns")),
    }
}

fn line(out: &mut String, t: i64, level: &str, msg: &str) {
    let _ = writeln!(
        out,
        "time=\"{}\" level={level} msg=\"{}\"",
        rfc3339_utc(t),
        msg.replace('\\', "\\\\").replace('"', "\\\"")
    );
}

/// Two lines per CRI call (entry, return), in time order.
pub fn journal(trace: &dyn TraceMeta, c: &Correlated) -> String {
    let off = trace.header().mono_to_unix_ns;
    let mut lines: Vec<(i64, String, String)> = Vec::new();
    for s in c.spans.iter().filter(|s| s.role == Role::Cri) {
        let (enter, ret) = messages(s);
        lines.push((s.start as i64 + off, "info".into(), enter.clone()));
        if let Some(end) = s.end {
            if s.arg_u64("error") == Some(1) {
                lines.push((
                    end as i64 + off,
                    "error".into(),
                    format!("{enter} failed, error"),
                ));
            } else {
                lines.push((end as i64 + off, "info".into(), ret));
            }
        }
    }
    lines.sort_by_key(|l| l.0);
    let mut out = String::new();
    for (t, level, msg) in &lines {
        line(&mut out, *t, level, msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_like_containerd() {
        // 2025-07-10T09:02:21.030699020Z, the seed note's first line in UTC.
        assert_eq!(
            rfc3339_utc(1_752_138_141_030_699_020),
            "2025-07-10T09:02:21.030699020Z"
        );
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_utc(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
