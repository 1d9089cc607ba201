//! Valuation on the issue's setup: 10 digits clients, 2 with noisy labels, 1 free rider, 1
//! duplicate of an honest client.

mod common;

use common::digits;
use fedpool_core::Contract;
use fedpool_data::Partition;
use fedpool_ledger::Rule;
use fedpool_runtime::rewards::PublisherCheat;
use fedpool_runtime::valuation::{self, ValuationRecipe};
use fedpool_runtime::{
    Attack, Behaviour, LedgerChoice, Simulation, SimulationOptions, SimulationReport,
};
use fedpool_value::Estimate;

/// Two noisy-label clients (80% of labels redrawn), one free rider sending zeros, one
/// duplicate of an honest client.
fn issue_attacks() -> Vec<Attack> {
    ["noisy-labels:0.2,0.8", "free-rider:0.1", "duplicate:0.1"]
        .iter()
        .map(|a| a.parse::<Attack>().unwrap())
        .collect()
}

fn attacked_run(rounds: usize) -> (Simulation, SimulationReport) {
    cheating_run(rounds, None)
}

fn cheating_run(rounds: usize, cheat: Option<PublisherCheat>) -> (Simulation, SimulationReport) {
    let (contract, table) = digits();
    let mut options = SimulationOptions::new(10, Partition::Iid, 42);
    options.rounds = Some(rounds);
    options.ledger = LedgerChoice::Temporary;
    options.value_contributions = true;
    options.keep_round_evidence = true;
    options.publisher_cheat = cheat;
    options.attacks = issue_attacks();
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    (sim, report)
}

/// Each client's share of the round's positive value.
fn shares(scores: &[f64]) -> Vec<f64> {
    let total: f64 = scores.iter().filter(|s| **s > 0.0).sum();
    scores.iter().map(|s| s.max(0.0) / total).collect()
}

#[test]
fn sampled_shapley_shares_are_within_5_percent_of_exact_at_a_sixth_of_its_evaluations() {
    let (sim, report) = attacked_run(1);
    let evidence = &report.evidence[0];
    let validation = report.validation_set.as_ref().unwrap();
    let recipe = report.valuation_recipe.clone().unwrap();
    let updates = evidence.round_updates();
    let value = |recipe: &ValuationRecipe| {
        valuation::value_round(
            sim.network(),
            &evidence.before,
            &updates,
            validation,
            recipe,
            1,
        )
        .unwrap()
    };
    let exact = value(&recipe);
    assert_eq!(exact.method, "shapley-exact");
    assert_eq!(
        exact.players.len(),
        9,
        "the duplicate and its original are one player"
    );
    let exact_shares = shares(&exact.scores);
    let budget = exact.evaluations / 6;
    for seed in 1..=5 {
        let mut sampled = recipe.clone();
        sampled.exact_up_to = 0;
        sampled.sampling = Estimate::Stratified {
            seed,
            max_evaluations: budget,
        };
        let estimate = value(&sampled);
        assert_eq!(estimate.method, "shapley-stratified");
        let error: f64 = exact_shares
            .iter()
            .zip(shares(&estimate.scores))
            .map(|(a, b)| (a - b).abs())
            .sum();
        println!(
            "seed {seed}: {} of {} evaluations, shares off by {error:.3} in total",
            estimate.evaluations, exact.evaluations
        );
        assert!(estimate.evaluations <= budget);
        assert!(error <= 0.05, "seed {seed}: shares off by {error}");
    }
}

