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
//! Budget and pool comparisons allow a relative slack of 1e-9, so that a pool paid out
//! exactly in floating-point shares does not read as overpaid.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::{Body, Did, Event, EventId, ModelId, ModelPublished, NetworkId};

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
    /// A model's payouts add up to more than its reward pool.
    PayoutExceedsPool,
    /// A payout goes to a DID that did not participate in the model's (or the named) round.
    PayoutToNonParticipant,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 26] = [
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

/// The text rendering: a summary line, then one line per violation.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} events, {} authors, {} models, {} rounds: {}",
            self.n_events,
            self.n_authors,
            self.n_models,
            self.n_rounds,
            match self.violations.len() {
                0 => "ok".to_string(),
                1 => "1 violation".to_string(),
                n => format!("{n} violations"),
            }
        )?;
        for violation in &self.violations {
            writeln!(f, "{violation}")?;
        }
        Ok(())
    }
}

/// Verifies a set of events of `network`. Duplicates are counted once and order is
/// irrelevant; several events at one author and seq are a fork.
pub fn verify_events(network: &NetworkId, events: &[Event]) -> VerifyReport {
    let mut check = Check::default();

    // Distinct events in (author, seq) order; ties (forks) keep input order.
    let mut seen = HashSet::with_capacity(events.len());
    let mut distinct: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id())).collect();
    distinct.sort_by(|a, b| (a.author(), a.seq()).cmp(&(b.author(), b.seq())));
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
    check_semantics(&mut check, &admissible);

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

