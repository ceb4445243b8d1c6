//! Pictures: the per-pod waterfall of a report and the stage distributions
//! of a comparison, as self-contained HTML (inline SVG and CSS, no script,
//! nothing fetched) or standalone SVG. Hovering a bar, a poll check or a
//! marker shows its numbers (SVG `<title>`).

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result};

use crate::{
    analysis::compare::Comparison,
    analysis::report::{percentile, PodReport, Report},
    analysis::rng::SplitMix64,
};

/// Pods drawn at most; a report of a busy node stays openable.
pub const MAX_PODS_DRAWN: usize = 200;

const WIDTH: f64 = 1120.0;
const LABEL_W: f64 = 210.0;
const RIGHT_PAD: f64 = 90.0;
const ROW_H: f64 = 24.0;
const BAR_H: f64 = 15.0;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d232a; background: #fff; margin: 24px 32px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 4px; }
.meta { color: #5b6670; margin: 0 0 10px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #e3e7eb; }
th { background: #f3f5f7; font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
.warn { color: #9a3412; }
.headline { font-size: 15px; font-weight: 600; color: #1d232a; }
.sig { font-weight: 600; }
.faster { color: #15803d; }
.slower { color: #b91c1c; }
svg { display: block; margin: 4px 0 8px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
a { color: #1f5fa8; }
"#;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Colour of a stage: fixed for the known ones, from a palette otherwise.
pub fn stage_color(stage: &str) -> &'static str {
    const PALETTE: [&str; 6] = [
        "#b07aa1", "#ff9da7", "#9c755f", "#e15759", "#8cd17d", "#499894",
    ];
    match stage {
        "sync" => "#4e79a7",
        "mount_wait" => "#f28e2b",
        "runtime_sync" => "#59a14f",
        "create_sandbox" => "#76b7b2",
        "start_container" => "#edc948",
        "pod" => "#1f3b5c",
        "lost_to_polling" => "#e15759",
        "RunPodSandbox" => "#499894",
        "PullImage" => "#9c755f",
        "CreateContainer" => "#b07aa1",
        "StartContainer" => "#d4a017",
        other => {
            let h = other
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            PALETTE[h % PALETTE.len()]
        }
    }
}

/// Run colours in comparison pictures.
const RUN_COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2",
];

fn ms(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// With an explicit sign (for differences).
fn signed_ms(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", ms(v))
    } else if v == 0.0 {
        "±0".into()
    } else {
        ms(v)
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{} ms", ms(v)))
        .unwrap_or_else(|| "–".into())
}

/// A round axis step giving about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    let step = match raw / mag {
        n if n <= 1.0 => 1.0,
        n if n <= 2.0 => 2.0,
        n if n <= 5.0 => 5.0,
        _ => 10.0,
    };
    step * mag
}

/// UTC date and time of Unix ns, ISO 8601 with ms.
fn iso_utc(unix_ns: i64) -> String {
    // "…SS.nnnnnnnnnZ" cut to "…SS.mmmZ".
    let mut s = crate::analysis::journal::rfc3339_utc(unix_ns);
    s.truncate(s.len() - "nnnnnnZ".len());
    s.push('Z');
    s
}

fn pod_title(p: &PodReport) -> String {
    format!(
        "{}/{}",
        p.namespace.as_deref().unwrap_or("?"),
        p.name.as_deref().unwrap_or("?")
    )
}

/// Horizontal axis from 0 to `max` ms over [x0, x1]; grid lines down to `bottom`.
fn axis(o: &mut String, x0: f64, x1: f64, max: f64, top: f64, bottom: f64) {
    let step = nice_step(max, 8.0);
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    let sx = |v: f64| x0 + v / max * (x1 - x0);
    let mut v = 0.0;
    let mut n = 0;
    while v <= max * 1.0001 && n < 50 {
        let x = sx(v);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#e3e7eb"/><text x="{x:.1}" y="{:.1}" font-size="11" fill="#5b6670" text-anchor="middle">{v:.decimals$}</text>"##,
            bottom + 14.0,
        );
        v += step;
        n += 1;
    }
    let _ = write!(
        o,
        r##"<line x1="{x0:.1}" y1="{bottom:.1}" x2="{x1:.1}" y2="{bottom:.1}" stroke="#8a949e"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#5b6670" text-anchor="end">ms</text>"##,
        x1 + 30.0,
        bottom + 14.0
    );
}

/// One pod's waterfall as SVG elements at vertical offset `y`; returns the height used.
/// One bar of a waterfall.
struct Row<'a> {
    label: &'a str,
    depth: usize,
    start_ms: f64,
    duration_ms: Option<f64>,
    error: bool,
}

/// Space for the label of the container runtime's rows.
const GROUP_GAP: f64 = 18.0;

fn pod_waterfall(o: &mut String, p: &PodReport, y: f64) -> f64 {
    let mw = p.mount_wait.as_ref();
    // kubelet's stages, then the container runtime's CRI calls.
    let rows: Vec<Row> = p
        .stages
        .iter()
        .map(|s| Row {
            label: &s.stage,
            depth: s.depth,
            start_ms: s.start_ms,
            duration_ms: s.duration_ms,
            error: s.error,
        })
        .chain(p.cri.iter().map(|c| Row {
            label: &c.call,
            depth: 0,
            start_ms: c.start_ms,
            duration_ms: c.duration_ms,
            error: c.error,
        }))
        .collect();
    let n_stages = p.stages.len();
    let gap = if p.cri.is_empty() { 0.0 } else { GROUP_GAP };
    let mut max: f64 = 0.0;
    for s in &rows {
        max = max.max(s.start_ms + s.duration_ms.unwrap_or(0.0));
    }
    if let Some(m) = mw {
        for v in [m.volumes_mounted_ms, m.noticed_ms].into_iter().flatten() {
            max = max.max(v);
        }
        for c in &m.checks {
            max = max.max(c.at_ms);
        }
    }
    let max = if max > 0.0 { max * 1.03 } else { 1.0 };
    let (x0, x1) = (LABEL_W, WIDTH - RIGHT_PAD);
    let sx = |v: f64| x0 + v.max(0.0) / max * (x1 - x0);
    // Title line, then a line for marker labels, then the rows.
    let top = y + 40.0;
    let rows_h = rows.len() as f64 * ROW_H + gap;
    let bottom = top + rows_h + 6.0;
    let row_y = |r: usize| top + r as f64 * ROW_H + if r >= n_stages { gap } else { 0.0 };

    let _ = write!(
        o,
        r##"<text x="0" y="{:.1}" font-size="14" font-weight="600" fill="#1d232a">pod {} <tspan font-weight="400" fill="#5b6670">uid {} · started {}</tspan></text>"##,
        y + 12.0,
        esc(&pod_title(p)),
        esc(&p.uid),
        iso_utc(p.start_unix_ns)
    );
    // The interval lost to polling, behind everything.
    if let Some((m0, n0, lost)) =
        mw.and_then(|m| Some((m.volumes_mounted_ms?, m.noticed_ms?, m.lost_to_polling_ms?)))
    {
        let _ = write!(
            o,
            r##"<g class="lost"><title>lost to polling: {} ms (volumes mounted at {} ms, noticed at {} ms)</title><rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{rows_h:.1}" fill="#e15759" fill-opacity="0.16"/></g>"##,
            ms(lost),
            ms(m0),
            ms(n0),
            sx(m0),
            (sx(n0) - sx(m0)).max(1.0)
        );
    }
    axis(o, x0, x1, max, top, bottom);
    if !p.cri.is_empty() {
        let gy = row_y(n_stages) - 5.0;
        let _ = write!(
            o,
            r##"<line x1="0" y1="{:.1}" x2="{x1:.1}" y2="{:.1}" stroke="#c9d0d6" stroke-dasharray="2 3"/><text x="4" y="{gy:.1}" font-size="11" fill="#5b6670">container runtime (CRI)</text>"##,
            gy - 12.0,
            gy - 12.0
        );
    }
    for (r, s) in rows.iter().enumerate() {
        let ry = row_y(r);
        let by = ry + (ROW_H - BAR_H) / 2.0;
        let color = stage_color(s.label);
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#1d232a">{}</text>"##,
            4.0 + 12.0 * s.depth as f64,
            by + BAR_H - 3.0,
            esc(s.label)
        );
        let (w, extra, label) = match s.duration_ms {
            Some(d) => (
                (sx(s.start_ms + d) - sx(s.start_ms)).max(1.5),
                "",
                format!("{} ms", ms(d)),
            ),
            None => (
                (x1 - sx(s.start_ms)).max(1.5),
                r##" fill-opacity="0.35" stroke-dasharray="4 3" stroke="#5b6670""##,
                "no exit".to_string(),
            ),
        };
        let stroke = if s.error {
            r##" stroke="#b91c1c" stroke-width="2""##
        } else {
            ""
        };
        let _ = write!(
            o,
            r##"<g class="stage"><title>{}: start {} ms, {}{}</title><rect x="{:.1}" y="{by:.1}" width="{w:.1}" height="{BAR_H}" rx="2" fill="{color}"{extra}{stroke}/></g><text x="{:.1}" y="{:.1}" font-size="11" fill="#39424b">{}</text>"##,
            esc(s.label),
            ms(s.start_ms),
            esc(&label),
            if s.error { ", returned an error" } else { "" },
            sx(s.start_ms),
            sx(s.start_ms) + w + 4.0,
            by + BAR_H - 3.0,
            esc(&label)
        );
    }
    if let Some(m) = mw {
        // The mount wait's row: the first row of its stage.
        let row = p
            .stages
            .iter()
            .position(|s| s.stage == "mount_wait")
            .or_else(|| p.stages.iter().position(|s| s.depth == 1))
            .unwrap_or(0);
        let ry = row_y(row);
        for c in &m.checks {
            let x = sx(c.at_ms);
            let color = match c.unmounted {
                Some(0) => "#15803d",
                Some(_) => "#1d232a",
                None => "#8a949e",
            };
            let what = match c.unmounted {
                Some(u) => format!("{u} unmounted"),
                None => "result not captured".into(),
            };
            let _ = write!(
                o,
                r##"<g class="check"><title>poll check at {} ms: {}{}</title><rect x="{:.1}" y="{:.1}" width="7" height="{ROW_H:.1}" fill="#fff" fill-opacity="0"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/></g>"##,
                ms(c.at_ms),
                what,
                c.duration_ms
                    .map(|d| format!(" (took {} ms)", ms(d)))
                    .unwrap_or_default(),
                x - 3.5,
                ry,
                ry + 1.0,
                ry + ROW_H - 1.0
            );
        }
        for v in &m.volumes {
            let x = sx(v.at_ms);
            let _ = write!(
                o,
                r##"<g class="volume"><title>volume {} mounted at {} ms</title><path d="M{:.1} {:.1} l5 -7 h-10 z" fill="#1f5fa8"/></g>"##,
                esc(v.volume.as_deref().unwrap_or("?")),
                ms(v.at_ms),
                x,
                top + 1.0
            );
        }
        let marks = [
            (m.volumes_mounted_ms, "#1f5fa8", "volumes mounted"),
            (m.noticed_ms, "#15803d", "noticed"),
        ];
        for (i, (at, color, name)) in marks.iter().enumerate() {
            let Some(at) = at else { continue };
            let x = sx(*at);
            let anchor = if i == 0 { "end" } else { "start" };
            let dx = if i == 0 { -4.0 } else { 4.0 };
            let _ = write!(
                o,
                r##"<g class="marker"><title>{name} at {} ms</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{color}" text-anchor="{anchor}">{name}</text></g>"##,
                ms(*at),
                top - 12.0,
                x + dx,
                top - 4.0
            );
        }
    }
    bottom + 24.0 - y
}

/// Legend items: (kind, colour, text) with kind 0 swatch, 1 tick, 2 shaded.
fn legend(o: &mut String, names: &[&str], y0: f64) -> f64 {
    let mut items: Vec<(u8, &str, &str)> = names.iter().map(|n| (0, stage_color(n), *n)).collect();
    items.extend([
        (1, "#1d232a", "poll check (hover: unmounted)"),
        (1, "#1f5fa8", "volumes mounted"),
        (1, "#15803d", "noticed"),
        (2, "#e15759", "lost to polling"),
    ]);
    let (mut x, mut y) = (0.0, y0);
    for (kind, color, text) in items {
        // Rough text width at 12 px; wrap before the right edge.
        let w = 26.0 + 6.8 * text.chars().count() as f64;
        if x > 0.0 && x + w > WIDTH {
            x = 0.0;
            y += 18.0;
        }
        let mark = match kind {
            0 => format!(
                r##"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" rx="2" fill="{color}"/>"##
            ),
            1 => format!(
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"##,
                x + 5.0,
                x + 5.0,
                y + 12.0
            ),
            _ => format!(
                r##"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" fill="{color}" fill-opacity="0.25"/>"##
            ),
        };
        let _ = write!(
            o,
            r##"{mark}<text x="{:.1}" y="{:.1}" font-size="12" fill="#1d232a">{}</text>"##,
            x + 16.0,
            y + 10.5,
            esc(text)
        );
        x += w;
    }
    y - y0 + 22.0
}

fn stage_names(report: &Report) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for p in &report.pods {
        for s in p
            .stages
            .iter()
            .map(|s| &s.stage)
            .chain(p.cri.iter().map(|c| &c.call))
        {
            if !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
    }
    names
}

/// One `<svg>` holding the waterfall of one pod (for the HTML page).
fn pod_svg(p: &PodReport) -> String {
    let mut body = String::new();
    let h = pod_waterfall(&mut body, p, 0.0);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h:.0}" viewBox="0 0 {WIDTH} {h:.0}" role="img" aria-label="waterfall of pod {}">{body}</svg>"##,
        esc(&pod_title(p))
    )
}

