//! Model rules: consent at round time, privacy budgets, publisher authority, the reward pool
//! and who may be paid.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Check, ContractRules, PayoutFault, PrivacyStep, Rule};
use crate::{
    Body, Did, Event, EventId, ModelId, ModelPublished, ModelTerms, PrivacySpent, RoundPlan,
    StatisticsCommitted,
};

/// True if `value` is above `limit`, beyond floating-point slack.
fn exceeds(value: f64, limit: f64) -> bool {
    value > limit + 1e-9 * limit.abs().max(1.0)
}

/// A published model, as the rules see it.
struct Model<'a> {
    publisher: Did,
    published: &'a ModelPublished,
    /// The terms its contract text states (what owners read), which the rules enforce.
    terms: ModelTerms,
    /// Each committed round's plan, in the publisher's chain order, to recompute ε.
    plans: Vec<RoundPlan>,
    /// Whether the contract standardises with federated statistics.
    needs_statistics: bool,
    /// The committed statistics phase: its plan (to recompute ε) and its scaling's hash.
    statistics: Option<(RoundPlan, String)>,
    /// Every DID named as a round participant, per round number and overall.
    participants_by_round: HashMap<u32, HashSet<Did>>,
    participants: HashSet<Did>,
}

/// Whether two statements of terms agree (floats up to a relative 1e-9).
fn same_terms(a: &ModelTerms, b: &ModelTerms) -> bool {
    let same = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    let same_option = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => same(x, y),
        (None, None) => true,
        _ => false,
    };
    let mut fields_a = a.required_fields.clone();
    let mut fields_b = b.required_fields.clone();
    fields_a.sort();
    fields_b.sort();
    fields_a == fields_b
        && same_option(a.epsilon_budget, b.epsilon_budget)
        && same_option(a.delta, b.delta)
        && a.reward_pool == b.reward_pool
        && a.currency == b.currency
}

