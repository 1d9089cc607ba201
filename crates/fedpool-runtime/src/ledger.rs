//! Recording a simulation on a real ledger: every simulated client gets an identity and makes a
//! consent decision, the publisher publishes the contract, each round is committed with the
//! consent each participant relied on, and the ledger is verified at the end — the same events
//! and the same `verify` an auditor runs on a real deployment.

use std::path::{Path, PathBuf};

use fedpool_core::{Contract, Metrics};
use fedpool_ledger::{
    Body, ChainWriter, Did, EventId, Keypair, ModelId, ModelPublished, ModelReleased, NetworkId,
    PrivacySpent, RoundCommitted, RoundPlan, StatisticsCommitted, Store, VerifyReport,
    active_consents, content_hash,
};
use fedpool_protocol::{PrivacyRecord, PrivacySpend, RoundId, StatisticsSummary};

use crate::Error;
use crate::consent_policy::{ConsentTerms, OwnerChoice, decision_event};

/// The simulated publisher's identity for a simulation seeded `seed` that started at
/// `start_ms` (derived, like every simulated identity: real nodes use OS randomness).
pub fn simulated_publisher(seed: u64, start_ms: u64) -> Keypair {
    Keypair::insecure_from_seed(seed ^ start_ms.rotate_left(17))
}

/// The ledger namespace simulations record into.
pub const SIMULATION_NETWORK: &str = "fedpool-sim";

/// What `publish` records for a contract published by `publisher`: its id (a hash of the
/// publisher and the text), the hash of its transparency card terms, and the terms the text
/// states (which `verify` derives again from the text).
pub fn publication(contract: &Contract, contract_text: &str, publisher: &Did) -> ModelPublished {
    ModelPublished {
        model_id: ModelId::for_publication(publisher, contract_text),
        name: contract.model_info.name.clone(),
        version: contract.model_info.version.clone(),
        contract_toml: contract_text.to_string(),
        card_hash: content_hash(contract.canonical_terms().as_bytes()),
        terms: crate::contract_terms(contract),
    }
}

