//! The distributed discrete Gaussian mechanism (DDG) for secure aggregation.
//!
//! Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated
//! Learning with Secure Aggregation" (ICML; arXiv:2102.06387). Each client turns its update
//! into integers modulo `m = 2^b` and adds its own share of discrete Gaussian noise; secure
//! aggregation sums the words modulo m without seeing any single one; the server decodes the
//! sum. Nobody, the server included, ever sees an un-noised update.
//!
//! Client, [`encode`] (their Algorithm 1):
//! 1. clip to L2 norm `c`;
//! 2. zero-pad to `d'`, the next power of two, and rotate `x ↦ H D_ξ x` with the round's
//!    shared seed ξ (random signs, then the orthonormal Walsh–Hadamard transform), which
//!    spreads the mass evenly over the coordinates;
//! 3. scale by `1/γ`;
//! 4. randomized rounding to integers, repeated until the rounded vector's norm is within
//!    the bound [`DdgParams::rounded_norm_bound`] (their Proposition 22), so the mechanism's
//!    sensitivity is known;
//! 5. add `N_Z(0, σ²/(nγ²))` noise per coordinate, sampled exactly, so the sum over `n`
//!    clients carries noise of variance `σ²/γ²` (σ² after unscaling);
//! 6. reduce modulo `2^b` into `u32` words.
//!
//! Server, [`decode`]: map each word of the modular sum to the centred range
//! `[-m/2, m/2)`, multiply by γ, undo the rotation, drop the padding.
//!
//! Privacy: [`DdgParams::rdp`] is the paper's Proposition 14 bound for the sum of `n`
//! independent discrete Gaussians (with the τ term of Theorem 1), ready for
//! [`crate::accountant::RdpAccountant::compose_rdp_fn`]. A round that Poisson-samples its
//! clients is accounted as
//! [`RoundMechanism::SubsampledDdg`](crate::accountant::RoundMechanism::SubsampledDdg),
//! which amplifies this curve by the sampling rate (Zhu & Wang 2019, Theorem 6).
//! Parameters: [`DdgParams::choose`].

mod discrete_gaussian;
mod hadamard;

pub use discrete_gaussian::{DiscreteGaussian, MAX_VARIANCE, VARIANCE_FRAC_BITS};

use rand::{CryptoRng, Rng};

use crate::error::{Error, Result, ensure};

/// Default β of conditional randomized rounding: `e^{-1/2}`, the value used in the paper's
/// experiments. Each rounding attempt then succeeds with probability at least `1 - β ≈ 0.39`.
pub const DEFAULT_BETA: f64 = 0.606_530_659_712_633_4;

/// Default probability that any coordinate of the aggregate wraps around modulo `2^b`, used
/// by [`DdgParams::choose`].
pub const DEFAULT_WRAP_PROBABILITY: f64 = 1e-9;

/// Default number of conditional-rounding attempts before [`Error::RoundingRetriesExhausted`];
/// with β = e^{-1/2} all of them fail with probability below 0.61^1000.
pub const DEFAULT_MAX_ROUNDING_RETRIES: u32 = 1000;

/// The inputs [`DdgParams::choose`] picks the granularity from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DdgConfig {
    /// Length of the update vector.
    pub dimension: usize,
    /// L2 clip norm `c` of each client's update.
    pub clip_norm: f64,
    /// Number of clients whose encodings are summed (and who each add a noise share).
    pub n_clients: usize,
    /// Standard deviation σ of the total noise in the sum, in the update's units; for a
    /// noise multiplier z this is `z · clip_norm`. Zero for no noise (no privacy).
    pub noise_std: f64,
    /// Bits per word, `b`, at most 32: the modulus is `2^b`.
    pub bits: u32,
    /// Conditional rounding parameter β ∈ [0, 1) (Proposition 22); 0 disables the
    /// condition and uses the deterministic bound `c/γ + √d'`.
    pub beta: f64,
    /// Target probability that any coordinate of the sum wraps around.
    pub wrap_probability: f64,
}

