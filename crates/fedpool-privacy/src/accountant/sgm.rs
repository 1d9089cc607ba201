//! Rényi-DP of the Poisson-subsampled Gaussian mechanism.
//!
//! Source: I. Mironov, K. Talwar, L. Zhang, "Rényi Differential Privacy of the Sampled
//! Gaussian Mechanism", arXiv:1908.10530 (2019), Section 3. With `μ0 = N(0, σ²)`,
//! `μ1 = N(1, σ²)` and `μ = (1-q)μ0 + qμ1`, the mechanism's RDP at order α under
//! add/remove-one adjacency is `ε(α) = ln(A_α)/(α-1)` with
//!
//! ```text
//! A_α = E_{z~μ0}[(μ(z)/μ0(z))^α] = E_{z~μ0}[((1-q) + q·exp((2z-1)/(2σ²)))^α]      (Sec. 3.1)
//! ```
//!
//! (Their Theorem 4 shows that this direction, `D_α(μ‖μ0)`, dominates `D_α(μ0‖μ)`.)

use crate::math::{LN_HALF, LogSum, ln_erfc, ln_expm1, ln_sum2};

/// The fractional-order series stops once the last term is below `e^-36 ≈ 2.3e-16` of the
/// sum `A_α`, or below `e^-23 ≈ 1e-10` of `A_α - 1` (which is what `ln A_α`, and so the RDP,
/// is proportional to for `A_α` near 1); see [`ln_a_fractional`].
const SERIES_REL_TOL_LN: f64 = -36.0;
const SERIES_EXCESS_REL_TOL_LN: f64 = -23.0;

/// Hard cap on fractional-order series terms. Never reached on the fixture grid (the slowest
/// case, α = 1.1 with σ = 0.5, needs a few thousand); if it is reached the result is still an
/// upper bound, see [`ln_a_fractional`].
const SERIES_MAX_TERMS: usize = 200_000;

/// Per-step RDP `ε(α)` of the Poisson-subsampled Gaussian with sampling rate `q` and noise
/// multiplier `sigma` (noise std divided by L2 sensitivity), at order `alpha > 1`.
///
/// Special cases (Mironov, Talwar, Zhang 2019, Sec. 3): `q = 0` gives 0; `sigma = 0` gives
/// `+∞`; `q = 1` is the plain Gaussian mechanism, `α/(2σ²)` (Mironov 2017, "Rényi
/// Differential Privacy", Proposition 7). Integer orders use the closed form of Sec. 3.2,
/// fractional orders the series of Sec. 3.3. Both are evaluated in log space, so `α = 1024`
/// with `σ = 0.5` (ln A ≈ 2·10⁶) and `q = 10⁻⁹` (A − 1 ≈ 10⁻¹⁸) are fine.
///
/// Parameters must already be validated: `0 ≤ q ≤ 1`, `sigma ≥ 0`, `alpha > 1` finite.
pub(crate) fn rdp_subsampled_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let ln_a = if alpha.fract() == 0.0 && alpha <= u32::MAX as f64 {
        ln_a_integer(q, sigma, alpha as u64)
    } else {
        ln_a_fractional(q, sigma, alpha)
    };
    // ln A_α ≥ 0 mathematically (Jensen); clamp rounding noise so composition never subtracts.
    crate::math::cost_or_infinity(ln_a / (alpha - 1.0))
}

