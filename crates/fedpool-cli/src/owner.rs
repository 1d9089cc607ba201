//! What a data owner sees and does, as data: the models that want their data and where each
//! stands, their consent decisions, privacy spent, earnings and datasets. The command line
//! prints these and the web page (`crate::web`) renders them, so both say and do the same.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use fedpool_ledger::wallet::{WalletAction, format_address, recover_signer, wallet_message};
use fedpool_ledger::{
    Body, ConsentGranted, ConsentRefused, ConsentRevoked, Did, Event, ModelId, WalletLinked,
    WalletLinks, WalletUnlinked,
};
use serde::Serialize;

use crate::cmd_consent::fields_to_consent;
use crate::home::now_ms;
use crate::node::{self, ConsentState, Node, PublishedModel};

/// Where a model stands for this owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// No decision yet: it waits for the owner (no policy rule decided it).
    Pending,
    /// A consent is in force.
    Granted,
    /// Refused.
    Refused,
    /// The owner's consent was revoked.
    Revoked,
    /// The owner's consent expired.
    Expired,
}

impl Standing {
    /// The word shown for it.
    pub fn word(self) -> &'static str {
        match self {
            Standing::Pending => "pending",
            Standing::Granted => "granted",
            Standing::Refused => "refused",
            Standing::Revoked => "revoked",
            Standing::Expired => "expired",
        }
    }
}

/// One published model as this owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// Model id.
    pub model_id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The publisher's DID.
    pub publisher: String,
    /// The publisher as the contract names it.
    pub publisher_name: String,
    /// Where it stands.
    pub standing: Standing,
    /// Who decided: `owner`, or the policy rule's name; none while pending.
    pub decided_by: Option<String>,
    /// When the standing began (ms since the epoch).
    pub since_ms: Option<u64>,
    /// The consent in force or last in force, if any.
    pub consent_id: Option<String>,
    /// The owner's ε cap named in that consent.
    pub epsilon_cap: Option<f64>,
}

/// Every published model (not this owner's own publications) and where it stands.
pub fn model_rows(node: &Node) -> Result<Vec<ModelRow>> {
    let me = node.did();
    let now = now_ms();
    let consents = node::consents(&node.store, Some(&me), None, now)?;
    let mut refusals: BTreeMap<ModelId, Event> = BTreeMap::new();
    for event in node.store.events_by_author(&me)? {
        if let Body::ConsentRefused(refusal) = event.body() {
            refusals.insert(refusal.model_id.clone(), event.clone());
        }
    }
    let mut rows = Vec::new();
    for model in node::published_models(&node.store)? {
        if model.event.author() == me {
            continue;
        }
        let mine: Vec<_> = consents
            .iter()
            .filter(|c| c.body.model_id == *model.id())
            .collect();
        // The consent that says most: one in force, else the latest.
        let consent = mine
            .iter()
            .find(|c| c.state == ConsentState::Active)
            .or_else(|| mine.iter().max_by_key(|c| c.event.timestamp_ms()));
        let refusal = refusals.get(model.id());
        let by = |decision: Option<&fedpool_ledger::PolicyDecision>| {
            Some(decision.map_or_else(|| "owner".to_string(), |d| d.rule.clone()))
        };
        let (standing, decided_by, since_ms) = match (consent, refusal) {
            (Some(c), _) if c.state == ConsentState::Active => (
                Standing::Granted,
                by(c.body.decided_by.as_ref()),
                Some(c.event.timestamp_ms()),
            ),
            (_, Some(r)) => {
                let decided = match r.body() {
                    Body::ConsentRefused(refusal) => by(refusal.decided_by.as_ref()),
                    _ => None,
                };
                (Standing::Refused, decided, Some(r.timestamp_ms()))
            }
            (Some(c), None) if c.state == ConsentState::Revoked => (
                Standing::Revoked,
                Some("owner".to_string()),
                c.revoked_at_ms,
            ),
            (Some(c), None) => (
                Standing::Expired,
                by(c.body.decided_by.as_ref()),
                c.body.expires_at_ms,
            ),
            (None, None) => (Standing::Pending, None, None),
        };
        rows.push(ModelRow {
            model_id: model.id().to_string(),
            name: model.body.name.clone(),
            version: model.contract.model_info.version.clone(),
            publisher: model.event.author().to_string(),
            publisher_name: model.contract.model_info.publisher.clone(),
            standing,
            decided_by,
            since_ms,
            consent_id: consent.map(|c| c.event.id().to_string()),
            epsilon_cap: consent.and_then(|c| c.body.epsilon_cap),
        });
    }
    Ok(rows)
}

