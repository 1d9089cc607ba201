//! `ledger verify --anchors`: every anchor and settlement the ledger records, checked against
//! the chain, and per author the latest height the chain vouches for.

use std::collections::BTreeMap;

use fedpool_ledger::wallet::hex;
use fedpool_ledger::{Body, Did, Event, Rule, Violation};

use crate::{ChainClient, ChainError};

/// What the chain confirmed.
#[derive(Debug, Default)]
pub struct AnchorAudit {
    /// Anchors and settlements the chain does not hold as the ledger says.
    pub violations: Vec<Violation>,
    /// Per author, the highest anchored height confirmed on chain, with the anchor's index and
    /// block.
    pub anchored: BTreeMap<Did, AnchoredHeight>,
    /// Anchors confirmed on chain.
    pub n_anchors_confirmed: usize,
    /// Settlements confirmed on chain (in their own transaction or a resend's).
    pub n_settlements_confirmed: usize,
    /// Of those, batches the chain lost and a resend carries.
    pub n_settlements_resent: usize,
    /// Records for another chain than the endpoint's (not checked).
    pub n_other_chain: usize,
}

/// One author's latest anchored height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchoredHeight {
    /// The seq anchored.
    pub seq: u64,
    /// The anchor's index in its contract.
    pub anchor_index: u64,
    /// The block that holds it.
    pub block_number: u64,
}

fn flag(rule: Rule, event: &Event, detail: String) -> Violation {
    Violation {
        rule,
        event_id: Some(event.id()),
        author: Some(event.author()),
        seq: Some(event.seq()),
        detail,
    }
}

/// Checks every `chain-anchored` and `rewards-settled` event of `events` against the chain
/// `client` is connected to.
pub async fn audit(client: &ChainClient, events: &[Event]) -> Result<AnchorAudit, ChainError> {
    let mut audit = AnchorAudit::default();
    // (anchor contract, submitting wallet) → the authors whose recorded anchors it made.
    let mut anchorers: BTreeMap<([u8; 20], [u8; 20]), Vec<Did>> = BTreeMap::new();
    // Paying wallet → the authors whose confirmed settlements it paid.
    let mut payers: BTreeMap<[u8; 20], Vec<Did>> = BTreeMap::new();
    for event in events {
        match event.body() {
            Body::ChainAnchored(anchored) => {
                if anchored.chain_id != client.chain_id() {
                    audit.n_other_chain += 1;
                    continue;
                }
                let on_chain = client
                    .anchor_at(anchored.contract, anchored.anchor_index)
                    .await?;
                let submitter = on_chain.as_ref().map(|found| found.submitter);
                let problem = match on_chain {
                    None => Some(format!(
                        "anchor contract {} holds no anchor {}",
                        fedpool_ledger::wallet::format_address(&anchored.contract),
                        anchored.anchor_index
                    )),
                    Some(found) if found.root != anchored.root => Some(format!(
                        "anchor {} on chain holds root {}, the ledger records {}",
                        anchored.anchor_index,
                        hex(&found.root),
                        hex(&anchored.root)
                    )),
                    Some(found) if found.block_number != anchored.block_number => Some(format!(
                        "anchor {} was made in block {}, the ledger records block {}",
                        anchored.anchor_index, found.block_number, anchored.block_number
                    )),
                    Some(_) => match client.transaction_block(anchored.tx_hash).await? {
                        Some(block) if block == anchored.block_number => None,
                        found => Some(format!(
                            "transaction {} is {}, not in block {}",
                            hex(&anchored.tx_hash),
                            found.map_or("not on chain".to_string(), |b| format!("in block {b}")),
                            anchored.block_number
                        )),
                    },
                };
                match problem {
                    Some(detail) => {
                        audit
                            .violations
                            .push(flag(Rule::AnchorNotOnChain, event, detail))
                    }
                    None => {
                        audit.n_anchors_confirmed += 1;
                        if let Some(submitter) = submitter {
                            add_author(
                                anchorers.entry((anchored.contract, submitter)).or_default(),
                                event.author(),
                            );
                        }
                        for head in &anchored.heads {
                            let entry =
                                audit.anchored.entry(head.author).or_insert(AnchoredHeight {
                                    seq: 0,
                                    anchor_index: anchored.anchor_index,
                                    block_number: anchored.block_number,
                                });
                            if head.seq > entry.seq {
                                *entry = AnchoredHeight {
                                    seq: head.seq,
                                    anchor_index: anchored.anchor_index,
                                    block_number: anchored.block_number,
                                };
                            }
                        }
                    }
                }
            }
            Body::RewardsSettled(settled) => {
                if settled.chain_id != client.chain_id() {
                    audit.n_other_chain += 1;
                    continue;
                }
                let problem =
                    match carrier(client, settled, settled.tx_hash, settled.block_number).await? {
                        Ok(payer) => {
                            audit.n_settlements_confirmed += 1;
                            wallet_of(&mut payers, payer, event.author());
                            continue;
                        }
                        Err(problem) => problem,
                    };
                // A batch the chain lost may have been sent again: it stands if a resend
                // by its publisher carries it.
                let mut carried = false;
                for resend in events.iter().filter(|e| e.author() == event.author()) {
                    let Body::SettlementResent(resent) = resend.body() else {
                        continue;
                    };
                    if resent.settlement != event.id() {
                        continue;
                    }
                    match carrier(client, settled, resent.tx_hash, resent.block_number).await? {
                        Ok(payer) => {
                            carried = true;
                            wallet_of(&mut payers, payer, event.author());
                        }
                        Err(detail) => audit.violations.push(flag(
                            Rule::SettlementNotOnChain,
                            resend,
                            format!("the resend of batch {}: {detail}", settled.nonce),
                        )),
                    }
                }
                if carried {
                    audit.n_settlements_confirmed += 1;
                    audit.n_settlements_resent += 1;
                } else {
                    audit
                        .violations
                        .push(flag(Rule::SettlementNotOnChain, event, problem));
                }
            }
            _ => {}
        }
    }
    // The wallet an author pays with is one it may anchor with: its anchors in any anchor
    // contract this ledger uses are looked for too, so dropping *every* anchor event of its
    // own does not hide them.
    let contracts: std::collections::BTreeSet<[u8; 20]> =
        anchorers.keys().map(|&(contract, _)| contract).collect();
    for contract in contracts {
        for (&wallet, authors) in &payers {
            for &author in authors {
                add_author(anchorers.entry((contract, wallet)).or_default(), author);
            }
        }
    }
    unrecorded_anchors(client, events, &anchorers, &mut audit).await?;
    Ok(audit)
}

