//! One test per way a ledger can be wrong, each asserting exactly the rules `verify` names.

mod common;

use std::collections::BTreeSet;

use common::*;
use fedpool_ledger::*;

/// A publisher with one model (ε budget 2, pool 100), two consenting owners, and a third
/// owner (carol) who never consents.
struct World {
    ledger: Ledger,
    publisher: Keypair,
    alice: Keypair,
    bob: Keypair,
    carol: Keypair,
    model: ModelPublished,
    alice_consent: Event,
    bob_consent: Event,
}

fn world() -> World {
    world_with(None, None)
}

fn world_with(bob_expires_at_ms: Option<u64>, bob_epsilon_cap: Option<f64>) -> World {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let alice = Keypair::insecure_from_seed(2);
    let bob = Keypair::insecure_from_seed(3);
    let carol = Keypair::insecure_from_seed(4);
    let model = model(&publisher, "diabetes", Some(2.0), 100);
    ledger.push(&publisher, 1_000, model.clone());
    let alice_consent = ledger.push(&alice, 2_000, consent(&model, None, None));
    let bob_consent = ledger.push(
        &bob,
        2_000,
        consent(&model, bob_expires_at_ms, bob_epsilon_cap),
    );
    World {
        ledger,
        publisher,
        alice,
        bob,
        carol,
        model,
        alice_consent,
        bob_consent,
    }
}

impl World {
    fn both(&self) -> Vec<(Did, EventId)> {
        vec![
            (self.alice.did(), self.alice_consent.id()),
            (self.bob.did(), self.bob_consent.id()),
        ]
    }
}

/// Verifies `events` and asserts the set of rules broken is exactly `expected`.
#[track_caller]
fn check(events: &[Event], expected: &[Rule]) -> VerifyReport {
    let report = verify_events(&network(), events, &TestRules);
    let found: BTreeSet<Rule> = report.violations.iter().map(|v| v.rule).collect();
    let expected: BTreeSet<Rule> = expected.iter().copied().collect();
    assert_eq!(found, expected, "report:\n{report}");
    report
}

/// Replaces the first occurrence of `needle` in `haystack`, which must exist.
fn replace_bytes(haystack: &mut [u8], needle: &[u8], replacement: &[u8]) {
    assert_eq!(needle.len(), replacement.len());
    let at = haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("needle present");
    haystack[at..at + needle.len()].copy_from_slice(replacement);
}

#[test]
fn a_valid_history_has_no_violations() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let pay = payout(
        &w.model,
        Some(1),
        vec![(w.alice.did(), 50), (w.bob.did(), 50)],
    );
    w.ledger.push(&w.publisher, 3_500, pay);
    let report = check(&w.ledger.events, &[]);
    assert_eq!(
        (
            report.n_events,
            report.n_authors,
            report.n_models,
            report.n_rounds
        ),
        (5, 3, 1, 1)
    );
}

#[test]
fn an_empty_ledger_verifies() {
    let report = check(&[], &[]);
    assert_eq!(report.n_events, 0);
}

#[test]
fn tampered_body_breaks_the_signature() {
    let w = world();
    let mut bytes = w.alice_consent.encode();
    // Change one character of the dataset fingerprint: still a well-formed event.
    let fingerprint = content_hash(b"rows");
    let mut forged = fingerprint.clone().into_bytes();
    forged[10] = if forged[10] == b'a' { b'b' } else { b'a' };
    replace_bytes(&mut bytes, fingerprint.as_bytes(), &forged);
    let tampered = Event::decode(&bytes).unwrap();
    let mut events = w.ledger.events.clone();
    events[1] = tampered.clone();
    let report = check(&events, &[Rule::Signature]);
    assert_eq!(report.violations[0].event_id, Some(tampered.id()));
}

#[test]
fn tampered_signature_is_detected() {
    let w = world();
    let mut bytes = w.bob_consent.encode();
    *bytes.last_mut().unwrap() ^= 0x01;
    let mut events = w.ledger.events.clone();
    events[2] = Event::decode(&bytes).unwrap();
    let report = check(&events, &[Rule::Signature]);
    assert_eq!(report.violations[0].author, Some(w.bob.did()));
}

#[test]
fn swapped_signature_from_another_event_is_detected() {
    let w = world();
    let mut bytes = w.alice_consent.encode();
    let n = bytes.len();
    bytes[n - 64..].copy_from_slice(&w.bob_consent.signature().0);
    let mut events = w.ledger.events.clone();
    events[1] = Event::decode(&bytes).unwrap();
    check(&events, &[Rule::Signature]);
}

#[test]
fn reordered_chain_is_detected() {
    // Alice's genuine seq 1, then two events whose numbering contradicts their links: the one
    // numbered 3 was signed first (linking to seq 1), the one numbered 2 links to it.
    let w = world();
    let net = network();
    let body = || consent(&w.model, None, None);
    let third = Event::sign(&net, &w.alice, 3, Some(w.alice_consent.id()), 2_100, body()).unwrap();
    let second = Event::sign(&net, &w.alice, 2, Some(third.id()), 2_200, body()).unwrap();
    let mut events = w.ledger.events.clone();
    events.extend([second, third]);
    let report = check(&events, &[Rule::ChainPrevHash]);
    assert_eq!(
        report.violations.len(),
        2,
        "both links are wrong:\n{report}"
    );
}