/// What a grant asks for.
#[derive(Debug, Clone, Default)]
pub struct GrantTerms {
    /// The registered dataset to consent with.
    pub dataset: String,
    /// Last day of the consent (ms since the epoch, exclusive), if it expires.
    pub expires_at_ms: Option<u64>,
    /// The owner's own ε cap for this model.
    pub epsilon_cap: Option<f64>,
}

/// Signs a consent to `model` with the owner's dataset, checked row by row as training will
/// read it. Refused while a consent is in force.
pub fn grant(node: &mut Node, model: &PublishedModel, terms: &GrantTerms) -> Result<Event> {
    let dataset = node.home.dataset(&terms.dataset)?;
    let fields = fields_to_consent(model, &dataset)?;
    if let Some(cap) = terms.epsilon_cap
        && !(cap > 0.0 && cap.is_finite())
    {
        bail!("the ε cap must be a positive number, got {cap}");
    }
    let now = now_ms();
    if terms.expires_at_ms.is_some_and(|t| t <= now) {
        bail!("the consent's end date is already past");
    }
    let me = node.did();
    if let Some(active) = node::consents(&node.store, Some(&me), Some(model.id()), now)?
        .into_iter()
        .find(|c| c.state == ConsentState::Active)
    {
        bail!(
            "you already consent to {} (consent {}); revoke it first to change its terms",
            model.body.name,
            active.event.id()
        );
    }
    node.append(ConsentGranted {
        model_id: model.id().clone(),
        // Only this publisher's rounds may use the consent: the one the card names.
        publisher: model.event.author(),
        card_hash: model.body.card_hash.clone(),
        dataset_fingerprint: dataset.fingerprint.clone(),
        fields,
        expires_at_ms: terms.expires_at_ms,
        epsilon_cap: terms.epsilon_cap,
        // The owner, by hand.
        decided_by: None,
    })
}

/// Signs a refusal of `model`, by the owner. Refused while a consent is in force (revoke it).
pub fn refuse(node: &mut Node, model: &PublishedModel) -> Result<Event> {
    let me = node.did();
    if node::consents(&node.store, Some(&me), Some(model.id()), now_ms())?
        .iter()
        .any(|c| c.state == ConsentState::Active)
    {
        bail!(
            "you consent to {}; revoke that consent to stop taking part",
            model.body.name
        );
    }
    node.append(ConsentRefused {
        model_id: model.id().clone(),
        publisher: model.event.author(),
        card_hash: model.body.card_hash.clone(),
        decided_by: None,
    })
}

/// Revokes every consent to `model` in force: from the next round the node declines it, and
/// the publisher no longer asks.
pub fn revoke(node: &mut Node, model: &PublishedModel) -> Result<Vec<Event>> {
    let me = node.did();
    let active: Vec<_> = node::consents(&node.store, Some(&me), Some(model.id()), now_ms())?
        .into_iter()
        .filter(|c| c.state == ConsentState::Active)
        .collect();
    if active.is_empty() {
        bail!("you have no active consent to {}", model.body.name);
    }
    active
        .into_iter()
        .map(|consent| {
            node.append(ConsentRevoked {
                model_id: model.id().clone(),
                consent: consent.event.id(),
            })
        })
        .collect()
}