impl DdgConfig {
    /// A configuration with the default β ([`DEFAULT_BETA`]) and wrap probability
    /// ([`DEFAULT_WRAP_PROBABILITY`]).
    pub fn new(
        dimension: usize,
        clip_norm: f64,
        n_clients: usize,
        noise_std: f64,
        bits: u32,
    ) -> Self {
        Self {
            dimension,
            clip_norm,
            n_clients,
            noise_std,
            bits,
            beta: DEFAULT_BETA,
            wrap_probability: DEFAULT_WRAP_PROBABILITY,
        }
    }
}

/// The parameters every client of a round and the server share.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DdgParams {
    dimension: usize,
    padded_dimension: usize,
    clip_norm: f64,
    granularity: f64,
    bits: u32,
    beta: f64,
    n_clients: usize,
    noise_std: f64,
    max_rounding_retries: u32,
}

impl DdgParams {
    /// Parameters with an explicit granularity γ. Checks every range; see [`DdgConfig`] for
    /// the meaning of the others.
    pub fn new(config: &DdgConfig, granularity: f64) -> Result<Self> {
        ensure(
            config.dimension >= 1 && config.dimension <= 1 << 30,
            "dimension",
            config.dimension as f64,
            "1 <= dimension <= 2^30",
        )?;
        ensure(
            config.clip_norm > 0.0 && config.clip_norm.is_finite(),
            "clip_norm",
            config.clip_norm,
            "0 < clip_norm < inf",
        )?;
        ensure(
            config.n_clients >= 1,
            "n_clients",
            config.n_clients as f64,
            "n_clients >= 1",
        )?;
        ensure(
            config.noise_std >= 0.0 && config.noise_std.is_finite(),
            "noise_std",
            config.noise_std,
            "0 <= noise_std < inf",
        )?;
        ensure(
            (1..=32).contains(&config.bits),
            "bits",
            f64::from(config.bits),
            "1 <= bits <= 32",
        )?;
        ensure(
            (0.0..1.0).contains(&config.beta),
            "beta",
            config.beta,
            "0 <= beta < 1",
        )?;
        ensure(
            granularity > 0.0 && granularity.is_finite(),
            "granularity",
            granularity,
            "0 < granularity < inf",
        )?;
        let params = Self {
            dimension: config.dimension,
            padded_dimension: config.dimension.next_power_of_two(),
            clip_norm: config.clip_norm,
            granularity,
            bits: config.bits,
            beta: config.beta,
            n_clients: config.n_clients,
            noise_std: config.noise_std,
            max_rounding_retries: DEFAULT_MAX_ROUNDING_RETRIES,
        };
        if params.noise_std > 0.0 {
            let variance = params.local_noise_variance();
            ensure(
                variance > 0.0 && variance <= MAX_VARIANCE,
                "local noise variance noise_std²/(n_clients·granularity²)",
                variance,
                "0 < variance <= 2^40 (raise the granularity)",
            )?;
        }
        Ok(params)
    }

