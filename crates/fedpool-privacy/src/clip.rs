//! L2 clipping of client updates, fixed or adaptive.
//!
//! Client-level DP bounds each client's influence by clipping its model delta to L2 norm C
//! before aggregation (McMahan et al. 2018, "Learning Differentially Private Recurrent
//! Language Models", Algorithm 1); the noise is then calibrated to C.

use rand::{CryptoRng, Rng};

use crate::error::{Result, ensure};
use crate::gaussian::standard_normal;

/// The L2 norm of `values`, accumulated in `f64` so a million `f32` coordinates lose no
/// precision to the running sum.
pub fn l2_norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// Clips `update` in place to L2 norm at most `clip_norm` and returns its original norm.
///
/// `clip_norm = f64::INFINITY` disables clipping, and an update already within the bound is
/// left untouched: both are exact no-ops. Otherwise the update is scaled by
/// `clip_norm / norm` (computed in `f64`); if `f32` rounding leaves the result a hair above
/// the bound, it is scaled down again, so the returned update always satisfies
/// [`l2_norm`]`(update) <= clip_norm`.
///
/// Errors if `clip_norm` is not in `(0, ∞]`.
pub fn clip_l2(update: &mut [f32], clip_norm: f64) -> Result<f64> {
    ensure(
        clip_norm > 0.0,
        "clip_norm",
        clip_norm,
        "0 < clip_norm <= inf (inf disables clipping)",
    )?;
    let norm = l2_norm(update);
    if norm <= clip_norm {
        return Ok(norm);
    }
    let factor = clip_norm / norm;
    for x in update.iter_mut() {
        *x = (f64::from(*x) * factor) as f32;
    }
    // Each f32 rounding moves a normal coordinate by at most 2^-24 relatively, so the norm
    // can exceed the bound by at most that much and one shrink by 1e-7 fixes it. The
    // doubling shrink guarantees termination even for subnormal coordinates (it reaches
    // 1, i.e. zero, at worst).
    let mut shrink = 1e-7;
    while l2_norm(update) > clip_norm {
        for x in update.iter_mut() {
            *x = (f64::from(*x) * (1.0 - shrink)) as f32;
        }
        shrink = (shrink * 2.0).min(1.0);
    }
    Ok(norm)
}

/// Adaptive clipping to a norm quantile (Andrew, Thakkar, McMahan, Ramaswamy 2021,
/// "Differentially Private Learning with Adaptive Clipping", Algorithm 1).
///
/// Each round every participant reports `b_i = 1[‖Δ_i‖ ≤ C]`; the server forms the noisy
/// fraction `b̄ = (Σ b_i + N(0, σ_b²)) / m` and moves the clip norm geometrically,
/// `C ← C · exp(-η_C (b̄ - γ))` (their Eq. 2 and the geometric update of Sec. 3), which
/// converges to the γ-quantile of the update norms. The count is itself a DP release: see
/// [`update_noise_multiplier`] for the noise split of their Theorem 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantileClipEstimator {
    clip_norm: f64,
    target_quantile: f64,
    learning_rate: f64,
    count_noise_std: f64,
}

impl QuantileClipEstimator {
    /// An estimator starting at `initial_clip_norm > 0`, aiming for the `target_quantile`
    /// γ ∈ (0, 1) of update norms, with learning rate η_C > 0 (the paper uses 0.2) and
    /// noise std σ_b ≥ 0 on the clipped count (the paper suggests m/20 for m clients).
    pub fn new(
        initial_clip_norm: f64,
        target_quantile: f64,
        learning_rate: f64,
        count_noise_std: f64,
    ) -> Result<Self> {
        ensure(
            initial_clip_norm > 0.0 && initial_clip_norm.is_finite(),
            "initial_clip_norm",
            initial_clip_norm,
            "0 < initial_clip_norm < inf",
        )?;
        ensure(
            target_quantile > 0.0 && target_quantile < 1.0,
            "target_quantile",
            target_quantile,
            "0 < target_quantile < 1",
        )?;
        ensure(
            learning_rate > 0.0 && learning_rate.is_finite(),
            "learning_rate",
            learning_rate,
            "0 < learning_rate < inf",
        )?;
        ensure(
            count_noise_std >= 0.0 && count_noise_std.is_finite(),
            "count_noise_std",
            count_noise_std,
            "0 <= count_noise_std < inf",
        )?;
        Ok(Self {
            clip_norm: initial_clip_norm,
            target_quantile,
            learning_rate,
            count_noise_std,
        })
    }

