//! Pictures: the report's waterfall and the comparison's distributions are
//! self-contained, carry every poll check and marker, and render: headless
//! Chromium takes a screenshot and the stage colours are found in its pixels.
//!
//! Chromium: Debian's `chromium` (or $PODTRACE_CHROMIUM), which `cargo
//! xtask setup` installs. Without it the rendering tests fail and say so.

use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use podtrace::{
    analysis::compare::{compare, Run},
    analysis::report::Report,
    correlate::correlate,
    html::{self, stage_color},
    test_support::synth::{synth, SynthPod, SynthSpec, SynthTruth},
};

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("html-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn pods(n: usize, poll_ms: f64) -> SynthSpec {
    SynthSpec::new(
        (0..n)
            .map(|i| {
                let mut p = SynthPod::new(
                    i,
                    20.0 + 400.0 * i as f64,
                    150.0 + 90.0 * (i % 4) as f64,
                    poll_ms,
                );
                p.volumes_ms.push(60.0 + 10.0 * i as f64);
                p.containers_ms = vec![25.0, 18.0];
                p
            })
            .collect(),
    )
}

fn report(n: usize, poll_ms: f64) -> (Report, SynthTruth) {
    let (t, truth) = synth(&pods(n, poll_ms)).expect("synth");
    (Report::build(&t, &correlate(&t)), truth)
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Nothing that a browser would fetch: no scripts, styles or images from
/// elsewhere; the only URL is the SVG namespace name.
fn assert_self_contained(page: &str) {
    for bad in [
        "<script", "<link", " src=", "url(", "@import", "<img", "<iframe",
    ] {
        assert!(!page.contains(bad), "page contains {bad}");
    }
    let urls = count(page, "http://") + count(page, "https://");
    assert_eq!(
        urls,
        count(page, "http://www.w3.org/2000/svg"),
        "only the SVG namespace"
    );
}

fn assert_balanced(svg: &str) {
    assert_eq!(count(svg, "<svg"), count(svg, "</svg>"));
    assert_eq!(count(svg, "<g ") + count(svg, "<g>"), count(svg, "</g>"));
    assert_eq!(count(svg, "<title>"), count(svg, "</title>"));
    assert_eq!(count(svg, "<text"), count(svg, "</text>"));
}

#[test]
fn report_page_is_self_contained_and_marks_every_check() {
    let (r, truth) = report(5, 100.0);
    let page = html::report_html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_self_contained(&page);
    assert_balanced(&page);
    let checks: usize = truth.pods.iter().map(|p| p.checks.len()).sum();
    assert_eq!(
        count(&page, "class=\"check\""),
        checks,
        "one tick per poll check"
    );
    let titles: Vec<&str> = page
        .split("<g class=\"check\"><title>")
        .skip(1)
        .filter_map(|s| s.split("</title>").next())
        .collect();
    assert_eq!(titles.len(), checks);
    assert!(
        titles
            .iter()
            .all(|t| t.starts_with("poll check at ") && t.contains(" unmounted")),
        "{titles:?}"
    );
    assert_eq!(
        count(&page, "class=\"lost\""),
        truth.pods.len(),
        "lost-to-polling interval per pod"
    );
    assert_eq!(
        count(&page, ">volumes mounted</text></g>"),
        truth.pods.len()
    );
    assert_eq!(count(&page, ">noticed</text></g>"), truth.pods.len());
    for p in &truth.pods {
        assert!(page.contains(&p.uid));
        let lost = (p.noticed - p.volumes_mounted.expect("mounted")) as f64 / 1e6;
        let shown = match lost {
            l if l >= 100.0 => format!("{l:.0}"),
            l if l >= 10.0 => format!("{l:.1}"),
            l => format!("{l:.2}"),
        };
        assert!(
            page.contains(&format!("lost to polling: {shown} ms")),
            "lost {shown}"
        );
    }
    let svg = html::report_svg(&r);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_balanced(&svg);
    assert_eq!(count(&svg, "class=\"check\""), checks);
    // Text from the trace is escaped.
    let (mut t, _) = synth(&pods(1, 100.0)).expect("synth");
    for e in &mut t.events {
        for v in e.a.iter_mut().flatten() {
            if let podtrace::format::Val::S(s) = v {
                if s == "pod-0" {
                    *s = "<script>alert(1)</script>".into();
                }
            }
        }
    }
    let page = html::report_html(&Report::build(&t, &correlate(&t)));
    assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
}

#[test]
fn runtime_calls_get_their_own_rows() {
    let mut spec = pods(2, 100.0);
    spec.containerd_pid = Some(900);
    let (t, truth) = synth(&spec).expect("synth");
    let r = Report::build(&t, &correlate(&t));
    let page = html::report_html(&r);
    let bars: usize = r.pods.iter().map(|p| p.stages.len() + p.cri.len()).sum();
    assert_eq!(count(&page, "class=\"stage\""), bars);
    assert_eq!(
        count(&page, ">container runtime (CRI)</text>"),
        truth.pods.len()
    );
    assert!(page.contains("RunPodSandbox: start"));
}

#[test]
fn empty_report_still_renders_a_page() {
    let (t, _) = synth(&SynthSpec::new(vec![])).expect("synth");
    let r = Report::build(&t, &correlate(&t));
    let page = html::report_html(&r);
    assert!(page.contains("No pod syncs in this trace"));
    assert!(html::report_svg(&r).contains("no pod syncs"));
    let dir = tmp("write");
    let (h, s) = (dir.join("r.html"), dir.join("r.svg"));
    html::write_report_pictures(&r, Some(&h), Some(&s)).expect("write");
    assert!(h.exists() && s.exists());
    let e = html::write_report_pictures(&r, Some(&dir.join("no/such/dir/r.html")), None)
        .expect_err("unwritable path must fail")
        .to_string();
    assert!(e.contains("no/such/dir/r.html"), "{e}");
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PODTRACE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
    .find(|p| p.is_file())
}

/// A screenshot of `page` at 1200×900 with headless Chromium.
fn screenshot(page: &Path, png: &Path) {
    let bin = chromium().unwrap_or_else(|| {
        panic!(
            "no chromium on PATH (nor PODTRACE_CHROMIUM): the rendering tests need it; `cargo xtask setup` installs it (apt-get install -y chromium)"
        )
    });
    let dir = png.parent().expect("dir");
    let profile = dir.join(format!(
        "profile-{}",
        png.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ));
    let log = File::create(dir.join("chromium.log")).expect("log");
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait chromium") {
            Some(st) => {
                assert!(
                    st.success(),
                    "chromium failed: {st}; see {}",
                    dir.join("chromium.log").display()
                );
                break;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 120 s");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert!(png.exists(), "no screenshot written");
}

struct Pixels {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode(png_path: &Path) -> Pixels {
    let mut dec = png::Decoder::new(BufReader::new(File::open(png_path).expect("open png")));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let bytes = &buf[..info.buffer_size()];
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => panic!("unexpected colour type {other:?}"),
    };
    let rgb = bytes
        .chunks_exact(step)
        .map(|p| {
            if step < 3 {
                [p[0]; 3]
            } else {
                [p[0], p[1], p[2]]
            }
        })
        .collect();
    Pixels {
        width: info.width,
        height: info.height,
        rgb,
    }
}

fn hex(c: &str) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).expect("hex colour");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

impl Pixels {
    fn near(&self, c: [u8; 3]) -> usize {
        self.rgb
            .iter()
            .filter(|p| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 8))
            .count()
    }
    /// Pixels that are not the white page background.
    fn ink(&self) -> usize {
        self.rgb
            .iter()
            .filter(|p| p.iter().any(|v| *v < 245))
            .count()
    }
}

