//! Shared test helpers: a chain builder, body constructors, and a simulator that turns random
//! actions into a ledger that must verify cleanly. Also used by `benches/ledger.rs`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;

use fedpool_ledger::*;

/// Reads the test contracts [`model`] writes: one `key = value` per line. Stands in for the
/// real contract parser (fedpool-runtime's), which the ledger crate does not depend on.
pub struct TestRules;

impl ContractRules for TestRules {
    fn terms(&self, contract_toml: &str) -> Result<ModelTerms, String> {
        let value = |key: &str| {
            contract_toml
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{key} = ")))
                .ok_or_else(|| format!("no `{key}` line"))
        };
        let number = |key: &str| -> Result<Option<f64>, String> {
            match value(key)? {
                "none" => Ok(None),
                text => text.parse().map(Some).map_err(|e| format!("{key}: {e}")),
            }
        };
        Ok(ModelTerms {
            required_fields: value("fields")?
                .split(',')
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect(),
            epsilon_budget: number("epsilon_budget")?,
            delta: number("delta")?,
            reward_pool: value("reward_pool")?
                .parse()
                .map_err(|e| format!("reward_pool: {e}"))?,
            currency: value("currency")?.to_string(),
        })
    }

    /// A contract may state `epsilon_per_round = x`: its rounds (and its statistics phase)
    /// then cost x each, so a test can check that verify recomputes ε; without it, ε is not
    /// recomputed.
    fn epsilon_total(
        &self,
        contract_toml: &str,
        statistics: Option<&RoundPlan>,
        plans: &[RoundPlan],
    ) -> Result<Option<f64>, String> {
        let Some(per_round) = contract_toml
            .lines()
            .find_map(|line| line.strip_prefix("epsilon_per_round = "))
        else {
            return Ok(None);
        };
        let per_round: f64 = per_round.parse().map_err(|e| format!("{e}"))?;
        let releases = plans.len() + usize::from(statistics.is_some());
        Ok(Some(per_round * releases as f64))
    }

    /// A contract stating `federated_statistics = true` has a statistics phase.
    fn uses_federated_statistics(&self, contract_toml: &str) -> bool {
        contract_toml
            .lines()
            .any(|line| line.trim() == "federated_statistics = true")
    }

    /// A test mechanism is `per-round x`: each round it composes costs x.
    fn node_epsilons(
        &self,
        _contract_toml: &str,
        histories: &[Vec<PrivacyStep<'_>>],
    ) -> Vec<Result<Vec<f64>, String>> {
        histories
            .iter()
            .map(|steps| {
                let mut total = 0.0;
                steps
                    .iter()
                    .map(|step| {
                        let per_round: f64 = step
                            .mechanism
                            .strip_prefix("per-round ")
                            .ok_or_else(|| format!("unknown mechanism {:?}", step.mechanism))?
                            .parse()
                            .map_err(|e| format!("{e}"))?;
                        total += per_round * f64::from(step.rounds);
                        Ok(total)
                    })
                    .collect()
            })
            .collect()
    }
}

thread_local! {
    /// Which key published each test model, so [`consent`] can name it.
    static PUBLISHERS: RefCell<HashMap<ModelId, Did>> = RefCell::new(HashMap::new());
}

pub const NETWORK: &str = "fedpool-test";

pub fn network() -> NetworkId {
    NetworkId::new(NETWORK).unwrap()
}

/// Signs events onto per-author chains, remembering each author's head.
#[derive(Debug)]
pub struct Ledger {
    pub network: NetworkId,
    pub events: Vec<Event>,
    heads: HashMap<Did, (u64, Option<EventId>)>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::on(network())
    }

    pub fn on(network: NetworkId) -> Ledger {
        Ledger {
            network,
            events: Vec::new(),
            heads: HashMap::new(),
        }
    }

    /// Signs `body` as `keypair`'s next event and keeps it.
    pub fn push(&mut self, keypair: &Keypair, timestamp_ms: u64, body: impl Into<Body>) -> Event {
        let (last_seq, last_id) = self.heads.get(&keypair.did()).copied().unwrap_or((0, None));
        let event = Event::sign(
            &self.network,
            keypair,
            last_seq + 1,
            last_id,
            timestamp_ms,
            body,
        )
        .unwrap();
        self.heads
            .insert(keypair.did(), (event.seq(), Some(event.id())));
        self.events.push(event.clone());
        event
    }

