//! Clipping, central Gaussian noise and adaptive clipping.

use fedpool_privacy::clip::update_noise_multiplier;
use fedpool_privacy::gaussian::standard_normal;
use fedpool_privacy::{Error, QuantileClipEstimator, add_gaussian_noise, clip_l2, l2_norm};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SEED: u64 = 42;

proptest! {
    #[test]
    fn clipped_norm_never_exceeds_the_bound(
        update in prop::collection::vec(-1e3f32..1e3, 1..200),
        clip_norm in 1e-3f64..1e3,
    ) {
        let mut clipped = update.clone();
        let original_norm = clip_l2(&mut clipped, clip_norm).unwrap();
        prop_assert_eq!(original_norm, l2_norm(&update));
        prop_assert!(l2_norm(&clipped) <= clip_norm);
        if original_norm <= clip_norm {
            prop_assert_eq!(clipped, update);
        } else {
            // Same direction, norm at the bound up to f32 rounding.
            prop_assert!(l2_norm(&clipped) >= clip_norm * (1.0 - 1e-5));
            let factor = clip_norm / original_norm;
            for (c, u) in clipped.iter().zip(&update) {
                prop_assert!((f64::from(*c) - f64::from(*u) * factor).abs() <= 1e-6 * clip_norm + 1e-30);
            }
        }
    }
}

#[test]
fn zero_noise_and_disabled_clipping_are_exact_no_ops() {
    let original: Vec<f32> = vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38, -7.25, 0.1];
    let mut update = original.clone();
    let norm = clip_l2(&mut update, f64::INFINITY).unwrap();
    assert_eq!(norm, l2_norm(&original));
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let untouched = rng.clone();
    add_gaussian_noise(&mut update, 0.0, f64::INFINITY, &mut rng).unwrap();
    add_gaussian_noise(&mut update, 0.0, 1.0, &mut rng).unwrap();
    // Bit-for-bit, including the sign of zero, and the RNG was not advanced.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&update), bits(&original));
    assert_eq!(rng.next_u64(), untouched.clone().next_u64());
}

#[test]
fn gaussian_noise_has_std_z_times_c() {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let n = 400_001; // odd: exercises the unpaired last coordinate
    let mut sum = vec![10.0f32; n];
    add_gaussian_noise(&mut sum, 1.1, 0.5, &mut rng).unwrap();
    let mean = sum.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let var = sum
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / (n - 1) as f64;
    let kurtosis = sum
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(4))
        .sum::<f64>()
        / n as f64
        / (var * var);
    let std = 0.55;
    assert!(
        (mean - 10.0).abs() < 5.0 * std / (n as f64).sqrt(),
        "{mean}"
    );
    assert!(
        (var.sqrt() / std - 1.0).abs() < 5.0 / (2.0 * n as f64).sqrt(),
        "{}",
        var.sqrt()
    );
    assert!((kurtosis - 3.0).abs() < 0.05, "{kurtosis}");
}

#[test]
fn noise_and_clip_reject_bad_parameters() {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let mut v = vec![1.0f32; 4];
    assert!(matches!(
        clip_l2(&mut v, 0.0),
        Err(Error::OutOfRange {
            name: "clip_norm",
            ..
        })
    ));
    assert!(matches!(
        clip_l2(&mut v, f64::NAN),
        Err(Error::OutOfRange {
            name: "clip_norm",
            ..
        })
    ));
    assert!(matches!(
        add_gaussian_noise(&mut v, -1.0, 1.0, &mut rng),
        Err(Error::OutOfRange {
            name: "noise_multiplier",
            ..
        })
    ));
    let err = add_gaussian_noise(&mut v, 1.0, f64::INFINITY, &mut rng).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("clip_norm = inf is out of range"),
        "{err}"
    );
}

/// Norms drawn from a fixed log-normal distribution: exp(N(0, 1)), whose γ-quantile is
/// exp(Φ⁻¹(γ)).
fn lognormal_norms(rng: &mut ChaCha20Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| standard_normal(rng).exp()).collect()
}

#[test]
fn adaptive_clipping_converges_to_the_target_quantile() {
    // (γ, Φ⁻¹(γ))
    for (target, z) in [(0.5, 0.0), (0.9, 1.281_551_565_5), (0.2, -0.841_621_233_6)] {
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        let n_clients = 100;
        // σ_b = m/20 as the paper suggests.
        let mut estimator =
            QuantileClipEstimator::new(0.01, target, 0.2, n_clients as f64 / 20.0).unwrap();
        for _ in 0..600 {
            let norms = lognormal_norms(&mut rng, n_clients);
            estimator.update(&norms, &mut rng);
        }
        // Average the last 200 rounds' clip norms to smooth the stochastic steps.
        let mut tail = 0.0;
        for _ in 0..200 {
            let norms = lognormal_norms(&mut rng, n_clients);
            tail += estimator.update(&norms, &mut rng).ln();
        }
        let clip = (tail / 200.0).exp();
        let quantile = f64::exp(z);
        assert!(
            (clip / quantile).ln().abs() < 0.1,
            "γ = {target}: clip {clip}, quantile {quantile}"
        );
        // The fraction of a large fresh sample under the clip norm is near γ.
        let fresh = lognormal_norms(&mut rng, 100_000);
        let fraction = fresh.iter().filter(|&&x| x <= clip).count() as f64 / fresh.len() as f64;
        assert!(
            (fraction - target).abs() < 0.04,
            "γ = {target}: fraction {fraction}"
        );
    }
}

#[test]
fn adaptive_clipping_update_is_geometric() {
    let mut estimator = QuantileClipEstimator::new(2.0, 0.5, 0.2, 0.0).unwrap();
    // All clients unclipped: b̄ = 1, C ← C·exp(-0.2·0.5).
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let new = estimator.update(&[0.1, 0.2, 0.3], &mut rng);
    assert!((new - 2.0 * (-0.1f64).exp()).abs() < 1e-15);
    assert_eq!(estimator.update(&[], &mut rng), new);
    assert!(QuantileClipEstimator::new(1.0, 1.0, 0.2, 0.0).is_err());
    let _: f64 = rng.random();
}

#[test]
fn noise_split_between_sum_and_count() {
    // z^-2 = z_Δ^-2 + (2σ_b)^-2
    let z_delta = update_noise_multiplier(1.0, 5.0).unwrap();
    assert!((z_delta.powi(-2) + 10f64.powi(-2) - 1.0).abs() < 1e-12);
    assert_eq!(update_noise_multiplier(1.0, 0.0).unwrap(), 1.0);
    assert!(matches!(
        update_noise_multiplier(1.0, 0.4),
        Err(Error::OutOfRange {
            name: "count_noise_std",
            ..
        })
    ));
}