    /// The clip norm to use this round.
    pub fn clip_norm(&self) -> f64 {
        self.clip_norm
    }

    /// The target quantile γ.
    pub fn target_quantile(&self) -> f64 {
        self.target_quantile
    }

    /// The noise std σ_b on the clipped count.
    pub fn count_noise_std(&self) -> f64 {
        self.count_noise_std
    }

    /// One round from the participants' update norms: counts the norms within the current
    /// clip norm, adds N(0, σ_b²) to the count, and applies [`Self::update_from_noisy_count`].
    /// Returns the new clip norm. An empty round leaves the clip norm unchanged.
    pub fn update<R: CryptoRng + Rng>(&mut self, update_norms: &[f64], rng: &mut R) -> f64 {
        if update_norms.is_empty() {
            return self.clip_norm;
        }
        let unclipped = update_norms
            .iter()
            .filter(|&&norm| norm <= self.clip_norm)
            .count() as f64;
        let noise = if self.count_noise_std > 0.0 {
            self.count_noise_std * standard_normal(rng)
        } else {
            0.0
        };
        self.update_from_noisy_count(unclipped + noise, update_norms.len())
    }

    /// One round from an already noised count of unclipped updates (as it comes out of
    /// secure aggregation of the `b_i`): `C ← C · exp(-η_C (count/n_participants - γ))`.
    /// Returns the new clip norm. `n_participants = 0` leaves it unchanged.
    pub fn update_from_noisy_count(
        &mut self,
        noisy_unclipped_count: f64,
        n_participants: usize,
    ) -> f64 {
        if n_participants == 0 || !noisy_unclipped_count.is_finite() {
            return self.clip_norm;
        }
        let fraction = noisy_unclipped_count / n_participants as f64;
        self.clip_norm *= (-self.learning_rate * (fraction - self.target_quantile)).exp();
        self.clip_norm
    }
}

/// The noise multiplier for the update sum when the same round also releases a clipped
/// count with noise σ_b, so that the pair costs as much privacy as one Gaussian release with
/// noise multiplier `target_noise_multiplier`.
///
/// Andrew et al. 2021, Theorem 1: releasing the sum with noise multiplier σ_Δ and the
/// centred count (sensitivity ½) with noise σ_b is equivalent to a single Gaussian mechanism
/// with `z^{-2} = σ_Δ^{-2} + (2σ_b)^{-2}`, hence `σ_Δ = (z^{-2} - (2σ_b)^{-2})^{-1/2}`.
/// Requires `σ_b > z/2`; `σ_b = 0` is taken as "no count released" and returns `z`.
pub fn update_noise_multiplier(target_noise_multiplier: f64, count_noise_std: f64) -> Result<f64> {
    let z = target_noise_multiplier;
    ensure(
        z > 0.0 && z.is_finite(),
        "target_noise_multiplier",
        z,
        "0 < target_noise_multiplier < inf",
    )?;
    if count_noise_std == 0.0 {
        return Ok(z);
    }
    ensure(
        count_noise_std > z / 2.0 && count_noise_std.is_finite(),
        "count_noise_std",
        count_noise_std,
        "count_noise_std > target_noise_multiplier / 2 (or 0 for no count)",
    )?;
    Ok((z.powi(-2) - (2.0 * count_noise_std).powi(-2)).powf(-0.5))
}
