//! Rényi-DP amplification by Poisson subsampling for any mechanism.
//!
//! Source: Y. Zhu, Y.-X. Wang, "Poisson Subsampled Rényi Differential Privacy", ICML 2019
//! (PMLR 97), Theorem 6 (general upper bound). If a mechanism `M` is `(ℓ, ε(ℓ))`-RDP for
//! `ℓ = 2, …, α` under add/remove-one adjacency, then running `M` on a Poisson sample (each
//! record kept independently with probability `q`) is `(α, ε'(α))`-RDP for integer `α ≥ 2`
//! with
//!
//! ```text
//! ε'(α) ≤ 1/(α-1) · ln( (1-q)^{α-1} (αq - q + 1)
//!                       + C(α,2) q² (1-q)^{α-2} e^{ε(2)}
//!                       + 3 Σ_{ℓ=3}^{α} C(α,ℓ) q^ℓ (1-q)^{α-ℓ} e^{(ℓ-1)ε(ℓ)} )
//! ```
//!
//! The statement was checked against the paper's abstract (optimal "up to an additive
//! constant of log(3)/(α−1)", the factor 3 above) and against independent implementations of
//! the same theorem (the Poisson-subsampled DDG accountant of Vector Institute's FL4Health;
//! autodp's `general_upperbound` is an algebraic rearrangement of it). For the Gaussian
//! mechanism, `ε(ℓ) = ℓ/(2σ²)`, the same sum *without* the factor 3 is the exact RDP of
//! Mironov, Talwar, Zhang 2019 (their Sec. 3.2; Zhu & Wang's Theorem 8), so the bound can
//! be tested against [`super::rdp_subsampled_gaussian`]: it must never be smaller.

use crate::error::{Result, ensure};
use crate::math::{LogSum, ln_expm1, ln_sum2};

/// The largest integer order at which the amplification bound is evaluated. Each order
/// costs `α` terms and the base curve is tabulated at `2..=α`; above this cap
/// [`rdp_poisson_subsampled`] returns the unamplified `ε(α)`, which is still a valid bound
/// (see there). The accountant's default grid stops at 1024, so nothing is lost on it;
/// orders that large only matter for ε far below 0.1.
pub const MAX_SUBSAMPLED_ORDER: u32 = 1024;

/// An upper bound on the RDP at order `alpha` of a mechanism with RDP curve `base_rdp`
/// (under add/remove-one adjacency) run on a Poisson sample with rate `q`: Zhu & Wang 2019,
/// Theorem 6 (see the module docs).
///
/// The theorem is stated for integer orders. A fractional `alpha` uses the bound at
/// `⌈alpha⌉`, and `alpha < 2` the bound at 2: sound because a Rényi divergence is
/// non-decreasing in its order (van Erven & Harremoës 2014, Theorem 3), so the subsampled
/// mechanism's true RDP at `alpha` is at most its true RDP at `⌈alpha⌉`, which the theorem
/// bounds.
///
/// The result is also capped at `base_rdp(alpha)`: subsampling never hurts. Under
/// add/remove adjacency the two output distributions are mixtures, over the sample `S` of
/// the common records, of `M(S)` against `(1-q)·M(S) + q·M(S ∪ {x})`; `∫ p^α r^{1-α}` is
/// jointly convex in `(p, r)` for `α > 1`, so the mixture's `e^{(α-1)D_α}` is at most the
/// weighted average of its components', each at most `e^{(α-1)ε(α)}`, in both directions.
/// This matters when `q` is near 1, where the factor 3 makes the theorem worse than no
/// amplification at all, and above [`MAX_SUBSAMPLED_ORDER`], where only the cap is used.
///
/// Special cases: `q = 0` gives 0 (`base_rdp` is not called); `q = 1` gives
/// `base_rdp(alpha)`. If any `ε(ℓ)` the sum needs is `+∞` the theorem gives `+∞`, and the
/// result is `base_rdp(alpha)`, which for a genuine (non-decreasing) RDP curve is `+∞` too.
///
/// Everything is summed in log space, and `A - 1` rather than `A` (the sum inside the
/// theorem's logarithm) is accumulated: with the binomial weights summing to 1, `A - 1`
/// is a sum of non-negative terms, so tiny `q` does not round the RDP down to 0, and large
/// orders or `ε(ℓ)` do not overflow.
///
/// Errors if `q ∉ [0, 1]`, if `alpha` is not finite and `> 1`, or if `base_rdp` returns a
/// negative value or `NaN` at an order it is asked for.
pub fn rdp_poisson_subsampled(q: f64, alpha: f64, base_rdp: impl Fn(f64) -> f64) -> Result<f64> {
    Ok(rdp_poisson_subsampled_curve(q, &[alpha], base_rdp)?[0])
}

