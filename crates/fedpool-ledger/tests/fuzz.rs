//! Bounded fuzzing of every parser of untrusted input: arbitrary and mutated bytes must give
//! an error or a value, never a panic; whatever decodes re-encodes to the same bytes.
//! `regressions` replays inputs that once mattered (or are at a limit) on every run.

mod common;

use common::*;
use fedpool_ledger::*;
use proptest::prelude::*;
use proptest::sample::Index;

/// One valid event of every kind (and both `Option` states where there is one).
fn seed_events() -> Vec<Event> {
    let mut sim = Sim::new(2, 3);
    let actions = [
        Action::Publish {
            publisher: 0,
            epsilon_budget: Some(3.0),
            reward_pool: 10,
        },
        Action::Publish {
            publisher: 1,
            epsilon_budget: None,
            reward_pool: 0,
        },
        Action::Grant {
            owner: 0,
            model: 0,
            expires_in_ms: Some(100),
            epsilon_cap: Some(2.0),
        },
        Action::Grant {
            owner: 1,
            model: 0,
            expires_in_ms: None,
            epsilon_cap: None,
        },
        Action::Round {
            model: 0,
            participant_mask: 0b11,
            epsilon_round: 0.5,
        },
        Action::Pay {
            model: 0,
            fraction: 0.5,
        },
        Action::Spend {
            owner: 0,
            model: 0,
            rounds: 2,
            per_round: 0.25,
        },
        Action::Revoke { owner: 1, model: 0 },
        Action::Refuse {
            owner: 2,
            model: 1,
            by_policy: true,
        },
        Action::Refuse {
            owner: 2,
            model: 0,
            by_policy: false,
        },
        Action::Release { model: 0 },
    ];
    for action in &actions {
        sim.apply(action);
    }
    let mut events = sim.ledger.events;
    // The simulated contracts have no statistics phase; the decoders see one all the same.
    let statistician = Keypair::insecure_from_seed(77);
    events.push(
        Event::sign(
            &sim.ledger.network,
            &statistician,
            1,
            None,
            5_000,
            StatisticsCommitted {
                model_id: ModelId::from("m"),
                participants: vec![(statistician.did(), EventId::from_bytes([7; 32]))],
                scaling: r#"{"columns":[{"name":"age","mean":38.5,"std":13.2}]}"#.into(),
                scaling_hash: content_hash(b"scaling"),
                epsilon_round: 0.5,
                epsilon_total: 0.5,
                delta: 1e-5,
                plan: RoundPlan {
                    asked: 3,
                    eligible: 4,
                    clip_norm: 1.0,
                },
            },
        )
        .unwrap(),
    );
    // Wallets, anchors and settlements (their rules are tested in `web3`; here only the bytes).
    let bodies: Vec<Body> = vec![
        WalletLinked {
            chain_id: 31337,
            address: [0x11; 20],
            wallet_signature: [0x22; 65],
        }
        .into(),
        WalletUnlinked {
            chain_id: 31337,
            address: [0x11; 20],
            wallet_signature: [0x33; 65],
        }
        .into(),
        ChainAnchored {
            chain_id: 31337,
            contract: [0x44; 20],
            anchor_index: 3,
            block_number: 12,
            tx_hash: [0x55; 32],
            root: [0x66; 32],
            heads: vec![ChainHead {
                author: statistician.did(),
                seq: 1,
                id: events.last().unwrap().id(),
            }],
        }
        .into(),
        RewardsSettled {
            model_id: ModelId::from("m"),
            chain_id: 31337,
            payouts_contract: [0x77; 20],
            token: [0x88; 20],
            nonce: 1,
            block_number: 13,
            tx_hash: [0x99; 32],
            transfers: vec![Transfer {
                owner: statistician.did(),
                address: [0x11; 20],
                amount: 5,
            }],
            covers: vec![EventId::from_bytes([7; 32])],
        }
        .into(),
        SettlementResent {
            model_id: ModelId::from("m"),
            settlement: EventId::from_bytes([7; 32]),
            nonce: 1,
            block_number: 14,
            tx_hash: [0xaa; 32],
        }
        .into(),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let prev = events.last().unwrap().id();
        let seq = i as u64 + 2;
        events.push(
            Event::sign(
                &sim.ledger.network,
                &statistician,
                seq,
                Some(prev),
                5_000 + seq,
                body,
            )
            .unwrap(),
        );
    }
    let kinds: std::collections::BTreeSet<EventKind> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "seed covers every kind");
    events
}

/// Decodes `bytes`; if that succeeds, the encoding must be canonical.
fn check_decode(bytes: &[u8]) {
    if let Ok(event) = Event::decode(bytes) {
        assert_eq!(event.encode(), bytes, "non-canonical input accepted");
        let _ = event.verify_signature();
    }
}

