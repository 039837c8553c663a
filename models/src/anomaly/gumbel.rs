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

/// `exp(-exp(z))`: the Gumbel CDF at the standardised score `z = (raw - mu) /
/// beta`, passed negated (`z = (mu - raw) / beta`). `+inf` gives 0 (used for
/// warm-up rows), `-inf` gives 1.
#[inline(always)]
pub(crate) fn gumbel_score(neg_z: f32) -> f64 {
    f64::from(exp_f32(-exp_f32(neg_z)))
}

/// [`gumbel_score`] over a batch, vectorised.
#[inline(always)]
pub(crate) fn gumbel_scores(neg_z: &[f32], out: &mut [f64]) {
    for (o, z) in out.iter_mut().zip(neg_z) {
        *o = gumbel_score(*z);
    }
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
}
