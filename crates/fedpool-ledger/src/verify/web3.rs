//! Wallet, anchor and settlement rules: a wallet link carries its wallet's signature; an
//! anchor's root is the root of the heads it lists, and no anchored head was rewritten; a
//! settlement is the model publisher's, never reuses a nonce, pays only linked wallets, and
//! never pays an owner more than the rewards it covers (less earlier settlements).

use std::collections::{HashMap, HashSet};

use super::{Check, Rule};
use crate::wallet::{WalletAction, format_address, hex, recover_signer, wallet_message};
use crate::{Body, Did, Event, EventId, ModelId, NetworkId, anchor::heads_root};

pub(super) fn check_web3(check: &mut Check, network: &NetworkId, admissible: &[&Event]) {
    check_wallet_signatures(check, network, admissible);
    check_anchors(check, admissible);
    check_settlements(check, network, admissible);
    check_resends(check, admissible);
}

/// A resend only names a new transaction for a batch its author recorded: it pays nothing
/// itself, so it must name that batch exactly.
fn check_resends(check: &mut Check, admissible: &[&Event]) {
    let by_id: HashMap<EventId, &Event> = admissible.iter().map(|e| (e.id(), *e)).collect();
    for &event in admissible {
        let Body::SettlementResent(resent) = event.body() else {
            continue;
        };
        let problem = match by_id.get(&resent.settlement).map(|e| (e, e.body())) {
            Some((recorded, Body::RewardsSettled(batch))) => {
                if recorded.author() != event.author() {
                    Some(format!(
                        "resends {}, a batch settled by {}, not by its author",
                        resent.settlement,
                        recorded.author()
                    ))
                } else if batch.model_id != resent.model_id || batch.nonce != resent.nonce {
                    Some(format!(
                        "names batch {} of model {}, but {} records batch {} of model {}",
                        resent.nonce,
                        resent.model_id,
                        resent.settlement,
                        batch.nonce,
                        batch.model_id
                    ))
                } else {
                    None
                }
            }
            _ => Some(format!(
                "resends {}, which is no rewards-settled event in the ledger",
                resent.settlement
            )),
        };
        if let Some(detail) = problem {
            check.flag(Rule::SettlementResentInvalid, event, detail);
        }
    }
}

/// A link or unlink: what it claims, and whether the named wallet signed it (for this network,
/// author, chain and seq).
struct WalletClaim {
    action: WalletAction,
    chain_id: u64,
    address: [u8; 20],
    /// The signer recovered from the wallet signature, or why none could be.
    signer: Result<[u8; 20], String>,
}

impl WalletClaim {
    fn of(network: &NetworkId, event: &Event) -> Option<WalletClaim> {
        let (action, chain_id, address, signature) = match event.body() {
            Body::WalletLinked(l) => (
                WalletAction::Link,
                l.chain_id,
                l.address,
                &l.wallet_signature,
            ),
            Body::WalletUnlinked(u) => (
                WalletAction::Unlink,
                u.chain_id,
                u.address,
                &u.wallet_signature,
            ),
            _ => return None,
        };
        let message = wallet_message(
            action,
            network,
            &event.author(),
            chain_id,
            &address,
            event.seq(),
        );
        Some(WalletClaim {
            action,
            chain_id,
            address,
            signer: recover_signer(&message, signature),
        })
    }

    fn is_signed_by_its_wallet(&self) -> bool {
        self.signer
            .as_ref()
            .is_ok_and(|signer| *signer == self.address)
    }
}

fn check_wallet_signatures(check: &mut Check, network: &NetworkId, admissible: &[&Event]) {
    for &event in admissible {
        let Some(claim) = WalletClaim::of(network, event) else {
            continue;
        };
        let action = claim.action;
        match &claim.signer {
            Ok(signer) if *signer == claim.address => {}
            Ok(signer) => check.flag(
                Rule::WalletSignatureInvalid,
                event,
                format!(
                    "the wallet signature of this {action} is by {}, not by {}",
                    format_address(signer),
                    format_address(&claim.address)
                ),
            ),
            Err(reason) => check.flag(
                Rule::WalletSignatureInvalid,
                event,
                format!("the wallet signature of this {action} cannot be read: {reason}"),
            ),
        }
    }
}

