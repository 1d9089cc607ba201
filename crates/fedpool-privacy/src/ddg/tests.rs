//! Unit tests of the distributed discrete Gaussian. They live inside the crate to reach the
//! rotation directly; the public round trip is covered in `tests/ddg.rs`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::*;

const SEED: u64 = 20_210_211;

fn rng(stream: u64) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    rng.set_stream(stream);
    rng
}

fn random_vector(rng: &mut ChaCha20Rng, len: usize, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|_| scale * (2.0 * rng.random::<f64>() - 1.0))
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn rotation_is_orthonormal_and_invertible() {
    let mut rng = rng(1);
    for n in [1usize, 2, 8, 1024, 4096] {
        let seed: [u8; 32] = rng.random();
        let signs = hadamard::signs(&seed, n);
        let original = random_vector(&mut rng, n, 3.0);
        let mut rotated = original.clone();
        hadamard::rotate(&mut rotated, &signs);
        let (before, after) = (norm(&original), norm(&rotated));
        assert!(
            (before - after).abs() <= 1e-12 * before,
            "n = {n}: {before} vs {after}"
        );
        hadamard::unrotate(&mut rotated, &signs);
        for (a, b) in original.iter().zip(&rotated) {
            assert!((a - b).abs() < 1e-12, "n = {n}: {a} vs {b}");
        }
    }
}

#[test]
fn rotation_flattens_a_spike() {
    // A basis vector becomes ±1/√n everywhere: the point of rotating before quantizing.
    let n = 256;
    let mut spike = vec![0.0; n];
    spike[17] = 1.0;
    hadamard::rotate(&mut spike, &hadamard::signs(&[7; 32], n));
    for v in spike {
        assert!((v.abs() - 1.0 / 16.0).abs() < 1e-15);
    }
}

#[test]
fn rotation_signs_depend_only_on_the_seed() {
    assert_eq!(
        hadamard::signs(&[1; 32], 100),
        hadamard::signs(&[1; 32], 100)
    );
    assert_ne!(
        hadamard::signs(&[1; 32], 100),
        hadamard::signs(&[2; 32], 100)
    );
    // A longer draw extends a shorter one, so padding never changes earlier signs.
    assert_eq!(
        hadamard::signs(&[1; 32], 200)[..100],
        hadamard::signs(&[1; 32], 100)[..]
    );
}

/// Mean and variance of N_Z(0, σ²) from its probability mass function.
fn discrete_gaussian_moments(variance: f64) -> (f64, f64) {
    let limit = (40.0 * variance.sqrt()).ceil() as i64 + 40;
    let (mut mass, mut second) = (0.0, 0.0);
    for x in -limit..=limit {
        let p = (-((x * x) as f64) / (2.0 * variance)).exp();
        mass += p;
        second += (x * x) as f64 * p;
    }
    (0.0, second / mass)
}

#[test]
fn discrete_gaussian_sampler_matches_mean_and_variance() {
    let n_samples = 200_000;
    for (stream, variance) in [(2, 0.3), (3, 1.0), (4, 4.0), (5, 50.5), (6, 1234.5)] {
        let sampler = DiscreteGaussian::new(variance).unwrap();
        let mut rng = rng(stream);
        let samples: Vec<f64> = (0..n_samples)
            .map(|_| sampler.sample(&mut rng) as f64)
            .collect();
        let mean = samples.iter().sum::<f64>() / n_samples as f64;
        let var =
            samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n_samples - 1) as f64;
        let (true_mean, true_var) = discrete_gaussian_moments(sampler.variance());
        // Standard errors: sd/√N for the mean, ≈ var·√(2/N) for the variance (near-Gaussian).
        let mean_se = true_var.sqrt() / (n_samples as f64).sqrt();
        let var_se = true_var * (2.0 / n_samples as f64).sqrt();
        assert!(
            (mean - true_mean).abs() < 5.0 * mean_se,
            "σ² = {variance}: mean {mean}, expected {true_mean} ± {mean_se}"
        );
        assert!(
            (var - true_var).abs() < 5.0 * var_se,
            "σ² = {variance}: variance {var}, expected {true_var} ± {var_se}"
        );
    }
}

