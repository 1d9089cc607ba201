//! Event kinds and their bodies.
//!
//! Each body encodes its fields in declaration order, with the value encodings listed in
//! [`crate::event`]:
//!
//! | kind (tag) | body |
//! | --- | --- |
//! | `model-published` (1) | model_id, name, version, contract_toml, card_hash: string; required_fields: `Vec<string>`; epsilon_budget, delta: `Option<f64>`; reward_pool: `u64`; currency: string |
//! | `consent-granted` (2) | model_id: string; publisher: DID; card_hash, dataset_fingerprint: string; fields: `Vec<string>`; expires_at_ms: `Option<u64>`; epsilon_cap: `Option<f64>`; decided_by: `Option<(rule, policy_hash: string)>` |
//! | `consent-revoked` (3) | model_id: string; consent: event id |
//! | `round-committed` (4) | model_id: string; round: `u32`; participants: `Vec<(DID, event id)>`; global_model_hash: string; epsilon_round, epsilon_total, delta: `f64`; metrics: `Vec<(string, f64)>` |
//! | `rewards-paid` (5) | model_id: string; round: `Option<u32>`; allotment: `u64`; payouts: `Vec<(DID, score f64, amount u64)>`; carried: `u64`; method, details: string |
//! | `model-released` (6) | model_id, final_model_hash: string; rounds: `u32`; metrics: `Vec<(string, f64)>` |
//! | `consent-refused` (9) | model_id: string; publisher: DID; card_hash: string; decided_by: `Option<(rule, policy_hash: string)>` |
//! | `wallet-linked` (10) | chain_id: `u64`; address: 20 bytes; wallet_signature: 65 bytes (r ‖ s ‖ v) |
//! | `wallet-unlinked` (11) | chain_id: `u64`; address: 20 bytes; wallet_signature: 65 bytes |
//! | `chain-anchored` (12) | chain_id: `u64`; contract: 20 bytes; anchor_index, block_number: `u64`; tx_hash, root: 32 bytes; heads: `Vec<(DID, seq u64, event id)>` |
//! | `rewards-settled` (13) | model_id: string; chain_id: `u64`; payouts_contract, token: 20 bytes; nonce, block_number: `u64`; tx_hash: 32 bytes; transfers: `Vec<(DID, address 20 bytes, amount u64)>`; covers: `Vec<event id>` |
//!
//! Changing a kind's fields is a new encoding version: old events keep their bytes, and
//! therefore their ids and signatures. A new kind is a new tag in the same version (no
//! existing event changes; an older build refuses the tag as an unknown kind).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::{Reader, Writer};
use crate::{Did, Error, EventId};

/// Names a model on the ledger: the content hash of its publisher's DID and its contract text
/// ([`ModelId::for_publication`]), so a copy of the contract published under another key is
/// another model, and a copy that keeps the id fails verification.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelId(pub String);

