//! `verify` reads contracts through `ContractReader`: the terms a text states, and the ε its
//! rounds cost, computed exactly as the publisher and the nodes compute them.

use fedpool_core::Contract;
use fedpool_ledger::{ContractRules, RoundPlan};
use fedpool_runtime::{ContractReader, contract_terms};

const MNIST_PRIVATE: &str = include_str!("../../../contracts/mnist_private.toml");
const DIGITS: &str = include_str!("../../../contracts/digits.toml");

#[test]
fn the_terms_verify_derives_are_the_ones_publish_declares() {
    let contract = Contract::from_toml(MNIST_PRIVATE, "mnist_private.toml").unwrap();
    assert_eq!(
        ContractReader.terms(MNIST_PRIVATE).unwrap(),
        contract_terms(&contract)
    );
    let error = ContractReader.terms("epsilon_budget = 1").unwrap_err();
    assert!(!error.is_empty());
}

#[test]
fn epsilon_is_recomputed_from_the_contracts_mechanism() {
    // 1,000 owners asked each round (each contributes by its own coin at q = 0.1), clip 1:
    // the figure `fedpool privacy contract contracts/mnist_private.toml --owners 1000` prints.
    let plan = RoundPlan {
        asked: 1000,
        eligible: 1000,
        clip_norm: 1.0,
    };
    let thirty = ContractReader
        .epsilon_total(MNIST_PRIVATE, None, &[plan; 30])
        .unwrap()
        .unwrap();
    assert!((thirty - 6.308).abs() < 0.01, "ε = {thirty}");
    let one = ContractReader
        .epsilon_total(MNIST_PRIVATE, None, &[plan])
        .unwrap()
        .unwrap();
    assert!(one > 0.0 && one < thirty);
    // A contract without noise spends nothing that could be recomputed.
    assert_eq!(
        ContractReader.epsilon_total(DIGITS, None, &[plan]).unwrap(),
        None
    );
}

#[test]
fn a_publication_binds_consent_to_the_contracts_terms_not_to_the_cards_words() {
    // Rewording how a card renders must leave every consent valid: the card hash a
    // publication carries (and consents name) is the hash of the canonical structured terms,
    // never of the rendered sentences.
    let contract = Contract::from_toml(DIGITS, "digits.toml").unwrap();
    let publisher = fedpool_ledger::Keypair::insecure_from_seed(1);
    let published = fedpool_runtime::publication(&contract, DIGITS, &publisher.did());
    assert_eq!(
        published.card_hash,
        fedpool_ledger::content_hash(contract.canonical_terms().as_bytes())
    );
    let rendered = fedpool_core::CardTerms::from_contract(&contract).canonical_json();
    assert_ne!(
        published.card_hash,
        fedpool_ledger::content_hash(rendered.as_bytes())
    );
}
