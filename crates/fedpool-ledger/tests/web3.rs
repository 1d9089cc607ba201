//! Wallet links, anchors and settlements as `verify` sees them: each rule played by an
//! attacker (a node claiming someone else's wallet, a replayed link, a publisher paying twice,
//! paying more than it owed, paying a wallet nobody linked, rewriting anchored history).

use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use fedpool_ledger::anchor::heads_root;
use fedpool_ledger::wallet::{WalletAction, wallet_message};
use fedpool_ledger::*;

struct NoContracts;

impl ContractRules for NoContracts {
    fn terms(&self, _: &str) -> Result<ModelTerms, String> {
        Ok(ModelTerms {
            required_fields: vec![],
            epsilon_budget: None,
            delta: None,
            reward_pool: 1000,
            currency: "points".into(),
        })
    }
    fn epsilon_total(
        &self,
        _: &str,
        _: Option<&RoundPlan>,
        _: &[RoundPlan],
    ) -> Result<Option<f64>, String> {
        Ok(None)
    }
    fn node_epsilons(&self, _: &str, h: &[Vec<PrivacyStep<'_>>]) -> Vec<Result<Vec<f64>, String>> {
        vec![Ok(vec![]); h.len()]
    }
}

fn network() -> NetworkId {
    NetworkId::new("fedpool-web3-test").unwrap()
}

fn wallet(seed: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_slice(&[seed; 32]).unwrap()
}

fn address(wallet: &PrivateKeySigner) -> [u8; 20] {
    wallet.address().into_array()
}

/// An author's chain, signed event by event.
struct Chain {
    key: Keypair,
    events: Vec<Event>,
}

impl Chain {
    fn new(seed: u64) -> Chain {
        Chain {
            key: Keypair::insecure_from_seed(seed),
            events: Vec::new(),
        }
    }

    fn next_seq(&self) -> u64 {
        self.events.len() as u64 + 1
    }

    fn push(&mut self, timestamp_ms: u64, body: impl Into<Body>) -> Event {
        let event = Event::sign(
            &network(),
            &self.key,
            self.next_seq(),
            self.events.last().map(Event::id),
            timestamp_ms,
            body,
        )
        .unwrap();
        self.events.push(event.clone());
        event
    }

    /// A link (or unlink) of `signer`'s address, signed by `signer` for `seq`, `network`.
    fn wallet_event(
        &mut self,
        at: u64,
        action: WalletAction,
        named: [u8; 20],
        signer: &PrivateKeySigner,
        signed_seq: u64,
        signed_network: &NetworkId,
    ) -> Event {
        let message = wallet_message(
            action,
            signed_network,
            &self.key.did(),
            31337,
            &named,
            signed_seq,
        );
        let wallet_signature = signer
            .sign_message_sync(message.as_bytes())
            .unwrap()
            .as_bytes();
        match action {
            WalletAction::Link => self.push(
                at,
                WalletLinked {
                    chain_id: 31337,
                    address: named,
                    wallet_signature,
                },
            ),
            WalletAction::Unlink => self.push(
                at,
                WalletUnlinked {
                    chain_id: 31337,
                    address: named,
                    wallet_signature,
                },
            ),
        }
    }