pub(super) fn check_semantics(check: &mut Check, admissible: &[&Event], rules: &dyn ContractRules) {
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
        // The id binds the publisher and the text: a copy re-signed by another key (even with an
        // earlier timestamp) keeps an id that is not its own and never becomes the model.
        let expected_id = ModelId::for_publication(&event.author(), &published.contract_toml);
        if published.model_id != expected_id {
            check.flag(
                Rule::ModelIdMismatch,
                event,
                format!(
                    "model id {} is not the hash of its publisher {} and its contract ({expected_id}); the publication does not count",
                    published.model_id,
                    event.author()
                ),
            );
            continue;
        }
        let terms = match rules.terms(&published.contract_toml) {
            Ok(terms) => terms,
            Err(reason) => {
                check.flag(
                    Rule::ContractUnreadable,
                    event,
                    format!(
                        "the contract of model {} cannot be read ({reason}); the publication does not count",
                        published.model_id
                    ),
                );
                continue;
            }
        };
        if !same_terms(&terms, &published.terms) {
            check.flag(
                Rule::TermsMismatch,
                event,
                format!(
                    "model {} declares terms {:?} but its contract states {:?}; the contract's count",
                    published.model_id, published.terms, terms
                ),
            );
        }
        if terms.epsilon_budget.is_some_and(|e| e < 0.0)
            || terms.delta.is_some_and(|d| !(0.0..1.0).contains(&d))
        {
            check.flag(
                Rule::InvalidAmount,
                event,
                format!(
                    "terms need a non-negative ε and a δ in [0, 1): ε {:?}, δ {:?}",
                    terms.epsilon_budget, terms.delta
                ),
            );
        }
        models.insert(
            &published.model_id,
            Model {
                publisher: event.author(),
                published,
                terms,
                plans: Vec::new(),
                needs_statistics: rules.uses_federated_statistics(&published.contract_toml),
                statistics: None,
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
            Body::ConsentRefused(refusal) if !models.contains_key(&refusal.model_id) => {
                flag_unknown_model(check, event);
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
                    Some((_, Body::ConsentGranted(consent)))
                        if consent.model_id != revocation.model_id =>
                    {
                        Some(format!(
                            "names a consent for model {}, not {}",
                            consent.model_id, revocation.model_id
                        ))
                    }
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
    let mut paid: HashMap<&ModelId, PaidSoFar> = HashMap::new();
    // Owners who ever consented to each model (a payout to anyone else is to a stranger).
    let mut consented: HashMap<&ModelId, HashSet<Did>> = HashMap::new();
    for &event in admissible {
        if let Body::ConsentGranted(consent) = event.body() {
            consented
                .entry(&consent.model_id)
                .or_default()
                .insert(event.author());
        }
    }
    for &event in admissible {
        let (model_id, is_round) = match event.body() {
            Body::RoundCommitted(round) => (&round.model_id, true),
            Body::StatisticsCommitted(statistics) => (&statistics.model_id, false),
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
                check_round(
                    check,
                    event,
                    model,
                    &by_id,
                    &revoked_at,
                    &mut last_round,
                    rules,
                );
            }
            Body::StatisticsCommitted(statistics) => {
                check_statistics(check, event, statistics, model, &by_id, &revoked_at, rules);
            }
            Body::RewardsPaid(payout) => {
                let consenting = consented.get(&payout.model_id);
                check_payout(check, event, model, consenting, &mut paid, rules);
            }
            _ => {}
        }
    }

    check_privacy_records(check, admissible, &models, &by_id, rules);
}

/// Whether a recomputed ε and a declared one agree (relative 1e-6, absolute 1e-9 near zero).
fn epsilon_differs(recomputed: f64, declared: f64) -> bool {
    (recomputed - declared).abs() > 1e-6 * recomputed.abs().max(1e-3)
}

/// Owners' privacy records, per author and model in chain order: each names the author's own
/// consent for the model, composes every round since the previous record, declares the ε its
/// mechanisms give, and stays within the owner's cap and the model's budget.
fn check_privacy_records(
    check: &mut Check,
    admissible: &[&Event],
    models: &BTreeMap<&ModelId, Model<'_>>,
    by_id: &HashMap<EventId, &Event>,
    rules: &dyn ContractRules,
) {
    type History<'e> = Vec<(&'e Event, &'e PrivacySpent)>;
    let mut histories: BTreeMap<&ModelId, BTreeMap<Did, History<'_>>> = BTreeMap::new();
    for &event in admissible {
        let Body::PrivacySpent(record) = event.body() else {
            continue;
        };
        if !models.contains_key(&record.model_id) {
            flag_unknown_model(check, event);
            continue;
        }
        histories
            .entry(&record.model_id)
            .or_default()
            .entry(event.author())
            .or_default()
            .push((event, record));
    }
    for (model_id, by_author) in histories {
        let model = &models[model_id];
        let steps: Vec<Vec<PrivacyStep<'_>>> = by_author
            .values()
            .map(|records| {
                records
                    .iter()
                    .map(|(_, record)| PrivacyStep {
                        rounds: record.rounds,
                        mechanism: &record.mechanism,
                    })
                    .collect()
            })
            .collect();
        let recomputed = rules.node_epsilons(&model.published.contract_toml, &steps);
        for ((author, records), recomputed) in by_author.iter().zip(recomputed) {
            check_privacy_history(check, model, by_id, *author, records, recomputed);
        }
    }
}

fn check_privacy_history(
    check: &mut Check,
    model: &Model<'_>,
    by_id: &HashMap<EventId, &Event>,
    author: Did,
    records: &[(&Event, &PrivacySpent)],
    recomputed: Result<Vec<f64>, String>,
) {
    // The statistics phase is round 0; a model's training rounds count from 1.
    let mut previous_round: Option<u32> = None;
    for (step, &(event, record)) in records.iter().enumerate() {
        let mut invalid = |problem: String| {
            check.flag(
                Rule::PrivacyRecordInvalid,
                event,
                format!(
                    "privacy record for round {} of model {}: {problem}",
                    record.round, record.model_id
                ),
            );
        };
        let cap = match by_id.get(&record.consent).map(|e| (e, e.body())) {
            Some((granted, Body::ConsentGranted(consent)))
                if granted.author() == author && consent.model_id == record.model_id =>
            {
                consent.epsilon_cap
            }
            Some(_) => {
                invalid(format!(
                    "{} is not its author's consent for this model",
                    record.consent
                ));
                None
            }
            None => {
                invalid(format!("consent {} is not on the ledger", record.consent));
                None
            }
        };
        let since = previous_round.unwrap_or(0);
        if previous_round.is_some_and(|previous| record.round <= previous) {
            invalid(format!("follows a record for round {since}"));
        } else if record.rounds < record.round - since {
            invalid(format!(
                "composes {}, but {} passed since round {since}",
                super::count(record.rounds as usize, "round"),
                record.round - since
            ));
        } else if record.round == 0 && record.rounds != 1 {
            invalid(format!(
                "the statistics phase is one release, not {}",
                record.rounds
            ));
        }
        previous_round = Some(previous_round.map_or(record.round, |p| p.max(record.round)));
        if model
            .terms
            .delta
            .is_some_and(|delta| exceeds(record.delta, delta))
        {
            invalid(format!(
                "δ {} is above the model's δ {:?}",
                record.delta, model.terms.delta
            ));
        }
        let epsilon = match &recomputed {
            Ok(totals) => totals.get(step).copied(),
            Err(reason) => {
                if step == 0 {
                    invalid(format!("cannot be accounted: {reason}"));
                }
                None
            }
        };
        if let Some(epsilon) = epsilon
            && epsilon_differs(epsilon, record.epsilon_total)
        {
            check.flag(
                Rule::EpsilonMismatch,
                event,
                format!(
                    "{author} declares ε {} spent on model {} by round {}, but its recorded mechanisms give {epsilon}",
                    record.epsilon_total, record.model_id, record.round
                ),
            );
        }
        let spent = epsilon.map_or(record.epsilon_total, |e| e.max(record.epsilon_total));
        let limits = [
            ("the owner's cap", cap),
            ("the model's budget", model.terms.epsilon_budget),
        ];
        for (name, limit) in limits {
            if let Some(limit) = limit
                && exceeds(spent, limit)
            {
                check.flag(
                    Rule::PrivacyBudgetExceeded,
                    event,
                    format!(
                        "{author} has spent ε {spent} on model {} by round {}, past {name} {limit}",
                        record.model_id, record.round
                    ),
                );
            }
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
            event.model_column()
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
    rules: &dyn ContractRules,
) {
    let Body::RoundCommitted(round) = event.body() else {
        return;
    };
    let terms = model.terms.clone();
    let terms = &terms;
    // ε as the contract's mechanism gives it for the rounds so far, never as declared.
    model.plans.push(round.plan);
    let committed_statistics = model.statistics.as_ref().map(|(plan, _)| plan);
    let epsilon_total = recompute_epsilon(
        check,
        event,
        rules,
        model,
        committed_statistics.copied(),
        &format!("round {}", round.round),
        round.epsilon_total,
    );

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
        && exceeds(epsilon_total, budget)
    {
        check.flag(
            Rule::PrivacyBudgetExceeded,
            event,
            format!(
                "round {} total ε {} exceeds model {}'s budget {budget}",
                round.round, epsilon_total, round.model_id
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

    let committed_hash = model.statistics.as_ref().map(|(_, hash)| hash);
    let problem = match (&round.scaling_hash, committed_hash) {
        (Some(named), Some(committed)) if named != committed => Some(format!(
            "names scaling {named}, but the model's committed scaling is {committed}"
        )),
        (Some(named), None) => Some(format!(
            "names scaling {named}, but no statistics phase of the model was committed before it"
        )),
        (None, _) if model.needs_statistics => {
            Some("names no scaling, but the contract standardises with federated statistics".into())
        }
        _ => None,
    };
    if let Some(problem) = problem {
        check.flag(
            Rule::StatisticsInvalid,
            event,
            format!(
                "round {} of model {}: {problem}",
                round.round, round.model_id
            ),
        );
    }
    let round_participants = model.participants_by_round.entry(round.round).or_default();
    for (did, _) in &round.participants {
        round_participants.insert(*did);
        model.participants.insert(*did);
    }
    check_participants(
        check,
        event,
        &format!("round {}", round.round),
        &round.participants,
        model,
        by_id,
        revoked_at,
        epsilon_total,
    );
}

/// Every participant of a round or statistics phase (`what`, for messages) is listed once and
/// relied on an active consent of its own to this model, its publisher and card, covering its
/// fields, granted before and not revoked or expired at the event's time, whose ε cap the
/// model's `epsilon_total` so far respects.
#[allow(clippy::too_many_arguments)]
fn check_participants(
    check: &mut Check,
    event: &Event,
    what: &str,
    participants: &[(Did, EventId)],
    model: &Model<'_>,
    by_id: &HashMap<EventId, &Event>,
    revoked_at: &HashMap<EventId, u64>,
    epsilon_total: f64,
) {
    let round_ms = event.timestamp_ms();
    let terms = &model.terms;
    let model_id = event.model_column();
    let mut seen = HashSet::with_capacity(participants.len());
    for (did, consent_id) in participants {
        if !seen.insert(*did) {
            check.flag(
                Rule::DuplicateParticipant,
                event,
                format!("{what} lists {did} more than once"),
            );
            continue;
        }
        let mut flag = |rule: Rule, problem: String| {
            check.flag(
                rule,
                event,
                format!("{what} participant {did} (consent {consent_id}): {problem}"),
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
        if consent.publisher != model.publisher {
            flag(
                Rule::ConsentWrongPublisher,
                format!(
                    "the consent names publisher {}, the round is by {}",
                    consent.publisher, model.publisher
                ),
            );
        }
        let missing: Vec<&String> = terms
            .required_fields
            .iter()
            .filter(|field| !consent.fields.contains(field))
            .collect();
        if !missing.is_empty() {
            flag(
                Rule::ConsentDoesNotCover,
                format!("the consent does not allow the fields {missing:?} the model reads"),
            );
        }
        if !crate::encoding::is_content_hash(&consent.dataset_fingerprint) {
            flag(
                Rule::ConsentDoesNotCover,
                format!(
                    "the consent's dataset fingerprint {:?} is not a content hash",
                    consent.dataset_fingerprint
                ),
            );
        }
        if consent.model_id.as_str() != model_id {
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
            && exceeds(epsilon_total, cap)
        {
            flag(
                Rule::PrivacyBudgetExceeded,
                format!("total ε {epsilon_total} exceeds the participant's cap {cap}"),
            );
        }
    }
}

/// The model's total ε after `what` (a round, or the statistics phase), recomputed from the
/// contract with the plans committed so far (the statistics phase's, if any, then the
/// rounds'); a declared total that differs, or plans that cannot be accounted, are flagged.
/// Budgets and caps hold against the larger of the declared and the recomputed ε, which this
/// returns.
fn recompute_epsilon(
    check: &mut Check,
    event: &Event,
    rules: &dyn ContractRules,
    model: &Model<'_>,
    statistics: Option<RoundPlan>,
    what: &str,
    declared: f64,
) -> f64 {
    let recomputed = match rules.epsilon_total(
        &model.published.contract_toml,
        statistics.as_ref(),
        &model.plans,
    ) {
        Ok(recomputed) => recomputed,
        Err(reason) => {
            check.flag(
                Rule::EpsilonMismatch,
                event,
                format!("{what} cannot be accounted: {reason}"),
            );
            Some(f64::INFINITY)
        }
    };
    if let Some(recomputed) = recomputed
        && recomputed.is_finite()
        && epsilon_differs(recomputed, declared)
    {
        check.flag(
            Rule::EpsilonMismatch,
            event,
            format!(
                "{what} declares total ε {declared} but the contract's mechanism gives {recomputed} for the releases so far"
            ),
        );
    }
    recomputed.map_or(declared, |e| e.max(declared))
}

/// A statistics phase: once per model, before its first round, for a contract that has one;
/// its scaling hashes to the hash rounds name; its ε is what the contract gives for its plan;
/// and every node in it had consent then.
fn check_statistics(
    check: &mut Check,
    event: &Event,
    statistics: &StatisticsCommitted,
    model: &mut Model<'_>,
    by_id: &HashMap<EventId, &Event>,
    revoked_at: &HashMap<EventId, u64>,
    rules: &dyn ContractRules,
) {
    let mut invalid = |problem: String| {
        check.flag(
            Rule::StatisticsInvalid,
            event,
            format!("statistics of model {}: {problem}", statistics.model_id),
        );
    };
    if !model.needs_statistics {
        invalid("the contract standardises nothing with federated statistics".into());
    }
    if model.statistics.is_some() {
        invalid("the statistics phase was already committed".into());
        return;
    }
    if !model.plans.is_empty() {
        invalid(format!(
            "committed after {}: the phase comes before the first round",
            super::count(model.plans.len(), "round")
        ));
    }
    let hash = crate::content_hash(statistics.scaling.as_bytes());
    if hash != statistics.scaling_hash {
        invalid(format!(
            "the scaling hashes to {hash}, not to the declared {}",
            statistics.scaling_hash
        ));
    }
    if statistics.epsilon_round < 0.0
        || statistics.epsilon_total < 0.0
        || !(0.0..1.0).contains(&statistics.delta)
    {
        check.flag(
            Rule::InvalidAmount,
            event,
            format!(
                "the statistics phase needs non-negative ε and δ in [0, 1): ε {}, ε total {}, δ {}",
                statistics.epsilon_round, statistics.epsilon_total, statistics.delta
            ),
        );
    }
    // With whatever rounds came before it (none, for a valid phase).
    let epsilon_total = recompute_epsilon(
        check,
        event,
        rules,
        model,
        Some(statistics.plan),
        "the statistics phase",
        statistics.epsilon_total,
    );
    if let Some(budget) = model.terms.epsilon_budget
        && exceeds(epsilon_total, budget)
    {
        check.flag(
            Rule::PrivacyBudgetExceeded,
            event,
            format!(
                "the statistics phase's ε {epsilon_total} exceeds model {}'s budget {budget}",
                statistics.model_id
            ),
        );
    }
    check_participants(
        check,
        event,
        "the statistics phase",
        &statistics.participants,
        model,
        by_id,
        revoked_at,
        epsilon_total,
    );
    model.statistics = Some((statistics.plan, statistics.scaling_hash.clone()));
}

/// What a model's payouts have paid so far and what the last one carried.
#[derive(Default)]
struct PaidSoFar {
    paid: u64,
    carried: u64,
}

fn check_payout<'a>(
    check: &mut Check,
    event: &'a Event,
    model: &Model<'_>,
    consenting: Option<&HashSet<Did>>,
    paid: &mut HashMap<&'a ModelId, PaidSoFar>,
    rules: &dyn ContractRules,
) {
    let Body::RewardsPaid(payout) = event.body() else {
        return;
    };
    let eligible = match payout.round {
        Some(round) => model.participants_by_round.get(&round),
        None => Some(&model.participants),
    };
    for line in &payout.payouts {
        let did = &line.owner;
        let amount = line.amount;
        if !consenting.is_some_and(|dids| dids.contains(did)) {
            check.flag(
                Rule::PayoutWithoutConsent,
                event,
                format!(
                    "pays {amount} to {did}, who never consented to model {}",
                    payout.model_id
                ),
            );
        } else if !eligible.is_some_and(|dids| dids.contains(did)) {
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
    let total = payout
        .payouts
        .iter()
        .try_fold(payout.carried, |sum, line| sum.checked_add(line.amount));
    if total != Some(payout.allotment) {
        check.flag(
            Rule::PayoutDoesNotBalance,
            event,
            format!(
                "pays {} and carries {} of an allotment of {}",
                payout
                    .payouts
                    .iter()
                    .map(|line| u128::from(line.amount))
                    .sum::<u128>(),
                payout.carried,
                payout.allotment
            ),
        );
    }
    let so_far = paid.entry(&payout.model_id).or_default();
    let pool = model.terms.reward_pool;
    let left = pool.saturating_sub(so_far.paid);
    let currency = &model.terms.currency;
    if payout.allotment > left {
        check.flag(
            Rule::PayoutExceedsPool,
            event,
            format!(
                "allots {} {currency} for model {} when {} of its pool of {pool} were paid already and {left} are left",
                payout.allotment, payout.model_id, so_far.paid
            ),
        );
    } else if payout.allotment < so_far.carried {
        check.flag(
            Rule::PayoutExceedsPool,
            event,
            format!(
                "allots {} {currency} for model {}, less than the {} the previous payout carried",
                payout.allotment, payout.model_id, so_far.carried
            ),
        );
    }
    so_far.paid = so_far.paid.saturating_add(
        payout
            .payouts
            .iter()
            .fold(0u64, |sum, line| sum.saturating_add(line.amount)),
    );
    so_far.carried = payout.carried;
    for (fault, reason) in rules.check_payout(&model.published.contract_toml, payout) {
        let rule = match fault {
            PayoutFault::AmountsDoNotFollowScores => Rule::PayoutDoesNotFollowScores,
            PayoutFault::ScoresDoNotRecompute => Rule::ScoresDoNotRecompute,
        };
        check.flag(rule, event, reason);
    }
}
