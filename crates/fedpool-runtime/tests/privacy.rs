//! Private training end to end on the bundled digits dataset: the contract's privacy section
//! drives clipping, noise, secure aggregation and the budget; ε lands on the ledger; dropouts
//! are survived. Fixed seeds throughout.

use fedpool_core::{Contract, Metrics};
use fedpool_data::{Partition, Table};
use fedpool_ledger::{Body, Did, Event, EventKind, ModelId, Store};
use fedpool_protocol::{NodeId, Participant, PrivacyTerms};
use fedpool_runtime::{
    LedgerChoice, Simulation, SimulationOptions, SimulationReport, privacy_history,
};

const DIGITS_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv");
const PRIVATE_CONTRACT: &str = include_str!("../../../contracts/digits_private.toml");

fn private_digits() -> (Contract, Table) {
    let contract = Contract::from_toml(PRIVATE_CONTRACT, "contracts/digits_private.toml").unwrap();
    let file = std::fs::File::open(DIGITS_CSV).unwrap();
    let table = Table::from_csv(file, "digits.csv", &contract.schema, &[]).unwrap();
    (contract, table)
}

fn run(contract: &Contract, table: &Table, options: &SimulationOptions) -> SimulationReport {
    let mut sim = Simulation::prepare(contract, table, options).unwrap();
    sim.run(|_| {}).unwrap()
}

fn accuracy(report: &SimulationReport) -> f64 {
    match report.final_metrics {
        Metrics::Classification { accuracy, .. } => accuracy,
        Metrics::Regression { .. } => panic!("digits is a classification task"),
    }
}

fn options(seed: u64) -> SimulationOptions {
    let mut options = SimulationOptions::new(100, Partition::Dirichlet { alpha: 0.5 }, seed);
    options.ledger = LedgerChoice::Off;
    options
}