    pub fn verify(&self) -> VerifyReport {
        verify_events(&self.network, &self.events, &TestRules)
    }
}

/// The contract text [`TestRules`] reads for these terms.
pub fn contract_text(name: &str, terms: &ModelTerms) -> String {
    let number = |x: Option<f64>| x.map_or("none".to_string(), |x| x.to_string());
    format!(
        "name = {name}\nfields = {}\nepsilon_budget = {}\ndelta = {}\nreward_pool = {}\ncurrency = {}\n",
        terms.required_fields.join(","),
        number(terms.epsilon_budget),
        number(terms.delta),
        terms.reward_pool,
        terms.currency
    )
}

/// A model published by `publisher`, with its id bound to it.
pub fn model(
    publisher: &Keypair,
    name: &str,
    epsilon_budget: Option<f64>,
    reward_pool: u64,
) -> ModelPublished {
    let terms = ModelTerms {
        required_fields: vec!["age".into(), "income".into()],
        epsilon_budget,
        delta: epsilon_budget.map(|_| 1e-5),
        reward_pool,
        currency: "points".to_string(),
    };
    let contract_toml = contract_text(name, &terms);
    let model_id = ModelId::for_publication(&publisher.did(), &contract_toml);
    PUBLISHERS.with(|p| p.borrow_mut().insert(model_id.clone(), publisher.did()));
    ModelPublished {
        model_id,
        name: name.to_string(),
        version: "1.0.0".to_string(),
        card_hash: content_hash(format!("card of {name}").as_bytes()),
        contract_toml,
        terms,
    }
}

/// A model like [`model`] whose contract has a statistics phase, each release (the phase and
/// every round) costing `epsilon_per_release`.
pub fn model_with_statistics(
    publisher: &Keypair,
    name: &str,
    epsilon_per_release: f64,
) -> ModelPublished {
    let mut published = model(publisher, name, Some(10.0), 100);
    published.contract_toml.push_str(&format!(
        "federated_statistics = true\nepsilon_per_round = {epsilon_per_release}\n"
    ));
    published.model_id = ModelId::for_publication(&publisher.did(), &published.contract_toml);
    PUBLISHERS.with(|p| {
        p.borrow_mut()
            .insert(published.model_id.clone(), publisher.did())
    });
    published
}

/// A statistics phase of `model` whose scaling text is `scaling`, correctly hashed.
pub fn statistics(
    model: &ModelPublished,
    participants: Vec<(Did, EventId)>,
    scaling: &str,
    epsilon_total: f64,
) -> StatisticsCommitted {
    let participants_len = participants.len() as u32;
    StatisticsCommitted {
        model_id: model.model_id.clone(),
        participants,
        scaling: scaling.to_string(),
        scaling_hash: content_hash(scaling.as_bytes()),
        epsilon_round: epsilon_total,
        epsilon_total,
        delta: model.terms.delta.unwrap_or(0.0),
        plan: RoundPlan {
            asked: participants_len,
            eligible: participants_len,
            clip_norm: 1.0,
        },
    }
}

pub fn consent(
    model: &ModelPublished,
    expires_at_ms: Option<u64>,
    epsilon_cap: Option<f64>,
) -> ConsentGranted {
    ConsentGranted {
        model_id: model.model_id.clone(),
        publisher: PUBLISHERS.with(|p| {
            p.borrow()
                .get(&model.model_id)
                .copied()
                .expect("the test model was made by `model`")
        }),
        card_hash: model.card_hash.clone(),
        dataset_fingerprint: content_hash(b"rows"),
        fields: model.terms.required_fields.clone(),
        expires_at_ms,
        epsilon_cap,
        decided_by: None,
    }
}

