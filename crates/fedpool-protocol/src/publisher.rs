//! The publisher (model builder) side of a round, as a sans-IO state machine.
//!
//! Like quinn-proto's `Connection`, the publisher owns no sockets and never reads the clock:
//! the driver passes time in with `Tick { now_ms }` and drains outputs after every input. One
//! round: sample from the eligible roster, send the global model, collect updates until every
//! sampled node answered or the deadline passed (late or silent nodes are dropouts, a normal
//! input, not an error), aggregate with the strategy, report the round, start the next.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use fedpool_core::LocalTraining;
use fedpool_data::{FeatureScaling, StatisticsLayout};
use fedpool_privacy::gaussian::standard_normal;
use fedpool_privacy::{QuantileClipEstimator, RdpAccountant, clip::update_noise_multiplier};
use fedpool_strategy::{ClientSampling, ClientUpdate, Strategy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::msg::{
    DeclineReason, Msg, NodeId, RoundId, RoundTask, STATISTICS_ROUND, TrainRequest, UpdateMsg,
};
use crate::privacy::{Aggregation, PrivacyTerms, RoundPrivacy, private_mean};
use crate::secure::{Directory, GroupSum, RoundOutcome, SecAggSetup, SecureGroups};

/// Publisher settings for one training run.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Rounds to run.
    pub rounds: usize,
    /// How many eligible nodes each round asks.
    pub sampling: ClientSampling,
    /// Local training sent with every request.
    pub local: LocalTraining,
    /// How long a round waits for updates before treating silent nodes as dropped.
    pub round_timeout_ms: u64,
    /// Seed of the sampling RNG. Central noise and secure-aggregation seeds come from the OS
    /// unless [`Publisher::with_privacy_seed`] is called.
    pub seed: u64,
    /// The contract's privacy terms.
    pub privacy: PrivacyTerms,
    /// Identities of the nodes, for secure aggregation.
    pub directory: Arc<Directory>,
    /// The columns standardised with federated statistics, when the contract has any: the run
    /// then begins with the statistics phase ([`STATISTICS_ROUND`]), and every training round
    /// carries the scaling derived from it.
    pub statistics: Option<StatisticsLayout>,
}

/// What the driver feeds the publisher.
#[derive(Debug, Clone)]
pub enum PublisherInput {
    /// A message arrived.
    Received {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: Msg,
    },
    /// Time passed; starts the first round and closes rounds whose deadline passed.
    Tick {
        /// Current time.
        now_ms: u64,
    },
}

/// What the publisher asks its driver to do or report.
#[derive(Debug, Clone)]
pub enum PublisherOutput {
    /// Deliver a message.
    Send {
        /// Recipient.
        to: NodeId,
        /// The message.
        msg: Msg,
    },
    /// Something happened that the runtime records or displays.
    Event(RoundEvent),
}

/// Round lifecycle events. The protocol never writes the ledger: the runtime records these.
#[derive(Debug, Clone)]
pub enum RoundEvent {
    /// A round began with these sampled nodes.
    Started {
        /// The round.
        round: RoundId,
        /// Nodes asked to train.
        sampled: Vec<NodeId>,
    },
    /// The statistics phase produced the federated scaling.
    StatisticsCompleted(StatisticsSummary),
    /// A round produced a new global model.
    Completed(RoundSummary),
    /// A round produced no model (too few updates, or the strategy refused them); the global
    /// model is unchanged.
    Failed {
        /// The round.
        round: RoundId,
        /// Why.
        reason: String,
    },
    /// Training stopped early: another round would pass the contract's privacy budget.
    BudgetExhausted {
        /// The round that was not started.
        round: RoundId,
        /// ε spent so far.
        epsilon_spent: f64,
        /// ε the next round would have brought the total to.
        epsilon_next: f64,
        /// The contract's budget.
        epsilon_budget: f64,
    },
    /// All rounds are done.
    Finished {
        /// The final global model.
        global: Arc<Vec<f32>>,
    },
}

/// A round a previous process committed, as the ledger records its plan: what
/// [`Publisher::resume`] needs to account it again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommittedPlan {
    /// The round's number.
    pub round: u32,
    /// Nodes asked.
    pub asked: usize,
    /// Nodes eligible.
    pub eligible: usize,
    /// The round's clip norm.
    pub clip_norm: f64,
}

/// The record of a completed round.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    /// The round.
    pub round: RoundId,
    /// The new global parameters.
    pub global: Arc<Vec<f32>>,
    /// Nodes whose updates were aggregated, in node order.
    pub contributors: Vec<NodeId>,
    /// Contributors the strategy actually used (Krum and friends select a subset).
    pub selected: Vec<NodeId>,
    /// Nodes that declined, and why.
    pub declined: Vec<(NodeId, DeclineReason)>,
    /// Sampled nodes that never answered before the deadline.
    pub dropped: Vec<NodeId>,
    /// Updates rejected as malformed (wrong length), with the reason.
    pub rejected: Vec<(NodeId, String)>,
    /// Example-weighted mean of the contributors' local training losses.
    pub mean_train_loss: f64,
    /// Rows trained on across contributors (0 when securely aggregated: not revealed).
    pub n_examples: usize,
    /// Privacy spent, when the round added noise.
    pub privacy: Option<PrivacySpend>,
    /// Whether the publisher saw only the sum of the updates.
    pub secure_aggregation: bool,
    /// Secure rounds: the sums the publisher saw, one per group (one for the round unless the
    /// contract aggregates groups), their noise included.
    pub group_sums: Vec<GroupSum>,
    /// The clip norm of the round (0 for none).
    pub clip_norm: f64,
    /// Nodes asked to take part (what the round's privacy plan was sized for).
    pub asked: usize,
    /// Nodes eligible when the round started.
    pub eligible: usize,
}

