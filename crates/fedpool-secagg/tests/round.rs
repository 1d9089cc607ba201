//! Acceptance tests of whole rounds: exact sums under dropouts at every stage, clean aborts
//! below the threshold, and a masked update indistinguishable from uniform.

mod support;

use fedpool_secagg::sim::{ClientOutcome, DropoutPlan};
use fedpool_secagg::{Error, ParticipantIdx, Party, Scope, Stage};
use proptest::prelude::*;
use support::{Spec, check_exact, expected_survivors, is_abort, neighbourhood_dropouts};

const STAGES: [Stage; 5] = [
    Stage::Setup,
    Stage::AdvertiseKeys,
    Stage::ShareKeys,
    Stage::MaskedInput,
    Stage::Unmasking,
];

fn specs() -> Vec<Spec> {
    vec![
        Spec::harary(12, 4, 3),
        Spec::harary(20, 6, 4).bits(20).len(100),
        Spec::harary(9, 8, 5).bits(8),
        Spec::all_pairs(7, 4),
        Spec::all_pairs(10, 6).bits(16).len(5),
        Spec::all_pairs(3, 2).len(1),
    ]
}

#[test]
fn no_dropouts_gives_the_exact_sum() {
    for spec in specs() {
        check_exact(&spec, &DropoutPlan::none());
    }
}

#[test]
fn one_dropout_at_each_stage_gives_the_exact_sum() {
    for spec in specs() {
        if spec.k() == spec.threshold {
            continue; // no dropout budget at all
        }
        for stage in STAGES {
            for victim in [0, spec.n as u32 - 1] {
                let plan = DropoutPlan::none().drop_at(ParticipantIdx(victim), stage);
                check_exact(&spec, &plan);
            }
        }
    }
}

/// The full dropout budget k − t, all inside one neighbourhood, at each stage.
#[test]
fn k_minus_t_dropouts_at_each_stage_give_the_exact_sum() {
    for spec in specs() {
        let budget = spec.k() - spec.threshold;
        for stage in STAGES {
            let plan = neighbourhood_dropouts(&spec, budget)
                .into_iter()
                .fold(DropoutPlan::none(), |plan, p| plan.drop_at(p, stage));
            check_exact(&spec, &plan);
        }
    }
}

/// One more than the budget inside a neighbourhood, at each stage: the round aborts with a
/// threshold error from the server (or from participant 0, which sees its neighbourhood
/// shrink first), and the server's view holds only masked vectors.
#[test]
fn one_dropout_past_the_budget_aborts_cleanly_at_each_stage() {
    for spec in specs() {
        let too_many = spec.k() - spec.threshold + 1;
        for stage in STAGES {
            let plan = neighbourhood_dropouts(&spec, too_many)
                .into_iter()
                .fold(DropoutPlan::none(), |plan, p| plan.drop_at(p, stage));
            let outcome = spec.run(&plan);
            let error = outcome
                .aggregate
                .as_ref()
                .expect_err("a neighbourhood below threshold must abort");
            assert!(is_abort(error), "{spec:?} at {stage}: {error}");
            support::assert_view_is_masked(&spec, &outcome);
            // Nobody released a share the server could use: an abort before stage 4 means no
            // unmasking request was ever sent.
            if stage < Stage::Unmasking {
                assert!(
                    outcome
                        .clients
                        .iter()
                        .all(|c| !matches!(c, ClientOutcome::Finished)),
                    "{spec:?} at {stage}: someone answered an unmasking request"
                );
            }
        }
    }
}

#[test]
fn the_threshold_error_names_the_stage_and_the_neighbourhood() {
    let spec = Spec::harary(12, 4, 3);
    let plan = neighbourhood_dropouts(&spec, 2)
        .into_iter()
        .fold(DropoutPlan::none(), |plan, p| {
            plan.drop_at(p, Stage::ShareKeys)
        });
    let error = spec.run(&plan).aggregate.unwrap_err();
    assert_eq!(
        error,
        Error::TooFewSurvivors {
            party: Party::Server,
            stage: Stage::ShareKeys,
            scope: Scope::NeighboursOf(ParticipantIdx(0)),
            alive: 2,
            threshold: 3,
        }
    );
    assert_eq!(
        error.to_string(),
        "server at share-keys: 2 participants remain among the neighbours of participant 0, the threshold is 3; aborting the round"
    );
}

#[test]
fn too_few_participants_overall_abort_at_advertise_keys() {
    let spec = Spec::all_pairs(5, 3);
    let plan = (0..3).fold(DropoutPlan::none(), |plan, i| {
        plan.drop_at(ParticipantIdx(i), Stage::AdvertiseKeys)
    });
    let outcome = spec.run(&plan);
    assert!(matches!(
        outcome.aggregate,
        Err(Error::TooFewSurvivors {
            party: Party::Server,
            stage: Stage::AdvertiseKeys,
            scope: Scope::Overall,
            alive: 2,
            threshold: 3
        })
    ));
    assert!(outcome.server.masked_inputs().is_empty());
}

