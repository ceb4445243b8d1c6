//! The standard normal distribution: CDF, survival function and quantile,
//! all that the rank statistics need (`stats`).
//!
//! Written here instead of taking statrs (and its nalgebra, rand and
//! approx, which a release build carried for these three functions). The
//! complementary error function is FreeBSD/musl's `erfc` (Sun's fdlibm
//! s_erf.c, error under 1 ulp), the quantile is Wichura's AS 241
//! (PPND16, relative error about 1e-16), as R's qnorm and SciPy's ndtri
//! (Cephes) reach the same values. `tests/stats.rs` holds them to SciPy's
//! norm.cdf / norm.sf / norm.ppf (tests/fixtures/normal.py).

/// CDF of the standard normal: P(Z ≤ z).
pub fn cdf(z: f64) -> f64 {
    0.5 * erfc(-z * std::f64::consts::FRAC_1_SQRT_2)
}

/// Survival function of the standard normal: P(Z > z), without the
/// cancellation of 1 − cdf(z) in the upper tail.
pub fn sf(z: f64) -> f64 {
    0.5 * erfc(z * std::f64::consts::FRAC_1_SQRT_2)
}

/// Quantile of the standard normal (the inverse of [`cdf`]) for p in
/// [0, 1]: −∞ at 0, +∞ at 1, NaN outside.
// The coefficients as Wichura published them (Applied Statistics 37, 1988):
// more digits than a double holds, so that they can be checked against the
// paper (and R's qnorm.c) digit for digit.
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
pub fn inverse_cdf(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        let num = [
            3.387132872796366608,
            133.14166789178437745,
            1971.5909503065514427,
            13731.693765509461125,
            45921.953931549871457,
            67265.770927008700853,
            33430.575583588128105,
            2509.0809287301226727,
        ];
        let den = [
            1.0,
            42.313330701600911252,
            687.1870074920579083,
            5394.1960214247511077,
            21213.794301586595867,
            39307.89580009271061,
            28729.085735721942674,
            5226.495278852545925,
        ];
        return q * poly(&num, r) / poly(&den, r);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let v = if r <= 5.0 {
        let r = r - 1.6;
        let num = [
            1.42343711074968357734,
            4.6303378461565452959,
            5.7694972214606914055,
            3.64784832476320460504,
            1.27045825245236838258,
            0.24178072517745061177,
            0.0227238449892691845833,
            7.7454501427834140764e-4,
        ];
        let den = [
            1.0,
            2.05319162663775882187,
            1.6763848301838038494,
            0.68976733498510000455,
            0.14810397642748007459,
            0.0151986665636164571966,
            5.475938084995344946e-4,
            1.05075007164441684324e-9,
        ];
        poly(&num, r) / poly(&den, r)
    } else {
        let r = r - 5.0;
        let num = [
            6.6579046435011037772,
            5.4637849111641143699,
            1.7848265399172913358,
            0.29656057182850489123,
            0.026532189526576123093,
            0.0012426609473880784386,
            2.71155556874348757815e-5,
            2.01033439929228813265e-7,
        ];
        let den = [
            1.0,
            0.59983220655588793769,
            0.13692988092273580531,
            0.0148753612908506148525,
            7.868691311456132591e-4,
            1.8463183175100546818e-5,
            1.4215117583164458887e-7,
            2.04426310338993978564e-15,
        ];
        poly(&num, r) / poly(&den, r)
    };
    if q < 0.0 {
        -v
    } else {
        v
    }
}