/// The record of the statistics phase.
#[derive(Debug, Clone)]
pub struct StatisticsSummary {
    /// The scaling every node and the test set standardise with from now on.
    pub scaling: Arc<FeatureScaling>,
    /// Nodes whose statistics were aggregated (every member of the sum when secure).
    pub contributors: Vec<NodeId>,
    /// Nodes that declined, and why.
    pub declined: Vec<(NodeId, DeclineReason)>,
    /// Nodes asked that never answered before the deadline.
    pub dropped: Vec<NodeId>,
    /// Vectors rejected as malformed, with the reason.
    pub rejected: Vec<(NodeId, String)>,
    /// Privacy spent, when the statistics were noised.
    pub privacy: Option<PrivacySpend>,
    /// Whether the publisher saw only the sum.
    pub secure_aggregation: bool,
    /// The clip norm (0 for none).
    pub clip_norm: f64,
    /// Nodes asked (every eligible node).
    pub asked: usize,
    /// Nodes eligible.
    pub eligible: usize,
}

/// Privacy spent by a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacySpend {
    /// ε this round added to the total (at `delta`).
    pub epsilon_round: f64,
    /// ε spent by all released rounds so far.
    pub epsilon_total: f64,
    /// δ of both.
    pub delta: f64,
}

impl PrivacySpend {
    /// `(ε of the release, ε in total, δ)` as the ledger records them: zeros for a release
    /// that added no noise.
    pub fn ledger_figures(spend: Option<PrivacySpend>) -> (f64, f64, f64) {
        spend.map_or((0.0, 0.0, 0.0), |s| {
            (s.epsilon_round, s.epsilon_total, s.delta)
        })
    }
}

struct Collecting {
    round: RoundId,
    /// Whether this is the statistics phase.
    statistics: bool,
    /// Nodes asked, and eligible, when the round started: with the contract, they fix the
    /// round's privacy mechanism (recorded so anyone can recompute its ε).
    asked: usize,
    eligible: usize,
    /// Contributions the round expects (nodes asked, or q times that when nodes
    /// self-select): the fixed denominator of private rounds.
    denominator: f64,
    /// Secure rounds: the seed whose commitment the train requests carried.
    secagg_seed: [u8; 32],
    deadline_ms: u64,
    privacy: Arc<RoundPrivacy>,
    awaiting: BTreeSet<NodeId>,
    updates: BTreeMap<NodeId, UpdateMsg>,
    /// Secure rounds: members that trained and are ready to aggregate, with their nonces.
    ready: BTreeMap<NodeId, [u8; 32]>,
    declined: Vec<(NodeId, DeclineReason)>,
    rejected: Vec<(NodeId, String)>,
    /// Secure rounds, once set up.
    secure: Option<Box<SecureGroups>>,
}

// One `State` lives in each publisher, so its size does not matter; boxing would only add
// indirection to every match.
#[allow(clippy::large_enum_variant)]
enum State {
    NotStarted,
    Collecting(Collecting),
    Done,
}

/// A model builder's side of the round protocol.
pub struct Publisher {
    config: PublisherConfig,
    local: Arc<LocalTraining>,
    strategy: Box<dyn Strategy>,
    global: Arc<Vec<f32>>,
    roster: Vec<NodeId>,
    rng: ChaCha20Rng,
    /// Central noise and secure-aggregation seeds: a stream of its own, so privacy settings
    /// never change which nodes are sampled.
    privacy_rng: ChaCha20Rng,
    next_round: u32,
    state: State,
    outputs: VecDeque<PublisherOutput>,
    accountant: RdpAccountant,
    epsilon_spent: f64,
    now_ms: u64,
    adaptive_clip: Option<QuantileClipEstimator>,
    /// The federated scaling, once the statistics phase produced it (or a resumed run
    /// restored it).
    scaling: Option<Arc<FeatureScaling>>,
    /// Whether the statistics phase has been started: it runs once, and a run whose phase
    /// failed ends, since no round can be trained without its scaling.
    statistics_started: bool,
}

