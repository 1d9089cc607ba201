//! The SQLite store: append outcomes, chain errors, queries, import/export, and opening files
//! that are not (good) ledgers.

mod common;

use std::path::Path;

use common::*;
use fedpool_ledger::*;
use rusqlite::Connection;

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("ledger.db"), &network()).unwrap()
}

/// A small valid history: a model, two consents, a round, a payout.
fn history() -> (Ledger, Keypair, Keypair, Keypair) {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let alice = Keypair::insecure_from_seed(2);
    let bob = Keypair::insecure_from_seed(3);
    let m = model(&publisher, "m", Some(3.0), 10);
    ledger.push(&publisher, 1_000, m.clone());
    let a = ledger.push(&alice, 2_000, consent(&m, None, None));
    let b = ledger.push(&bob, 2_000, consent(&m, None, None));
    let participants = vec![(alice.did(), a.id()), (bob.did(), b.id())];
    ledger.push(&publisher, 3_000, round(&m, 1, participants, 1.0, 1.0));
    let pay = payout(&m, Some(1), vec![(alice.did(), 5), (bob.did(), 5)]);
    ledger.push(&publisher, 3_100, pay);
    (ledger, publisher, alice, bob)
}

#[test]
fn append_then_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let (ledger, publisher, alice, _) = history();
    for event in &ledger.events {
        assert_eq!(store.append(event).unwrap(), AppendOutcome::Appended);
    }
    assert_eq!(store.n_events().unwrap(), 5);
    assert_eq!(
        store.get(&ledger.events[1].id()).unwrap().as_ref(),
        Some(&ledger.events[1])
    );
    assert_eq!(store.get(&EventId::from_bytes([0; 32])).unwrap(), None);

    let by_publisher = store.events_by_author(&publisher.did()).unwrap();
    assert_eq!(
        by_publisher.iter().map(Event::seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let consents = store.events_by_kind(EventKind::ConsentGranted).unwrap();
    assert_eq!(consents.len(), 2);
    let model_id = ledger.events[0]
        .model_id()
        .expect("a publication names its model")
        .clone();
    assert_eq!(store.events_by_model(&model_id).unwrap().len(), 5);
    let all = store.events().unwrap();
    let keys: Vec<(String, u64)> = all
        .iter()
        .map(|e| (e.author().to_string(), e.seq()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "events come in (author, seq) order");

    assert_eq!(
        store.next_seq_and_prev(&publisher.did()).unwrap(),
        (4, Some(ledger.events[4].id()))
    );
    assert_eq!(
        store.next_seq_and_prev(&alice.did()).unwrap(),
        (2, Some(ledger.events[1].id()))
    );
    let stranger = Keypair::insecure_from_seed(99).did();
    assert_eq!(store.next_seq_and_prev(&stranger).unwrap(), (1, None));
    assert!(store.verify(&TestRules).unwrap().is_ok());
}

#[test]
fn appending_a_present_event_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let (ledger, ..) = history();
    store.append(&ledger.events[0]).unwrap();
    assert_eq!(
        store.append(&ledger.events[0]).unwrap(),
        AppendOutcome::AlreadyPresent
    );
    assert_eq!(store.n_events().unwrap(), 1);
}

#[test]
fn gap_is_rejected_with_a_chain_gap_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let (ledger, publisher, ..) = history();
    store.append(&ledger.events[0]).unwrap();
    let err = store.append(&ledger.events[4]).unwrap_err(); // publisher seq 3
    match &err {
        Error::ChainGap {
            author,
            seq,
            expected_seq,
            ..
        } => assert_eq!((*author, *seq, *expected_seq), (publisher.did(), 3, 2)),
        other => panic!("expected ChainGap, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("chain {} breaks at seq 3", publisher.did())),
        "{message}"
    );
}

#[test]
fn wrong_prev_hash_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let first = Event::sign(&network(), &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    let bogus = EventId::from_bytes([3; 32]);
    let second = Event::sign(
        &network(),
        &alice,
        2,
        Some(bogus),
        2,
        consent(&m, None, None),
    )
    .unwrap();
    store.append(&first).unwrap();
    let err = store.append(&second).unwrap_err();
    assert!(
        matches!(err, Error::ChainPrevHash { expected, found, .. } if expected == first.id() && found == bogus),
        "{err:?}"
    );
    assert!(err.to_string().contains("previous hash mismatch"));
}

#[test]
fn foreign_network_and_bad_signature_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let other = NetworkId::new("fedpool-other").unwrap();
    let foreign = Event::sign(&other, &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    assert!(matches!(
        store.append(&foreign),
        Err(Error::ForeignNetwork { .. })
    ));

    let genuine = Event::sign(&network(), &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    let mut bytes = genuine.encode();
    *bytes.last_mut().unwrap() ^= 1;
    let forged = Event::decode(&bytes).unwrap();
    assert!(matches!(
        store.append(&forged),
        Err(Error::Signature { .. })
    ));
    assert_eq!(store.n_events().unwrap(), 0);
}

#[test]
fn fork_is_recorded_as_evidence_without_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let original = Event::sign(&network(), &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    let conflicting =
        Event::sign(&network(), &alice, 1, None, 1, consent(&m, Some(5), None)).unwrap();
    store.append(&original).unwrap();
    assert_eq!(
        store.append(&conflicting).unwrap(),
        AppendOutcome::ForkRecorded {
            conflicts_with: original.id()
        }
    );
    assert_eq!(
        store.append(&conflicting).unwrap(),
        AppendOutcome::AlreadyPresent
    );
    assert_eq!(store.events().unwrap(), vec![original.clone()]);
    assert_eq!(
        store.forks().unwrap(),
        vec![ForkEvidence {
            event: conflicting.clone(),
            conflicts_with: original.id()
        }]
    );
    assert_eq!(
        store.get(&conflicting.id()).unwrap(),
        Some(conflicting.clone())
    );
    let report = store.verify(&TestRules).unwrap();
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        vec![Rule::Fork, Rule::UnknownModel, Rule::UnknownModel]
    );
}

#[test]
fn import_sorts_out_of_order_arrivals_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let (ledger, ..) = history();
    let mut shuffled = ledger.events.clone();
    shuffled.reverse();
    let report = store.import(shuffled.clone()).unwrap();
    assert_eq!((report.n_appended, report.rejected.len()), (5, 0));
    let report = store.import(shuffled).unwrap();
    assert_eq!((report.n_appended, report.n_already_present), (0, 5));
    assert!(store.verify(&TestRules).unwrap().is_ok());
}