    /// Chooses the granularity γ for `config`: the smallest γ for which the aggregate of
    /// `n` clients stays inside the modular range `[-2^b/2, 2^b/2)` at every coordinate,
    /// except with probability `config.wrap_probability`.
    ///
    /// The rule is the paper's k-sigma bound on the aggregate (Kairouz, Liu, Steinke 2021,
    /// Sec. 4 and Theorem 34 / Eq. 61 of the arXiv version; the randomized Hadamard rotation
    /// makes each coordinate of the rotated signal sub-Gaussian with variance proxy
    /// `‖Σx_i‖²/d'`, their Lemma 29 with ρ = 1). In the update's units each coordinate of the
    /// decoded sum is sub-Gaussian with variance proxy
    ///
    /// ```text
    /// s² = n²c²/d'          (signal; worst case: all n updates aligned, ‖Σx_i‖ ≤ nc)
    ///    + nγ²(1/4 + 2^-20)  (randomized rounding, each client's error in (-γ, γ) is
    ///                         γ²/4-sub-Gaussian by Hoeffding; plus the sampler's rounding up
    ///                         of the variance)
    ///    + σ²                (discrete Gaussian noise, σ²-sub-Gaussian: Canonne, Kamath,
    ///                         Steinke 2020, Corollary 9)
    /// ```
    ///
    /// so `P[|coordinate| ≥ k·s] ≤ 2e^{-k²/2}`; a union bound over the `d'` coordinates gives
    /// `k = √(2 ln(2d'/p_wrap))`. No wrap-around needs `k·s/γ < 2^b/2`, i.e.
    /// `γ ≥ 2k·√(n²c²/d' + σ²) / √(4^b - k²n(1 + 2^-18))`, which is what this returns (times
    /// `1 + 1e-9`), or the coarser `σ/√(n·2^40)` if that is larger (the exact sampler's
    /// largest per-client variance, [`MAX_VARIANCE`]). Fails with [`Error::ModulusTooSmall`]
    /// when `4^b ≤ k²n(1 + 2^-18)`.
    pub fn choose(config: &DdgConfig) -> Result<Self> {
        ensure(
            config.wrap_probability > 0.0 && config.wrap_probability < 1.0,
            "wrap_probability",
            config.wrap_probability,
            "0 < wrap_probability < 1",
        )?;
        ensure(
            (1..=32).contains(&config.bits),
            "bits",
            f64::from(config.bits),
            "1 <= bits <= 32",
        )?;
        ensure(
            config.n_clients >= 1,
            "n_clients",
            config.n_clients as f64,
            "n_clients >= 1",
        )?;
        let padded = config.dimension.max(1).next_power_of_two() as f64;
        let n = config.n_clients as f64;
        let k = k_sigma(padded, config.wrap_probability);
        let modulus = 2f64.powi(config.bits as i32);
        let rounding_coefficient = n * (0.25 + 2f64.powi(-(VARIANCE_FRAC_BITS as i32)));
        let denominator = modulus * modulus - 4.0 * k * k * rounding_coefficient;
        if denominator <= 0.0 {
            return Err(Error::ModulusTooSmall {
                bits: config.bits,
                n_clients: config.n_clients,
                k_sigma: k,
            });
        }
        let signal_and_noise = n * n * config.clip_norm * config.clip_norm / padded
            + config.noise_std * config.noise_std;
        let mut granularity = 2.0 * k * signal_and_noise.sqrt() / denominator.sqrt() * (1.0 + 1e-9);
        // Never finer than the exact sampler supports: per-client noise std ≤ 2^20 steps.
        // Steps that much finer than the noise add no accuracy, only unused range.
        let finest_for_sampler = config.noise_std / (n * MAX_VARIANCE).sqrt() * (1.0 + 1e-9);
        granularity = granularity.max(finest_for_sampler);
        Self::new(config, granularity)
    }

    /// Sets how many conditional-rounding attempts [`encode`] makes before failing.
    pub fn with_max_rounding_retries(mut self, max_rounding_retries: u32) -> Self {
        self.max_rounding_retries = max_rounding_retries.max(1);
        self
    }

    /// How many conditional-rounding attempts [`encode`] makes before failing.
    pub fn max_rounding_retries(&self) -> u32 {
        self.max_rounding_retries
    }

    /// Length of the update vector.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// `d'`: the dimension padded to a power of two, the length of every encoding.
    pub fn padded_dimension(&self) -> usize {
        self.padded_dimension
    }

    /// The L2 clip norm `c`.
    pub fn clip_norm(&self) -> f64 {
        self.clip_norm
    }

    /// The granularity γ: one integer step in the encoding is γ in the update's units.
    pub fn granularity(&self) -> f64 {
        self.granularity
    }

    /// Bits per word `b`.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The modulus `m = 2^b`.
    pub fn modulus(&self) -> u64 {
        1u64 << self.bits
    }

    /// β of conditional rounding.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Number of clients `n` sharing the noise.
    pub fn n_clients(&self) -> usize {
        self.n_clients
    }

    /// σ, the std of the total noise in the update's units.
    pub fn noise_std(&self) -> f64 {
        self.noise_std
    }

    /// The per-client discrete Gaussian variance in integer units, `σ²/(nγ²)` (the sampler
    /// rounds it up to a multiple of 2^-20).
    pub fn local_noise_variance(&self) -> f64 {
        self.noise_std * self.noise_std
            / (self.n_clients as f64 * self.granularity * self.granularity)
    }

