//! Federated feature statistics on real data (UCI Adult, bundled): under label skew, nodes
//! standardising with their own statistics erase the signal; the statistics phase keeps it,
//! and when the contract is private its ε is on the ledger, accounted with the rounds'.

use std::io::Read;

use fedpool_core::{Contract, Metrics};
use fedpool_data::{Partition, Table};
use fedpool_ledger::{Body, NetworkId, Store};
use fedpool_runtime::{LedgerChoice, Simulation, SimulationOptions, SimulationReport};

const ADULT: &str = include_str!("../../../contracts/adult.toml");
const ADULT_PRIVATE: &str = include_str!("../../../contracts/adult_private.toml");

fn adult(contract: &Contract) -> Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/adult/adult.csv.gz");
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    Table::from_csv(text.as_slice(), "adult.csv", &contract.schema, &[]).unwrap()
}

fn run(
    contract_text: &str,
    n_clients: usize,
    options: impl FnOnce(&mut SimulationOptions),
) -> SimulationReport {
    let contract = Contract::from_toml(contract_text, "adult.toml").unwrap();
    let table = adult(&contract);
    let mut opts =
        SimulationOptions::new(n_clients, "dirichlet:0.3".parse::<Partition>().unwrap(), 42);
    options(&mut opts);
    Simulation::prepare(&contract, &table, &opts)
        .unwrap()
        .run(|_| {})
        .unwrap()
}

fn accuracy(report: &SimulationReport) -> f64 {
    match report.final_metrics {
        Metrics::Classification { accuracy, .. } => accuracy,
        Metrics::Regression { .. } => unreachable!("adult is a classification task"),
    }
}

#[test]
fn adult_under_label_skew_reaches_081_with_federated_statistics_and_not_with_local_scaling() {
    let federated = run(ADULT, 50, |_| {});
    let local_text = ADULT.replacen("[schema]\n", "[schema]\nlocal_standardize = true\n", 1);
    let local = run(&local_text, 50, |_| {});
    let (federated_accuracy, local_accuracy) = (accuracy(&federated), accuracy(&local));
    // The README's table is these lines, from `--no-capture`.
    println!(
        "accuracy Adult dirichlet:0.3, federated statistics: {federated_accuracy:.3} (seed 42)"
    );
    println!("accuracy Adult dirichlet:0.3, local_standardize: {local_accuracy:.3} (seed 42)");
    assert_eq!(federated.rounds.len(), 20);
    assert!(federated_accuracy >= 0.81, "{federated_accuracy}");
    assert!(
        federated_accuracy - local_accuracy >= 0.02,
        "federated {federated_accuracy} vs local {local_accuracy}"
    );
    let statistics = federated.statistics.as_ref().expect("the phase ran");
    assert_eq!(statistics.n_contributors, 50);
    assert_eq!(statistics.epsilon, None, "the contract adds no noise");
    assert!(
        local.statistics.is_none(),
        "local scaling sends no statistics"
    );
    // The ledger holds the phase and verifies.
    let verify = &federated.ledger.as_ref().unwrap().verify;
    assert!(verify.violations.is_empty(), "{verify}");
}

#[test]
fn a_private_statistics_phase_spends_epsilon_that_the_ledger_records_and_verify_recomputes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let report = run(ADULT_PRIVATE, 40, |options| {
        options.rounds = Some(2);
        options.ledger = LedgerChoice::At(path.clone());
    });
    let outcome = report.ledger.as_ref().unwrap();
    assert!(outcome.verify.violations.is_empty(), "{}", outcome.verify);
    let statistics = report.statistics.as_ref().expect("the phase ran");
    let statistics_epsilon = statistics.epsilon.expect("noised");
    assert!(statistics_epsilon > 0.0);

    let store = Store::open(&path, &NetworkId::new("fedpool-sim").unwrap()).unwrap();
    let events = store
        .events_by_model(&outcome.model_id.as_str().into())
        .unwrap();
    let committed: Vec<_> = events
        .iter()
        .filter_map(|e| match e.body() {
            Body::StatisticsCommitted(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let [phase] = committed.as_slice() else {
        panic!("one statistics phase, got {committed:?}");
    };
    assert!((phase.epsilon_total - statistics_epsilon).abs() < 1e-9);
    assert_eq!(
        phase.participants.len(),
        40,
        "every consenting node was asked"
    );
    // Every round names the phase's scaling, and its total ε includes the phase's.
    let rounds: Vec<_> = events
        .iter()
        .filter_map(|e| match e.body() {
            Body::RoundCommitted(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rounds.len(), 2);
    for round in &rounds {
        assert_eq!(round.scaling_hash.as_ref(), Some(&phase.scaling_hash));
        assert!(round.epsilon_total > phase.epsilon_total);
    }
    // Every owner's node recorded the phase as its own step, before any round.
    let owner_steps: Vec<(u32, u32)> = events
        .iter()
        .filter_map(|e| match e.body() {
            Body::PrivacySpent(p) if p.round == 0 => Some((p.round, p.rounds)),
            _ => None,
        })
        .collect();
    assert_eq!(owner_steps, vec![(0, 1); 40]);
}
