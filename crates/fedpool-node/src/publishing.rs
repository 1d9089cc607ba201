//! The publisher's side of a training run over the network: the same [`Publisher`] the
//! simulation drives, with its roster and secure-aggregation directory read from the node's
//! ledger (active consents naming this publisher and the card it published), every completed
//! round committed to the ledger, and its global model kept on disk so that a publisher that
//! crashed resumes after the last committed round without repeating or double-counting it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fedpool_core::{Contract, Metrics, Network, evaluate_outputs};
use fedpool_data::{Dataset, FeatureScaling, StatisticsLayout, Table};
use fedpool_ledger::{Body, Did, EventId, Keypair, ModelId, ModelPublished, RoundCommitted, Store};
use fedpool_protocol::{
    CommittedPlan, Driver, Host, Msg, NodeId, PrivacySpend, PrivacyTerms, Publisher,
    PublisherConfig, PublisherInput, RoundEvent, Sequential, TrainJob,
};
use fedpool_runtime::ledger::{
    metric_pairs, params_hash, round_plan, scaling_record, statistics_committed,
};
use libp2p::PeerId;
use rand::SeedableRng;
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use crate::identity::{PUBLISHER, peer_id_of};
use crate::owner::{consenting_members, directory_of, find_publication};
use crate::payouts::RunPayouts;
use crate::replay::Replay;
use crate::{DataSource, Error, now_ms};

/// A member of the run: who it is and the consent its rounds rely on.
#[derive(Debug, Clone)]
struct Member {
    did: Did,
    peer: PeerId,
    consent: EventId,
}

/// One `fedpool train` in progress.
pub struct PublisherRun {
    model_id: ModelId,
    publication: ModelPublished,
    /// The publisher, alone in the protocol's driver.
    driver: Driver,
    network: Network,
    /// The held-out rows, and their encoding once the scaling is known.
    eval_table: Option<Table>,
    /// Whether the contract standardises with federated statistics (the evaluation rows then
    /// wait for the scaling).
    federated: bool,
    eval: Option<Dataset>,
    members: BTreeMap<NodeId, Member>,
    by_peer: HashMap<PeerId, NodeId>,
    reply: UnboundedSender<serde_json::Value>,
    model_dir: PathBuf,
    roster_checked_ms: u64,
    rounds_completed: u32,
    /// A simulation's round ids (tests only, see [`crate::replay`]).
    replay: Option<Replay>,
    /// When the round in progress started.
    round_started: Option<std::time::Instant>,
    /// Rewards by contribution, when the contract has a pool, rounds are plain and an
    /// evaluation set is given.
    payouts: Option<RunPayouts>,
}

/// What the node must do for the run.
pub enum RunAction {
    /// Send a message to a member.
    Send {
        /// The member's peer.
        peer: PeerId,
        /// The message.
        msg: Msg,
    },
}

/// The global parameters a publisher whose home is `home` committed for `round` of
/// `model_id`, checked against the hash the ledger committed (what `fedpool release` ships).
pub fn committed_params(
    home: &Path,
    model_id: &ModelId,
    round: u32,
    hash: &str,
    n_params: usize,
) -> Result<Vec<f32>, Error> {
    load_params(&model_dir(home, model_id), round, hash, n_params)
}

/// Where a publisher keeps a model's global parameters between rounds.
fn model_dir(home: &Path, model_id: &ModelId) -> PathBuf {
    let name = blake3::hash(model_id.as_str().as_bytes()).to_hex();
    home.join("models").join(&name.as_str()[..16])
}

