//! Criterion benchmarks: `cargo bench -p fedpool-privacy`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fedpool_privacy::ddg::{DdgConfig, DdgParams, encode};
use fedpool_privacy::{add_gaussian_noise, clip_l2, epsilon};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::hint::black_box;

fn update(len: usize, rng: &mut ChaCha20Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random::<f32>() - 0.5).collect()
}

fn clip_and_noise(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let input = update(1_000_000, &mut rng);
    c.bench_function("clip_l2 1M f32", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |v| clip_l2(black_box(v), 1.0).unwrap(),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("add_gaussian_noise 1M f32", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |v| add_gaussian_noise(black_box(v), 1.0, 1.0, &mut rng).unwrap(),
            BatchSize::LargeInput,
        )
    });
    c.bench_function("clip + noise 1M f32", |b| {
        b.iter_batched_ref(
            || input.clone(),
            |v| {
                clip_l2(v, 1.0).unwrap();
                add_gaussian_noise(black_box(v), 1.0, 1.0, &mut rng).unwrap()
            },
            BatchSize::LargeInput,
        )
    });
}

fn ddg_encode(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let input = update(100_000, &mut rng);
    let seed: [u8; 32] = rng.random();
    // 100 clients, noise multiplier 1, 20-bit words.
    let params = DdgParams::choose(&DdgConfig::new(100_000, 1.0, 100, 1.0, 20)).unwrap();
    c.bench_function("ddg encode 100k params (n=100, z=1, 20 bits)", |b| {
        b.iter(|| encode(black_box(&input), &params, &seed, &mut rng).unwrap())
    });
    let noiseless = DdgParams::choose(&DdgConfig::new(100_000, 1.0, 100, 0.0, 20)).unwrap();
    c.bench_function("ddg encode 100k params, no noise", |b| {
        b.iter(|| encode(black_box(&input), &noiseless, &seed, &mut rng).unwrap())
    });
}

fn accountant(c: &mut Criterion) {
    c.bench_function("epsilon q=0.1 sigma=1 T=30 (default orders)", |b| {
        b.iter(|| epsilon(black_box(0.1), 1.0, 30, 1e-5).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = clip_and_noise, ddg_encode, accountant
}
criterion_main!(benches);