#[test]
fn discrete_gaussian_sampler_passes_chi_square() {
    let variance = 2.0;
    let sampler = DiscreteGaussian::new(variance).unwrap();
    let mut rng = rng(7);
    let n_samples = 200_000;
    // Bins: each of -5..=5, and the two tails.
    let mut counts = [0u64; 13];
    for _ in 0..n_samples {
        let x = sampler.sample(&mut rng);
        let bin = (x.clamp(-6, 6) + 6) as usize;
        counts[bin] += 1;
    }
    let pmf = |x: i64| (-((x * x) as f64) / (2.0 * variance)).exp();
    let mass: f64 = (-60..=60).map(pmf).sum();
    let mut expected = [0.0; 13];
    for x in -60..=60i64 {
        expected[(x.clamp(-6, 6) + 6) as usize] += pmf(x) / mass * n_samples as f64;
    }
    let chi2: f64 = counts
        .iter()
        .zip(&expected)
        .map(|(&c, &e)| (c as f64 - e).powi(2) / e)
        .sum();
    // 12 degrees of freedom: P[χ² > 32.91] = 0.001.
    assert!(
        chi2 < 32.91,
        "chi-square {chi2}, counts {counts:?}, expected {expected:?}"
    );
}

#[test]
fn discrete_gaussian_rounds_variance_up() {
    let sampler = DiscreteGaussian::new(1.0 / 3.0).unwrap();
    assert!(sampler.variance() >= 1.0 / 3.0);
    assert!(sampler.variance() - 1.0 / 3.0 <= 2f64.powi(-20));
    assert!(DiscreteGaussian::new(0.0).is_err());
    assert!(DiscreteGaussian::new(MAX_VARIANCE * 2.0).is_err());
}

