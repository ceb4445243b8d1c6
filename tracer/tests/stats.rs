//! The two-sample statistics against reference values from SciPy and NumPy
//! (tracer/tests/fixtures/rank_stats.py wrote rank_stats.json; rerun it to
//! regenerate).

use podtrace::analysis::stats::{null_cdf, shift, verdict, Method, MinEffect, Verdict};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    confidence: f64,
    exact_max_pairs: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    baseline: Vec<f64>,
    run: Vec<f64>,
    method: String,
    u: f64,
    p_value: f64,
    shift: f64,
    k: usize,
    low: Option<f64>,
    high: Option<f64>,
    achieved_confidence: Option<f64>,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("fixtures/rank_stats.json")).expect("rank_stats.json")
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn shift_interval_and_test_match_scipy() {
    let f = fixture();
    assert_eq!(
        f.exact_max_pairs,
        podtrace::analysis::stats::EXACT_MAX_PAIRS
    );
    assert!(f.cases.len() >= 10);
    for c in &f.cases {
        let s = shift(&c.baseline, &c.run, f.confidence).expect("samples");
        let want_method = match c.method.as_str() {
            "exact" => Method::Exact,
            _ => Method::Normal,
        };
        assert_eq!(s.method, want_method, "{}: method", c.name);
        assert_eq!(s.u, c.u, "{}: U", c.name);
        assert!(
            close(s.p_value, c.p_value, 1e-9),
            "{}: p {} vs SciPy {}",
            c.name,
            s.p_value,
            c.p_value
        );
        // Differences of the same floats: the same floats.
        assert_eq!(s.estimate, c.shift, "{}: Hodges-Lehmann", c.name);
        assert_eq!(s.k, c.k, "{}: k", c.name);
        assert_eq!((s.low, s.high), (c.low, c.high), "{}: interval", c.name);
        match (s.achieved_confidence, c.achieved_confidence) {
            (Some(g), Some(w)) => assert!(close(g, w, 1e-9), "{}: {g} vs {w}", c.name),
            (g, w) => assert_eq!(g, w, "{}: achieved confidence", c.name),
        }
    }
}

#[test]
fn verdicts_of_the_reference_cases() {
    let f = fixture();
    let min = MinEffect::default();
    let get = |name: &str| {
        let c = f.cases.iter().find(|c| c.name == name).expect(name);
        let s = shift(&c.baseline, &c.run, f.confidence).expect("samples");
        let mut base = c.baseline.clone();
        base.sort_by(f64::total_cmp);
        verdict(&s, base[(base.len() - 1) / 2], &min)
    };
    // The five pods: one default pod never waited, and the interval
    // reaches across 0: five pods cannot tell, even for a 10x change.
    assert_eq!(get("mixture_5_vs_5"), Verdict::NoClearDifference);
    assert_eq!(get("too_few_3_vs_3"), Verdict::TooFewSamples);
    assert_eq!(get("one_vs_five"), Verdict::TooFewSamples);
    assert_eq!(get("separated_4_vs_4"), Verdict::Slower);
    assert_eq!(get("ten_x_30_vs_30"), Verdict::Faster);
    // A 2 % change: below the threshold whatever its interval.
    assert_eq!(get("two_pct_30_vs_30"), Verdict::NoClearDifference);
    assert_eq!(get("large_120_vs_110"), Verdict::Faster);
    assert_eq!(get("skewed_20_vs_25"), Verdict::Faster);
}

/// P(U ≤ u) from the exact recursion against a count of every split of
/// ranks: two implementations that share nothing.
#[test]
fn null_distribution_matches_enumeration() {
    for (m, n) in [(1, 1), (2, 5), (4, 4), (5, 6), (7, 3)] {
        let total = (m + n) as u32;
        let mut counts = vec![0u64; m * n + 1];
        let mut splits = 0u64;
        for mask in 0u32..(1 << total) {
            if mask.count_ones() as usize != m {
                continue;
            }
            splits += 1;
            // U: pairs (x, y) with x's rank above y's.
            let mut u = 0;
            let mut ys_below = 0;
            for r in 0..total {
                if mask & (1 << r) != 0 {
                    u += ys_below;
                } else {
                    ys_below += 1;
                }
            }
            counts[u] += 1;
        }
        let cdf = null_cdf(m, n);
        let mut acc = 0u64;
        for (u, c) in counts.iter().enumerate() {
            acc += c;
            let want = acc as f64 / splits as f64;
            assert!(
                (cdf[u] - want).abs() < 1e-12,
                "m={m} n={n} u={u}: {} vs {want}",
                cdf[u]
            );
        }
    }
}

#[derive(Deserialize)]
struct NormalFixture {
    /// [z, cdf, sf]
    cdf: Vec<(f64, f64, f64)>,
    /// [p, ppf]
    ppf: Vec<(f64, f64)>,
}

/// The standard normal written for `compare` (analysis/normal.rs, in place
/// of statrs) against SciPy's norm.cdf, norm.sf and norm.ppf
/// (tracer/tests/fixtures/normal.py wrote normal.json): across the whole
/// range of the doubles they return, and every branch of erfc and of AS 241.
#[test]
fn the_normal_distribution_matches_scipy() {
    use podtrace::analysis::normal::{cdf, inverse_cdf, sf};
    let f: NormalFixture =
        serde_json::from_str(include_str!("fixtures/normal.json")).expect("normal.json");
    assert!(f.cdf.len() > 700 && f.ppf.len() > 100);
    // Relative, for values down to the smallest normal doubles (below, the
    // subnormals keep fewer digits).
    let near = |got: f64, want: f64, rel: f64| {
        if want.abs() < f64::MIN_POSITIVE {
            got.abs() < 1e-300
        } else {
            (got - want).abs() <= rel * want.abs()
        }
    };
    for &(z, c, s) in &f.cdf {
        assert!(near(cdf(z), c, 1e-13), "cdf({z}) = {} vs SciPy {c}", cdf(z));
        assert!(near(sf(z), s, 1e-13), "sf({z}) = {} vs SciPy {s}", sf(z));
    }
    for &(p, z) in &f.ppf {
        assert!(
            near(inverse_cdf(p), z, 1e-13),
            "ppf({p}) = {} vs SciPy {z}",
            inverse_cdf(p)
        );
    }
}
