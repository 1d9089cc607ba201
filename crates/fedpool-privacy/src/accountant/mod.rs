//! Privacy accounting: Rényi-DP of the subsampled Gaussian, composition, conversion to
//! (ε, δ), noise calibration, and the per-model budget a data owner's node keeps.
//!
//! The accountant follows Google's `dp_accounting` `RdpAccountant` (add/remove-one
//! adjacency, the same default orders, the same conversion), so a fedpool ε can be checked
//! against it; `tests/accountant_reference.rs` does so on a table it generated.
//!
//! A round is described by a [`RoundMechanism`]: the Poisson-subsampled Gaussian (exact
//! RDP) or the Poisson-subsampled distributed discrete Gaussian, whose RDP is
//! [`crate::ddg::DdgParams::rdp`] amplified by the general bound of Zhu & Wang 2019
//! ([`rdp_poisson_subsampled`]).

mod fft;
mod ledger;
mod mechanism;
mod pld;
mod sgm;
mod subsampling;

pub use ledger::{
    BudgetError, BudgetLimit, BudgetTracker, PrivacyLedger, RoundRecord, SpendPreview,
};
pub use mechanism::{CountNoise, RoundMechanism, epsilon_for_rounds};
pub use pld::{PldAccountant, PldConfig};
pub use subsampling::{MAX_SUBSAMPLED_ORDER, rdp_poisson_subsampled, rdp_poisson_subsampled_curve};

use crate::error::{Error, Result, ensure};

/// The largest order accepted; integer orders cost `α` terms each.
pub const MAX_ORDER: f64 = 100_000.0;

/// The largest noise multiplier [`sigma_for`] searches.
pub const MAX_SIGMA: f64 = 10_000.0;

/// The default RDP orders: exactly those of `dp_accounting`'s `DEFAULT_RDP_ORDERS`
/// (`1 + x/10` for `x = 1..99`, then `11..=63`, then 128, 256, 512, 1024), so fedpool's
/// ε equals dp-accounting's wherever its fractional-order series is exact.
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// A superset of [`default_orders`] that never gives a larger ε: it adds `1.01..=1.09`
/// (large-ε regimes), the midpoints `1.15, 1.25, …, 10.95`, all integers up to 128 and
/// 160, 192, 384, 768. It roughly doubles the cost of composition.
pub fn extended_orders() -> Vec<f64> {
    let mut orders = default_orders();
    orders.extend((1..10).map(|x| 1.0 + f64::from(x) / 100.0));
    orders.extend((1..99).map(|x| 1.05 + f64::from(x) / 10.0));
    orders.extend((64..128).map(f64::from));
    orders.extend([160.0, 192.0, 384.0, 768.0]);
    orders.sort_by(f64::total_cmp);
    orders.dedup();
    orders
}

/// A Rényi-DP accountant: the RDP curve `ε(α)` of everything composed so far, on a fixed
/// grid of orders.
///
/// Rényi-DP composes additively at each order (Mironov 2017, "Rényi Differential Privacy",
/// Proposition 1), so composing `T` steps adds `T·ε_step(α)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self {
            rdp: vec![0.0; default_orders().len()],
            orders: default_orders(),
        }
    }
}

impl RdpAccountant {
    /// An accountant on the given orders; each must be finite, `> 1` and `≤ MAX_ORDER`.
    pub fn new(orders: Vec<f64>) -> Result<Self> {
        if orders.is_empty() {
            return Err(Error::LengthMismatch {
                name: "orders",
                expected: 1,
                actual: 0,
            });
        }
        for &order in &orders {
            ensure(
                order > 1.0 && order <= MAX_ORDER,
                "order",
                order,
                "1 < order <= 100000",
            )?;
        }
        Ok(Self {
            rdp: vec![0.0; orders.len()],
            orders,
        })
    }

