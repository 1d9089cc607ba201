//! A publisher that lies, driven by hand against honest participants (issue 9): each test
//! performs one attack and shows that it fails.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_protocol::{
    DeclineReason, Directory, Msg, NodeId, Participant, ParticipantInput, ParticipantOutput,
    PrivacyTerms, RoundId, SecAggSetup, TrainRequest,
};

const PUBLISHER: NodeId = NodeId(10_000);
const DIMENSION: usize = 4;

fn terms(q: f64, secure: bool) -> PrivacyTerms {
    PrivacyTerms {
        clip_norm: 1.0,
        noise_multiplier: 1.0,
        sampling_rate: Some(q),
        epsilon_budget: None,
        delta: 1e-5,
        secure_aggregation: secure,
        secure_aggregation_threshold: 0.6,
        adaptive_clipping: None,
        secure_aggregation_group_size: None,
    }
}

fn outputs(node: &mut Participant) -> Vec<ParticipantOutput> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn request(round: u32, terms: &PrivacyTerms, asked: usize, commitment: [u8; 32]) -> Msg {
    Msg::TrainRequest(TrainRequest {
        round: RoundId(round),
        task: fedpool_protocol::RoundTask::Train { scaling: None },
        global: Arc::new(vec![0.0; DIMENSION]),
        local: Arc::new(LocalTraining::default()),
        privacy: Arc::new(terms.plan_round(asked, asked, DIMENSION).unwrap()),
        secagg_commitment: Some(commitment),
    })
}

/// Asks `node` to train in `round` and answers its training job; returns what it sends.
fn ask_and_train(
    node: &mut Participant,
    round: u32,
    terms: &PrivacyTerms,
    asked: usize,
    commitment: [u8; 32],
) -> Vec<ParticipantOutput> {
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(round, terms, asked, commitment),
    });
    let job = match outputs(node).as_slice() {
        [ParticipantOutput::Train(job)] => job.clone(),
        other => panic!("round {round}: {other:?}"),
    };
    node.handle(ParticipantInput::Trained {
        round: job.round,
        outcome: Ok(TrainOutcome {
            delta: vec![0.3; DIMENSION],
            n_examples: 5,
            final_loss: 0.3,
            n_steps: 1,
        }),
    });
    outputs(node)
}

#[test]
fn a_publisher_that_asks_one_owner_every_round_gets_its_data_only_when_the_owners_coin_says_so() {
    // The attack: the publisher asks the same owner in every one of 300 rounds, hoping to see
    // its data every round while the owner's node accounts each round at q = 0.1.
    let q = 0.1;
    let rounds = 300u32;
    let terms = terms(q, false);
    let mut node = Participant::new(NodeId(0), true, 11)
        .with_privacy_seed([11; 32])
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_publisher(PUBLISHER);
    let mut contributed = 0u32;
    for round in 1..=rounds {
        let sent = ask_and_train(&mut node, round, &terms, 100, [0; 32]);
        let [
            ParticipantOutput::Send {
                msg: Msg::Update(update),
                ..
            },
        ] = sent.as_slice()
        else {
            panic!("round {round}: {sent:?}");
        };
        // Every round gets an update, so the ledger's participant list says nothing about the
        // coin; only an update the coin chose carries data.
        if update.contributed {
            contributed += 1;
            assert!(update.delta.iter().any(|&d| d != 0.0));
        } else {
            assert!(update.delta.iter().all(|&d| d == 0.0), "{update:?}");
            assert_eq!(update.n_examples, 0);
        }
    }
    // Binomial(300, 0.1): mean 30, sd 5.2. The node's own seeded coin, so this is fixed; the
    // bounds (±4 sd) only say that the rate is q, not 1.
    assert!(
        (9..=51).contains(&contributed),
        "{contributed} of {rounds} rounds carried the owner's data"
    );
    assert_eq!(node.rounds_contributed(), contributed as usize);
    // What the node accounted is the amplified ε of 300 rounds at q, and it is true: the
    // publisher cannot raise the rate above the node's own coin.
    let expected = fedpool_privacy::epsilon(q, 1.0, u64::from(rounds), 1e-5).unwrap();
    assert!(
        (node.epsilon_spent() - expected).abs() < 1e-9,
        "{} vs {expected}",
        node.epsilon_spent()
    );
}