#[test]
fn presenting_a_valid_chain_out_of_order_is_fine() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let mut events = w.ledger.events.clone();
    events.reverse();
    events.push(events[0].clone()); // and a duplicate
    check(&events, &[]);
}

#[test]
fn gap_in_a_chain_is_detected() {
    let mut w = world();
    w.ledger
        .push(&w.alice, 2_100, consent(&w.model, None, None));
    w.ledger
        .push(&w.alice, 2_200, consent(&w.model, None, None));
    let mut events = w.ledger.events.clone();
    let dropped = events.remove(3); // alice's seq 2
    assert_eq!((dropped.author(), dropped.seq()), (w.alice.did(), 2));
    let report = check(&events, &[Rule::ChainGap]);
    assert_eq!(report.violations[0].seq, Some(3));
}

#[test]
fn chain_not_starting_at_one_is_a_gap() {
    let w = world();
    let mut events = w.ledger.events.clone();
    events.remove(0); // the publisher's only event...
    // ...so the model is unknown as well.
    check(&events, &[Rule::UnknownModel]);

    let mut w = world();
    w.ledger
        .push(&w.alice, 2_100, consent(&w.model, None, None));
    let mut events = w.ledger.events.clone();
    events.remove(1); // alice's seq 1
    check(&events, &[Rule::ChainGap]);
}

#[test]
fn event_replayed_from_another_network_is_detected() {
    let w = world();
    let mut other = Ledger::on(NetworkId::new("fedpool-other").unwrap());
    let replayed = other.push(&w.carol, 2_000, consent(&w.model, None, None));
    let mut events = w.ledger.events.clone();
    events.push(replayed.clone());
    let report = check(&events, &[Rule::ForeignNetwork]);
    assert_eq!(report.violations[0].event_id, Some(replayed.id()));
}

#[test]
fn fork_is_detected() {
    let w = world();
    let conflicting = Event::sign(
        &network(),
        &w.alice,
        1,
        None,
        2_000,
        consent(&w.model, Some(9_999), None),
    )
    .unwrap();
    let mut events = w.ledger.events.clone();
    events.push(conflicting.clone());
    let report = check(&events, &[Rule::Fork]);
    assert_eq!(report.violations[0].event_id, Some(conflicting.id()));
}

#[test]
fn forged_event_at_an_occupied_seq_is_not_a_fork() {
    // Someone without alice's key cannot accuse her of forking.
    let w = world();
    let mut bytes = w.alice_consent.encode();
    replace_bytes(&mut bytes, &2_000u64.to_be_bytes(), &2_001u64.to_be_bytes());
    let mut events = w.ledger.events.clone();
    events.push(Event::decode(&bytes).unwrap());
    check(&events, &[Rule::Signature]);
}

#[test]
fn round_naming_a_non_consenting_node_is_detected() {
    let mut w = world();
    let mut participants = w.both();
    participants.push((w.carol.did(), EventId::from_bytes([7; 32])));
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentMissing]);
    assert!(
        report.violations[0]
            .detail
            .contains(&w.carol.did().to_string())
    );
}

#[test]
fn round_naming_a_node_under_someone_elses_consent_is_detected() {
    let mut w = world();
    let mut participants = w.both();
    participants.push((w.carol.did(), w.alice_consent.id()));
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    check(&w.ledger.events, &[Rule::ConsentWrongAuthor]);
}

#[test]
fn round_citing_a_non_consent_event_is_detected() {
    let mut w = world();
    let revoked = w.ledger.push(
        &w.carol,
        2_500,
        ConsentRevoked {
            model_id: w.model.model_id.clone(),
            consent: w.alice_consent.id(),
        },
    );
    let mut participants = w.both();
    participants.push((w.carol.did(), revoked.id()));
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    check(
        &w.ledger.events,
        &[Rule::RevocationInvalid, Rule::ConsentMissing],
    );
}

#[test]
fn round_after_revocation_is_detected() {
    let mut w = world();
    w.ledger.push(
        &w.alice,
        3_000,
        ConsentRevoked {
            model_id: w.model.model_id.clone(),
            consent: w.alice_consent.id(),
        },
    );
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        4_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentRevoked]);
    assert!(
        report.violations[0]
            .detail
            .contains(&w.alice.did().to_string())
    );
}

#[test]
fn revocation_at_the_rounds_timestamp_is_not_yet_in_effect() {
    // Chains are independent, so at equal timestamps the verifier cannot tell which came
    // first; a revocation binds rounds strictly after it.
    let mut w = world();
    let revocation = ConsentRevoked {
        model_id: w.model.model_id.clone(),
        consent: w.alice_consent.id(),
    };
    w.ledger.push(&w.alice, 3_000, revocation);
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 0.5, 0.5),
    );
    w.ledger.push(
        &w.publisher,
        3_001,
        round(&w.model, 2, participants, 0.5, 1.0),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentRevoked]);
    assert_eq!(report.violations.len(), 1, "{report}");
    assert_eq!(report.violations[0].seq, Some(3));
}

