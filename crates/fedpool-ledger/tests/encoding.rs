//! The event encoding, byte for byte. If one of these tests fails, the format changed: that
//! needs a new `ENCODING_VERSION`, not a new expected value.

use fedpool_ledger::*;

fn sample() -> (Keypair, Event) {
    let keypair = Keypair::insecure_from_seed(42);
    let event = Event::sign(
        &NetworkId::new("fedpool-test").unwrap(),
        &keypair,
        2,
        Some(EventId::from_bytes([0x11; 32])),
        1_700_000_000_123,
        ConsentRevoked {
            model_id: ModelId::from("m1"),
            consent: EventId::from_bytes([0x22; 32]),
        },
    )
    .unwrap();
    (keypair, event)
}

#[test]
fn layout_is_as_documented() {
    let (keypair, event) = sample();
    let mut expected = vec![5u8]; // version
    expected.extend(12u32.to_be_bytes());
    expected.extend(b"fedpool-test");
    expected.extend(keypair.did().public_key());
    expected.extend(2u64.to_be_bytes()); // seq
    expected.push(1); // prev present
    expected.extend([0x11; 32]);
    expected.extend(1_700_000_000_123u64.to_be_bytes());
    expected.push(3); // consent-revoked
    expected.extend((4u32 + 2 + 32).to_be_bytes()); // body length
    expected.extend(2u32.to_be_bytes());
    expected.extend(b"m1");
    expected.extend([0x22; 32]);
    let n_signed = expected.len();
    expected.extend(event.signature().0);

    let bytes = event.encode();
    assert_eq!(bytes, expected);
    assert_eq!(
        event.id(),
        EventId::from_bytes(*blake3::hash(&bytes[..n_signed]).as_bytes()),
        "the id hashes the signed bytes, without the signature"
    );
    let mut message = b"fedpool-ledger/event/v1\0".to_vec();
    message.extend(event.id().as_bytes());
    assert!(
        keypair.did().verify(&message, event.signature()),
        "the signature covers the domain tag and the id"
    );
}

#[test]
fn ids_and_signatures_are_stable() {
    let (_, event) = sample();
    assert_eq!(
        event.id().to_string(),
        "bafkr4icdhmfvqppsslvkdqqfaedaorfnyw3wq6ejejnl2eruxyohgap5ta"
    );
}