#[test]
fn under_secure_aggregation_a_node_whose_coin_says_no_sends_the_same_messages() {
    // The publisher tries to learn the sample from what members send: a contributing and a
    // non-contributing member both answer `Ready` and then run secure aggregation over a
    // vector of the same length (checked in the round tests); here, both answer `Ready`.
    let terms = terms(0.5, true);
    let mut seen = [0u32; 2];
    let mut node = Participant::new(NodeId(0), true, 5)
        .with_privacy_seed([5; 32])
        .with_privacy(terms.clone(), None)
        .unwrap();
    for round in 1..=40 {
        let before = node.rounds_contributed();
        let sent = ask_and_train(&mut node, round, &terms, 10, [0; 32]);
        assert!(
            matches!(
                sent.as_slice(),
                [ParticipantOutput::Send {
                    msg: Msg::Ready { .. },
                    ..
                }]
            ),
            "{sent:?}"
        );
        seen[usize::from(node.rounds_contributed() > before)] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
}

/// A node that has answered `Ready` in a secure round, and its nonce.
fn ready_node(commitment: [u8; 32]) -> (Participant, [u8; 32]) {
    let terms = terms(1.0, true);
    let keys: Vec<SigningKey> = (0..3)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let directory: Directory = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (NodeId(i as u32), k.verifying_key()))
        .collect();
    let mut node = Participant::new(NodeId(1), true, 3)
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_identity(keys[1].clone(), Arc::new(directory));
    let sent = ask_and_train(&mut node, 1, &terms, 3, commitment);
    let nonce = match sent.as_slice() {
        [
            ParticipantOutput::Send {
                msg: Msg::Ready { nonce, .. },
                ..
            },
        ] => *nonce,
        other => panic!("{other:?}"),
    };
    (node, nonce)
}

fn refusal(node: &mut Participant, setup: SecAggSetup) -> Option<String> {
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::SecAggSetup(Arc::new(setup)),
    });
    outputs(node).into_iter().find_map(|out| match out {
        ParticipantOutput::Send {
            msg:
                Msg::Decline {
                    reason: DeclineReason::SecureAggregation(why),
                    ..
                },
            ..
        } => Some(why),
        _ => None,
    })
}

#[test]
fn a_publisher_cannot_grind_the_graph_seed_after_it_knows_who_is_ready() {
    let seed = [7; 32];
    let commitment = SecAggSetup::commitment(&seed);
    let honest = |nonce: [u8; 32]| SecAggSetup {
        round: RoundId(1),
        members: vec![NodeId(0), NodeId(1), NodeId(2)],
        nonces: vec![[10; 32], nonce, [12; 32]],
        seed,
    };

    // Another seed than the one committed to before anyone was ready.
    let (mut node, nonce) = ready_node(commitment);
    let mut ground = honest(nonce);
    ground.seed = [8; 32];
    let why = refusal(&mut node, ground).expect("a ground seed was accepted");
    assert!(why.contains("committed"), "{why}");

    // The member's own nonce replaced (so the publisher would choose every input of the hash).
    let (mut node, _) = ready_node(commitment);
    let why = refusal(&mut node, honest([0; 32])).expect("a replaced nonce was accepted");
    assert!(why.contains("nonce"), "{why}");

    // Members reordered to place them on the graph.
    let (mut node, nonce) = ready_node(commitment);
    let mut reordered = honest(nonce);
    reordered.members.swap(0, 2);
    reordered.nonces.swap(0, 2);
    let why = refusal(&mut node, reordered).expect("a reordered setup was accepted");
    assert!(why.contains("increasing node order"), "{why}");

    // The honest setup is accepted: the node starts secure aggregation (advertises keys).
    let (mut node, nonce) = ready_node(commitment);
    assert_eq!(refusal(&mut node, honest(nonce)), None);
}