#[test]
fn round_before_revocation_is_fine() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        2_999,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let revocation = ConsentRevoked {
        model_id: w.model.model_id.clone(),
        consent: w.alice_consent.id(),
    };
    w.ledger.push(&w.alice, 3_000, revocation);
    check(&w.ledger.events, &[]);
}

#[test]
fn revoking_someone_elses_consent_is_invalid_and_ineffective() {
    let mut w = world();
    let revocation = ConsentRevoked {
        model_id: w.model.model_id.clone(),
        consent: w.alice_consent.id(),
    };
    w.ledger.push(&w.bob, 2_500, revocation);
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    check(&w.ledger.events, &[Rule::RevocationInvalid]);
}

#[test]
fn round_after_expiry_is_detected() {
    let mut w = world_with(Some(3_000), None);
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        2_999,
        round(&w.model, 1, participants.clone(), 0.5, 0.5),
    );
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 2, participants, 0.5, 1.0),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentExpired]);
    assert_eq!(
        report.violations.len(),
        1,
        "round 1 was before expiry:\n{report}"
    );
    assert_eq!(report.violations[0].seq, Some(3));
}

#[test]
fn round_before_consent_is_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        1_500,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentNotYetGranted]);
    assert_eq!(report.violations.len(), 2);
}

#[test]
fn consent_for_another_model_is_detected() {
    let mut w = world();
    let other_model = model(&w.publisher, "other", Some(2.0), 10);
    w.ledger.push(&w.publisher, 1_100, other_model.clone());
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&other_model, 1, participants, 0.5, 0.5),
    );
    // The consents are for the first model and its card.
    check(
        &w.ledger.events,
        &[Rule::ConsentWrongModel, Rule::ConsentWrongCard],
    );
}

#[test]
fn consent_to_a_stale_card_is_detected() {
    let mut w = world();
    let mut stale = consent(&w.model, None, None);
    stale.card_hash = content_hash(b"an older card");
    let carol_consent = w.ledger.push(&w.carol, 2_000, stale);
    let mut participants = w.both();
    participants.push((w.carol.did(), carol_consent.id()));
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    check(&w.ledger.events, &[Rule::ConsentWrongCard]);
}

#[test]
fn privacy_budget_overrun_is_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 1.5, 1.5),
    );
    w.ledger.push(
        &w.publisher,
        4_000,
        round(&w.model, 2, participants, 1.0, 2.5),
    );
    let report = check(&w.ledger.events, &[Rule::PrivacyBudgetExceeded]);
    assert_eq!(report.violations[0].seq, Some(3));
}

#[test]
fn participants_epsilon_cap_is_enforced() {
    let mut w = world_with(None, Some(1.0));
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 1.0, 1.0),
    );
    w.ledger.push(
        &w.publisher,
        4_000,
        round(&w.model, 2, participants, 0.5, 1.5),
    );
    let report = check(&w.ledger.events, &[Rule::PrivacyBudgetExceeded]);
    assert!(report.violations[0].detail.contains("cap"), "{report}");
}

#[test]
fn decreasing_epsilon_total_is_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 1.0, 1.0),
    );
    w.ledger.push(
        &w.publisher,
        4_000,
        round(&w.model, 2, participants.clone(), 0.5, 0.8),
    );
    w.ledger.push(
        &w.publisher,
        5_000,
        round(&w.model, 3, participants, 0.9, 0.85),
    );
    let report = check(&w.ledger.events, &[Rule::PrivacyTotalMismatch]);
    assert_eq!(report.violations.len(), 3, "{report}");
}

#[test]
fn over_paid_pool_is_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let first = payout(
        &w.model,
        Some(1),
        vec![(w.alice.did(), 30), (w.bob.did(), 30)],
    );
    w.ledger.push(&w.publisher, 3_100, first);
    let second = payout(&w.model, None, vec![(w.alice.did(), 25), (w.bob.did(), 25)]);
    let second = w.ledger.push(&w.publisher, 3_200, second);
    let report = check(&w.ledger.events, &[Rule::PayoutExceedsPool]);
    assert_eq!(report.violations[0].event_id, Some(second.id()));
}

#[test]
fn paying_out_the_exact_pool_in_thirds_is_fine() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    for amount in [33, 33, 34] {
        let third = payout(&w.model, None, vec![(w.alice.did(), amount)]);
        w.ledger.push(&w.publisher, 3_100, third);
    }
    check(&w.ledger.events, &[]);
}