impl ModelId {
    /// The id of `contract_toml` published by `publisher`.
    pub fn for_publication(publisher: &Did, contract_toml: &str) -> ModelId {
        let mut bytes = Vec::with_capacity(64 + contract_toml.len());
        bytes.extend_from_slice(b"fedpool-model-id/v2\n");
        bytes.extend_from_slice(publisher.public_key());
        bytes.extend_from_slice(contract_toml.as_bytes());
        ModelId(crate::content_hash(&bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ModelId {
    fn from(id: String) -> ModelId {
        ModelId(id)
    }
}

impl From<&str> for ModelId {
    fn from(id: &str) -> ModelId {
        ModelId(id.to_string())
    }
}

/// The kind of an event. The tag byte and the name are part of the stable format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A publisher published a model contract ([`ModelPublished`]).
    ModelPublished,
    /// A data owner consented to a model ([`ConsentGranted`]).
    ConsentGranted,
    /// A data owner withdrew a consent ([`ConsentRevoked`]).
    ConsentRevoked,
    /// A publisher committed a training round ([`RoundCommitted`]).
    RoundCommitted,
    /// A publisher paid rewards from a model's pool ([`RewardsPaid`]).
    RewardsPaid,
    /// A publisher released a trained model ([`ModelReleased`]).
    ModelReleased,
    /// A data owner's node accounted privacy it spends on a model ([`PrivacySpent`]).
    PrivacySpent,
    /// A publisher committed a model's federated feature statistics ([`StatisticsCommitted`]).
    StatisticsCommitted,
    /// A data owner declined a model ([`ConsentRefused`]).
    ConsentRefused,
    /// A node linked an EVM wallet to its DID ([`WalletLinked`]).
    WalletLinked,
    /// A node unlinked an EVM wallet from its DID ([`WalletUnlinked`]).
    WalletUnlinked,
    /// A node anchored every chain head it held in a public chain ([`ChainAnchored`]).
    ChainAnchored,
    /// A publisher paid rewards out on a public chain ([`RewardsSettled`]).
    RewardsSettled,
    /// A publisher sent a recorded settlement batch again after the chain lost it
    /// ([`SettlementResent`]).
    SettlementResent,
}

impl EventKind {
    /// Every kind, in tag order.
    pub const ALL: [EventKind; 14] = [
        EventKind::ModelPublished,
        EventKind::ConsentGranted,
        EventKind::ConsentRevoked,
        EventKind::RoundCommitted,
        EventKind::RewardsPaid,
        EventKind::ModelReleased,
        EventKind::PrivacySpent,
        EventKind::StatisticsCommitted,
        EventKind::ConsentRefused,
        EventKind::WalletLinked,
        EventKind::WalletUnlinked,
        EventKind::ChainAnchored,
        EventKind::RewardsSettled,
        EventKind::SettlementResent,
    ];

    /// The stable short name, e.g. `consent-granted` (stored in the database's `kind` column).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ModelPublished => "model-published",
            EventKind::ConsentGranted => "consent-granted",
            EventKind::ConsentRevoked => "consent-revoked",
            EventKind::RoundCommitted => "round-committed",
            EventKind::RewardsPaid => "rewards-paid",
            EventKind::ModelReleased => "model-released",
            EventKind::PrivacySpent => "privacy-spent",
            EventKind::StatisticsCommitted => "statistics-committed",
            EventKind::ConsentRefused => "consent-refused",
            EventKind::WalletLinked => "wallet-linked",
            EventKind::WalletUnlinked => "wallet-unlinked",
            EventKind::ChainAnchored => "chain-anchored",
            EventKind::RewardsSettled => "rewards-settled",
            EventKind::SettlementResent => "settlement-resent",
        }
    }

    /// The kind named `name` (see [`EventKind::name`]).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The tag byte in the encoding.
    pub(crate) fn tag(self) -> u8 {
        match self {
            EventKind::ModelPublished => 1,
            EventKind::ConsentGranted => 2,
            EventKind::ConsentRevoked => 3,
            EventKind::RoundCommitted => 4,
            EventKind::RewardsPaid => 5,
            EventKind::ModelReleased => 6,
            EventKind::PrivacySpent => 7,
            EventKind::StatisticsCommitted => 8,
            EventKind::ConsentRefused => 9,
            EventKind::WalletLinked => 10,
            EventKind::WalletUnlinked => 11,
            EventKind::ChainAnchored => 12,
            EventKind::RewardsSettled => 13,
            EventKind::SettlementResent => 14,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a model's contributors are promised; copied from the contract so the ledger can
/// check rounds and payouts against it without parsing TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelTerms {
    /// Data fields (columns) the model needs from each contributor.
    pub required_fields: Vec<String>,
    /// Total client-level ε the model may spend over all rounds; `None` if the contract does
    /// not use differential privacy.
    pub epsilon_budget: Option<f64>,
    /// The δ of the (ε, δ) guarantee; `None` without differential privacy.
    pub delta: Option<f64>,
    /// Total amount the publisher may pay out over the model's life.
    pub reward_pool: u64,
    /// Unit of `reward_pool` and of every payout, e.g. `"USDC"` or `"points"`.
    pub currency: String,
}

/// A publisher publishes a model contract. The author of this event is the model's publisher.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelPublished {
    /// The model's id: the content hash of `contract_toml`.
    pub model_id: ModelId,
    /// Human-readable model name.
    pub name: String,
    /// The contract's version string.
    pub version: String,
    /// The full contract, as TOML text.
    pub contract_toml: String,
    /// Content hash of the transparency card data owners consent to.
    pub card_hash: String,
    /// Privacy and reward terms, checked by `verify`.
    pub terms: ModelTerms,
}

/// A data owner lets one of their datasets be used to train one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentGranted {
    /// The model consented to.
    pub model_id: ModelId,
    /// The model's publisher, as the owner read it on the card: only its rounds may use this
    /// consent.
    pub publisher: Did,
    /// Hash of the transparency card the owner read; must match the model's card.
    pub card_hash: String,
    /// Content hash identifying the dataset used (never the data itself).
    pub dataset_fingerprint: String,
    /// Fields the owner allows the model to read.
    pub fields: Vec<String>,
    /// When the consent lapses (ms since the Unix epoch); `None` for no expiry.
    pub expires_at_ms: Option<u64>,
    /// The most ε the owner accepts for this model; `None` to accept the model's budget.
    pub epsilon_cap: Option<f64>,
    /// The rule of the owner's consent policy that granted it; `None` when the owner decided.
    pub decided_by: Option<PolicyDecision>,
}

/// Which rule of an owner's consent policy made a decision. The policy itself stays with its
/// owner; its hash lets the owner show later which version of it applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// The rule's name.
    pub rule: String,
    /// Content hash of the policy file's text.
    pub policy_hash: String,
}