/// [`rdp_poisson_subsampled`] at every order of `orders`, evaluating `base_rdp` once per
/// integer order `2..=⌈max order⌉` (at most [`MAX_SUBSAMPLED_ORDER`]) plus once per order.
pub fn rdp_poisson_subsampled_curve(
    q: f64,
    orders: &[f64],
    base_rdp: impl Fn(f64) -> f64,
) -> Result<Vec<f64>> {
    ensure((0.0..=1.0).contains(&q), "q", q, "0 <= q <= 1")?;
    for &alpha in orders {
        ensure(
            alpha > 1.0 && alpha.is_finite(),
            "alpha",
            alpha,
            "1 < alpha < inf",
        )?;
    }
    if q == 0.0 {
        return Ok(vec![0.0; orders.len()]);
    }
    let base = |alpha: f64| -> Result<f64> {
        let value = base_rdp(alpha);
        ensure(
            value >= 0.0,
            "base_rdp",
            value,
            "a non-negative RDP value (NaN is rejected)",
        )?;
        Ok(value)
    };
    if q == 1.0 {
        return orders.iter().map(|&alpha| base(alpha)).collect();
    }

    // The theorem's integer order for each requested order, or None above the cap.
    let integer_order = |alpha: f64| -> Option<u32> {
        let order = alpha.ceil().max(2.0);
        (order <= f64::from(MAX_SUBSAMPLED_ORDER)).then_some(order as u32)
    };
    let largest = orders
        .iter()
        .filter_map(|&alpha| integer_order(alpha))
        .max()
        .unwrap_or(0);
    // table[ℓ] = ε(ℓ) for ℓ = 2..=largest (entries 0 and 1 unused).
    let mut table = vec![0.0; largest as usize + 1];
    for (order, value) in table.iter_mut().enumerate().skip(2) {
        *value = base(order as f64)?;
    }

    let mut curve = Vec::with_capacity(orders.len());
    for &alpha in orders {
        let unamplified = base(alpha)?;
        let amplified = match integer_order(alpha) {
            Some(order) => {
                let m = order as usize;
                let ln_a = ln_a_integer(q, &table[..=m]);
                crate::math::cost_or_infinity(ln_a / (f64::from(order) - 1.0))
            }
            None => f64::INFINITY,
        };
        curve.push(amplified.min(unamplified));
    }
    Ok(curve)
}

