//! Valuation cost, seconds per round on digits (logistic regression, held-out accuracy):
//! exact Shapley values of 12 participants, stratified sampling for 100, and — on the issue's
//! 10-client round (2 noisy-label clients, a free rider, a duplicate) — exact against
//! stratified sampling within a sixth of exact's evaluations, in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use fedpool_core::Contract;
use fedpool_data::{Partition, Table};
use fedpool_runtime::valuation::{self, ValuationRecipe};
use fedpool_runtime::{Attack, LedgerChoice, Simulation, SimulationOptions, SimulationReport};
use fedpool_value::Estimate;

const DIGITS_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv");
const DIGITS_CONTRACT: &str = include_str!("../../../contracts/digits.toml");

/// One round of `n_clients`, with its evidence kept.
fn first_round(n_clients: usize, attacks: &[&str]) -> (Simulation, SimulationReport) {
    let contract = Contract::from_toml(DIGITS_CONTRACT, "contracts/digits.toml").unwrap();
    let file = std::fs::File::open(DIGITS_CSV).unwrap();
    let table = Table::from_csv(file, "digits.csv", &contract.schema, &[]).unwrap();
    let mut options = SimulationOptions::new(n_clients, Partition::Iid, 42);
    options.rounds = Some(1);
    options.ledger = LedgerChoice::Off;
    options.value_contributions = true;
    options.keep_round_evidence = true;
    options.attacks = attacks
        .iter()
        .map(|a| a.parse::<Attack>().unwrap())
        .collect();
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    (sim, report)
}

fn bench_round(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    run: &(Simulation, SimulationReport),
    recipe: &ValuationRecipe,
) {
    let (sim, report) = run;
    let evidence = &report.evidence[0];
    let validation = report.validation_set.as_ref().unwrap();
    let updates = evidence.round_updates();
    let once = valuation::value_round(
        sim.network(),
        &evidence.before,
        &updates,
        validation,
        recipe,
        1,
    )
    .unwrap();
    eprintln!(
        "{name}: {} players, {} evaluations ({})",
        once.players.len(),
        once.evaluations,
        once.method
    );
    group.bench_function(name, |b| {
        b.iter(|| {
            valuation::value_round(
                sim.network(),
                &evidence.before,
                &updates,
                validation,
                recipe,
                1,
            )
            .unwrap()
        })
    });
}

fn bench_valuation(c: &mut Criterion) {
    let mut group = c.benchmark_group("valuation");
    group.sample_size(10);

    let attacked = first_round(
        10,
        &["noisy-labels:0.2,0.8", "free-rider:0.1", "duplicate:0.1"],
    );
    let exact = attacked.1.valuation_recipe.clone().unwrap();
    let mut sampled = exact.clone();
    sampled.exact_up_to = 0;
    sampled.sampling = Estimate::Stratified {
        seed: 1,
        max_evaluations: 512 / 6,
    };
    bench_round(&mut group, "attacked_10_clients_exact", &attacked, &exact);
    bench_round(
        &mut group,
        "attacked_10_clients_stratified_sixth",
        &attacked,
        &sampled,
    );

    let twelve = first_round(12, &[]);
    let recipe = twelve.1.valuation_recipe.clone().unwrap();
    bench_round(&mut group, "exact_12_clients", &twelve, &recipe);

    let hundred = first_round(100, &[]);
    let recipe = hundred.1.valuation_recipe.clone().unwrap();
    bench_round(&mut group, "stratified_100_clients", &hundred, &recipe);
    group.finish();
}

criterion_group!(benches, bench_valuation);
criterion_main!(benches);