/// A data owner declines a model: said once, so the model no longer waits for them. Binds
/// nothing (a later [`ConsentGranted`] by the same owner is a change of mind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentRefused {
    /// The model declined.
    pub model_id: ModelId,
    /// The model's publisher, as the owner read it on the card.
    pub publisher: Did,
    /// Hash of the transparency card the owner (or its policy) read.
    pub card_hash: String,
    /// The rule of the owner's consent policy that refused; `None` when the owner decided.
    pub decided_by: Option<PolicyDecision>,
}

/// A data owner withdraws a consent they granted. Binds every round with a later timestamp
/// (at an equal timestamp the order across chains is unknowable, so that round may still use
/// the consent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentRevoked {
    /// The model the consent was for.
    pub model_id: ModelId,
    /// The [`ConsentGranted`] event being withdrawn.
    pub consent: EventId,
}

/// A publisher commits a finished training round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundCommitted {
    /// The model trained.
    pub model_id: ModelId,
    /// Round number; strictly increasing per model.
    pub round: u32,
    /// Each participant and the [`ConsentGranted`] event its data was used under.
    pub participants: Vec<(Did, EventId)>,
    /// Content hash of the global model after this round.
    pub global_model_hash: String,
    /// ε spent by this round alone.
    pub epsilon_round: f64,
    /// ε spent by all rounds so far, as computed by the publisher's accountant (under RDP
    /// composition this is not the sum of `epsilon_round`s, but it never decreases).
    pub epsilon_total: f64,
    /// The δ the ε figures hold for.
    pub delta: f64,
    /// How the round was planned, so anyone can recompute its ε from the contract.
    pub plan: RoundPlan,
    /// Evaluation metrics after this round, by name (e.g. `("accuracy", 0.91)`).
    pub metrics: Vec<(String, f64)>,
    /// The `scaling_hash` of the model's [`StatisticsCommitted`], when the model standardises
    /// with federated statistics: the features this round was trained on.
    pub scaling_hash: Option<String>,
}

/// A publisher commits the statistics phase of a model: the federated scaling every node and
/// the test set standardise numeric columns with, derived from the (clipped, noised, securely
/// aggregated, as the contract says) statistics of the nodes asked. Once per model, before its
/// first round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatisticsCommitted {
    /// The model.
    pub model_id: ModelId,
    /// Each node whose statistics were aggregated, and the consent its data was used under.
    pub participants: Vec<(Did, EventId)>,
    /// The scaling, as canonical JSON (column, mean and deviation per standardised column).
    pub scaling: String,
    /// Content hash of `scaling`: what every round names.
    pub scaling_hash: String,
    /// ε spent by the statistics phase.
    pub epsilon_round: f64,
    /// ε spent by the model so far (the phase is the model's first release).
    pub epsilon_total: f64,
    /// The δ the ε figures hold for.
    pub delta: f64,
    /// How the phase was planned, so anyone can recompute its ε from the contract.
    pub plan: RoundPlan,
}

/// What, besides the contract, fixes a round's privacy mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundPlan {
    /// Nodes asked to take part (the secure sum's planned size).
    pub asked: u32,
    /// Nodes eligible when the round started.
    pub eligible: u32,
    /// The clip norm the round used (adaptive clipping moves it).
    pub clip_norm: f64,
}

/// A publisher pays contributors from a model's reward pool, in the pool's smallest unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardsPaid {
    /// The model whose pool pays.
    pub model_id: ModelId,
    /// The round paid for; `None` for the final payout (what earlier payouts carried, split
    /// by each participant's total score).
    pub round: Option<u32>,
    /// Units this payout distributes: the round's share of the pool plus what the model's
    /// previous payout carried (for the final payout: all the pool not yet paid).
    pub allotment: u64,
    /// Every valued participant: its score and what it is paid (0 for a score ≤ 0).
    pub payouts: Vec<Payout>,
    /// Units not paid (no positive score, or every eligible participant at the cap): the next
    /// payout's allotment includes them.
    pub carried: u64,
    /// Valuation method, e.g. `"shapley-exact"`.
    pub method: String,
    /// What recomputing the scores needs, as JSON: the valuation recipe (estimator, seed,
    /// validation set hash) and the hashes of the updates valued, in payout order.
    pub details: String,
}

/// One participant's line of a [`RewardsPaid`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payout {
    /// The owner paid.
    pub owner: Did,
    /// Its measured contribution.
    pub score: f64,
    /// What it is paid, in the pool's smallest unit.
    pub amount: u64,
}

/// A publisher releases the trained model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReleased {
    /// The model released.
    pub model_id: ModelId,
    /// Content hash of the final model parameters.
    pub final_model_hash: String,
    /// Number of rounds trained.
    pub rounds: u32,
    /// Final evaluation metrics, by name.
    pub metrics: Vec<(String, f64)>,
}