/// `admissible` is sorted by (author, seq).
fn check_chains(check: &mut Check, admissible: &[&Event]) {
    for chain in admissible.chunk_by(|a, b| a.author() == b.author()) {
        let mut expected_seq = 1;
        let mut previous: &[&Event] = &[];
        for same_seq in chain.chunk_by(|a, b| a.seq() == b.seq()) {
            let first = same_seq[0];
            for fork in &same_seq[1..] {
                check.flag(
                    Rule::Fork,
                    fork,
                    format!("conflicts with event {} at the same seq", first.id()),
                );
            }
            if first.seq() != expected_seq {
                check.flag(
                    Rule::ChainGap,
                    first,
                    if expected_seq == 1 {
                        format!("chain starts at seq {}, not 1", first.seq())
                    } else {
                        format!(
                            "seq {} follows seq {}; seq {expected_seq} is missing",
                            first.seq(),
                            expected_seq - 1
                        )
                    },
                );
            } else {
                for &event in same_seq {
                    if event.seq() == 1 {
                        continue; // seq 1 has no prev, by construction.
                    }
                    match previous.iter().find(|p| Some(p.id()) == event.prev()) {
                        None => check.flag(
                            Rule::ChainPrevHash,
                            event,
                            format!(
                                "names previous event {}, but seq {} is {}",
                                event.prev().map(|id| id.to_string()).unwrap_or_default(),
                                event.seq() - 1,
                                previous
                                    .iter()
                                    .map(|p| p.id().to_string())
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ),
                        ),
                        Some(prev) if event.timestamp_ms() < prev.timestamp_ms() => check.flag(
                            Rule::ChainTimestamp,
                            event,
                            format!(
                                "timestamp {} ms is before the previous event's {} ms",
                                event.timestamp_ms(),
                                prev.timestamp_ms()
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
            expected_seq = first.seq() + 1;
            previous = same_seq;
        }
    }
}

/// True if `value` is above `limit`, beyond floating-point slack.
fn exceeds(value: f64, limit: f64) -> bool {
    value > limit + 1e-9 * limit.abs().max(1.0)
}

/// A published model, as the rules see it.
struct Model<'a> {
    publisher: Did,
    published: &'a ModelPublished,
    /// Every DID named as a round participant, per round number and overall.
    participants_by_round: HashMap<u32, HashSet<Did>>,
    participants: HashSet<Did>,
}

fn check_semantics(check: &mut Check, admissible: &[&Event]) {
    // Publications first: the earliest (by timestamp, then author and seq) counts.
    let mut publications: Vec<&Event> = admissible
        .iter()
        .copied()
        .filter(|e| matches!(e.body(), Body::ModelPublished(_)))
        .collect();
    publications.sort_by_key(|e| e.timestamp_ms());
    let mut models: BTreeMap<&ModelId, Model<'_>> = BTreeMap::new();
    for event in publications {
        let Body::ModelPublished(published) = event.body() else {
            continue;
        };
        if let Some(model) = models.get(&published.model_id) {
            check.flag(
                Rule::DuplicateModel,
                event,
                format!(
                    "model {} was already published by {}",
                    published.model_id, model.publisher
                ),
            );
            continue;
        }
        let terms = &published.terms;
        if terms.reward_pool < 0.0
            || terms.epsilon_budget.is_some_and(|e| e < 0.0)
            || terms.delta.is_some_and(|d| !(0.0..1.0).contains(&d))
        {
            check.flag(
                Rule::InvalidAmount,
                event,
                format!(
                    "terms need a non-negative pool and ε and a δ in [0, 1): pool {}, ε {:?}, δ {:?}",
                    terms.reward_pool, terms.epsilon_budget, terms.delta
                ),
            );
        }
        models.insert(
            &published.model_id,
            Model {
                publisher: event.author(),
                published,
                participants_by_round: HashMap::new(),
                participants: HashSet::new(),
            },
        );
    }
    check.n_models = models.len();

    let by_id: HashMap<EventId, &Event> = admissible.iter().map(|e| (e.id(), *e)).collect();

    // Consents and revocations (data owners' events).
    let mut revoked_at: HashMap<EventId, u64> = HashMap::new();
    for &event in admissible {
        match event.body() {
            Body::ConsentGranted(consent) => {
                if !models.contains_key(&consent.model_id) {
                    flag_unknown_model(check, event);
                }
                if consent.epsilon_cap.is_some_and(|cap| cap < 0.0) {
                    check.flag(
                        Rule::InvalidAmount,
                        event,
                        format!("negative ε cap {:?}", consent.epsilon_cap),
                    );
                }
            }
            Body::ConsentRevoked(revocation) => {
                if !models.contains_key(&revocation.model_id) {
                    flag_unknown_model(check, event);
                }
                let problem = match by_id.get(&revocation.consent).map(|e| (e, e.body())) {
                    None => Some("names an event that is not on the ledger".to_string()),
                    Some((_, body)) if !matches!(body, Body::ConsentGranted(_)) => {
                        Some(format!("names a {} event, not a consent", body.kind()))
                    }
                    Some((granted, _)) if granted.author() != event.author() => Some(format!(
                        "names a consent granted by {}, not by the revoker",
                        granted.author()
                    )),
                    Some((_, body)) if body.model_id() != &revocation.model_id => Some(format!(
                        "names a consent for model {}, not {}",
                        body.model_id(),
                        revocation.model_id
                    )),
                    Some(_) => None,
                };
                match problem {
                    Some(problem) => check.flag(
                        Rule::RevocationInvalid,
                        event,
                        format!("revocation of {}: {problem}", revocation.consent),
                    ),
                    None => {
                        let at = revoked_at
                            .entry(revocation.consent)
                            .or_insert(event.timestamp_ms());
                        *at = (*at).min(event.timestamp_ms());
                    }
                }
            }
            _ => {}
        }
    }

    // Publisher events in chain order: rounds, then (in the same pass) payouts and releases.
    let mut last_round: HashMap<ModelId, (u32, f64)> = HashMap::new();
    let mut paid: HashMap<&ModelId, f64> = HashMap::new();
    for &event in admissible {
        let (model_id, is_round) = match event.body() {
            Body::RoundCommitted(round) => (&round.model_id, true),
            Body::RewardsPaid(payout) => (&payout.model_id, false),
            Body::ModelReleased(release) => (&release.model_id, false),
            _ => continue,
        };
        if is_round {
            check.n_rounds += 1;
        }
        let Some(model) = models.get_mut(model_id) else {
            flag_unknown_model(check, event);
            continue;
        };
        if event.author() != model.publisher {
            check.flag(
                Rule::NotPublisher,
                event,
                format!(
                    "{} for model {model_id} signed by {}, but the publisher is {}",
                    event.kind(),
                    event.author(),
                    model.publisher
                ),
            );
            continue;
        }
        match event.body() {
            Body::RoundCommitted(_) => {
                check_round(check, event, model, &by_id, &revoked_at, &mut last_round);
            }
            Body::RewardsPaid(_) => check_payout(check, event, model, &mut paid),
            _ => {}
        }
    }
}

fn flag_unknown_model(check: &mut Check, event: &Event) {
    check.flag(
        Rule::UnknownModel,
        event,
        format!(
            "{} names model {}, which was never published",
            event.kind(),
            event.model_id()
        ),
    );
}

fn check_round(
    check: &mut Check,
    event: &Event,
    model: &mut Model<'_>,
    by_id: &HashMap<EventId, &Event>,
    revoked_at: &HashMap<EventId, u64>,
    last_round: &mut HashMap<ModelId, (u32, f64)>,
) {
    let Body::RoundCommitted(round) = event.body() else {
        return;
    };
    let round_ms = event.timestamp_ms();
    let terms = &model.published.terms;

    if round.epsilon_round < 0.0 || round.epsilon_total < 0.0 || !(0.0..1.0).contains(&round.delta)
    {
        check.flag(
            Rule::InvalidAmount,
            event,
            format!(
                "round {} needs non-negative ε and δ in [0, 1): ε round {}, ε total {}, δ {}",
                round.round, round.epsilon_round, round.epsilon_total, round.delta
            ),
        );
    }
    let previous = last_round.get(&round.model_id).copied();
    if let Some((previous_round, previous_total)) = previous {
        if round.round <= previous_round {
            check.flag(
                Rule::RoundOutOfOrder,
                event,
                format!("round {} follows round {previous_round}", round.round),
            );
        }
        if exceeds(previous_total, round.epsilon_total) {
            check.flag(
                Rule::PrivacyTotalMismatch,
                event,
                format!(
                    "round {} total ε {} is below the previous round's total {previous_total}",
                    round.round, round.epsilon_total
                ),
            );
        }
    }
    if exceeds(round.epsilon_round, round.epsilon_total) {
        check.flag(
            Rule::PrivacyTotalMismatch,
            event,
            format!(
                "round {} total ε {} is below the round's own ε {}",
                round.round, round.epsilon_total, round.epsilon_round
            ),
        );
    }
    if let Some(budget) = terms.epsilon_budget
        && exceeds(round.epsilon_total, budget)
    {
        check.flag(
            Rule::PrivacyBudgetExceeded,
            event,
            format!(
                "round {} total ε {} exceeds model {}'s budget {budget}",
                round.round, round.epsilon_total, round.model_id
            ),
        );
    }
    if let Some(delta) = terms.delta
        && exceeds(round.delta, delta)
    {
        check.flag(
            Rule::PrivacyBudgetExceeded,
            event,
            format!(
                "round {} δ {} exceeds model {}'s δ {delta}",
                round.round, round.delta, round.model_id
            ),
        );
    }
    let total_so_far = previous.map_or(round.epsilon_total, |(_, total)| {
        total.max(round.epsilon_total)
    });
    let latest_round = previous.map_or(round.round, |(number, _)| number.max(round.round));
    last_round.insert(round.model_id.clone(), (latest_round, total_so_far));

    let mut seen = HashSet::with_capacity(round.participants.len());
    let round_participants = model.participants_by_round.entry(round.round).or_default();
    for (did, consent_id) in &round.participants {
        round_participants.insert(*did);
        model.participants.insert(*did);
        if !seen.insert(*did) {
            check.flag(
                Rule::DuplicateParticipant,
                event,
                format!("round {} lists {did} more than once", round.round),
            );
            continue;
        }
        let mut flag = |rule: Rule, problem: String| {
            check.flag(
                rule,
                event,
                format!(
                    "round {} participant {did} (consent {consent_id}): {problem}",
                    round.round
                ),
            );
        };
        let Some(granted) = by_id.get(consent_id) else {
            flag(Rule::ConsentMissing, "no such consent on the ledger".into());
            continue;
        };
        let Body::ConsentGranted(consent) = granted.body() else {
            flag(
                Rule::ConsentMissing,
                format!("the named event is a {}, not a consent", granted.kind()),
            );
            continue;
        };
        if granted.author() != *did {
            flag(
                Rule::ConsentWrongAuthor,
                format!("the consent was granted by {}", granted.author()),
            );
        }
        if consent.model_id != round.model_id {
            flag(
                Rule::ConsentWrongModel,
                format!("the consent is for model {}", consent.model_id),
            );
        }
        if consent.card_hash != model.published.card_hash {
            flag(
                Rule::ConsentWrongCard,
                format!(
                    "the consent is to card {}, the model's card is {}",
                    consent.card_hash, model.published.card_hash
                ),
            );
        }
        if granted.timestamp_ms() > round_ms {
            flag(
                Rule::ConsentNotYetGranted,
                format!(
                    "granted at {} ms, after the round at {round_ms} ms",
                    granted.timestamp_ms()
                ),
            );
        }
        if let Some(&revoked_ms) = revoked_at.get(consent_id)
            && revoked_ms < round_ms
        {
            flag(
                Rule::ConsentRevoked,
                format!("revoked at {revoked_ms} ms, before the round at {round_ms} ms"),
            );
        }
        if let Some(expires_ms) = consent.expires_at_ms
            && expires_ms <= round_ms
        {
            flag(
                Rule::ConsentExpired,
                format!("expired at {expires_ms} ms, at or before the round at {round_ms} ms"),
            );
        }
        if let Some(cap) = consent.epsilon_cap
            && exceeds(round.epsilon_total, cap)
        {
            flag(
                Rule::PrivacyBudgetExceeded,
                format!(
                    "total ε {} exceeds the participant's cap {cap}",
                    round.epsilon_total
                ),
            );
        }
    }
}

fn check_payout<'a>(
    check: &mut Check,
    event: &'a Event,
    model: &Model<'_>,
    paid: &mut HashMap<&'a ModelId, f64>,
) {
    let Body::RewardsPaid(payout) = event.body() else {
        return;
    };
    let eligible = match payout.round {
        Some(round) => model.participants_by_round.get(&round),
        None => Some(&model.participants),
    };
    for (did, amount) in &payout.payouts {
        if *amount < 0.0 {
            check.flag(
                Rule::InvalidAmount,
                event,
                format!("negative payout {amount} to {did}"),
            );
        }
        if !eligible.is_some_and(|dids| dids.contains(did)) {
            check.flag(
                Rule::PayoutToNonParticipant,
                event,
                match payout.round {
                    Some(round) => format!(
                        "pays {amount} to {did}, who was not a participant of round {round} of model {}",
                        payout.model_id
                    ),
                    None => format!(
                        "pays {amount} to {did}, who was not a participant of model {}",
                        payout.model_id
                    ),
                },
            );
        }
    }
    let total = paid.entry(&payout.model_id).or_insert(0.0);
    *total += payout.payouts.iter().map(|(_, amount)| amount.max(0.0)).sum::<f64>();
    let pool = model.published.terms.reward_pool;
    if exceeds(*total, pool) {
        check.flag(
            Rule::PayoutExceedsPool,
            event,
            format!(
                "payouts for model {} reach {} {}, the pool is {pool}",
                payout.model_id, *total, model.published.terms.currency
            ),
        );
    }
}