pub fn round(
    model: &ModelPublished,
    round: u32,
    participants: Vec<(Did, EventId)>,
    epsilon_round: f64,
    epsilon_total: f64,
) -> RoundCommitted {
    let participants_len = participants.len() as u32;
    RoundCommitted {
        model_id: model.model_id.clone(),
        round,
        participants,
        global_model_hash: content_hash(format!("model after round {round}").as_bytes()),
        epsilon_round,
        epsilon_total,
        delta: model.terms.delta.unwrap_or(0.0),
        plan: RoundPlan {
            asked: participants_len,
            eligible: participants_len,
            clip_norm: 1.0,
        },
        metrics: vec![("accuracy".into(), 0.5 + f64::from(round) * 0.01)],
        scaling_hash: None,
    }
}

/// An owner's privacy record: `rounds` rounds at `per_round` ε each (a [`TestRules`]
/// mechanism), bringing its total to `epsilon_total`.
pub fn privacy_spent(
    model: &ModelPublished,
    consent: EventId,
    round: u32,
    rounds: u32,
    per_round: f64,
    epsilon_total: f64,
) -> PrivacySpent {
    PrivacySpent {
        model_id: model.model_id.clone(),
        consent,
        round,
        rounds,
        mechanism: format!("per-round {per_round}"),
        epsilon_total,
        delta: model.terms.delta.unwrap_or(0.0),
    }
}

/// A payout that pays `payouts` in full (its allotment is their sum, nothing carried), each
/// scored by its amount.
pub fn payout(model: &ModelPublished, round: Option<u32>, payouts: Vec<(Did, u64)>) -> RewardsPaid {
    RewardsPaid {
        model_id: model.model_id.clone(),
        round,
        allotment: payouts.iter().map(|(_, amount)| amount).sum(),
        payouts: payouts
            .into_iter()
            .map(|(owner, amount)| Payout {
                owner,
                score: amount as f64,
                amount,
            })
            .collect(),
        carried: 0,
        method: "shapley-exact".into(),
        details: "{}".into(),
    }
}

/// One step of a random but valid ledger history. Indices are taken modulo the number of
/// keys, models or consents, so any value is meaningful.
#[derive(Clone, Debug)]
pub enum Action {
    Publish {
        publisher: usize,
        epsilon_budget: Option<f64>,
        reward_pool: u64,
    },
    Grant {
        owner: usize,
        model: usize,
        expires_in_ms: Option<u64>,
        epsilon_cap: Option<f64>,
    },
    Revoke {
        owner: usize,
        model: usize,
    },
    /// An owner declines a model, by hand or by a policy rule.
    Refuse {
        owner: usize,
        model: usize,
        by_policy: bool,
    },
    Round {
        model: usize,
        participant_mask: u32,
        epsilon_round: f64,
    },
    Pay {
        model: usize,
        fraction: f64,
    },
    Release {
        model: usize,
    },
    /// An owner's node accounts `rounds` rounds of `per_round` ε on a model it consented to.
    Spend {
        owner: usize,
        model: usize,
        rounds: u32,
        per_round: f64,
    },
    Advance {
        ms: u64,
    },
}

struct SimModel {
    published: ModelPublished,
    publisher: usize,
    epsilon_total: f64,
    n_rounds: u32,
    paid: u64,
    last_participants: Vec<Did>,
}

struct SimConsent {
    owner: usize,
    model: usize,
    id: EventId,
    expires_at_ms: Option<u64>,
    epsilon_cap: Option<f64>,
    revoked: bool,
}

/// Applies actions, skipping any that would break a rule, so the result always verifies.
pub struct Sim {
    pub ledger: Ledger,
    pub publishers: Vec<Keypair>,
    pub owners: Vec<Keypair>,
    now_ms: u64,
    models: Vec<SimModel>,
    consents: Vec<SimConsent>,
    /// Per (owner, model): the last round a privacy record covers and the ε spent.
    spent: HashMap<(usize, usize), (u32, f64)>,
}

impl Sim {
    pub fn new(n_publishers: usize, n_owners: usize) -> Sim {
        Sim {
            ledger: Ledger::new(),
            publishers: (0..n_publishers as u64)
                .map(Keypair::insecure_from_seed)
                .collect(),
            owners: (0..n_owners as u64)
                .map(|i| Keypair::insecure_from_seed(1000 + i))
                .collect(),
            now_ms: 1_700_000_000_000,
            models: Vec::new(),
            consents: Vec::new(),
            spent: HashMap::new(),
        }
    }