/// All pods' waterfalls in one standalone SVG.
pub fn report_svg(report: &Report) -> String {
    let mut body = String::new();
    let mut y = 4.0;
    let _ = write!(
        body,
        r##"<rect x="-20" y="-20" width="{}" height="100%" fill="#fff"/>"##,
        WIDTH + 40.0
    );
    y += legend(&mut body, &stage_names(report), y) + 8.0;
    if report.pods.is_empty() {
        let _ = write!(
            body,
            r##"<text x="0" y="{:.1}" font-size="14">no pod syncs in this trace</text>"##,
            y + 14.0
        );
        y += 30.0;
    }
    for p in report.pods.iter().take(MAX_PODS_DRAWN) {
        y += pod_waterfall(&mut body, p, y);
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{y:.0}" viewBox="-20 0 {} {y:.0}" font-family="sans-serif">{body}</svg>
"##,
        WIDTH + 40.0,
        WIDTH + 40.0
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

/// The report as a self-contained HTML page: summary table and a waterfall per pod.
pub fn report_html(report: &Report) -> String {
    let mut b = String::new();
    let t = &report.trace;
    let _ = write!(
        b,
        "<h1>podtrace report</h1><p class=\"meta\">{} · {} pods · {} events, {} dropped{} · recording started {}</p>",
        esc(&t.hostname),
        report.pods.len(),
        t.events,
        t.drops,
        if t.complete { "" } else { " · recording interrupted" },
        iso_utc(t.started_unix_ns)
    );
    for bin in &t.binaries {
        let _ = write!(b, "<p class=\"meta\">{}</p>", esc(bin));
    }
    for build in &t.builds {
        let _ = write!(b, "<p class=\"meta\">{}</p>", esc(&build.describe()));
    }
    for w in &report.warnings {
        let _ = write!(b, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
    if report.pods.is_empty() {
        b.push_str("<p>No pod syncs in this trace.</p>");
    } else {
        b.push_str("<h2>Pods</h2><table><tr><th>pod</th><th>started (UTC)</th><th>sync ms</th><th>mount wait ms</th><th>checks</th><th>interval ms</th><th>lost to polling ms</th></tr>");
        for (i, p) in report.pods.iter().enumerate() {
            let mw = p.mount_wait.as_ref();
            let link = if i < MAX_PODS_DRAWN {
                format!("<a href=\"#pod-{i}\">{}</a>", esc(&pod_title(p)))
            } else {
                esc(&pod_title(p))
            };
            let _ = write!(
                b,
                "<tr><td>{link}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                iso_utc(p.start_unix_ns),
                opt_ms(p.stages.first().and_then(|s| s.duration_ms)),
                opt_ms(mw.and_then(|m| m.duration_ms)),
                mw.map(|m| m.checks.len().to_string()).unwrap_or_else(|| "–".into()),
                opt_ms(mw.and_then(|m| m.observed_interval_ms.or(m.configured_interval_ms))),
                opt_ms(mw.and_then(|m| m.lost_to_polling_ms)),
            );
        }
        b.push_str("</table>");
        b.push_str("<h2>Waterfalls</h2>");
        let mut lg = String::new();
        let lh = legend(&mut lg, &stage_names(report), 2.0);
        let _ = write!(
            b,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{lh:.0}">{lg}</svg>"##
        );
        for (i, p) in report.pods.iter().take(MAX_PODS_DRAWN).enumerate() {
            let _ = write!(b, "<div id=\"pod-{i}\">{}</div>", pod_svg(p));
        }
        if report.pods.len() > MAX_PODS_DRAWN {
            let _ = write!(
                b,
                "<p class=\"meta\">{} more pods not drawn.</p>",
                report.pods.len() - MAX_PODS_DRAWN
            );
        }
    }
    if !report.loops.is_empty() {
        b.push_str("<h2>Loops</h2><table><tr><th>loop</th><th>binary</th><th>ticks</th><th>period p50 ms</th><th>period p90 ms</th><th>tick p50 ms</th><th>busy ms/s</th></tr>");
        for l in &report.loops {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.loop_name),
                esc(&l.binary),
                l.ticks,
                opt_ms(l.period_p50_ms),
                opt_ms(l.period_p90_ms),
                opt_ms(l.duration_p50_ms),
                opt_ms(l.busy_ms_per_s)
            );
        }
        b.push_str("</table>");
    }
    if !report.cpu.is_empty() {
        b.push_str("<h2>CPU</h2><p class=\"meta\">User + system CPU of each traced process (/proc/PID/stat), and its loops' busy time in the same window.</p><table><tr><th>binary</th><th>pid</th><th>window s</th><th>CPU ms/s</th><th>loops busy ms/s</th></tr>");
        for w in &report.cpu {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                esc(&w.binary),
                w.pid,
                w.window_s,
                w.cpu_ms_per_s,
                w.loops_busy_ms_per_s
            );
        }
        b.push_str("</table>");
    }
    let s = &report.stats;
    let _ = write!(
        b,
        "<p class=\"meta\">{} spans · {} morestack duplicates dropped · {} aged out · {} unmatched exits · {} open at end</p>",
        s.spans, s.duplicate_entries, s.aged_out, s.unmatched_exits, s.open_at_end
    );
    page("podtrace report", &b)
}

/// Writes the report's HTML page and/or SVG picture.
pub fn write_report_pictures(
    report: &Report,
    html: Option<&Path>,
    svg: Option<&Path>,
) -> Result<()> {
    if let Some(p) = html {
        std::fs::write(p, report_html(report))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = svg {
        std::fs::write(p, report_svg(report))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Stage distributions, one panel per stage, one row per run; returns height.
fn compare_panels(o: &mut String, cmp: &Comparison, y0: f64) -> f64 {
    let mut y = y0;
    let (x0, x1) = (LABEL_W, WIDTH - 330.0);
    let row_h = 28.0;
    for st in &cmp.stages {
        let max = st
            .samples
            .iter()
            .flatten()
            .fold(0.0f64, |m, v| m.max(*v))
            .max(1e-3)
            * 1.05;
        let sx = |v: f64| x0 + v.max(0.0) / max * (x1 - x0);
        let _ = write!(
            o,
            r##"<rect x="0" y="{:.1}" width="12" height="12" rx="2" fill="{}"/><text x="18" y="{:.1}" font-size="14" font-weight="600" fill="#1d232a">{}{}</text>"##,
            y + 3.0,
            stage_color(&st.stage),
            y + 14.0,
            esc(&st.stage),
            if st.pods == "all pods" {
                String::new()
            } else {
                format!(
                    r##"<tspan font-size="11" font-weight="400" fill="#5b6670"> ({})</tspan>"##,
                    esc(st.pods)
                )
            }
        );
        let top = y + 22.0;
        let bottom = top + row_h * cmp.runs.len() as f64 + 4.0;
        axis(o, x0, x1, max, top, bottom);
        for (r, run) in cmp.runs.iter().enumerate() {
            let ry = top + r as f64 * row_h;
            let cy = ry + row_h / 2.0;
            let color = RUN_COLORS[r % RUN_COLORS.len()];
            let mut v = st.samples.get(r).cloned().unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let _ = write!(
                o,
                r##"<text x="4" y="{:.1}" font-size="12" fill="{color}" font-weight="600">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#5b6670" text-anchor="end">n={}</text>"##,
                cy + 4.0,
                esc(&run.label),
                x0 - 8.0,
                cy + 4.0,
                v.len()
            );
            if let (Some(min), Some(max_v), Some(q1), Some(q3), Some(p50), Some(p90)) = (
                v.first(),
                v.last(),
                percentile(&v, 25.0),
                percentile(&v, 75.0),
                percentile(&v, 50.0),
                percentile(&v, 90.0),
            ) {
                let _ = write!(
                    o,
                    r##"<g class="dist"><title>{}: n={} min {} p25 {} p50 {} p75 {} p90 {} max {} ms</title><line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="{color}" stroke-width="1.5"/><rect x="{:.1}" y="{:.1}" width="{:.1}" height="16" fill="{color}" fill-opacity="0.25" stroke="{color}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="2 2"/></g>"##,
                    esc(&run.label),
                    v.len(),
                    ms(*min),
                    ms(q1),
                    ms(p50),
                    ms(q3),
                    ms(p90),
                    ms(*max_v),
                    sx(*min),
                    sx(*max_v),
                    sx(q1),
                    cy - 8.0,
                    (sx(q3) - sx(q1)).max(1.5),
                    sx(p50),
                    cy - 10.0,
                    sx(p50),
                    cy + 10.0,
                    sx(p90),
                    cy - 10.0,
                    sx(p90),
                    cy + 10.0
                );
                // Every sample as a dot, jittered (deterministically) off the line.
                let mut rng = SplitMix64::new(r as u64 + 1);
                for x in &v {
                    let j = (rng.below(1000) as f64 / 1000.0 - 0.5) * 12.0;
                    let _ = write!(
                        o,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="2.3" fill="{color}" fill-opacity="0.8"><title>{} ms</title></circle>"##,
                        sx(*x),
                        cy + j,
                        ms(*x)
                    );
                }
            }
            // The prediction from the first run: a hollow diamond at its
            // p50, a bar over the interval of a run's median.
            if let Some(p) = st.predicted.get(r).and_then(Option::as_ref) {
                let (px, lo, hi) = (sx(p.p50), sx(p.low), sx(p.high));
                let _ = write!(
                    o,
                    r##"<g class="predicted"><title>predicted from {}: p50 {} ms, a run of {} pods has its p50 in [{}, {}] ms ({:.0}%)</title><line x1="{lo:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#1d232a" stroke-width="2"/><path d="M{px:.1} {:.1} l5 5 l-5 5 l-5 -5 z" fill="#fff" stroke="#1d232a" stroke-width="1.5"/></g>"##,
                    esc(&cmp.runs[0].label),
                    ms(p.p50),
                    p.n,
                    ms(p.low),
                    ms(p.high),
                    cmp.method.confidence * 100.0,
                    cy + 12.0,
                    hi.max(lo + 1.0),
                    cy + 12.0,
                    cy + 7.0,
                );
            }
            if let Some(d) = st.diffs.get(r).and_then(Option::as_ref) {
                let ci = match (d.ci_low, d.ci_high) {
                    (Some(l), Some(h)) => {
                        format!("interval [{}, {}] · ", signed_ms(l), signed_ms(h))
                    }
                    _ => String::new(),
                };
                let fill = match (d.significant, d.verdict.as_str()) {
                    (true, "faster") => "#15803d",
                    (true, _) => "#b91c1c",
                    _ => "#5b6670",
                };
                let _ = write!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="{fill}" font-weight="600">shift {} ms{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="{fill}">{}{}</text>"##,
                    x1 + 50.0,
                    cy - 2.0,
                    signed_ms(d.shift),
                    d.shift_rel_pct
                        .filter(|_| d.shift != 0.0)
                        .map(|p| format!(" ({p:+.0}%)"))
                        .unwrap_or_default(),
                    x1 + 50.0,
                    cy + 11.0,
                    esc(&ci),
                    esc(&d.verdict)
                );
            }
        }
        y = bottom + 30.0;
    }
    y - y0
}

/// The comparison's distributions as a standalone SVG.
pub fn compare_svg(cmp: &Comparison) -> String {
    let mut body = String::new();
    let h = compare_panels(&mut body, cmp, 4.0) + 8.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h:.0}" viewBox="-20 0 {} {h:.0}" font-family="sans-serif"><rect x="-20" y="0" width="{}" height="{h:.0}" fill="#fff"/>{body}</svg>
"##,
        WIDTH + 40.0,
        WIDTH + 40.0,
        WIDTH + 40.0
    )
}

/// Which build each run traced (`binaries`), and what changed.
fn compare_builds_html(b: &mut String, cmp: &Comparison) {
    if cmp
        .runs
        .iter()
        .all(|r| r.builds.values().all(Vec::is_empty))
    {
        return;
    }
    b.push_str("<h2>Binaries</h2><table><tr><th>run</th><th>binary</th><th>build</th><th>against the first run</th></tr>");
    for (i, r) in cmp.runs.iter().enumerate() {
        for (name, builds) in &r.builds {
            let change = cmp
                .builds
                .get(i)
                .and_then(|v| v.iter().find(|c| &c.binary == name))
                .map(|c| c.change)
                .unwrap_or("");
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.label),
                esc(name),
                esc(&builds.join(", ")),
                esc(change)
            );
        }
    }
    b.push_str("</table>");
}