impl PublisherRun {
    /// Starts (or resumes) training `model_id`, which this node published, for `rounds` more
    /// rounds.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        store: &Store,
        keypair: &Keypair,
        home: &Path,
        data: &dyn DataSource,
        model_id: &ModelId,
        rounds: Option<usize>,
        eval: Option<&str>,
        round_timeout_ms: u64,
        replay: Option<&Replay>,
        reply: UnboundedSender<serde_json::Value>,
    ) -> Result<PublisherRun, Error> {
        let me = keypair.did();
        let Some((author, publication)) = find_publication(store, model_id)? else {
            return Err(Error::Refused(format!(
                "no model {model_id} on this node's ledger"
            )));
        };
        if author != me {
            return Err(Error::Refused(format!(
                "{model_id} was published by {author}, not by this node ({me}): only its publisher trains it"
            )));
        }
        let contract = Contract::from_toml(&publication.contract_toml, "the published contract")
            .map_err(|e| Error::Refused(format!("the contract does not parse: {e}")))?;
        let network = Network::new(
            &contract.model,
            contract.n_features(),
            contract.schema.n_outputs(),
        )
        .map_err(|e| Error::Refused(format!("cannot build the model: {e}")))?;
        let model_dir = model_dir(home, model_id);
        let mut committed: Vec<(CommittedPlan, String)> = store
            .events_by_author(&me)?
            .into_iter()
            .filter_map(|e| match e.body() {
                Body::RoundCommitted(r) if &r.model_id == model_id => Some((
                    committed_plan(r.round, &r.plan),
                    r.global_model_hash.clone(),
                )),
                _ => None,
            })
            .collect();
        committed.sort_by_key(|(plan, _)| plan.round);
        let initial = match committed.last() {
            Some((plan, hash)) => load_params(&model_dir, plan.round, hash, network.n_params())?,
            None => match replay.and_then(|r| r.initial.clone()) {
                Some(initial) if initial.len() == network.n_params() => initial,
                Some(initial) => {
                    return Err(Error::Refused(format!(
                        "the replayed initial model has {} parameters, the contract's {}",
                        initial.len(),
                        network.n_params()
                    )));
                }
                None => network.init_params(&mut rand_chacha::ChaCha20Rng::from_os_rng()),
            },
        };
        let started_through = read_started(&model_dir);
        let already = committed
            .last()
            .map_or(0, |(p, _)| p.round)
            .max(started_through);
        let more = rounds.unwrap_or(contract.training.rounds);
        let privacy = PrivacyTerms::from_contract(&contract);
        let strategy = contract.training.strategy.clone();
        if privacy.is_active() && !strategy.works_on_the_mean() {
            return Err(Error::Refused(format!(
                "{} needs every update, but this contract clips, noises or securely aggregates them",
                strategy.name()
            )));
        }
        let plans: Vec<CommittedPlan> = committed.iter().map(|(p, _)| *p).collect();
        let layout = StatisticsLayout::of(&contract.schema);
        let committed_statistics = committed_statistics(store, &me, model_id)?;
        let replay_seed = replay.and_then(|r| r.publisher_seed);
        let publisher = Publisher::new(
            PublisherConfig {
                rounds: already as usize + more,
                sampling: contract.training.sampling.clone(),
                local: contract.training.local.clone(),
                round_timeout_ms,
                seed: replay_seed.unwrap_or_else(rand::random),
                privacy,
                directory: Arc::new(Default::default()),
                statistics: layout.clone(),
            },
            strategy.build(),
            initial,
            Vec::new(),
        );
        let publisher = match replay_seed {
            Some(seed) => {
                publisher.with_privacy_seed(fedpool_runtime::simulated_privacy_seed(seed))
            }
            None => publisher,
        };
        let publisher = match committed_statistics {
            Some((scaling, plan)) => publisher
                .with_committed_statistics(Arc::new(scaling), plan)
                .map_err(Error::Refused)?,
            None => publisher,
        };
        let publisher = publisher
            .resume(&plans, started_through)
            .map_err(Error::Refused)?;
        let eval_table = eval
            .map(|name| data.evaluation_data(&contract, name))
            .transpose()
            .map_err(|e| Error::Refused(format!("cannot load the evaluation set: {e}")))?;
        let eval = encode_eval(eval_table.as_ref(), layout.is_some(), publisher.scaling())?;
        let payouts = eval_table
            .as_ref()
            .and_then(|_| RunPayouts::new(model_id, &contract, publisher.global()));
        let mut run = PublisherRun {
            model_id: model_id.clone(),
            publication,
            driver: Driver::new().with_publisher(PUBLISHER, publisher),
            network,
            eval_table,
            eval,
            federated: layout.is_some(),
            members: BTreeMap::new(),
            by_peer: HashMap::new(),
            reply,
            model_dir,
            roster_checked_ms: 0,
            rounds_completed: 0,
            replay: replay.cloned(),
            round_started: None,
            payouts,
        };
        run.refresh_roster(store, &me)?;
        let _ = run.reply.send(json!({
            "event": "training",
            "model": model_id.as_str(),
            "resumed_after": already,
            "rounds": more,
            "eligible": run.members.len(),
        }));
        Ok(run)
    }

    /// The model trained.
    pub fn model_id(&self) -> &ModelId {
        &self.model_id
    }

    /// Whether every round has run.
    pub fn is_done(&self) -> bool {
        self.publisher().is_done()
    }

    /// ε the publisher's accountant has released so far.
    pub fn epsilon_spent(&self) -> f64 {
        self.publisher().epsilon_spent()
    }

    fn publisher(&self) -> &Publisher {
        self.driver.publisher().expect("a run drives its publisher")
    }

    /// Rounds completed in this run.
    pub fn rounds_completed(&self) -> u32 {
        self.rounds_completed
    }

    /// The round id of an authenticated peer, if it is a member.
    pub fn member(&self, peer: &PeerId) -> Option<NodeId> {
        self.by_peer.get(peer).copied()
    }

    /// Each contributor's DID with the consent its data was used under.
    fn participants(&self, contributors: &[NodeId]) -> Vec<(Did, EventId)> {
        contributors
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (m.did, m.consent)))
            .collect()
    }

    /// Re-reads who may be asked: applies from the next round.
    fn refresh_roster(&mut self, store: &Store, me: &Did) -> Result<(), Error> {
        let events = store.events_by_model(&self.model_id)?;
        let mut members = consenting_members(&events, &self.publication, me, now_ms());
        if let Some(replay) = &self.replay {
            members = replay.assign(members);
        }
        let publisher = self
            .driver
            .publisher_mut()
            .expect("a run drives its publisher");
        publisher.set_directory(Arc::new(directory_of(&members)));
        publisher.set_roster(members.iter().map(|(id, _)| *id).collect());
        for (id, consent) in &members {
            let peer = peer_id_of(&consent.owner)?;
            self.by_peer.insert(peer, *id);
            self.members.insert(
                *id,
                Member {
                    did: consent.owner,
                    peer,
                    consent: consent.consent,
                },
            );
        }
        self.roster_checked_ms = now_ms();
        Ok(())
    }

    /// Feeds the publisher an input and carries out what it asks.
    pub fn handle(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        input: PublisherInput,
    ) -> Result<Vec<RunAction>, Error> {
        let now = now_ms();
        // The roster is read from the ledger before any round can start.
        if now.saturating_sub(self.roster_checked_ms) >= 1_000 {
            self.refresh_roster(store, &keypair.did())?;
        }
        let mut host = RunHost {
            members: &self.members,
            actions: Vec::new(),
            events: Vec::new(),
        };
        match input {
            PublisherInput::Received { from, msg } => {
                if let (Msg::Update(update), Some(payouts)) = (&msg, &mut self.payouts) {
                    payouts.note_update(from, update);
                }
                self.driver
                    .deliver([(from, PUBLISHER, msg)], &Sequential, &mut host)?
            }
            PublisherInput::Tick { now_ms } => self.driver.tick(now_ms, &mut host)?,
        }
        let RunHost {
            actions, events, ..
        } = host;
        for event in events {
            self.record(store, keypair, event)?;
        }
        Ok(actions)
    }

    /// When the publisher next needs the time.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.driver.next_deadline_ms()
    }

    fn record(
        &mut self,
        store: &mut Store,
        keypair: &Keypair,
        event: RoundEvent,
    ) -> Result<(), Error> {
        match event {
            RoundEvent::Started { round, sampled } => {
                // Write-ahead: a restarted publisher never numbers this round again.
                write_started(&self.model_dir, round.0)?;
                self.round_started = Some(std::time::Instant::now());
                let global = Arc::clone(self.publisher().global());
                if let Some(payouts) = &mut self.payouts {
                    payouts.round_started(&global);
                }
                tracing::info!(model = %short(self.model_id.as_str()), %round, asked = sampled.len(), "round started");
                let _ = self
                    .reply
                    .send(json!({"event": "started", "round": round.0, "asked": sampled.len()}));
            }
            RoundEvent::StatisticsCompleted(summary) => {
                let participants = self.participants(&summary.contributors);
                let body = statistics_committed(&self.model_id, participants, &summary);
                let scaling_hash = body.scaling_hash.clone();
                store.append_next(keypair, now_ms(), body)?;
                self.eval = encode_eval(
                    self.eval_table.as_ref(),
                    self.federated,
                    Some(&summary.scaling),
                )?;
                tracing::info!(model = %short(self.model_id.as_str()), contributors = summary.contributors.len(), "statistics committed");
                let _ = self.reply.send(json!({
                    "event": "statistics",
                    "contributors": summary.contributors.len(),
                    "declined": summary.declined.len(),
                    "dropped": summary.dropped.len(),
                    "epsilon": summary.privacy.map(|p| p.epsilon_total),
                    "scaling_hash": scaling_hash,
                }));
            }
            RoundEvent::Completed(summary) => {
                let metrics = match &self.eval {
                    Some(eval) => Some(evaluate(&self.network, &summary.global, eval)?),
                    None => None,
                };
                save_params(&self.model_dir, summary.round.0, &summary.global)?;
                let participants = self.participants(&summary.contributors);
                let (epsilon_round, epsilon_total, delta) =
                    PrivacySpend::ledger_figures(summary.privacy);
                store.append_next(
                    keypair,
                    now_ms(),
                    RoundCommitted {
                        model_id: self.model_id.clone(),
                        round: summary.round.0,
                        participants,
                        global_model_hash: params_hash(&summary.global),
                        epsilon_round,
                        epsilon_total,
                        delta,
                        plan: round_plan(summary.asked, summary.eligible, summary.clip_norm),
                        metrics: metrics.as_ref().map(metric_pairs).unwrap_or_default(),
                        // The hash the statistics phase committed (its text re-serialises
                        // to the same canonical bytes).
                        scaling_hash: self
                            .publisher()
                            .scaling()
                            .map(|scaling| scaling_record(scaling).1),
                    },
                )?;
                self.rounds_completed += 1;
                // A round's payout follows its commitment, which names its participants.
                // `payouts` exists only for plainly aggregated contracts.
                let paid = match (&mut self.payouts, &self.eval) {
                    (Some(payouts), Some(eval)) => {
                        let contributors: Vec<(NodeId, Did)> = summary
                            .contributors
                            .iter()
                            .filter_map(|id| self.members.get(id).map(|m| (*id, m.did)))
                            .collect();
                        payouts.pay_round(
                            store,
                            keypair,
                            &self.network,
                            eval,
                            summary.round,
                            &contributors,
                        )?
                    }
                    _ => None,
                };
                let accuracy = metrics.as_ref().map(Metrics::headline);
                tracing::info!(
                    model = %short(self.model_id.as_str()),
                    round = %summary.round,
                    contributors = summary.contributors.len(),
                    dropped = summary.dropped.len(),
                    ?accuracy,
                    "round committed"
                );
                let _ = self.reply.send(json!({
                    "event": "completed",
                    "round": summary.round.0,
                    "contributors": summary.contributors.len(),
                    "declined": summary.declined.len(),
                    "dropped": summary.dropped.len(),
                    "accuracy": accuracy,
                    "epsilon": summary.privacy.map(|p| p.epsilon_total),
                    "global_hash": params_hash(&summary.global),
                    "round_ms": self.round_started.take().map(|t| t.elapsed().as_secs_f64() * 1e3),
                    "paid": paid.as_ref().map(|p| p.amount),
                    "carried": paid.as_ref().map(|p| p.carried),
                }));
            }
            RoundEvent::Failed { round, reason } => {
                tracing::info!(model = %short(self.model_id.as_str()), %round, %reason, "round failed");
                let _ = self
                    .reply
                    .send(json!({"event": "failed", "round": round.0, "reason": reason}));
            }
            RoundEvent::BudgetExhausted {
                round,
                epsilon_spent,
                epsilon_next,
                epsilon_budget,
            } => {
                let _ = self.reply.send(json!({
                    "event": "budget_exhausted", "round": round.0, "epsilon_spent": epsilon_spent,
                    "epsilon_next": epsilon_next, "epsilon_budget": epsilon_budget,
                }));
            }
            RoundEvent::Finished { global } => {
                let metrics = match &self.eval {
                    Some(eval) => Some(evaluate(&self.network, &global, eval)?),
                    None => None,
                };
                let final_paid = match (&self.payouts, &self.eval) {
                    (Some(payouts), Some(eval)) => {
                        let committed =
                            last_committed_round(store, &keypair.did(), &self.model_id)?;
                        payouts.pay_final(store, keypair, eval, committed)?
                    }
                    _ => None,
                };
                let _ = self.reply.send(json!({
                    "event": "finished",
                    "model": self.model_id.as_str(),
                    "rounds_completed": self.rounds_completed,
                    "global_hash": params_hash(&global),
                    "accuracy": metrics.as_ref().map(Metrics::headline),
                    "metric": metrics.as_ref().map(Metrics::headline_name),
                    "epsilon": self.epsilon_spent(),
                    "final_paid": final_paid.as_ref().map(|p| p.amount),
                }));
            }
        }
        Ok(())
    }
}