#[test]
fn rewards_pass_over_the_free_rider_and_noisy_labels_and_pay_a_duplicate_once() {
    let (sim, report) = attacked_run(5);
    let rewards = report.rewards.clone().expect("rewards");
    let pool = 1000;
    assert_eq!(
        rewards.iter().sum::<u64>(),
        pool,
        "the pool is paid to the unit"
    );
    let verify = &report.ledger.as_ref().expect("a ledger").verify;
    assert!(verify.is_ok(), "{verify}");
    let behaviours = sim.behaviours();
    println!(
        "{behaviours:?}\nrewards {rewards:?}\nvalues {:?}",
        report.values
    );
    let of = |pick: &dyn Fn(&Behaviour) -> bool| -> Vec<u64> {
        behaviours
            .iter()
            .zip(&rewards)
            .filter(|(b, _)| pick(b))
            .map(|(_, r)| *r)
            .collect()
    };
    let free_rider = of(&|b| matches!(b, Behaviour::FreeRider { .. }));
    let noisy = of(&|b| matches!(b, Behaviour::NoisyLabels { .. }));
    let (copy, original) = behaviours
        .iter()
        .enumerate()
        .find_map(|(i, b)| match b {
            Behaviour::Duplicate { of } => Some((i, *of)),
            _ => None,
        })
        .expect("a duplicate");
    let honest: Vec<u64> = (0..behaviours.len())
        .filter(|&i| behaviours[i] == Behaviour::Honest && i != original)
        .map(|i| rewards[i])
        .collect();
    assert!(
        free_rider[0] * 100 < pool,
        "free rider earns {}",
        free_rider[0]
    );
    let worst_honest = *honest.iter().min().unwrap();
    for n in &noisy {
        assert!(*n < worst_honest, "noisy {n} vs honest {honest:?}");
    }
    let pair = (rewards[copy] + rewards[original]) as f64;
    let one = honest.iter().sum::<u64>() as f64 / honest.len() as f64;
    assert!(
        (pair / one - 1.0).abs() <= 0.25,
        "duplicate and original earn {pair} together, an honest client {one}"
    );
}

#[test]
fn ledger_verify_flags_every_dishonest_payout_with_its_rule() {
    for (cheat, rule) in [
        (PublisherCheat::InflateScore, Rule::ScoresDoNotRecompute),
        (PublisherCheat::SkewAmounts, Rule::PayoutDoesNotFollowScores),
        (PublisherCheat::Overpay, Rule::PayoutExceedsPool),
        (PublisherCheat::PayStranger, Rule::PayoutWithoutConsent),
    ] {
        let (_, report) = cheating_run(2, Some(cheat));
        let verify = &report.ledger.as_ref().expect("a ledger").verify;
        let rules: Vec<Rule> = verify.violations.iter().map(|v| v.rule).collect();
        assert!(rules.contains(&rule), "{cheat:?}: {verify}");
        if cheat == PublisherCheat::InflateScore {
            assert_eq!(rules, vec![rule], "only the score is wrong: {verify}");
        }
    }
}

#[test]
fn ledger_verify_flags_a_payout_to_an_owner_who_sat_the_round_out() {
    let (contract, table) = digits();
    let mut contract = contract;
    contract.training.sampling.fraction = Some(0.5);
    let mut options = SimulationOptions::new(10, Partition::Iid, 42);
    options.rounds = Some(1);
    options.value_contributions = true;
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let first = sim.run(|_| {}).unwrap();
    let round = first.rounds[0].valuation.as_ref().expect("valued");
    let absent = (0..10)
        .find(|c| !round.clients.contains(c))
        .expect("someone sat out");
    options.publisher_cheat = Some(PublisherCheat::PayNonParticipant(absent));
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    let verify = &report.ledger.as_ref().expect("a ledger").verify;
    let rules: Vec<Rule> = verify.violations.iter().map(|v| v.rule).collect();
    assert!(rules.contains(&Rule::PayoutToNonParticipant), "{verify}");
}

/// Spearman rank correlation (ties take their average rank).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut ranks = vec![0.0; v.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && v[order[end + 1]] == v[order[start]] {
                end += 1;
            }
            for &i in &order[start..=end] {
                ranks[i] = (start + end) as f64 / 2.0;
            }
            start = end + 1;
        }
        ranks
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var_a: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let var_b: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    cov / (var_a * var_b).sqrt()
}

/// The issue's setup, with learning spread over the rounds (one epoch, a small step) so every
/// round has value to attribute, and log-loss, which measures the small gains accuracy rounds
/// away.
fn measured_setup(seed: u64) -> (Contract, SimulationOptions) {
    let (mut contract, _) = digits();
    contract.training.local.local_epochs = 1;
    contract.training.local.learning_rate = 0.03;
    let mut options = SimulationOptions::new(10, Partition::Iid, seed);
    options.rounds = Some(30);
    options.ledger = LedgerChoice::Off;
    options.value_contributions = true;
    options.valuation_metric = Some(fedpool_runtime::valuation::Utility::LogLoss);
    options.attacks = issue_attacks();
    (contract, options)
}