/// The drift between runs, from the controls, beside the shifts.
fn compare_drift_html(b: &mut String, cmp: &Comparison) {
    if cmp.drift.iter().all(Option::is_none) {
        return;
    }
    b.push_str("<h2>Drift between runs</h2><p class=\"meta\">Controls: stages the compared change cannot touch; their shift between the runs is drift, and a stage is credited to the change only with what its own shift exceeds it by (the <i>net of drift</i> column below). Method: docs/compare.md, “Drift between runs”.</p><table><tr><th>run</th><th>controls</th><th>stage</th><th>shift</th></tr>");
    for (r, d) in cmp.runs.iter().zip(&cmp.drift) {
        let Some(d) = d else { continue };
        let pct = |p: f64, lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
            (Some(l), Some(h)) => format!("{p:+.1}% [{l:+.1}, {h:+.1}]"),
            _ => format!("{p:+.1}%"),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td><b>pooled</b></td><td><b>{}</b>{}</td></tr>",
            esc(&r.label),
            esc(&d.controls.reason),
            pct(d.shift_pct, d.low_pct, d.high_pct),
            if d.significant {
                ""
            } else {
                " (no clear drift)"
            }
        );
        for c in &d.per_control {
            let _ = write!(
                b,
                "<tr><td></td><td></td><td>{}</td><td>{}{}</td></tr>",
                esc(&c.stage),
                pct(c.shift_pct, c.low_pct, c.high_pct),
                if d.disagreeing.contains(&c.stage) {
                    " — apart from the other controls"
                } else {
                    ""
                }
            );
        }
    }
    b.push_str("</table>");
}

