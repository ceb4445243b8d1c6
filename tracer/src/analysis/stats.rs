//! Two-sample statistics for `compare`: the Hodges–Lehmann estimate of the
//! shift between two runs' durations, its distribution-free confidence
//! interval from the Mann–Whitney U statistic (exact for small samples),
//! and the U test itself. Method and references: docs/compare.md.
//!
//! The normal distribution is [`super::normal`]'s (statrs had it, and a U
//! test with no interval that enumerates every split for its exact
//! p-value, too slow for 30 pods a side). What no maintained crate has is
//! written here: the Hodges–Lehmann shift, the exact null distribution of U
//! by a recursion (polynomial in m·n), and the interval read off the sorted
//! differences.

use super::normal;
use serde::Serialize;

/// The exact null distribution is used when the pooled sample has no ties
/// and there are at most this many pairs (its cost grows as pairs² / 4:
/// 25 M steps here, a few ms); beyond it the normal approximation is
/// accurate to well under the interval's resolution.
pub const EXACT_MAX_PAIRS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Exact null distribution of U.
    Exact,
    /// Normal approximation with tie correction and continuity correction.
    Normal,
}

/// How `run` differs from `baseline`: the Hodges–Lehmann shift (median of
/// all m·n differences run_j − baseline_i) and its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    pub estimate: f64,
    /// The interval [D₍ₖ₎, D₍ₘₙ₊₁₋ₖ₎] of the sorted differences; None when
    /// no interval reaches the confidence with this many samples.
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// The rank k used (0: no interval).
    pub k: usize,
    /// The interval's coverage, at least the one asked for (the U
    /// distribution is discrete).
    pub achieved_confidence: Option<f64>,
    /// Mann–Whitney U of run against baseline (pairs with run above
    /// baseline, ties counted half), as SciPy's `mannwhitneyu(run, baseline)`.
    pub u: f64,
    /// Two-sided p-value of the U test.
    pub p_value: f64,
    pub method: Method,
}

/// True if some value occurs twice in the pooled sample.
fn has_ties(a: &[f64], b: &[f64]) -> bool {
    let mut v: Vec<f64> = a.iter().chain(b).copied().collect();
    v.sort_by(f64::total_cmp);
    v.windows(2).any(|w| w[0] == w[1])
}

/// P(U ≤ u) for u = 0..=m·n under the null hypothesis (no ties), U the
/// count of pairs in which an observation of the m-sample exceeds one of
/// the n-sample. Recursion on the largest of all m+n observations: it
/// belongs to the m-sample with probability m/(m+n) and then beats all n:
/// p(m,n; u) = m/(m+n)·p(m−1,n; u−n) + n/(m+n)·p(m,n−1; u). Only sums of
/// positive terms: no cancellation.
pub fn null_cdf(m: usize, n: usize) -> Vec<f64> {
    // The distribution is symmetric in (m, n): iterate over the smaller.
    let (m, n) = (m.min(n), m.max(n));
    // col[i] = p(i, j; ·) for the current j.
    let mut col: Vec<Vec<f64>> = vec![vec![1.0]; m + 1];
    for j in 1..=n {
        let mut next: Vec<Vec<f64>> = Vec::with_capacity(m + 1);
        next.push(vec![1.0]);
        for i in 1..=m {
            let (wi, wj) = (i as f64 / (i + j) as f64, j as f64 / (i + j) as f64);
            let mut p = vec![0.0; i * j + 1];
            // The m-sample's largest observation on top: + j.
            for (u, q) in next[i - 1].iter().enumerate() {
                p[u + j] += wi * q;
            }
            for (u, q) in col[i].iter().enumerate() {
                p[u] += wj * q;
            }
            next.push(p);
        }
        col = next;
    }
    let mut cdf = col.pop().unwrap_or_else(|| vec![1.0]);
    let mut acc = 0.0;
    for p in cdf.iter_mut() {
        acc += *p;
        *p = acc.min(1.0);
    }
    cdf
}

