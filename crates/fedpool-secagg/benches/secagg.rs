//! Whole rounds in process, against Flower's SecAgg+ on this machine (100 clients, 100,000
//! parameters, 14 neighbours, 5% dropped after key sharing: 10.5 s per round, 65 ms per client,
//! 3.9 s server, 811 KB uploaded per client).
//!
//! `cargo bench -p fedpool-secagg` prints, before criterion's timings, one instrumented round
//! per configuration: per-client time (mean and max over clients, all stages), server time,
//! and bytes uploaded per client. Clients' work of each stage runs in parallel with rayon, as
//! the real driver will; the server is single-threaded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use fedpool_secagg::sim::{
    ClientSlot, DropoutPlan, Executor, Hooks, SimOptions, SimRound, run_round_with,
};
use fedpool_secagg::{ParticipantIdx, RoundConfig, RoundSettings, SessionId, Stage, Topology};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

const N_CLIENTS: usize = 100;
const VECTOR_LEN: usize = 100_000;
const DEGREE: usize = 14;
const THRESHOLD: usize = 8;
const N_DROPPED: usize = 5;

/// On-CPU time of the calling thread (Linux `schedstat`, nanoseconds). Timing with it rather
/// than the wall clock keeps other processes on this shared machine out of the per-client and
/// server figures.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// On-CPU time of the whole process, all threads (clock ticks of `/proc/self/stat`).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `after` starts at field 3 (state), so fields 14 and 15 are at 11 and 12.
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// Clients in parallel on the rayon pool; optionally records per-client and server CPU time.
struct Rayon {
    timings: Option<Mutex<Timings>>,
}

#[derive(Default)]
struct Timings {
    per_client: Vec<Duration>,
    server: Duration,
}

impl Executor for Rayon {
    fn for_each_client(&self, slots: &mut [ClientSlot], work: &(dyn Fn(&mut ClientSlot) + Sync)) {
        match &self.timings {
            None => slots.par_iter_mut().for_each(work),
            Some(timings) => {
                let spent: Vec<(usize, Duration)> = slots
                    .par_iter_mut()
                    .map(|slot| {
                        let start = thread_cpu();
                        work(slot);
                        (slot.participant().as_usize(), thread_cpu() - start)
                    })
                    .collect();
                let mut timings = timings.lock().unwrap();
                for (idx, duration) in spent {
                    timings.per_client[idx] += duration;
                }
            }
        }
    }

    fn run_server(&self, work: &mut dyn FnMut()) {
        let start = thread_cpu();
        work();
        if let Some(timings) = &self.timings {
            timings.lock().unwrap().server += thread_cpu() - start;
        }
    }
}

#[derive(Clone)]
struct Workload {
    name: &'static str,
    topology: Topology,
    threshold: usize,
    identities: Vec<SigningKey>,
    inputs: Vec<Vec<u32>>,
    plan: DropoutPlan,
}

impl Workload {
    fn new(name: &'static str, topology: Topology, threshold: usize) -> Workload {
        let mut rng = ChaCha20Rng::seed_from_u64(2020);
        let identities = (0..N_CLIENTS)
            .map(|_| SigningKey::from_bytes(&rng.random()))
            .collect();
        let inputs = (0..N_CLIENTS)
            .map(|_| (0..VECTOR_LEN).map(|_| rng.random()).collect())
            .collect();
        // 5% drop after key sharing: they never send a masked input.
        let plan = (0..N_DROPPED as u32).fold(DropoutPlan::none(), |plan, i| {
            plan.drop_at(ParticipantIdx(i * 19 + 3), Stage::MaskedInput)
        });
        Workload {
            name,
            topology,
            threshold,
            identities,
            inputs,
            plan,
        }
    }