#[test]
fn private_secure_training_learns_spends_within_budget_and_records_epsilon() {
    let (contract, table) = private_digits();
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.db");
    let mut options = options(42);
    options.ledger = LedgerChoice::At(ledger_path.clone());
    let report = run(&contract, &table, &options);

    let acc = accuracy(&report);
    assert!(acc >= 0.75, "accuracy {acc}");
    let epsilon = report.epsilon.expect("noised rounds spend ε");
    let budget = contract.privacy.epsilon_budget.unwrap();
    assert!(epsilon > 0.0 && epsilon <= budget, "ε {epsilon}");
    assert!(report.secure_aggregation);
    assert_eq!(
        report.plain_updates_seen, 0,
        "the publisher saw a plain update"
    );
    let in_sums: usize = report.rounds.iter().map(|r| r.n_contributors).sum();
    assert_eq!(report.masked_inputs_seen, in_sums);
    // Every node accounts every round it is asked in, so its ε is never below the publisher's.
    assert!(report.max_node_epsilon >= epsilon - 1e-9);

    let ledger = report.ledger.as_ref().unwrap();
    assert!(ledger.verify.is_ok(), "{:?}", ledger.verify.violations);
    let store = Store::open_existing(&ledger_path).unwrap();
    let rounds: Vec<_> = store
        .events_by_kind(EventKind::RoundCommitted)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body() {
            Body::RoundCommitted(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rounds.len(),
        report.rounds.iter().filter(|r| r.completed).count()
    );
    let last = rounds.iter().max_by_key(|r| r.round).unwrap();
    assert!((last.epsilon_total - epsilon).abs() < 1e-9);
    assert_eq!(last.delta, contract.privacy.delta.unwrap());
    let sum_of_rounds: f64 = rounds.iter().map(|r| r.epsilon_round).sum();
    assert!(
        (sum_of_rounds - epsilon).abs() < 1e-6,
        "{sum_of_rounds} vs {epsilon}"
    );
}

#[test]
fn secure_rounds_survive_dropouts_at_random_stages() {
    let (contract, table) = private_digits();
    let mut options = options(5);
    options.dropout = 0.1;
    let report = run(&contract, &table, &options);
    assert!(report.n_dropouts > 0);
    let completed = report.rounds.iter().filter(|r| r.completed).count();
    assert!(
        completed >= report.rounds.len() * 9 / 10,
        "{completed} of {} rounds completed",
        report.rounds.len()
    );
    let dropped_rounds = report
        .rounds
        .iter()
        .filter(|r| r.completed && r.n_dropouts > 0)
        .count();
    assert!(dropped_rounds > 0, "no completed round had a dropout");
    assert!(accuracy(&report) >= 0.7, "accuracy {}", accuracy(&report));
}

#[test]
fn secure_aggregation_gives_the_same_model_as_the_plain_clipped_mean() {
    // z = 0: the only difference between the two paths is the encoding's rounding.
    let (mut contract, table) = private_digits();
    contract.privacy.noise_multiplier = 0.0;
    contract.privacy.epsilon_budget = None;
    contract.training.rounds = 5;
    let secure = run(&contract, &table, &options(3));
    contract.privacy.secure_aggregation = false;
    let plain = run(&contract, &table, &options(3));
    assert_eq!(secure.epsilon, None);
    assert_eq!(plain.epsilon, None);
    assert_eq!(plain.masked_inputs_seen, 0);
    let max_diff = secure
        .global
        .iter()
        .zip(plain.global.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "max parameter difference {max_diff}");
}

#[test]
fn training_stops_before_the_budget() {
    let (mut contract, table) = private_digits();
    contract.privacy.epsilon_budget = Some(3.0);
    let report = run(&contract, &table, &options(9));
    let why = report
        .stopped_by_budget
        .as_ref()
        .expect("the budget stops training");
    assert!(why.contains("budget"), "{why}");
    assert!(report.rounds.len() < contract.training.rounds);
    assert!(report.epsilon.unwrap() <= 3.0);
}

#[test]
fn central_dp_without_secure_aggregation_matches_the_gaussian_accountant() {
    let (mut contract, table) = private_digits();
    contract.privacy.secure_aggregation = false;
    contract.training.rounds = 10;
    let report = run(&contract, &table, &options(11));
    assert_eq!(report.masked_inputs_seen, 0);
    let expected = fedpool_privacy::epsilon(0.2, 1.5, 10, 1e-5).unwrap();
    let epsilon = report.epsilon.unwrap();
    assert!((epsilon - expected).abs() < 1e-9, "{epsilon} vs {expected}");
}

#[test]
fn robust_strategies_are_refused_when_only_the_mean_exists() {
    let (contract, table) = private_digits();
    let mut options = options(1);
    options.strategy = Some("fedmedian".parse().unwrap());
    let error = Simulation::prepare(&contract, &table, &options)
        .err()
        .expect("fedmedian cannot run on a secure sum")
        .to_string();
    assert!(error.contains("fedmedian"), "{error}");
}

#[test]
fn adaptive_clipping_tracks_the_update_norms_under_central_dp() {
    let (mut contract, table) = private_digits();
    contract.privacy.secure_aggregation = false;
    contract.privacy.clip_norm = 1.0;
    contract.privacy.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    let report = run(&contract, &table, &options(13));
    let norms: Vec<f64> = report.rounds.iter().map(|r| r.clip_norm).collect();
    // Digits updates have norms around 6 here: starting at 1, far below most of them, the clip
    // norm climbs round after round towards their median, then holds.
    assert!(norms[0] == 1.0, "{norms:?}");
    assert!(norms.windows(2).take(10).all(|w| w[1] > w[0]), "{norms:?}");
    let last = *norms.last().unwrap();
    assert!((3.0..12.0).contains(&last), "{norms:?}");
    // ε is the contract's: the count's noise is paid for out of the same budget.
    let expected = fedpool_privacy::epsilon(0.2, 1.5, report.rounds.len() as u64, 1e-5).unwrap();
    assert!((report.epsilon.unwrap() - expected).abs() < 1e-9);
    assert!(accuracy(&report) >= 0.6, "accuracy {}", accuracy(&report));
}

#[test]
fn adaptive_clipping_under_secure_aggregation_tracks_the_norms_too() {
    let (mut contract, table) = private_digits();
    contract.privacy.clip_norm = 1.0;
    contract.privacy.adaptive_clipping = Some(fedpool_core::AdaptiveClipping {
        target_quantile: 0.5,
        learning_rate: 0.2,
    });
    contract.validate("digits_private.toml").unwrap();
    let report = run(&contract, &table, &options(13));
    let norms: Vec<f64> = report.rounds.iter().map(|r| r.clip_norm).collect();
    assert!(norms[0] == 1.0, "{norms:?}");
    let last = *norms.last().unwrap();
    assert!((3.0..12.0).contains(&last), "{norms:?}");
    assert_eq!(report.plain_updates_seen, 0);
    let epsilon = report.epsilon.unwrap();
    assert!(epsilon > 0.0 && epsilon <= 8.0, "ε {epsilon}");
}

#[test]
fn secure_rounds_with_dropouts_are_deterministic_whatever_the_thread_count() {
    let (mut contract, table) = private_digits();
    contract.training.rounds = 6;
    let mut options = options(21);
    options.dropout = 0.1;
    let first = run(&contract, &table, &options);
    let again = run(&contract, &table, &options);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run(&contract, &table, &options));
    assert!(first.n_dropouts > 0);
    assert_eq!(first.global, again.global);
    assert_eq!(first.global, one_thread.global);
    assert_eq!(first.epsilon, one_thread.epsilon);
}