/// `ln A_α` for integer `α`, by the binomial expansion of Sec. 3.2:
///
/// ```text
/// A_α = Σ_{i=0}^{α} C(α, i) (1-q)^{α-i} q^i exp((i² - i)/(2σ²))
/// ```
///
/// Since the binomial weights sum to 1 and the `i = 0, 1` exponents vanish, this is
/// computed as `A_α = 1 + Σ_{i=2}^{α} C(α, i) (1-q)^{α-i} q^i expm1((i² - i)/(2σ²))`, whose
/// terms are all positive: `A_α - 1` keeps full relative precision when it is far below
/// machine epsilon (`q = 10⁻⁹` gives `A_2 - 1 ≈ 1.7·10⁻¹⁸`), where summing the terms of
/// `A_α` itself would return exactly 1. Terms are summed in log space with `ln C(α, i)`
/// updated by the ratio `C(α, i+1)/C(α, i) = (α - i)/(i + 1)`.
fn ln_a_integer(q: f64, sigma: f64, alpha: u64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let two_sigma2 = 2.0 * sigma * sigma;
    let mut excess = LogSum::new();
    // ln C(α, 2)
    let mut ln_binom = (alpha as f64).ln() + ((alpha - 1) as f64).ln() - 2.0_f64.ln();
    for i in 2..=alpha {
        let i_f = i as f64;
        let ln_term = ln_binom
            + i_f * ln_q
            + (alpha - i) as f64 * ln_1mq
            + ln_expm1((i_f * i_f - i_f) / two_sigma2);
        excess.add(true, ln_term);
        ln_binom += ((alpha - i) as f64).ln() - (i_f + 1.0).ln();
    }
    ln_sum2(0.0, excess.ln())
}