    /// Δ₂, the L2 norm bound of a client's rounded, scaled vector in integer units
    /// (Kairouz, Liu, Steinke 2021, Proposition 22 and Algorithm 1 step 3):
    ///
    /// ```text
    /// Δ₂ = min{ c/γ + √d',  √( c²/γ² + d'/4 + √(2 ln(1/β)) · (c/γ + √d'/2) ) }
    /// ```
    ///
    /// The first bound always holds (each coordinate moves by less than 1); the second holds
    /// for an unconditioned rounding with probability at least `1 - β`, so conditional
    /// rounding enforces it by re-rounding. With β = 0 only the first applies.
    pub fn rounded_norm_bound(&self) -> f64 {
        let scaled_clip = self.clip_norm / self.granularity;
        let d = self.padded_dimension as f64;
        let always = scaled_clip + d.sqrt();
        if self.beta == 0.0 {
            return always;
        }
        let conditional = (scaled_clip * scaled_clip
            + d / 4.0
            + (2.0 * (1.0 / self.beta).ln()).sqrt() * (scaled_clip + d.sqrt() / 2.0))
            .sqrt();
        always.min(conditional)
    }

    /// Δ₁, the L1 norm bound of a rounded, scaled vector: an integer vector has
    /// `‖x‖₁ ≤ min(√d'·‖x‖₂, ‖x‖₂²)`.
    pub fn rounded_l1_bound(&self) -> f64 {
        let l2 = self.rounded_norm_bound();
        l2 * (self.padded_dimension as f64).sqrt().min(l2)
    }

    /// τ of Kairouz, Liu, Steinke 2021, Theorem 1: how far the sum of `n` discrete Gaussians
    /// of variance `s²` (here the per-client variance in integer units) is from one discrete
    /// Gaussian of variance `ns²`:
    ///
    /// ```text
    /// τ = 10 · Σ_{k=1}^{n-1} exp(-2π² s² · k/(k+1))
    /// ```
    pub fn tau(&self) -> f64 {
        sum_of_discrete_gaussians_tau(self.local_noise_variance(), self.n_clients)
    }

    /// RDP at order `alpha` of one release of the noised sum, with respect to adding or
    /// removing one client's vector (Kairouz, Liu, Steinke 2021, Proposition 14 / Eq. 17,
    /// with the τ of Theorem 1):
    ///
    /// ```text
    /// ε(α) = min{ α/2 · Δ₂²/σ̃² + τd',
    ///             α/2 · (Δ₂²/σ̃² + 2τΔ₁/σ̃ + τ²d'),
    ///             α/2 · (Δ₂/σ̃ + τ√d')² }
    /// ```
    ///
    /// where `σ̃ = √n · s` is the std of the summed noise in integer units. Returns `+∞`
    /// (no guarantee) when there is no noise or the per-client std `s` is below 1/2, the
    /// range in which the paper's bound is proved. It assumes all `n` clients' noise reaches
    /// the sum: with dropouts, account with the surviving count. This is one release of the
    /// whole cohort, without amplification by sampling; for rounds that Poisson-sample their
    /// clients, account with
    /// [`RoundMechanism::SubsampledDdg`](crate::accountant::RoundMechanism::SubsampledDdg).
    pub fn rdp(&self, alpha: f64) -> f64 {
        self.rdp_fn()(alpha)
    }

    /// [`Self::rdp`] as a function of α, with τ (`O(n)`) and the sensitivities computed once:
    /// the subsampling bound evaluates the curve at every integer order up to ~1000.
    pub(crate) fn rdp_fn(&self) -> impl Fn(f64) -> f64 + use<> {
        let s2 = self.local_noise_variance();
        let no_guarantee = self.noise_std == 0.0 || s2 < 0.25;
        let total_std = (self.n_clients as f64 * s2).sqrt();
        let l2_scale = self.rounded_norm_bound() / total_std;
        let l1_scale = self.rounded_l1_bound() / total_std;
        let tau = if no_guarantee { 0.0 } else { self.tau() };
        let d = self.padded_dimension as f64;
        move |alpha: f64| {
            if no_guarantee {
                return f64::INFINITY;
            }
            let term_1 = alpha / 2.0 * l2_scale * l2_scale + tau * d;
            let term_2 = alpha / 2.0 * (l2_scale * l2_scale + 2.0 * l1_scale * tau + tau * tau * d);
            let term_3 = alpha / 2.0 * (l2_scale + d.sqrt() * tau).powi(2);
            term_1.min(term_2).min(term_3)
        }
    }