    /// The orders α of the grid.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The composed RDP `ε(α)` at each order of [`Self::orders`].
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// Composes `steps` rounds of the Poisson-subsampled Gaussian mechanism with sampling
    /// rate `q ∈ [0, 1]` and noise multiplier `sigma ≥ 0` (Mironov, Talwar, Zhang 2019;
    /// see [`rdp_subsampled_gaussian`]).
    pub fn compose_subsampled_gaussian(&mut self, q: f64, sigma: f64, steps: u64) -> Result<()> {
        check_q_sigma(q, sigma)?;
        let per_step: Vec<f64> = self
            .orders
            .iter()
            .map(|&alpha| sgm::rdp_subsampled_gaussian(q, sigma, alpha))
            .collect();
        self.add_scaled(&per_step, steps);
        Ok(())
    }

    /// Composes `steps` runs of any mechanism given by its per-step RDP curve `rdp(α)`, for
    /// example [`crate::ddg::DdgParams::rdp`]. Values must be non-negative (`+∞` is allowed
    /// and makes that order useless).
    pub fn compose_rdp_fn(&mut self, rdp: impl Fn(f64) -> f64, steps: u64) -> Result<()> {
        let per_step: Vec<f64> = self.orders.iter().map(|&alpha| rdp(alpha)).collect();
        self.compose_curve(&per_step, steps)
    }

    /// Composes `steps` rounds of `mechanism` (see [`RoundMechanism::rdp_curve`]). Fails,
    /// composing nothing, if the mechanism's parameters are out of range.
    pub fn compose(&mut self, mechanism: &RoundMechanism, steps: u64) -> Result<()> {
        let per_step = mechanism.rdp_curve(&self.orders)?;
        self.add_scaled(&per_step, steps);
        Ok(())
    }

    /// Composes `steps` runs of a mechanism whose per-step curve on [`Self::orders`] was
    /// computed once (by [`RoundMechanism::rdp_curve`]), so a verifier replaying many
    /// histories of one mechanism evaluates it once.
    pub fn compose_curve(&mut self, per_step: &[f64], steps: u64) -> Result<()> {
        if per_step.len() != self.orders.len() {
            return Err(Error::LengthMismatch {
                name: "per_step",
                expected: self.orders.len(),
                actual: per_step.len(),
            });
        }
        for &value in per_step {
            ensure(
                value >= 0.0,
                "rdp",
                value,
                "a non-negative RDP value (NaN is rejected)",
            )?;
        }
        self.add_scaled(per_step, steps);
        Ok(())
    }

    fn add_scaled(&mut self, per_step: &[f64], steps: u64) {
        // Zero steps compose nothing; skipping them also avoids `∞ · 0 = NaN` for an order
        // at which the mechanism has no guarantee.
        if steps == 0 {
            return;
        }
        for (total, &value) in self.rdp.iter_mut().zip(per_step) {
            // A NaN cost is an unknown cost: +∞ at that order, never a free step.
            let value = crate::math::cost_or_infinity(value);
            if value > 0.0 {
                *total += value * steps as f64;
            }
        }
    }

    /// The smallest ε such that everything composed so far is (ε, δ)-DP, and the order α at
    /// which it is attained; see [`epsilon_from_rdp`].
    pub fn epsilon(&self, delta: f64) -> Result<(f64, f64)> {
        epsilon_from_rdp(&self.orders, &self.rdp, delta)
    }

    /// The smallest δ such that everything composed so far is (ε, δ)-DP, and the order α at
    /// which it is attained; see [`delta_from_rdp`].
    pub fn delta(&self, epsilon: f64) -> Result<(f64, f64)> {
        delta_from_rdp(&self.orders, &self.rdp, epsilon)
    }
}