/// One round of a model, as its publisher committed it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    /// The round.
    pub round: u32,
    /// Participants.
    pub participants: usize,
    /// Whether this owner took part.
    pub mine: bool,
    /// ε of all rounds so far (the publisher's accountant).
    pub epsilon_total: f64,
    /// Metrics after the round.
    pub metrics: Vec<(String, f64)>,
    /// What this owner was paid for the round, in the pool's smallest unit.
    pub paid_to_me: u64,
}

/// The rounds the model's publisher committed, with this owner's part and payouts in each.
pub fn rounds(node: &Node, model: &PublishedModel, owner: &Did) -> Result<Vec<RoundRow>> {
    let mut rows: BTreeMap<u32, RoundRow> = BTreeMap::new();
    let mut paid: BTreeMap<u32, u64> = BTreeMap::new();
    for event in node.store.events_by_model(model.id())? {
        if event.author() != model.event.author() {
            continue;
        }
        match event.body() {
            Body::RoundCommitted(round) => {
                rows.insert(
                    round.round,
                    RoundRow {
                        round: round.round,
                        participants: round.participants.len(),
                        mine: round.participants.iter().any(|(did, _)| did == owner),
                        epsilon_total: round.epsilon_total,
                        metrics: round.metrics.clone(),
                        paid_to_me: 0,
                    },
                );
            }
            Body::RewardsPaid(payout) => {
                if let Some(round) = payout.round {
                    *paid.entry(round).or_default() += payout
                        .payouts
                        .iter()
                        .filter(|line| line.owner == *owner)
                        .map(|line| line.amount)
                        .sum::<u64>();
                }
            }
            _ => {}
        }
    }
    for (round, amount) in paid {
        if let Some(row) = rows.get_mut(&round) {
            row.paid_to_me = amount;
        }
    }
    Ok(rows.into_values().collect())
}

/// This owner's privacy spent on one model, by its own node.
#[derive(Debug, Clone, Serialize)]
pub struct PrivacyRow {
    /// Model id.
    pub model_id: String,
    /// Its name.
    pub name: String,
    /// ε this owner's node accounted for the model (its latest `PrivacySpent`).
    pub epsilon_spent: f64,
    /// δ of that ε.
    pub delta: f64,
    /// The owner's own cap, from the consent.
    pub epsilon_cap: Option<f64>,
    /// The contract's budget.
    pub epsilon_budget: Option<f64>,
    /// Rounds this node accounted.
    pub steps: usize,
}

/// ε spent per model against the owner's caps, from the owner's own `PrivacySpent` events.
pub fn privacy_rows(node: &Node) -> Result<Vec<PrivacyRow>> {
    let me = node.did();
    let models = node::published_models(&node.store)?;
    // The cap of the consent in force, else of the latest one.
    let mut caps: BTreeMap<ModelId, (bool, u64, Option<f64>)> = BTreeMap::new();
    for consent in node::consents(&node.store, Some(&me), None, now_ms())? {
        let key = (
            consent.state == ConsentState::Active,
            consent.event.timestamp_ms(),
            consent.body.epsilon_cap,
        );
        let entry = caps.entry(consent.body.model_id.clone()).or_insert(key);
        if (key.0, key.1) > (entry.0, entry.1) {
            *entry = key;
        }
    }
    let mut spent: BTreeMap<ModelId, (f64, f64, usize)> = BTreeMap::new();
    for event in node.store.events_by_author(&me)? {
        if let Body::PrivacySpent(step) = event.body() {
            let entry = spent.entry(step.model_id.clone()).or_default();
            entry.0 = entry.0.max(step.epsilon_total);
            entry.1 = step.delta;
            entry.2 += 1;
        }
    }
    Ok(models
        .iter()
        .filter(|m| m.event.author() != me)
        .map(|m| {
            let (epsilon_spent, delta, steps) = spent.get(m.id()).copied().unwrap_or_default();
            PrivacyRow {
                model_id: m.id().to_string(),
                name: m.body.name.clone(),
                epsilon_spent,
                delta,
                epsilon_cap: caps.get(m.id()).and_then(|c| c.2),
                epsilon_budget: m.contract.privacy.epsilon_budget,
                steps,
            }
        })
        .collect())
}