#[test]
fn a_payout_whose_amounts_and_carry_miss_its_allotment_is_detected() {
    let mut w = world();
    w.ledger
        .push(&w.publisher, 3_000, round(&w.model, 1, w.both(), 0.5, 0.5));
    let mut pay = payout(
        &w.model,
        Some(1),
        vec![(w.alice.did(), 10), (w.bob.did(), 10)],
    );
    pay.carried = 5;
    let bad = w.ledger.push(&w.publisher, 3_100, pay);
    let report = check(&w.ledger.events, &[Rule::PayoutDoesNotBalance]);
    assert_eq!(report.violations[0].event_id, Some(bad.id()));
    assert!(
        report.violations[0]
            .detail
            .contains("carries 5 of an allotment of 20"),
        "{report}"
    );
}

#[test]
fn a_payout_that_drops_what_the_previous_one_carried_is_detected() {
    let mut w = world();
    w.ledger
        .push(&w.publisher, 3_000, round(&w.model, 1, w.both(), 0.5, 0.5));
    let mut first = payout(&w.model, Some(1), vec![(w.alice.did(), 10)]);
    first.allotment = 50;
    first.carried = 40;
    w.ledger.push(&w.publisher, 3_100, first);
    // The next payout must distribute at least the 40 carried.
    let second = payout(&w.model, None, vec![(w.alice.did(), 10)]);
    let bad = w.ledger.push(&w.publisher, 3_200, second);
    let report = check(&w.ledger.events, &[Rule::PayoutExceedsPool]);
    assert_eq!(report.violations[0].event_id, Some(bad.id()));
}

#[test]
fn a_payout_to_an_owner_who_never_consented_is_detected() {
    let mut w = world();
    w.ledger
        .push(&w.publisher, 3_000, round(&w.model, 1, w.both(), 0.5, 0.5));
    let pay = payout(&w.model, Some(1), vec![(w.carol.did(), 10)]);
    w.ledger.push(&w.publisher, 3_100, pay);
    let report = check(&w.ledger.events, &[Rule::PayoutWithoutConsent]);
    assert!(report.violations[0].detail.contains("never consented"));
}

#[test]
fn payout_to_a_non_participant_is_detected() {
    let mut w = world();
    let participants = vec![(w.alice.did(), w.alice_consent.id())];
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 0.5, 0.5),
    );
    let pay = payout(
        &w.model,
        Some(1),
        vec![(w.alice.did(), 10), (w.bob.did(), 10)],
    );
    w.ledger.push(&w.publisher, 3_100, pay);
    let report = check(&w.ledger.events, &[Rule::PayoutToNonParticipant]);
    assert_eq!(
        report.violations.len(),
        1,
        "bob consented but was not in round 1"
    );
}

#[test]
fn round_by_someone_other_than_the_publisher_is_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger
        .push(&w.carol, 3_000, round(&w.model, 1, participants, 0.5, 0.5));
    let pay = payout(&w.model, None, vec![(w.alice.did(), 10)]);
    w.ledger.push(&w.carol, 3_100, pay);
    let report = check(&w.ledger.events, &[Rule::NotPublisher]);
    assert_eq!(report.violations.len(), 2);
}

#[test]
fn events_about_unpublished_models_are_detected() {
    let mut w = world();
    let ghost = model(&w.publisher, "ghost", Some(1.0), 1);
    w.ledger.push(&w.carol, 2_000, consent(&ghost, None, None));
    w.ledger
        .push(&w.publisher, 3_000, round(&ghost, 1, vec![], 0.1, 0.1));
    let report = check(&w.ledger.events, &[Rule::UnknownModel]);
    assert_eq!(report.violations.len(), 2);
}

#[test]
fn a_model_id_that_is_not_its_contracts_hash_is_detected() {
    let mut w = world();
    let mut swapped = model(&w.carol, "swapped", Some(2.0), 1);
    // The id of one contract over the text of another: owners would read other terms.
    swapped.contract_toml.push_str("# different terms\n");
    w.ledger.push(&w.carol, 5_000, swapped);
    let report = check(&w.ledger.events, &[Rule::ModelIdMismatch]);
    assert_eq!(report.violations.len(), 1);
    assert!(
        report.violations[0]
            .detail
            .contains("not the hash of its publisher")
    );
}

#[test]
fn second_publication_of_a_model_id_is_detected() {
    let mut w = world();
    w.ledger.push(&w.carol, 5_000, w.model.clone());
    let report = check(&w.ledger.events, &[Rule::DuplicateModel]);
    assert_eq!(report.violations[0].author, Some(w.carol.did()));
}

#[test]
fn duplicate_participants_and_round_order_are_detected() {
    let mut w = world();
    let mut participants = w.both();
    participants.push(participants[0]);
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 2, participants, 0.5, 0.5),
    );
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        4_000,
        round(&w.model, 2, participants, 0.5, 1.0),
    );
    check(
        &w.ledger.events,
        &[Rule::DuplicateParticipant, Rule::RoundOutOfOrder],
    );
}