/// Converts an RDP curve to the smallest ε with (ε, δ)-DP over the given orders, returning
/// `(ε, best order)`.
///
/// At each order α > 1 this is the conversion of Canonne, Kamath, Steinke 2020, "The
/// Discrete Gaussian for Differential Privacy", Proposition 12 (also Asoodeh et al. 2020,
/// Eq. 20):
///
/// ```text
/// ε = rdp(α) + ln((α - 1)/α) - (ln δ + ln α)/(α - 1)
/// ```
///
/// minimised over orders and floored at 0. As in dp-accounting, an order whose RDP `r`
/// satisfies `δ² > 1 - e^{-r}` gives ε = 0: the Bretagnolle–Huber inequality bounds the
/// total variation by `√(1 - e^{-KL})`, and `KL ≤ r` at every order. Orders with infinite
/// RDP are skipped; if all are infinite, ε is `+∞` with best order `NaN`.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64)> {
    ensure(delta > 0.0 && delta < 1.0, "delta", delta, "0 < delta < 1")?;
    check_curve(orders, rdp)?;
    let ln_delta = delta.ln();
    let mut best = (f64::INFINITY, f64::NAN);
    for (&alpha, &r) in orders.iter().zip(rdp) {
        let r = crate::math::cost_or_infinity(r);
        let eps = if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else {
            r + (-1.0 / alpha).ln_1p() - (ln_delta + alpha.ln()) / (alpha - 1.0)
        };
        if eps < best.0 {
            best = (eps, alpha);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

/// Converts an RDP curve to the smallest δ with (ε, δ)-DP over the given orders, returning
/// `(δ, best order)`.
///
/// The inverse of [`epsilon_from_rdp`] (Canonne, Kamath, Steinke 2020, Proposition 12):
/// `ln δ = (α - 1)(rdp(α) - ε + ln(1 - 1/α)) - ln α`, minimised over orders together with
/// the Bretagnolle–Huber bound `δ ≤ √(1 - e^{-rdp(α)})`, and capped at 1.
pub fn delta_from_rdp(orders: &[f64], rdp: &[f64], epsilon: f64) -> Result<(f64, f64)> {
    ensure(
        epsilon >= 0.0 && epsilon.is_finite(),
        "epsilon",
        epsilon,
        "0 <= epsilon < inf",
    )?;
    check_curve(orders, rdp)?;
    let mut best = (f64::INFINITY, f64::NAN);
    for (&alpha, &r) in orders.iter().zip(rdp) {
        let ln_delta_tv = if r == 0.0 {
            f64::NEG_INFINITY
        } else {
            0.5 * (-(-r).exp()).ln_1p()
        };
        let ln_delta_rdp = (alpha - 1.0) * (r - epsilon + (-1.0 / alpha).ln_1p()) - alpha.ln();
        let ln_delta = ln_delta_tv.min(ln_delta_rdp);
        if ln_delta < best.0 {
            best = (ln_delta, alpha);
        }
    }
    Ok((best.0.exp().min(1.0), best.1))
}

/// ε of `rounds` rounds of the Poisson-subsampled Gaussian mechanism (sampling rate `q`,
/// noise multiplier `sigma`) at the given δ, with the [`default_orders`] grid: the same
/// number as `dp_accounting`'s `RdpAccountant` where its series is exact.
pub fn epsilon(q: f64, sigma: f64, rounds: u64, delta: f64) -> Result<f64> {
    let mut accountant = RdpAccountant::default();
    accountant.compose_subsampled_gaussian(q, sigma, rounds)?;
    Ok(accountant.epsilon(delta)?.0)
}

/// The smallest noise multiplier σ (to a relative tolerance of 1e-6, rounded up) such that
/// `rounds` rounds at sampling rate `q` are `(target_epsilon, delta)`-DP by [`epsilon`].
///
/// ε is non-increasing in σ at every order (a larger σ is a post-processing of a smaller
/// one: add independent noise), so bisection is sound; the returned σ always satisfies
/// `epsilon(q, σ, rounds, delta) ≤ target_epsilon`. Fails with
/// [`Error::SigmaUnattainable`] if even [`MAX_SIGMA`] does not suffice.
pub fn sigma_for(q: f64, rounds: u64, target_epsilon: f64, delta: f64) -> Result<f64> {
    ensure(q > 0.0 && q <= 1.0, "q", q, "0 < q <= 1")?;
    ensure(rounds >= 1, "rounds", rounds as f64, "rounds >= 1")?;
    ensure(
        target_epsilon > 0.0 && target_epsilon.is_finite(),
        "target_epsilon",
        target_epsilon,
        "0 < target_epsilon < inf",
    )?;
    ensure(delta > 0.0 && delta < 1.0, "delta", delta, "0 < delta < 1")?;

    let eps_at = |sigma: f64| epsilon(q, sigma, rounds, delta);
    // Find an upper end that meets the target by doubling; ε(0) = ∞ is the lower end.
    let mut lo = 0.0;
    let mut hi = 1.0;
    loop {
        let eps = eps_at(hi)?;
        if eps <= target_epsilon {
            break;
        }
        if hi >= MAX_SIGMA {
            return Err(Error::SigmaUnattainable {
                target_epsilon,
                delta,
                q,
                rounds,
                max_sigma: MAX_SIGMA,
                epsilon_at_max_sigma: eps,
            });
        }
        lo = hi;
        hi = (hi * 2.0).min(MAX_SIGMA);
    }
    while hi - lo > 1e-6 * hi {
        let mid = 0.5 * (lo + hi);
        if eps_at(mid)? <= target_epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Per-step RDP `ε(α)` of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang
/// 2019, Sec. 3: the closed form at integer orders, the series at fractional orders).
pub fn rdp_subsampled_gaussian(q: f64, sigma: f64, alpha: f64) -> Result<f64> {
    check_q_sigma(q, sigma)?;
    ensure(
        alpha > 1.0 && alpha <= MAX_ORDER,
        "alpha",
        alpha,
        "1 < alpha <= 100000",
    )?;
    Ok(sgm::rdp_subsampled_gaussian(q, sigma, alpha))
}

fn check_q_sigma(q: f64, sigma: f64) -> Result<()> {
    ensure((0.0..=1.0).contains(&q), "q", q, "0 <= q <= 1")?;
    ensure(
        sigma >= 0.0 && sigma.is_finite(),
        "sigma",
        sigma,
        "0 <= sigma < inf",
    )
}

fn check_curve(orders: &[f64], rdp: &[f64]) -> Result<()> {
    if orders.len() != rdp.len() {
        return Err(Error::LengthMismatch {
            name: "rdp",
            expected: orders.len(),
            actual: rdp.len(),
        });
    }
    for &alpha in orders {
        ensure(
            alpha > 1.0 && alpha.is_finite(),
            "order",
            alpha,
            "1 < order < inf",
        )?;
    }
    for &r in rdp {
        ensure(r >= 0.0, "rdp", r, "a non-negative RDP value")?;
    }
    Ok(())
}

#[cfg(test)]
mod nan_tests {
    use super::*;

    #[test]
    fn a_nan_step_costs_infinity_at_its_order_never_zero() {
        let mut accountant = RdpAccountant::new(vec![2.0, 4.0]).unwrap();
        accountant.add_scaled(&[f64::NAN, f64::NAN], 3);
        assert_eq!(accountant.rdp(), &[f64::INFINITY, f64::INFINITY]);
        let (epsilon, _) = accountant.epsilon(1e-5).unwrap();
        assert_eq!(epsilon, f64::INFINITY, "a NaN step made ε {epsilon}");

        // One order with a NaN step is unusable; the others still bound the loss.
        let mut partial = RdpAccountant::new(vec![2.0, 4.0]).unwrap();
        partial.add_scaled(&[f64::NAN, 0.5], 1);
        let (epsilon, order) = partial.epsilon(1e-5).unwrap();
        assert_eq!(order, 4.0);
        assert!(epsilon.is_finite() && epsilon > 0.5);
    }

    #[test]
    fn nan_costs_become_infinity() {
        assert_eq!(crate::math::cost_or_infinity(f64::NAN), f64::INFINITY);
        assert_eq!(crate::math::cost_or_infinity(-1e-18), 0.0);
        assert_eq!(crate::math::cost_or_infinity(2.5), 2.5);
    }
}