// fdlibm s_erf.c (as in FreeBSD and musl): erfc by rational
// approximations on |x| < 0.84375, [0.84375, 1.25), [1.25, 1/0.35),
// [1/0.35, 28), and 0 (or 2) beyond.
const ERX: f64 = 8.450_629_115_104_675e-1;
const PP: [f64; 5] = [
    1.283_791_670_955_125_6e-1,
    -3.250_421_072_470_015e-1,
    -2.848_174_957_559_851e-2,
    -5.770_270_296_489_442e-3,
    -2.376_301_665_665_016_3e-5,
];
const QQ: [f64; 5] = [
    3.979_172_239_591_553_5e-1,
    6.502_224_998_876_73e-2,
    5.081_306_281_875_766e-3,
    1.324_947_380_043_216_4e-4,
    -3.960_228_278_775_368e-6,
];
const PA: [f64; 7] = [
    -2.362_118_560_752_659_4e-3,
    4.148_561_186_837_483_3e-1,
    -3.722_078_760_357_013e-1,
    3.183_466_199_011_617_5e-1,
    -1.108_946_942_823_966_8e-1,
    3.547_830_432_561_823_6e-2,
    -2.166_375_594_868_791e-3,
];
const QA: [f64; 6] = [
    1.064_208_804_008_442_3e-1,
    5.403_979_177_021_71e-1,
    7.182_865_441_419_627e-2,
    1.261_712_198_087_616_4e-1,
    1.363_708_391_202_905e-2,
    1.198_449_984_679_910_7e-2,
];
const RA: [f64; 8] = [
    -9.864_944_034_847_148e-3,
    -6.938_585_727_071_818e-1,
    -1.055_862_622_532_329_1e1,
    -6.237_533_245_032_600_6e1,
    -1.623_966_694_625_734_7e2,
    -1.846_050_929_067_110_4e2,
    -8.128_743_550_630_66e1,
    -9.814_329_344_169_145,
];
const SA: [f64; 8] = [
    1.965_127_166_743_925_7e1,
    1.376_577_541_435_190_4e2,
    4.345_658_774_752_292_3e2,
    6.453_872_717_332_679e2,
    4.290_081_400_275_678_3e2,
    1.086_350_055_417_794_4e2,
    6.570_249_770_319_282,
    -6.042_441_521_485_81e-2,
];
const RB: [f64; 7] = [
    -9.864_942_924_700_1e-3,
    -7.992_832_376_805_23e-1,
    -1.775_795_491_775_475_2e1,
    -1.606_363_848_558_219_2e2,
    -6.375_664_433_683_896e2,
    -1.025_095_131_611_077_2e3,
    -4.835_191_916_086_514e2,
];
const SB: [f64; 7] = [
    3.033_806_074_348_246e1,
    3.257_925_129_965_739e2,
    1.536_729_586_084_437e3,
    3.199_858_219_508_595_5e3,
    2.553_050_406_433_164_4e3,
    4.745_285_412_069_553_7e2,
    -2.244_095_244_658_582e1,
];

/// Σ c[i]·s^i (c[0] first).
fn poly(c: &[f64], s: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * s + k)
}

/// 1 + Σ c[i]·s^(i+1).
fn poly1(c: &[f64], s: f64) -> f64 {
    1.0 + s * poly(c, s)
}

/// erfc on [0.84375, 1.25): 1 − erx − P/Q around 1.
fn erfc_near_one(ax: f64) -> f64 {
    let s = ax - 1.0;
    1.0 - ERX - poly(&PA, s) / poly1(&QA, s)
}

/// erfc of |x| in [0.84375, 28).
fn erfc_mid(ax: f64) -> f64 {
    if ax < 1.25 {
        return erfc_near_one(ax);
    }
    let s = 1.0 / (ax * ax);
    let (r, q) = if ax < 1.0 / 0.35 {
        (poly(&RA, s), poly1(&SA, s))
    } else {
        (poly(&RB, s), poly1(&SB, s))
    };
    // z: ax with the low 32 bits of its mantissa cleared, so that z·z is
    // exact and exp(−x²) keeps its precision.
    let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
    (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / q).exp() / ax
}

/// The complementary error function, 1 − erf(x).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let neg = x < 0.0;
    if ax < 0.84375 {
        if ax < 2f64.powi(-56) {
            return 1.0 - x;
        }
        let z = x * x;
        let y = poly(&PP, z) / poly1(&QQ, z);
        if neg || ax < 0.25 {
            return 1.0 - (x + x * y);
        }
        return 0.5 - (x - 0.5 + x * y);
    }
    if ax < 28.0 {
        let r = erfc_mid(ax);
        return if neg { 2.0 - r } else { r };
    }
    if neg {
        2.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_symmetry() {
        assert_eq!(cdf(0.0), 0.5);
        assert_eq!(inverse_cdf(0.5), 0.0);
        assert_eq!(inverse_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(inverse_cdf(1.0), f64::INFINITY);
        assert!(inverse_cdf(1.5).is_nan() && inverse_cdf(f64::NAN).is_nan());
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        for z in [-7.5, -3.0, -1.0, -0.3, 0.2, 1.1, 2.9, 6.0] {
            assert!((cdf(z) + sf(z) - 1.0).abs() < 1e-15, "{z}");
            assert!(
                (cdf(-z) - sf(z)).abs() <= 1e-16 * sf(z).max(1e-300) * 4.0,
                "{z}"
            );
            // From the lower tail, where p holds z's precision.
            let lower = -f64::abs(z);
            assert!(
                (inverse_cdf(cdf(lower)) - lower).abs() < 1e-12 * z.abs().max(1.0),
                "{z}"
            );
        }
    }
}
