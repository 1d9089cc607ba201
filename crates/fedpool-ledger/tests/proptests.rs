//! Property tests: any valid history verifies cleanly, in memory and through the store; any
//! single flipped byte, in an encoding or in the database, is caught.

mod common;

use common::*;
use fedpool_ledger::*;
use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::Connection;

/// `n_cases` cases; failures are saved next to this file and replayed on every run.
fn config(n_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n_cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        1 => (0..3usize, prop::option::of(0.5f64..5.0), 0u64..1000).prop_map(
            |(publisher, epsilon_budget, reward_pool)| Action::Publish {
                publisher,
                epsilon_budget,
                reward_pool,
            }
        ),
        4 => (
            0..8usize,
            0..4usize,
            prop::option::of(1u64..40),
            prop::option::of(0.1f64..5.0)
        )
            .prop_map(|(owner, model, expires_in_ms, epsilon_cap)| Action::Grant {
                owner,
                model,
                expires_in_ms,
                epsilon_cap,
            }),
        1 => (0..8usize, 0..4usize).prop_map(|(owner, model)| Action::Revoke { owner, model }),
        1 => (0..8usize, 0..4usize, any::<bool>()).prop_map(|(owner, model, by_policy)| {
            Action::Refuse {
                owner,
                model,
                by_policy,
            }
        }),
        3 => (0..4usize, any::<u32>(), 0.0f64..1.0).prop_map(
            |(model, participant_mask, epsilon_round)| Action::Round {
                model,
                participant_mask,
                epsilon_round,
            }
        ),
        2 => (0..4usize, 0.0f64..=1.0).prop_map(|(model, fraction)| Action::Pay { model, fraction }),
        1 => (0..4usize).prop_map(|model| Action::Release { model }),
        2 => (0..8usize, 0..4usize, 1u32..4, 0.0f64..1.0).prop_map(
            |(owner, model, rounds, per_round)| Action::Spend {
                owner,
                model,
                rounds,
                per_round,
            }
        ),
        2 => (0u64..10).prop_map(|ms| Action::Advance { ms }),
    ]
}

/// A simulated history from 1–3 publishers, 1–8 owners and up to 60 actions after a first
/// publication (so it is never empty).
fn history() -> impl Strategy<Value = Ledger> {
    (
        1..=3usize,
        1..=8usize,
        prop::collection::vec(action(), 1..60),
    )
        .prop_map(|(n_publishers, n_owners, actions)| {
            let mut sim = Sim::new(n_publishers, n_owners);
            sim.apply(&Action::Publish {
                publisher: 0,
                epsilon_budget: Some(2.0),
                reward_pool: 100,
            });
            for action in &actions {
                sim.apply(action);
            }
            sim.ledger
        })
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn valid_histories_verify_cleanly(ledger in history(), rotate_by in any::<Index>()) {
        let report = ledger.verify();
        prop_assert!(report.is_ok(), "{}", report);
        prop_assert_eq!(report.n_events, ledger.events.len());

        // Order of presentation and duplicates do not matter.
        let mut shuffled = ledger.events.clone();
        shuffled.reverse();
        if !shuffled.is_empty() {
            let k = rotate_by.index(shuffled.len());
            shuffled.rotate_left(k);
            shuffled.push(shuffled[k].clone());
        }
        prop_assert_eq!(verify_events(&ledger.network, &shuffled, &TestRules), report);
    }

    #[test]
    fn flipped_byte_in_an_encoding_is_detected(
        ledger in history(),
        event_idx in any::<Index>(),
        byte_idx in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let event_idx = event_idx.index(ledger.events.len());
        let mut bytes = ledger.events[event_idx].encode();
        let byte_idx = byte_idx.index(bytes.len());
        bytes[byte_idx] ^= mask;
        if let Ok(tampered) = Event::decode(&bytes) {
            prop_assert!(tampered.verify_signature().is_err());
            let mut events = ledger.events.clone();
            events[event_idx] = tampered;
            let report = verify_events(&ledger.network, &events, &TestRules);
            prop_assert!(!report.is_ok());
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn valid_histories_survive_the_store_and_export(ledger in history()) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("a.db"), &ledger.network).unwrap();
        let report = store.import(ledger.events.clone()).unwrap();
        prop_assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        prop_assert_eq!(report.n_appended, ledger.events.len());
        let verified = store.verify(&TestRules).unwrap();
        prop_assert!(verified.is_ok(), "{}", verified);
        prop_assert_eq!(verified, ledger.verify());

        let export = dir.path().join("a.fpledger");
        store.export_file(&export).unwrap();
        let mut copy = Store::open(&dir.path().join("b.db"), &ledger.network).unwrap();
        copy.import_file(&export).unwrap();
        prop_assert_eq!(copy.events().unwrap(), store.events().unwrap());
    }

    #[test]
    fn flipped_byte_in_the_database_is_detected(
        ledger in history(),
        row_idx in any::<Index>(),
        byte_idx in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut store = Store::open(&path, &ledger.network).unwrap();
        store.import(ledger.events.clone()).unwrap();
        drop(store);

        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(String, Vec<u8>)> = conn
            .prepare("SELECT id, bytes FROM events ORDER BY rowid")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let (id, mut bytes) = rows[row_idx.index(rows.len())].clone();
        let byte_idx = byte_idx.index(bytes.len());
        bytes[byte_idx] ^= mask;
        conn.execute("UPDATE events SET bytes = ?1 WHERE id = ?2", rusqlite::params![bytes, id])
            .unwrap();
        drop(conn);

        let store = Store::open(&path, &ledger.network).unwrap();
        let report = store.verify(&TestRules).unwrap();
        prop_assert!(!report.is_ok(), "flip of byte {} in {} went unnoticed", byte_idx, id);
        // Bytes that no longer decode, or hash to another id than the row's, or (a flip in the
        // signature, which the id does not cover) fail the signature check.
        prop_assert!(report.violations.iter().any(|v| matches!(
            v.rule,
            Rule::Undecodable | Rule::RecordMismatch | Rule::Signature
        )));
    }
}
