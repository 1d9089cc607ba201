//! Aggregation throughput, in bytes of update data per second.
//!
//! `fedavg_100x1M`: FedAvg over 100 updates of 1,000,000 f32 (400 MB) against three plain sums of
//! the same bytes in the same run: linear (one update after another), blocked (FedAvg's block
//! order, one update at a time) and blocked4 (FedAvg's exact access pattern, four updates per
//! sweep). The acceptance bar is FedAvg at ≥ 70% of the fastest sum.
//!
//! `robust_100x100K`: every rule over 100 updates of 100,000 f32 (40 MB), a smaller size because
//! the robust rules do far more work per byte (selections, n²/2 distances); FedAvg is included
//! for scale.
//!
//! Run with `cargo bench -p fedpool-strategy`. On a busy machine, separate criterion groups see
//! different load; `FEDPOOL_BENCH_INTERLEAVED=1 cargo bench -p fedpool-strategy` instead
//! alternates the sums and FedAvg 30 times and prints each one's best time, which compares
//! them under the same conditions.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use fedpool_strategy::{ClientUpdate, Strategy, StrategyConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Lanes of the sums: the same independent-accumulator shape the crate's kernels use, so the
/// baseline is vectorized too.
const LANES: usize = 16;
/// The FedAvg kernel's block, in coordinates.
const BLOCK: usize = 8192;

fn random_updates(n_updates: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n_updates)
        .map(|_| (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

fn borrow(deltas: &[Vec<f32>]) -> Vec<ClientUpdate<'_>> {
    deltas
        .iter()
        .enumerate()
        .map(|(i, delta)| ClientUpdate {
            delta,
            n_examples: 100 + i,
        })
        .collect()
}

/// Sum of a slice in independent lanes (vectorizes; a single f32 accumulator would not).
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Every f32 of every update, one update after the other.
fn sum_linear(deltas: &[Vec<f32>]) -> f32 {
    deltas.iter().map(|d| lane_sum(black_box(d))).sum()
}

/// Every f32 of every update, in FedAvg's block order (for each block, every update).
fn sum_blocked(deltas: &[Vec<f32>]) -> f32 {
    let len = deltas.first().map_or(0, Vec::len);
    let mut total = 0.0;
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK).min(len);
        for d in deltas {
            total += lane_sum(black_box(&d[start..end]));
        }
        start = end;
    }
    total
}

/// Every f32 of every update, in FedAvg's exact access pattern: for each block, four updates
/// at a time. The strongest baseline: the same bytes, the same streams in flight.
fn sum_blocked4(deltas: &[Vec<f32>]) -> f32 {
    let len = deltas.first().map_or(0, Vec::len);
    let mut total = 0.0;
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK).min(len);
        let mut groups = deltas.chunks_exact(4);
        for group in groups.by_ref() {
            let n = end - start;
            let (a, b, c, d) = (
                &black_box(&group[0])[start..end],
                &black_box(&group[1])[start..end],
                &black_box(&group[2])[start..end],
                &black_box(&group[3])[start..end],
            );
            let mut lanes = [0.0f32; LANES];
            let mut i = 0;
            while i + LANES <= n {
                for (k, lane) in lanes.iter_mut().enumerate() {
                    *lane += (a[i + k] + b[i + k]) + (c[i + k] + d[i + k]);
                }
                i += LANES;
            }
            total += lanes.iter().sum::<f32>();
            for j in i..n {
                total += a[j] + b[j] + c[j] + d[j];
            }
        }
        for d in groups.remainder() {
            total += lane_sum(black_box(&d[start..end]));
        }
        start = end;
    }
    total
}

fn fedavg_against_sum(c: &mut Criterion) {
    let (n_updates, len) = (100, 1_000_000);
    let deltas = random_updates(n_updates, len, 1);
    let updates = borrow(&deltas);
    let mut global = vec![0.0f32; len];
    let mut strategy = StrategyConfig::FedAvg.build();

    let mut group = c.benchmark_group("fedavg_100x1M");
    group.throughput(Throughput::Bytes((n_updates * len * 4) as u64));
    group.sample_size(20);
    group.bench_function("sum_linear", |b| b.iter(|| black_box(sum_linear(&deltas))));
    group.bench_function("sum_blocked", |b| {
        b.iter(|| black_box(sum_blocked(&deltas)))
    });
    group.bench_function("sum_blocked4", |b| {
        b.iter(|| black_box(sum_blocked4(&deltas)))
    });
    group.bench_function("fedavg", |b| {
        b.iter(|| {
            strategy
                .aggregate(black_box(&mut global), black_box(&updates))
                .unwrap();
        })
    });
    group.finish();
}

fn robust_rules(c: &mut Criterion) {
    let (n_updates, len) = (100, 100_000);
    let deltas = random_updates(n_updates, len, 2);
    let updates = borrow(&deltas);
    let mut global = vec![0.0f32; len];

    let mut group = c.benchmark_group("robust_100x100K");
    group.throughput(Throughput::Bytes((n_updates * len * 4) as u64));
    group.sample_size(10);
    for name in [
        "fedavg",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
        "multikrum",
        "bulyan",
    ] {
        let mut strategy: Box<dyn Strategy> = name.parse::<StrategyConfig>().unwrap().build();
        group.bench_function(name, |b| {
            b.iter(|| {
                strategy
                    .aggregate(black_box(&mut global), black_box(&updates))
                    .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fedavg_against_sum, robust_rules);

fn main() {
    if std::env::var_os("FEDPOOL_BENCH_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// Best-of-30 times of the three sums and FedAvg, run in turn so that they share the load.
fn interleaved() {
    let (n_updates, len) = (100, 1_000_000);
    let deltas = random_updates(n_updates, len, 1);
    let updates = borrow(&deltas);
    let mut global = vec![0.0f32; len];
    let mut strategy = StrategyConfig::FedAvg.build();
    let bytes = (n_updates * len * 4) as f64;
    let mut best = [f64::INFINITY; 4];
    for _ in 0..30 {
        let t = std::time::Instant::now();
        black_box(sum_linear(&deltas));
        best[0] = best[0].min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        black_box(sum_blocked(&deltas));
        best[1] = best[1].min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        strategy
            .aggregate(black_box(&mut global), black_box(&updates))
            .unwrap();
        best[2] = best[2].min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        black_box(sum_blocked4(&deltas));
        best[3] = best[3].min(t.elapsed().as_secs_f64());
    }
    let gbs = |s: f64| bytes / s / 1e9;
    let fastest_sum = best[0].min(best[1]).min(best[3]);
    println!(
        "interleaved best of 30, 100 x 1M f32: sum_linear {:.2} GB/s, sum_blocked {:.2} GB/s, \
         sum_blocked4 {:.2} GB/s, fedavg {:.2} GB/s = {:.0}% of the fastest sum",
        gbs(best[0]),
        gbs(best[1]),
        gbs(best[3]),
        gbs(best[2]),
        100.0 * fastest_sum / best[2]
    );
}
