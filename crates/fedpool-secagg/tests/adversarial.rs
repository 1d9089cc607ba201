//! A malicious server (rewriting what it relays) and malicious participants (sending bad
//! messages): honest participants abort with an error naming the culprit and the stage, and
//! release nothing the server could use.

mod support;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_secagg::sim::{ClientOutcome, DropoutPlan};
use fedpool_secagg::{
    AdvertisedKeys, Client, ClientEvent, ClientInput, ClientOutput, Error, ParticipantIdx, Party,
    Server, ServerEvent, ServerInput, ServerOutput, Stage, ToClient, ToServer, UnmaskRequest,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use support::{Spec, check_exact};

const VICTIM: ParticipantIdx = ParticipantIdx(2);

fn spec() -> Spec {
    Spec::harary(10, 4, 3)
}

/// Runs with `rewrite` applied to `VICTIM`'s entry in every relayed key list, and checks that
/// every recipient of the rewritten entry aborted with `ForgedKeys` naming `VICTIM`, before
/// sending any share.
fn check_substitution(rewrite: &dyn Fn(&mut AdvertisedKeys, &[AdvertisedKeys])) {
    let spec = spec();
    let mut tamper = |_: ParticipantIdx, msg: &mut ToClient| {
        if let ToClient::NeighbourKeys(keys) = msg {
            let all = keys.clone();
            for entry in keys.iter_mut().filter(|k| k.owner == VICTIM) {
                rewrite(entry, &all);
            }
        }
    };
    let outcome = spec.run_tampered(&DropoutPlan::none(), &mut tamper);
    let config = spec.config();
    for &neighbour in config.neighbours(VICTIM) {
        assert_eq!(
            outcome.clients[neighbour.as_usize()],
            ClientOutcome::Aborted(Error::ForgedKeys {
                party: Party::Participant(neighbour),
                stage: Stage::ShareKeys,
                owner: VICTIM,
            }),
        );
        // Only the 133-byte advertisement left the participant.
        assert_eq!(outcome.upload_bytes[neighbour.as_usize()], 133);
    }
    // The victim's k = 4 neighbours all left, so the round cannot complete.
    assert!(outcome.aggregate.is_err());
    assert!(outcome.server.masked_inputs().is_empty());
}

#[test]
fn a_forged_signature_makes_honest_neighbours_abort() {
    check_substitution(&|entry, _| entry.signature[7] ^= 0x20);
}

#[test]
fn a_key_substituted_under_a_genuine_signature_makes_honest_neighbours_abort() {
    check_substitution(&|entry, _| entry.masking_pk[0] ^= 1);
}

#[test]
fn another_participants_signed_keys_relabelled_make_honest_neighbours_abort() {
    check_substitution(&|entry, all| {
        let other = all
            .iter()
            .find(|k| k.owner != VICTIM)
            .expect("k ≥ 2")
            .clone();
        *entry = AdvertisedKeys {
            owner: VICTIM,
            ..other
        };
    });
}

#[test]
fn the_servers_own_keys_signed_with_its_own_identity_make_honest_neighbours_abort() {
    let server_identity = SigningKey::from_bytes(&[0xEE; 32]);
    let spec = spec();
    let config = spec.config();
    // The server registers as a fake client of the same config to produce well-formed, signed
    // keys; its identity is not the victim's, so the signature cannot verify.
    let fake_config = {
        let mut identities = spec.identities();
        identities[VICTIM.as_usize()] = server_identity.clone();
        identities
    };
    let own_keys = {
        let verifying: Vec<_> = fake_config.iter().map(|k| k.verifying_key()).collect();
        let fake = Arc::new(
            fedpool_secagg::RoundConfig::new(fedpool_secagg::RoundSettings {
                session_id: config.session_id(),
                identities: verifying,
                topology: config.topology().clone(),
                threshold: config.threshold(),
                modulus_bits: config.modulus_bits(),
                vector_len: config.vector_len(),
            })
            .unwrap(),
        );
        let mut client = Client::new(
            fake,
            VICTIM,
            &server_identity,
            vec![0; config.vector_len()],
            ChaCha20Rng::seed_from_u64(9),
        )
        .unwrap();
        match client.poll_output() {
            Some(ClientOutput::Send(ToServer::AdvertiseKeys(keys))) => keys,
            other => panic!("expected an advertisement, got {other:?}"),
        }
    };
    check_substitution(&move |entry, _| *entry = own_keys.clone());
}

/// Keys signed for another session (same participants, same config otherwise) do not verify:
/// the session id is inside every signature.
#[test]
fn keys_replayed_from_another_session_make_honest_neighbours_abort() {
    let other_session = spec().session([0x77; 32]);
    let identities = other_session.identities();
    let mut client = Client::new(
        other_session.config(),
        VICTIM,
        &identities[VICTIM.as_usize()],
        vec![0; other_session.vector_len],
        ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap();
    let Some(ClientOutput::Send(ToServer::AdvertiseKeys(replayed))) = client.poll_output() else {
        panic!("expected an advertisement");
    };
    check_substitution(&move |entry, _| *entry = replayed.clone());
}

#[test]
fn relaying_keys_of_a_non_neighbour_aborts() {
    let spec = spec();
    let config = spec.config();
    let recipient = ParticipantIdx(0);
    let stranger = (0..spec.n as u32)
        .map(ParticipantIdx)
        .find(|&p| p != recipient && !config.are_neighbours(recipient, p))
        .unwrap();
    let mut tamper = |to: ParticipantIdx, msg: &mut ToClient| {
        if let (true, ToClient::NeighbourKeys(keys)) = (to == recipient, msg) {
            let mut extra = keys[0].clone();
            extra.owner = stranger;
            keys.push(extra);
        }
    };
    let outcome = spec.run_tampered(&DropoutPlan::none(), &mut tamper);
    let ClientOutcome::Aborted(error) = &outcome.clients[recipient.as_usize()] else {
        panic!("{:?}", outcome.clients[recipient.as_usize()]);
    };
    assert_eq!(
        error.to_string(),
        format!(
            "participant 0 at share-keys: the server relayed keys of {stranger}, who is not a neighbour"
        )
    );
}

#[test]
fn a_tampered_share_ciphertext_aborts_its_recipient() {
    let spec = spec();
    let recipient = ParticipantIdx(4);
    let mut tamper = |to: ParticipantIdx, msg: &mut ToClient| {
        if let (true, ToClient::RoutedShares(shares)) = (to == recipient, msg) {
            shares[0].ciphertext[10] ^= 1;
        }
    };
    let outcome = spec.run_tampered(&DropoutPlan::none(), &mut tamper);
    let ClientOutcome::Aborted(Error::Decryption {
        party,
        stage,
        sender,
    }) = &outcome.clients[recipient.as_usize()]
    else {
        panic!("{:?}", outcome.clients[recipient.as_usize()]);
    };
    assert_eq!(*party, Party::Participant(recipient));
    assert_eq!(*stage, Stage::MaskedInput);
    assert!(spec.config().are_neighbours(*sender, recipient));
    // The recipient never sent its masked input; everyone else's round still completed
    // without it (one dropout is within the budget k − t = 1).
    assert!(!outcome.server.masked_inputs().contains_key(&recipient));
    let aggregate = outcome.aggregate.unwrap();
    assert!(!aggregate.survivors.contains(&recipient));
}

#[test]
fn a_share_pair_routed_to_the_wrong_recipient_does_not_open() {
    let spec = spec();
    let config = spec.config();
    let recipient = ParticipantIdx(0);
    // Swap the ciphertexts of two senders: each is then opened with the wrong key and AD.
    let mut tamper = |to: ParticipantIdx, msg: &mut ToClient| {
        if let (true, ToClient::RoutedShares(shares)) = (to == recipient, msg) {
            let first = shares[0].ciphertext;
            shares[0].ciphertext = shares[1].ciphertext;
            shares[1].ciphertext = first;
        }
    };
    let outcome = spec.run_tampered(&DropoutPlan::none(), &mut tamper);
    let first_sender = config.neighbours(recipient)[0];
    assert_eq!(
        outcome.clients[recipient.as_usize()],
        ClientOutcome::Aborted(Error::Decryption {
            party: Party::Participant(recipient),
            stage: Stage::MaskedInput,
            sender: first_sender,
        })
    );
}

fn check_rewrite(rewrite: &dyn Fn(&mut ToClient), expect: &dyn Fn(&Error) -> bool, signed: bool) {
    let spec = spec();
    let target = ParticipantIdx(0);
    // One neighbour of the target drops after sharing keys, so the target holds shares of a
    // survivor and of a dropout.
    let dropped = spec.config().neighbours(target)[0];
    let plan = DropoutPlan::none().drop_at(dropped, Stage::MaskedInput);
    let mut tamper = |to: ParticipantIdx, msg: &mut ToClient| {
        if to == target {
            rewrite(msg);
        }
    };
    let outcome = spec.run_tampered(&plan, &mut tamper);
    let ClientOutcome::Aborted(error) = &outcome.clients[target.as_usize()] else {
        panic!("{:?}", outcome.clients[target.as_usize()]);
    };
    assert!(expect(error), "{error}");
    // Its masked input went up (and its consistency signature, if it got that far), but no
    // unmasking answer: 133 + share pairs + masked input (+ 65).
    let k = spec.config().neighbours(target).len();
    assert_eq!(
        outcome.upload_bytes[target.as_usize()],
        133 + (5 + 100 * k as u64) + (5 + 4 * spec.vector_len as u64) + if signed { 65 } else { 0 }
    );
}

fn rewrite_unmask(rewrite: impl Fn(&mut UnmaskRequest)) -> impl Fn(&mut ToClient) {
    move |msg| {
        if let ToClient::Unmask(request) = msg {
            rewrite(request);
        }
    }
}

fn rewrite_survivors(rewrite: impl Fn(&mut Vec<ParticipantIdx>)) -> impl Fn(&mut ToClient) {
    move |msg| {
        if let ToClient::Survivors(survivors) = msg {
            rewrite(survivors);
        }
    }
}

#[test]
fn a_survivor_set_without_the_recipient_gets_no_signature() {
    check_rewrite(
        &rewrite_survivors(|set| set.retain(|p| p.0 != 0)),
        &|error| error.to_string().contains("leaves out this participant"),
        false,
    );
}

#[test]
fn a_survivor_set_naming_a_neighbour_that_never_shared_keys_gets_no_signature() {
    // A neighbour that dropped before sharing keys cannot have masked with the target, so a
    // set listing it as a survivor is false.
    let spec = spec();
    let target = ParticipantIdx(0);
    let silent = spec.config().neighbours(target)[1];
    let plan = DropoutPlan::none().drop_at(silent, Stage::ShareKeys);
    let mut tamper = |to: ParticipantIdx, msg: &mut ToClient| {
        if let (true, ToClient::Survivors(set)) = (to == target, msg) {
            set.push(silent);
            set.sort();
        }
    };
    let outcome = spec.run_tampered(&plan, &mut tamper);
    let ClientOutcome::Aborted(error) = &outcome.clients[target.as_usize()] else {
        panic!("{:?}", outcome.clients[target.as_usize()]);
    };
    assert!(
        error.to_string().contains("never completed key sharing"),
        "{error}"
    );
}

#[test]
fn an_unsorted_survivor_set_gets_no_signature() {
    check_rewrite(
        &rewrite_survivors(|set| set.reverse()),
        &|error| {
            matches!(
                error,
                Error::InconsistentSets {
                    stage: Stage::ConsistencyCheck,
                    ..
                }
            )
        },
        false,
    );
}

#[test]
fn an_unmasking_request_for_another_set_than_the_one_signed_gets_no_answer() {
    check_rewrite(
        &rewrite_unmask(|request| {
            let last = request.survivors.pop();
            assert!(last.is_some());
        }),
        &|error| {
            matches!(
                error,
                Error::InconsistentSets {
                    stage: Stage::Unmasking,
                    ..
                }
            ) && error.to_string().contains("this participant signed")
        },
        true,
    );
}

#[test]
fn an_unmasking_request_with_fewer_than_t_neighbour_signatures_gets_no_answer() {
    let t = spec().threshold;
    check_rewrite(
        &rewrite_unmask(move |request| request.signatures.truncate(t - 1)),
        &|error| {
            matches!(
                error,
                Error::TooFewSurvivors {
                    stage: Stage::Unmasking,
                    ..
                }
            )
        },
        true,
    );
}

#[test]
fn a_forged_consistency_signature_gets_no_answer() {
    check_rewrite(
        &rewrite_unmask(|request| request.signatures[0].1[7] ^= 1),
        &|error| error.to_string().contains("not over the set"),
        true,
    );
}

#[test]
fn a_consistency_signature_counted_twice_gets_no_answer() {
    check_rewrite(
        &rewrite_unmask(|request| {
            let first = request.signatures[0];
            request.signatures.push(first);
        }),
        &|error| error.to_string().contains("two consistency signatures"),
        true,
    );
}

#[test]
fn a_consistency_signature_from_a_non_neighbour_gets_no_answer() {
    let spec = spec();
    let config = spec.config();
    let target = ParticipantIdx(0);
    let Some(stranger) = (1..spec.n as u32)
        .map(ParticipantIdx)
        .find(|&p| !config.are_neighbours(target, p))
    else {
        // All-pairs: everyone is a neighbour; nothing to test.
        return;
    };
    check_rewrite(
        &rewrite_unmask(move |request| request.signatures[0].0 = stranger),
        &|error| error.to_string().contains("not a neighbour"),
        true,
    );
}

#[test]
fn a_participant_with_a_bad_signature_is_rejected_by_the_server_and_the_round_goes_on() {
    let spec = spec();
    let cheat = ParticipantIdx(5);
    let mut tamper = |from: ParticipantIdx, msg: &mut ToServer| {
        if let (true, ToServer::AdvertiseKeys(keys)) = (from == cheat, msg) {
            keys.signature[0] ^= 1;
        }
    };
    let outcome = spec.run_with_bad_participant(&DropoutPlan::none(), &mut tamper);
    let rejections = outcome.server.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].participant, cheat);
    assert_eq!(rejections[0].stage, Stage::AdvertiseKeys);
    // Its neighbours never saw its keys, so nobody aborted, and the sum excludes it exactly.
    let aggregate = outcome.aggregate.unwrap();
    let survivors: Vec<ParticipantIdx> = (0..spec.n as u32)
        .map(ParticipantIdx)
        .filter(|&p| p != cheat)
        .collect();
    assert_eq!(aggregate.survivors, survivors);
    assert_eq!(
        aggregate.sum,
        fedpool_secagg::sim::plain_sum(&spec.inputs(), &survivors, spec.modulus_bits)
    );
}

