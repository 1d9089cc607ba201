//! Central Gaussian noise for the sum of clipped updates.
//!
//! The Gaussian mechanism adds `N(0, (z·C)²)` to each coordinate of the sum of updates
//! clipped to L2 norm C; z is the noise multiplier the accountant is given (Abadi et al.
//! 2016, "Deep Learning with Differential Privacy", Algorithm 1; McMahan et al. 2018).
//!
//! Samples come from the Marsaglia polar method (Marsaglia and Bray 1964, "A Convenient
//! Method for Generating Normal Variables"): draw `u, v` uniform in (-1, 1) until
//! `0 < s = u² + v² < 1`, then `u·√(-2 ln s / s)` and `v·√(-2 ln s / s)` are independent
//! standard normals. Uniforms are 53-bit doubles from the caller's CSPRNG. Unlike Box–Muller
//! it needs no trigonometric functions; it rejects 1 − π/4 ≈ 21% of pairs.
//!
//! Floating-point noise is only approximately Gaussian and leaks through its low-order bits
//! (Mironov 2012, "On Significance of the Least Significant Bits for Differential Privacy");
//! this module is for a trusted aggregator and for simulation. Deployments that aggregate
//! securely use the integer mechanism in [`crate::ddg`], whose sampler is exact.

use rand::{CryptoRng, Rng};

use crate::error::{Result, ensure};

/// One standard normal sample by the polar method (one of the pair is discarded).
pub fn standard_normal<R: CryptoRng + Rng>(rng: &mut R) -> f64 {
    polar_pair(rng).0
}

/// Adds independent `N(0, (noise_multiplier · clip_norm)²)` noise to every coordinate of
/// `sum` (accumulating each coordinate in `f64`).
///
/// `noise_multiplier = 0` is an exact no-op (the RNG is not touched), whatever `clip_norm`
/// is. Otherwise `noise_multiplier` must be finite and positive and `clip_norm` finite and
/// positive: noise calibrated to an unbounded norm is meaningless.
pub fn add_gaussian_noise<R: CryptoRng + Rng>(
    sum: &mut [f32],
    noise_multiplier: f64,
    clip_norm: f64,
    rng: &mut R,
) -> Result<()> {
    ensure(
        noise_multiplier >= 0.0 && noise_multiplier.is_finite(),
        "noise_multiplier",
        noise_multiplier,
        "0 <= noise_multiplier < inf",
    )?;
    if noise_multiplier == 0.0 {
        return Ok(());
    }
    ensure(
        clip_norm > 0.0 && clip_norm.is_finite(),
        "clip_norm",
        clip_norm,
        "0 < clip_norm < inf when noise_multiplier > 0",
    )?;
    let std = noise_multiplier * clip_norm;
    let mut pairs = sum.chunks_exact_mut(2);
    for pair in &mut pairs {
        let (a, b) = polar_pair(rng);
        pair[0] = (f64::from(pair[0]) + std * a) as f32;
        pair[1] = (f64::from(pair[1]) + std * b) as f32;
    }
    for x in pairs.into_remainder() {
        *x = (f64::from(*x) + std * standard_normal(rng)) as f32;
    }
    Ok(())
}

/// Two independent standard normals by the Marsaglia polar method.
fn polar_pair<R: CryptoRng + Rng>(rng: &mut R) -> (f64, f64) {
    loop {
        // random::<f64>() is uniform on [0, 1) with 53 random bits.
        let u = 2.0 * rng.random::<f64>() - 1.0;
        let v = 2.0 * rng.random::<f64>() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            let factor = (-2.0 * s.ln() / s).sqrt();
            return (u * factor, v * factor);
        }
    }
}