/// The wallet each owner has linked on each chain, as it stood at any time: links and unlinks
/// with valid wallet signatures, in each owner's chain order.
pub struct WalletLinks {
    /// (owner, chain id) → its link history, in order.
    history: HashMap<(Did, u64), Vec<LinkState>>,
}

/// From a timestamp on, the linked address (`None` after an unlink).
type LinkState = (u64, Option<[u8; 20]>);

impl WalletLinks {
    /// Reads the links of `events` (any order; each author's are taken in seq order), keeping
    /// only those whose wallet signature is the address's.
    pub fn from_events(network: &NetworkId, events: &[&Event]) -> WalletLinks {
        let mut sorted: Vec<&Event> = events.to_vec();
        sorted.sort_by_key(|e| (e.author(), e.seq()));
        let mut history: HashMap<(Did, u64), Vec<LinkState>> = HashMap::new();
        for event in sorted {
            let Some(claim) = WalletClaim::of(network, event) else {
                continue;
            };
            if !claim.is_signed_by_its_wallet() {
                continue;
            }
            let (action, chain_id, address) = (claim.action, claim.chain_id, claim.address);
            let entries = history.entry((event.author(), chain_id)).or_default();
            let current = entries.last().and_then(|(_, linked)| *linked);
            match action {
                WalletAction::Link => entries.push((event.timestamp_ms(), Some(address))),
                // Unlinking another address than the linked one changes nothing.
                WalletAction::Unlink if current == Some(address) => {
                    entries.push((event.timestamp_ms(), None))
                }
                WalletAction::Unlink => {}
            }
        }
        WalletLinks { history }
    }

    /// The wallet `owner` has linked on `chain_id` at `timestamp_ms` (its latest link at or
    /// before then, unless unlinked since).
    pub fn linked_at(&self, owner: &Did, chain_id: u64, timestamp_ms: u64) -> Option<[u8; 20]> {
        self.history
            .get(&(*owner, chain_id))?
            .iter()
            .take_while(|(at, _)| *at <= timestamp_ms)
            .last()
            .and_then(|(_, linked)| *linked)
    }

    /// Every wallet `owner` has linked now, as (chain id, address), by chain.
    pub fn linked_wallets(&self, owner: &Did) -> Vec<(u64, [u8; 20])> {
        let mut wallets: Vec<(u64, [u8; 20])> = self
            .history
            .keys()
            .filter(|(linked_by, _)| linked_by == owner)
            .filter_map(|&(_, chain_id)| {
                self.linked_now(owner, chain_id)
                    .map(|address| (chain_id, address))
            })
            .collect();
        wallets.sort();
        wallets
    }

    /// The wallet `owner` has linked on `chain_id` now.
    pub fn linked_now(&self, owner: &Did, chain_id: u64) -> Option<[u8; 20]> {
        self.linked_at(owner, chain_id, u64::MAX)
    }
}

fn check_anchors(check: &mut Check, admissible: &[&Event]) {
    let by_position: HashMap<(Did, u64), EventId> = admissible
        .iter()
        .map(|e| ((e.author(), e.seq()), e.id()))
        .collect();
    let heights: HashMap<Did, u64> = admissible.iter().fold(HashMap::new(), |mut heights, e| {
        let height = heights.entry(e.author()).or_insert(0);
        *height = (*height).max(e.seq());
        heights
    });
    // Each rewritten position once, however many anchors name it.
    let mut reported: HashSet<(Did, u64)> = HashSet::new();
    for &event in admissible {
        let Body::ChainAnchored(anchored) = event.body() else {
            continue;
        };
        if heads_root(&anchored.heads) != anchored.root {
            check.flag(
                Rule::AnchorRootMismatch,
                event,
                format!(
                    "anchor {} records root {} but its heads hash to {}",
                    anchored.anchor_index,
                    hex(&anchored.root),
                    hex(&heads_root(&anchored.heads))
                ),
            );
        }
        for head in &anchored.heads {
            if !reported.insert((head.author, head.seq)) {
                continue;
            }
            match by_position.get(&(head.author, head.seq)) {
                Some(id) if *id == head.id => {
                    reported.remove(&(head.author, head.seq));
                }
                Some(id) => check.violations.push(super::Violation {
                    rule: Rule::AnchoredHistoryRewritten,
                    event_id: Some(*id),
                    author: Some(head.author),
                    seq: Some(head.seq),
                    detail: format!(
                        "{}'s event at height {} is {id}, but anchor {} (block {}, tx {}) anchored {} there: the chain was rewritten after it was anchored",
                        head.author,
                        head.seq,
                        anchored.anchor_index,
                        anchored.block_number,
                        hex(&anchored.tx_hash),
                        head.id
                    ),
                }),
                None => check.violations.push(super::Violation {
                    rule: Rule::AnchoredHistoryRewritten,
                    event_id: Some(event.id()),
                    author: Some(head.author),
                    seq: Some(head.seq),
                    detail: format!(
                        "anchor {} (block {}) anchored {}'s chain at height {}, but this ledger holds it only to height {}: anchored history is missing",
                        anchored.anchor_index,
                        anchored.block_number,
                        head.author,
                        head.seq,
                        heights.get(&head.author).copied().unwrap_or(0)
                    ),
                }),
            }
        }
    }
}

