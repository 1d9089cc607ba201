//! Simulation speed: 100 clients × 10 rounds of logistic regression on digits, Dirichlet 0.5.
//! The target is under 1 s in total on a 2-core machine. Also: the same with a ledger, and
//! with DP and secure aggregation.

use criterion::{Criterion, criterion_group, criterion_main};
use fedpool_core::Contract;
use fedpool_data::{Partition, Table};
use fedpool_runtime::{LedgerChoice, Simulation, SimulationOptions};

const DIGITS_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv");
const DIGITS_CONTRACT: &str = include_str!("../../../contracts/digits.toml");

fn bench_simulation(c: &mut Criterion) {
    let contract = Contract::from_toml(DIGITS_CONTRACT, "contracts/digits.toml").unwrap();
    let file = std::fs::File::open(DIGITS_CSV).unwrap();
    let table = Table::from_csv(file, "digits.csv", &contract.schema, &[]).unwrap();
    let mut options = SimulationOptions::new(100, Partition::Dirichlet { alpha: 0.5 }, 42);
    options.rounds = Some(10);
    options.ledger = LedgerChoice::Off;
    let mut group = c.benchmark_group("simulation");
    group.sample_size(10);
    group.bench_function("digits_logreg_100_clients_10_rounds", |b| {
        b.iter(|| {
            let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
            sim.run(|_| {}).unwrap()
        })
    });
    // The same run recording every consent and round on a temporary SQLite ledger (fsync per
    // round) and verifying it at the end.
    let mut with_ledger = options.clone();
    with_ledger.ledger = LedgerChoice::Temporary;
    group.bench_function("digits_logreg_100_clients_10_rounds_with_ledger", |b| {
        b.iter(|| {
            let mut sim = Simulation::prepare(&contract, &table, &with_ledger).unwrap();
            sim.run(|_| {}).unwrap()
        })
    });
    // Every client every round (100 per round), clipped, with distributed discrete Gaussian
    // noise shares and SecAgg (all-pairs below 41 members, SecAgg+ above): the cost of the
    // privacy machinery over the plain run above.
    let mut private = contract.clone();
    private.privacy.clip_norm = 1.0;
    private.privacy.noise_multiplier = 1.0;
    private.privacy.delta = Some(1e-5);
    private.privacy.secure_aggregation = true;
    private.validate("digits (private)").unwrap();
    group.bench_function(
        "digits_logreg_100_clients_10_rounds_dp_secure_aggregation",
        |b| {
            b.iter(|| {
                let mut sim = Simulation::prepare(&private, &table, &options).unwrap();
                sim.run(|_| {}).unwrap()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_simulation);
criterion_main!(benches);