#[test]
fn owners_caps_stop_them_whatever_the_publisher_asks_and_the_ledger_agrees() {
    // The contract allows ε = 8; every owner caps itself at 3. The publisher keeps asking;
    // the nodes refuse once a round would pass 3, so later rounds fail for lack of members.
    let (contract, table) = private_digits();
    let mut options = options(17);
    options.owner_epsilon_cap = Some(3.0);
    options.ledger = LedgerChoice::Temporary;
    let report = run(&contract, &table, &options);
    assert!(
        report.max_node_epsilon <= 3.0,
        "{}",
        report.max_node_epsilon
    );
    let completed = report.rounds.iter().filter(|r| r.completed).count();
    let failed = report.rounds.len() - completed;
    assert!(
        completed > 0 && failed > 0,
        "{completed} completed, {failed} failed"
    );
    assert!(report.epsilon.unwrap() <= 3.0);
    let ledger = report.ledger.unwrap();
    assert!(ledger.verify.is_ok(), "{:?}", ledger.verify.violations);
}

/// Issue 9, finding 11: a node's privacy spending lives on its own ledger chain, written
/// before anything computed from its data leaves, so a restarted node resumes from the ledger
/// (and keeps refusing past its cap) instead of starting again from zero.
#[test]
fn a_restarted_node_resumes_its_privacy_spending_from_the_ledger() {
    let (contract, table) = private_digits();
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.db");
    let mut options = options(23);
    options.owner_epsilon_cap = Some(3.0);
    options.ledger = LedgerChoice::At(ledger_path.clone());
    let report = run(&contract, &table, &options);
    let outcome = report.ledger.as_ref().unwrap();
    // Clean verification includes every owner's records: the ε each declares is what its
    // recorded mechanisms give (recomputed by `ContractReader`), within its cap.
    assert!(outcome.verify.is_ok(), "{:?}", outcome.verify.violations);

    let store = Store::open_existing(&ledger_path).unwrap();
    let model_id = ModelId(outcome.model_id.clone());
    let owners: Vec<Did> = store
        .events_by_kind(EventKind::ConsentGranted)
        .unwrap()
        .iter()
        .map(Event::author)
        .collect();
    assert_eq!(owners.len(), 100);
    let terms = PrivacyTerms::from_contract(&contract);
    let mut max_restored: f64 = 0.0;
    for owner in &owners {
        let history = privacy_history(&store, &model_id, owner).unwrap();
        assert!(
            !history.is_empty(),
            "{owner} was asked but recorded nothing"
        );
        let restarted = Participant::new(NodeId(0), true, 1)
            .with_privacy(terms.clone(), Some(3.0))
            .unwrap()
            .restore_privacy(&history)
            .unwrap();
        let last = history.last().unwrap();
        assert!(
            (restarted.epsilon_spent() - last.epsilon_total).abs() < 1e-9,
            "{} restored vs {} recorded",
            restarted.epsilon_spent(),
            last.epsilon_total
        );
        assert!(restarted.epsilon_spent() <= 3.0);
        max_restored = max_restored.max(restarted.epsilon_spent());
    }
    // What the nodes held in memory when the simulation ended is what the ledger gives back.
    assert!(
        (max_restored - report.max_node_epsilon).abs() < 1e-9,
        "{max_restored} vs {}",
        report.max_node_epsilon
    );
}