#[test]
fn import_reports_events_that_do_not_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let (ledger, ..) = history();
    let mut events = ledger.events.clone();
    events.remove(3); // publisher seq 2: seq 3 can no longer chain
    let report = store.import(events).unwrap();
    assert_eq!(report.n_appended, 3);
    assert_eq!(report.rejected.len(), 1);
    assert!(matches!(report.rejected[0], Error::ChainGap { seq: 3, .. }));
}

#[test]
fn export_import_merges_ledgers_between_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, ..) = history();
    let mut node_a = Store::open(&dir.path().join("a.db"), &network()).unwrap();
    let mut node_b = Store::open(&dir.path().join("b.db"), &network()).unwrap();
    node_a.import(ledger.events[..3].to_vec()).unwrap();
    node_b.import(ledger.events[..1].to_vec()).unwrap();
    node_b.import(ledger.events[3..].to_vec()).unwrap(); // rejected: publisher seq 2 chains
    assert_eq!(node_b.n_events().unwrap(), 3);

    let export = dir.path().join("a.fpledger");
    assert_eq!(node_a.export_file(&export).unwrap(), 3);
    let report = node_b.import_file(&export).unwrap();
    assert_eq!((report.n_appended, report.n_already_present), (2, 1));
    let again = node_b.import_file(&export).unwrap();
    assert_eq!((again.n_appended, again.n_already_present), (0, 3));

    let export_b = dir.path().join("b.fpledger");
    node_b.export_file(&export_b).unwrap();
    node_a.import_file(&export_b).unwrap();
    assert_eq!(node_a.events().unwrap(), node_b.events().unwrap());
    assert!(node_a.verify(&TestRules).unwrap().is_ok());
}

#[test]
fn forks_travel_with_exports() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let original = Event::sign(&network(), &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    let conflicting =
        Event::sign(&network(), &alice, 1, None, 1, consent(&m, Some(5), None)).unwrap();
    let mut node_a = Store::open(&dir.path().join("a.db"), &network()).unwrap();
    node_a.append(&original).unwrap();
    node_a.append(&conflicting).unwrap();
    let export = dir.path().join("a.fpledger");
    node_a.export_file(&export).unwrap();
    let mut node_b = Store::open(&dir.path().join("b.db"), &network()).unwrap();
    let report = node_b.import_file(&export).unwrap();
    assert_eq!((report.n_appended, report.n_forks), (1, 1));
    assert_eq!(node_b.forks().unwrap().len(), 1);
}

