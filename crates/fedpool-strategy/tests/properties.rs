//! Invariants of the strategies, sampling and config, checked on random inputs.
//!
//! `Strategy` here is proptest's value generator; fedpool's trait is imported as `Rule`.

use fedpool_strategy::{
    Bulyan, ClientSampling, ClientUpdate, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum,
    Strategy as Rule, StrategyConfig, all_names,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `n` updates of `len` parameters with values in ±1000 and example counts in 0..1000, at least
/// one of them nonzero.
fn weighted_updates(
    n: std::ops::Range<usize>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<(Vec<f32>, usize)>> {
    (n, len).prop_flat_map(|(n, len)| {
        prop::collection::vec((prop::collection::vec(-1e3f32..1e3, len), 0usize..1000), n)
            .prop_filter("some weight", |ups| ups.iter().any(|(_, w)| *w > 0))
    })
}

fn borrow(updates: &[(Vec<f32>, usize)]) -> Vec<ClientUpdate<'_>> {
    updates
        .iter()
        .map(|(delta, n_examples)| ClientUpdate {
            delta,
            n_examples: *n_examples,
        })
        .collect()
}

/// Runs one aggregation from a zero model and returns the new model.
fn aggregate(strategy: &mut dyn Rule, updates: &[ClientUpdate<'_>]) -> Vec<f32> {
    let len = updates.first().map_or(0, |u| u.delta.len());
    let mut global = vec![0.0f32; len];
    strategy
        .aggregate(&mut global, updates)
        .unwrap_or_else(|e| panic!("{}: {e}", strategy.name()));
    global
}

proptest! {
    #[test]
    fn fedavg_matches_an_f64_reference(
        updates in weighted_updates(1..12, 0..300),
        global in prop::collection::vec(-10f32..10.0, 300),
    ) {
        let len = updates[0].0.len();
        let mut model = global[..len].to_vec();
        FedAvg::new().aggregate(&mut model, &borrow(&updates)).unwrap();
        let total: f64 = updates.iter().map(|(_, w)| *w as f64).sum();
        for j in 0..len {
            let mean: f64 = updates.iter().map(|(d, w)| *w as f64 * d[j] as f64).sum::<f64>() / total;
            let scale: f64 = updates.iter().map(|(d, w)| *w as f64 * (d[j] as f64).abs()).sum::<f64>() / total;
            let want = global[j] as f64 + mean;
            let tolerance = 1e-5 * (scale + global[j].abs() as f64) + 1e-6;
            prop_assert!((model[j] as f64 - want).abs() <= tolerance,
                "param {j}: got {}, want {want}", model[j]);
        }
    }

    #[test]
    fn median_and_trimmed_mean_are_permutation_invariant_and_bounded(
        updates in weighted_updates(1..15, 1..40),
        beta in 0.0f64..0.49,
        seed in any::<u64>(),
    ) {
        let mut shuffled = updates.clone();
        rand::seq::SliceRandom::shuffle(&mut shuffled[..], &mut ChaCha8Rng::seed_from_u64(seed));
        let strategies: [Box<dyn Fn() -> Box<dyn Rule>>; 2] = [
            Box::new(|| Box::new(FedMedian::new())),
            Box::new(move || Box::new(FedTrimmedAvg::new(beta))),
        ];
        for make in &strategies {
            let a = aggregate(make().as_mut(), &borrow(&updates));
            let b = aggregate(make().as_mut(), &borrow(&shuffled));
            for j in 0..a.len() {
                // Selection is exact; only the f64 sum of the kept values depends on order.
                prop_assert!((a[j] - b[j]).abs() <= 1e-6 * a[j].abs().max(1.0), "param {j}: {} vs {}", a[j], b[j]);
                let column = updates.iter().map(|(d, _)| d[j]);
                let lo = column.clone().fold(f32::INFINITY, f32::min);
                let hi = column.fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(lo <= a[j] && a[j] <= hi, "param {j}: {} outside [{lo}, {hi}]", a[j]);
            }
        }
    }

    /// Honest updates sit in [0.5, 1.5] per coordinate; f of them (as many as each rule is
    /// configured to tolerate) are replaced by the honest update times ±1e6. Every robust rule
    /// stays inside the honest range; FedAvg does not.
    #[test]
    fn robust_rules_ignore_byzantine_outliers(
        n in 10usize..24,
        len in 1usize..12,
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let honest: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..len).map(|_| 1.0 + rand::Rng::random_range(&mut rng, -0.5f32..0.5)).collect())
            .collect();
        let cases: Vec<(Box<dyn Rule>, usize)> = vec![
            (Box::new(Krum::new(0.2)), n / 5),
            (Box::new(MultiKrum::new(0.2, None)), n / 5),
            (Box::new(FedMedian::new()), n / 5),
            (Box::new(FedTrimmedAvg::new(0.2)), n / 5),
            (Box::new(Bulyan::new(0.1)), n / 10),
        ];
        let mut poisoned = honest.clone();
        let n_bad = n / 5;
        let bad_idx = rand::seq::index::sample(&mut rng, n, n_bad).into_vec();
        for (k, &i) in bad_idx.iter().enumerate() {
            let sign = if k % 2 == 0 { 1e6 } else { -1e6 };
            poisoned[i].iter_mut().for_each(|x| *x *= sign);
        }
        let is_bad = |i: usize| bad_idx.contains(&i);
        let lo: Vec<f32> = (0..len).map(|j| (0..n).filter(|&i| !is_bad(i)).map(|i| honest[i][j]).fold(f32::INFINITY, f32::min)).collect();
        let hi: Vec<f32> = (0..len).map(|j| (0..n).filter(|&i| !is_bad(i)).map(|i| honest[i][j]).fold(f32::NEG_INFINITY, f32::max)).collect();
        for (mut strategy, n_tolerated) in cases {
            // Bulyan tolerates fewer at the same n: poison only the first n_tolerated of the
            // bad set for it, leaving the rest honest.
            let mut updates_data = honest.clone();
            for &i in bad_idx.iter().take(n_tolerated) {
                updates_data[i] = poisoned[i].clone();
            }
            let still_bad: Vec<usize> = bad_idx.iter().take(n_tolerated).copied().collect();
            let updates: Vec<ClientUpdate<'_>> = updates_data.iter().map(|d| ClientUpdate { delta: d, n_examples: 10 }).collect();
            let mut global = vec![0.0f32; len];
            let report = strategy.aggregate(&mut global, &updates).unwrap();
            let lo_all: Vec<f32> = (0..len).map(|j| (0..n).filter(|i| !still_bad.contains(i)).map(|i| updates_data[i][j]).fold(f32::INFINITY, f32::min)).collect();
            let hi_all: Vec<f32> = (0..len).map(|j| (0..n).filter(|i| !still_bad.contains(i)).map(|i| updates_data[i][j]).fold(f32::NEG_INFINITY, f32::max)).collect();
            for j in 0..len {
                prop_assert!(lo_all[j] <= global[j] && global[j] <= hi_all[j],
                    "{} (seed {seed}): param {j} = {} outside honest [{}, {}]",
                    strategy.name(), global[j], lo_all[j], hi_all[j]);
            }
            if matches!(strategy.name(), "krum" | "multikrum") {
                // Krum and Multi-Krum choose only honest updates. (Bulyan's late Krum rounds,
                // on fewer than 2f + 3 updates, may choose an outlier that its coordinate-wise
                // phase then trims; the median and trimmed mean report every update.)
                prop_assert!(report.selected.iter().all(|i| !still_bad.contains(i)),
                    "{} selected a Byzantine update: {:?} of {:?}", strategy.name(), report.selected, still_bad);
            }
        }
        // FedAvg follows the outliers out of the honest range.
        let updates: Vec<ClientUpdate<'_>> = poisoned.iter().map(|d| ClientUpdate { delta: d, n_examples: 10 }).collect();
        let avg = aggregate(&mut FedAvg::new(), &updates);
        prop_assert!((0..len).any(|j| avg[j] < lo[j] || avg[j] > hi[j]), "FedAvg stayed in range: {avg:?}");
    }

    /// Whatever the lengths, values and weights, no strategy panics, and a failed aggregation
    /// leaves the model as it was.
    #[test]
    fn no_input_makes_a_strategy_panic(
        updates in prop::collection::vec(
            (prop::collection::vec(prop_oneof![
                8 => -1e3f32..1e3,
                1 => Just(f32::NAN),
                1 => Just(f32::INFINITY),
                1 => Just(f32::MAX),
                1 => Just(-f32::MAX),
            ], 0..6), 0usize..3),
            0..9),
        global_len in 0usize..6,
    ) {
        let borrowed = borrow(&updates);
        for &name in all_names() {
            let mut strategy = StrategyConfig::with_defaults(name).unwrap().build();
            let mut global = vec![0.5f32; global_len];
            if strategy.aggregate(&mut global, &borrowed).is_err() {
                prop_assert_eq!(&global, &vec![0.5f32; global_len], "{} changed the model on error", name);
            }
        }
    }

    #[test]
    fn config_display_round_trips(
        name_idx in 0..11usize,
        a in 0.0f64..0.25, b in 0.0f64..0.999, c in 1e-9f64..10.0, keep in prop::option::of(1usize..50),
    ) {
        use StrategyConfig as C;
        let config = match all_names()[name_idx] {
            "fedavg" => C::FedAvg,
            "fedavgm" => C::FedAvgM { eta: c, momentum: b },
            "fedprox" => C::FedProx { mu: c },
            "fedadagrad" => C::FedAdagrad { eta: c, beta_1: b, tau: c / 7.0 },
            "fedadam" => C::FedAdam { eta: c, beta_1: b, beta_2: a, tau: c / 3.0 },
            "fedyogi" => C::FedYogi { eta: c, beta_1: a, beta_2: b, tau: c },
            "fedmedian" => C::FedMedian,
            "fedtrimmedavg" => C::FedTrimmedAvg { beta: a },
            "krum" => C::Krum { byzantine_fraction: a },
            "multikrum" => C::MultiKrum { byzantine_fraction: a, keep },
            _ => C::Bulyan { byzantine_fraction: a },
        };
        prop_assert_eq!(config.validate(), Ok(()));
        let text = config.to_string();
        prop_assert_eq!(text.parse::<StrategyConfig>(), Ok(config), "{}", text);
    }

    #[test]
    fn sampling_draws_distinct_eligible_clients_of_the_configured_size(
        available in prop::collection::vec(0usize..200, 0..60),
        fraction in prop::option::of(0.01f64..=1.0),
        count in 1usize..80,
        min_clients in 1usize..10,
        seed in any::<u64>(),
    ) {
        let sampling = match fraction {
            Some(f) => ClientSampling::by_fraction(f),
            None => ClientSampling::by_count(count),
        }.with_min_clients(min_clients);
        let mut distinct = available.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let n = distinct.len();
        let got = sampling.sample(&available, &mut ChaCha8Rng::seed_from_u64(seed));
        if n < min_clients {
            prop_assert!(got.is_err());
        } else {
            let chosen = got.unwrap();
            let target = fraction.map_or(count, |f| (f * n as f64).round() as usize);
            prop_assert_eq!(chosen.len(), target.clamp(min_clients, n));
            prop_assert!(chosen.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(chosen.iter().all(|c| distinct.binary_search(c).is_ok()));
            let again = sampling.sample(&available, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            prop_assert_eq!(chosen, again);
        }
    }
}