#[test]
fn timestamps_going_backwards_in_a_chain_are_detected() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 0.5, 0.5),
    );
    w.ledger.push(
        &w.publisher,
        2_500,
        round(&w.model, 2, participants, 0.5, 1.0),
    );
    check(&w.ledger.events, &[Rule::ChainTimestamp]);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut w = world();
    let mut participants = w.both();
    participants.push((w.carol.did(), EventId::from_bytes([9; 32])));
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 2.5, 2.5),
    );
    let pay = payout(&w.model, Some(1), vec![(w.carol.did(), 500)]);
    w.ledger.push(&w.publisher, 3_100, pay);
    let mut events = w.ledger.events.clone();
    let mut bytes = w.bob_consent.encode();
    *bytes.last_mut().unwrap() ^= 0x80;
    events[2] = Event::decode(&bytes).unwrap();
    check(
        &events,
        &[
            Rule::Signature,
            Rule::ConsentMissing, // carol's and (its signature broken) bob's
            Rule::PrivacyBudgetExceeded,
            Rule::PayoutExceedsPool,
            Rule::PayoutWithoutConsent,
        ],
    );
}

#[test]
fn report_renders_as_text_and_json_with_stable_rule_names() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants, 2.5, 2.5),
    );
    let report = check(&w.ledger.events, &[Rule::PrivacyBudgetExceeded]);
    let text = report.to_string();
    assert!(
        text.starts_with("4 events, 3 authors, 1 model, 1 round: 1 violation\n"),
        "{text}"
    );
    assert!(
        text.contains("[privacy-budget-exceeded] did:key:z6Mk"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["violations"][0]["rule"], "privacy-budget-exceeded");
    assert_eq!(json["n_rounds"], 1);
    assert_eq!(
        json["violations"][0]["author"],
        w.publisher.did().to_string()
    );
}

#[test]
fn rule_names_are_unique_and_match_serde() {
    let names: BTreeSet<&str> = Rule::ALL.iter().map(|rule| rule.name()).collect();
    assert_eq!(names.len(), Rule::ALL.len());
    for rule in Rule::ALL {
        assert_eq!(
            serde_json::to_value(rule).unwrap(),
            serde_json::Value::String(rule.name().to_string())
        );
    }
}

/// Issue 9, finding 5: a fresh key re-signs a copy of the publication with an earlier
/// timestamp, then commits a round with the owners' consents and pays itself the pool.
#[test]
fn a_model_republished_by_another_key_with_an_earlier_timestamp_cannot_take_it_over() {
    let mut w = world();
    let participants = w.both();
    w.ledger.push(
        &w.publisher,
        3_000,
        round(&w.model, 1, participants.clone(), 0.5, 0.5),
    );
    let impostor = Keypair::insecure_from_seed(666);
    w.ledger.push(&impostor, 1, w.model.clone());
    w.ledger.push(
        &impostor,
        3_500,
        round(&w.model, 2, participants.clone(), 0.5, 1.0),
    );
    w.ledger.push(
        &impostor,
        4_000,
        payout(&w.model, None, vec![(w.alice.did(), 100)]),
    );
    let report = check(
        &w.ledger.events,
        &[Rule::ModelIdMismatch, Rule::NotPublisher],
    );
    // The real publisher's round is clean; everything the impostor signed is flagged.
    for violation in &report.violations {
        assert_eq!(violation.author, Some(impostor.did()), "{violation}");
    }
    assert_eq!(report.violations.len(), 3, "{report}");

    // Published under the impostor's own (correct) id, the copy is another model: the owners'
    // consents name the real model and publisher, so its round cannot use them.
    let mut v = world();
    let copy = ModelPublished {
        model_id: ModelId::for_publication(&impostor.did(), &v.model.contract_toml),
        ..v.model.clone()
    };
    v.ledger.push(&impostor, 1, copy.clone());
    let participants = v.both();
    v.ledger
        .push(&impostor, 3_000, round(&copy, 1, participants, 0.5, 0.5));
    let report = check(
        &v.ledger.events,
        &[Rule::ConsentWrongModel, Rule::ConsentWrongPublisher],
    );
    assert!(
        report
            .violations
            .iter()
            .all(|v| v.author == Some(impostor.did()))
    );
}

/// Issue 9, finding 6: the text says ε = 1, the declared terms say 1000, and a round spends
/// 500. Owners read the text; verify holds rounds to it.
#[test]
fn published_terms_that_differ_from_the_contract_text_are_detected_and_the_text_counts() {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let alice = Keypair::insecure_from_seed(2);
    let mut lying = model(&publisher, "lying", Some(1.0), 10);
    lying.terms.epsilon_budget = Some(1000.0);
    ledger.push(&publisher, 1_000, lying.clone());
    let granted = ledger.push(&alice, 2_000, consent(&lying, None, None));
    ledger.push(
        &publisher,
        3_000,
        round(&lying, 1, vec![(alice.did(), granted.id())], 500.0, 500.0),
    );
    let report = check(
        &ledger.events,
        &[Rule::TermsMismatch, Rule::PrivacyBudgetExceeded],
    );
    assert!(
        report
            .of_rule(Rule::PrivacyBudgetExceeded)
            .any(|v| v.detail.contains("budget 1")),
        "{report}"
    );
}