/// A data owner's node accounts the privacy one step of a model's training costs it, before
/// it sends anything computed from its data (write-ahead). The owner's own chain is where its
/// ε spent lives: a restarted node resumes from it, so a restart (or a publisher that never
/// commits a round) cannot reset what was spent, and anyone can check the owner's cap held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpent {
    /// The model the privacy was spent on.
    pub model_id: ModelId,
    /// The author's [`ConsentGranted`] event the data was used under.
    pub consent: EventId,
    /// The latest round this step covers; strictly increasing per author and model.
    pub round: u32,
    /// Rounds composed in this step (rounds the node was not asked in compose with the one
    /// it was, as amplification by sampling assumes).
    pub rounds: u32,
    /// The per-round mechanism the node built from the contract, as JSON of
    /// `fedpool_privacy::RoundMechanism` (the ledger stores it as text; `verify` composes it
    /// through [`crate::ContractRules`]).
    pub mechanism: String,
    /// ε the node has spent on the model after this step, at `delta`.
    pub epsilon_total: f64,
    /// The δ `epsilon_total` holds for.
    pub delta: f64,
}

/// A node links an EVM address to its DID, so rewards settled on `chain_id` are paid to it.
/// Both keys sign: the node's Ed25519 key signs the event, the wallet signs
/// [`crate::wallet::link_message`] (naming the network, the DID, the address, the chain and this
/// event's seq) under EIP-191, so neither a node nor a wallet alone can claim the other. The
/// owner's latest link on a chain replaces the earlier one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WalletLinked {
    /// The EIP-155 id of the chain payouts are made on.
    pub chain_id: u64,
    /// The wallet's 20-byte address.
    pub address: [u8; 20],
    /// The wallet's EIP-191 signature of the link message: r ‖ s ‖ v (65 bytes).
    #[serde(with = "hex_bytes")]
    pub wallet_signature: [u8; 65],
}

/// A node unlinks an EVM address from its DID; signed by both keys like [`WalletLinked`] (the
/// wallet signs [`crate::wallet::unlink_message`]). Rewards wait on the ledger until another
/// wallet is linked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WalletUnlinked {
    /// The chain the link was for.
    pub chain_id: u64,
    /// The address unlinked.
    pub address: [u8; 20],
    /// The wallet's EIP-191 signature of the unlink message (65 bytes).
    #[serde(with = "hex_bytes")]
    pub wallet_signature: [u8; 65],
}

/// One author's chain head, as anchored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainHead {
    /// The author.
    pub author: Did,
    /// The author's last seq (the anchored height).
    pub seq: u64,
    /// The id of the author's event at that seq.
    pub id: EventId,
}

/// A node put the Merkle root of the chain heads it held ([`crate::anchor::heads_root`]) into
/// an anchor contract on a public chain: from that block on, rewriting any of those chains up
/// to its anchored height is provable by anyone who asks the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainAnchored {
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// The anchor contract's address.
    pub contract: [u8; 20],
    /// The anchor's index in the contract.
    pub anchor_index: u64,
    /// The block the anchoring transaction was included in.
    pub block_number: u64,
    /// The anchoring transaction's hash.
    pub tx_hash: [u8; 32],
    /// The Merkle root put on chain.
    pub root: [u8; 32],
    /// The heads the root commits to, by author.
    pub heads: Vec<ChainHead>,
}

/// One transfer of a [`RewardsSettled`] batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// The owner paid.
    pub owner: Did,
    /// The owner's linked wallet it was paid to.
    pub address: [u8; 20],
    /// Tokens transferred, in the pool's smallest unit (the token has no decimals).
    pub amount: u64,
}

/// A publisher paid owners' unsettled rewards of a model as tokens, in one on-chain batch.
/// The batch's nonce is unique per publisher and model, on chain (the payout contract refuses
/// a settled nonce) and on the ledger (`verify` refuses a repeated one), so no reward is paid
/// twice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardsSettled {
    /// The model whose rewards are paid.
    pub model_id: ModelId,
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// The payout contract.
    pub payouts_contract: [u8; 20],
    /// The reward token (ERC-20).
    pub token: [u8; 20],
    /// The batch's nonce.
    pub nonce: u64,
    /// The block the batch was included in.
    pub block_number: u64,
    /// The settling transaction's hash.
    pub tx_hash: [u8; 32],
    /// What each owner was paid.
    pub transfers: Vec<Transfer>,
    /// The [`RewardsPaid`] events whose amounts the batch settles (an owner is never paid more
    /// than these paid it, less what earlier batches settled).
    pub covers: Vec<EventId>,
}

/// A settlement batch the ledger records was lost by the chain (a reorganisation dropped its
/// transaction) and the publisher sent it again, under the same nonce: the batch is still paid
/// once, and this names the transaction that now carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettlementResent {
    /// The model of the batch.
    pub model_id: ModelId,
    /// The `rewards-settled` event recording the batch.
    pub settlement: EventId,
    /// The batch's nonce (as that event records it).
    pub nonce: u64,
    /// The block the batch is now included in.
    pub block_number: u64,
    /// The transaction that now carries it.
    pub tx_hash: [u8; 32],
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 65], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&format!("0x{hex}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 65], D::Error> {
        let text = String::deserialize(d)?;
        crate::wallet::parse_hex(&text)
            .map_err(D::Error::custom)?
            .try_into()
            .map_err(|_| D::Error::custom("expected 65 bytes of hex"))
    }
}