    /// Re-checks every range [`Self::new`] checks. Parameters can arrive deserialized (a
    /// ledger file, a round announcement) without passing through [`Self::new`], and an
    /// out-of-range field (say `n_clients = 0`) would make [`Self::rdp`] meaningless.
    pub(crate) fn validate(&self) -> Result<()> {
        let config = DdgConfig {
            dimension: self.dimension,
            clip_norm: self.clip_norm,
            n_clients: self.n_clients,
            noise_std: self.noise_std,
            bits: self.bits,
            beta: self.beta,
            wrap_probability: DEFAULT_WRAP_PROBABILITY,
        };
        let checked = Self::new(&config, self.granularity)?;
        ensure(
            self.padded_dimension == checked.padded_dimension,
            "padded_dimension",
            self.padded_dimension as f64,
            "the next power of two of dimension",
        )
    }
}

/// τ of Kairouz, Liu, Steinke 2021, Theorem 1, for the sum of `n_clients` discrete
/// Gaussians of per-client variance `local_variance`: `10 · Σ_{k=1}^{n-1} exp(-2π² s² k/(k+1))`.
pub(crate) fn sum_of_discrete_gaussians_tau(local_variance: f64, n_clients: usize) -> f64 {
    let mut tau = 0.0;
    for k in 1..n_clients {
        let k = k as f64;
        tau += (-2.0 * std::f64::consts::PI.powi(2) * local_variance * k / (k + 1.0)).exp();
    }
    10.0 * tau
}

/// `k = √(2 ln(2d'/p))`: the tail multiplier for which `d'` sub-Gaussian coordinates all
/// stay within `k` standard units except with probability `p`.
fn k_sigma(padded_dimension: f64, wrap_probability: f64) -> f64 {
    (2.0 * (2.0 * padded_dimension / wrap_probability).ln()).sqrt()
}

/// Steps 1–5 of the client's encoding (see the module docs), before the modular reduction:
/// the integer vector of length `d'` whose sum over clients the server needs.
///
/// `rotation_seed` must be the same for every client of the round and fresh each round.
/// Errors if the update's length is not `params.dimension()`, if it holds a non-finite
/// value, or if conditional rounding fails `params`' retry budget.
pub fn encode_integers<R: CryptoRng + Rng>(
    update: &[f32],
    params: &DdgParams,
    rotation_seed: &[u8; 32],
    rng: &mut R,
) -> Result<Vec<i64>> {
    if update.len() != params.dimension {
        return Err(Error::LengthMismatch {
            name: "update",
            expected: params.dimension,
            actual: update.len(),
        });
    }
    let mut values = vec![0.0f64; params.padded_dimension];
    for (out, &x) in values.iter_mut().zip(update) {
        ensure(
            x.is_finite(),
            "update coordinate",
            f64::from(x),
            "a finite value",
        )?;
        *out = f64::from(x);
    }
    // 1. Clip.
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    let clip_factor = if norm > params.clip_norm {
        params.clip_norm / norm
    } else {
        1.0
    };
    // 2. Rotate (padding is already zero).
    let signs = hadamard::signs(rotation_seed, params.padded_dimension);
    hadamard::rotate(&mut values, &signs);
    // 3. Scale by 1/γ (together with the clip factor; rotation is linear).
    let scale = clip_factor / params.granularity;
    for v in values.iter_mut() {
        *v *= scale;
    }
    // 4. Conditional randomized rounding.
    let bound = params.rounded_norm_bound();
    let mut rounded = vec![0i64; params.padded_dimension];
    let mut last_norm = f64::NAN;
    let mut accepted = false;
    for _ in 0..params.max_rounding_retries {
        let mut norm_sq: f64 = 0.0;
        for (out, &v) in rounded.iter_mut().zip(&values) {
            let floor = v.floor();
            let up = rng.random::<f64>() < v - floor;
            let r = floor as i64 + i64::from(up);
            *out = r;
            norm_sq += (r as f64) * (r as f64);
        }
        last_norm = norm_sq.sqrt();
        if last_norm <= bound {
            accepted = true;
            break;
        }
    }
    if !accepted {
        return Err(Error::RoundingRetriesExhausted {
            max_retries: params.max_rounding_retries,
            norm_bound: bound,
            last_norm,
        });
    }
    // 5. Add this client's share of discrete Gaussian noise.
    if params.noise_std > 0.0 {
        let sampler = DiscreteGaussian::new(params.local_noise_variance())?;
        for r in rounded.iter_mut() {
            // A sample beyond ±2^62 has probability exp(-2^90) at the largest variance;
            // saturating keeps the arithmetic total without affecting any real draw.
            let noise = sampler
                .sample(rng)
                .clamp(i128::from(i64::MIN / 2), i128::from(i64::MAX / 2))
                as i64;
            *r = r.saturating_add(noise);
        }
    }
    Ok(rounded)
}