/// `ln A` for the integer order `α = eps.len() - 1`, where `A` is the sum inside Theorem 6's
/// logarithm and `eps[ℓ] = ε(ℓ)` for `ℓ ≥ 2`; requires `0 < q < 1`.
///
/// With the binomial weights `b_ℓ = C(α,ℓ) q^ℓ (1-q)^{α-ℓ}`, which sum to 1, the first term
/// is `b_0 + b_1 = (1-q)^{α-1}(1 - q + αq)`, so
///
/// ```text
/// A = Σ_ℓ b_ℓ c_ℓ,   c_0 = c_1 = 1,  c_2 = e^{ε(2)},  c_ℓ = 3e^{(ℓ-1)ε(ℓ)} (ℓ ≥ 3)
/// A - 1 = b_2 (e^{ε(2)} - 1) + Σ_{ℓ≥3} b_ℓ (3e^{(ℓ-1)ε(ℓ)} - 1)
/// ```
///
/// whose terms are all non-negative (ε ≥ 0). Summing those keeps `A - 1` to full relative
/// precision when it is far below machine epsilon (q = 1e-9 gives `A - 1 ≈ 1e-18`), where
/// summing `A` itself would return exactly 1 and an RDP of 0: an *under*-estimate. `ln C(α,ℓ)`
/// is updated by the ratio `C(α,ℓ+1)/C(α,ℓ) = (α-ℓ)/(ℓ+1)`.
///
/// Writing it as an expectation over `ℓ ~ Binomial(α, q)` also shows that the bound is
/// non-decreasing in `q` whenever `c_ℓ` is non-decreasing in `ℓ`, i.e. for any
/// non-decreasing base curve (binomials are stochastically ordered in `q`).
fn ln_a_integer(q: f64, eps: &[f64]) -> f64 {
    let alpha = eps.len() - 1;
    let alpha_f = alpha as f64;
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let mut excess = LogSum::new();
    // ln C(α, 2)
    let mut ln_binom = alpha_f.ln() + (alpha_f - 1.0).ln() - std::f64::consts::LN_2;
    for (l, &eps_l) in eps.iter().enumerate().skip(2) {
        if eps_l == f64::INFINITY {
            return f64::INFINITY;
        }
        let l_f = l as f64;
        let ln_weight = ln_binom + l_f * ln_q + (alpha_f - l_f) * ln_1mq;
        let ln_excess_factor = if l == 2 {
            // ln(e^{ε(2)} - 1); -∞ (no term) when ε(2) = 0.
            ln_expm1(eps_l)
        } else {
            // ln(3e^x - 1) = x + ln(3 - e^{-x}), x = (ℓ-1)ε(ℓ): finite for x ≥ 0.
            let x = (l_f - 1.0) * eps_l;
            x + (3.0 - (-x).exp()).ln()
        };
        excess.add(true, ln_weight + ln_excess_factor);
        ln_binom += (alpha_f - l_f).ln() - (l_f + 1.0).ln();
    }
    ln_sum2(0.0, excess.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Theorem 6 evaluated literally, in linear space, with exact binomial coefficients:
    /// only usable for small orders, but independent of the log-space rewrite above.
    fn naive_bound(q: f64, alpha: u32, eps: impl Fn(f64) -> f64) -> f64 {
        fn binom(n: u32, k: u32) -> f64 {
            (1..=k).fold(1.0, |acc, i| acc * f64::from(n + 1 - i) / f64::from(i))
        }
        let a = f64::from(alpha);
        let mut sum = (1.0 - q).powf(a - 1.0) * (a * q - q + 1.0)
            + binom(alpha, 2) * q * q * (1.0 - q).powf(a - 2.0) * eps(2.0).exp();
        for l in 3..=alpha {
            let l_f = f64::from(l);
            sum += 3.0
                * binom(alpha, l)
                * (1.0 - q).powf(a - l_f)
                * q.powf(l_f)
                * ((l_f - 1.0) * eps(l_f)).exp();
        }
        sum.ln() / (a - 1.0)
    }

    #[test]
    fn log_space_sum_matches_the_literal_formula() {
        let curves: [(&str, &dyn Fn(f64) -> f64); 3] = [
            ("gaussian σ=1", &|l: f64| l / 2.0),
            ("gaussian σ=3", &|l: f64| l / 18.0),
            ("affine", &|l: f64| 0.3 * l + 0.05),
        ];
        for (name, curve) in &curves {
            for q in [0.01, 0.1, 0.3, 0.7] {
                for alpha in 2..=12u32 {
                    let table: Vec<f64> = (0..=alpha)
                        .map(|l| if l < 2 { 0.0 } else { curve(f64::from(l)) })
                        .collect();
                    let ours = ln_a_integer(q, &table) / (f64::from(alpha) - 1.0);
                    let naive = naive_bound(q, alpha, curve);
                    assert!(
                        ((ours - naive) / naive).abs() < 1e-11,
                        "{name} q={q} α={alpha}: {ours} vs {naive}"
                    );
                }
            }
        }
    }

    #[test]
    fn tiny_sampling_rates_keep_their_leading_term() {
        // For tiny q the bound is ≈ C(α,2) q² (e^{ε(2)} - 1)/(α - 1); at α = 2 with
        // ε(2) = 1 and q = 1e-9 that is 1e-18 (e - 1), far below the machine epsilon of A.
        let got = rdp_poisson_subsampled(1e-9, 2.0, |l| l / 2.0).unwrap();
        let expected = 1e-18 * (1.0_f64.exp() - 1.0);
        assert!(
            ((got - expected) / expected).abs() < 1e-6,
            "{got} vs {expected}"
        );
    }
}