/// The body of an event: one of the kinds above.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body {
    /// See [`ModelPublished`].
    ModelPublished(ModelPublished),
    /// See [`ConsentGranted`].
    ConsentGranted(ConsentGranted),
    /// See [`ConsentRevoked`].
    ConsentRevoked(ConsentRevoked),
    /// See [`RoundCommitted`].
    RoundCommitted(RoundCommitted),
    /// See [`RewardsPaid`].
    RewardsPaid(RewardsPaid),
    /// See [`ModelReleased`].
    ModelReleased(ModelReleased),
    /// See [`PrivacySpent`].
    PrivacySpent(PrivacySpent),
    /// See [`StatisticsCommitted`].
    StatisticsCommitted(StatisticsCommitted),
    /// See [`ConsentRefused`].
    ConsentRefused(ConsentRefused),
    /// See [`WalletLinked`].
    WalletLinked(WalletLinked),
    /// See [`WalletUnlinked`].
    WalletUnlinked(WalletUnlinked),
    /// See [`ChainAnchored`].
    ChainAnchored(ChainAnchored),
    /// See [`RewardsSettled`].
    RewardsSettled(RewardsSettled),
    /// See [`SettlementResent`].
    SettlementResent(SettlementResent),
}

macro_rules! body_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Body {
            fn from(body: $kind) -> Body {
                Body::$kind(body)
            }
        }
    )*};
}
body_from!(
    ModelPublished,
    ConsentGranted,
    ConsentRevoked,
    RoundCommitted,
    RewardsPaid,
    ModelReleased,
    PrivacySpent,
    StatisticsCommitted,
    ConsentRefused,
    WalletLinked,
    WalletUnlinked,
    ChainAnchored,
    RewardsSettled,
    SettlementResent
);

