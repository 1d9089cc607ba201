//! The auditor's check: every rule over every event, every problem reported.
//!
//! [`verify_events`] works on any set of events (order and duplicates do not matter);
//! [`Store::verify`](crate::Store::verify) adds checks of the stored rows themselves.
//!
//! Only *admissible* events (a valid signature, for this network) count as evidence: a forged
//! event is reported once, as `signature`, and neither breaks its claimed author's chain, nor
//! accuses them of a fork, nor grants a consent. Chains and forks are checked first; the
//! consent, privacy and payout rules then read the admissible events of each author in chain
//! order. Timestamps are the authors' own; each chain's timestamps must not go backwards.
//!
//! What the model rules check, for each `round-committed` by the model's publisher (in the
//! publisher's chain order), for each participant `(did, consent)` it lists:
//!
//! - `consent` is an admissible `consent-granted` event authored by `did`, for this model and
//!   the card hash the model was published with;
//! - it was granted at or before the round's timestamp, was not revoked (by `did`, naming it)
//!   strictly before the round's timestamp, and had not expired (`expires_at_ms` ≤ round time
//!   means expired);
//! - the round's `epsilon_total` is within the participant's `epsilon_cap`.
//!
//! and for the round itself: round numbers increase; `epsilon_total` never decreases, is at
//! least `epsilon_round`, and stays within the model's `epsilon_budget`; `delta` stays within
//! the model's δ. Every `rewards-paid` is by the publisher, pays only participants of the round
//! it names (or of any earlier round of the model if it names none), and the model's payouts
//! never add up to more than its `reward_pool`.
//!
//! Budget and pool comparisons allow a relative slack of 1e-9, so that a pool paid out
//! exactly in floating-point shares does not read as overpaid.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::Serialize;

use crate::{Did, Event, EventId, NetworkId};

mod chains;
mod rules;
mod web3;

use chains::check_chains;
use rules::check_semantics;
pub use web3::WalletLinks;
use web3::check_web3;