#[test]
fn an_unreadable_contract_does_not_count_as_a_publication() {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let mut broken = model(&publisher, "broken", None, 1);
    broken.contract_toml = "not a contract".into();
    broken.model_id = ModelId::for_publication(&publisher.did(), &broken.contract_toml);
    ledger.push(&publisher, 1_000, broken);
    let report = check(&ledger.events, &[Rule::ContractUnreadable]);
    assert!(report.violations[0].detail.contains("no `fields` line"));
}

/// Issue 9, finding 8: ε is recomputed from the contract's mechanism, never trusted.
#[test]
fn a_round_declaring_less_epsilon_than_the_contracts_mechanism_gives_is_detected() {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let alice = Keypair::insecure_from_seed(2);
    let mut m = model(&publisher, "accounted", Some(1.2), 10);
    m.contract_toml.push_str("epsilon_per_round = 0.5\n");
    m.model_id = ModelId::for_publication(&publisher.did(), &m.contract_toml);
    ledger.push(&publisher, 1_000, m.clone());
    let granted = ledger.push(
        &alice,
        2_000,
        ConsentGranted {
            model_id: m.model_id.clone(),
            publisher: publisher.did(),
            card_hash: m.card_hash.clone(),
            dataset_fingerprint: content_hash(b"rows"),
            fields: m.terms.required_fields.clone(),
            expires_at_ms: None,
            epsilon_cap: None,
            decided_by: None,
        },
    );
    let alice_in = vec![(alice.did(), granted.id())];
    // Honest first round: 0.5 as the mechanism gives.
    ledger.push(&publisher, 3_000, round(&m, 1, alice_in.clone(), 0.5, 0.5));
    // The second and third rounds claim 0.1 each; the mechanism says 1.0 and 1.5, past 1.2.
    ledger.push(&publisher, 4_000, round(&m, 2, alice_in.clone(), 0.1, 0.6));
    ledger.push(&publisher, 5_000, round(&m, 3, alice_in, 0.1, 0.7));
    let report = check(
        &ledger.events,
        &[Rule::EpsilonMismatch, Rule::PrivacyBudgetExceeded],
    );
    assert_eq!(report.of_rule(Rule::EpsilonMismatch).count(), 2, "{report}");
    assert!(
        report
            .of_rule(Rule::PrivacyBudgetExceeded)
            .all(|v| v.detail.contains("round 3")),
        "{report}"
    );
}

#[test]
fn a_consent_that_does_not_cover_what_the_model_reads_is_detected() {
    let mut w = world();
    let mut narrow = consent(&w.model, None, None);
    narrow.fields = vec!["age".into()];
    narrow.dataset_fingerprint = "rows".into();
    let carol_consent = w.ledger.push(&w.carol, 2_500, narrow);
    w.ledger.push(
        &w.publisher,
        3_000,
        round(
            &w.model,
            1,
            vec![(w.carol.did(), carol_consent.id())],
            0.5,
            0.5,
        ),
    );
    let report = check(&w.ledger.events, &[Rule::ConsentDoesNotCover]);
    assert_eq!(report.violations.len(), 2, "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.detail.contains("income"))
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.detail.contains("fingerprint"))
    );
}

/// Issue 9, finding 11: an owner's node records the privacy it spends on its own chain, so a
/// restart resumes from it; verify checks each record against the owner's consent, its cap,
/// the model's budget and the ε its mechanisms give.
#[test]
fn an_owners_privacy_records_verify_when_honest() {
    let mut w = world_with(None, Some(1.5));
    let bob_consent = w.bob_consent.id();
    // Rounds 1 and 2, then round 5 composing 3 rounds (3 and 4 were not asked), 0.25 each.
    w.ledger.push(
        &w.bob,
        3_000,
        privacy_spent(&w.model, bob_consent, 1, 1, 0.25, 0.25),
    );
    w.ledger.push(
        &w.bob,
        4_000,
        privacy_spent(&w.model, bob_consent, 2, 1, 0.25, 0.5),
    );
    w.ledger.push(
        &w.bob,
        5_000,
        privacy_spent(&w.model, bob_consent, 5, 3, 0.25, 1.25),
    );
    check(&w.ledger.events, &[]);
}

#[test]
fn a_privacy_record_understating_epsilon_or_passing_the_cap_is_detected() {
    let mut w = world_with(None, Some(1.0));
    let bob_consent = w.bob_consent.id();
    w.ledger.push(
        &w.bob,
        3_000,
        privacy_spent(&w.model, bob_consent, 1, 1, 0.5, 0.5),
    );
    // Claims 0.6 after a second round of 0.5: the mechanism gives 1.0, within the cap of 1.
    w.ledger.push(
        &w.bob,
        4_000,
        privacy_spent(&w.model, bob_consent, 2, 1, 0.5, 0.6),
    );
    // A third round brings the recomputed total to 1.5, past bob's cap of 1.
    w.ledger.push(
        &w.bob,
        5_000,
        privacy_spent(&w.model, bob_consent, 3, 1, 0.5, 1.5),
    );
    let report = check(
        &w.ledger.events,
        &[Rule::EpsilonMismatch, Rule::PrivacyBudgetExceeded],
    );
    assert!(
        report
            .of_rule(Rule::PrivacyBudgetExceeded)
            .all(|v| v.detail.contains("round 3") && v.detail.contains("owner's cap")),
        "{report}"
    );
}