#[test]
fn report_waterfall_renders_in_chromium() {
    let dir = tmp("shot");
    let (r, _) = report(4, 300.0);
    let page = dir.join("report.html");
    std::fs::write(&page, html::report_html(&r)).expect("write html");
    let png = dir.join("report.png");
    screenshot(&page, &png);
    let px = decode(&png);
    assert_eq!((px.width, px.height), (1200, 900));
    let total = px.rgb.len();
    let ink = px.ink();
    let sync = px.near(hex(stage_color("sync")));
    let mount = px.near(hex(stage_color("mount_wait")));
    let sandbox = px.near(hex(stage_color("create_sandbox")));
    eprintln!(
        "report screenshot {}: {}x{}, {ink} of {total} pixels not background ({:.1}%), sync {sync}, mount_wait {mount}, create_sandbox {sandbox}",
        png.display(),
        px.width,
        px.height,
        100.0 * ink as f64 / total as f64
    );
    assert!(
        ink as f64 > 0.03 * total as f64,
        "a blank page: {ink} of {total} pixels"
    );
    // Bars are 15 px tall and tens to hundreds of px long.
    assert!(sync > 1000, "sync bars: {sync} pixels");
    assert!(mount > 1000, "mount wait bars: {mount} pixels");
    assert!(sandbox > 100, "sandbox bars: {sandbox} pixels");

    // The standalone SVG renders too.
    let svg = dir.join("report.svg");
    std::fs::write(&svg, html::report_svg(&r)).expect("write svg");
    let png = dir.join("report-svg.png");
    screenshot(&svg, &png);
    let px = decode(&png);
    let mount = px.near(hex(stage_color("mount_wait")));
    eprintln!(
        "svg screenshot: mount_wait {mount} pixels, {} not background",
        px.ink()
    );
    assert!(mount > 1000, "svg mount wait bars: {mount} pixels");
}

#[test]
fn compare_distributions_render_in_chromium() {
    let dir = tmp("cmp");
    let runs: Vec<Run> = [("default", 300.0), ("tuned", 100.0)]
        .iter()
        .map(|(l, poll)| {
            let (t, _) = synth(&pods(8, *poll)).expect("synth");
            Run::new(l, &format!("{l}.trace"), &t, &correlate(&t))
        })
        .collect();
    let cmp = compare(&runs).expect("compare");
    let page_text = html::compare_html(&cmp);
    assert_self_contained(&page_text);
    assert_balanced(&page_text);
    assert_eq!(
        count(&page_text, "class=\"dist\""),
        cmp.stages.len() * 2,
        "a distribution per stage and run"
    );
    let svg = html::compare_svg(&cmp);
    assert_balanced(&svg);
    let page = dir.join("compare.html");
    std::fs::write(&page, &page_text).expect("write");
    let png = dir.join("compare.png");
    screenshot(&page, &png);
    let px = decode(&png);
    // Run colours: the first run blue, the second orange (boxes and dots).
    let (a, b) = (px.near(hex("#4e79a7")), px.near(hex("#f28e2b")));
    eprintln!(
        "compare screenshot {}: {} not background, run colours {a} / {b}",
        png.display(),
        px.ink()
    );
    assert!(px.ink() as f64 > 0.03 * px.rgb.len() as f64);
    assert!(a > 300 && b > 300, "run colours {a} / {b}");
}