/// A verification rule. The short name ([`Rule::name`]) is stable and appears in the JSON
/// output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The signature does not verify against the author's key.
    Signature,
    /// The event was signed for another network.
    ForeignNetwork,
    /// A chain does not start at seq 1 or skips a seq.
    ChainGap,
    /// An event's `prev` is not the id of its author's previous event.
    ChainPrevHash,
    /// An event's timestamp is earlier than its author's previous event's.
    ChainTimestamp,
    /// An author signed two different events with the same seq.
    Fork,
    /// A stored row's bytes do not decode (store verification only).
    Undecodable,
    /// A stored row's columns disagree with its bytes (store verification only).
    RecordMismatch,
    /// An event names a model that was never published.
    UnknownModel,
    /// A model id was published twice; the earliest publication counts.
    DuplicateModel,
    /// A model's id is not the content hash of the contract text it publishes, so the terms
    /// owners consent to could differ from the ones the id names.
    ModelIdMismatch,
    /// A round, payout or release was signed by someone other than the model's publisher.
    NotPublisher,
    /// A round participant's consent event does not exist or is not a consent grant.
    ConsentMissing,
    /// A round participant relies on a consent granted by another DID.
    ConsentWrongAuthor,
    /// A round participant relies on a consent for another model.
    ConsentWrongModel,
    /// A round participant relies on a consent to another transparency card.
    ConsentWrongCard,
    /// A round relies on a consent granted after the round.
    ConsentNotYetGranted,
    /// A round relies on a consent revoked before the round's timestamp. (At an equal
    /// timestamp the order is unknowable across chains, so the revocation binds the next
    /// round.)
    ConsentRevoked,
    /// A round relies on a consent whose expiry is at or before the round's timestamp.
    ConsentExpired,
    /// A revocation names an event that is not its author's consent for that model.
    RevocationInvalid,
    /// A round lists the same participant twice.
    DuplicateParticipant,
    /// A model's round numbers do not increase along the publisher's chain.
    RoundOutOfOrder,
    /// A round's total ε exceeds the model's budget or a participant's cap, or its δ exceeds
    /// the model's δ.
    PrivacyBudgetExceeded,
    /// A round's total ε is below the previous round's total or below its own ε.
    PrivacyTotalMismatch,
    /// A negative amount, ε or pool, or a δ outside [0, 1).
    InvalidAmount,
    /// A payout allots more than the model's pool has left, or less than the previous payout
    /// carried.
    PayoutExceedsPool,
    /// A payout goes to an owner that consented but did not participate in the named round
    /// (or, for the final payout, in any round).
    PayoutToNonParticipant,
    /// A payout goes to a DID that never consented to the model.
    PayoutWithoutConsent,
    /// A payout's amounts and carry do not add up to its allotment.
    PayoutDoesNotBalance,
    /// A payout's amounts are not its allotment split by its scores under the contract's rule.
    PayoutDoesNotFollowScores,
    /// A payout's scores differ from the scores recomputed from the valued updates and the
    /// validation set (checked when the verifier holds them).
    ScoresDoNotRecompute,
    /// A published contract's text cannot be read, so nobody can know what owners consented
    /// to; the publication does not count.
    ContractUnreadable,
    /// A publication's declared terms differ from the terms its contract text states; rounds
    /// are checked against the text.
    TermsMismatch,
    /// A round's declared ε differs from the ε the contract's mechanism gives for the rounds
    /// so far, as planned.
    EpsilonMismatch,
    /// A round relies on a consent that names another publisher.
    ConsentWrongPublisher,
    /// A round relies on a consent whose fields or dataset do not cover what the model reads.
    ConsentDoesNotCover,
    /// A node's privacy record names no consent of its own for the model, goes back in
    /// rounds, or holds a mechanism or δ that cannot be accounted.
    PrivacyRecordInvalid,
    /// A model's statistics phase is committed twice, after a round, for a contract that has
    /// none, or with a scaling that does not hash to its hash; or a round does not name the
    /// model's committed scaling.
    StatisticsInvalid,
    /// A wallet link or unlink whose wallet signature is not by the address it names (for
    /// this network, DID, chain and seq).
    WalletSignatureInvalid,
    /// An anchor event's root is not the root of the heads it lists.
    AnchorRootMismatch,
    /// An author's event at an anchored height is not the one anchored (or is missing): the
    /// chain was rewritten or truncated after it was anchored.
    AnchoredHistoryRewritten,
    /// An anchor event's root, index or block is not what the chain holds (checked when the
    /// verifier asks the chain: `ledger verify --anchors`).
    AnchorNotOnChain,
    /// The chain holds an anchor by a wallet some author anchors or pays with, and the ledger
    /// has no record of it: the author's `chain-anchored` event was removed (with whatever
    /// history it vouched for) or never written (checked when the verifier asks the chain).
    AnchorUnrecorded,
    /// A settlement's transaction is not in the block it records (checked when the verifier
    /// asks the chain).
    SettlementNotOnChain,
    /// A settlement batch reuses a nonce of its publisher and model.
    SettlementReplayed,
    /// A `settlement-resent` names no `rewards-settled` event of its author with its model and
    /// nonce.
    SettlementResentInvalid,
    /// A settlement pays an owner more than the rewards it covers owe it, less earlier
    /// settlements, or covers something that is not the model's payout.
    SettlementExceedsRewards,
    /// A settlement pays an address that was not the owner's linked wallet on that chain.
    SettlementToUnlinkedWallet,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 48] = [
        Rule::Signature,
        Rule::ForeignNetwork,
        Rule::ChainGap,
        Rule::ChainPrevHash,
        Rule::ChainTimestamp,
        Rule::Fork,
        Rule::Undecodable,
        Rule::RecordMismatch,
        Rule::UnknownModel,
        Rule::DuplicateModel,
        Rule::ModelIdMismatch,
        Rule::NotPublisher,
        Rule::ConsentMissing,
        Rule::ConsentWrongAuthor,
        Rule::ConsentWrongModel,
        Rule::ConsentWrongCard,
        Rule::ConsentNotYetGranted,
        Rule::ConsentRevoked,
        Rule::ConsentExpired,
        Rule::RevocationInvalid,
        Rule::DuplicateParticipant,
        Rule::RoundOutOfOrder,
        Rule::PrivacyBudgetExceeded,
        Rule::PrivacyTotalMismatch,
        Rule::InvalidAmount,
        Rule::PayoutExceedsPool,
        Rule::PayoutToNonParticipant,
        Rule::PayoutWithoutConsent,
        Rule::PayoutDoesNotBalance,
        Rule::PayoutDoesNotFollowScores,
        Rule::ScoresDoNotRecompute,
        Rule::ContractUnreadable,
        Rule::TermsMismatch,
        Rule::EpsilonMismatch,
        Rule::ConsentWrongPublisher,
        Rule::ConsentDoesNotCover,
        Rule::PrivacyRecordInvalid,
        Rule::StatisticsInvalid,
        Rule::WalletSignatureInvalid,
        Rule::AnchorRootMismatch,
        Rule::AnchoredHistoryRewritten,
        Rule::AnchorNotOnChain,
        Rule::AnchorUnrecorded,
        Rule::SettlementNotOnChain,
        Rule::SettlementReplayed,
        Rule::SettlementResentInvalid,
        Rule::SettlementExceedsRewards,
        Rule::SettlementToUnlinkedWallet,
    ];

    /// The stable short name, e.g. `consent-revoked`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Signature => "signature",
            Rule::ForeignNetwork => "foreign-network",
            Rule::ChainGap => "chain-gap",
            Rule::ChainPrevHash => "chain-prev-hash",
            Rule::ChainTimestamp => "chain-timestamp",
            Rule::Fork => "fork",
            Rule::Undecodable => "undecodable",
            Rule::RecordMismatch => "record-mismatch",
            Rule::UnknownModel => "unknown-model",
            Rule::DuplicateModel => "duplicate-model",
            Rule::ModelIdMismatch => "model-id-mismatch",
            Rule::NotPublisher => "not-publisher",
            Rule::ConsentMissing => "consent-missing",
            Rule::ConsentWrongAuthor => "consent-wrong-author",
            Rule::ConsentWrongModel => "consent-wrong-model",
            Rule::ConsentWrongCard => "consent-wrong-card",
            Rule::ConsentNotYetGranted => "consent-not-yet-granted",
            Rule::ConsentRevoked => "consent-revoked",
            Rule::ConsentExpired => "consent-expired",
            Rule::RevocationInvalid => "revocation-invalid",
            Rule::DuplicateParticipant => "duplicate-participant",
            Rule::RoundOutOfOrder => "round-out-of-order",
            Rule::PrivacyBudgetExceeded => "privacy-budget-exceeded",
            Rule::PrivacyTotalMismatch => "privacy-total-mismatch",
            Rule::InvalidAmount => "invalid-amount",
            Rule::PayoutExceedsPool => "payout-exceeds-pool",
            Rule::PayoutToNonParticipant => "payout-to-non-participant",
            Rule::PayoutWithoutConsent => "payout-without-consent",
            Rule::PayoutDoesNotBalance => "payout-does-not-balance",
            Rule::PayoutDoesNotFollowScores => "payout-does-not-follow-scores",
            Rule::ScoresDoNotRecompute => "scores-do-not-recompute",
            Rule::ContractUnreadable => "contract-unreadable",
            Rule::TermsMismatch => "terms-mismatch",
            Rule::EpsilonMismatch => "epsilon-mismatch",
            Rule::ConsentWrongPublisher => "consent-wrong-publisher",
            Rule::ConsentDoesNotCover => "consent-does-not-cover",
            Rule::PrivacyRecordInvalid => "privacy-record-invalid",
            Rule::StatisticsInvalid => "statistics-invalid",
            Rule::WalletSignatureInvalid => "wallet-signature-invalid",
            Rule::AnchorRootMismatch => "anchor-root-mismatch",
            Rule::AnchoredHistoryRewritten => "anchored-history-rewritten",
            Rule::AnchorNotOnChain => "anchor-not-on-chain",
            Rule::AnchorUnrecorded => "anchor-unrecorded",
            Rule::SettlementNotOnChain => "settlement-not-on-chain",
            Rule::SettlementReplayed => "settlement-replayed",
            Rule::SettlementResentInvalid => "settlement-resent-invalid",
            Rule::SettlementExceedsRewards => "settlement-exceeds-rewards",
            Rule::SettlementToUnlinkedWallet => "settlement-to-unlinked-wallet",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule, and where.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// The offending event (absent only for a stored row whose id cannot be read).
    pub event_id: Option<EventId>,
    /// The offending event's author.
    pub author: Option<Did>,
    /// The offending event's seq.
    pub seq: Option<u64>,
    /// What exactly is wrong, in a sentence.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.rule)?;
        if let Some(author) = &self.author {
            write!(f, " {author}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(id) = &self.event_id {
            write!(f, " event {id}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The result of verifying a ledger.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Distinct events examined (including fork evidence and undecodable rows).
    pub n_events: usize,
    /// Distinct authors.
    pub n_authors: usize,
    /// Models published (admissible publications, duplicates counted once).
    pub n_models: usize,
    /// Rounds committed (admissible `round-committed` events).
    pub n_rounds: usize,
    /// Every problem found.
    pub violations: Vec<Violation>,
}

impl VerifyReport {
    /// True when no rule is broken.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations of one rule.
    pub fn of_rule(&self, rule: Rule) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.rule == rule)
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// `n` and the noun, singular for one: "1 round", "3 rounds".
pub(crate) fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// The text rendering: a summary line, then one line per violation.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}, {}, {}, {}: {}",
            count(self.n_events, "event"),
            count(self.n_authors, "author"),
            count(self.n_models, "model"),
            count(self.n_rounds, "round"),
            match self.violations.len() {
                0 => "ok".to_string(),
                n => count(n, "violation"),
            }
        )?;
        for violation in &self.violations {
            writeln!(f, "{violation}")?;
        }
        Ok(())
    }
}