impl Publisher {
    /// A publisher that will train `initial` over the nodes in `roster` (those eligible: known
    /// and consenting) with `strategy`.
    pub fn new(
        config: PublisherConfig,
        strategy: Box<dyn Strategy>,
        initial: Vec<f32>,
        roster: Vec<NodeId>,
    ) -> Publisher {
        let mut local = config.local.clone();
        // FedProx's μ is a strategy choice that clients apply; carry it in the request.
        local.proximal_mu = local.proximal_mu.max(strategy.proximal_mu());
        // The estimator adds no noise itself: the publisher noises the count with σ_b, which
        // depends on the round's size.
        let adaptive_clip = config.privacy.adaptive_clipping.and_then(|a| {
            QuantileClipEstimator::new(
                config.privacy.clip_norm,
                a.target_quantile,
                a.learning_rate,
                0.0,
            )
            .ok()
        });
        Publisher {
            rng: ChaCha20Rng::seed_from_u64(config.seed),
            privacy_rng: ChaCha20Rng::from_seed(crate::participant::os_seed()),
            local: Arc::new(local),
            config,
            strategy,
            global: Arc::new(initial),
            roster,
            next_round: 1,
            state: State::NotStarted,
            outputs: VecDeque::new(),
            accountant: RdpAccountant::default(),
            epsilon_spent: 0.0,
            now_ms: 0,
            adaptive_clip,
            scaling: None,
            statistics_started: false,
        }
    }

    /// The federated scaling the rounds standardise with, once there is one.
    pub fn scaling(&self) -> Option<&Arc<FeatureScaling>> {
        self.scaling.as_ref()
    }

    /// Continues a run whose statistics phase an earlier process committed: its rounds use
    /// `scaling`, and its privacy (planned as `plan` says) is accounted again. Call before
    /// [`Publisher::resume`].
    pub fn with_committed_statistics(
        mut self,
        scaling: Arc<FeatureScaling>,
        plan: CommittedPlan,
    ) -> Result<Publisher, String> {
        let Some(layout) = &self.config.statistics else {
            return Err("this contract has no statistics phase".into());
        };
        scaling.check_layout(layout).map_err(|e| e.to_string())?;
        let planned = self
            .config
            .privacy
            .for_statistics()
            .plan_round(plan.asked, plan.eligible, layout.dimension())
            .map_err(|e| format!("the committed statistics phase cannot be replanned: {e}"))?;
        if let Some(mechanism) = &planned.mechanism {
            self.epsilon_spent =
                epsilon_after_round(&mut self.accountant, mechanism, self.config.privacy.delta);
        }
        self.scaling = Some(scaling);
        self.statistics_started = true;
        Ok(self)
    }

    /// The clip norm the next round will use (0 for none): the contract's, or where adaptive
    /// clipping has moved it.
    pub fn clip_norm(&self) -> f64 {
        self.adaptive_clip.as_ref().map_or(
            self.config.privacy.clip_norm,
            QuantileClipEstimator::clip_norm,
        )
    }

    /// Seeds the stream that draws central noise and secure-aggregation seeds with 32 bytes
    /// instead of the OS (256 bits, the default): for simulations, which must be reproducible
    /// from their seed.
    pub fn with_privacy_seed(mut self, seed: [u8; 32]) -> Publisher {
        self.privacy_rng = ChaCha20Rng::from_seed(seed);
        self
    }

    /// ε spent by the rounds released so far, at the contract's δ.
    pub fn epsilon_spent(&self) -> f64 {
        self.epsilon_spent
    }

    /// The masked vectors the publisher holds for the current secure round, by member: all
    /// it ever sees of an individual update when secure aggregation is on.
    pub fn masked_inputs(&self) -> Vec<(NodeId, &[u32])> {
        match &self.state {
            State::Collecting(Collecting {
                secure: Some(secure),
                ..
            }) => secure.masked_inputs(),
            _ => Vec::new(),
        }
    }

    /// Continues a training run of which `committed` rounds (in order, as the ledger records
    /// their plans) were already released, by this publisher in an earlier process: round
    /// numbers continue after them, and the accountant composes each again from its plan with
    /// the code `ledger verify` uses, so no round and no ε is counted twice or forgotten. The
    /// global model is the one given to [`Publisher::new`] (the last committed one); the run's
    /// `rounds` counts the committed ones too. Round numbers also skip past `started_through`:
    /// a round the earlier process started but never committed is not numbered again.
    pub fn resume(
        mut self,
        committed: &[CommittedPlan],
        started_through: u32,
    ) -> Result<Publisher, String> {
        if !matches!(self.state, State::NotStarted) {
            return Err("only a publisher that has not started can resume".into());
        }
        let dimension = self.global.len();
        for plan in committed {
            let mut terms = self.config.privacy.clone();
            terms.clip_norm = plan.clip_norm;
            let planned = terms
                .plan_round(plan.asked, plan.eligible, dimension)
                .map_err(|e| format!("committed round {} cannot be replanned: {e}", plan.round))?;
            if let Some(mechanism) = &planned.mechanism {
                self.epsilon_spent =
                    epsilon_after_round(&mut self.accountant, mechanism, self.config.privacy.delta);
            }
        }
        if let (Some(last), Some(adaptive)) =
            (committed.last(), self.config.privacy.adaptive_clipping)
        {
            self.adaptive_clip = QuantileClipEstimator::new(
                last.clip_norm,
                adaptive.target_quantile,
                adaptive.learning_rate,
                0.0,
            )
            .ok();
        }
        let last_committed = committed.iter().map(|p| p.round).max().unwrap_or(0);
        self.next_round = last_committed.max(started_through).saturating_add(1);
        Ok(self)
    }