fn check_settlements(check: &mut Check, network: &NetworkId, admissible: &[&Event]) {
    let links = WalletLinks::from_events(network, admissible);
    let publishers: HashMap<&ModelId, Did> = admissible
        .iter()
        .filter_map(|e| match e.body() {
            Body::ModelPublished(p)
                if ModelId::for_publication(&e.author(), &p.contract_toml) == p.model_id =>
            {
                Some((&p.model_id, e.author()))
            }
            _ => None,
        })
        .collect();
    let by_id: HashMap<EventId, &Event> = admissible.iter().map(|e| (e.id(), *e)).collect();
    let mut nonces: HashSet<(Did, &ModelId, u64)> = HashSet::new();
    let mut settled: HashMap<(&ModelId, Did), u64> = HashMap::new();
    for &event in admissible {
        let Body::RewardsSettled(settlement) = event.body() else {
            continue;
        };
        let model_id = &settlement.model_id;
        let Some(publisher) = publishers.get(model_id) else {
            check.flag(
                Rule::UnknownModel,
                event,
                format!("rewards-settled names model {model_id}, which was never published"),
            );
            continue;
        };
        if event.author() != *publisher {
            check.flag(
                Rule::NotPublisher,
                event,
                format!(
                    "rewards-settled for model {model_id} signed by {}, but the publisher is {publisher}",
                    event.author()
                ),
            );
            continue;
        }
        if !nonces.insert((event.author(), model_id, settlement.nonce)) {
            check.flag(
                Rule::SettlementReplayed,
                event,
                format!(
                    "batch nonce {} of model {model_id} was already settled: these transfers would be paid twice",
                    settlement.nonce
                ),
            );
            continue;
        }
        // What the covered payouts owe each owner.
        let mut owed: HashMap<Did, u64> = HashMap::new();
        let mut covered = HashSet::new();
        for id in &settlement.covers {
            match by_id.get(id).map(|e| (e, e.body())) {
                Some((paid, Body::RewardsPaid(payout)))
                    if paid.author() == event.author() && payout.model_id == *model_id =>
                {
                    if covered.insert(*id) {
                        for line in &payout.payouts {
                            *owed.entry(line.owner).or_default() += line.amount;
                        }
                    }
                }
                _ => check.flag(
                    Rule::SettlementExceedsRewards,
                    event,
                    format!("covers {id}, which is not a rewards-paid of model {model_id} by its publisher"),
                ),
            }
        }
        for transfer in &settlement.transfers {
            let already = settled.entry((model_id, transfer.owner)).or_default();
            let due = owed.get(&transfer.owner).copied().unwrap_or(0);
            if *already + transfer.amount > due {
                check.flag(
                    Rule::SettlementExceedsRewards,
                    event,
                    format!(
                        "pays {} {} for model {model_id}, but the covered rewards owe it {due} and {} were settled before",
                        transfer.owner, transfer.amount, already
                    ),
                );
            }
            *already += transfer.amount;
            let linked =
                links.linked_at(&transfer.owner, settlement.chain_id, event.timestamp_ms());
            if linked != Some(transfer.address) {
                check.flag(
                    Rule::SettlementToUnlinkedWallet,
                    event,
                    format!(
                        "pays {} to {}, which is not the wallet it had linked on chain {} ({})",
                        transfer.owner,
                        format_address(&transfer.address),
                        settlement.chain_id,
                        linked.map_or("none".to_string(), |a| format_address(&a))
                    ),
                );
            }
        }
    }
}