/// How a verifier reads a model's contract text. The ledger knows nothing of contracts, so the
/// caller supplies this (fedpool's is `fedpool_runtime::ContractReader`): what owners read is
/// the text, so the rules are checked against what the text says, never against what a
/// publication merely declares.
pub trait ContractRules {
    /// The terms `contract_toml` states, or why it cannot be read.
    fn terms(&self, contract_toml: &str) -> Result<crate::ModelTerms, String>;

    /// The total ε (at the contract's δ) of a model's releases so far: its statistics phase,
    /// if committed, planned as `statistics` says, and its rounds, planned as `plans` say
    /// (oldest first, the latest last): `Ok(None)` when the contract adds no noise, `Err` when
    /// a plan cannot be accounted.
    fn epsilon_total(
        &self,
        contract_toml: &str,
        statistics: Option<&crate::RoundPlan>,
        plans: &[crate::RoundPlan],
    ) -> Result<Option<f64>, String>;

    /// Whether the contract standardises columns with federated statistics, so its rounds
    /// must follow a committed statistics phase and name its scaling.
    fn uses_federated_statistics(&self, contract_toml: &str) -> bool {
        let _ = contract_toml;
        false
    }

    /// ε (at the contract's δ) after each step of each node's privacy history on one model:
    /// for every history, the running total after each of its steps, or why it cannot be
    /// accounted. One call per model, so a mechanism shared by many nodes is evaluated once.
    fn node_epsilons(
        &self,
        contract_toml: &str,
        histories: &[Vec<PrivacyStep<'_>>],
    ) -> Vec<Result<Vec<f64>, String>>;

    /// What is wrong with a payout beyond sums and recipients: amounts that are not the
    /// allotment split by the scores under the contract's rule and, when the verifier holds
    /// the valued updates and the validation set, scores that do not recompute. Empty when
    /// nothing is wrong (or nothing can be checked).
    fn check_payout(
        &self,
        contract_toml: &str,
        payout: &crate::RewardsPaid,
    ) -> Vec<(PayoutFault, String)> {
        let _ = (contract_toml, payout);
        Vec::new()
    }
}

/// What [`ContractRules::check_payout`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutFault {
    /// The amounts are not the allotment split by the scores.
    AmountsDoNotFollowScores,
    /// The scores are not what the valuation recomputes.
    ScoresDoNotRecompute,
}