impl Body {
    /// This body's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Body::ModelPublished(_) => EventKind::ModelPublished,
            Body::ConsentGranted(_) => EventKind::ConsentGranted,
            Body::ConsentRevoked(_) => EventKind::ConsentRevoked,
            Body::RoundCommitted(_) => EventKind::RoundCommitted,
            Body::RewardsPaid(_) => EventKind::RewardsPaid,
            Body::ModelReleased(_) => EventKind::ModelReleased,
            Body::PrivacySpent(_) => EventKind::PrivacySpent,
            Body::StatisticsCommitted(_) => EventKind::StatisticsCommitted,
            Body::ConsentRefused(_) => EventKind::ConsentRefused,
            Body::WalletLinked(_) => EventKind::WalletLinked,
            Body::WalletUnlinked(_) => EventKind::WalletUnlinked,
            Body::ChainAnchored(_) => EventKind::ChainAnchored,
            Body::RewardsSettled(_) => EventKind::RewardsSettled,
            Body::SettlementResent(_) => EventKind::SettlementResent,
        }
    }

    /// The model this event is about; `None` for wallet links and anchors, which are about the
    /// author or the whole ledger.
    pub fn model_id(&self) -> Option<&ModelId> {
        match self {
            Body::ModelPublished(body) => Some(&body.model_id),
            Body::ConsentGranted(body) => Some(&body.model_id),
            Body::ConsentRevoked(body) => Some(&body.model_id),
            Body::RoundCommitted(body) => Some(&body.model_id),
            Body::RewardsPaid(body) => Some(&body.model_id),
            Body::ModelReleased(body) => Some(&body.model_id),
            Body::PrivacySpent(body) => Some(&body.model_id),
            Body::StatisticsCommitted(body) => Some(&body.model_id),
            Body::ConsentRefused(body) => Some(&body.model_id),
            Body::RewardsSettled(body) => Some(&body.model_id),
            Body::SettlementResent(body) => Some(&body.model_id),
            Body::WalletLinked(_) | Body::WalletUnlinked(_) | Body::ChainAnchored(_) => None,
        }
    }

    /// The first non-finite float, as `(field, value)`; the encoding has no NaN or infinity.
    pub(crate) fn first_non_finite(&self) -> Option<(&'static str, f64)> {
        let floats: Vec<(&'static str, f64)> = match self {
            Body::ModelPublished(body) => {
                let mut floats = Vec::new();
                floats.extend(
                    body.terms
                        .epsilon_budget
                        .map(|v| ("terms.epsilon_budget", v)),
                );
                floats.extend(body.terms.delta.map(|v| ("terms.delta", v)));
                floats
            }
            Body::ConsentGranted(body) => body
                .epsilon_cap
                .map(|v| ("epsilon_cap", v))
                .into_iter()
                .collect(),
            Body::ConsentRevoked(_)
            | Body::ConsentRefused(_)
            | Body::WalletLinked(_)
            | Body::WalletUnlinked(_)
            | Body::ChainAnchored(_)
            | Body::RewardsSettled(_)
            | Body::SettlementResent(_) => Vec::new(),
            Body::RoundCommitted(body) => {
                let mut floats = vec![
                    ("epsilon_round", body.epsilon_round),
                    ("epsilon_total", body.epsilon_total),
                    ("plan.clip_norm", body.plan.clip_norm),
                    ("delta", body.delta),
                ];
                floats.extend(body.metrics.iter().map(|(_, v)| ("metrics", *v)));
                floats
            }
            Body::RewardsPaid(body) => body.payouts.iter().map(|p| ("payouts", p.score)).collect(),
            Body::ModelReleased(body) => {
                body.metrics.iter().map(|(_, v)| ("metrics", *v)).collect()
            }
            Body::PrivacySpent(body) => {
                vec![("epsilon_total", body.epsilon_total), ("delta", body.delta)]
            }
            Body::StatisticsCommitted(body) => vec![
                ("epsilon_round", body.epsilon_round),
                ("epsilon_total", body.epsilon_total),
                ("plan.clip_norm", body.plan.clip_norm),
                ("delta", body.delta),
            ],
        };
        floats.into_iter().find(|(_, value)| !value.is_finite())
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Body::ModelPublished(body) => {
                w.str(&body.model_id.0);
                w.str(&body.name);
                w.str(&body.version);
                w.str(&body.contract_toml);
                w.str(&body.card_hash);
                let terms = &body.terms;
                w.len(terms.required_fields.len());
                for field in &terms.required_fields {
                    w.str(field);
                }
                w.option(terms.epsilon_budget, Writer::f64);
                w.option(terms.delta, Writer::f64);
                w.u64(terms.reward_pool);
                w.str(&terms.currency);
            }
            Body::ConsentGranted(body) => {
                w.str(&body.model_id.0);
                w.raw(body.publisher.public_key());
                w.str(&body.card_hash);
                w.str(&body.dataset_fingerprint);
                w.len(body.fields.len());
                for field in &body.fields {
                    w.str(field);
                }
                w.option(body.expires_at_ms, Writer::u64);
                w.option(body.epsilon_cap, Writer::f64);
                w.option(body.decided_by.as_ref(), encode_decision);
            }
            Body::ConsentRefused(body) => {
                w.str(&body.model_id.0);
                w.raw(body.publisher.public_key());
                w.str(&body.card_hash);
                w.option(body.decided_by.as_ref(), encode_decision);
            }
            Body::ConsentRevoked(body) => {
                w.str(&body.model_id.0);
                w.raw(body.consent.as_bytes());
            }
            Body::RoundCommitted(body) => {
                w.str(&body.model_id.0);
                w.u32(body.round);
                encode_participants(w, &body.participants);
                w.str(&body.global_model_hash);
                w.f64(body.epsilon_round);
                w.f64(body.epsilon_total);
                w.f64(body.delta);
                encode_plan(w, &body.plan);
                encode_metrics(w, &body.metrics);
                w.option(body.scaling_hash.as_ref(), |w, h| w.str(h));
            }
            Body::RewardsPaid(body) => {
                w.str(&body.model_id.0);
                w.option(body.round, Writer::u32);
                w.u64(body.allotment);
                w.len(body.payouts.len());
                for payout in &body.payouts {
                    w.raw(payout.owner.public_key());
                    w.f64(payout.score);
                    w.u64(payout.amount);
                }
                w.u64(body.carried);
                w.str(&body.method);
                w.str(&body.details);
            }
            Body::ModelReleased(body) => {
                w.str(&body.model_id.0);
                w.str(&body.final_model_hash);
                w.u32(body.rounds);
                encode_metrics(w, &body.metrics);
            }
            Body::PrivacySpent(body) => {
                w.str(&body.model_id.0);
                w.raw(body.consent.as_bytes());
                w.u32(body.round);
                w.u32(body.rounds);
                w.str(&body.mechanism);
                w.f64(body.epsilon_total);
                w.f64(body.delta);
            }
            Body::StatisticsCommitted(body) => {
                w.str(&body.model_id.0);
                encode_participants(w, &body.participants);
                w.str(&body.scaling);
                w.str(&body.scaling_hash);
                w.f64(body.epsilon_round);
                w.f64(body.epsilon_total);
                w.f64(body.delta);
                encode_plan(w, &body.plan);
            }
            Body::WalletLinked(WalletLinked {
                chain_id,
                address,
                wallet_signature,
            })
            | Body::WalletUnlinked(WalletUnlinked {
                chain_id,
                address,
                wallet_signature,
            }) => {
                w.u64(*chain_id);
                w.raw(address);
                w.raw(wallet_signature);
            }
            Body::ChainAnchored(body) => {
                w.u64(body.chain_id);
                w.raw(&body.contract);
                w.u64(body.anchor_index);
                w.u64(body.block_number);
                w.raw(&body.tx_hash);
                w.raw(&body.root);
                w.len(body.heads.len());
                for head in &body.heads {
                    w.raw(head.author.public_key());
                    w.u64(head.seq);
                    w.raw(head.id.as_bytes());
                }
            }
            Body::RewardsSettled(body) => {
                w.str(&body.model_id.0);
                w.u64(body.chain_id);
                w.raw(&body.payouts_contract);
                w.raw(&body.token);
                w.u64(body.nonce);
                w.u64(body.block_number);
                w.raw(&body.tx_hash);
                w.len(body.transfers.len());
                for transfer in &body.transfers {
                    w.raw(transfer.owner.public_key());
                    w.raw(&transfer.address);
                    w.u64(transfer.amount);
                }
                w.len(body.covers.len());
                for id in &body.covers {
                    w.raw(id.as_bytes());
                }
            }
            Body::SettlementResent(body) => {
                w.str(&body.model_id.0);
                w.raw(body.settlement.as_bytes());
                w.u64(body.nonce);
                w.u64(body.block_number);
                w.raw(&body.tx_hash);
            }
        }
    }

    /// Reads a body of `kind`; the caller checks that the body's bytes were consumed exactly.
    pub(crate) fn decode(kind: EventKind, r: &mut Reader<'_>) -> Result<Body, Error> {
        let body = match kind {
            EventKind::WalletLinked => Body::WalletLinked(WalletLinked {
                chain_id: r.u64("chain_id")?,
                address: r.array("address")?,
                wallet_signature: r.array("wallet_signature")?,
            }),
            EventKind::WalletUnlinked => Body::WalletUnlinked(WalletUnlinked {
                chain_id: r.u64("chain_id")?,
                address: r.array("address")?,
                wallet_signature: r.array("wallet_signature")?,
            }),
            EventKind::ChainAnchored => Body::ChainAnchored(ChainAnchored {
                chain_id: r.u64("chain_id")?,
                contract: r.array("contract")?,
                anchor_index: r.u64("anchor_index")?,
                block_number: r.u64("block_number")?,
                tx_hash: r.array("tx_hash")?,
                root: r.array("root")?,
                heads: r.vec("heads", 72, |r| {
                    Ok(ChainHead {
                        author: read_did(r, "heads")?,
                        seq: r.u64("heads")?,
                        id: EventId::from_bytes(r.array("heads")?),
                    })
                })?,
            }),
            EventKind::RewardsSettled => Body::RewardsSettled(RewardsSettled {
                model_id: read_model_id(r)?,
                chain_id: r.u64("chain_id")?,
                payouts_contract: r.array("payouts_contract")?,
                token: r.array("token")?,
                nonce: r.u64("nonce")?,
                block_number: r.u64("block_number")?,
                tx_hash: r.array("tx_hash")?,
                transfers: r.vec("transfers", 60, |r| {
                    Ok(Transfer {
                        owner: read_did(r, "transfers")?,
                        address: r.array("transfers")?,
                        amount: r.u64("transfers")?,
                    })
                })?,
                covers: r.vec("covers", 32, |r| {
                    Ok(EventId::from_bytes(r.array("covers")?))
                })?,
            }),
            EventKind::SettlementResent => Body::SettlementResent(SettlementResent {
                model_id: read_model_id(r)?,
                settlement: EventId::from_bytes(r.array("settlement")?),
                nonce: r.u64("nonce")?,
                block_number: r.u64("block_number")?,
                tx_hash: r.array("tx_hash")?,
            }),
            EventKind::ModelPublished => Body::ModelPublished(ModelPublished {
                model_id: read_model_id(r)?,
                name: r.str("name")?,
                version: r.str("version")?,
                contract_toml: r.str("contract_toml")?,
                card_hash: r.str("card_hash")?,
                terms: ModelTerms {
                    required_fields: r.vec("terms.required_fields", 4, |r| {
                        r.str("terms.required_fields")
                    })?,
                    epsilon_budget: r
                        .option("terms.epsilon_budget", |r| r.f64("terms.epsilon_budget"))?,
                    delta: r.option("terms.delta", |r| r.f64("terms.delta"))?,
                    reward_pool: r.u64("terms.reward_pool")?,
                    currency: r.str("terms.currency")?,
                },
            }),
            EventKind::ConsentGranted => Body::ConsentGranted(ConsentGranted {
                model_id: read_model_id(r)?,
                publisher: read_did(r, "publisher")?,
                card_hash: r.str("card_hash")?,
                dataset_fingerprint: r.str("dataset_fingerprint")?,
                fields: r.vec("fields", 4, |r| r.str("fields"))?,
                expires_at_ms: r.option("expires_at_ms", |r| r.u64("expires_at_ms"))?,
                epsilon_cap: r.option("epsilon_cap", |r| r.f64("epsilon_cap"))?,
                decided_by: r.option("decided_by", decode_decision)?,
            }),
            EventKind::ConsentRefused => Body::ConsentRefused(ConsentRefused {
                model_id: read_model_id(r)?,
                publisher: read_did(r, "publisher")?,
                card_hash: r.str("card_hash")?,
                decided_by: r.option("decided_by", decode_decision)?,
            }),
            EventKind::ConsentRevoked => Body::ConsentRevoked(ConsentRevoked {
                model_id: read_model_id(r)?,
                consent: EventId::from_bytes(r.array("consent")?),
            }),
            EventKind::RoundCommitted => Body::RoundCommitted(RoundCommitted {
                model_id: read_model_id(r)?,
                round: r.u32("round")?,
                participants: decode_participants(r)?,
                global_model_hash: r.str("global_model_hash")?,
                epsilon_round: r.f64("epsilon_round")?,
                epsilon_total: r.f64("epsilon_total")?,
                delta: r.f64("delta")?,
                plan: decode_plan(r)?,
                metrics: decode_metrics(r)?,
                scaling_hash: r.option("scaling_hash", |r| r.str("scaling_hash"))?,
            }),
            EventKind::RewardsPaid => Body::RewardsPaid(RewardsPaid {
                model_id: read_model_id(r)?,
                round: r.option("round", |r| r.u32("round"))?,
                allotment: r.u64("allotment")?,
                payouts: r.vec("payouts", 48, |r| {
                    Ok(Payout {
                        owner: read_did(r, "payouts")?,
                        score: r.f64("payouts")?,
                        amount: r.u64("payouts")?,
                    })
                })?,
                carried: r.u64("carried")?,
                method: r.str("method")?,
                details: r.str("details")?,
            }),
            EventKind::ModelReleased => Body::ModelReleased(ModelReleased {
                model_id: read_model_id(r)?,
                final_model_hash: r.str("final_model_hash")?,
                rounds: r.u32("rounds")?,
                metrics: decode_metrics(r)?,
            }),
            EventKind::PrivacySpent => Body::PrivacySpent(PrivacySpent {
                model_id: read_model_id(r)?,
                consent: EventId::from_bytes(r.array("consent")?),
                round: r.u32("round")?,
                rounds: r.u32("rounds")?,
                mechanism: r.str("mechanism")?,
                epsilon_total: r.f64("epsilon_total")?,
                delta: r.f64("delta")?,
            }),
            EventKind::StatisticsCommitted => Body::StatisticsCommitted(StatisticsCommitted {
                model_id: read_model_id(r)?,
                participants: decode_participants(r)?,
                scaling: r.str("scaling")?,
                scaling_hash: r.str("scaling_hash")?,
                epsilon_round: r.f64("epsilon_round")?,
                epsilon_total: r.f64("epsilon_total")?,
                delta: r.f64("delta")?,
                plan: decode_plan(r)?,
            }),
        };
        Ok(body)
    }
}