#[test]
fn decode_of_noiseless_sum_is_the_clipped_sum_within_rounding_error() {
    let mut rng = rng(8);
    let (dimension, n_clients, clip_norm) = (1000, 10, 1.0);
    let config = DdgConfig::new(dimension, clip_norm, n_clients, 0.0, 20);
    let params = DdgParams::choose(&config).unwrap();
    let seed: [u8; 32] = rng.random();
    let mut modular_sum = vec![0u32; params.padded_dimension()];
    let mut plain_sum = vec![0.0f64; dimension];
    for client in 0..n_clients {
        // Norms from 0.1 to 2: half of the clients get clipped.
        let scale = 0.1 + 1.9 * client as f64 / (n_clients - 1) as f64;
        let raw = random_vector(&mut rng, dimension, 1.0);
        let raw_norm = norm(&raw);
        let update: Vec<f32> = raw.iter().map(|x| (x * scale / raw_norm) as f32).collect();
        let update_norm = norm(&update.iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
        let clip = (clip_norm / update_norm).min(1.0);
        for (s, &x) in plain_sum.iter_mut().zip(&update) {
            *s += f64::from(x) * clip;
        }
        let words = encode(&update, &params, &seed, &mut rng).unwrap();
        add_modular(&mut modular_sum, &words, params.bits()).unwrap();
    }
    let decoded = decode(&modular_sum, &params, &seed).unwrap();
    let error: Vec<f64> = decoded
        .iter()
        .zip(&plain_sum)
        .map(|(&d, &p)| f64::from(d) - p)
        .collect();
    let error_norm = norm(&error);
    let gamma = params.granularity();
    let d_padded = params.padded_dimension() as f64;
    // Deterministic bound: each client's rounding moves each rotated coordinate by < 1 step.
    assert!(error_norm <= n_clients as f64 * gamma * d_padded.sqrt());
    // Typical size: independent roundings have variance ≤ 1/4 per coordinate and client.
    let typical = gamma * (n_clients as f64 * d_padded / 4.0).sqrt();
    assert!(
        error_norm <= 1.5 * typical,
        "error {error_norm}, typical {typical}, γ {gamma}"
    );
}

#[test]
fn sum_of_2000_aligned_clients_does_not_wrap_around() {
    // Worst case for wrap-around: every client sends the same direction at full norm, so the
    // sum has norm n·c, the bound `choose` plans for. With noise z = 1.
    let (dimension, n_clients, clip_norm) = (200, 2000, 1.0);
    let config = DdgConfig::new(dimension, clip_norm, n_clients, 1.0 * clip_norm, 16);
    let params = DdgParams::choose(&config).unwrap();
    assert!(
        params.local_noise_variance() >= 0.25,
        "per-client std must be ≥ 1/2 for the bound"
    );
    let mut rng = rng(9);
    let seed: [u8; 32] = rng.random();
    let direction = random_vector(&mut rng, dimension, 1.0);
    let direction_norm = norm(&direction);
    let update: Vec<f32> = direction
        .iter()
        .map(|x| (x * 1.5 / direction_norm) as f32)
        .collect();

    let mut integer_sum = vec![0i64; params.padded_dimension()];
    let mut modular_sum = vec![0u32; params.padded_dimension()];
    for _ in 0..n_clients {
        let integers = encode_integers(&update, &params, &seed, &mut rng).unwrap();
        for (s, &x) in integer_sum.iter_mut().zip(&integers) {
            *s += x;
        }
        add_modular(
            &mut modular_sum,
            &reduce_modular(&integers, params.bits()),
            params.bits(),
        )
        .unwrap();
    }
    let half = params.modulus() as i64 / 2;
    let peak = integer_sum.iter().map(|x| x.abs()).max().unwrap();
    assert!(
        peak < half,
        "peak |coordinate| {peak} reaches the modulus half-range {half}"
    );
    // Without wrap-around the modular sum decodes to exactly the integer sum.
    let centred: Vec<i64> = modular_sum
        .iter()
        .map(|&w| {
            if i64::from(w) >= half {
                i64::from(w) - 2 * half
            } else {
                i64::from(w)
            }
        })
        .collect();
    assert_eq!(centred, integer_sum);
    // And the decoded sum is n·clip(update) up to noise (σ = 1 per coordinate) and rounding.
    let decoded = decode(&modular_sum, &params, &seed).unwrap();
    let expected: Vec<f64> = direction
        .iter()
        .map(|x| x / direction_norm * n_clients as f64)
        .collect();
    let error: Vec<f64> = decoded
        .iter()
        .zip(&expected)
        .map(|(&d, &e)| f64::from(d) - e)
        .collect();
    let per_coordinate_rms = norm(&error) / (dimension as f64).sqrt();
    let predicted = (1.0 + n_clients as f64 * params.granularity().powi(2) / 4.0).sqrt();
    assert!(
        per_coordinate_rms < 1.3 * predicted,
        "rms error {per_coordinate_rms}, predicted {predicted}"
    );
}

#[test]
fn choose_refuses_too_few_bits() {
    let config = DdgConfig::new(1000, 1.0, 1_000_000, 1.0, 8);
    assert!(matches!(
        DdgParams::choose(&config),
        Err(Error::ModulusTooSmall { bits: 8, .. })
    ));
}

#[test]
fn choose_spends_the_bits_on_granularity() {
    let small = DdgParams::choose(&DdgConfig::new(10_000, 1.0, 100, 1.0, 16)).unwrap();
    let large = DdgParams::choose(&DdgConfig::new(10_000, 1.0, 100, 1.0, 24)).unwrap();
    // 8 more bits: the granularity shrinks by about 2^8.
    let ratio = small.granularity() / large.granularity();
    assert!((ratio / 256.0 - 1.0).abs() < 1e-3, "{ratio}");
}

#[test]
fn conditional_rounding_respects_the_bound_and_reports_exhaustion() {
    // β close to 1 makes the conditional bound tight, so single attempts often fail.
    let mut config = DdgConfig::new(64, 1.0, 1, 0.0, 24);
    config.beta = 0.9999;
    let params = DdgParams::new(&config, 0.3)
        .unwrap()
        .with_max_rounding_retries(1);
    let mut rng = rng(10);
    let seed: [u8; 32] = rng.random();
    let update: Vec<f32> = vec![0.125; 64];
    let (mut ok, mut exhausted) = (0, 0);
    for _ in 0..200 {
        match encode_integers(&update, &params, &seed, &mut rng) {
            Ok(integers) => {
                let norm = integers.iter().map(|&x| (x * x) as f64).sum::<f64>().sqrt();
                assert!(norm <= params.rounded_norm_bound());
                ok += 1;
            }
            Err(Error::RoundingRetriesExhausted { max_retries: 1, .. }) => exhausted += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(ok > 0 && exhausted > 0, "ok {ok}, exhausted {exhausted}");
}