    fn round(&self) -> SimRound {
        let config = RoundConfig::new(RoundSettings {
            session_id: SessionId([1; 32]),
            identities: self.identities.iter().map(|k| k.verifying_key()).collect(),
            topology: self.topology.clone(),
            threshold: self.threshold,
            modulus_bits: 32,
            vector_len: VECTOR_LEN,
        })
        .unwrap();
        SimRound {
            config: config.into(),
            identities: self.identities.clone(),
            inputs: self.inputs.clone(),
        }
    }

    fn run(&self, round: SimRound, executor: &Rayon) -> fedpool_secagg::sim::RoundOutcome {
        let outcome = run_round_with(
            round,
            &self.plan,
            SimOptions::default(),
            executor,
            Hooks::default(),
        );
        assert!(outcome.aggregate.is_ok());
        outcome
    }

    fn report(&self) {
        let executor = Rayon {
            timings: Some(Mutex::new(Timings {
                per_client: vec![Duration::ZERO; N_CLIENTS],
                server: Duration::ZERO,
            })),
        };
        let round = self.round();
        let cpu_start = process_cpu();
        let start = Instant::now();
        let outcome = self.run(round, &executor);
        let wall = start.elapsed();
        let cpu = process_cpu() - cpu_start;
        let timings = executor.timings.unwrap().into_inner().unwrap();
        let active: Vec<Duration> = timings
            .per_client
            .iter()
            .enumerate()
            .filter(|(i, _)| self.plan.stage_of(ParticipantIdx(*i as u32)).is_none())
            .map(|(_, d)| *d)
            .collect();
        let mean_client = active.iter().sum::<Duration>() / active.len() as u32;
        let max_client = active.iter().max().unwrap();
        let uploads: Vec<u64> = outcome
            .upload_bytes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.plan.stage_of(ParticipantIdx(*i as u32)).is_none())
            .map(|(_, b)| *b)
            .collect();
        let mean_upload = uploads.iter().sum::<u64>() / uploads.len() as u64;
        let mean_download = outcome.download_bytes.iter().sum::<u64>() / N_CLIENTS as u64;
        eprintln!(
            "{}: round {:.3} s wall, {:.2} s CPU | per client {:.1} ms CPU mean, {:.1} ms max | server {:.1} ms CPU | upload {} B/client ({:.1} KB) | download {} B/client",
            self.name,
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            mean_client.as_secs_f64() * 1e3,
            max_client.as_secs_f64() * 1e3,
            timings.server.as_secs_f64() * 1e3,
            mean_upload,
            mean_upload as f64 / 1e3,
            mean_download,
        );
    }
}

fn rounds(c: &mut Criterion) {
    let workloads = [
        Workload::new(
            "secagg+ n=100 L=100k k=14 t=8, 5% dropped after key sharing",
            Topology::Harary {
                degree: DEGREE,
                graph_seed: [9; 32],
            },
            THRESHOLD,
        ),
        Workload::new(
            "all-pairs n=100 L=100k k=99 t=50, 5% dropped after key sharing",
            Topology::AllPairs,
            50,
        ),
    ];
    for workload in &workloads {
        workload.report();
    }
    let mut group = c.benchmark_group("round");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N_CLIENTS as u64));
    for workload in &workloads {
        let executor = Rayon { timings: None };
        group.bench_function(workload.name, |b| {
            b.iter_batched(
                || workload.round(),
                |round| workload.run(round, &executor),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The hot path alone: one mask (ChaCha20 keystream folded into 100,000 words).
fn mask_prg(c: &mut Criterion) {
    let mut group = c.benchmark_group("prg");
    group.throughput(Throughput::Bytes(4 * VECTOR_LEN as u64));
    let mut acc = vec![0u32; VECTOR_LEN];
    group.bench_function("fold 100k words", |b| {
        b.iter(|| fedpool_secagg::bench_support::fold_mask(&mut acc, &[7; 32]))
    });
    group.finish();
}

criterion_group!(benches, mask_prg, rounds);
criterion_main!(benches);