/// The model id that opens every body that names a model.
fn read_model_id(r: &mut Reader<'_>) -> Result<ModelId, Error> {
    Ok(ModelId(r.str("model_id")?))
}

fn encode_participants(w: &mut Writer, participants: &[(Did, EventId)]) {
    w.len(participants.len());
    for (did, consent) in participants {
        w.raw(did.public_key());
        w.raw(consent.as_bytes());
    }
}

fn decode_participants(r: &mut Reader<'_>) -> Result<Vec<(Did, EventId)>, Error> {
    r.vec("participants", 64, |r| {
        Ok((
            read_did(r, "participants")?,
            EventId::from_bytes(r.array("participants")?),
        ))
    })
}

fn encode_decision(w: &mut Writer, decision: &PolicyDecision) {
    w.str(&decision.rule);
    w.str(&decision.policy_hash);
}

fn decode_decision(r: &mut Reader<'_>) -> Result<PolicyDecision, Error> {
    Ok(PolicyDecision {
        rule: r.str("decided_by.rule")?,
        policy_hash: r.str("decided_by.policy_hash")?,
    })
}

fn encode_plan(w: &mut Writer, plan: &RoundPlan) {
    w.u32(plan.asked);
    w.u32(plan.eligible);
    w.f64(plan.clip_norm);
}

fn decode_plan(r: &mut Reader<'_>) -> Result<RoundPlan, Error> {
    Ok(RoundPlan {
        asked: r.u32("plan.asked")?,
        eligible: r.u32("plan.eligible")?,
        clip_norm: r.f64("plan.clip_norm")?,
    })
}

fn encode_metrics(w: &mut Writer, metrics: &[(String, f64)]) {
    w.len(metrics.len());
    for (name, value) in metrics {
        w.str(name);
        w.f64(*value);
    }
}

fn decode_metrics(r: &mut Reader<'_>) -> Result<Vec<(String, f64)>, Error> {
    r.vec("metrics", 12, |r| {
        Ok((r.str("metrics")?, r.f64("metrics")?))
    })
}

/// A DID named in a body: 32 key bytes, not decompressed (see [`Did`]).
fn read_did(r: &mut Reader<'_>, field: &'static str) -> Result<Did, Error> {
    Ok(Did::from_unchecked_bytes(r.array::<32>(field)?))
}