/// Median of sorted values (mean of the two middle ones for an even count).
fn median_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The two-sided normal quantile for `confidence` (1.96 for 0.95): turns
/// an interval's half-width into a standard deviation.
pub fn z_for(confidence: f64) -> f64 {
    super::normal::inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// The Hodges–Lehmann shift of `run` against `baseline` with its
/// `confidence` interval and the two-sided Mann–Whitney test. None if a
/// sample is empty or holds a non-finite value.
pub fn shift(baseline: &[f64], run: &[f64], confidence: f64) -> Option<Shift> {
    let (m, n) = (baseline.len(), run.len());
    if m == 0 || n == 0 || baseline.iter().chain(run).any(|v| !v.is_finite()) {
        return None;
    }
    let mn = m * n;
    let mut diffs: Vec<f64> = Vec::with_capacity(mn);
    let mut u = 0.0f64;
    for &b in run {
        for &a in baseline {
            diffs.push(b - a);
            u += if b > a {
                1.0
            } else if b == a {
                0.5
            } else {
                0.0
            };
        }
    }
    diffs.sort_by(f64::total_cmp);
    let estimate = median_sorted(&diffs)?;
    let tail = (1.0 - confidence) / 2.0;
    let ties = has_ties(baseline, run);
    let method = if !ties && mn <= EXACT_MAX_PAIRS {
        Method::Exact
    } else {
        Method::Normal
    };
    let half = mn as f64 / 2.0;
    let u_max = u.max(mn as f64 - u);
    let (k, achieved, p_value) = match method {
        Method::Exact => {
            let cdf = null_cdf(m, n);
            // Largest k with P(U ≤ k−1) ≤ tail.
            let k = cdf.iter().take_while(|&&p| p <= tail).count();
            let achieved = (k >= 1).then(|| 1.0 - 2.0 * cdf[k - 1]);
            // P(U ≥ u_max) = P(U ≤ m·n − u_max) by symmetry, read from the
            // lower tail (no 1 − x cancellation for tiny p); U is whole here.
            let lower = cdf[mn - u_max as usize];
            (k, achieved, (2.0 * lower).clamp(0.0f64, 1.0))
        }
        Method::Normal => {
            let nn = (m + n) as f64;
            let mut pooled: Vec<f64> = baseline.iter().chain(run).copied().collect();
            pooled.sort_by(f64::total_cmp);
            let mut tie_term = 0.0;
            let mut i = 0;
            while i < pooled.len() {
                let j = pooled[i..].iter().take_while(|&&v| v == pooled[i]).count();
                let t = j as f64;
                tie_term += t * t * t - t;
                i += j;
            }
            let var = mn as f64 / 12.0 * ((nn + 1.0) - tie_term / (nn * (nn - 1.0)));
            let sigma = var.max(0.0).sqrt();
            let p_value = if sigma > 0.0 {
                (2.0 * normal::sf((u_max - half - 0.5) / sigma)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let k = if sigma > 0.0 {
                let kf = (half - 0.5 + sigma * normal::inverse_cdf(tail)).floor() + 1.0;
                if kf >= 1.0 {
                    // Never past the middle difference.
                    (kf as usize).min(mn.div_ceil(2))
                } else {
                    0
                }
            } else {
                0
            };
            let achieved =
                (k >= 1).then(|| 1.0 - 2.0 * normal::cdf((k as f64 - 1.0 + 0.5 - half) / sigma));
            (k, achieved, p_value)
        }
    };
    let (low, high) = if k >= 1 {
        (Some(diffs[k - 1]), Some(diffs[mn - k]))
    } else {
        (None, None)
    };
    Some(Shift {
        estimate,
        low,
        high,
        k,
        achieved_confidence: achieved,
        u,
        p_value,
        method,
    })
}

/// The smallest shift that counts: a difference must be at least `min_ms`
/// and at least `min_pct` % of the baseline's median.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MinEffect {
    pub min_pct: f64,
    pub min_ms: f64,
}

impl Default for MinEffect {
    fn default() -> Self {
        MinEffect {
            min_pct: 5.0,
            min_ms: 1.0,
        }
    }
}

impl MinEffect {
    /// The threshold in ms for a baseline whose median is `base_p50`.
    pub fn threshold_ms(&self, base_p50: f64) -> f64 {
        self.min_ms.max(self.min_pct / 100.0 * base_p50.abs())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    #[serde(rename = "no clear difference")]
    NoClearDifference,
    #[serde(rename = "too few samples")]
    TooFewSamples,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoClearDifference => "no clear difference",
            Verdict::TooFewSamples => "too few samples",
        }
    }
}

/// faster / slower only if the interval excludes 0 and the estimate is at
/// least the minimal effect; too few samples when no interval exists at
/// this confidence (e.g. 3 against 3 at 95 %).
pub fn verdict(s: &Shift, base_p50: f64, min: &MinEffect) -> Verdict {
    let (Some(lo), Some(hi)) = (s.low, s.high) else {
        return Verdict::TooFewSamples;
    };
    let big = s.estimate.abs() >= min.threshold_ms(base_p50);
    match () {
        _ if big && hi < 0.0 => Verdict::Faster,
        _ if big && lo > 0.0 => Verdict::Slower,
        _ => Verdict::NoClearDifference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_distribution_small_cases() {
        // m = n = 2: U ∈ {0,1,2,2,3,4} over 6 splits.
        let c = null_cdf(2, 2);
        let want = [1.0, 2.0, 4.0, 5.0, 6.0].map(|x| x / 6.0);
        assert_eq!(c.len(), 5);
        for (g, w) in c.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{c:?}");
        }
        // Symmetric in (m, n), and P(U = 0) = 1 / C(m+n, m).
        assert_eq!(null_cdf(3, 5), null_cdf(5, 3));
        assert!((null_cdf(5, 5)[0] - 1.0 / 252.0).abs() < 1e-15);
    }

    #[test]
    fn identical_samples_show_no_shift() {
        let a: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let s = shift(&a, &a, 0.95).unwrap_or_else(|| panic!("shift"));
        assert_eq!(s.estimate, 0.0);
        assert_eq!(s.method, Method::Normal, "identical samples tie");
        assert!(s.low.unwrap_or(1.0) <= 0.0 && s.high.unwrap_or(-1.0) >= 0.0);
        assert_eq!(
            verdict(&s, 5.0, &MinEffect::default()),
            Verdict::NoClearDifference
        );
    }

    #[test]
    fn threshold_needs_both_the_percentage_and_the_ms() {
        let m = MinEffect::default();
        assert_eq!(m.threshold_ms(300.0), 15.0);
        assert_eq!(m.threshold_ms(7.0), 1.0);
        let a: Vec<f64> = (0..30).map(|i| 7.0 + i as f64 * 0.001).collect();
        // A clean +0.5 ms (+7 %) shift: real, but below 1 ms.
        let b: Vec<f64> = a.iter().map(|v| v + 0.5).collect();
        let s = shift(&a, &b, 0.95).unwrap_or_else(|| panic!("shift"));
        assert!(s.low.unwrap_or(0.0) > 0.0, "{s:?}");
        assert_eq!(verdict(&s, 7.0, &m), Verdict::NoClearDifference);
        let b: Vec<f64> = a.iter().map(|v| v + 1.5).collect();
        let s = shift(&a, &b, 0.95).unwrap_or_else(|| panic!("shift"));
        assert_eq!(verdict(&s, 7.0, &m), Verdict::Slower);
    }
}