/// The client's full encoding: [`encode_integers`] reduced modulo `2^b` into `u32` words,
/// ready for secure aggregation.
pub fn encode<R: CryptoRng + Rng>(
    update: &[f32],
    params: &DdgParams,
    rotation_seed: &[u8; 32],
    rng: &mut R,
) -> Result<Vec<u32>> {
    let integers = encode_integers(update, params, rotation_seed, rng)?;
    Ok(reduce_modular(&integers, params.bits))
}

/// Reduces integers modulo `2^bits` (`1 ≤ bits ≤ 32`) into words in `[0, 2^bits)`.
pub fn reduce_modular(integers: &[i64], bits: u32) -> Vec<u32> {
    let mask = modulus_mask(bits);
    // Two's complement: the low bits of x are x mod 2^bits for negative x too.
    integers.iter().map(|&x| (x as u64 & mask) as u32).collect()
}

/// `acc ← acc + words (mod 2^bits)`, the addition secure aggregation performs.
pub fn add_modular(acc: &mut [u32], words: &[u32], bits: u32) -> Result<()> {
    if acc.len() != words.len() {
        return Err(Error::LengthMismatch {
            name: "words",
            expected: acc.len(),
            actual: words.len(),
        });
    }
    let mask = modulus_mask(bits);
    for (a, &w) in acc.iter_mut().zip(words) {
        *a = ((u64::from(*a) + u64::from(w)) & mask) as u32;
    }
    Ok(())
}

/// The server's decoding of a modular sum of encodings: each word is mapped to the centred
/// range `[-2^b/2, 2^b/2)`, multiplied by γ, the rotation is undone and the padding
/// dropped. Returns the (noised) sum of the clients' clipped updates.
pub fn decode(sum: &[u32], params: &DdgParams, rotation_seed: &[u8; 32]) -> Result<Vec<f32>> {
    if sum.len() != params.padded_dimension {
        return Err(Error::LengthMismatch {
            name: "sum",
            expected: params.padded_dimension,
            actual: sum.len(),
        });
    }
    let modulus = params.modulus() as i64;
    let half = modulus / 2;
    let mut values: Vec<f64> = sum
        .iter()
        .map(|&w| {
            let w = i64::from(w) & (modulus - 1);
            let centred = if w >= half { w - modulus } else { w };
            centred as f64 * params.granularity
        })
        .collect();
    let signs = hadamard::signs(rotation_seed, params.padded_dimension);
    hadamard::unrotate(&mut values, &signs);
    Ok(values[..params.dimension]
        .iter()
        .map(|&v| v as f32)
        .collect())
}

fn modulus_mask(bits: u32) -> u64 {
    (1u64 << bits.clamp(1, 32)) - 1
}

#[cfg(test)]
mod tests;