/// Where the run's publisher's outputs go: messages to members' peers; round events, recorded
/// by the run once the driver returns.
struct RunHost<'a> {
    members: &'a BTreeMap<NodeId, Member>,
    actions: Vec<RunAction>,
    events: Vec<RoundEvent>,
}

impl Host for RunHost<'_> {
    type Error = Error;

    fn send(&mut self, _from: NodeId, to: NodeId, msg: Msg) -> Result<(), Error> {
        match self.members.get(&to) {
            Some(member) => self.actions.push(RunAction::Send {
                peer: member.peer,
                msg,
            }),
            None => tracing::warn!(%to, "the publisher addressed a node that is not a member"),
        }
        Ok(())
    }

    fn train(&mut self, job: TrainJob) -> Result<(), Error> {
        Err(Error::Refused(format!(
            "{} asked a publisher to train; no participant lives in a run",
            job.node
        )))
    }

    fn event(&mut self, event: RoundEvent) -> Result<(), Error> {
        self.events.push(event);
        Ok(())
    }
}

/// The last round of `model_id` that `me` committed (0 for none).
fn last_committed_round(store: &Store, me: &Did, model_id: &ModelId) -> Result<u32, Error> {
    Ok(store
        .events_by_model(model_id)?
        .iter()
        .filter_map(|e| match e.body() {
            Body::RoundCommitted(r) if e.author() == *me => Some(r.round),
            _ => None,
        })
        .max()
        .unwrap_or(0))
}

