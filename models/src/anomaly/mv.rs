//! The multivariate part's amortised step: turning an asset's covariance of
//! robust z-scores into a shrunk precision matrix (Cholesky, then the inverse
//! from the triangular factor). Runs every `mv_refresh` readings, so its O(S^3)
//! cost is spread over them; the per-reading work is two S×S elementwise passes.

/// Sensor counts up to this run the refresh on fixed-size arrays (padded with
/// the identity), so every loop bound is a constant: unrolled, no bounds
/// checks, about a tenth of the instructions of the general path.
const SMALL: usize = 8;

/// Recomputes `precision` (row-major `n × n` with row stride `stride`, f32) from `cov` shrunk towards its
/// diagonal by `shrinkage`. `work` must hold `2 * n * n` f64 (it is not used
/// for `n <= 8`). Returns `false` and
/// leaves `precision` unchanged when the matrix is not positive definite even
/// after a ridge (for example a sensor that never varied).
///
/// Out of line (it runs every `mv_refresh` rows); `avx2` (the CPU has AVX2
/// and FMA) runs [`refresh_precision_avx2`].
#[inline(never)]
pub(crate) fn refresh_precision(
    cov: &[f32],
    precision: &mut [f32],
    n: usize,
    stride: usize,
    shrinkage: f64,
    work: &mut [f64],
    avx2: bool,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller passes `avx2` only when the running CPU reports
        // AVX2 and FMA.
        return unsafe { refresh_precision_avx2(cov, precision, n, stride, shrinkage, work) };
    }
    let _ = avx2;
    refresh_precision_impl(cov, precision, n, stride, shrinkage, work)
}

/// [`refresh_precision_impl`] compiled for AVX2: an out-of-line function
/// does not inherit the scorer's target features, so the refresh otherwise
/// runs baseline (SSE2, two f64 lanes) code. Rust never contracts `a * b + c`
/// into an FMA, so the results are bit-identical.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn refresh_precision_avx2(
    cov: &[f32],
    precision: &mut [f32],
    n: usize,
    stride: usize,
    shrinkage: f64,
    work: &mut [f64],
) -> bool {
    refresh_precision_impl(cov, precision, n, stride, shrinkage, work)
}

/// The refresh itself (see [`refresh_precision`]).
#[inline(always)]
fn refresh_precision_impl(
    cov: &[f32],
    precision: &mut [f32],
    n: usize,
    stride: usize,
    shrinkage: f64,
    work: &mut [f64],
) -> bool {
    if n <= SMALL {
        let (mut l, mut inv) = ([0.0; SMALL * SMALL], [0.0; SMALL * SMALL]);
        refresh_into(
            cov, precision, n, SMALL, stride, shrinkage, &mut l, &mut inv,
        )
    } else {
        let (l, inv) = work.split_at_mut(n * n);
        refresh_into(cov, precision, n, n, stride, shrinkage, l, inv)
    }
}

