//! The calibration's last step, `score = exp(-exp(z))` (the Gumbel CDF at the
//! standardised raw score), with an `exp` that vectorises.
//!
//! libm's `expf` is a call per value; scoring a batch instead writes each
//! row's `z` and then runs [`gumbel_scores`] over the batch, which the
//! compiler turns into straight-line vector code (8 rows per instruction in
//! the AVX copies). Single rows use the same function, so a row scores the same
//! alone or in a batch.

/// `ln 2` split in two (Cody–Waite) so `x - n ln 2` is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `1.5 * 2^23`: adding it rounds to the nearest integer and leaves that
/// integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Inputs below this underflow to 0 (the result would be subnormal).
const EXP_MIN: f32 = -87.33;
/// Inputs above this give +inf (e^88 is 1.7e38; up to 88.72 would still be
/// finite, but `2^128` is not, and scores only need the overflow side to be large).
const EXP_MAX: f32 = 88.0;

/// `e^x` in f32 with at most ~2 ulp error; 0 below -87.33, +inf above 88
/// (and for +inf), branch-free so loops over it vectorise. NaN is not
/// expected (callers pass finite or infinite values) and yields an
/// unspecified finite value.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let t = xc * LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    // The rounded integer sits in the low mantissa bits of `t`.
    let n_bits = t.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let r = xc - n * LN2_HI - n * LN2_LO;
    // Minimax polynomial for e^r on [-ln2/2, ln2/2] (Cephes expf).
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let y = er * scale;
    let y = if x < EXP_MIN { 0.0 } else { y };
    if x > EXP_MAX {
        f32::INFINITY
    } else {
        y
    }
}

/// `ln 2` split in two (Cody–Waite) so `x - n ln 2` is exact for |n| < 2^10.
const LN2_HI_F64: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO_F64: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// `1.5 * 2^52`: adding it rounds to the nearest integer and leaves that
/// integer in the low mantissa bits.
const ROUND_MAGIC_F64: f64 = 6_755_399_441_055_744.0;
/// Below this `e^x` is subnormal or 0; it is returned as 0.
const EXP_MIN_F64: f64 = -708.0;

/// `e^x` for `x <= 0` in f64 (relative error ~1e-15), 0 below -708,
/// branch-free so loops over it vectorise. NaN is not expected.
#[inline(always)]
pub(crate) fn exp_neg(x: f64) -> f64 {
    let xc = x.clamp(EXP_MIN_F64, 0.0);
    let t = xc * std::f64::consts::LOG2_E + ROUND_MAGIC_F64;
    let n = t - ROUND_MAGIC_F64;
    let n_bits = t.to_bits().wrapping_sub(ROUND_MAGIC_F64.to_bits());
    let r = xc - n * LN2_HI_F64 - n * LN2_LO_F64;
    // Taylor series of e^r on |r| <= ln2/2 to degree 12 (error < 2e-16).
    let mut p = 1.0 / 479_001_600.0;
    for c in [
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f64::from_bits(n_bits.wrapping_add(1023) << 52);
    let y = p * scale;
    if x < EXP_MIN_F64 {
        0.0
    } else {
        y
    }
}

/// `exp(-exp(z))`: the Gumbel CDF at the standardised score `z = (raw - mu) /
/// beta`, passed negated (`z = (mu - raw) / beta`). `+inf` gives 0 (used for
/// warm-up rows), `-inf` gives 1. The inner `exp` is f32 (its relative error
/// only scales the tail probability by 1 ± 1e-7); the outer one is f64, so
/// scores near 1 keep their distance from it (1 - 1e-12 is not 1 - 1e-13)
/// down to a tail of about 1e-16; beyond that [`gumbel_surprise`] orders them.
#[inline(always)]
pub(crate) fn gumbel_score(neg_z: f32) -> f64 {
    exp_neg(-f64::from(exp_f32(neg_z)))
}

/// [`gumbel_score`] over a batch, vectorised.
#[inline(always)]
pub(crate) fn gumbel_scores(neg_z: &[f32], out: &mut [f64]) {
    for (o, z) in out.iter_mut().zip(neg_z) {
        *o = gumbel_score(*z);
    }
}

/// The surprise of a standardised score: `-log10(1 - exp(-exp(neg_z)))`,
/// `-log10` of the Gumbel tail probability (0 for warm-up rows, unbounded
/// above, strictly increasing as `neg_z` falls). Row by row (libm), for
/// output that ranks rows whose scores round to 1.
pub(crate) fn gumbel_surprise(neg_z: f32) -> f64 {
    let nz = f64::from(neg_z);
    if nz < -30.0 {
        // tail = e (1 - e/2 + ...) with e = exp(nz) < 1e-13.
        return -nz / std::f64::consts::LN_10 - (-0.5 * nz.exp()).ln_1p() / std::f64::consts::LN_10;
    }
    let tail = -(-nz.exp()).exp_m1();
    -tail.log10() + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_a_few_ulp_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = f64::from(exp_f32(x));
            let want = f64::from(x).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(
            worst < 3.0 * f64::from(f32::EPSILON),
            "relative error {worst}"
        );
    }

    #[test]
    fn exp_saturates_instead_of_wrapping() {
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(200.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn gumbel_scores_are_probabilities_and_monotone() {
        let zs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.05).collect();
        let mut out = vec![0.0; zs.len()];
        gumbel_scores(&zs, &mut out);
        assert!(out.iter().all(|s| (0.0..=1.0).contains(s)));
        // Larger neg_z (raw further below mu) means a smaller score.
        assert!(out.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(gumbel_score(f32::INFINITY), 0.0);
        assert_eq!(gumbel_score(f32::NEG_INFINITY), 1.0);
        let want = (-(1.5f64).exp()).exp();
        assert!((gumbel_score(1.5) - want).abs() < 1e-6);
    }

    #[test]
    fn exp_neg_matches_libm_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -700.0;
        while x <= 0.0 {
            let (got, want) = (exp_neg(x), f64::exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 8.0 * f64::EPSILON, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-800.0), 0.0);
        assert_eq!(exp_neg(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn the_top_of_the_scores_stays_ordered() {
        // Tails of 1e-6, 1e-12 and 1e-30: distinct scores down to 1e-12, and
        // surprise keeps counting decades where the score reaches 1.
        let nz = |tail: f64| (-(1.0 - tail).ln()).ln() as f32;
        let (a, b) = (gumbel_score(nz(1e-6)), gumbel_score(nz(1e-12)));
        assert!(a < b && b < 1.0, "{a} {b}");
        // Within an ulp of 1 (1.1e-16) of 1 - 1e-12.
        assert!((1.0 - b - 1e-12).abs() < 3e-16, "{b}");
        for (z, want) in [
            (-13.8155f32, 6.0),
            (-27.631, 12.0),
            (-69.0776, 30.0),
            (-230.2585, 100.0),
        ] {
            let s = gumbel_surprise(z);
            assert!((s - want).abs() < 1e-3, "surprise at {z}: {s}, want {want}");
        }
        assert_eq!(gumbel_surprise(f32::INFINITY), 0.0);
        assert!(gumbel_surprise(f32::INFINITY).is_sign_positive());
        let mut last = -1.0;
        for i in 0..4000 {
            let s = gumbel_surprise(3.0 - i as f32 * 0.1);
            assert!(s > last, "surprise must grow: {s} after {last}");
            last = s;
        }
    }
}