/// Whether every free rider's and noisy client's estimate is below every honest client's.
fn separates(behaviours: &[Behaviour], values: &[f64]) -> bool {
    let honest = |b: &Behaviour| matches!(b, Behaviour::Honest | Behaviour::Duplicate { .. });
    let lowest_honest = behaviours
        .iter()
        .zip(values)
        .filter(|(b, _)| honest(b))
        .map(|(_, v)| *v)
        .fold(f64::INFINITY, f64::min);
    behaviours
        .iter()
        .zip(values)
        .filter(|(b, _)| !honest(b))
        .all(|(_, v)| *v < lowest_honest)
}

/// The Done-when figure: the Spearman correlation of group estimates with the transparent
/// valuation after 30 rounds, over eight seeds. Per seed it moves a lot (the honest clients'
/// transparent values lie within a few hundredths of each other, so their ranks are close to
/// ties); what is held is its mean, and that in every seed the free rider and the noisy
/// clients fall below every honest client.
#[test]
fn group_valuation_from_sums_alone_ranks_clients_as_the_transparent_valuation_does() {
    let (_, table) = digits();
    let seeds = [42, 7, 1234, 1, 2, 3, 4, 5];
    let (mut formed, mut released) = (Vec::new(), Vec::new());
    for seed in seeds {
        // Transparent: every update seen, valued exactly; and the method measured on random
        // groups formed from those same updates.
        let (contract, mut options) = measured_setup(seed);
        options.group_valuation = Some(3);
        let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
        let report = sim.run(|_| {}).unwrap();
        let transparent = report.values.clone().unwrap();
        let groups = report.group_estimates.clone().unwrap();

        // Securely aggregated per group by the protocol: the publisher sees one sum per group
        // of at least 3 and values from those alone. (No noise: what grouping itself costs.
        // The clip norm is far above any update's, so the updates are those of the
        // transparent run.)
        let (mut contract, options) = measured_setup(seed);
        contract.privacy.secure_aggregation = true;
        contract.privacy.clip_norm = 100.0;
        contract.privacy.secure_aggregation_group_size = Some(3);
        let mut secure = Simulation::prepare(&contract, &table, &options).unwrap();
        let secure_report = secure.run(|_| {}).unwrap();
        assert_eq!(secure_report.plain_updates_seen, 0);
        let from_sums = secure_report.values.clone().unwrap();
        let (rho, rho_secure) = (
            spearman(&transparent, &groups),
            spearman(&transparent, &from_sums),
        );
        println!(
            "seed {seed}: {:?}\ntransparent {transparent:.3?}\ngroups      {groups:.3?}\nsecure sums {from_sums:.3?}\nSpearman {rho:.3} (Pearson {:.3}); from the protocol's group sums {rho_secure:.3} (Pearson {:.3})",
            sim.behaviours(),
            pearson(&transparent, &groups),
            pearson(&transparent, &from_sums),
        );
        assert!(
            separates(sim.behaviours(), &groups),
            "seed {seed}: {groups:?}"
        );
        assert!(
            separates(secure.behaviours(), &from_sums),
            "seed {seed}: {from_sums:?}"
        );
        formed.push(rho);
        released.push(rho_secure);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "Spearman over seeds {seeds:?}\n  groups formed from the updates:  {formed:.3?}, mean {:.3}\n  the protocol's released sums:    {released:.3?}, mean {:.3}",
        mean(&formed),
        mean(&released)
    );
    assert!(mean(&formed) >= 0.8, "{formed:?}");
    assert!(mean(&released) >= 0.8, "{released:?}");
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn released_weights_load_back_into_the_same_model_and_give_the_reported_accuracy() {
    let (sim, report) = attacked_run(3);
    let bytes = fedpool_core::release::to_safetensors(sim.network(), &report.global, &[]).unwrap();
    let (params, _) = fedpool_core::release::from_safetensors(&bytes, sim.network()).unwrap();
    assert_eq!(params, *report.global);
    let test_set = report.validation_set.as_ref().unwrap();
    let outputs = sim.network().predict(&params, &test_set.features).unwrap();
    let metrics = fedpool_core::evaluate_outputs(&outputs, &test_set.targets);
    assert_eq!(metrics, report.final_metrics);
}