/// Adds `author` to the authors known to use a wallet, once.
fn wallet_of(known: &mut BTreeMap<[u8; 20], Vec<Did>>, wallet: [u8; 20], author: Did) {
    add_author(known.entry(wallet).or_default(), author);
}

fn add_author(authors: &mut Vec<Did>, author: Did) {
    if !authors.contains(&author) {
        authors.push(author);
    }
}

/// The wallet that paid the batch `settled` records in transaction `tx` (recorded in block
/// `block`), or why that transaction does not carry it: its receipt must hold the payout
/// contract's `Settled` event for the batch's model and nonce, with its token, total and
/// number of transfers.
async fn carrier(
    client: &ChainClient,
    settled: &fedpool_ledger::RewardsSettled,
    tx: [u8; 32],
    block: u64,
) -> Result<Result<[u8; 20], String>, ChainError> {
    let Some((found_block, batches)) = client.settlements_in(tx).await? else {
        return Ok(Err(format!(
            "settlement batch {} records transaction {} in block {block}, but the chain has it nowhere",
            settled.nonce,
            hex(&tx)
        )));
    };
    if found_block != block {
        return Ok(Err(format!(
            "settlement batch {} records transaction {} in block {block}, but the chain has it in block {found_block}",
            settled.nonce,
            hex(&tx)
        )));
    }
    let key = crate::model_key(&settled.model_id);
    let total: u128 = settled.transfers.iter().map(|t| u128::from(t.amount)).sum();
    let carrying = batches.iter().find(|b| {
        b.contract == settled.payouts_contract
            && b.model_key == key
            && b.nonce == settled.nonce
            && b.token == settled.token
            && b.total == alloy::primitives::U256::from(total)
            && b.count == alloy::primitives::U256::from(settled.transfers.len())
    });
    Ok(carrying.map(|b| b.payer).ok_or_else(|| {
        format!(
            "transaction {} (block {block}) carries no settlement of batch {} of model {} paying {total} in {} transfers from payout contract {}",
            hex(&tx),
            settled.nonce,
            settled.model_id,
            settled.transfers.len(),
            fedpool_ledger::wallet::format_address(&settled.payouts_contract)
        )
    }))
}

/// Flags every anchor on chain by a wallet an author anchors or pays with, when no
/// `chain-anchored` event records it: an author who anchored, rewrote what came after and
/// dropped the anchor events with it cannot hide that those anchors exist.
async fn unrecorded_anchors(
    client: &ChainClient,
    events: &[Event],
    anchorers: &BTreeMap<([u8; 20], [u8; 20]), Vec<Did>>,
    audit: &mut AnchorAudit,
) -> Result<(), ChainError> {
    let recorded: std::collections::BTreeSet<([u8; 20], u64)> = events
        .iter()
        .filter_map(|event| match event.body() {
            Body::ChainAnchored(a) if a.chain_id == client.chain_id() => {
                Some((a.contract, a.anchor_index))
            }
            _ => None,
        })
        .collect();
    for (&(contract, submitter), authors) in anchorers {
        let names: Vec<String> = authors.iter().map(ToString::to_string).collect();
        for logged in client.anchors_by(contract, submitter).await? {
            if recorded.contains(&(contract, logged.index)) {
                continue;
            }
            audit.violations.push(Violation {
                rule: Rule::AnchorUnrecorded,
                event_id: None,
                author: (authors.len() == 1).then(|| authors[0]),
                seq: None,
                detail: format!(
                    "anchor {} (block {}, transaction {}) was made by wallet {}, which {} anchors or pays with, and no chain-anchored event records it: it was removed from the ledger, with whatever history it vouched for, or its anchoring never finished (`fedpool anchor` records a lost one)",
                    logged.index,
                    logged.block_number,
                    hex(&logged.tx_hash),
                    fedpool_ledger::wallet::format_address(&submitter),
                    names.join(" and "),
                ),
            });
        }
    }
    Ok(())
}