#[test]
fn export_of_another_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = NetworkId::new("fedpool-other").unwrap();
    let foreign = Store::open(&dir.path().join("other.db"), &other).unwrap();
    let export = dir.path().join("other.fpledger");
    foreign.export_file(&export).unwrap();
    let mut store = open(dir.path());
    let err = store.import_file(&export).unwrap_err();
    assert!(err.to_string().contains("fedpool-other"), "{err}");
}

#[test]
fn damaged_export_files_are_refused() {
    let (ledger, ..) = history();
    let bytes = encode_bundle(&network(), &ledger.events);
    let (net, events) = decode_bundle(&bytes).unwrap();
    assert_eq!((net, events), (network(), ledger.events.clone()));
    assert!(decode_bundle(&bytes[..bytes.len() - 1]).is_err());
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    let err = decode_bundle(&flipped).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    let err =
        decode_bundle(b"not an export at all, but long enough to be checked fully").unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn reopening_keeps_events_and_network() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, ..) = history();
    {
        let mut store = open(dir.path());
        store.import(ledger.events.clone()).unwrap();
    }
    let store = Store::open_existing(&dir.path().join("ledger.db")).unwrap();
    assert_eq!(store.network(), &network());
    assert_eq!(store.n_events().unwrap(), 5);
    let other = NetworkId::new("fedpool-other").unwrap();
    let err = Store::open(&dir.path().join("ledger.db"), &other).unwrap_err();
    assert!(matches!(err, Error::NetworkMismatch { .. }), "{err:?}");
}

#[test]
fn open_existing_does_not_create_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let err = Store::open_existing(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn a_file_that_is_not_sqlite_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the bytes you are looking for ".repeat(100),
    )
    .unwrap();
    let err = Store::open(&path, &network()).unwrap_err();
    assert!(matches!(err, Error::NotALedger { .. }), "{err:?}");
    assert!(err.to_string().contains("not a fedpool ledger"), "{err}");
}

#[test]
fn another_applications_database_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let err = Store::open(&path, &network()).unwrap_err();
    assert!(matches!(err, Error::NotALedger { .. }), "{err:?}");
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(open(dir.path()));
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 7).unwrap();
    drop(conn);
    let err = Store::open(&path, &network()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaVersion {
                found: 7,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_damaged_database_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let mut store = open(dir.path());
        store.import(common::large_ledger(300)).unwrap();
    }
    // Overwrite a page in the middle of the file (the WAL was checkpointed on close).
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    let page = 4096 * 8;
    for byte in &mut bytes[page..page + 4096] {
        *byte = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path, &network()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { .. } | Error::NotALedger { .. }),
        "{err:?}"
    );
}

#[test]
fn swapped_rows_in_the_database_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (ledger, publisher, ..) = history();
    {
        let mut store = open(dir.path());
        store.import(ledger.events.clone()).unwrap();
    }
    // Re-order the publisher's chain inside the database: swap the bytes of seq 2 and 3.
    let conn = Connection::open(&path).unwrap();
    let author = publisher.did().to_string();
    let bytes_at = |seq: i64| -> Vec<u8> {
        conn.query_row(
            "SELECT bytes FROM events WHERE author = ?1 AND seq = ?2",
            rusqlite::params![author, seq],
            |row| row.get(0),
        )
        .unwrap()
    };
    let (second, third) = (bytes_at(2), bytes_at(3));
    let update = "UPDATE events SET bytes = ?1 WHERE author = ?2 AND seq = ?3";
    conn.execute(update, rusqlite::params![third, author, 2])
        .unwrap();
    conn.execute(update, rusqlite::params![second, author, 3])
        .unwrap();
    drop(conn);
    let store = Store::open(&path, &network()).unwrap();
    let report = store.verify(&TestRules).unwrap();
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        vec![Rule::RecordMismatch, Rule::RecordMismatch],
        "{report}"
    );
    // Queries refuse the mismatched rows instead of returning the wrong event.
    assert!(matches!(
        store.events_by_author(&publisher.did()),
        Err(Error::StoredEvent { .. })
    ));
}

#[test]
fn largest_event_round_trips_and_one_byte_more_is_refused() {
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let mut body = consent(&m, None, None);
    let base = Event::sign(&network(), &alice, 1, None, 1, body.clone()).unwrap();
    let room = MAX_EVENT_BYTES - base.encode().len();
    body.dataset_fingerprint.push_str(&"x".repeat(room));
    let largest = Event::sign(&network(), &alice, 1, None, 1, body.clone()).unwrap();
    let bytes = largest.encode();
    assert_eq!(bytes.len(), MAX_EVENT_BYTES);
    assert_eq!(Event::decode(&bytes).unwrap(), largest);
    largest.verify_signature().unwrap();

    body.dataset_fingerprint.push('x');
    let err = Event::sign(&network(), &alice, 1, None, 1, body).unwrap_err();
    assert!(matches!(err, Error::InvalidEvent { .. }), "{err:?}");
    let mut too_long = bytes.clone();
    too_long.push(0);
    assert!(Event::decode(&too_long).is_err());

    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.append(&largest).unwrap();
    assert_eq!(store.get(&largest.id()).unwrap(), Some(largest));
}