/// A single masked update, with an all-zero input (the most structured there is), is
/// indistinguishable from uniform: chi-square over the bytes of the masked words (b = 32) and
/// over the top 8 bits (b = 20), fixed seeds.
#[test]
fn a_masked_update_passes_a_chi_square_uniformity_test() {
    for (bits, seed) in [(32u32, 3u64), (20, 4)] {
        let vector_len = 1 << 15;
        let spec = Spec::harary(6, 2, 2).bits(bits).len(vector_len).seed(seed);
        let mut round = spec.round();
        round.inputs = vec![vec![0; vector_len]; spec.n];
        let outcome =
            fedpool_secagg::sim::run_round_in_process(round, &DropoutPlan::none(), spec.options());
        let masked = &outcome.server.masked_inputs()[&ParticipantIdx(0)];
        let mut bins = [0u64; 256];
        if bits == 32 {
            for word in masked {
                for byte in word.to_le_bytes() {
                    bins[byte as usize] += 1;
                }
            }
        } else {
            for word in masked {
                assert!(*word < 1 << bits);
                bins[(word >> (bits - 8)) as usize] += 1;
            }
        }
        let total: u64 = bins.iter().sum();
        let expected = total as f64 / 256.0;
        let chi_square: f64 = bins
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        // 255 degrees of freedom: the 0.999 quantile is 330.5.
        assert!(chi_square < 330.5, "b = {bits}: chi-square {chi_square}");
        // And the sum still decodes: all-zero inputs sum to zero.
        assert!(outcome.aggregate.unwrap().sum.iter().all(|&w| w == 0));
    }
}

fn arbitrary_spec() -> impl Strategy<Value = Spec> {
    (
        3usize..13,
        any::<bool>(),
        any::<u64>(),
        0usize..100,
        prop::sample::select(vec![8u32, 16, 32]),
    )
        .prop_map(|(n, all_pairs, seed, pick, bits)| {
            let k = if all_pairs || n < 5 {
                n - 1
            } else {
                // An even degree in 2..n.
                let max_half = (n - 1) / 2;
                2 * (1 + pick % max_half)
            };
            // Any t with 2t > k, 2 ≤ t ≤ k.
            let t_min = (k / 2 + 1).max(2);
            let threshold = t_min + pick % (k - t_min + 1);
            let spec = if all_pairs || n < 5 || k == n - 1 {
                Spec::all_pairs(n, threshold)
            } else {
                Spec::harary(n, k, threshold)
            };
            spec.bits(bits).len(1 + pick % 9).seed(seed)
        })
}

fn arbitrary_plan(n: usize, max_dropouts: usize) -> impl Strategy<Value = DropoutPlan> {
    prop::collection::vec(
        (0..n as u32, prop::sample::select(STAGES.to_vec())),
        0..=max_dropouts,
    )
    .prop_map(|drops| {
        drops
            .into_iter()
            .fold(DropoutPlan::none(), |plan, (p, stage)| {
                plan.drop_at(ParticipantIdx(p), stage)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any dropout set within the budget k − t, at any mix of stages, gives the exact sum.
    #[test]
    fn dropouts_within_the_budget_never_change_the_sum(
        (spec, plan) in arbitrary_spec().prop_flat_map(|spec| {
            let budget = spec.k() - spec.threshold;
            let n = spec.n;
            (Just(spec), arbitrary_plan(n, budget))
        })
    ) {
        check_exact(&spec, &plan);
    }

    /// Any dropout set at all: the round either gives the exact sum of the survivors' inputs or
    /// aborts with a threshold error, and the server's view is masked either way.
    #[test]
    fn any_dropouts_give_the_exact_sum_or_a_clean_abort(
        (spec, plan) in arbitrary_spec().prop_flat_map(|spec| {
            let n = spec.n;
            (Just(spec), arbitrary_plan(n, n))
        })
    ) {
        let outcome = spec.run(&plan);
        support::assert_view_is_masked(&spec, &outcome);
        match &outcome.aggregate {
            Ok(aggregate) => {
                let survivors = expected_survivors(spec.n, &plan);
                prop_assert_eq!(&aggregate.survivors, &survivors);
                prop_assert_eq!(
                    &aggregate.sum,
                    &fedpool_secagg::sim::plain_sum(&spec.inputs(), &survivors, spec.modulus_bits)
                );
            }
            Err(error) => prop_assert!(is_abort(error), "{}", error),
        }
    }
}