/// A plan the ledger recorded, as the publisher replans it.
fn committed_plan(round: u32, plan: &fedpool_ledger::RoundPlan) -> CommittedPlan {
    CommittedPlan {
        round,
        asked: plan.asked as usize,
        eligible: plan.eligible as usize,
        clip_norm: plan.clip_norm,
    }
}

/// The statistics phase this publisher committed for `model_id` earlier, if any: its scaling
/// (checked against its hash) and its plan.
fn committed_statistics(
    store: &Store,
    me: &Did,
    model_id: &ModelId,
) -> Result<Option<(FeatureScaling, CommittedPlan)>, Error> {
    for event in store.events_by_author(me)? {
        let Body::StatisticsCommitted(committed) = event.body() else {
            continue;
        };
        if &committed.model_id != model_id {
            continue;
        }
        let scaling = FeatureScaling::from_json(&committed.scaling)
            .map_err(|e| Error::Refused(format!("the committed scaling is unreadable: {e}")))?;
        if scaling_record(&scaling).1 != committed.scaling_hash {
            return Err(Error::Refused(
                "the committed scaling does not hash to its recorded hash".into(),
            ));
        }
        return Ok(Some((scaling, committed_plan(0, &committed.plan))));
    }
    Ok(None)
}

/// The evaluation rows encoded as the nodes encode theirs: with the federated scaling, or
/// (when the model has none) with their own statistics; `None` until the scaling exists.
fn encode_eval(
    table: Option<&Table>,
    federated: bool,
    scaling: Option<&Arc<FeatureScaling>>,
) -> Result<Option<Dataset>, Error> {
    let Some(table) = table else {
        return Ok(None);
    };
    let rows: Vec<usize> = (0..table.n_rows()).collect();
    match (federated, scaling) {
        (false, _) => Ok(Some(table.encode(&rows))),
        (true, Some(scaling)) => table
            .encode_scaled(&rows, scaling)
            .map(Some)
            .map_err(|e| Error::Refused(format!("cannot encode the evaluation set: {e}"))),
        (true, None) => Ok(None),
    }
}