#[test]
fn the_topology_and_threshold_follow_from_the_member_count_alone() {
    // Nothing in a setup lets the publisher choose a topology or a threshold: every member
    // derives both from the number of members, and the graph's seed from the committed seed
    // and every member's nonce, so one changed nonce changes the graph.
    let members: Vec<NodeId> = (0..100).map(NodeId).collect();
    let setup = SecAggSetup {
        round: RoundId(3),
        nonces: (0..100).map(|i| [i as u8; 32]).collect(),
        members,
        seed: [1; 32],
    };
    let plan = SecAggSetup::plan(100);
    assert_eq!(setup.threshold(), plan.threshold);
    assert!(2 * plan.threshold > plan.degree);
    let fedpool_secagg::Topology::Harary { degree, graph_seed } = setup.topology() else {
        panic!("100 members use SecAgg+");
    };
    assert_eq!(degree, plan.degree);
    let mut other = setup.clone();
    other.nonces[42][0] ^= 1;
    let fedpool_secagg::Topology::Harary {
        graph_seed: other_seed,
        ..
    } = other.topology()
    else {
        panic!()
    };
    assert_ne!(graph_seed, other_seed);
    // Small rounds are all-pairs with a majority threshold.
    let small = SecAggSetup::plan(10);
    assert_eq!((small.degree, small.threshold), (9, 5));
}

#[test]
fn a_restarted_node_resumes_its_spending_and_still_refuses_past_its_cap() {
    // The attack: the publisher waits for the owner's node to restart, hoping it forgets the
    // ε it spent, then asks again (even restarting its round numbers at 1).
    let terms = terms(0.1, false);
    let cap = 4.0;
    let fresh = || {
        Participant::new(NodeId(0), true, 1)
            .with_privacy(terms.clone(), Some(cap))
            .unwrap()
    };
    let mut node = fresh();
    let mut round = 0;
    loop {
        round += 1;
        node.handle(ParticipantInput::Received {
            from: PUBLISHER,
            msg: request(round, &terms, 100, [0; 32]),
        });
        if !matches!(outputs(&mut node).as_slice(), [ParticipantOutput::Train(_)]) {
            break;
        }
        // The node is idle again once the publisher moves on; training is not needed here.
        assert!(round < 10_000);
    }
    let spent = node.epsilon_spent();
    assert!(spent <= cap && spent > 0.9 * cap, "{spent}");

    let mut restarted = fresh().restore_privacy(node.privacy_history()).unwrap();
    assert_eq!(restarted.epsilon_spent(), spent);
    restarted.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(1, &terms, 100, [0; 32]),
    });
    let out = outputs(&mut restarted);
    assert!(
        matches!(
            out.as_slice(),
            [ParticipantOutput::Send {
                msg: Msg::Decline {
                    reason: DeclineReason::PrivacyBudget(_),
                    ..
                },
                ..
            }]
        ),
        "{out:?}"
    );
    // Without its history the node would have trained: the history is what protects it.
    let mut forgetful = fresh();
    forgetful.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(1, &terms, 100, [0; 32]),
    });
    assert!(matches!(
        outputs(&mut forgetful).as_slice(),
        [ParticipantOutput::Train(_)]
    ));
}

