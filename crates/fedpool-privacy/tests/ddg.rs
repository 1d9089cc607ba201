//! The distributed discrete Gaussian through its public API: encode on clients, modular sum,
//! decode on the server, and its privacy in the accountant.

use fedpool_privacy::ddg::{DdgConfig, DdgParams, add_modular, decode, encode};
use fedpool_privacy::{Error, RdpAccountant};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SEED: u64 = 7;

#[test]
fn noisy_round_trip_is_unbiased_with_the_planned_noise() {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let (dimension, n_clients, clip) = (3000, 50, 1.0);
    let noise_std = 0.8 * clip;
    let params =
        DdgParams::choose(&DdgConfig::new(dimension, clip, n_clients, noise_std, 20)).unwrap();
    let seed: [u8; 32] = rng.random();
    let update: Vec<f32> = (0..dimension)
        .map(|i| if i % 2 == 0 { 0.01 } else { -0.01 })
        .collect();
    let mut sum = vec![0u32; params.padded_dimension()];
    for _ in 0..n_clients {
        add_modular(
            &mut sum,
            &encode(&update, &params, &seed, &mut rng).unwrap(),
            params.bits(),
        )
        .unwrap();
    }
    let decoded = decode(&sum, &params, &seed).unwrap();
    assert_eq!(decoded.len(), dimension);
    let errors: Vec<f64> = decoded
        .iter()
        .zip(&update)
        .map(|(&d, &u)| f64::from(d) - n_clients as f64 * f64::from(u))
        .collect();
    let mean = errors.iter().sum::<f64>() / dimension as f64;
    let std = (errors.iter().map(|e| e * e).sum::<f64>() / dimension as f64).sqrt();
    // Noise std σ plus rounding √(n/4)·γ, spread evenly by the rotation.
    let predicted =
        (noise_std.powi(2) + n_clients as f64 * params.granularity().powi(2) / 4.0).sqrt();
    assert!(
        mean.abs() < 5.0 * predicted / (dimension as f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (std / predicted - 1.0).abs() < 0.1,
        "std {std}, predicted {predicted}"
    );
}

#[test]
fn ddg_privacy_approaches_the_gaussian_mechanism() {
    // With many bits the granularity is fine, Δ₂ ≈ c/γ and τ ≈ 0: the DDG's ε is close to
    // (and never below) the continuous Gaussian mechanism's with the same noise multiplier.
    let (dimension, n_clients, clip, z, rounds) = (10_000, 100, 1.0, 1.0, 20);
    let params =
        DdgParams::choose(&DdgConfig::new(dimension, clip, n_clients, z * clip, 20)).unwrap();
    assert!(params.tau() < 1e-12, "τ = {}", params.tau());
    let mut ddg = RdpAccountant::default();
    ddg.compose_rdp_fn(|alpha| params.rdp(alpha), rounds)
        .unwrap();
    let mut gaussian = RdpAccountant::default();
    gaussian
        .compose_subsampled_gaussian(1.0, z, rounds)
        .unwrap();
    let (eps_ddg, _) = ddg.epsilon(1e-5).unwrap();
    let (eps_gaussian, _) = gaussian.epsilon(1e-5).unwrap();
    assert!(
        eps_ddg >= eps_gaussian && eps_ddg < 1.1 * eps_gaussian,
        "{eps_ddg} vs {eps_gaussian}"
    );
}

#[test]
fn coarse_quantization_costs_privacy_and_tiny_noise_has_no_guarantee() {
    let coarse = DdgParams::choose(&DdgConfig::new(10_000, 1.0, 100, 1.0, 12)).unwrap();
    let fine = DdgParams::choose(&DdgConfig::new(10_000, 1.0, 100, 1.0, 20)).unwrap();
    assert!(coarse.rdp(2.0) > fine.rdp(2.0));
    // Per-client std below 1/2 in integer steps is outside the proved range.
    let mut config = DdgConfig::new(100, 1.0, 10, 0.01, 16);
    config.beta = 0.0;
    let params = DdgParams::new(&config, 0.1).unwrap();
    assert!(params.local_noise_variance() < 0.25);
    assert_eq!(params.rdp(2.0), f64::INFINITY);
    let noiseless = DdgParams::choose(&DdgConfig::new(100, 1.0, 10, 0.0, 16)).unwrap();
    assert_eq!(noiseless.rdp(2.0), f64::INFINITY);
}

#[test]
fn bad_inputs_are_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let params = DdgParams::choose(&DdgConfig::new(10, 1.0, 2, 1.0, 16)).unwrap();
    let err = encode(&[0.0; 9], &params, &[0; 32], &mut rng).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            name: "update",
            expected: 10,
            actual: 9
        }
    );
    let mut nan = vec![0.0f32; 10];
    nan[3] = f32::NAN;
    assert!(matches!(
        encode(&nan, &params, &[0; 32], &mut rng),
        Err(Error::OutOfRange {
            name: "update coordinate",
            ..
        })
    ));
    assert!(decode(&[0; 10], &params, &[0; 32]).is_err());
    assert!(matches!(
        DdgParams::choose(&DdgConfig::new(10, 1.0, 2, 1.0, 33)),
        Err(Error::OutOfRange { name: "bits", .. })
    ));
    assert!(add_modular(&mut [0; 3], &[0; 4], 16).is_err());
}