/// One payout to this owner.
#[derive(Debug, Clone, Serialize)]
pub struct EarningRow {
    /// Model id.
    pub model_id: String,
    /// Its name.
    pub name: String,
    /// The round paid for, or none for the final payout.
    pub round: Option<u32>,
    /// The owner's score.
    pub score: f64,
    /// The amount, in the pool's smallest unit.
    pub amount: u64,
    /// The unit.
    pub currency: String,
    /// The `RewardsPaid` event.
    pub event: String,
}

/// Every payout to this owner that a model's own publisher signed (as `fedpool rewards` reads
/// them).
pub fn earnings(node: &Node) -> Result<Vec<EarningRow>> {
    let me = node.did();
    let mut rows = Vec::new();
    for model in node::published_models(&node.store)? {
        for line in crate::cmd_rewards::earnings(node, &model, Some(&me))? {
            rows.push(EarningRow {
                model_id: model.id().to_string(),
                name: model.body.name.clone(),
                round: line.round,
                score: line.score,
                amount: line.amount,
                currency: model.contract.rewards.currency.clone(),
                event: line.event,
            });
        }
    }
    Ok(rows)
}

/// What reached this owner's wallets: per model (by name), the tokens its publisher settled to
/// it; and the wallets it has linked now, per chain.
pub struct TokenPayouts {
    /// Model name → tokens settled.
    pub settled: std::collections::BTreeMap<String, u64>,
    /// (chain id, address) of each wallet linked now.
    pub wallets: Vec<(u64, String)>,
}

/// This owner's token payouts and linked wallets, from the ledger.
pub fn token_payouts(node: &Node) -> Result<TokenPayouts> {
    let me = node.did();
    let mut settled = std::collections::BTreeMap::new();
    for model in node::published_models(&node.store)? {
        let amount = crate::cmd_rewards::settled(node, &model, &me)?;
        if amount > 0 {
            *settled.entry(model.body.name.clone()).or_default() += amount;
        }
    }
    let wallets = linked_wallets(node)?
        .into_iter()
        .map(|(chain, address)| (chain, format_address(&address)))
        .collect();
    Ok(TokenPayouts { settled, wallets })
}

/// What a wallet signs (EIP-191 `personal_sign`) to link itself to this node, or unlink: the
/// text names the network, this node's DID, the address, the chain and the ledger seq the
/// event will take, so a signature cannot be replayed on another node, chain or event.
#[derive(Debug, Clone, Serialize)]
pub struct WalletChallenge {
    /// The ledger seq the link event takes if written now.
    pub seq: u64,
    /// The exact text to sign.
    pub message: String,
}

/// The text a wallet signs for `action` on `address` and `chain_id`, at this node's next seq.
pub fn wallet_challenge(
    node: &Node,
    action: WalletAction,
    chain_id: u64,
    address: &[u8; 20],
) -> Result<WalletChallenge> {
    let (seq, _) = node.store.next_seq_and_prev(&node.did())?;
    let message = wallet_message(
        action,
        node.store.network(),
        &node.did(),
        chain_id,
        address,
        seq,
    );
    Ok(WalletChallenge { seq, message })
}

/// A wallet's answer to a [`WalletChallenge`].
#[derive(Debug, Clone)]
pub struct WalletProof {
    /// The chain the link is for.
    pub chain_id: u64,
    /// The wallet.
    pub address: [u8; 20],
    /// Its 65-byte `personal_sign` signature of the challenge.
    pub signature: [u8; 65],
    /// The seq the signed challenge named, when the caller knows it (the page does): a
    /// ledger that moved on since is then reported as such rather than as a wrong signature.
    pub signed_seq: Option<u64>,
}