#[test]
fn malformed_masked_inputs_are_rejected_and_treated_as_dropouts() {
    let spec = spec();
    let cheat = ParticipantIdx(7);
    let mut tamper = |from: ParticipantIdx, msg: &mut ToServer| {
        if let (true, ToServer::MaskedInput(words)) = (from == cheat, msg) {
            words.pop();
        }
    };
    let outcome = spec.run_with_bad_participant(&DropoutPlan::none(), &mut tamper);
    assert_eq!(outcome.server.rejections()[0].participant, cheat);
    assert_eq!(outcome.server.rejections()[0].stage, Stage::MaskedInput);
    let aggregate = outcome.aggregate.unwrap();
    assert_eq!(aggregate.dropped, vec![cheat]);
    let survivors: Vec<ParticipantIdx> = (0..spec.n as u32)
        .map(ParticipantIdx)
        .filter(|&p| p != cheat)
        .collect();
    assert_eq!(
        aggregate.sum,
        fedpool_secagg::sim::plain_sum(&spec.inputs(), &survivors, spec.modulus_bits)
    );
}

/// A hand-written driver, the way the runtime drives the machines: after the round, a second
/// unmasking request with the lists swapped gets no answer, so no participant ever releases
/// both shares of anyone. Every answer the round produced holds one share per neighbour.
#[test]
fn participants_answer_one_unmasking_request_with_one_share_per_neighbour() {
    let spec = spec();
    let config = spec.config();
    let identities = spec.identities();
    let inputs = spec.inputs();
    let dropped = ParticipantIdx(3);
    let mut clients: Vec<Client<ChaCha20Rng>> = (0..spec.n)
        .map(|i| {
            Client::new(
                Arc::clone(&config),
                ParticipantIdx(i as u32),
                &identities[i],
                inputs[i].clone(),
                ChaCha20Rng::seed_from_u64(i as u64),
            )
            .unwrap()
        })
        .collect();
    let mut server = Server::new(Arc::clone(&config), 100);
    server.handle(ServerInput::Tick { now_ms: 0 });
    let mut answers = Vec::new();
    let mut result = None;
    let mut now_ms = 0;
    while result.is_none() {
        for (i, client) in clients.iter_mut().enumerate() {
            let from = ParticipantIdx(i as u32);
            while let Some(output) = client.poll_output() {
                match output {
                    ClientOutput::Send(msg) => {
                        if from == dropped && msg.stage() >= Stage::MaskedInput {
                            continue;
                        }
                        if let ToServer::UnmaskShares(response) = &msg {
                            answers.push((from, response.clone()));
                        }
                        server.handle(ServerInput::Received { from, msg });
                    }
                    ClientOutput::Event(event) => assert_eq!(event, ClientEvent::Finished),
                }
            }
        }
        let mut progressed = false;
        while let Some(output) = server.poll_output() {
            match output {
                ServerOutput::Send { to, msg } => {
                    progressed = true;
                    if to != dropped || msg.stage() < Stage::ShareKeys {
                        clients[to.as_usize()].handle(ClientInput::Received(msg));
                    }
                }
                ServerOutput::Event(ServerEvent::Finished(aggregate)) => result = Some(aggregate),
                ServerOutput::Event(ServerEvent::Aborted(error)) => panic!("{error}"),
                ServerOutput::Event(ServerEvent::StageClosed(_)) => {}
            }
        }
        if !progressed && result.is_none() {
            now_ms += 100;
            server.handle(ServerInput::Tick { now_ms });
        }
    }
    let aggregate = result.unwrap();
    assert_eq!(aggregate.dropped, vec![dropped]);
    for (from, response) in &answers {
        let owners: Vec<ParticipantIdx> = response
            .self_mask_shares
            .iter()
            .chain(&response.masking_key_shares)
            .map(|(owner, _)| *owner)
            .collect();
        let mut unique = owners.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            owners.len(),
            unique.len(),
            "{from} released two shares of one owner"
        );
        assert_eq!(unique, config.neighbours(*from).to_vec());
    }
    // Replay a request for another set: finished participants stay silent, and the dropped
    // one (still waiting for its shares) aborts without sending anything.
    let swapped = ToClient::Unmask(UnmaskRequest {
        survivors: vec![dropped],
        signatures: Vec::new(),
    });
    for client in &mut clients {
        client.handle(ClientInput::Received(swapped.clone()));
        let outputs: Vec<ClientOutput> = std::iter::from_fn(|| client.poll_output()).collect();
        if client.participant() == dropped {
            assert!(matches!(
                outputs.as_slice(),
                [ClientOutput::Event(ClientEvent::Aborted(
                    Error::ProtocolViolation { .. }
                ))]
            ));
        } else {
            assert!(outputs.is_empty(), "{outputs:?}");
        }
    }
}

#[test]
fn a_round_after_all_these_checks_still_works_for_honest_parties() {
    check_exact(
        &spec(),
        &DropoutPlan::none().drop_at(VICTIM, Stage::Unmasking),
    );
}