/// The comparison as a self-contained HTML page.
pub fn compare_html(cmp: &Comparison) -> String {
    let mut b = String::new();
    let labels: Vec<String> = cmp.runs.iter().map(|r| esc(&r.label)).collect();
    let _ = write!(b, "<h1>podtrace compare: {}</h1>", labels.join(" vs "));
    for r in &cmp.runs {
        let _ = write!(
            b,
            "<p class=\"meta\"><b>{}</b>: {} · {} · {} pods · {} events, {} dropped{}</p>",
            esc(&r.label),
            esc(&r.source),
            esc(&r.hostname),
            r.pods,
            r.events,
            r.drops,
            if r.complete {
                ""
            } else {
                " · recording interrupted"
            }
        );
    }
    for w in &cmp.warnings {
        let _ = write!(b, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
    for h in &cmp.headline {
        let _ = write!(b, "<p class=\"headline\">{}</p>", esc(h));
    }
    compare_builds_html(&mut b, cmp);
    compare_drift_html(&mut b, cmp);
    b.push_str("<h2>Pods by mount wait</h2><table><tr><th></th>");
    for l in &labels {
        let _ = write!(b, "<th>{l}</th>");
    }
    b.push_str("</tr>");
    let rows: Vec<[(&str, usize); 5]> = cmp.runs.iter().map(|r| r.classes.rows()).collect();
    for i in 0..5 {
        if i >= 3 && rows.iter().all(|r| r[i].1 == 0) {
            continue;
        }
        let _ = write!(
            b,
            "<tr><td>{}</td>",
            esc(rows.first().map(|r| r[i].0).unwrap_or(""))
        );
        for r in &rows {
            let _ = write!(b, "<td>{}</td>", r[i].1);
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    let base = labels.first().cloned().unwrap_or_default();
    let _ = write!(
        b,
        "<h2>Stage durations</h2><p class=\"meta\">Per run: box p25–p75, thick mark p50, dashed p90, whiskers min–max, one dot per sample; hollow diamond: p50 predicted from {base} with that run's intervals, its bar the {:.0}% interval of a run's p50. Shift: Hodges–Lehmann shift against {base} with its {:.0}% Mann–Whitney interval; a difference counts only if the interval excludes 0 and the shift is at least {}% of {base}'s p50 and {} ms. Mount wait and lost to polling: pods that waited for a poll tick.</p>",
        cmp.method.confidence * 100.0,
        cmp.method.confidence * 100.0,
        cmp.method.min_effect_pct,
        cmp.method.min_effect_ms
    );
    let mut panels = String::new();
    let h = compare_panels(&mut panels, cmp, 4.0);
    let _ = write!(
        b,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h:.0}" viewBox="-20 0 {} {h:.0}">{panels}</svg>"##,
        WIDTH + 40.0,
        WIDTH + 40.0
    );
    b.push_str("<table><tr><th>stage</th><th>run</th><th>n</th><th>p50</th><th>p90</th><th>p99</th><th>mean</th><th>shift</th><th>interval of shift</th><th>verdict</th><th>net of drift</th><th>predicted p50 [interval]</th></tr>");
    for st in &cmp.stages {
        for (i, r) in cmp.runs.iter().enumerate() {
            let Some(s) = st.runs.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let d = st.diffs.get(i).and_then(Option::as_ref);
            let class = d
                .filter(|d| d.significant)
                .map(|d| format!(" class=\"sig {}\"", esc(&d.verdict)))
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{class}>{}</td><td>{}</td><td>{}</td></tr>",
                match (i, st.pods) {
                    (0, "all pods") => esc(&st.stage),
                    (0, pods) => format!("{} ({})", esc(&st.stage), esc(pods)),
                    _ => String::new(),
                },
                esc(&r.label),
                s.n,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.mean),
                d.map(|d| signed_ms(d.shift)).unwrap_or_default(),
                d.and_then(|d| Some(format!("[{}, {}]", signed_ms(d.ci_low?), signed_ms(d.ci_high?))))
                    .unwrap_or_default(),
                d.map(|d| esc(&d.verdict)).unwrap_or_default(),
                d.filter(|d| d.verdict != "control")
                    .and_then(|d| d.net_of_drift)
                    .map(|n| format!("{:+.1}% [{:+.1}, {:+.1}]", n.net_pct, n.low_pct, n.high_pct))
                    .unwrap_or_default(),
                st.predicted
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|p| format!("{} [{}, {}]", ms(p.p50), ms(p.low), ms(p.high)))
                    .unwrap_or_default()
            );
        }
    }
    b.push_str("</table>");
    b.push_str("<h2>Mount wait polling</h2><table><tr><th></th>");
    for l in &labels {
        let _ = write!(b, "<th>{l}</th>");
    }
    b.push_str("</tr>");
    let p50 = |s: &Option<crate::analysis::compare::Summary>| opt_ms(s.as_ref().map(|s| s.p50));
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "pods with a mount wait",
            cmp.polling
                .iter()
                .map(|p| p.pods_with_mount_wait.to_string())
                .collect(),
        ),
        (
            "poll checks per pod (p50)",
            cmp.polling
                .iter()
                .map(|p| {
                    p.checks_per_pod
                        .as_ref()
                        .map(|s| format!("{:.0}", s.p50))
                        .unwrap_or_else(|| "–".into())
                })
                .collect(),
        ),
        (
            "interval configured (p50)",
            cmp.polling
                .iter()
                .map(|p| p50(&p.configured_interval_ms))
                .collect(),
        ),
        (
            "interval observed (p50)",
            cmp.polling
                .iter()
                .map(|p| p50(&p.observed_interval_ms))
                .collect(),
        ),
        (
            "lost to polling (p50)",
            cmp.polling
                .iter()
                .map(|p| p50(&p.lost_to_polling_ms))
                .collect(),
        ),
        (
            "lost to polling (p90)",
            cmp.polling
                .iter()
                .map(|p| opt_ms(p.lost_to_polling_ms.as_ref().map(|s| s.p90)))
                .collect(),
        ),
    ];
    for (name, cells) in rows {
        let _ = write!(b, "<tr><td>{name}</td>");
        for c in cells {
            let _ = write!(b, "<td>{c}</td>");
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    if !cmp.loops.is_empty() {
        b.push_str("<h2>Loop periods (p50 / p90)</h2><table><tr><th>loop</th>");
        for l in &labels {
            let _ = write!(b, "<th>{l}</th>");
        }
        b.push_str("</tr>");
        for l in &cmp.loops {
            let _ = write!(b, "<tr><td>{} ({})</td>", esc(&l.loop_name), esc(&l.binary));
            for r in &l.runs {
                let cell = r
                    .as_ref()
                    .map(|f| format!("{} / {}", opt_ms(f.period_p50_ms), opt_ms(f.period_p90_ms)))
                    .unwrap_or_else(|| "–".into());
                let _ = write!(b, "<td>{cell}</td>");
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
        b.push_str("<h2>Loop cost, ms of each second</h2><p class=\"meta\">busy: inside the loop function; CPU: user + system of the process (/proc)</p><table><tr><th></th>");
        for l in &labels {
            let _ = write!(b, "<th>{l}</th>");
        }
        b.push_str("</tr>");
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        for l in &cmp.loops {
            let _ = write!(
                b,
                "<tr><td>{} busy ({})</td>",
                esc(&l.loop_name),
                esc(&l.binary)
            );
            for r in &l.runs {
                let _ = write!(
                    b,
                    "<td>{}</td>",
                    cell(r.as_ref().and_then(|f| f.busy_ms_per_s))
                );
            }
            b.push_str("</tr>");
        }
        for c in &cmp.cpu {
            let _ = write!(b, "<tr><td>{} CPU</td>", esc(&c.binary));
            for r in &c.runs {
                let _ = write!(b, "<td>{}</td>", cell(r.as_ref().map(|f| f.cpu_ms_per_s)));
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
    }
    page(
        &format!(
            "podtrace compare: {}",
            cmp.runs
                .iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(" vs ")
        ),
        &b,
    )
}

/// `podtrace report` over several nodes as one page: the node comparison
/// (per-node medians, the pooled distribution, the nodes that differ),
/// every pod with its node, and each node's waterfalls.
pub fn fleet_report_html(fr: &crate::analysis::fleet::FleetReport) -> String {
    let f = &fr.fleet;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>podtrace report: {} nodes</h1><p class=\"meta\">{} pod starts</p>",
        fr.nodes.len(),
        f.pooled.pods
    );
    let p50 = |s: &Option<crate::analysis::compare::Summary>| opt_ms(s.as_ref().map(|s| s.p50));
    let p90 = |s: &Option<crate::analysis::compare::Summary>| opt_ms(s.as_ref().map(|s| s.p90));
    b.push_str("<h2>Nodes</h2><table><tr><th>node</th><th>files</th><th>pods</th><th>pod start p50 ms</th><th>p90 ms</th><th>sync p50 ms</th><th>pod start vs the other nodes</th><th></th></tr>");
    for n in &f.nodes {
        let vs = n
            .vs_others
            .iter()
            .find(|s| s.metric == "pod")
            .map(|s| s.describe())
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.node),
            n.files.len(),
            n.pods,
            p50(&n.pod),
            p90(&n.pod),
            p50(&n.sync),
            esc(&vs),
            if n.outlier { "<b>differs</b>" } else { "" }
        );
    }
    let _ = write!(
        b,
        "<tr><td><b>all nodes</b></td><td></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td></td><td></td></tr></table>",
        f.pooled.pods,
        p50(&f.pooled.pod),
        p90(&f.pooled.pod),
        p50(&f.pooled.sync)
    );
    for line in f.to_table().lines().filter(|l| l.starts_with("node ")) {
        let _ = write!(b, "<p class=\"warn\">{}</p>", esc(line));
    }
    if f.outliers.is_empty() && f.nodes.len() > 1 {
        b.push_str("<p class=\"meta\">No node differs from the others.</p>");
    }
    b.push_str("<h2>Pods</h2><table><tr><th>node</th><th>pod</th><th>pod start ms</th><th>sync ms</th></tr>");
    for p in &fr.pods {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.node),
            esc(p.namespace.as_deref().unwrap_or("?")),
            esc(p.name.as_deref().unwrap_or(&p.uid)),
            opt_ms(p.pod_ms),
            opt_ms(p.sync_ms)
        );
    }
    b.push_str("</table>");
    let mut drawn = 0;
    for (n, r) in &fr.nodes {
        let _ = write!(b, "<h2>Node {}</h2>", esc(&n.node));
        for w in &r.warnings {
            let _ = write!(b, "<p class=\"warn\">warning: {}</p>", esc(w));
        }
        let mut lg = String::new();
        let lh = legend(&mut lg, &stage_names(r), 2.0);
        let _ = write!(
            b,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{lh:.0}">{lg}</svg>"##
        );
        for p in &r.pods {
            if drawn >= MAX_PODS_DRAWN {
                break;
            }
            let _ = write!(
                b,
                "<div><p class=\"meta\">{} on node {}</p>{}</div>",
                esc(&pod_title(p)),
                esc(&n.node),
                pod_svg(p)
            );
            drawn += 1;
        }
    }
    let total: usize = fr.nodes.iter().map(|(_, r)| r.pods.len()).sum();
    if total > drawn {
        let _ = write!(
            b,
            "<p class=\"meta\">{} more pods not drawn.</p>",
            total - drawn
        );
    }
    page("podtrace report: nodes", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso_utc(1_767_225_600_123_000_000),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(iso_utc(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(1000.0, 8.0), 200.0);
        assert_eq!(nice_step(7.3, 8.0), 1.0);
        assert_eq!(nice_step(0.0, 8.0), 1.0);
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