    fn link(&mut self, at: u64, signer: &PrivateKeySigner) -> Event {
        let seq = self.next_seq();
        self.wallet_event(
            at,
            WalletAction::Link,
            address(signer),
            signer,
            seq,
            &network(),
        )
    }
}

fn verify(chains: &[&Chain]) -> VerifyReport {
    let events: Vec<Event> = chains.iter().flat_map(|c| c.events.clone()).collect();
    verify_events(&network(), &events, &NoContracts)
}

fn flagged(report: &VerifyReport, rule: Rule) -> Vec<&Violation> {
    report.of_rule(rule).collect()
}

#[test]
fn a_wallet_link_counts_only_with_the_named_wallets_signature_for_this_node_network_and_seq() {
    let mut owner = Chain::new(1);
    let own_wallet = wallet(7);
    let someone_elses = wallet(8);
    owner.link(10, &own_wallet);
    assert!(flagged(&verify(&[&owner]), Rule::WalletSignatureInvalid).is_empty());

    // Claiming another's address with one's own signature.
    let mut thief = Chain::new(2);
    thief.wallet_event(
        10,
        WalletAction::Link,
        address(&someone_elses),
        &own_wallet,
        1,
        &network(),
    );
    // A genuine signature replayed at another seq, and one made for another network.
    let mut replayer = Chain::new(3);
    replayer.link(10, &own_wallet);
    replayer.wallet_event(
        11,
        WalletAction::Link,
        address(&own_wallet),
        &own_wallet,
        1,
        &network(),
    );
    let elsewhere = NetworkId::new("another-network").unwrap();
    replayer.wallet_event(
        12,
        WalletAction::Link,
        address(&own_wallet),
        &own_wallet,
        3,
        &elsewhere,
    );
    let report = verify(&[&owner, &thief, &replayer]);
    let bad = flagged(&report, Rule::WalletSignatureInvalid);
    let mut flagged_at: Vec<(Did, u64)> = bad
        .iter()
        .map(|v| (v.author.unwrap(), v.seq.unwrap()))
        .collect();
    flagged_at.sort();
    let mut expected = vec![
        (thief.key.did(), 1),
        (replayer.key.did(), 2),
        (replayer.key.did(), 3),
    ];
    expected.sort();
    assert_eq!(flagged_at, expected, "{report}");
    // Another node's copy of the owner's link is no link for it: the message names the DID.
    let events: Vec<&Event> = thief.events.iter().chain(&replayer.events).collect();
    let links = WalletLinks::from_events(&network(), &events);
    assert_eq!(links.linked_now(&thief.key.did(), 31337), None);
    assert_eq!(
        links.linked_now(&replayer.key.did(), 31337),
        Some(address(&own_wallet)),
        "the valid first link stands"
    );
}

/// A publisher with one model and one payout: owner A paid 70, owner B paid 30.
fn paid_model() -> (Chain, Chain, Chain, ModelId, EventId) {
    let mut publisher = Chain::new(10);
    let contract = "name = \"m\"";
    let model_id = ModelId::for_publication(&publisher.key.did(), contract);
    publisher.push(
        1,
        ModelPublished {
            model_id: model_id.clone(),
            name: "m".into(),
            version: "1".into(),
            contract_toml: contract.into(),
            card_hash: content_hash(b"card"),
            terms: NoContracts.terms("").unwrap(),
        },
    );
    let a = Chain::new(11);
    let b = Chain::new(12);
    let paid = publisher.push(
        2,
        RewardsPaid {
            model_id: model_id.clone(),
            round: Some(1),
            allotment: 100,
            payouts: vec![
                Payout {
                    owner: a.key.did(),
                    score: 0.7,
                    amount: 70,
                },
                Payout {
                    owner: b.key.did(),
                    score: 0.3,
                    amount: 30,
                },
            ],
            carried: 0,
            method: "test".into(),
            details: "{}".into(),
        },
    );
    (publisher, a, b, model_id, paid.id())
}

fn settlement(
    model_id: &ModelId,
    nonce: u64,
    transfers: Vec<(Did, [u8; 20], u64)>,
    covers: EventId,
) -> RewardsSettled {
    RewardsSettled {
        model_id: model_id.clone(),
        chain_id: 31337,
        payouts_contract: [1; 20],
        token: [2; 20],
        nonce,
        block_number: 5,
        tx_hash: [nonce as u8; 32],
        transfers: transfers
            .into_iter()
            .map(|(owner, address, amount)| Transfer {
                owner,
                address,
                amount,
            })
            .collect(),
        covers: vec![covers],
    }
}

const SETTLEMENT_RULES: [Rule; 4] = [
    Rule::SettlementReplayed,
    Rule::SettlementExceedsRewards,
    Rule::SettlementToUnlinkedWallet,
    Rule::NotPublisher,
];

fn settlement_violations(report: &VerifyReport) -> Vec<(Rule, u64)> {
    report
        .violations
        .iter()
        .filter(|v| SETTLEMENT_RULES.contains(&v.rule))
        .map(|v| (v.rule, v.seq.unwrap()))
        .collect()
}

#[test]
fn a_settlement_pays_linked_wallets_what_the_covered_payouts_owe_and_never_twice() {
    let (mut publisher, mut a, b, model_id, paid) = paid_model();
    let wallet_a = wallet(21);
    a.link(3, &wallet_a);
    // Owner A is paid in two batches (40 then 30); B, with no wallet, keeps its credit.
    publisher.push(
        4,
        settlement(
            &model_id,
            1,
            vec![(a.key.did(), address(&wallet_a), 40)],
            paid,
        ),
    );
    publisher.push(
        5,
        settlement(
            &model_id,
            2,
            vec![(a.key.did(), address(&wallet_a), 30)],
            paid,
        ),
    );
    let report = verify(&[&publisher, &a, &b]);
    assert_eq!(settlement_violations(&report), vec![], "{report}");

    // The attacks, each on its own copy of the honest history.
    let attack = |body: RewardsSettled, signer: Option<&mut Chain>| {
        let (mut publisher, mut a, b, _, _) = paid_model();
        a.link(3, &wallet_a);
        publisher.push(
            4,
            settlement(
                &model_id,
                1,
                vec![(a.key.did(), address(&wallet_a), 40)],
                paid,
            ),
        );
        let seq = match signer {
            Some(other) => {
                other.push(6, body);
                let report = verify(&[&publisher, &a, &b, other]);
                return settlement_violations(&report);
            }
            None => publisher.push(6, body).seq(),
        };
        let report = verify(&[&publisher, &a, &b]);
        assert!(seq > 0);
        settlement_violations(&report)
    };
    // Replaying batch 1.
    assert_eq!(
        attack(
            settlement(
                &model_id,
                1,
                vec![(a.key.did(), address(&wallet_a), 40)],
                paid
            ),
            None
        ),
        vec![(Rule::SettlementReplayed, 4)]
    );
    // A new nonce paying more than is owed (40 settled + 31 > 70).
    assert_eq!(
        attack(
            settlement(
                &model_id,
                2,
                vec![(a.key.did(), address(&wallet_a), 31)],
                paid
            ),
            None
        ),
        vec![(Rule::SettlementExceedsRewards, 4)]
    );
    // B's credit paid to a wallet B never linked.
    assert_eq!(
        attack(
            settlement(
                &model_id,
                2,
                vec![(b.key.did(), address(&wallet(99)), 30)],
                paid
            ),
            None
        ),
        vec![(Rule::SettlementToUnlinkedWallet, 4)]
    );
    // Someone else "settling" the model.
    let mut stranger = Chain::new(50);
    assert_eq!(
        attack(
            settlement(
                &model_id,
                9,
                vec![(a.key.did(), address(&wallet_a), 1)],
                paid
            ),
            Some(&mut stranger)
        ),
        vec![(Rule::NotPublisher, 1)]
    );
}

#[test]
fn after_an_unlink_the_old_wallet_is_not_paid() {
    let (mut publisher, mut a, b, model_id, paid) = paid_model();
    let wallet_a = wallet(21);
    a.link(3, &wallet_a);
    let seq = a.next_seq();
    a.wallet_event(
        4,
        WalletAction::Unlink,
        address(&wallet_a),
        &wallet_a,
        seq,
        &network(),
    );
    publisher.push(
        5,
        settlement(
            &model_id,
            1,
            vec![(a.key.did(), address(&wallet_a), 70)],
            paid,
        ),
    );
    let report = verify(&[&publisher, &a, &b]);
    assert_eq!(
        settlement_violations(&report),
        vec![(Rule::SettlementToUnlinkedWallet, 3)],
        "{report}"
    );
    assert!(flagged(&report, Rule::WalletSignatureInvalid).is_empty());
}

/// A resend names a new transaction for a batch its author recorded and pays nothing itself:
/// one that names no batch, another author's batch, or the wrong nonce is flagged, and an
/// honest one changes no balance (a later batch still may not exceed what is owed).
#[test]
fn a_resend_names_exactly_a_batch_its_author_settled() {
    let (mut publisher, mut a, b, model_id, paid) = paid_model();
    let wallet_a = wallet(21);
    a.link(3, &wallet_a);
    let batch = publisher.push(
        4,
        settlement(
            &model_id,
            1,
            vec![(a.key.did(), address(&wallet_a), 70)],
            paid,
        ),
    );
    let resend = |nonce: u64, settlement: EventId| SettlementResent {
        model_id: model_id.clone(),
        settlement,
        nonce,
        block_number: 9,
        tx_hash: [0xee; 32],
    };
    publisher.push(5, resend(1, batch.id()));
    // Resent twice (two reorganisations): still one payment on the ledger.
    publisher.push(6, resend(1, batch.id()));
    let report = verify(&[&publisher, &a, &b]);
    assert!(
        flagged(&report, Rule::SettlementResentInvalid).is_empty()
            && settlement_violations(&report).is_empty(),
        "{report}"
    );

    // Wrong nonce; a batch that does not exist; another author's batch.
    // (Copies of the publisher's honest chain; paid_model's publisher is seed 10.)
    let copy = |chain: &Chain| Chain {
        key: Keypair::insecure_from_seed(10),
        events: chain.events.clone(),
    };
    let mut wrong = copy(&publisher);
    wrong.push(7, resend(2, batch.id()));
    wrong.push(8, resend(1, EventId::from_bytes([3; 32])));
    let mut stranger = Chain::new(13);
    stranger.push(1, resend(1, batch.id()));
    let report = verify(&[&wrong, &a, &b, &stranger]);
    let seqs: Vec<(String, u64)> = flagged(&report, Rule::SettlementResentInvalid)
        .iter()
        .map(|v| (v.author.unwrap().to_string(), v.seq.unwrap()))
        .collect();
    let publisher_did = publisher.key.did().to_string();
    let stranger_did = stranger.key.did().to_string();
    assert_eq!(seqs.len(), 3, "{report}");
    for expected in [
        (publisher_did.clone(), 6),
        (publisher_did, 7),
        (stranger_did, 1),
    ] {
        assert!(seqs.contains(&expected), "{expected:?} in {seqs:?}");
    }
    // A resend moves no money: a new batch for more than is owed is still refused.
    let mut over = copy(&publisher);
    over.push(
        7,
        settlement(
            &model_id,
            2,
            vec![(a.key.did(), address(&wallet_a), 1)],
            paid,
        ),
    );
    let report = verify(&[&over, &a, &b]);
    assert_eq!(
        settlement_violations(&report),
        vec![(Rule::SettlementExceedsRewards, 6)],
        "{report}"
    );
}

fn anchor_of(heads: Vec<ChainHead>) -> ChainAnchored {
    ChainAnchored {
        chain_id: 31337,
        contract: [3; 20],
        anchor_index: 0,
        block_number: 7,
        tx_hash: [4; 32],
        root: heads_root(&heads),
        heads,
    }
}

#[test]
fn rewritten_or_truncated_anchored_history_is_flagged_with_its_author_and_height() {
    let (publisher, mut a, _, _, _) = paid_model();
    a.link(3, &wallet(21));
    a.link(4, &wallet(22));
    let mut anchorer = Chain::new(30);
    let heads = |chains: &[&Chain]| -> Vec<ChainHead> {
        chains
            .iter()
            .map(|c| {
                let last = c.events.last().unwrap();
                ChainHead {
                    author: last.author(),
                    seq: last.seq(),
                    id: last.id(),
                }
            })
            .collect()
    };
    anchorer.push(10, anchor_of(heads(&[&publisher, &a])));
    let report = verify(&[&publisher, &a, &anchorer]);
    assert!(
        flagged(&report, Rule::AnchoredHistoryRewritten).is_empty(),
        "{report}"
    );
    assert!(flagged(&report, Rule::AnchorRootMismatch).is_empty());

    // The owner rewrites its chain: the same links, signed again a millisecond later.
    let mut rewritten = Chain::new(11);
    for event in &a.events {
        rewritten.push(event.timestamp_ms() + 1, event.body().clone());
    }
    let report = verify(&[&publisher, &rewritten, &anchorer]);
    let flags = flagged(&report, Rule::AnchoredHistoryRewritten);
    assert_eq!(flags.len(), 1, "{report}");
    assert_eq!(flags[0].author, Some(a.key.did()));
    assert_eq!(flags[0].seq, Some(2));
    assert_eq!(flags[0].event_id, Some(rewritten.events[1].id()));
    // Truncated below the anchored height.
    let mut truncated = Chain::new(11);
    truncated.events.push(a.events[0].clone());
    let report = verify(&[&publisher, &truncated, &anchorer]);
    let flags = flagged(&report, Rule::AnchoredHistoryRewritten);
    assert_eq!(flags.len(), 1, "{report}");
    assert_eq!(
        (flags[0].author, flags[0].seq),
        (Some(a.key.did()), Some(2))
    );
    assert!(
        flags[0].detail.contains("only to height 1"),
        "{}",
        flags[0].detail
    );

    // An anchor event whose root is not its heads' root.
    let mut liar = Chain::new(31);
    let mut anchor = anchor_of(heads(&[&publisher]));
    anchor.root = [9; 32];
    liar.push(10, anchor);
    let report = verify(&[&publisher, &a, &liar]);
    assert_eq!(
        flagged(&report, Rule::AnchorRootMismatch).len(),
        1,
        "{report}"
    );
}
