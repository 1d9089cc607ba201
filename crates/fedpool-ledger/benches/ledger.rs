//! Ledger throughput at 100,000 events (a model, 32 consents, then alternating rounds of ten
//! participants and payouts; ~430 bytes per event on average).
//!
//! - `append`: `Store::append` of one event, its own durable transaction (WAL,
//!   `synchronous=FULL`: one fsync per event), into a ledger already holding 100,000 events.
//!   Throughput is 1 / latency.
//! - `import`: `Store::import` of 100,000 events into an empty ledger, one transaction.
//! - `verify_events`: `verify_events` over 100,000 events in memory (signatures, chains, all
//!   rules).
//! - `store_verify`: `Store::verify` of a 100,000-event ledger: read and decode every row, check
//!   it against its columns, then `verify_events`.
//!
//! Criterion reports events/s as "thrpt". Run with `cargo bench -p fedpool-ledger`.
//! `FEDPOOL_BENCH_APPEND_ALL=1` also times appending all 100,000 events one by one into an
//! empty ledger, once (it takes minutes on a disk where fsync costs milliseconds).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedpool_ledger::{Event, Store, verify_events};

const N_EVENTS: usize = 100_000;
/// Events beyond the first 100,000, for the `append` benchmark to add one at a time.
const N_EXTRA: usize = 20_000;

/// A ledger holding the first `N_EVENTS` events, in a temporary directory.
fn filled_store(events: &[Event]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("ledger.db"), &common::network()).unwrap();
    let report = store.import(events[..N_EVENTS].iter().cloned()).unwrap();
    assert_eq!(report.n_appended, N_EVENTS);
    (dir, store)
}

fn ledger_benches(c: &mut Criterion) {
    let events = common::large_ledger(N_EVENTS + N_EXTRA);
    let network = common::network();
    let n_bytes: usize = events[..N_EVENTS].iter().map(|e| e.encode().len()).sum();
    eprintln!(
        "{N_EVENTS} events, {:.0} bytes per event on average",
        n_bytes as f64 / N_EVENTS as f64
    );

    if std::env::var_os("FEDPOOL_BENCH_APPEND_ALL").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
        let start = Instant::now();
        for event in &events[..N_EVENTS] {
            store.append(event).unwrap();
        }
        let elapsed = start.elapsed();
        eprintln!(
            "append of {N_EVENTS} events one by one into an empty ledger: {:.1} s, {:.0} events/s",
            elapsed.as_secs_f64(),
            N_EVENTS as f64 / elapsed.as_secs_f64()
        );
    }

    let mut group = c.benchmark_group("ledger_100k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));

    group.throughput(Throughput::Elements(1));
    let (mut _dir, mut store) = filled_store(&events);
    let mut next_idx = N_EVENTS;
    group.bench_function("append", |b| {
        b.iter_custom(|n_iters| {
            let mut total = Duration::ZERO;
            for _ in 0..n_iters {
                if next_idx == events.len() {
                    (_dir, store) = filled_store(&events);
                    next_idx = N_EVENTS;
                }
                let start = Instant::now();
                store.append(&events[next_idx]).unwrap();
                total += start.elapsed();
                next_idx += 1;
            }
            total
        });
    });

    group.throughput(Throughput::Elements(N_EVENTS as u64));
    group.bench_function("import", |b| {
        b.iter_custom(|n_iters| {
            let mut total = Duration::ZERO;
            for _ in 0..n_iters {
                let dir = tempfile::tempdir().unwrap();
                let mut store = Store::open(&dir.path().join("ledger.db"), &network).unwrap();
                let batch: Vec<Event> = events[..N_EVENTS].to_vec();
                let start = Instant::now();
                let report = store.import(batch).unwrap();
                total += start.elapsed();
                assert_eq!(report.n_appended, N_EVENTS);
            }
            total
        });
    });

    group.bench_function("verify_events", |b| {
        b.iter(|| {
            let report = verify_events(&network, &events[..N_EVENTS], &common::TestRules);
            assert!(report.is_ok());
            report
        });
    });

    let (_verify_dir, verify_store) = filled_store(&events);
    group.bench_function("store_verify", |b| {
        b.iter(|| {
            let report = verify_store.verify(&common::TestRules).unwrap();
            assert!(report.is_ok());
            report
        });
    });
    group.finish();
}

criterion_group!(benches, ledger_benches);
criterion_main!(benches);