#[test]
fn undecodable_rows_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (ledger, ..) = history();
    {
        let mut store = open(dir.path());
        store.import(ledger.events.clone()).unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    let damaged = ledger.events[1].id().to_string();
    conn.execute(
        "UPDATE events SET bytes = x'0502' WHERE id = ?1",
        [&damaged],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path, &network()).unwrap();
    let report = store.verify(&TestRules).unwrap();
    assert_eq!(report.violations[0].rule, Rule::Undecodable, "{report}");
    assert_eq!(report.violations[0].event_id, Some(ledger.events[1].id()));
    assert!(
        report.violations[0].detail.contains("truncated"),
        "{report}"
    );
    // Without alice's consent the round relies on a consent that is not there, and its
    // payout goes to someone with no consent on record.
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        vec![
            Rule::Undecodable,
            Rule::ConsentMissing,
            Rule::PayoutWithoutConsent
        ]
    );
    assert!(matches!(
        store.get(&ledger.events[1].id()),
        Err(Error::StoredEvent { .. })
    ));
}

/// A write that fails inside its transaction (here a trigger that rejects the n-th row, as a
/// full disk or an I/O error would) returns an error and leaves the ledger as it was: every
/// earlier event intact, nothing half-written, and the next append works once the fault is
/// gone.
#[test]
fn a_failing_write_loses_nothing_and_corrupts_nothing() {
    let (ledger, _, _, _) = history();
    for fail_at in 0..ledger.events.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut store = Store::open(&path, &network()).unwrap();
        let saboteur = Connection::open(&path).unwrap();
        saboteur
            .execute_batch(&format!(
                "CREATE TRIGGER fault BEFORE INSERT ON events
                 WHEN (SELECT count(*) FROM events) >= {fail_at}
                 BEGIN SELECT RAISE(FAIL, 'injected write fault'); END;"
            ))
            .unwrap();
        for event in &ledger.events[..fail_at] {
            assert_eq!(store.append(event).unwrap(), AppendOutcome::Appended);
        }
        let error = store.append(&ledger.events[fail_at]).unwrap_err();
        assert!(
            error.to_string().contains("injected write fault"),
            "write {fail_at}: {error}"
        );
        assert_eq!(store.n_events().unwrap(), fail_at as u64);
        assert_eq!(store.events().unwrap().len(), fail_at);
        assert!(store.verify(&TestRules).unwrap().is_ok(), "write {fail_at}");

        saboteur.execute_batch("DROP TRIGGER fault;").unwrap();
        for event in &ledger.events[fail_at..] {
            assert_eq!(store.append(event).unwrap(), AppendOutcome::Appended);
        }
        assert_eq!(store.n_events().unwrap(), ledger.events.len() as u64);
        drop(store);
        let reopened = Store::open_existing(&path).unwrap();
        assert!(reopened.verify(&TestRules).unwrap().is_ok());
    }
}

/// An import is one transaction: a fault on its third row leaves none of it behind.
#[test]
fn a_failing_import_is_all_or_nothing() {
    let (ledger, _, _, _) = history();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = Store::open(&path, &network()).unwrap();
    let saboteur = Connection::open(&path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER fault BEFORE INSERT ON events
             WHEN (SELECT count(*) FROM events) >= 2
             BEGIN SELECT RAISE(FAIL, 'injected write fault'); END;",
        )
        .unwrap();
    assert!(store.import(ledger.events.clone()).is_err());
    assert_eq!(store.n_events().unwrap(), 0);
    saboteur.execute_batch("DROP TRIGGER fault;").unwrap();
    let report = store.import(ledger.events.clone()).unwrap();
    assert!(report.rejected.is_empty());
    assert_eq!(store.n_events().unwrap(), ledger.events.len() as u64);
    assert!(store.verify(&TestRules).unwrap().is_ok());
}