/// [`refresh_precision`] on `dim × dim` work matrices (`dim >= n`; the rows
/// and columns past `n` hold the identity, which leaves the `n × n` result
/// bit-identical). Inlined into both callers so `dim` is a constant in one.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn refresh_into(
    cov: &[f32],
    precision: &mut [f32],
    n: usize,
    dim: usize,
    stride: usize,
    shrinkage: f64,
    l: &mut [f64],
    inv: &mut [f64],
) -> bool {
    let trace: f64 = (0..n).map(|i| f64::from(cov[i * stride + i])).sum();
    if !(trace.is_finite() && trace > 0.0) {
        return false;
    }
    let mut ridge = 1e-6 * trace / n as f64 + 1e-12;
    for _attempt in 0..4 {
        for (i, row) in l[..dim * dim].chunks_exact_mut(dim).enumerate() {
            // The sensor's covariance row (empty for padding rows): sliced
            // once, so the elements need no bounds checks.
            let crow: &[f32] = if i < n {
                &cov[i * stride..i * stride + n]
            } else {
                &[]
            };
            for (j, lij) in row.iter_mut().enumerate() {
                *lij = match crow.get(j) {
                    None => {
                        if i == j {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Some(&c) => {
                        let c = f64::from(c);
                        if i == j {
                            c + ridge
                        } else {
                            (1.0 - shrinkage) * c
                        }
                    }
                };
            }
        }
        let spd = if dim == SMALL {
            cholesky_small(l)
        } else {
            cholesky_in_place(l, dim)
        };
        if spd {
            invert_from_cholesky(l, inv, dim);
            for i in 0..n {
                let (prow, irow) = (
                    &mut precision[i * stride..i * stride + n],
                    &inv[i * dim..i * dim + n],
                );
                for (p, v) in prow.iter_mut().zip(irow) {
                    *p = *v as f32;
                }
            }
            return true;
        }
        ridge *= 100.0;
    }
    false
}

/// Lower Cholesky factor in place (the upper triangle is left as it is: nothing
/// reads it). `false` if not SPD.
#[inline(always)]
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    true
}

/// [`cholesky_in_place`] for `SMALL × SMALL`, a column at a time in lane
/// arrays: lane `i` of column `j` subtracts the same products in the same
/// order (`k = 0..j`) and divides by the same pivot as the scalar loop, so the
/// factor is bit-identical; lanes above the diagonal are computed and dropped
/// (only the lower triangle is written back, as there).
///
/// Out of line and portable (SSE2) on purpose: inlined into the AVX2 refresh
/// copy, or compiled for AVX2 itself, LLVM emits a register-to-register
/// `vmovq` encoding (VEX 66 0F D6) that valgrind 3.19, the profiling
/// harness, cannot decode.
#[inline(never)]
fn cholesky_small(a: &mut [f64]) -> bool {
    let a = <&mut [f64; SMALL * SMALL]>::try_from(&mut a[..SMALL * SMALL]).expect("matrix");
    // col[j][i] = a[i][j]: the input's columns, then the factor's.
    let mut col = [[0.0f64; SMALL]; SMALL];
    for (i, row) in a.chunks_exact(SMALL).enumerate() {
        for (j, v) in row.iter().enumerate() {
            col[j][i] = *v;
        }
    }
    for j in 0..SMALL {
        let mut s = col[j];
        for ck in &col[..j] {
            let ljk = ck[j];
            for i in 0..SMALL {
                s[i] -= ck[i] * ljk;
            }
        }
        let d = s[j];
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        let d = d.sqrt();
        for v in &mut s {
            *v /= d;
        }
        s[j] = d;
        col[j] = s;
    }
    for (i, row) in a.chunks_exact_mut(SMALL).enumerate() {
        for (j, v) in row.iter_mut().enumerate().take(i + 1) {
            *v = col[j][i];
        }
    }
    true
}

/// `out = (L L^T)^-1` from the lower factor `l`.
#[inline(always)]
fn invert_from_cholesky(l: &mut [f64], out: &mut [f64], n: usize) {
    // Invert L in place (lower triangular).
    for i in 0..n {
        l[i * n + i] = 1.0 / l[i * n + i];
        for j in 0..i {
            let mut s = 0.0;
            for k in j..i {
                s -= l[i * n + k] * l[k * n + j];
            }
            l[i * n + j] = s * l[i * n + i];
        }
    }
    // P = L^-T L^-1: P_ij = sum_{k >= max(i, j)} Linv_ki Linv_kj.
    if n == SMALL {
        // Row i up to the diagonal in one lane array: lane j adds the same
        // products in the same order (k = i, i + 1, …) as the loop below, so
        // the sums are bit-identical; lanes past i (they read the unused
        // upper triangle) are dropped.
        for i in 0..SMALL {
            let mut s = [0.0; SMALL];
            for k in i..SMALL {
                let row = <&[f64; SMALL]>::try_from(&l[k * SMALL..(k + 1) * SMALL]).expect("row");
                let lki = row[i];
                for j in 0..SMALL {
                    s[j] += lki * row[j];
                }
            }
            for j in 0..=i {
                out[i * SMALL + j] = s[j];
                out[j * SMALL + i] = s[j];
            }
        }
        return;
    }
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for k in i..n {
                s += l[k * n + i] * l[k * n + j];
            }
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
}

/// Wilson–Hilferty approximation of the chi-square quantile with `k` degrees of
/// freedom at the one-sided normal level `z`.
pub(crate) fn chi2_quantile(k: usize, z: f64) -> f64 {
    let k = k as f64;
    let c = 2.0 / (9.0 * k);
    k * (1.0 - c + z * c.sqrt()).powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_times_covariance_is_the_identity_without_shrinkage() {
        let n = 3;
        let cov: Vec<f32> = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let mut p = vec![0.0f32; 9];
        let mut work = vec![0.0; 18];
        assert!(refresh_precision(&cov, &mut p, n, n, 0.0, &mut work, false));
        // The general path (work matrices of the sensor count) agrees bit for bit.
        let (mut l, mut inv) = (vec![0.0; 9], vec![0.0; 9]);
        let mut q = vec![0.0f32; 9];
        assert!(refresh_into(&cov, &mut q, n, n, n, 0.0, &mut l, &mut inv));
        assert_eq!(p, q);
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n)
                    .map(|k| f64::from(p[i * n + k]) * f64::from(cov[k * n + j]))
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-4, "({i},{j}) = {v}");
            }
        }
    }

    #[test]
    fn a_zero_covariance_is_refused_and_leaves_the_precision_alone() {
        let cov = vec![0.0f32; 4];
        let mut p = vec![7.0f32; 4];
        let mut work = vec![0.0; 8];
        assert!(!refresh_precision(
            &cov, &mut p, 2, 2, 0.1, &mut work, false
        ));
        assert_eq!(p, vec![7.0; 4]);
    }

    #[test]
    fn wilson_hilferty_matches_tabulated_chi_square_quantiles() {
        // chi2(8) 0.9999 quantile is 31.83; chi2(1) 0.99 quantile is 6.63 (z = 2.326).
        assert!(
            (chi2_quantile(8, 3.719) - 31.83).abs() < 0.5,
            "{}",
            chi2_quantile(8, 3.719)
        );
        assert!(
            (chi2_quantile(1, 2.326) - 6.63).abs() < 0.3,
            "{}",
            chi2_quantile(1, 2.326)
        );
    }
}