#[test]
fn decode_inverts_encode_for_every_kind() {
    let keypair = Keypair::insecure_from_seed(1);
    let network = NetworkId::new("fedpool-test").unwrap();
    let did = keypair.did();
    let id = EventId::from_bytes([5; 32]);
    let terms = ModelTerms {
        required_fields: vec!["a".into(), "ü".into()],
        epsilon_budget: Some(1.5),
        delta: None,
        reward_pool: 0,
        currency: "€".into(),
    };
    let bodies: Vec<Body> = vec![
        ModelPublished {
            model_id: "m".into(),
            name: String::new(),
            version: "v".into(),
            contract_toml: "x = 1\n".into(),
            card_hash: "c".into(),
            terms,
        }
        .into(),
        ConsentGranted {
            model_id: "m".into(),
            publisher: did,
            card_hash: "c".into(),
            dataset_fingerprint: "d".into(),
            fields: vec![],
            expires_at_ms: Some(u64::MAX),
            epsilon_cap: Some(-0.0),
            decided_by: None,
        }
        .into(),
        ConsentGranted {
            model_id: "m".into(),
            publisher: did,
            card_hash: "c".into(),
            dataset_fingerprint: "d".into(),
            fields: vec!["x".into()],
            expires_at_ms: None,
            epsilon_cap: None,
            decided_by: Some(PolicyDecision {
                rule: "private-research".into(),
                policy_hash: "p".into(),
            }),
        }
        .into(),
        ConsentRefused {
            model_id: "m".into(),
            publisher: did,
            card_hash: "c".into(),
            decided_by: Some(PolicyDecision {
                rule: "never-income".into(),
                policy_hash: String::new(),
            }),
        }
        .into(),
        ConsentRefused {
            model_id: "m".into(),
            publisher: did,
            card_hash: "c".into(),
            decided_by: None,
        }
        .into(),
        ConsentRevoked {
            model_id: "m".into(),
            consent: id,
        }
        .into(),
        RoundCommitted {
            model_id: "m".into(),
            round: u32::MAX,
            participants: vec![(did, id), (did, id)],
            global_model_hash: "g".into(),
            epsilon_round: f64::MIN_POSITIVE,
            epsilon_total: f64::MAX,
            delta: 1e-300,
            plan: RoundPlan {
                asked: u32::MAX,
                eligible: 0,
                clip_norm: 0.5,
            },
            metrics: vec![("loss".into(), -1.0)],
            scaling_hash: Some("s".into()),
        }
        .into(),
        StatisticsCommitted {
            model_id: "m".into(),
            participants: vec![(did, id)],
            scaling: "{\"columns\":[]}".into(),
            scaling_hash: "h".into(),
            epsilon_round: 0.0,
            epsilon_total: 1.5,
            delta: 1e-5,
            plan: RoundPlan {
                asked: 3,
                eligible: 3,
                clip_norm: 0.0,
            },
        }
        .into(),
        RewardsPaid {
            model_id: "m".into(),
            round: None,
            allotment: 3,
            payouts: vec![Payout {
                owner: did,
                score: 0.5,
                amount: 1,
            }],
            carried: 2,
            method: "m".into(),
            details: "{}".into(),
        }
        .into(),
        ModelReleased {
            model_id: "m".into(),
            final_model_hash: "f".into(),
            rounds: 0,
            metrics: vec![],
        }
        .into(),
        PrivacySpent {
            model_id: "m".into(),
            consent: id,
            round: 7,
            rounds: u32::MAX,
            mechanism: "{\"q\": 0.1}".into(),
            epsilon_total: 2.5,
            delta: 1e-5,
        }
        .into(),
        WalletLinked {
            chain_id: 31337,
            address: [0xab; 20],
            wallet_signature: [7; 65],
        }
        .into(),
        WalletUnlinked {
            chain_id: u64::MAX,
            address: [0; 20],
            wallet_signature: [0xff; 65],
        }
        .into(),
        ChainAnchored {
            chain_id: 1,
            contract: [1; 20],
            anchor_index: 0,
            block_number: 9,
            tx_hash: [2; 32],
            root: [3; 32],
            heads: vec![ChainHead {
                author: did,
                seq: 4,
                id,
            }],
        }
        .into(),
        RewardsSettled {
            model_id: "m".into(),
            chain_id: 1,
            payouts_contract: [4; 20],
            token: [5; 20],
            nonce: 2,
            block_number: 10,
            tx_hash: [6; 32],
            transfers: vec![Transfer {
                owner: did,
                address: [8; 20],
                amount: u64::MAX,
            }],
            covers: vec![id],
        }
        .into(),
        SettlementResent {
            model_id: "m".into(),
            settlement: id,
            nonce: 2,
            block_number: u64::MAX,
            tx_hash: [9; 32],
        }
        .into(),
    ];
    let kinds: std::collections::BTreeSet<EventKind> = bodies.iter().map(Body::kind).collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "every kind is covered");
    for (idx, body) in bodies.into_iter().enumerate() {
        let prev = (idx > 0).then_some(id);
        let event =
            Event::sign(&network, &keypair, idx as u64 + 1, prev, idx as u64, body).unwrap();
        let decoded = Event::decode(&event.encode()).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(decoded.encode(), event.encode());
        decoded.verify_signature().unwrap();
        // Bodies also serialize to JSON for display, tagged by kind name.
        let json = serde_json::to_value(event.body()).unwrap();
        assert_eq!(json["kind"], event.kind().name());
        let back: Body = serde_json::from_value(json).unwrap();
        assert_eq!(&back, event.body());
    }
}

#[test]
fn invalid_events_cannot_be_built() {
    let keypair = Keypair::insecure_from_seed(1);
    let network = NetworkId::new("fedpool-test").unwrap();
    let revoked = || ConsentRevoked {
        model_id: "m".into(),
        consent: EventId::from_bytes([0; 32]),
    };
    let some_id = Some(EventId::from_bytes([1; 32]));
    for (seq, prev, timestamp_ms, reason) in [
        (0, None, 0, "seq starts at 1"),
        (1, some_id, 0, "seq 1 cannot name"),
        (2, None, 0, "only seq 1 may omit"),
        (1, None, u64::MAX, "timestamp_ms exceeds"),
        (u64::MAX, some_id, 0, "seq exceeds"),
    ] {
        let err = Event::sign(&network, &keypair, seq, prev, timestamp_ms, revoked()).unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let body = RewardsPaid {
            model_id: "m".into(),
            round: None,
            allotment: 1,
            payouts: vec![Payout {
                owner: keypair.did(),
                score: bad,
                amount: 1,
            }],
            carried: 0,
            method: String::new(),
            details: String::new(),
        };
        let err = Event::sign(&network, &keypair, 1, None, 0, body).unwrap_err();
        assert!(err.to_string().contains("`payouts` is"), "{err}");
        assert!(
            err.to_string().contains(&keypair.did().to_string()),
            "{err}"
        );
    }
}

#[test]
fn non_finite_floats_are_refused_when_decoding() {
    let keypair = Keypair::insecure_from_seed(1);
    let network = NetworkId::new("fedpool-test").unwrap();
    let body = RewardsPaid {
        model_id: "m".into(),
        round: None,
        allotment: 1,
        payouts: vec![Payout {
            owner: keypair.did(),
            score: 1.0,
            amount: 1,
        }],
        carried: 0,
        method: String::new(),
        details: String::new(),
    };
    let event = Event::sign(&network, &keypair, 1, None, 0, body).unwrap();
    let mut bytes = event.encode();
    let one = 1.0f64.to_bits().to_be_bytes();
    let at = bytes.windows(8).position(|w| w == one).unwrap();
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_bits().to_be_bytes());
    let err = Event::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("field `payouts`"), "{err}");
    assert!(err.to_string().contains("not a finite number"), "{err}");
}