/// A peer id or DID, shortened for logs.
pub fn short(id: &str) -> &str {
    let start = id.len().saturating_sub(8);
    &id[start..]
}

fn evaluate(network: &Network, params: &[f32], data: &Dataset) -> Result<Metrics, Error> {
    let outputs = network
        .predict(params, &data.features)
        .map_err(|e| Error::Refused(format!("cannot evaluate: {e}")))?;
    Ok(evaluate_outputs(&outputs, &data.targets))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn params_path(dir: &Path, round: u32) -> PathBuf {
    dir.join(format!("round-{round}.f32"))
}

/// Writes a round's parameters (raw little-endian `f32`) through a temporary file and a
/// rename, so a crash leaves the old file or the new one, never half of one.
fn save_params(dir: &Path, round: u32, params: &[f32]) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut bytes = Vec::with_capacity(params.len() * 4);
    for p in params {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    let path = params_path(dir, round);
    let tmp = dir.join(format!(".round-{round}.f32.tmp"));
    std::fs::write(&tmp, &bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
    // Two rounds back is never needed again.
    if round > 2 {
        let _ = std::fs::remove_file(params_path(dir, round - 2));
    }
    Ok(())
}

fn load_params(dir: &Path, round: u32, hash: &str, n_params: usize) -> Result<Vec<f32>, Error> {
    let path = params_path(dir, round);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    if bytes.len() != n_params * 4 {
        return Err(Error::Refused(format!(
            "{} holds {} bytes; the model has {n_params} parameters",
            path.display(),
            bytes.len()
        )));
    }
    let params: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if params_hash(&params) != hash {
        return Err(Error::Refused(format!(
            "{} is not the model the ledger committed for round {round}",
            path.display()
        )));
    }
    Ok(params)
}

fn write_started(dir: &Path, round: u32) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join("started");
    let tmp = dir.join(".started.tmp");
    std::fs::write(&tmp, round.to_string()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_error(&path))
}

fn read_started(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("started"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