/// Signs a wallet link (or unlink) on the ledger, with this node's key beside the wallet's
/// signature. Nothing is written unless the wallet signed exactly this node's challenge for
/// the seq the event takes, and an unlink names the wallet linked now. `where_to_sign` tells
/// the owner, in an error, where the text to sign is found.
pub fn link_wallet(
    node: &mut Node,
    action: WalletAction,
    proof: &WalletProof,
    where_to_sign: &str,
) -> Result<Event> {
    let did = node.did();
    let (seq, _) = node.store.next_seq_and_prev(&did)?;
    if let Some(signed) = proof.signed_seq
        && signed != seq
    {
        bail!(
            "your node's ledger moved on since the message was made (it named seq {signed}, the next event is {seq}); nothing was written: sign the new message"
        );
    }
    let message = wallet_message(
        action,
        node.store.network(),
        &did,
        proof.chain_id,
        &proof.address,
        seq,
    );
    match recover_signer(&message, &proof.signature) {
        Ok(signer) if signer == proof.address => {}
        Ok(signer) => bail!(
            "the signature is by {}, not by {}; the wallet must sign exactly {where_to_sign} (it names this node's next ledger seq, {seq}); nothing was written",
            format_address(&signer),
            format_address(&proof.address),
        ),
        Err(reason) => bail!("the wallet signature cannot be read: {reason}"),
    }
    if action == WalletAction::Unlink
        && linked_wallets(node)?
            .iter()
            .all(|&(chain, address)| (chain, address) != (proof.chain_id, proof.address))
    {
        bail!(
            "{} is not linked on chain {}; nothing to unlink",
            format_address(&proof.address),
            proof.chain_id
        );
    }
    let body: Body = match action {
        WalletAction::Link => WalletLinked {
            chain_id: proof.chain_id,
            address: proof.address,
            wallet_signature: proof.signature,
        }
        .into(),
        WalletAction::Unlink => WalletUnlinked {
            chain_id: proof.chain_id,
            address: proof.address,
            wallet_signature: proof.signature,
        }
        .into(),
    };
    node.append_at_seq(seq, body).with_context(|| {
        format!(
            "the wallet signed ledger seq {seq}, but this node's chain moved on meanwhile (nothing was written): sign again"
        )
    })
}

/// The wallets this owner has linked now: (chain id, address), one per chain.
pub fn linked_wallets(node: &Node) -> Result<Vec<(u64, [u8; 20])>> {
    let me = node.did();
    let mine = node.store.events_by_author(&me)?;
    let refs: Vec<_> = mine.iter().collect();
    Ok(WalletLinks::from_events(node.store.network(), &refs).linked_wallets(&me))
}

/// The chain an owner's wallet is for when it does not say: the chain of this home's contracts
/// (chain.json) if it has any, else the chain the ledger's latest anchor or settlement names
/// (where publishers pay, as far as this node has heard).
pub fn settlement_chain(node: &Node) -> Result<Option<u64>> {
    if let Some(chain_id) = crate::cmd_chain::deployed_chain_id(&node.home) {
        return Ok(Some(chain_id));
    }
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for kind in [
        fedpool_ledger::EventKind::RewardsSettled,
        fedpool_ledger::EventKind::ChainAnchored,
    ] {
        for event in node.store.events_by_kind(kind)? {
            match event.body() {
                Body::RewardsSettled(s) => seen.push((event.timestamp_ms(), s.chain_id)),
                Body::ChainAnchored(a) => seen.push((event.timestamp_ms(), a.chain_id)),
                _ => {}
            }
        }
    }
    Ok(seen.into_iter().max().map(|(_, chain_id)| chain_id))
}
