//! Accuracy of federated training on the bundled digits dataset, with fixed seeds.
//!
//! These are the foundation's acceptance thresholds. Each run prints its seed and per-round
//! accuracy on failure, so a regression can be replayed with `fedpool simulate`.

use fedpool_core::{Contract, Metrics};
use fedpool_data::{Partition, Table};
use fedpool_runtime::{Attack, LedgerChoice, Simulation, SimulationOptions, SimulationReport};
use fedpool_strategy::StrategyConfig;

const DIGITS_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv");
const DIGITS_CONTRACT: &str = include_str!("../../../contracts/digits.toml");

fn digits() -> (Contract, Table) {
    let contract = Contract::from_toml(DIGITS_CONTRACT, "contracts/digits.toml").unwrap();
    let file = std::fs::File::open(DIGITS_CSV).unwrap();
    let table = Table::from_csv(file, "digits.csv", &contract.schema, &[]).unwrap();
    (contract, table)
}

fn simulate(
    n_clients: usize,
    partition: &str,
    strategy: Option<&str>,
    attack: Option<&str>,
    seed: u64,
) -> SimulationReport {
    let (mut contract, table) = digits();
    // One client must be allowed to train alone for the centralised baseline.
    contract.training.sampling.min_clients = 1;
    let mut options =
        SimulationOptions::new(n_clients, partition.parse::<Partition>().unwrap(), seed);
    options.rounds = Some(30);
    options.strategy = strategy.map(|s| s.parse::<StrategyConfig>().unwrap());
    options.attacks = attack
        .map(|a| a.parse::<Attack>().unwrap())
        .into_iter()
        .collect();
    options.ledger = LedgerChoice::Off;
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    sim.run(|_| {}).unwrap()
}

fn accuracy(report: &SimulationReport) -> f64 {
    match report.final_metrics {
        Metrics::Classification { accuracy, .. } => accuracy,
        Metrics::Regression { .. } => panic!("digits is a classification task"),
    }
}

fn check_at_least(
    what: &str,
    n_clients: usize,
    partition: &str,
    strategy: Option<&str>,
    attack: Option<&str>,
    threshold: f64,
) {
    let seed = 42;
    let report = simulate(n_clients, partition, strategy, attack, seed);
    let acc = accuracy(&report);
    let curve: Vec<String> = report
        .rounds
        .iter()
        .map(|r| format!("{:.3}", r.metrics.headline()))
        .collect();
    // The README's accuracy table is this line, from `--no-capture`.
    println!("accuracy {what}: {acc:.3} (seed {seed})");
    assert!(
        acc >= threshold,
        "{what}: accuracy {acc:.4} < {threshold} (seed {seed}); per round: {}",
        curve.join(" ")
    );
}

#[test]
fn logistic_regression_on_one_client_reaches_095() {
    check_at_least("1 client", 1, "iid", None, None, 0.95);
}

#[test]
fn fedavg_iid_100_clients_reaches_093() {
    check_at_least("FedAvg IID", 100, "iid", Some("fedavg"), None, 0.93);
}

#[test]
fn fedavg_dirichlet_05_reaches_090() {
    check_at_least(
        "FedAvg Dirichlet 0.5",
        100,
        "dirichlet:0.5",
        Some("fedavg"),
        None,
        0.90,
    );
}

#[test]
fn fedprox_dirichlet_03_reaches_088() {
    check_at_least(
        "FedProx Dirichlet 0.3",
        100,
        "dirichlet:0.3",
        Some("fedprox:0.01"),
        None,
        0.88,
    );
}

#[test]
fn fedadam_dirichlet_03_reaches_088() {
    check_at_least(
        "FedAdam Dirichlet 0.3",
        100,
        "dirichlet:0.3",
        Some("fedadam"),
        None,
        0.88,
    );
}

/// Two of ten clients (a cross-silo federation of ~144 rows each) send their update × −10.
///
/// Krum keeps a single client's update per round, so it needs clients with enough rows for one
/// update to stand for the whole: with 100 clients of ~14 rows it plateaus near 0.76 (README).
const SCALE_ATTACK: &str = "scale:0.2,-10";
const SILOS: usize = 10;

#[test]
fn fedavg_collapses_under_scale_attack() {
    let report = simulate(SILOS, "iid", Some("fedavg"), Some(SCALE_ATTACK), 42);
    let acc = accuracy(&report);
    println!("accuracy FedAvg under {SCALE_ATTACK}, {SILOS} silos: {acc:.3} (seed 42)");
    assert!(
        acc < 0.5,
        "FedAvg under {SCALE_ATTACK}: accuracy {acc:.4} should be < 0.5"
    );
}

#[test]
fn fedmedian_resists_scale_attack() {
    check_at_least(
        "FedMedian under attack",
        SILOS,
        "iid",
        Some("fedmedian"),
        Some(SCALE_ATTACK),
        0.85,
    );
}

#[test]
fn krum_resists_scale_attack() {
    check_at_least(
        "Krum under attack",
        SILOS,
        "iid",
        Some("krum:0.2"),
        Some(SCALE_ATTACK),
        0.85,
    );
}