#[test]
fn a_privacy_record_skipping_rounds_going_back_or_under_anothers_consent_is_detected() {
    let mut w = world();
    let bob_consent = w.bob_consent.id();
    let alice_consent = w.alice_consent.id();
    // Round 3 after nothing, composing 1 round: rounds 1 and 2 were never counted.
    w.ledger.push(
        &w.bob,
        3_000,
        privacy_spent(&w.model, bob_consent, 3, 1, 0.1, 0.1),
    );
    // Back to round 2.
    w.ledger.push(
        &w.bob,
        4_000,
        privacy_spent(&w.model, bob_consent, 2, 1, 0.1, 0.2),
    );
    // Under alice's consent.
    w.ledger.push(
        &w.bob,
        5_000,
        privacy_spent(&w.model, alice_consent, 4, 2, 0.1, 0.4),
    );
    let report = check(&w.ledger.events, &[Rule::PrivacyRecordInvalid]);
    let details: Vec<&str> = report
        .of_rule(Rule::PrivacyRecordInvalid)
        .map(|v| v.detail.as_str())
        .collect();
    assert_eq!(details.len(), 3, "{report}");
    assert!(
        details[0].contains("composes 1 round, but 3 passed"),
        "{report}"
    );
    assert!(
        details[1].contains("follows a record for round 3"),
        "{report}"
    );
    assert!(
        details[2].contains("is not its author's consent"),
        "{report}"
    );
}

#[test]
fn a_privacy_record_with_an_unreadable_mechanism_is_detected() {
    let mut w = world();
    let mut record = privacy_spent(&w.model, w.bob_consent.id(), 1, 1, 0.1, 0.1);
    record.mechanism = "gaussian, trust me".into();
    w.ledger.push(&w.bob, 3_000, record);
    let report = check(&w.ledger.events, &[Rule::PrivacyRecordInvalid]);
    assert!(
        report.violations[0].detail.contains("cannot be accounted"),
        "{report}"
    );
}

/// A model with a statistics phase (each release costs ε 0.5), alice and bob consenting.
fn statistics_world() -> (Ledger, Keypair, ModelPublished, Vec<(Did, EventId)>) {
    let mut ledger = Ledger::new();
    let publisher = Keypair::insecure_from_seed(1);
    let (alice, bob) = (
        Keypair::insecure_from_seed(2),
        Keypair::insecure_from_seed(3),
    );
    let model = model_with_statistics(&publisher, "income", 0.5);
    ledger.push(&publisher, 1_000, model.clone());
    let a = ledger.push(&alice, 2_000, consent(&model, None, None));
    let b = ledger.push(&bob, 2_000, consent(&model, None, None));
    let both = vec![(alice.did(), a.id()), (bob.did(), b.id())];
    (ledger, publisher, model, both)
}

const SCALING: &str = r#"{"columns":[{"name":"age","mean":38.6,"std":13.7}]}"#;

fn named(mut round: RoundCommitted, hash: &str) -> RoundCommitted {
    round.scaling_hash = Some(hash.to_string());
    round
}

#[test]
fn a_statistics_phase_named_by_every_round_and_accounted_first_verifies() {
    let (mut ledger, publisher, model, both) = statistics_world();
    let phase = statistics(&model, both.clone(), SCALING, 0.5);
    let hash = phase.scaling_hash.clone();
    ledger.push(&publisher, 3_000, phase);
    ledger.push(
        &publisher,
        4_000,
        named(round(&model, 1, both.clone(), 0.5, 1.0), &hash),
    );
    ledger.push(
        &publisher,
        5_000,
        named(round(&model, 2, both, 0.5, 1.5), &hash),
    );
    check(&ledger.events, &[]);
}

