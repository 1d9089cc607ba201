//! The mechanisms one training round can apply to a node's data, and their per-round RDP.

use super::{RdpAccountant, check_q_sigma, sgm, subsampling};
use crate::ddg::DdgParams;
use crate::error::{Result, ensure};

/// What one round does to a data owner's update, as far as privacy is concerned: how the
/// round's participants are sampled and how their aggregate is noised.
///
/// Both variants sample each client independently with probability `q` (Poisson
/// sampling) and are accounted under add/remove-one-client adjacency, like the rest of the
/// accountant. [`PrivacyLedger`](super::PrivacyLedger) and [`RdpAccountant::compose`] take
/// any of them, so a ledger can mix rounds of different kinds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RoundMechanism {
    /// Poisson-subsampled Gaussian (central DP): exact RDP of Mironov–Talwar–Zhang.
    SubsampledGaussian {
        /// Poisson sampling rate of the round, in `[0, 1]`.
        q: f64,
        /// Noise std divided by the L2 clip norm (the sensitivity).
        noise_multiplier: f64,
    },
    /// Poisson-subsampled distributed discrete Gaussian: DdgParams::rdp amplified by Zhu–Wang Thm 6.
    ///
    /// The base curve is [`DdgParams::rdp`], one release of the noised modular sum; Zhu &
    /// Wang 2019, Theorem 6 turns it into a bound for the sampled round
    /// ([`subsampling::rdp_poisson_subsampled`]). That theorem holds for *any* mechanism,
    /// which is what the DDG needs: the exact subsampled-Gaussian formula does not apply to
    /// discrete noise, rounding and the τ term. The price is the theorem's factor 3 (a
    /// `ln 3/(α-1)` gap at most), measured in `tests/subsampling.rs`.
    ///
    /// Assumption, as for [`DdgParams::rdp`]: whichever clients are sampled, the noise
    /// shares of at least `params.n_clients()` of them reach the sum, i.e. the per-client
    /// share `σ²/n` is sized for the smallest cohort that can be aggregated. With fewer, the
    /// sum carries less noise than this accounts for.
    SubsampledDdg {
        /// Poisson sampling rate of the round, in `[0, 1]`.
        q: f64,
        /// The round's DDG parameters (granularity, clip, noise, cohort size).
        params: DdgParams,
    },
    /// [`RoundMechanism::SubsampledDdg`] plus the noised count of unclipped updates that
    /// adaptive clipping releases in the same round (Andrew et al. 2021): both releases
    /// compose per order before amplification by sampling.
    SubsampledDdgWithCount {
        /// Poisson sampling rate of the round, in `[0, 1]`.
        q: f64,
        /// The update's DDG parameters.
        params: DdgParams,
        /// The count's noise.
        count: CountNoise,
    },
}

/// The noise on a securely aggregated count of unclipped updates: each of the `n_clients`
/// members whose shares must reach the sum encodes its bit as `(2b − 1)·s ∈ {−s, +s}` (0 when
/// it does not contribute this round) and adds a discrete Gaussian of variance
/// `(2σ_b·s)²/n_clients`, so the sum, divided by `2s`, is the centred count `Σ(b − ½)` with
/// noise of std `σ_b` in count units. The scale `s` ([`CountNoise::scale`]) keeps each
/// member's share of the noise wide enough for the discrete Gaussian's bounds however many
/// members split it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CountNoise {
    /// Members whose noise shares are guaranteed to be in the sum.
    pub n_clients: usize,
    /// σ_b: noise std on the centred count (whose sensitivity is ½).
    pub noise_std: f64,
}

impl CountNoise {
    /// The integer scale `s` each member multiplies its ±1 by: the smallest power of two with
    /// `s ≥ √n / σ_b`, so each member's noise variance `(2σ_b·s)²/n` is at least 4.
    pub fn scale(&self) -> i64 {
        if !(self.noise_std > 0.0 && self.noise_std.is_finite()) {
            return 1;
        }
        let wanted = (self.n_clients.max(1) as f64).sqrt() / self.noise_std;
        let mut scale: i64 = 1;
        while (scale as f64) < wanted && scale < 1 << 30 {
            scale <<= 1;
        }
        scale
    }

    /// Each member's discrete Gaussian variance, in the encoded units (`±s` per bit).
    pub fn local_variance(&self) -> f64 {
        let scaled_std = 2.0 * self.noise_std * self.scale() as f64;
        scaled_std * scaled_std / self.n_clients.max(1) as f64
    }

    /// RDP at order `alpha` of one release of the count, by Kairouz, Liu, Steinke 2021,
    /// Proposition 14 in one dimension: `α/2 · Δ²/σ̃² + τ` with `Δ = s` (one member's `±s`
    /// against 0), `σ̃² = (2σ_b·s)²` and τ of their Theorem 1. `+∞` without noise or below the
    /// proven range (per-member std under ½).
    pub fn rdp(&self, alpha: f64) -> f64 {
        let s2 = self.local_variance();
        if self.noise_std == 0.0 || s2 < 0.25 {
            return f64::INFINITY;
        }
        let tau = crate::ddg::sum_of_discrete_gaussians_tau(s2, self.n_clients);
        alpha / 2.0 / (4.0 * self.noise_std * self.noise_std) + tau
    }
}

