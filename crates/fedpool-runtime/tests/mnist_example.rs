//! The README's MNIST example does what it says: the small CNN of `contracts/mnist.toml`, 100
//! clients, 10% of them a round, 5 local epochs at batch 10 (FedAvg's own setting, McMahan et
//! al. 2017), 50 rounds. Needs the MNIST 10k CSV (not shipped): `FEDPOOL_MNIST=PATH`, or
//! `../shared/data/mnist_10k/` beside the repository. Run with
//! `cargo nextest run -p fedpool-runtime --run-ignored only -E 'test(mnist)'`.

mod common;

use common::mnist_table;
use fedpool_core::{Contract, Metrics};
use fedpool_data::Partition;
use fedpool_runtime::{LedgerChoice, Simulation, SimulationOptions};

const CONTRACT: &str = include_str!("../../../contracts/mnist.toml");

/// Final accuracy and the curve of a 100-client run of the contract as written, seed 42.
fn run(partition: Partition) -> (f64, Vec<f64>) {
    let contract = Contract::from_toml(CONTRACT, "contracts/mnist.toml").unwrap();
    assert_eq!(contract.training.rounds, 50);
    let table = mnist_table(&contract);
    let mut options = SimulationOptions::new(100, partition, 42);
    options.ledger = LedgerChoice::Off;
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    let accuracy = |m: &Metrics| match m {
        Metrics::Classification { accuracy, .. } => *accuracy,
        Metrics::Regression { .. } => unreachable!("MNIST is a classification task"),
    };
    let curve = report.rounds.iter().map(|r| accuracy(&r.metrics)).collect();
    (accuracy(&report.final_metrics), curve)
}

#[test]
#[ignore = "needs MNIST 10k (FEDPOOL_MNIST or ../shared); ~3 min on 2 cores"]
fn mnist_cnn_on_two_shards_per_client_reaches_090_within_50_rounds() {
    let (accuracy, curve) = run(Partition::Shards {
        shards_per_client: 2,
    });
    println!("MNIST CNN, shards:2, 50 rounds: accuracy {accuracy:.4}; per round {curve:.3?}");
    assert!(accuracy >= 0.90, "{accuracy:.4}; per round {curve:.3?}");
}

#[test]
#[ignore = "needs MNIST 10k (FEDPOOL_MNIST or ../shared); ~3 min on 2 cores"]
fn mnist_cnn_iid_reaches_095() {
    let (accuracy, curve) = run(Partition::Iid);
    println!("MNIST CNN, IID, 50 rounds: accuracy {accuracy:.4}; per round {curve:.3?}");
    assert!(accuracy >= 0.95, "{accuracy:.4}; per round {curve:.3?}");
}