    pub fn apply(&mut self, action: &Action) {
        match *action {
            Action::Advance { ms } => self.now_ms += ms,
            Action::Publish {
                publisher,
                epsilon_budget,
                reward_pool,
            } => {
                let publisher = publisher % self.publishers.len();
                let name = format!("model-{}", self.models.len());
                let keypair = self.publishers[publisher].clone();
                let published = model(&keypair, &name, epsilon_budget, reward_pool);
                self.ledger.push(&keypair, self.now_ms, published.clone());
                self.models.push(SimModel {
                    published,
                    publisher,
                    epsilon_total: 0.0,
                    n_rounds: 0,
                    paid: 0,
                    last_participants: Vec::new(),
                });
            }
            Action::Grant {
                owner,
                model,
                expires_in_ms,
                epsilon_cap,
            } => {
                if self.models.is_empty() {
                    return;
                }
                let owner = owner % self.owners.len();
                let model = model % self.models.len();
                let expires_at_ms = expires_in_ms.map(|ms| self.now_ms + ms.max(1));
                let body = consent(&self.models[model].published, expires_at_ms, epsilon_cap);
                let keypair = self.owners[owner].clone();
                let event = self.ledger.push(&keypair, self.now_ms, body);
                self.consents.push(SimConsent {
                    owner,
                    model,
                    id: event.id(),
                    expires_at_ms,
                    epsilon_cap,
                    revoked: false,
                });
            }
            Action::Refuse {
                owner,
                model,
                by_policy,
            } => {
                if self.models.is_empty() {
                    return;
                }
                let owner = owner % self.owners.len();
                let published = &self.models[model % self.models.len()].published;
                let body = ConsentRefused {
                    model_id: published.model_id.clone(),
                    publisher: self.publishers[self.models[model % self.models.len()].publisher]
                        .did(),
                    card_hash: published.card_hash.clone(),
                    decided_by: by_policy.then(|| PolicyDecision {
                        rule: "never-income".into(),
                        policy_hash: content_hash(b"policy"),
                    }),
                };
                let keypair = self.owners[owner].clone();
                self.ledger.push(&keypair, self.now_ms, body);
            }
            Action::Revoke { owner, model } => {
                if self.models.is_empty() {
                    return;
                }
                let owner = owner % self.owners.len();
                let model = model % self.models.len();
                let Some(consent) = self
                    .consents
                    .iter_mut()
                    .rev()
                    .find(|c| c.owner == owner && c.model == model && !c.revoked)
                else {
                    return;
                };
                consent.revoked = true;
                let body = ConsentRevoked {
                    model_id: self.models[model].published.model_id.clone(),
                    consent: consent.id,
                };
                let keypair = self.owners[owner].clone();
                self.ledger.push(&keypair, self.now_ms, body);
            }
            Action::Round {
                model,
                participant_mask,
                epsilon_round,
            } => {
                if self.models.is_empty() {
                    return;
                }
                let model_idx = model % self.models.len();
                let sim_model = &self.models[model_idx];
                let epsilon_total = sim_model.epsilon_total + epsilon_round;
                if let Some(budget) = sim_model.published.terms.epsilon_budget
                    && epsilon_total > budget
                {
                    return;
                }
                let mut participants: Vec<(Did, EventId)> = Vec::new();
                for (owner, keypair) in self.owners.iter().enumerate() {
                    if participant_mask & (1 << (owner % 32)) == 0 {
                        continue;
                    }
                    let usable = self.consents.iter().rev().find(|c| {
                        c.owner == owner
                            && c.model == model_idx
                            && !c.revoked
                            && c.expires_at_ms.is_none_or(|at| at > self.now_ms)
                            && c.epsilon_cap.is_none_or(|cap| epsilon_total <= cap)
                    });
                    if let Some(consent) = usable {
                        participants.push((keypair.did(), consent.id));
                    }
                }
                if participants.is_empty() {
                    return;
                }
                let number = sim_model.n_rounds + 1;
                let body = round(
                    &sim_model.published,
                    number,
                    participants.clone(),
                    epsilon_round,
                    epsilon_total,
                );
                let keypair = self.publishers[sim_model.publisher].clone();
                self.ledger.push(&keypair, self.now_ms, body);
                let sim_model = &mut self.models[model_idx];
                sim_model.n_rounds = number;
                sim_model.epsilon_total = epsilon_total;
                sim_model.last_participants = participants.iter().map(|(did, _)| *did).collect();
            }
            Action::Pay { model, fraction } => {
                if self.models.is_empty() {
                    return;
                }
                let model_idx = model % self.models.len();
                let sim_model = &self.models[model_idx];
                if sim_model.last_participants.is_empty() {
                    return;
                }
                let remaining = sim_model.published.terms.reward_pool - sim_model.paid;
                let share =
                    (remaining as f64 * fraction) as u64 / sim_model.last_participants.len() as u64;
                let payouts: Vec<(Did, u64)> = sim_model
                    .last_participants
                    .iter()
                    .map(|did| (*did, share))
                    .collect();
                let body = payout(&sim_model.published, Some(sim_model.n_rounds), payouts);
                let keypair = self.publishers[sim_model.publisher].clone();
                self.ledger.push(&keypair, self.now_ms, body);
                self.models[model_idx].paid +=
                    share * self.models[model_idx].last_participants.len() as u64;
            }
            Action::Spend {
                owner,
                model,
                rounds,
                per_round,
            } => {
                if self.models.is_empty() || rounds == 0 {
                    return;
                }
                let owner = owner % self.owners.len();
                let model = model % self.models.len();
                let published = &self.models[model].published;
                let Some(budget) = published.terms.epsilon_budget else {
                    return;
                };
                let Some(consent) = self
                    .consents
                    .iter()
                    .rev()
                    .find(|c| c.owner == owner && c.model == model)
                else {
                    return;
                };
                let (last_round, spent) =
                    self.spent.get(&(owner, model)).copied().unwrap_or_default();
                let total = spent + per_round * f64::from(rounds);
                if total > consent.epsilon_cap.unwrap_or(f64::INFINITY).min(budget) {
                    return;
                }
                let Some(round) = last_round.checked_add(rounds) else {
                    return;
                };
                let body = privacy_spent(published, consent.id, round, rounds, per_round, total);
                let keypair = self.owners[owner].clone();
                self.ledger.push(&keypair, self.now_ms, body);
                self.spent.insert((owner, model), (round, total));
            }
            Action::Release { model } => {
                if self.models.is_empty() {
                    return;
                }
                let sim_model = &self.models[model % self.models.len()];
                let body = ModelReleased {
                    model_id: sim_model.published.model_id.clone(),
                    final_model_hash: content_hash(b"final"),
                    rounds: sim_model.n_rounds,
                    metrics: vec![("accuracy".into(), 0.9)],
                };
                let keypair = self.publishers[sim_model.publisher].clone();
                self.ledger.push(&keypair, self.now_ms, body);
            }
        }
    }
}

/// A large valid ledger for benchmarks: one model, 32 consents, then alternating rounds of ten
/// participants and payouts, until `n_events` events exist.
pub fn large_ledger(n_events: usize) -> Vec<Event> {
    let mut sim = Sim::new(1, 32);
    sim.apply(&Action::Publish {
        publisher: 0,
        epsilon_budget: Some(1e9),
        reward_pool: 1_000_000_000_000,
    });
    for owner in 0..32 {
        sim.apply(&Action::Grant {
            owner,
            model: 0,
            expires_in_ms: None,
            epsilon_cap: None,
        });
    }
    let mut round_idx = 0u32;
    while sim.ledger.events.len() < n_events {
        sim.apply(&Action::Advance { ms: 1000 });
        if round_idx.is_multiple_of(2) {
            sim.apply(&Action::Round {
                model: 0,
                participant_mask: 0b11_1111_1111u32.rotate_left(round_idx % 32),
                epsilon_round: 0.01,
            });
        } else {
            sim.apply(&Action::Pay {
                model: 0,
                fraction: 0.001,
            });
        }
        round_idx += 1;
    }
    sim.ledger.events.truncate(n_events);
    sim.ledger.events
}
