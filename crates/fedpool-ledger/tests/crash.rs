//! Crash safety, sled style: this test binary relaunches itself as a child that appends events
//! in a loop, acknowledging each one on stdout, and the parent kills it with SIGKILL at random
//! moments. After every kill the ledger must open, verify cleanly, and hold exactly a prefix of
//! the scheduled events that includes every acknowledged one. The child resumes where the
//! previous one died, so later kills land in a recovered database.
//!
//! Set `FEDPOOL_CRASH_SEED` to replay a run; the seed is printed on failure.

#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fedpool_ledger::*;

const CHILD_DB_ENV: &str = "FEDPOOL_LEDGER_CRASH_CHILD_DB";
const N_KILLS: usize = 50;
/// A child never appends more than this many events, even if the parent fails to kill it.
const MAX_STEPS: u64 = 20_000;

fn keys() -> [Keypair; 3] {
    [1, 2, 3].map(Keypair::insecure_from_seed) // publisher, alice, bob
}

/// The event body of global step `step` and its author's index in [`keys`]. Every prefix of
/// the schedule is a valid ledger: a model, two consents, then rounds, payouts and further
/// consents in turn. `consents` are the ids of steps 1 and 2.
fn scheduled(step: u64, consents: Option<[EventId; 2]>, keys: &[Keypair; 3]) -> (usize, Body) {
    let m = model(&keys[0], "crash", Some(1e9), 1_000_000_000_000);
    match step {
        0 => (0, m.into()),
        1 | 2 => (step as usize, consent(&m, None, None).into()),
        _ => {
            let [alice_consent, bob_consent] = consents.expect("steps 1 and 2 came first");
            let round_number = (step / 3) as u32;
            let (alice, bob) = (keys[1].did(), keys[2].did());
            match step % 3 {
                0 => {
                    let participants = vec![(alice, alice_consent), (bob, bob_consent)];
                    let total = f64::from(round_number) * 0.001;
                    (
                        0,
                        round(&m, round_number, participants, 0.001, total).into(),
                    )
                }
                1 => {
                    let payouts = vec![(alice, 1), (bob, 1)];
                    (0, payout(&m, Some(round_number), payouts).into())
                }
                _ => (1 + (step / 3 % 2) as usize, consent(&m, None, None).into()),
            }
        }
    }
}

/// The child: appends scheduled events to the ledger at `path` until killed.
fn run_child(path: &Path) {
    let keys = keys();
    let mut store = Store::open(path, &network()).unwrap();
    let mut consents = None;
    let mut stdout = std::io::stdout().lock();
    loop {
        let step = store.n_events().unwrap();
        if step >= MAX_STEPS {
            return;
        }
        if step >= 3 && consents.is_none() {
            let first_consent = |key: &Keypair| store.events_by_author(&key.did()).unwrap()[0].id();
            consents = Some([first_consent(&keys[1]), first_consent(&keys[2])]);
        }
        let (author_idx, body) = scheduled(step, consents, &keys);
        let author = &keys[author_idx];
        let (seq, prev) = store.next_seq_and_prev(&author.did()).unwrap();
        let event = Event::sign(&network(), author, seq, prev, step, body).unwrap();
        assert_eq!(store.append(&event).unwrap(), AppendOutcome::Appended);
        writeln!(stdout, "ack {step} {}", event.id()).unwrap();
        stdout.flush().unwrap();
    }
}

/// Entry point of the child process; does nothing in a normal test run.
#[test]
fn crash_child() {
    if let Some(path) = std::env::var_os(CHILD_DB_ENV) {
        run_child(Path::new(&path));
    }
}

/// The schedule, signed in memory, extended on demand.
struct Expected {
    keys: [Keypair; 3],
    ledger: Ledger,
}

impl Expected {
    fn up_to(&mut self, n_events: usize) -> &[Event] {
        while self.ledger.events.len() < n_events {
            let step = self.ledger.events.len() as u64;
            let consents =
                (step >= 3).then(|| [self.ledger.events[1].id(), self.ledger.events[2].id()]);
            let (author_idx, body) = scheduled(step, consents, &self.keys);
            let author = self.keys[author_idx].clone();
            self.ledger.push(&author, step, body);
        }
        &self.ledger.events[..n_events]
    }
}

/// A small xorshift generator for kill delays: the schedule of kills is test input, not key
/// material.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn killed_appender_loses_no_acknowledged_event() {
    if std::env::var_os(CHILD_DB_ENV).is_some() {
        return;
    }
    let seed: u64 = match std::env::var("FEDPOOL_CRASH_SEED") {
        Ok(text) => text.parse().expect("FEDPOOL_CRASH_SEED is a u64"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    };
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let exe = std::env::current_exe().unwrap();
    let mut expected = Expected {
        keys: keys(),
        ledger: Ledger::new(),
    };
    let mut n_acked_total = 0;

    for kill_idx in 0..N_KILLS {
        let context = format!("seed {seed} (FEDPOOL_CRASH_SEED), kill {kill_idx}");
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    // The test harness may have written "test crash_child ... " on the same line.
                    let ack = &line[line.find("ack ")? + "ack ".len()..];
                    let mut parts = ack.split(' ');
                    let step: usize = parts.next()?.parse().ok()?;
                    let id: EventId = parts.next()?.parse().ok()?;
                    Some((step, id))
                })
                .collect::<Vec<_>>()
        });
        // Anywhere from before the child opens the store to well into its append loop.
        let delay_us = 2_000 + next_random(&mut rng) % 40_000;
        std::thread::sleep(Duration::from_micros(delay_us));
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        n_acked_total += acked.len();

        let store = Store::open(&path, &network())
            .unwrap_or_else(|err| panic!("{context}: ledger does not open after kill: {err}"));
        let report = store.verify(&TestRules).unwrap();
        assert!(report.is_ok(), "{context}: {report}");
        assert!(
            store.forks().unwrap().is_empty(),
            "{context}: forks after kill"
        );

        let n_stored = store.n_events().unwrap() as usize;
        let expected_prefix = expected.up_to(n_stored);
        let stored: HashMap<EventId, Event> = store
            .events()
            .unwrap()
            .into_iter()
            .map(|e| (e.id(), e))
            .collect();
        assert_eq!(stored.len(), n_stored, "{context}");
        for event in expected_prefix {
            assert_eq!(
                stored.get(&event.id()),
                Some(event),
                "{context}: stored events are not the scheduled prefix"
            );
        }
        for (step, id) in &acked {
            assert!(
                *step < n_stored,
                "{context}: acknowledged step {step} lost ({n_stored} stored)"
            );
            assert_eq!(expected_prefix[*step].id(), *id, "{context}: step {step}");
        }
    }
    let n_stored = Store::open(&path, &network()).unwrap().n_events().unwrap();
    eprintln!(
        "seed {seed}: {N_KILLS} kills, {n_acked_total} events acknowledged, {n_stored} stored"
    );
    assert!(
        n_acked_total > N_KILLS,
        "seed {seed}: children acknowledged only {n_acked_total} events; kills came too early"
    );
}