#[test]
fn a_publisher_that_goes_silent_mid_round_is_given_up_and_its_late_setup_ignored() {
    // The publisher stalls after the node said it was ready, hoping to use the node's round
    // secrets whenever it likes. The node gives the round up at its deadline, and a setup that
    // arrives later gets nothing.
    let seed = [7; 32];
    let (mut node, nonce) = ready_node(SecAggSetup::commitment(&seed));
    let deadline = node
        .next_deadline_ms()
        .expect("a ready node waits for its publisher");
    assert_eq!(deadline, fedpool_protocol::DEFAULT_PARTICIPANT_TIMEOUT_MS);
    node.handle(ParticipantInput::Tick {
        now_ms: deadline - 1,
    });
    assert!(node.secure_aborts().is_empty());
    node.handle(ParticipantInput::Tick { now_ms: deadline });
    assert_eq!(node.next_deadline_ms(), None);
    assert!(
        node.secure_aborts()
            .iter()
            .any(|(_, why)| why.contains("gave the round up")),
        "{:?}",
        node.secure_aborts()
    );
    let late = SecAggSetup {
        round: RoundId(1),
        members: vec![NodeId(0), NodeId(1), NodeId(2)],
        nonces: vec![[0; 32], nonce, [2; 32]],
        seed,
    };
    // The same setup, in time, starts the node's part of secure aggregation.
    let (mut patient, patient_nonce) = ready_node(SecAggSetup::commitment(&seed));
    let mut in_time = late.clone();
    in_time.nonces[1] = patient_nonce;
    patient.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::SecAggSetup(Arc::new(in_time)),
    });
    assert!(!outputs(&mut patient).is_empty());

    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: Msg::SecAggSetup(Arc::new(late)),
    });
    assert!(outputs(&mut node).is_empty());
}

#[test]
fn a_request_after_the_consent_expired_is_declined_by_the_nodes_own_clock() {
    let terms = terms(1.0, false);
    let mut node = Participant::new(NodeId(0), true, 1)
        .with_privacy(terms.clone(), None)
        .unwrap()
        .with_consent_expiry(Some(1_000));
    node.handle(ParticipantInput::Tick { now_ms: 999 });
    assert!(node.consent_active());
    let sent = ask_and_train(&mut node, 1, &terms, 10, [0; 32]);
    assert!(
        matches!(
            sent.as_slice(),
            [ParticipantOutput::Send {
                msg: Msg::Update(_),
                ..
            }]
        ),
        "{sent:?}"
    );
    node.handle(ParticipantInput::Tick { now_ms: 1_000 });
    assert!(!node.consent_active());
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: request(2, &terms, 10, [0; 32]),
    });
    let out = outputs(&mut node);
    assert!(
        matches!(
            out.as_slice(),
            [ParticipantOutput::Send {
                msg: Msg::Decline {
                    reason: DeclineReason::NoConsent,
                    ..
                },
                ..
            }]
        ),
        "{out:?}"
    );
    // A clock that steps back does not revive it.
    node.handle(ParticipantInput::Tick { now_ms: 10 });
    assert!(!node.consent_active());
}

#[test]
fn an_owner_who_revokes_mid_round_sends_nothing_more_of_it() {
    let seed = [7; 32];
    let commitment = SecAggSetup::commitment(&seed);
    let setup = |nonce: [u8; 32]| {
        Msg::SecAggSetup(Arc::new(SecAggSetup {
            round: RoundId(1),
            members: vec![NodeId(0), NodeId(1), NodeId(2)],
            nonces: vec![[10; 32], nonce, [12; 32]],
            seed,
        }))
    };
    // Trained and ready; the owner revokes before the publisher's setup arrives.
    let (mut node, nonce) = ready_node(commitment);
    node.set_consent(false);
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: setup(nonce),
    });
    assert!(
        outputs(&mut node).is_empty(),
        "the node went on with the round"
    );
    assert!(
        node.secure_aborts()
            .iter()
            .any(|(_, why)| why.contains("consent ended")),
        "{:?}",
        node.secure_aborts()
    );
    // The same node, still consenting, goes on (advertises its keys).
    let (mut node, nonce) = ready_node(commitment);
    node.handle(ParticipantInput::Received {
        from: PUBLISHER,
        msg: setup(nonce),
    });
    assert!(!outputs(&mut node).is_empty());
}