/// `n_cases` cases; finds are saved next to this file and replayed on every run.
fn config(n_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n_cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Overwrite four bytes with a big-endian length, to attack length prefixes.
    Length(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (
            any::<Index>(),
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(u32::MAX),
                Just(1 << 24),
                0u32..300
            ]
        )
            .prop_map(|(i, n)| Mutation::Length(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip(i, mask) => {
            let i = i.index(bytes.len());
            bytes[i] ^= mask;
        }
        Mutation::Set(i, value) => {
            let i = i.index(bytes.len());
            bytes[i] = *value;
        }
        Mutation::Insert(i, value) => bytes.insert(i.index(bytes.len() + 1), *value),
        Mutation::Delete(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Length(i, n) => {
            if bytes.len() >= 4 {
                let i = i.index(bytes.len() - 3);
                bytes[i..i + 4].copy_from_slice(&n.to_be_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn decode_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_decode(&bytes);
        // Also behind a valid-looking header, so the fuzzer gets past the version byte.
        let mut with_header = vec![1u8];
        with_header.extend(&bytes);
        check_decode(&with_header);
    }

    #[test]
    fn decode_survives_mutated_encodings(
        event_idx in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let events = SEED.with(|seed| seed.clone());
        let mut bytes = events[event_idx.index(events.len())].encode();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        check_decode(&bytes);
    }

    #[test]
    fn did_parser_survives_arbitrary_text(
        text in any::<String>(),
        base58 in "[1-9A-HJ-NP-Za-km-z]{0,60}",
    ) {
        let _ = text.parse::<Did>();
        let _ = format!("did:key:z{text}").parse::<Did>();
        let _ = format!("did:key:z6Mk{base58}").parse::<Did>();
        if let Ok(did) = format!("did:key:z{base58}").parse::<Did>() {
            prop_assert_eq!(did.to_string(), format!("did:key:z{base58}"));
        }
    }

    #[test]
    fn event_id_parser_survives_arbitrary_text(
        text in any::<String>(),
        base32 in "[a-z2-7]{0,70}",
    ) {
        let _ = text.parse::<EventId>();
        if let Ok(id) = format!("b{base32}").parse::<EventId>() {
            prop_assert_eq!(id.to_string(), format!("b{base32}"));
        }
        let _ = NetworkId::new(&text);
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn bundle_decoder_survives_arbitrary_and_mutated_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        mutations in prop::collection::vec(mutation(), 1..3),
    ) {
        let _ = decode_bundle(&bytes);
        let events = SEED.with(|seed| seed.clone());
        let mut bundle = encode_bundle(&network(), &events);
        for mutation in &mutations {
            mutate(&mut bundle, mutation);
        }
        let _ = decode_bundle(&bundle);
    }
}

thread_local! {
    static SEED: Vec<Event> = seed_events();
}

/// Every truncation and every single-bit flip of every seed event, plus hand-made inputs at
/// the decoder's limits. Exhaustive where the proptests sample.
#[test]
fn regressions() {
    for event in seed_events() {
        let bytes = event.encode();
        for len in 0..bytes.len() {
            assert!(
                Event::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        for byte_idx in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[byte_idx] ^= 1 << bit;
                check_decode(&flipped);
            }
        }
    }
    let hand_made: [&[u8]; 8] = [
        &[],
        &[0],
        &[2, 0, 0, 0, 1, b'a'],
        // Version 1, network length u32::MAX.
        &[1, 0xff, 0xff, 0xff, 0xff],
        // Version 1, network "a", then a truncated author key.
        &[1, 0, 0, 0, 1, b'a', 0xed],
        // Network that is not UTF-8.
        &[1, 0, 0, 0, 2, 0xc3, 0x28],
        // Network with an upper-case letter.
        &[1, 0, 0, 0, 1, b'A'],
        // Huge input length claim for the network.
        &[1, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0],
    ];
    for bytes in hand_made {
        assert!(Event::decode(bytes).is_err(), "{bytes:?}");
    }
    let too_large = vec![1u8; MAX_EVENT_BYTES + 1];
    assert!(Event::decode(&too_large).is_err());
}

#[test]
fn decode_errors_name_the_field_and_offset() {
    let event = seed_events().remove(0);
    let bytes = event.encode();
    let err = Event::decode(&bytes[..3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode event: field `network` at byte 1: needs 4 bytes, only 2 remain (truncated input)"
    );
    let mut bad_version = bytes.clone();
    bad_version[0] = 9;
    let err = Event::decode(&bad_version).unwrap_err();
    assert!(
        err.to_string().contains("unsupported encoding version 9"),
        "{err}"
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    let err = Event::decode(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}