#[cfg(unix)]
#[test]
fn an_export_never_writes_through_a_planted_symlink() {
    // The attack: a symlink at the export's old temporary path (`<path>.tmp`) pointing at a
    // file of the victim's. The export must not follow it, whatever it names.
    let dir = tempfile::tempdir().unwrap();
    let (ledger, ..) = history();
    let mut store = open(dir.path());
    store.import(ledger.events.clone()).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let export = dir.path().join("out.fpledger");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.fpledger.tmp")).unwrap();
    store.export_file(&export).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(decode_bundle(&std::fs::read(&export).unwrap()).is_ok());
    // No temporary file is left behind: only the export, the victim, the planted link and
    // the store's own files.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp") && name != "out.fpledger.tmp")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_chain_writer_extends_the_stored_chain_and_never_signs_an_earlier_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let publisher = Keypair::insecure_from_seed(1);
    let m = model(&publisher, "written", None, 1);
    let mut writer = ChainWriter::new(network(), publisher.clone());
    let first = writer.append(&mut store, 5_000, m.clone()).unwrap();
    // The clock stepped back: the next event keeps the previous timestamp.
    let release = ModelReleased {
        model_id: m.model_id.clone(),
        final_model_hash: content_hash(b"final"),
        rounds: 0,
        metrics: vec![],
    };
    let second = writer.append(&mut store, 4_000, release.clone()).unwrap();
    assert_eq!((second.seq(), second.prev()), (2, Some(first.id())));
    assert_eq!(second.timestamp_ms(), 5_000);

    // A writer resumed from the store (a restarted node) continues the same chain, with the
    // same rule, and events signed in a batch import in one transaction.
    let mut resumed = ChainWriter::resume(&store, publisher).unwrap();
    let batch: Vec<Event> = (0..3)
        .map(|i| resumed.sign(4_500 + i, release.clone()).unwrap())
        .collect();
    assert_eq!(batch[0].seq(), 3);
    assert_eq!(batch[0].prev(), Some(second.id()));
    assert!(batch.iter().all(|e| e.timestamp_ms() == 5_000));
    let report = store.import(batch).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(store.n_events().unwrap(), 5);
    assert!(store.verify(&TestRules).unwrap().is_ok());
}

#[test]
fn an_author_that_is_not_a_curve_point_is_refused_as_a_bad_signature() {
    // Decoding no longer decompresses the author's key (reads of stored events never need it);
    // the signature check does, so such an event can still never be stored.
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let alice = Keypair::insecure_from_seed(2);
    let m = model(&Keypair::insecure_from_seed(1), "m", None, 1);
    let genuine = Event::sign(&network(), &alice, 1, None, 1, consent(&m, None, None)).unwrap();
    let mut bytes = genuine.encode();
    let at = bytes
        .windows(32)
        .position(|w| w == alice.did().public_key())
        .unwrap();
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    bytes[at..at + 32].copy_from_slice(&not_a_point);
    let event = Event::decode(&bytes).unwrap();
    assert!(event.author().verifying_key().is_err());
    assert!(matches!(
        event.verify_signature(),
        Err(Error::Signature { .. })
    ));
    assert!(matches!(store.append(&event), Err(Error::Signature { .. })));
    assert!(store.import([event]).unwrap().rejected.len() == 1);
    assert_eq!(store.n_events().unwrap(), 0);
}

#[test]
fn the_change_stamp_moves_with_every_commit_of_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(dir.path());
    let mut cli = open(dir.path());
    let (ledger, ..) = history();
    let start = node.change_stamp().unwrap();
    assert_eq!(node.change_stamp().unwrap(), start, "nothing committed");
    node.append(&ledger.events[0]).unwrap();
    let after_own = node.change_stamp().unwrap();
    assert_ne!(after_own, start);
    cli.append(&ledger.events[1]).unwrap();
    let after_other = node.change_stamp().unwrap();
    assert_ne!(after_other, after_own, "another connection's commit");
    assert_eq!(node.change_stamp().unwrap(), after_other);
}

#[test]
fn append_at_seq_writes_nothing_when_the_chain_moved_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let owner = Keypair::insecure_from_seed(40);
    let link = |seed: u8| WalletLinked {
        chain_id: 1,
        address: [seed; 20],
        wallet_signature: [seed; 65],
    };
    let first = store.append_at_seq(&owner, 10, 1, link(1)).unwrap();
    assert_eq!(first.seq(), 1);
    // Signed for seq 2, but another writer took it first.
    store.append_next(&owner, 11, link(2)).unwrap();
    let refused = store.append_at_seq(&owner, 12, 2, link(3)).unwrap_err();
    assert!(
        matches!(
            refused,
            Error::ChainGap {
                seq: 2,
                expected_seq: 3,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(store.events_by_author(&owner.did()).unwrap().len(), 2);
    assert!(store.forks().unwrap().is_empty());
    assert_eq!(
        store.append_at_seq(&owner, 13, 3, link(4)).unwrap().seq(),
        3
    );
}