    /// Replaces the identities trusted for secure aggregation (new consents on the ledger);
    /// applies from the next round.
    pub fn set_directory(&mut self, directory: Arc<Directory>) {
        self.config.directory = directory;
    }

    /// Replaces the set of eligible nodes; applies from the next round.
    pub fn set_roster(&mut self, roster: Vec<NodeId>) {
        self.roster = roster;
    }

    /// The current global parameters.
    pub fn global(&self) -> &Arc<Vec<f32>> {
        &self.global
    }

    /// True once every round has run.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// When the driver must send the next `Tick`, if it must.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match &self.state {
            State::NotStarted => Some(0),
            State::Collecting(Collecting {
                secure: Some(secure),
                ..
            }) => secure.next_deadline_ms(),
            State::Collecting(c) => Some(c.deadline_ms),
            State::Done => None,
        }
    }

    /// Applies one input. Never blocks; drain [`Publisher::poll_output`] afterwards.
    pub fn handle(&mut self, input: PublisherInput) {
        match input {
            PublisherInput::Tick { now_ms } => self.on_tick(now_ms),
            PublisherInput::Received { from, msg } => self.on_message(from, msg),
        }
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<PublisherOutput> {
        self.outputs.pop_front()
    }

    fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        match &mut self.state {
            State::NotStarted => self.start_round(now_ms),
            State::Collecting(Collecting {
                secure: Some(secure),
                ..
            }) => {
                let mut sends = Vec::new();
                let outcome = secure.tick(now_ms, &mut sends);
                self.after_secure(sends, outcome);
            }
            State::Collecting(c) if now_ms >= c.deadline_ms => {
                if matches!(c.privacy.aggregation, Aggregation::Secure { .. }) {
                    self.setup_secure();
                } else {
                    self.finish_round(now_ms);
                }
            }
            State::Collecting(_) | State::Done => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg) {
        let State::Collecting(collecting) = &mut self.state else {
            return;
        };
        if let Some(secure) = &mut collecting.secure {
            if let Msg::SecAggToServer { round, msg } = msg
                && round == collecting.round
            {
                let mut sends = Vec::new();
                let outcome = secure.received(from, msg, &mut sends);
                self.after_secure(sends, outcome);
            }
            return;
        }
        let secure_round = matches!(collecting.privacy.aggregation, Aggregation::Secure { .. });
        match msg {
            Msg::Ready { round, nonce } => {
                if secure_round && round == collecting.round && collecting.awaiting.remove(&from) {
                    collecting.ready.insert(from, nonce);
                }
            }
            Msg::Update(update) if secure_round => {
                // Never accept a plain update in a round the contract secures.
                if update.round == collecting.round && collecting.awaiting.remove(&from) {
                    collecting
                        .rejected
                        .push((from, "a plain update in a securely aggregated round".into()));
                }
            }
            Msg::Update(update) => {
                // Only sampled nodes, only once, only for the current round: anything else is a
                // late or unsolicited message and is ignored.
                if update.round != collecting.round || !collecting.awaiting.remove(&from) {
                    return;
                }
                let expected = match (&self.config.statistics, collecting.statistics) {
                    (Some(layout), true) => layout.dimension(),
                    _ => self.global.len(),
                };
                if update.delta.len() != expected {
                    collecting.rejected.push((
                        from,
                        format!(
                            "update has {} values, {} expects {expected}",
                            update.delta.len(),
                            collecting.round
                        ),
                    ));
                } else {
                    collecting.updates.insert(from, update);
                }
            }
            Msg::Decline { round, reason } => {
                if round == collecting.round && collecting.awaiting.remove(&from) {
                    collecting.declined.push((from, reason));
                }
            }
            Msg::TrainRequest(_)
            | Msg::SecAggSetup(_)
            | Msg::SecAggToServer { .. }
            | Msg::SecAggToClient { .. } => {}
        }
        if collecting.awaiting.is_empty() {
            if secure_round {
                // Secure aggregation's stage deadlines count from its start, and messages carry
                // no time: ask the driver for a tick now (the deadline has passed) and start
                // there, with the current time.
                collecting.deadline_ms = self.now_ms;
            } else {
                let deadline = collecting.deadline_ms;
                self.finish_round(deadline);
            }
        }
    }

    /// Secure rounds, once every sampled node answered or the deadline passed: starts secure
    /// aggregation over the members that are ready.
    fn setup_secure(&mut self) {
        let State::Collecting(collecting) = &mut self.state else {
            return;
        };
        let Aggregation::Secure {
            encoding,
            min_survivors,
            count_noise,
        } = collecting.privacy.aggregation.clone()
        else {
            return;
        };
        let members: Vec<NodeId> = collecting.ready.keys().copied().collect();
        let group_size = self.config.privacy.secure_aggregation_group_size;
        let needed = min_survivors
            .max(self.config.sampling.min_clients)
            .max(group_size.unwrap_or(0))
            .max(3);
        if members.len() < needed {
            let reason = format!(
                "{} nodes are ready for secure aggregation, at least {needed} are needed ({} declined, {} silent)",
                members.len(),
                collecting.declined.len(),
                collecting.awaiting.len()
            );
            self.fail_round(reason);
            return;
        }
        let setup = SecAggSetup {
            round: collecting.round,
            nonces: collecting.ready.values().copied().collect(),
            members,
            seed: collecting.secagg_seed,
        };
        // Each stage gets the round's timeout: a member that misses it is a dropout.
        let secure = match SecureGroups::new(
            &setup,
            group_size,
            &self.config.directory,
            encoding,
            min_survivors,
            count_noise.map(|sigma_b| {
                fedpool_privacy::CountNoise {
                    n_clients: min_survivors,
                    noise_std: sigma_b,
                }
                .scale()
            }),
            self.config.round_timeout_ms,
        ) {
            Ok(secure) => secure,
            Err(reason) => {
                self.fail_round(format!("cannot set up secure aggregation: {reason}"));
                return;
            }
        };
        let setup = Arc::new(setup);
        for &node in &setup.members {
            self.outputs.push_back(PublisherOutput::Send {
                to: node,
                msg: Msg::SecAggSetup(Arc::clone(&setup)),
            });
        }
        collecting.secure = Some(Box::new(secure));
        let now_ms = self.now_ms;
        self.on_tick(now_ms);
    }

    fn after_secure(&mut self, sends: Vec<(NodeId, Msg)>, outcome: Option<RoundOutcome>) {
        for (to, msg) in sends {
            self.outputs.push_back(PublisherOutput::Send { to, msg });
        }
        match outcome {
            None => {}
            Some(RoundOutcome::Failed(reason)) => self.fail_round(reason),
            Some(RoundOutcome::Sums {
                groups,
                dropped,
                centred_count,
            }) => {
                let State::Collecting(collecting) =
                    std::mem::replace(&mut self.state, State::NotStarted)
                else {
                    return;
                };
                let mut survivors: Vec<NodeId> = groups
                    .iter()
                    .flat_map(|g| g.members.iter().copied())
                    .collect();
                survivors.sort_unstable();
                let mut sum = vec![0.0f32; groups[0].sum.len()];
                for group in &groups {
                    for (total, &x) in sum.iter_mut().zip(group.sum.iter()) {
                        *total += x;
                    }
                }
                if collecting.statistics {
                    let n = collecting.denominator as f32;
                    let mean: Vec<f32> = sum.iter().map(|s| s / n).collect();
                    let event =
                        self.complete_statistics(collecting, &mean, survivors, dropped, true);
                    self.outputs.push_back(PublisherOutput::Event(event));
                    let now_ms = self.now_ms;
                    self.start_round(now_ms);
                    return;
                }
                if let (Some(estimator), Some(centred)) = (&mut self.adaptive_clip, centred_count) {
                    // The same update as in central DP: the noise is already in the count.
                    let m = collecting.denominator;
                    estimator.update_from_noisy_count(centred + m / 2.0, rounded_count(m));
                }
                // The number expected, not the number that survived: see `private_mean`.
                let n = collecting.denominator as f32;
                let mean: Vec<f32> = sum.iter().map(|s| s / n).collect();
                let mut event = self.apply_mean(collecting, mean, survivors, dropped, true);
                if let RoundEvent::Completed(summary) = &mut event {
                    summary.group_sums = groups;
                }
                self.outputs.push_back(PublisherOutput::Event(event));
                let now_ms = self.now_ms;
                self.start_round(now_ms);
            }
        }
    }

    fn fail_round(&mut self, reason: String) {
        let State::Collecting(collecting) = std::mem::replace(&mut self.state, State::NotStarted)
        else {
            return;
        };
        self.outputs
            .push_back(PublisherOutput::Event(RoundEvent::Failed {
                round: collecting.round,
                reason,
            }));
        let now_ms = self.now_ms;
        self.start_round(now_ms);
    }

    fn start_round(&mut self, now_ms: u64) {
        if self.config.statistics.is_some() && self.scaling.is_none() {
            if self.statistics_started {
                // The phase failed (its event says why): no round can train without it.
                self.next_round = self.next_round.max(self.config.rounds as u32 + 1);
            } else {
                self.statistics_started = true;
                self.start_statistics(now_ms);
                return;
            }
        }
        if self.next_round as usize > self.config.rounds {
            self.state = State::Done;
            self.outputs
                .push_back(PublisherOutput::Event(RoundEvent::Finished {
                    global: Arc::clone(&self.global),
                }));
            return;
        }
        let round = RoundId(self.next_round);
        self.next_round += 1;
        let positions: Vec<usize> = (0..self.roster.len()).collect();
        let sampling = if self.config.privacy.self_selection_rate().is_some() {
            // Nodes sample themselves with their own coins: ask every eligible node (as many
            // as `min_clients` must be eligible).
            self.config
                .sampling
                .round_size(self.roster.len())
                .map(|_| positions)
        } else {
            self.config.sampling.sample(&positions, &mut self.rng)
        };
        let sampled: Vec<NodeId> = match sampling {
            Ok(chosen) => chosen.into_iter().map(|i| self.roster[i]).collect(),
            Err(e) => {
                self.outputs
                    .push_back(PublisherOutput::Event(RoundEvent::Failed {
                        round,
                        reason: e.to_string(),
                    }));
                // Without enough eligible nodes later rounds cannot succeed either.
                self.next_round = self.config.rounds as u32 + 1;
                self.start_round(now_ms);
                return;
            }
        };
        let mut terms = self.config.privacy.clone();
        terms.clip_norm = self.clip_norm();
        let plan = match terms.plan_round(sampled.len(), self.roster.len(), self.global.len()) {
            Ok(plan) => Arc::new(plan),
            Err(reason) => {
                self.outputs
                    .push_back(PublisherOutput::Event(RoundEvent::Failed { round, reason }));
                self.next_round = self.config.rounds as u32 + 1;
                self.start_round(now_ms);
                return;
            }
        };
        if let Some((epsilon_next, budget)) = self.past_budget(&plan) {
            self.outputs
                .push_back(PublisherOutput::Event(RoundEvent::BudgetExhausted {
                    round,
                    epsilon_spent: self.epsilon_spent,
                    epsilon_next,
                    epsilon_budget: budget,
                }));
            self.next_round = self.config.rounds as u32 + 1;
            self.start_round(now_ms);
            return;
        }
        let task = RoundTask::Train {
            scaling: self.scaling.clone(),
        };
        let global = Arc::clone(&self.global);
        self.ask(round, task, global, sampled, plan, now_ms);
    }

    /// `(ε after the release, budget)` when releasing under `plan` would pass the contract's
    /// budget.
    fn past_budget(&self, plan: &RoundPrivacy) -> Option<(f64, f64)> {
        let (mechanism, budget) = (
            plan.mechanism.as_ref()?,
            self.config.privacy.epsilon_budget?,
        );
        let epsilon_next = epsilon_after_round(
            &mut self.accountant.clone(),
            mechanism,
            self.config.privacy.delta,
        );
        (epsilon_next > budget).then_some((epsilon_next, budget))
    }

    /// Reports the round started, sends every sampled node its request, and collects.
    fn ask(
        &mut self,
        round: RoundId,
        task: RoundTask,
        global: Arc<Vec<f32>>,
        sampled: Vec<NodeId>,
        plan: Arc<RoundPrivacy>,
        now_ms: u64,
    ) {
        self.outputs
            .push_back(PublisherOutput::Event(RoundEvent::Started {
                round,
                sampled: sampled.clone(),
            }));
        let secagg_seed: [u8; 32] = self.privacy_rng.random();
        let secagg_commitment = matches!(plan.aggregation, Aggregation::Secure { .. })
            .then(|| SecAggSetup::commitment(&secagg_seed));
        let statistics = matches!(task, RoundTask::Statistics);
        for &node in &sampled {
            self.outputs.push_back(PublisherOutput::Send {
                to: node,
                msg: Msg::TrainRequest(TrainRequest {
                    round,
                    task: task.clone(),
                    global: Arc::clone(&global),
                    local: Arc::clone(&self.local),
                    privacy: Arc::clone(&plan),
                    secagg_commitment,
                }),
            });
        }
        self.state = State::Collecting(Collecting {
            round,
            statistics,
            asked: sampled.len(),
            eligible: self.roster.len(),
            denominator: self.config.privacy.expected_contributors(sampled.len()),
            secagg_seed,
            deadline_ms: now_ms.saturating_add(self.config.round_timeout_ms),
            privacy: plan,
            awaiting: sampled.into_iter().collect(),
            updates: BTreeMap::new(),
            ready: BTreeMap::new(),
            declined: Vec::new(),
            rejected: Vec::new(),
            secure: None,
        });
    }

    /// The statistics phase: every eligible node is asked once for its statistics vector,
    /// which travels like an update (clipped, noised, securely aggregated as the contract
    /// says); its privacy is accounted with the rounds'.
    fn start_statistics(&mut self, now_ms: u64) {
        let Some(layout) = &self.config.statistics else {
            return;
        };
        let round = STATISTICS_ROUND;
        let fail = |publisher: &mut Publisher, reason: String| {
            publisher
                .outputs
                .push_back(PublisherOutput::Event(RoundEvent::Failed { round, reason }));
            publisher.start_round(now_ms);
        };
        let eligible = self.roster.len();
        if let Err(e) = self.config.sampling.round_size(eligible) {
            return fail(self, e.to_string());
        }
        let plan = match self.config.privacy.for_statistics().plan_round(
            eligible,
            eligible,
            layout.dimension(),
        ) {
            Ok(plan) => Arc::new(plan),
            Err(reason) => return fail(self, reason),
        };
        if let Some((epsilon_next, budget)) = self.past_budget(&plan) {
            return fail(
                self,
                format!(
                    "the statistics phase alone would spend ε {epsilon_next:.3}, past the budget of {budget}"
                ),
            );
        }
        let sampled = self.roster.clone();
        self.ask(
            round,
            RoundTask::Statistics,
            Arc::new(Vec::new()),
            sampled,
            plan,
            now_ms,
        );
    }

    /// The round's failure when fewer than `min_clients` vectors arrived (`arrived` says what).
    fn too_few(&self, collecting: &Collecting, arrived: &str) -> Option<RoundEvent> {
        let n = collecting.updates.len();
        let minimum = self.config.sampling.min_clients.max(1);
        (n < minimum).then(|| RoundEvent::Failed {
            round: collecting.round,
            reason: format!(
                "{n} {arrived}, at least {minimum} are needed ({} declined, {} dropped, {} rejected)",
                collecting.declined.len(),
                collecting.awaiting.len(),
                collecting.rejected.len()
            ),
        })
    }

    /// Composes a released mechanism into the accountant: the privacy the release spent.
    fn account_release(
        &mut self,
        mechanism: Option<&fedpool_privacy::RoundMechanism>,
    ) -> Option<PrivacySpend> {
        let mechanism = mechanism?;
        let before = self.epsilon_spent;
        let after = epsilon_after_round(&mut self.accountant, mechanism, self.config.privacy.delta);
        self.epsilon_spent = after;
        Some(PrivacySpend {
            epsilon_round: (after - before).max(0.0),
            epsilon_total: after,
            delta: self.config.privacy.delta,
        })
    }

    /// The statistics phase's plain (or centrally noised) aggregate: the mean of the vectors.
    fn aggregate_statistics(&mut self, collecting: Collecting) -> RoundEvent {
        let round = collecting.round;
        if let Some(failed) = self.too_few(&collecting, "nodes sent statistics") {
            return failed;
        }
        let contributors: Vec<NodeId> = collecting.updates.keys().copied().collect();
        let vectors: Vec<&[f32]> = collecting
            .updates
            .values()
            .map(|u| u.delta.as_slice())
            .collect();
        // Every node counts once, whatever its rows: the (clipped, noised when the contract
        // says so) sum over the expected count. Only ratios of it are used, so the divisor
        // does not matter.
        let terms = &self.config.privacy;
        let noise_multiplier = if terms.adds_noise() {
            terms.noise_multiplier
        } else {
            0.0
        };
        let mean = match private_mean(
            &vectors,
            collecting.privacy.clip_norm,
            noise_multiplier,
            collecting.denominator,
            &mut self.privacy_rng,
        ) {
            Ok(mean) => mean,
            Err(reason) => return RoundEvent::Failed { round, reason },
        };
        let dropped = collecting.awaiting.iter().copied().collect();
        self.complete_statistics(collecting, &mean, contributors, dropped, false)
    }

    /// Derives the scaling from the aggregate and accounts the phase's privacy.
    fn complete_statistics(
        &mut self,
        collecting: Collecting,
        aggregate: &[f32],
        contributors: Vec<NodeId>,
        dropped: Vec<NodeId>,
        secure_aggregation: bool,
    ) -> RoundEvent {
        let round = collecting.round;
        // The noise is released with the aggregate whether or not a scaling comes of it.
        let privacy = self.account_release(collecting.privacy.mechanism.as_ref());
        let Some(layout) = &self.config.statistics else {
            return RoundEvent::Failed {
                round,
                reason: "this contract has no statistics phase".into(),
            };
        };
        let scaling = match layout.scaling_from_sum(aggregate) {
            Ok(scaling) => Arc::new(scaling),
            Err(e) => {
                return RoundEvent::Failed {
                    round,
                    reason: e.to_string(),
                };
            }
        };
        self.scaling = Some(Arc::clone(&scaling));
        RoundEvent::StatisticsCompleted(StatisticsSummary {
            scaling,
            contributors,
            declined: collecting.declined,
            dropped,
            rejected: collecting.rejected,
            privacy,
            secure_aggregation,
            clip_norm: collecting.privacy.clip_norm,
            asked: collecting.asked,
            eligible: collecting.eligible,
        })
    }

    fn finish_round(&mut self, now_ms: u64) {
        let State::Collecting(collecting) = std::mem::replace(&mut self.state, State::NotStarted)
        else {
            return;
        };
        let event = self.aggregate(collecting);
        self.outputs.push_back(PublisherOutput::Event(event));
        self.start_round(now_ms);
    }

    fn aggregate(&mut self, collecting: Collecting) -> RoundEvent {
        if collecting.statistics {
            return self.aggregate_statistics(collecting);
        }
        let round = collecting.round;
        if let Some(failed) = self.too_few(&collecting, "updates arrived") {
            return failed;
        }
        // BTreeMap order: updates are aggregated in node order, whatever order they arrived in,
        // so a seeded run gives the same model bit for bit.
        let contributors: Vec<NodeId> = collecting.updates.keys().copied().collect();
        if self.config.privacy.is_active() {
            let deltas: Vec<&[f32]> = collecting
                .updates
                .values()
                .map(|u| u.delta.as_slice())
                .collect();
            let terms = &self.config.privacy;
            let count_noise_std = terms.count_noise_std(collecting.denominator);
            let noise_multiplier = match (terms.adds_noise(), &self.adaptive_clip) {
                (false, _) => 0.0,
                (true, None) => terms.noise_multiplier,
                // Adaptive clipping also releases a noised count: the update gets the rest of
                // the noise budget (Andrew et al. 2021, Theorem 1).
                (true, Some(_)) => {
                    match update_noise_multiplier(terms.noise_multiplier, count_noise_std) {
                        Ok(z) => z,
                        Err(e) => {
                            return RoundEvent::Failed {
                                round,
                                reason: e.to_string(),
                            };
                        }
                    }
                }
            };
            let mean = match private_mean(
                &deltas,
                collecting.privacy.clip_norm,
                noise_multiplier,
                collecting.denominator,
                &mut self.privacy_rng,
            ) {
                Ok(mean) => mean,
                Err(reason) => return RoundEvent::Failed { round, reason },
            };
            if let Some(estimator) = &mut self.adaptive_clip {
                // Centred bits (b − ½) have sensitivity ½; m/2 restores the count's scale. Zero
                // updates of nodes whose coin said no count for nothing.
                let counted = || collecting.updates.values().filter(|u| u.contributed);
                let within = counted().filter(|u| u.within_clip).count() as f64;
                let noise = if count_noise_std > 0.0 {
                    count_noise_std * standard_normal(&mut self.privacy_rng)
                } else {
                    0.0
                };
                let n = counted().count() as f64;
                let m = collecting.denominator;
                estimator
                    .update_from_noisy_count(within - n / 2.0 + noise + m / 2.0, rounded_count(m));
            }
            let dropped = collecting.awaiting.iter().copied().collect();
            return self.apply_mean(collecting, mean, contributors, dropped, false);
        }
        let updates: Vec<ClientUpdate<'_>> = collecting
            .updates
            .values()
            .map(|u| ClientUpdate {
                delta: &u.delta,
                n_examples: u.n_examples,
            })
            .collect();
        let mut next = self.global.as_ref().clone();
        let report = match self.strategy.aggregate(&mut next, &updates) {
            Ok(report) => report,
            Err(e) => {
                return RoundEvent::Failed {
                    round,
                    reason: e.to_string(),
                };
            }
        };
        let (n_examples, mean_train_loss) = train_stats(&collecting.updates);
        self.global = Arc::new(next);
        RoundEvent::Completed(RoundSummary {
            round,
            global: Arc::clone(&self.global),
            selected: report
                .selected
                .iter()
                .filter_map(|&i| contributors.get(i).copied())
                .collect(),
            contributors,
            declined: collecting.declined,
            dropped: collecting.awaiting.into_iter().collect(),
            rejected: collecting.rejected,
            mean_train_loss,
            n_examples,
            privacy: None,
            secure_aggregation: false,
            group_sums: Vec::new(),
            clip_norm: 0.0,
            asked: collecting.asked,
            eligible: collecting.eligible,
        })
    }

    /// Applies a private round's mean update through the strategy (as one update: only the
    /// mean exists) and accounts the round's privacy.
    fn apply_mean(
        &mut self,
        collecting: Collecting,
        mean: Vec<f32>,
        contributors: Vec<NodeId>,
        dropped: Vec<NodeId>,
        secure_aggregation: bool,
    ) -> RoundEvent {
        let round = collecting.round;
        let mut next = self.global.as_ref().clone();
        let one = [ClientUpdate {
            delta: &mean,
            n_examples: 1,
        }];
        if let Err(e) = self.strategy.aggregate(&mut next, &one) {
            return RoundEvent::Failed {
                round,
                reason: e.to_string(),
            };
        }
        let privacy = self.account_release(collecting.privacy.mechanism.as_ref());
        let (n_examples, mean_train_loss) = if secure_aggregation {
            // Nothing about individual members is revealed, not even their row counts.
            (0, f64::NAN)
        } else {
            train_stats(&collecting.updates)
        };
        self.global = Arc::new(next);
        RoundEvent::Completed(RoundSummary {
            round,
            global: Arc::clone(&self.global),
            selected: contributors.clone(),
            contributors,
            declined: collecting.declined,
            dropped,
            rejected: collecting.rejected,
            mean_train_loss,
            n_examples,
            privacy,
            secure_aggregation,
            group_sums: Vec::new(),
            clip_norm: collecting.privacy.clip_norm,
            asked: collecting.asked,
            eligible: collecting.eligible,
        })
    }
}

/// Composes one round of `mechanism` into `accountant` and returns the total ε at `delta`
/// (infinite if the mechanism cannot be accounted: the budget check then refuses the round).
fn epsilon_after_round(
    accountant: &mut RdpAccountant,
    mechanism: &fedpool_privacy::RoundMechanism,
    delta: f64,
) -> f64 {
    accountant
        .compose(mechanism, 1)
        .and_then(|()| accountant.epsilon(delta))
        .map_or(f64::INFINITY, |(eps, _)| eps)
}

/// An expected count as the estimator's whole number of participants (at least 1).
fn rounded_count(expected: f64) -> usize {
    (expected.round() as usize).max(1)
}

/// Rows trained on and the example-weighted mean training loss of plain updates.
fn train_stats(updates: &BTreeMap<NodeId, UpdateMsg>) -> (usize, f64) {
    let n_examples: usize = updates.values().map(|u| u.n_examples).sum();
    let mean_train_loss = if n_examples == 0 {
        0.0
    } else {
        updates
            .values()
            .map(|u| u.train_loss as f64 * u.n_examples as f64)
            .sum::<f64>()
            / n_examples as f64
    };
    (n_examples, mean_train_loss)
}