/// `ln A_α` for fractional `α`, by the series of Sec. 3.3.
///
/// Split the integral at `z0 = σ² ln(1/q - 1) + 1/2`, where `q μ1 = (1-q) μ0`, and expand
/// `(1 + r)^α` binomially on each side (`r < 1` there):
///
/// ```text
/// A_α = Σ_{i≥0} C(α, i) [ (1-q)^{α-i} q^i e^{(i²-i)/(2σ²)} · ½erfc((i - z0)/(√2σ))
///                        + q^{α-i} (1-q)^i e^{(j²-j)/(2σ²)} · ½erfc((z0 - j)/(√2σ)) ],  j = α - i.
/// ```
///
/// The generalized binomial coefficients `C(α, i)` are negative for every other `i > α`,
/// and we keep their signs: the series is then the exact value. (dp-accounting 0.6 sums
/// absolute values, an upper bound that can be loose at orders near 1; the reference-table
/// test documents the difference.)
///
/// Termination with a guarantee: for `i > α` the terms alternate in sign and decrease in
/// magnitude (`|C(α, i+1)/C(α, i)| = (i - α)/(i + 1) < 1`, and the integrals
/// `∫ μ0 r^i` over the region where `r ≤ 1` decrease in `i`), so by the alternating series
/// test the remainder is at most the last term's magnitude. We stop once that is below the
/// tolerance of [`SERIES_REL_TOL_LN`] and add it, so the returned value is an upper bound on
/// `ln A_α` up to floating-point rounding (and within a relative 1e-10 of it), even if
/// [`SERIES_MAX_TERMS`] is hit.
fn ln_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let two_sigma2 = 2.0 * sigma * sigma;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    let z0 = sigma * sigma * (ln_1mq - ln_q) + 0.5;

    let mut below_z0 = LogSum::new();
    let mut above_z0 = LogSum::new();
    let mut ln_abs_binom = 0.0_f64;
    let mut binom_positive = true;
    let mut last_ln_terms = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for i in 0..SERIES_MAX_TERMS {
        let i_f = i as f64;
        let j = alpha - i_f;
        let ln_s0 = ln_abs_binom
            + i_f * ln_q
            + j * ln_1mq
            + (i_f * i_f - i_f) / two_sigma2
            + LN_HALF
            + ln_erfc((i_f - z0) / sqrt2_sigma);
        let ln_s1 = ln_abs_binom
            + j * ln_q
            + i_f * ln_1mq
            + (j * j - j) / two_sigma2
            + LN_HALF
            + ln_erfc((z0 - j) / sqrt2_sigma);
        below_z0.add(binom_positive, ln_s0);
        above_z0.add(binom_positive, ln_s1);
        last_ln_terms = (ln_s0, ln_s1);

        if i_f > alpha + 1.0 {
            let ln_total = ln_sum2(below_z0.ln(), above_z0.ln());
            let tolerance =
                (ln_total + SERIES_REL_TOL_LN).max(ln_expm1(ln_total) + SERIES_EXCESS_REL_TOL_LN);
            if ln_s0.max(ln_s1) < tolerance {
                break;
            }
        }
        let factor = alpha - i_f;
        if factor < 0.0 {
            binom_positive = !binom_positive;
        }
        ln_abs_binom += factor.abs().ln() - (i_f + 1.0).ln();
    }
    // Add the alternating-series remainder bound (the last term's magnitude) for each part.
    below_z0.add(true, last_ln_terms.0);
    above_z0.add(true, last_ln_terms.1);
    ln_sum2(below_z0.ln(), above_z0.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with mpmath at 40 digits by numerical integration of the Sec. 3.1
    /// integral (see scripts/make_accountant_fixture.py, `log_a_quadrature`).
    #[test]
    fn fractional_series_matches_quadrature() {
        let cases = [
            // (q, sigma, alpha, rdp)
            (0.1, 1.0, 1.1, 0.008_098_568_468_073_473),
            (0.1, 1.0, 1.5, 0.011_734_592_196_685_417),
            (0.1, 0.5, 2.5, 1.288_617_965_439_546),
            (0.01, 1.0, 1.1, 9.241_471_084_591_672e-5),
            (0.5, 0.8, 3.3, 1.628_450_822_087_089_5),
            (0.1, 3.0, 10.9, 0.007_111_350_601_909_219),
            (0.001, 0.5, 1.1, 2.385_845_598_454_127_4e-5),
        ];
        for (q, sigma, alpha, expected) in cases {
            let got = rdp_subsampled_gaussian(q, sigma, alpha);
            assert!(
                ((got - expected) / expected).abs() < 1e-9,
                "q={q} sigma={sigma} alpha={alpha}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn fractional_orders_agree_with_neighbouring_integer_orders() {
        // ε(α) is continuous in α: the series at α = 3 ± 1e-9 must match the closed form at 3.
        for (q, sigma) in [(0.01, 0.8), (0.1, 1.5), (0.5, 0.5)] {
            let at_int = rdp_subsampled_gaussian(q, sigma, 3.0);
            for alpha in [3.0 - 1e-9, 3.0 + 1e-9] {
                let near = rdp_subsampled_gaussian(q, sigma, alpha);
                assert!(
                    ((near - at_int) / at_int).abs() < 1e-7,
                    "{q} {sigma}: {near} vs {at_int}"
                );
            }
        }
    }

    #[test]
    fn extreme_parameters_stay_finite() {
        assert!(rdp_subsampled_gaussian(0.5, 0.5, 1024.0).is_finite());
        let tiny = rdp_subsampled_gaussian(1e-9, 1.0, 2.0);
        // For tiny q, ε(2) ≈ q²(e^{1/σ²} - 1) (Mironov, Talwar, Zhang 2019, Sec. 3.2 with α = 2).
        let expected = 1e-18 * (1.0_f64.exp() - 1.0);
        assert!(
            ((tiny - expected) / expected).abs() < 1e-6,
            "{tiny} vs {expected}"
        );
        assert!(rdp_subsampled_gaussian(1e-9, 1.0, 1.5).is_finite());
    }

    #[test]
    fn no_parameters_give_a_nan_or_free_step() {
        // Whatever overflows inside, a step with q > 0 and finite noise is never NaN and
        // never free: a NaN would have become a cost of 0 under `max(0.0)`.
        for q in [1e-12, 1e-3, 0.3, 0.999_999] {
            for sigma in [1e-300, 1e-30, 0.05, 1.0, 1e6] {
                for alpha in [1.000_001, 1.5, 2.0, 7.7, 64.0, 1024.0, 99_999.0] {
                    let rdp = rdp_subsampled_gaussian(q, sigma, alpha);
                    assert!(!rdp.is_nan(), "q={q} σ={sigma} α={alpha}: NaN");
                    if sigma < 1.0 {
                        assert!(rdp > 0.0, "q={q} σ={sigma} α={alpha}: free");
                    }
                }
            }
        }
    }
}