/// One step of a node's privacy history, as recorded in a [`crate::PrivacySpent`] event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyStep<'a> {
    /// Rounds composed in the step.
    pub rounds: u32,
    /// The per-round mechanism, as the node recorded it (JSON).
    pub mechanism: &'a str,
}

/// Verifies a set of events of `network`, reading contracts with `rules`. Duplicates are
/// counted once and order is irrelevant; several events at one author and seq are a fork.
pub fn verify_events(
    network: &NetworkId,
    events: &[Event],
    rules: &dyn ContractRules,
) -> VerifyReport {
    let mut check = Check::default();

    // Distinct events in (author, seq) order; ties (forks) keep input order.
    let mut seen = HashSet::with_capacity(events.len());
    let mut distinct: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id())).collect();
    distinct.sort_by_key(|e| (e.author(), e.seq()));
    let authors: BTreeSet<Did> = distinct.iter().map(|e| e.author()).collect();

    let mut admissible: Vec<&Event> = Vec::with_capacity(distinct.len());
    for &event in &distinct {
        if event.network() != network {
            check.flag(
                Rule::ForeignNetwork,
                event,
                format!(
                    "signed for network `{}`, this ledger is `{network}`",
                    event.network()
                ),
            );
        } else if event.verify_signature().is_err() {
            check.flag(
                Rule::Signature,
                event,
                "signature does not verify against the author's key".into(),
            );
        } else {
            admissible.push(event);
        }
    }

    check_chains(&mut check, &admissible);
    check_semantics(&mut check, &admissible, rules);
    check_web3(&mut check, network, &admissible);

    VerifyReport {
        n_events: distinct.len(),
        n_authors: authors.len(),
        n_models: check.n_models,
        n_rounds: check.n_rounds,
        violations: check.violations,
    }
}

#[derive(Default)]
struct Check {
    violations: Vec<Violation>,
    n_models: usize,
    n_rounds: usize,
}

impl Check {
    fn flag(&mut self, rule: Rule, event: &Event, detail: String) {
        self.violations.push(Violation {
            rule,
            event_id: Some(event.id()),
            author: Some(event.author()),
            seq: Some(event.seq()),
            detail,
        });
    }
}