#[test]
fn trimmed_mean_resists_scale_attack() {
    check_at_least(
        "FedTrimmedAvg under attack",
        SILOS,
        "iid",
        Some("fedtrimmedavg:0.25"),
        Some(SCALE_ATTACK),
        0.85,
    );
}

#[test]
fn median_and_trimmed_mean_resist_scale_attack_across_100_clients() {
    check_at_least(
        "FedMedian, 100 clients",
        100,
        "iid",
        Some("fedmedian"),
        Some(SCALE_ATTACK),
        0.85,
    );
    check_at_least(
        "FedTrimmedAvg, 100 clients",
        100,
        "iid",
        Some("fedtrimmedavg:0.25"),
        Some(SCALE_ATTACK),
        0.85,
    );
}

#[test]
fn same_seed_gives_the_same_model() {
    let a = simulate(20, "dirichlet:0.5", Some("fedavg"), None, 9);
    let b = simulate(20, "dirichlet:0.5", Some("fedavg"), None, 9);
    assert_eq!(
        a.global, b.global,
        "same seed must give bit-identical parameters"
    );
    let c = simulate(20, "dirichlet:0.5", Some("fedavg"), None, 10);
    assert_ne!(
        a.global, c.global,
        "a different seed should give a different model"
    );
}

#[test]
fn a_linear_model_starts_at_zero_and_shows_its_early_signal() {
    // One local epoch at rate 0.1, 10 rounds, 100 IID clients: the numpy FedAvg loop of the
    // same logistic regression (zero start) reaches 0.87; from a random start fedpool reached
    // 0.38 here (issue 11), from zero 0.858.
    let (mut contract, table) = digits();
    contract.training.local.local_epochs = 1;
    contract.training.local.learning_rate = 0.1;
    let mut options = SimulationOptions::new(100, Partition::Iid, 42);
    options.rounds = Some(10);
    options.ledger = LedgerChoice::Off;
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    let acc = accuracy(&report);
    assert!(acc >= 0.8, "accuracy {acc:.4} after 10 rounds");
}

/// The simulated behaviours valuation is measured against (issue 12): free riders send nothing
/// of value, duplicates hold another client's rows, noisy-label clients a share of wrong labels.
#[test]
fn free_riders_duplicates_and_noisy_labels_are_simulated_as_described() {
    let (contract, table) = digits();
    let options = |attack: &str| {
        let mut options = SimulationOptions::new(10, Partition::Iid, 42);
        options.rounds = Some(3);
        options.ledger = LedgerChoice::Off;
        options.attacks = attack
            .split(' ')
            .map(|a| a.parse::<Attack>().unwrap())
            .collect();
        options
    };
    // Everyone free-rides: the model never moves from where it started.
    let mut sim = Simulation::prepare(&contract, &table, &options("free-rider:1")).unwrap();
    let initial = sim.initial_metrics();
    let report = sim.run(|_| {}).unwrap();
    assert_eq!(report.final_metrics, initial);
    assert_eq!(sim.n_attackers(), 10);

    // Duplicates: three clients hold exactly another client's rows.
    let sim = Simulation::prepare(&contract, &table, &options("duplicate:0.3")).unwrap();
    let datasets: Vec<&fedpool_data::Dataset> =
        (0..10).map(|i| sim.client_data(i).unwrap()).collect();
    let copies = (0..10)
        .filter(|&i| (0..10).any(|j| j != i && datasets[i] == datasets[j]))
        .count();
    assert_eq!(copies, 6, "3 copies and the 3 originals they copy");

    // Noisy labels: 2 clients with half their labels redrawn (a tenth of those by chance the
    // same), the others untouched.
    let clean = Simulation::prepare(&contract, &table, &options("noise:0")).unwrap();
    let noisy = Simulation::prepare(&contract, &table, &options("noisy-labels:0.2,0.5")).unwrap();
    let labels = |sim: &Simulation, i: usize| match &sim.client_data(i).unwrap().targets {
        fedpool_data::Targets::Classes { labels, .. } => labels.clone(),
        fedpool_data::Targets::Real(_) => unreachable!(),
    };
    let changed: Vec<f64> = (0..10)
        .map(|i| {
            let (a, b) = (labels(&clean, i), labels(&noisy, i));
            a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64
        })
        .collect();
    assert_eq!(
        changed.iter().filter(|&&c| c == 0.0).count(),
        8,
        "{changed:?}"
    );
    assert!(
        changed.iter().filter(|&&c| c > 0.3 && c < 0.6).count() == 2,
        "{changed:?}"
    );

    // Several at once take disjoint shares: issue 12's round of 2 noisy, 1 free rider and
    // 1 duplicate among 10.
    let mixed = Simulation::prepare(
        &contract,
        &table,
        &options("noisy-labels:0.2,0.5 free-rider:0.1 duplicate:0.1"),
    )
    .unwrap();
    assert_eq!(mixed.n_attackers(), 4);
    let too_many = Simulation::prepare(&contract, &table, &options("noise:0.6 scale:0.5,2"));
    assert!(too_many.is_err_and(|e| e.to_string().contains("add up to at most 1")));
}
