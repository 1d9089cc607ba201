//! Owners' consent policies in the simulation: each owner's policy decides, every automatic
//! decision is on the ledger naming its rule, and an owner no rule decides is never asked.

mod common;

use common::digits;
use fedpool_core::Contract;
use fedpool_data::Partition;
use fedpool_ledger::{Body, NetworkId, Store};
use fedpool_runtime::{LedgerChoice, OwnerChoice, OwnerPolicy, Simulation, SimulationOptions};

const GRANT_POSTAL: &str = "dataset = \"mine\"\n[[rule]]\nname = \"postal\"\naction = \"grant\"\npurpose_contains = [\"postal\"]\n";
const REFUSE_SCANS: &str =
    "[[rule]]\nname = \"no-scans\"\naction = \"refuse\"\npopulation_contains = \"scanned\"\n";
/// Decides nothing for the plain digits contract: it has no ε budget.
const ONLY_PRIVATE: &str = "dataset = \"mine\"\n[[rule]]\nname = \"only-private\"\naction = \"grant\"\nmax_epsilon = 4.0\n";

#[test]
fn each_owners_policy_decides_on_the_ledger_with_its_rule_and_an_undecided_owner_is_never_asked() {
    let (contract, table) = digits();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut options = SimulationOptions::new(9, Partition::Iid, 3);
    options.rounds = Some(2);
    options.ledger = LedgerChoice::At(path.clone());
    options.owner_policies = [
        ("grant.toml", GRANT_POSTAL),
        ("refuse.toml", REFUSE_SCANS),
        ("private.toml", ONLY_PRIVATE),
    ]
    .iter()
    .map(|(name, text)| OwnerPolicy::from_toml(text, name).unwrap())
    .collect();
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let choices = sim.owner_choices().to_vec();
    for (client, choice) in choices.iter().enumerate() {
        match client % 3 {
            0 => assert_eq!(choice.rule(), Some("postal"), "{choice:?}"),
            1 => assert!(
                matches!(choice, OwnerChoice::Refuse { .. }) && choice.rule() == Some("no-scans"),
                "{choice:?}"
            ),
            _ => assert_eq!(*choice, OwnerChoice::Waits),
        }
    }
    assert!(choices[0].consents());
    let report = sim.run(|_| {}).unwrap();
    let ledger = report.ledger.as_ref().unwrap();
    assert!(ledger.verify.is_ok(), "{}", ledger.verify);
    assert_eq!(
        report.n_requests_to_refusers, 0,
        "neither a refusing nor a waiting owner is ever asked"
    );
    assert_eq!(report.n_contributing_clients, 3);

    let store = Store::open(&path, &NetworkId::new("fedpool-sim").unwrap()).unwrap();
    let mut granted = 0;
    let mut refused = 0;
    let mut deciders = std::collections::BTreeSet::new();
    for event in store.events().unwrap() {
        match event.body() {
            Body::ConsentGranted(consent) => {
                assert_eq!(consent.decided_by.as_ref().unwrap().rule, "postal");
                granted += 1;
                deciders.insert(event.author());
            }
            Body::ConsentRefused(refusal) => {
                let decision = refusal.decided_by.as_ref().unwrap();
                assert_eq!(decision.rule, "no-scans");
                assert_eq!(
                    decision.policy_hash,
                    fedpool_ledger::content_hash(REFUSE_SCANS.as_bytes())
                );
                refused += 1;
                deciders.insert(event.author());
            }
            _ => {}
        }
    }
    assert_eq!((granted, refused), (3, 3));
    assert_eq!(
        deciders.len(),
        6,
        "the waiting owners put nothing on the ledger"
    );
}

/// Under secure aggregation the publisher sees sums only: a contract that aggregates per group
/// is valued from the sums its groups release and the estimates are reported, but nothing is
/// paid, as the card of a secure contract says; the ledger verifies. One sum per round is not
/// valued at all.
#[test]
fn a_securely_aggregated_model_reports_group_estimates_and_pays_nothing_by_them() {
    let mut contract = Contract::from_toml(
        include_str!("../../../contracts/digits_private.toml"),
        "contracts/digits_private.toml",
    )
    .unwrap();
    let (_, table) = digits();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut options = SimulationOptions::new(30, Partition::Iid, 5);
    options.rounds = Some(4);
    options.value_contributions = true;
    let mut one_sum = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = one_sum.run(|_| {}).unwrap();
    assert!(report.rounds.iter().all(|r| r.completed));
    assert!(
        report.values.as_ref().unwrap().iter().all(|v| *v == 0.0),
        "one sum per round values no one"
    );

    contract.privacy.secure_aggregation_group_size = Some(5);
    options.ledger = LedgerChoice::At(path.clone());
    let mut sim = Simulation::prepare(&contract, &table, &options).unwrap();
    let report = sim.run(|_| {}).unwrap();
    assert_eq!(report.plain_updates_seen, 0);
    let ledger = report.ledger.as_ref().unwrap();
    assert!(ledger.verify.is_ok(), "{}", ledger.verify);
    let estimates = report.group_estimates.as_ref().unwrap();
    assert!(
        estimates.iter().any(|v| *v != 0.0),
        "the groups were valued: {estimates:?}"
    );
    assert_eq!(report.values.as_ref(), Some(estimates));
    assert!(report.rewards.as_ref().unwrap().iter().all(|r| *r == 0));
    let store = Store::open(&path, &NetworkId::new("fedpool-sim").unwrap()).unwrap();
    assert!(
        !store
            .events()
            .unwrap()
            .iter()
            .any(|e| matches!(e.body(), Body::RewardsPaid(_))),
        "no payout by contribution under secure aggregation"
    );
}