#[test]
fn a_statistics_phase_that_is_tampered_repeated_late_or_unnamed_is_flagged() {
    // Its scaling does not hash to its hash (the published scaling was swapped after hashing).
    let (mut ledger, publisher, model, both) = statistics_world();
    let mut phase = statistics(&model, both.clone(), SCALING, 0.5);
    let hash = phase.scaling_hash.clone();
    phase.scaling = SCALING.replace("38.6", "99.0");
    ledger.push(&publisher, 3_000, phase);
    ledger.push(
        &publisher,
        4_000,
        named(round(&model, 1, both.clone(), 0.5, 1.0), &hash),
    );
    let report = check(&ledger.events, &[Rule::StatisticsInvalid]);
    assert!(
        report.violations[0].detail.contains("hashes to"),
        "{report}"
    );

    // Committed twice: the second one is refused (the first stands, and rounds name it).
    let (mut ledger, publisher, model, both) = statistics_world();
    let phase = statistics(&model, both.clone(), SCALING, 0.5);
    let hash = phase.scaling_hash.clone();
    ledger.push(&publisher, 3_000, phase.clone());
    ledger.push(
        &publisher,
        3_500,
        statistics(&model, both.clone(), &SCALING.replace("13.7", "1.0"), 0.5),
    );
    ledger.push(
        &publisher,
        4_000,
        named(round(&model, 1, both.clone(), 0.5, 1.0), &hash),
    );
    let report = check(&ledger.events, &[Rule::StatisticsInvalid]);
    assert!(
        report.violations[0].detail.contains("already committed"),
        "{report}"
    );

    // After a round (which, for a model with a statistics phase, names no scaling).
    let (mut ledger, publisher, model, both) = statistics_world();
    ledger.push(&publisher, 3_000, round(&model, 1, both.clone(), 0.5, 0.5));
    ledger.push(
        &publisher,
        4_000,
        statistics(&model, both.clone(), SCALING, 1.0),
    );
    let report = check(&ledger.events, &[Rule::StatisticsInvalid]);
    let details: Vec<&str> = report
        .violations
        .iter()
        .map(|v| v.detail.as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("names no scaling")),
        "{report}"
    );
    assert!(
        details.iter().any(|d| d.contains("after 1 round")),
        "{report}"
    );

    // A round naming another scaling than the committed one.
    let (mut ledger, publisher, model, both) = statistics_world();
    ledger.push(
        &publisher,
        3_000,
        statistics(&model, both.clone(), SCALING, 0.5),
    );
    ledger.push(
        &publisher,
        4_000,
        named(round(&model, 1, both, 0.5, 1.0), &content_hash(b"other")),
    );
    check(&ledger.events, &[Rule::StatisticsInvalid]);
}

#[test]
fn a_statistics_phase_answers_for_its_consents_and_its_epsilon() {
    // A participant without consent, and a phase that declares less ε than the contract's
    // mechanism gives (0.5 per release): both flagged, like a round's.
    let (mut ledger, publisher, model, mut both) = statistics_world();
    let carol = Keypair::insecure_from_seed(4);
    both.push((carol.did(), EventId::from_bytes([9; 32])));
    ledger.push(&publisher, 3_000, statistics(&model, both, SCALING, 0.1));
    check(
        &ledger.events,
        &[Rule::ConsentMissing, Rule::EpsilonMismatch],
    );

    // The rounds' ε counts the phase: a round declaring only its own is flagged.
    let (mut ledger, publisher, model, both) = statistics_world();
    let phase = statistics(&model, both.clone(), SCALING, 0.5);
    let hash = phase.scaling_hash.clone();
    ledger.push(&publisher, 3_000, phase);
    ledger.push(
        &publisher,
        4_000,
        named(round(&model, 1, both, 0.5, 0.5), &hash),
    );
    check(&ledger.events, &[Rule::EpsilonMismatch]);

    // A model without a statistics phase cannot have one committed.
    let w = world();
    let mut ledger = w.ledger;
    ledger.push(
        &w.publisher,
        3_000,
        statistics(&w.model, vec![], SCALING, 0.0),
    );
    let report = check(&ledger.events, &[Rule::StatisticsInvalid]);
    assert!(
        report.violations[0].detail.contains("standardises nothing"),
        "{report}"
    );
}

#[test]
fn an_owner_records_the_statistics_phase_as_round_zero_and_composes_rounds_after_it() {
    let (mut ledger, publisher, model, both) = statistics_world();
    let alice = Keypair::insecure_from_seed(2);
    let alice_consent = both[0].1;
    let phase = statistics(&model, both.clone(), SCALING, 0.5);
    ledger.push(&publisher, 3_000, phase);
    ledger.push(
        &alice,
        3_000,
        privacy_spent(&model, alice_consent, 0, 1, 0.5, 0.5),
    );
    ledger.push(
        &alice,
        4_000,
        privacy_spent(&model, alice_consent, 1, 1, 0.5, 1.0),
    );
    check(&ledger.events, &[]);
    // The phase is one release: a record composing two at round 0 is refused.
    let (mut ledger, publisher, model, both) = statistics_world();
    ledger.push(
        &publisher,
        3_000,
        statistics(&model, both.clone(), SCALING, 0.5),
    );
    ledger.push(
        &alice,
        3_000,
        privacy_spent(&model, both[0].1, 0, 2, 0.5, 1.0),
    );
    check(&ledger.events, &[Rule::PrivacyRecordInvalid]);
}

#[test]
fn refusals_verify_and_one_of_an_unknown_model_is_flagged() {
    let mut w = world();
    let refusal = |model_id: ModelId| ConsentRefused {
        model_id,
        publisher: w.publisher.did(),
        card_hash: w.model.card_hash.clone(),
        decided_by: Some(PolicyDecision {
            rule: "no-diabetes".into(),
            policy_hash: content_hash(b"policy"),
        }),
    };
    let known = refusal(w.model.model_id.clone());
    let unknown = refusal(ModelId::from("not-published"));
    w.ledger.push(&w.carol, 3_000, known);
    check(&w.ledger.events, &[]);
    w.ledger.push(&w.carol, 3_100, unknown);
    check(&w.ledger.events, &[Rule::UnknownModel]);
}