impl RoundMechanism {
    /// The Poisson sampling rate `q`.
    pub fn sampling_rate(&self) -> f64 {
        match *self {
            RoundMechanism::SubsampledGaussian { q, .. }
            | RoundMechanism::SubsampledDdg { q, .. }
            | RoundMechanism::SubsampledDdgWithCount { q, .. } => q,
        }
    }

    /// The noise multiplier: noise std over the L2 clip norm (for the DDG,
    /// `params.noise_std() / params.clip_norm()`, the multiplier its continuous counterpart
    /// would have). Informational: the DDG's privacy also depends on its granularity.
    pub fn noise_multiplier(&self) -> f64 {
        match *self {
            RoundMechanism::SubsampledGaussian {
                noise_multiplier, ..
            } => noise_multiplier,
            RoundMechanism::SubsampledDdg { params, .. } => params.noise_std() / params.clip_norm(),
            // Andrew et al. 2021, Theorem 1: z^{-2} = z_Δ^{-2} + (2σ_b)^{-2}.
            RoundMechanism::SubsampledDdgWithCount { params, count, .. } => {
                let z_update = params.noise_std() / params.clip_norm();
                let z_count = 2.0 * count.noise_std;
                if z_update == 0.0 || z_count == 0.0 {
                    0.0
                } else {
                    (z_update.powi(-2) + z_count.powi(-2)).powf(-0.5)
                }
            }
        }
    }

    /// Checks every parameter: `q ∈ [0, 1]`, a finite non-negative noise multiplier, and for
    /// the DDG every range [`DdgParams::new`] checks (parameters may have been deserialized).
    pub fn validate(&self) -> Result<()> {
        match self {
            RoundMechanism::SubsampledGaussian {
                q,
                noise_multiplier,
            } => check_q_sigma(*q, *noise_multiplier),
            RoundMechanism::SubsampledDdg { q, params } => {
                ensure((0.0..=1.0).contains(q), "q", *q, "0 <= q <= 1")?;
                params.validate()
            }
            RoundMechanism::SubsampledDdgWithCount { q, params, count } => {
                ensure((0.0..=1.0).contains(q), "q", *q, "0 <= q <= 1")?;
                ensure(
                    count.n_clients >= 1,
                    "count.n_clients",
                    count.n_clients as f64,
                    "n_clients >= 1",
                )?;
                ensure(
                    count.noise_std >= 0.0 && count.noise_std.is_finite(),
                    "count.noise_std",
                    count.noise_std,
                    "0 <= noise_std < inf",
                )?;
                params.validate()
            }
        }
    }

    /// The RDP of one round at order `alpha > 1` (finite), possibly `+∞`.
    pub fn rdp(&self, alpha: f64) -> Result<f64> {
        Ok(self.rdp_curve(&[alpha])?[0])
    }

    /// The RDP of one round at each of `orders` (each `> 1` and finite).
    ///
    /// The Gaussian's is exact, per order ([`super::rdp_subsampled_gaussian`]); the DDG's is
    /// [`subsampling::rdp_poisson_subsampled_curve`] over [`DdgParams::rdp`], which shares
    /// the tabulated base curve across orders.
    pub fn rdp_curve(&self, orders: &[f64]) -> Result<Vec<f64>> {
        self.validate()?;
        for &alpha in orders {
            ensure(
                alpha > 1.0 && alpha.is_finite(),
                "alpha",
                alpha,
                "1 < alpha < inf",
            )?;
        }
        match self {
            RoundMechanism::SubsampledGaussian {
                q,
                noise_multiplier,
            } => Ok(orders
                .iter()
                .map(|&alpha| sgm::rdp_subsampled_gaussian(*q, *noise_multiplier, alpha))
                .collect()),
            RoundMechanism::SubsampledDdg { q, params } => {
                subsampling::rdp_poisson_subsampled_curve(*q, orders, params.rdp_fn())
            }
            RoundMechanism::SubsampledDdgWithCount { q, params, count } => {
                let update = params.rdp_fn();
                let count = *count;
                subsampling::rdp_poisson_subsampled_curve(*q, orders, move |alpha| {
                    update(alpha) + count.rdp(alpha)
                })
            }
        }
    }
}

/// ε of `rounds` rounds of `mechanism` at the given δ, on the
/// [`default_orders`](super::default_orders) grid. For
/// [`RoundMechanism::SubsampledGaussian`] this equals [`super::epsilon`].
pub fn epsilon_for_rounds(mechanism: &RoundMechanism, rounds: u64, delta: f64) -> Result<f64> {
    let mut accountant = RdpAccountant::default();
    accountant.compose(mechanism, rounds)?;
    Ok(accountant.epsilon(delta)?.0)
}
