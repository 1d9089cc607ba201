//! Round time over loopback against the in-process round, for 10, 50 and 100 owners: the
//! digits contract (logistic regression, 10 local epochs, every owner every round, IID
//! shares of the 80% training split; the publisher evaluates on the other 20%).
//!
//! `in_process/N` times one round of `Simulation` (owners, publisher and messages in one
//! process, no ledger). `loopback/N` times rounds driven by a publisher node over libp2p
//! (TCP + Noise + Yamux on 127.0.0.1) to N owner nodes, each with its own swarm, ledger and
//! control socket; it includes signing and storing each round on the publisher's ledger.
//! The goal is a network overhead under 50 ms a round at 10 nodes. Run with
//! `cargo bench -p fedpool-node --bench round`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fedpool_core::Contract;
use fedpool_data::{Partition, Table};
use fedpool_ledger::{Keypair, NetworkId, Store};
use fedpool_node::control::ControlRequest;
use fedpool_node::test_support::{
    CsvData, call, consent, digits_contract, digits_csv, node_config, publish_digits, start,
};
use fedpool_runtime::{LedgerChoice, Simulation, SimulationOptions};

const DIGITS_ROWS: usize = 1797;

/// A publisher node and `n` consenting owner nodes, running in this process.
struct LoopbackCluster {
    _dirs: Vec<tempfile::TempDir>,
    publisher_home: PathBuf,
    model: String,
    nodes: Vec<tokio::task::JoinHandle<Result<(), fedpool_node::Error>>>,
}

impl LoopbackCluster {
    async fn start(n: usize) -> LoopbackCluster {
        let network = NetworkId::new("round-bench").unwrap();
        let publisher = Keypair::insecure_from_seed(10_000);
        let owners: Vec<Keypair> = (0..n)
            .map(|i| Keypair::insecure_from_seed(10_001 + i as u64))
            .collect();
        let dirs: Vec<tempfile::TempDir> = (0..=n).map(|_| tempfile::tempdir().unwrap()).collect();
        let model = {
            let mut store = Store::open(&dirs[0].path().join("ledger.db"), &network).unwrap();
            let model = publish_digits(&mut store, &publisher);
            for owner in &owners {
                consent(&mut store, owner, &publisher, &model, "share");
            }
            for dir in &dirs[1..] {
                let mut own = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
                own.import(store.events().unwrap()).unwrap();
            }
            model
        };

        let csv = digits_csv(DIGITS_ROWS);
        let mut lines = csv.lines();
        let header = lines.next().unwrap();
        let rows: Vec<&str> = lines.collect();
        let n_train = rows.len() * 4 / 5;
        let with_header = |rows: &[&str]| -> String {
            let mut text = format!("{header}\n");
            for row in rows {
                text.push_str(row);
                text.push('\n');
            }
            text
        };
        // The CLI's default sync interval, not the tests' fast one: anti-entropy is background
        // load that a deployment pays too, at this rate.
        let configure = |mut config: fedpool_node::NodeConfig| {
            config.sync_interval = Duration::from_secs(2);
            config
        };
        let publisher_config = configure(node_config(
            dirs[0].path(),
            &publisher,
            &network,
            Vec::new(),
            Arc::new(CsvData(with_header(&rows[n_train..]))),
            None,
        ));
        let (address, handle) = start(publisher_config).await;
        let mut nodes = vec![handle];
        for (i, owner) in owners.iter().enumerate() {
            let share: Vec<&str> = rows[..n_train].iter().skip(i).step_by(n).copied().collect();
            let config = configure(node_config(
                dirs[i + 1].path(),
                owner,
                &network,
                vec![address.clone()],
                Arc::new(CsvData(with_header(&share))),
                None,
            ));
            nodes.push(start(config).await.1);
        }
        let publisher_home = dirs[0].path().to_path_buf();
        loop {
            let status = call(&publisher_home, ControlRequest::Status).await;
            if status[0]["peers"].as_array().map_or(0, Vec::len) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        LoopbackCluster {
            _dirs: dirs,
            publisher_home,
            model: model.model_id.as_str().to_string(),
            nodes,
        }
    }

    /// Runs `rounds` rounds and returns the time they took.
    async fn rounds(&self, rounds: u64) -> Duration {
        let started = Instant::now();
        let lines = call(
            &self.publisher_home,
            ControlRequest::Train {
                model: self.model.clone(),
                rounds: Some(rounds as usize),
                eval: Some("test".into()),
            },
        )
        .await;
        let elapsed = started.elapsed();
        let completed = lines.iter().filter(|l| l["event"] == "completed").count();
        assert_eq!(completed as u64, rounds, "{lines:?}");
        elapsed
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.abort();
        }
    }
}

fn bench_rounds(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_, contract): (String, Contract) = digits_contract();
    let table = Table::from_csv(
        digits_csv(DIGITS_ROWS).as_bytes(),
        "digits.csv",
        &contract.schema,
        &[],
    )
    .unwrap();
    let mut group = c.benchmark_group("round");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for n in [10, 50, 100] {
        let mut options = SimulationOptions::new(n, Partition::Iid, 42);
        options.rounds = Some(1);
        options.ledger = LedgerChoice::Off;
        group.bench_function(BenchmarkId::new("in_process", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
                    let started = Instant::now();
                    sim.run(|_| {}).unwrap();
                    total += started.elapsed();
                }
                total
            })
        });
        let cluster = runtime.block_on(LoopbackCluster::start(n));
        group.bench_function(BenchmarkId::new("loopback", n), |b| {
            b.iter_custom(|iters| runtime.block_on(cluster.rounds(iters)))
        });
        drop(cluster);
    }
    group.finish();
}

criterion_group!(benches, bench_rounds);
criterion_main!(benches);