/// Content hash of a parameter vector (little-endian `f32` bytes).
pub fn params_hash(params: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(params.len() * 4);
    for p in params {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    content_hash(&bytes)
}

/// The federated scaling as the ledger records it: its canonical text and that text's hash
/// (what every round names).
pub fn scaling_record(scaling: &fedpool_data::FeatureScaling) -> (String, String) {
    let text = scaling.to_canonical_json();
    let hash = content_hash(text.as_bytes());
    (text, hash)
}

/// The `StatisticsCommitted` a publisher signs for a completed statistics phase.
pub fn statistics_committed(
    model_id: &ModelId,
    participants: Vec<(Did, EventId)>,
    summary: &StatisticsSummary,
) -> StatisticsCommitted {
    let (scaling, scaling_hash) = scaling_record(&summary.scaling);
    let (epsilon_round, epsilon_total, delta) = PrivacySpend::ledger_figures(summary.privacy);
    StatisticsCommitted {
        model_id: model_id.clone(),
        participants,
        scaling,
        scaling_hash,
        epsilon_round,
        epsilon_total,
        delta,
        plan: round_plan(summary.asked, summary.eligible, summary.clip_norm),
    }
}

/// A round's (or the statistics phase's) plan as the ledger records it.
pub fn round_plan(asked: usize, eligible: usize, clip_norm: f64) -> RoundPlan {
    RoundPlan {
        asked: asked as u32,
        eligible: eligible as u32,
        clip_norm,
    }
}

/// Metrics as the ledger records them.
pub fn metric_pairs(metrics: &Metrics) -> Vec<(String, f64)> {
    match *metrics {
        Metrics::Classification {
            accuracy,
            log_loss,
            macro_f1,
        } => vec![
            ("accuracy".into(), accuracy),
            ("log_loss".into(), log_loss),
            ("macro_f1".into(), macro_f1),
        ],
        Metrics::Regression { rmse, mae } => vec![("rmse".into(), rmse), ("mae".into(), mae)],
    }
}

/// The ledger record of one step of a node's privacy accounting on `model_id`, spent under
/// `consent`, at the contract's `delta`.
pub fn privacy_spent(
    model_id: &ModelId,
    consent: EventId,
    record: &PrivacyRecord,
    delta: f64,
) -> Result<PrivacySpent, Error> {
    Ok(PrivacySpent {
        model_id: model_id.clone(),
        consent,
        round: record.round.0,
        rounds: u32::try_from(record.rounds).map_err(|_| {
            Error::Setup(format!(
                "a privacy step of {} rounds does not fit the ledger",
                record.rounds
            ))
        })?,
        mechanism: serde_json::to_string(&record.mechanism)
            .map_err(|e| Error::Setup(format!("cannot record a mechanism: {e}")))?,
        epsilon_total: record.epsilon_total,
        delta,
    })
}

/// A node's privacy history on `model_id`, read back from its own events on `store`: what a
/// restarted node passes to `Participant::restore_privacy`, so ε spent survives the restart.
pub fn privacy_history(
    store: &Store,
    model_id: &ModelId,
    owner: &Did,
) -> Result<Vec<PrivacyRecord>, Error> {
    let mut history = Vec::new();
    for event in store.events_by_author(owner)? {
        let Body::PrivacySpent(spent) = event.body() else {
            continue;
        };
        if &spent.model_id != model_id {
            continue;
        }
        let mechanism = serde_json::from_str(&spent.mechanism).map_err(|e| {
            Error::Setup(format!(
                "event {} holds a mechanism that cannot be read: {e}",
                event.id()
            ))
        })?;
        history.push(PrivacyRecord {
            round: RoundId(spent.round),
            rounds: u64::from(spent.rounds),
            mechanism,
            epsilon_total: spent.epsilon_total,
        });
    }
    Ok(history)
}

/// A simulation's ledger: the store, the publisher's and every client's identity, and the
/// consents granted.
pub struct SimulationLedger {
    store: Store,
    temporary: Option<PathBuf>,
    publisher: ChainWriter,
    client_dids: Vec<Did>,
    client_keys: Vec<Keypair>,
    /// Each client's chain after its recorded choice (`None`: nothing recorded yet).
    client_signers: Vec<Option<ChainWriter>>,
    consents: Vec<Option<EventId>>,
    /// Privacy steps accounted but not yet stored, per client (see [`Self::note_privacy`]).
    pending_privacy: Vec<(usize, PrivacyRecord)>,
    delta: f64,
    model_id: ModelId,
    publication: ModelPublished,
    clock_ms: u64,
    /// The model's reward pool (what an over-paying cheat adds).
    pool: u64,
    /// A dishonest publisher's next round payout (tests of `verify`).
    cheat: Option<crate::rewards::PublisherCheat>,
    /// The committed scaling's hash, which every later round names.
    scaling_hash: Option<String>,
}

impl SimulationLedger {
    /// Opens (or creates) the ledger at `path`, or a temporary one removed on drop, publishes
    /// the contract, and records every client's choice: a consent for a grant, a refusal for a
    /// refusal, nothing for a model that waits.
    ///
    /// Identities are derived from `seed` (simulation only: real nodes use OS randomness); the
    /// publisher's is [`simulated_publisher`]`(seed, start_ms)`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_setup(
        path: Option<&Path>,
        contract: &Contract,
        decisions: &[OwnerChoice],
        fingerprints: &[String],
        owner_epsilon_cap: Option<f64>,
        seed: u64,
        start_ms: u64,
    ) -> Result<SimulationLedger, Error> {
        let network = NetworkId::new(SIMULATION_NETWORK)?;
        let (db_path, temporary) = match path {
            Some(p) => (p.to_path_buf(), None),
            None => {
                // RandomState's keys are random per instance: a unique name even for several
                // simulations started in one process in the same millisecond.
                let nonce = {
                    use std::hash::{BuildHasher, Hasher};
                    std::collections::hash_map::RandomState::new()
                        .build_hasher()
                        .finish()
                };
                let p = std::env::temp_dir().join(format!(
                    "fedpool-sim-{}-{nonce:016x}.db",
                    std::process::id()
                ));
                (p.clone(), Some(p))
            }
        };
        let mut store = Store::open(&db_path, &network)?;
        // A fresh identity per simulation, derived from the seed and the start time, so that
        // several simulations recorded into one ledger never collide on an author's chain.
        let identity_seed = seed ^ start_ms.rotate_left(17);
        let mut publisher = ChainWriter::new(network.clone(), simulated_publisher(seed, start_ms));
        let contract_text = contract.to_toml();
        let publication = publication(contract, &contract_text, &publisher.did());
        let model_id = publication.model_id.clone();
        let publisher_did = publisher.did();
        let card_hash = publication.card_hash.clone();
        let mut clock_ms = start_ms;
        let published = publication.clone();
        let mut events = vec![publisher.sign(clock_ms, publication)?];
        let mut client_dids = Vec::with_capacity(decisions.len());
        let mut client_keys = Vec::with_capacity(decisions.len());
        let mut client_signers: Vec<Option<ChainWriter>> = Vec::with_capacity(decisions.len());
        let mut consents = vec![None; decisions.len()];
        for (client_idx, choice) in decisions.iter().enumerate() {
            let keypair = Keypair::insecure_from_seed(
                identity_seed
                    .wrapping_add(1 + client_idx as u64)
                    .rotate_left(7),
            );
            client_dids.push(keypair.did());
            client_keys.push(keypair.clone());
            let decided = decision_event(
                choice,
                ConsentTerms {
                    model_id: model_id.clone(),
                    publisher: publisher_did,
                    card_hash: card_hash.clone(),
                    dataset_fingerprint: fingerprints[client_idx].clone(),
                    fields: contract.schema.required_columns(),
                    expires_at_ms: None,
                    epsilon_cap: owner_epsilon_cap,
                },
            );
            match decided {
                Some(body) => {
                    clock_ms += 1;
                    let mut signer = ChainWriter::new(network.clone(), keypair);
                    let event = signer.sign(clock_ms, body)?;
                    if choice.consents() {
                        consents[client_idx] = Some(event.id());
                    }
                    events.push(event);
                    client_signers.push(Some(signer));
                }
                None => client_signers.push(None),
            }
        }
        // One transaction for the whole setup: thousands of consents commit in one fsync.
        let report = store.import(events)?;
        if let Some(why) = report.rejected.into_iter().next() {
            return Err(Error::Ledger(why));
        }
        Ok(SimulationLedger {
            store,
            temporary,
            publisher,
            client_dids,
            client_keys,
            client_signers,
            consents,
            pending_privacy: Vec::new(),
            delta: fedpool_protocol::PrivacyTerms::from_contract(contract).delta,
            model_id,
            publication: published,
            clock_ms,
            pool: contract.rewards.pool,
            cheat: None,
            scaling_hash: None,
        })
    }

    /// The clients the ledger says the publisher may ask now, in client order: owners with an
    /// active consent to the published model and card ([`active_consents`]), each with the
    /// key its DID names (for the secure-aggregation directory).
    pub fn roster(&self) -> Result<Vec<(usize, ed25519_dalek::VerifyingKey)>, Error> {
        let events = self.store.events_by_model(&self.model_id)?;
        let active = active_consents(
            &events,
            &self.publication,
            &self.publisher.did(),
            self.clock_ms,
        );
        let index: std::collections::HashMap<Did, usize> = self
            .client_dids
            .iter()
            .enumerate()
            .map(|(idx, did)| (*did, idx))
            .collect();
        let mut roster = Vec::with_capacity(active.len());
        for consent in active {
            // Owners outside this simulation's clients (an earlier run in the same file) are
            // not nodes here.
            if let Some(&idx) = index.get(&consent.owner) {
                roster.push((idx, consent.owner.verifying_key()?));
            }
        }
        roster.sort_by_key(|(idx, _)| *idx);
        Ok(roster)
    }

    /// The model id the simulation published.
    pub fn model_id(&self) -> &ModelId {
        &self.model_id
    }

    /// Each client's DID.
    pub fn client_dids(&self) -> &[Did] {
        &self.client_dids
    }

    /// Each client's identity key pair, in client order.
    pub fn client_keys(&self) -> &[Keypair] {
        &self.client_keys
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Whether the ledger is temporary (deleted when the simulation ends).
    pub fn is_temporary(&self) -> bool {
        self.temporary.is_some()
    }

    /// Commits a round: its contributors with the consent each relied on.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_round(
        &mut self,
        round: u32,
        contributors: &[usize],
        global: &[f32],
        epsilon_round: f64,
        epsilon_total: f64,
        delta: f64,
        plan: RoundPlan,
        metrics: &Metrics,
    ) -> Result<(), Error> {
        let participants = self.participants(contributors, &format!("round {round}"))?;
        self.clock_ms += 1_000;
        let event = self.publisher.sign(
            self.clock_ms,
            RoundCommitted {
                model_id: self.model_id.clone(),
                round,
                participants,
                global_model_hash: params_hash(global),
                epsilon_round,
                epsilon_total,
                delta,
                plan,
                metrics: metric_pairs(metrics),
                scaling_hash: self.scaling_hash.clone(),
            },
        )?;
        self.store.append(&event)?;
        Ok(())
    }

    /// Commits the statistics phase: the scaling, its contributors with the consent each
    /// relied on, and its privacy cost.
    pub fn commit_statistics(
        &mut self,
        contributors: &[usize],
        summary: &StatisticsSummary,
    ) -> Result<(), Error> {
        let participants = self.participants(contributors, "the statistics phase")?;
        let body = statistics_committed(&self.model_id, participants, summary);
        self.clock_ms += 1_000;
        let scaling_hash = body.scaling_hash.clone();
        let event = self.publisher.sign(self.clock_ms, body)?;
        self.store.append(&event)?;
        self.scaling_hash = Some(scaling_hash);
        Ok(())
    }

    /// Each contributor's DID with the consent it relied on.
    fn participants(
        &self,
        contributors: &[usize],
        what: &str,
    ) -> Result<Vec<(Did, EventId)>, Error> {
        contributors
            .iter()
            .map(|&client_idx| {
                let consent = self.consents.get(client_idx).copied().flatten().ok_or_else(|| {
                    Error::Setup(format!(
                        "client {client_idx} contributed to {what} without a recorded consent; this is a bug"
                    ))
                })?;
                Ok((self.client_dids[client_idx], consent))
            })
            .collect()
    }

    /// Notes a privacy step a client's node accounted; it is signed and stored by the next
    /// [`Self::flush_privacy`], which the driver calls before delivering anything the node
    /// sent after accounting (write-ahead, as a deployed node does).
    pub fn note_privacy(&mut self, client_idx: usize, record: PrivacyRecord) {
        self.pending_privacy.push((client_idx, record));
    }

    /// Signs every noted privacy step as its owner and stores them in one transaction.
    pub fn flush_privacy(&mut self) -> Result<(), Error> {
        if self.pending_privacy.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(self.pending_privacy.len());
        for (client_idx, record) in std::mem::take(&mut self.pending_privacy) {
            let consent = self.consents.get(client_idx).copied().flatten();
            let signer = self
                .client_signers
                .get_mut(client_idx)
                .and_then(Option::as_mut);
            let (Some(consent), Some(signer)) = (consent, signer) else {
                return Err(Error::Setup(format!(
                    "client {client_idx} accounted privacy without a recorded consent; this is a bug"
                )));
            };
            let body = privacy_spent(&self.model_id, consent, &record, self.delta)?;
            events.push(signer.sign(self.clock_ms, body)?);
        }
        let report = self.store.import(events)?;
        match report.rejected.into_iter().next() {
            Some(why) => Err(Error::Ledger(why)),
            None => Ok(()),
        }
    }

    /// Records the release of the final model.
    pub fn release(&mut self, global: &[f32], rounds: u32, metrics: &Metrics) -> Result<(), Error> {
        self.clock_ms += 1_000;
        let event = self.publisher.sign(
            self.clock_ms,
            ModelReleased {
                model_id: self.model_id.clone(),
                final_model_hash: params_hash(global),
                rounds,
                metrics: metric_pairs(metrics),
            },
        )?;
        self.store.append(&event)?;
        Ok(())
    }

    /// Records a payout from the model's pool.
    pub fn pay(
        &mut self,
        payment: &crate::rewards::Payment,
        method: &str,
        details: &str,
    ) -> Result<(), Error> {
        self.clock_ms += 1_000;
        let payouts = payment
            .clients
            .iter()
            .zip(&payment.scores)
            .zip(&payment.amounts)
            .map(|((&client, &score), &amount)| {
                let owner = self.client_dids.get(client).cloned().ok_or_else(|| {
                    Error::Setup(format!("client {client} has no identity on the ledger"))
                })?;
                Ok(fedpool_ledger::Payout {
                    owner,
                    score,
                    amount,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let mut body = fedpool_ledger::RewardsPaid {
            model_id: self.model_id.clone(),
            round: payment.round,
            allotment: payment.allotment,
            payouts,
            carried: payment.carried,
            method: method.to_string(),
            details: details.to_string(),
        };
        if payment.round.is_some()
            && let Some(cheat) = self.cheat.take()
        {
            self.cheat_with(cheat, &mut body)?;
        }
        let event = self.publisher.sign(self.clock_ms, body)?;
        self.store.append(&event)?;
        Ok(())
    }

    /// Makes the next round payout dishonest (tests of `verify`).
    pub fn cheat_on_next_payout(&mut self, cheat: crate::rewards::PublisherCheat) {
        self.cheat = Some(cheat);
    }

    fn cheat_with(
        &self,
        cheat: crate::rewards::PublisherCheat,
        body: &mut fedpool_ledger::RewardsPaid,
    ) -> Result<(), Error> {
        use crate::rewards::PublisherCheat;
        if body.payouts.is_empty() {
            return Err(Error::Setup("no payout line to cheat on".into()));
        }
        let pay_one_more = |body: &mut fedpool_ledger::RewardsPaid, owner| {
            body.allotment += 1;
            body.payouts.push(fedpool_ledger::Payout {
                owner,
                score: 0.0,
                amount: 1,
            });
        };
        match cheat {
            PublisherCheat::InflateScore => {
                body.payouts[0].score *= 2.0;
                let scores: Vec<f64> = body.payouts.iter().map(|line| line.score).collect();
                let split = crate::rewards::split_amounts(
                    body.allotment,
                    &scores,
                    &crate::rewards::PayRule::Proportional(Default::default()),
                )?;
                for (line, amount) in body.payouts.iter_mut().zip(split.amounts) {
                    line.amount = amount;
                }
                body.carried = split.carried;
            }
            PublisherCheat::SkewAmounts => {
                if body.payouts.len() < 2 || body.payouts[0].amount == 0 {
                    return Err(Error::Setup("no two payees to skew".into()));
                }
                body.payouts[0].amount -= 1;
                body.payouts[1].amount += 1;
            }
            PublisherCheat::Overpay => {
                let extra = self.pool;
                body.allotment += extra;
                body.payouts[0].amount += extra;
            }
            PublisherCheat::PayStranger => {
                let stranger = Keypair::insecure_from_seed(0x5752_414e_4745_5221).did();
                pay_one_more(body, stranger);
            }
            PublisherCheat::PayNonParticipant(client) => {
                let owner = *self.client_dids.get(client).ok_or_else(|| {
                    Error::Setup(format!("client {client} has no identity on the ledger"))
                })?;
                pay_one_more(body, owner);
            }
        }
        Ok(())
    }

    /// Runs the auditor's verification over the whole ledger.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        Ok(self.store.verify(&crate::ContractReader)?)
    }

    /// Runs the auditor's verification with other contract rules (e.g. holding the evidence
    /// to recompute payouts' scores).
    pub fn verify_with(
        &self,
        rules: &dyn fedpool_ledger::ContractRules,
    ) -> Result<VerifyReport, Error> {
        Ok(self.store.verify(rules)?)
    }
}

/// Deletes a ledger database and its WAL side files, ignoring files that do not exist.
pub fn remove_ledger_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

impl Drop for SimulationLedger {
    fn drop(&mut self) {
        if let Some(path) = &self.temporary {
            remove_ledger_files(path);
        }
    }
}
