//! The participant (data owner) side of a round, as a sans-IO state machine.
//!
//! The participant never trains by itself: it asks its driver to (`Output::Train`) and gets the
//! result back (`Input::Trained`), so the same machine runs in simulation, where the driver
//! trains thousands of clients in parallel, and on the network.

use std::collections::VecDeque;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fedpool_core::{LocalTraining, TrainOutcome};
use fedpool_privacy::{PrivacyLedger, clip_l2, ddg};
use fedpool_secagg::{Client, ClientEvent, ClientInput, ClientOutput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::msg::{
    DeclineReason, Msg, NodeId, RoundId, RoundTask, STATISTICS_ROUND, TrainRequest, UpdateMsg,
};
use crate::privacy::{Aggregation, PrivacyTerms, RoundPrivacy};
use crate::secure::{Directory, SecAggSetup};

/// What the driver feeds a participant.
#[derive(Debug, Clone)]
pub enum ParticipantInput {
    /// A message arrived.
    Received {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: Msg,
    },
    /// The training job last emitted finished.
    Trained {
        /// Round of the job.
        round: RoundId,
        /// Result, or why training failed.
        outcome: Result<TrainOutcome, String>,
    },
    /// The current time: consent expiry is checked against it, and a round whose publisher
    /// has gone silent past [`Participant::next_deadline_ms`] is given up.
    Tick {
        /// Milliseconds on the driver's clock (never goes back; an earlier value is ignored).
        now_ms: u64,
    },
}

/// How long a participant waits for its publisher's next message in a secure round before it
/// gives the round up, unless [`Participant::with_round_timeout`] says otherwise.
pub const DEFAULT_PARTICIPANT_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// What a participant asks its driver to do.
#[derive(Debug, Clone)]
pub enum ParticipantOutput {
    /// Deliver a message.
    Send {
        /// Recipient.
        to: NodeId,
        /// The message.
        msg: Msg,
    },
    /// Train locally and report back with `ParticipantInput::Trained`.
    Train(TrainJob),
}

/// A local training job for the driver.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The participant that asked.
    pub node: NodeId,
    /// Round it is for.
    pub round: RoundId,
    /// Train (with the federated scaling, if any), or compute the node's statistics vector
    /// (returned as the outcome's `delta`).
    pub task: RoundTask,
    /// Parameters to start from (empty for statistics).
    pub global: Arc<Vec<f32>>,
    /// How to train.
    pub local: Arc<LocalTraining>,
    /// Seed for batch shuffling, drawn from the participant's own RNG so results do not depend
    /// on which thread runs the job.
    pub seed: u64,
}

/// One step of a node's own privacy accounting: `rounds` rounds of `mechanism`, the last of
/// them `round`. A deployed node persists its history (write-ahead: after each `handle`,
/// before it delivers what that call sent) and restores it with
/// [`Participant::restore_privacy`], so a restart never resets the ε it has spent and a
/// publisher that never records a round cannot make the node forget it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacyRecord {
    /// The latest round the step covers.
    pub round: RoundId,
    /// Rounds composed in this step (skipped rounds are composed with the one asked).
    pub rounds: u64,
    /// The mechanism the node built from the contract for them.
    pub mechanism: fedpool_privacy::RoundMechanism,
    /// ε the node had spent on the model after this step (what its ledger record declares;
    /// [`Participant::restore_privacy`] recomputes it rather than trusting it).
    pub epsilon_total: f64,
}

/// 32 bytes from the operating system's CSPRNG.
pub(crate) fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // Without OS randomness there is no safe fallback: noise and masks would be predictable.
    getrandom::fill(&mut seed).expect("the operating system's random number generator failed");
    seed
}

enum State {
    Idle,
    Training {
        round: RoundId,
        publisher: NodeId,
        privacy: Arc<RoundPrivacy>,
        /// The node's own coin for this round (always true unless it self-selects).
        contributes: bool,
        secagg_commitment: Option<[u8; 32]>,
        /// Whether this is the statistics phase.
        statistics: bool,
    },
    /// Secure rounds: trained and clipped, waiting for the publisher's setup.
    AwaitingSetup {
        round: RoundId,
        publisher: NodeId,
        /// The clipped update, or zeros when the coin said not to contribute.
        update: Vec<f32>,
        /// Adaptive clipping's bit; `None` when the node does not contribute.
        fitted: Option<bool>,
        privacy: Arc<RoundPrivacy>,
        nonce: [u8; 32],
        commitment: [u8; 32],
    },
    Aggregating {
        round: RoundId,
        publisher: NodeId,
        client: Box<Client<ChaCha20Rng>>,
        /// The fewest members whose inputs the sum may hold, checked against the unmasking
        /// request's survivor set (the one global set every member signed).
        min_in_sum: usize,
    },
}

impl State {
    fn round(&self) -> Option<RoundId> {
        match self {
            State::Idle => None,
            State::Training { round, .. }
            | State::AwaitingSetup { round, .. }
            | State::Aggregating { round, .. } => Some(*round),
        }
    }
}

/// A data owner's side of the round protocol.
pub struct Participant {
    id: NodeId,
    consented: bool,
    state: State,
    rng: ChaCha20Rng,
    /// Noise, rounding and secure-aggregation keys: a stream of its own, so that privacy
    /// settings never change which batches a node trains on.
    privacy_rng: ChaCha20Rng,
    outputs: VecDeque<ParticipantOutput>,
    rounds_trained: usize,
    rounds_contributed: usize,
    requests_received: usize,
    terms: PrivacyTerms,
    budget: Option<PrivacyLedger>,
    rounds_accounted: u32,
    privacy_history: Vec<PrivacyRecord>,
    identity: Option<SigningKey>,
    directory: Arc<Directory>,
    secure_aborts: Vec<(RoundId, String)>,
    publisher: Option<NodeId>,
    /// The latest time the driver told.
    now_ms: u64,
    /// When the consent lapses, if it does.
    consent_expires_at_ms: Option<u64>,
    /// How long to wait for the publisher in a secure round.
    round_timeout_ms: u64,
    /// When the publisher last moved the current secure round on (or the node did).
    last_progress_ms: u64,
    /// Length of the model's statistics vector, when it has a statistics phase.
    statistics_dimension: Option<usize>,
    /// Whether the node has already accounted (and so may have sent) its statistics: it
    /// sends them once per model, however often a publisher asks.
    statistics_given: bool,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The identity key is a secret and is never printed.
        f.debug_struct("Participant")
            .field("id", &self.id)
            .field("consented", &self.consented)
            .field("round", &self.state.round())
            .field("rounds_trained", &self.rounds_trained)
            .field("terms", &self.terms)
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// A participant with the given id, consent decision and RNG seed. The seed
    /// drives training only (batch order); noise, rounding, the sampling coin and
    /// secure-aggregation keys come from 256 bits of OS randomness unless
    /// [`Participant::with_privacy_seed`] says otherwise.
    pub fn new(id: NodeId, consented: bool, seed: u64) -> Participant {
        Participant {
            id,
            consented,
            state: State::Idle,
            rng: ChaCha20Rng::seed_from_u64(seed),
            privacy_rng: ChaCha20Rng::from_seed(os_seed()),
            outputs: VecDeque::new(),
            rounds_trained: 0,
            rounds_contributed: 0,
            requests_received: 0,
            terms: PrivacyTerms::none(),
            budget: None,
            rounds_accounted: 0,
            privacy_history: Vec::new(),
            identity: None,
            directory: Arc::new(Directory::new()),
            secure_aborts: Vec::new(),
            publisher: None,
            now_ms: 0,
            consent_expires_at_ms: None,
            round_timeout_ms: DEFAULT_PARTICIPANT_TIMEOUT_MS,
            last_progress_ms: 0,
            statistics_dimension: None,
            statistics_given: false,
        }
    }

    /// The model has a statistics phase whose vectors are `dimension` long (the contract's
    /// `fedpool_data::StatisticsLayout`): without this call the node refuses statistics
    /// requests.
    pub fn with_statistics(mut self, dimension: usize) -> Participant {
        self.statistics_dimension = Some(dimension);
        self
    }

    /// Whether the node has accounted its statistics for the model (it gives them once).
    pub fn statistics_given(&self) -> bool {
        self.statistics_given
    }

    /// The consent lapses at `expires_at_ms` (from the owner's `ConsentGranted`): from then on
    /// the node declines, by its own clock, whatever the publisher asks.
    pub fn with_consent_expiry(mut self, expires_at_ms: Option<u64>) -> Participant {
        self.consent_expires_at_ms = expires_at_ms;
        self
    }

    /// How long the node waits for its publisher's next message in a secure round before it
    /// gives the round up (dropping its round secrets).
    pub fn with_round_timeout(mut self, timeout_ms: u64) -> Participant {
        self.round_timeout_ms = timeout_ms;
        self
    }

    /// Whether the node's consent holds now: granted, not revoked, and not expired by the
    /// latest time its driver told it.
    pub fn consent_active(&self) -> bool {
        self.consented
            && self
                .consent_expires_at_ms
                .is_none_or(|expires_ms| self.now_ms < expires_ms)
    }

    /// When the driver must send the next `Tick`, if it must: the moment the node gives up a
    /// secure round whose publisher has gone silent.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.state {
            State::AwaitingSetup { .. } | State::Aggregating { .. } => {
                Some(self.last_progress_ms.saturating_add(self.round_timeout_ms))
            }
            State::Idle | State::Training { .. } => None,
        }
    }

    /// Holds the node to a model's privacy terms and its owner's own ε cap (from the consent):
    /// it checks every request against the terms and keeps its own accountant, refusing any
    /// round that would take the total past the contract's budget or the cap.
    pub fn with_privacy(
        mut self,
        terms: PrivacyTerms,
        owner_cap_epsilon: Option<f64>,
    ) -> Result<Participant, String> {
        self.budget = if terms.adds_noise() || owner_cap_epsilon.is_some() {
            Some(
                PrivacyLedger::new(
                    terms.epsilon_budget.unwrap_or(f64::MAX),
                    terms.delta,
                    owner_cap_epsilon,
                )
                .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        self.terms = terms;
        Ok(self)
    }

    /// Seeds the stream that draws this node's noise shares, rounding, sampling coin and
    /// secure-aggregation session keys with 32 bytes instead of the OS: for simulations, which
    /// must be reproducible from their seed. A deployed node never calls it.
    pub fn with_privacy_seed(mut self, seed: [u8; 32]) -> Participant {
        self.privacy_rng = ChaCha20Rng::from_seed(seed);
        self
    }

    /// Accepts requests only from `publisher` (the model's publisher, from its ledger
    /// publication); without this call the first sender of each request is trusted.
    pub fn with_publisher(mut self, publisher: NodeId) -> Participant {
        self.publisher = Some(publisher);
        self
    }

    /// Gives the node its ledger identity (which signs its secure-aggregation keys) and the
    /// identities it trusts for other nodes.
    pub fn with_identity(mut self, identity: SigningKey, directory: Arc<Directory>) -> Participant {
        self.identity = Some(identity);
        self.directory = directory;
        self
    }

    /// Every accounting step so far, oldest first: what a node persists to survive a restart.
    pub fn privacy_history(&self) -> &[PrivacyRecord] {
        &self.privacy_history
    }

    /// Replays a persisted [`Participant::privacy_history`] into this node's accountant (call
    /// after [`Participant::with_privacy`]): ε spent and the last round accounted resume where
    /// they were, so the node keeps refusing rounds past its budget after a restart.
    pub fn restore_privacy(mut self, history: &[PrivacyRecord]) -> Result<Participant, String> {
        let Some(budget) = &mut self.budget else {
            return if history.is_empty() {
                Ok(self)
            } else {
                Err("a privacy history was given to a node whose terms spend no privacy".into())
            };
        };
        for record in history {
            budget
                .record_rounds(&record.mechanism, record.rounds)
                .map_err(|e| format!("cannot restore {}: {e}", record.round))?;
            self.rounds_accounted = self.rounds_accounted.max(record.round.0);
            self.statistics_given |= record.round == STATISTICS_ROUND;
        }
        self.privacy_history.extend_from_slice(history);
        Ok(self)
    }

    /// ε this node has accounted for the model so far (0 without noise).
    pub fn epsilon_spent(&self) -> f64 {
        self.budget
            .as_ref()
            .map_or(0.0, PrivacyLedger::epsilon_spent)
    }

    /// This participant's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether it consents to the model.
    pub fn consented(&self) -> bool {
        self.consented
    }

    /// Grants or revokes consent; takes effect at the next request.
    pub fn set_consent(&mut self, consented: bool) {
        self.consented = consented;
    }

    /// Sets when the consent lapses (a new grant may change it); takes effect at once.
    pub fn set_consent_expiry(&mut self, expires_at_ms: Option<u64>) {
        self.consent_expires_at_ms = expires_at_ms;
    }

    /// Replaces the identities the node trusts for other members (new consents on its
    /// ledger); applies to secure rounds set up from now on.
    pub fn set_directory(&mut self, directory: Arc<Directory>) {
        self.directory = directory;
    }

    /// Rounds it has trained in.
    pub fn rounds_trained(&self) -> usize {
        self.rounds_trained
    }

    /// Rounds whose update carried its data: all it trained in, unless it self-selects, when
    /// its own coin decides (the others sent a zero update).
    pub fn rounds_contributed(&self) -> usize {
        self.rounds_contributed
    }

    /// Training requests received (consented or not), for audits of who was asked.
    pub fn requests_received(&self) -> usize {
        self.requests_received
    }

    /// Applies one input. Never blocks; drain [`Participant::poll_output`] afterwards.
    pub fn handle(&mut self, input: ParticipantInput) {
        match input {
            ParticipantInput::Received { from, msg } => self.on_message(from, msg),
            ParticipantInput::Trained { round, outcome } => self.on_trained(round, outcome),
            ParticipantInput::Tick { now_ms } => self.on_tick(now_ms),
        }
    }

    fn on_tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if let Some(deadline) = self.next_deadline_ms()
            && self.now_ms >= deadline
        {
            self.give_up_round(format!(
                "the publisher sent nothing for {} ms; the node gave the round up",
                self.round_timeout_ms
            ));
        }
    }

    /// Drops the round in progress, if any, with its secrets: nothing of it is ever sent later.
    fn give_up_round(&mut self, why: String) {
        if let Some(round) = self.state.round() {
            self.secure_aborts.push((round, why));
        }
        self.state = State::Idle;
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<ParticipantOutput> {
        self.outputs.pop_front()
    }

    fn on_message(&mut self, from: NodeId, msg: Msg) {
        match msg {
            Msg::TrainRequest(request) => self.on_train_request(from, request),
            // Consent ended mid-round (revoked, or expired by the node's clock): the round is
            // given up with its secrets, so no masked input or share of this node's leaves.
            Msg::SecAggSetup(_) | Msg::SecAggToClient { .. }
                if !self.consent_active() && self.state.round().is_some() =>
            {
                self.give_up_round("the node's consent ended during the round".into());
            }
            Msg::SecAggSetup(setup) => self.on_setup(from, &setup),
            Msg::SecAggToClient { round, msg } => self.on_secagg(from, round, msg),
            // These travel to the publisher only; a participant ignores them.
            Msg::Update(_)
            | Msg::Decline { .. }
            | Msg::Ready { .. }
            | Msg::SecAggToServer { .. } => {}
        }
    }

    fn decline(&mut self, to: NodeId, round: RoundId, reason: DeclineReason) {
        self.send(to, Msg::Decline { round, reason });
    }

    /// Accounts the rounds up to and including `round` (every round of the model up to the
    /// node's latest contribution composes, sampled or not: that is what amplification by
    /// sampling assumes), unless that would pass the binding limit. The mechanism comes from
    /// the contract, not from the request.
    ///
    /// The statistics phase is accounted as its own step (round 0, one release, with the
    /// statistics' terms and dimension); training rounds count from 1 after it.
    fn account(
        &mut self,
        round: RoundId,
        privacy: &RoundPrivacy,
        dimension: usize,
    ) -> Result<(), DeclineReason> {
        let statistics = round == STATISTICS_ROUND;
        let terms = if statistics {
            self.terms.for_statistics()
        } else {
            self.terms.clone()
        };
        let mechanism = terms
            .node_mechanism(privacy, dimension)
            .map_err(DeclineReason::PrivacyTerms)?;
        let (Some(budget), Some(mechanism)) = (&self.budget, mechanism) else {
            self.statistics_given |= statistics;
            return Ok(());
        };
        // A publisher that restarts its round numbers cannot make the node forget rounds; a
        // jump forward is composed in one step.
        let (target, skipped) = if statistics {
            (0, 0)
        } else {
            let target = round.0.max(self.rounds_accounted.saturating_add(1));
            (target, u64::from(target - self.rounds_accounted - 1))
        };
        let mut preview = budget.clone();
        preview
            .record_rounds(&mechanism, skipped)
            .map_err(|e| DeclineReason::PrivacyTerms(e.to_string()))?;
        match preview.can_participate_in(&mechanism) {
            Ok(_) => {
                preview
                    .record(&mechanism)
                    .map_err(|e| DeclineReason::PrivacyTerms(e.to_string()))?;
                let epsilon_total = preview.epsilon_spent();
                self.budget = Some(preview);
                self.rounds_accounted = target;
                self.statistics_given |= statistics;
                self.privacy_history.push(PrivacyRecord {
                    round: RoundId(target),
                    rounds: skipped + 1,
                    mechanism,
                    epsilon_total,
                });
                Ok(())
            }
            // Nothing is recorded: rounds after a node's last contribution never touch its
            // data, so they only count if it contributes again.
            Err(e) => Err(DeclineReason::PrivacyBudget(e.to_string())),
        }
    }

    fn on_train_request(&mut self, from: NodeId, request: TrainRequest) {
        self.requests_received += 1;
        if let Some(publisher) = self.publisher
            && publisher != from
        {
            // Only the model's publisher may ask; anyone else could otherwise spend this
            // node's privacy budget or cut its rounds short. A stranger gets no answer at all,
            // not even a decline that would tell it whether this node consents.
            return;
        }
        // Consent is checked here, on the data owner's side, whatever the publisher asks: a node
        // without consent never trains and never sends an update.
        if !self.consent_active() {
            self.decline(from, request.round, DeclineReason::NoConsent);
            return;
        }
        match self.state.round() {
            Some(round) if round == request.round => return,
            // The publisher has moved on (or restarted its numbering): whatever was left of the
            // earlier round is dropped. A publisher runs one round at a time.
            Some(_) => self.state = State::Idle,
            None => {}
        }
        // The statistics phase is round 0 and nothing else is: a request may not relabel one
        // as the other to reach the node's data twice or with the wrong terms.
        let statistics = matches!(request.task, RoundTask::Statistics);
        if statistics != (request.round == STATISTICS_ROUND) {
            self.decline(
                from,
                request.round,
                DeclineReason::PrivacyTerms(format!(
                    "{} cannot ask for {}",
                    request.round,
                    if statistics { "statistics" } else { "training" }
                )),
            );
            return;
        }
        let dimension = if statistics {
            let refusal = match self.statistics_dimension {
                None => Some("this model has no statistics phase".to_string()),
                Some(_) if self.statistics_given => {
                    Some("this node has already given its statistics for this model".into())
                }
                Some(_) if self.rounds_accounted > 0 => Some(
                    "the statistics phase comes before the first round, and training has begun"
                        .into(),
                ),
                Some(_) => None,
            };
            if let Some(why) = refusal {
                self.decline(from, request.round, DeclineReason::PrivacyTerms(why));
                return;
            }
            self.statistics_dimension.unwrap_or(0)
        } else {
            request.global.len()
        };
        if let Err(reason) = self.account(request.round, &request.privacy, dimension) {
            self.decline(from, request.round, reason);
            return;
        }
        // The node's own secret coin, drawn once per accounted round: the publisher cannot
        // choose whose data a round holds, so amplification by sampling is real. The node
        // trains either way, so how fast it answers says nothing about the coin.
        let contributes = match self.terms.self_selection_rate() {
            Some(q) => self.privacy_rng.random_bool(q),
            None => true,
        };
        self.state = State::Training {
            round: request.round,
            publisher: from,
            privacy: Arc::clone(&request.privacy),
            contributes,
            secagg_commitment: request.secagg_commitment,
            statistics,
        };
        let seed = self.rng.random();
        self.outputs.push_back(ParticipantOutput::Train(TrainJob {
            node: self.id,
            round: request.round,
            task: request.task,
            global: request.global,
            local: request.local,
            seed,
        }));
    }

    fn on_trained(&mut self, round: RoundId, outcome: Result<TrainOutcome, String>) {
        if self.state.round() != Some(round) {
            return;
        }
        let State::Training {
            publisher,
            privacy,
            contributes,
            secagg_commitment,
            statistics,
            ..
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(why) => {
                self.decline(publisher, round, DeclineReason::TrainingFailed(why));
                return;
            }
        };
        // Consent can end while the node trains (a revocation, an expiry): what it trained
        // then never leaves it.
        if !self.consent_active() {
            self.decline(publisher, round, DeclineReason::NoConsent);
            return;
        }
        let mut delta = outcome.delta;
        if statistics {
            if Some(delta.len()) != self.statistics_dimension {
                self.decline(
                    publisher,
                    round,
                    DeclineReason::TrainingFailed(format!(
                        "the statistics vector holds {} values, the model's layout {:?}",
                        delta.len(),
                        self.statistics_dimension
                    )),
                );
                return;
            }
            // A bounded statistics vector has norm at most 1: scaled to the clip norm it is
            // as precise as the round's encoding allows, and clipping (below) bounds the rest.
            if privacy.clip_norm > 0.0 {
                let scale = privacy.clip_norm as f32;
                delta.iter_mut().for_each(|d| *d *= scale);
            }
        } else {
            self.rounds_trained += 1;
        }
        if !contributes {
            // The coin said no: a zero update, which is every bit as private as no update and
            // looks the same to everyone but the publisher of a central-DP round.
            delta.iter_mut().for_each(|d| *d = 0.0);
        } else if !statistics {
            self.rounds_contributed += 1;
        }
        let mut within_clip = true;
        if privacy.clip_norm > 0.0 {
            match clip_l2(&mut delta, privacy.clip_norm) {
                Ok(norm) => within_clip = norm <= privacy.clip_norm,
                Err(e) => {
                    self.decline(
                        publisher,
                        round,
                        DeclineReason::TrainingFailed(e.to_string()),
                    );
                    return;
                }
            }
        }
        match privacy.aggregation {
            Aggregation::Plain => self.send(
                publisher,
                Msg::Update(UpdateMsg {
                    round,
                    delta,
                    n_examples: if contributes { outcome.n_examples } else { 0 },
                    train_loss: if contributes { outcome.final_loss } else { 0.0 },
                    within_clip,
                    contributed: contributes,
                }),
            ),
            Aggregation::Secure { .. } => {
                let Some(commitment) = secagg_commitment else {
                    self.decline(
                        publisher,
                        round,
                        DeclineReason::SecureAggregation(
                            "the request commits to no secure-aggregation seed".into(),
                        ),
                    );
                    return;
                };
                let nonce: [u8; 32] = self.privacy_rng.random();
                self.last_progress_ms = self.now_ms;
                self.state = State::AwaitingSetup {
                    round,
                    publisher,
                    update: delta,
                    fitted: contributes.then_some(within_clip),
                    privacy,
                    nonce,
                    commitment,
                };
                self.send(publisher, Msg::Ready { round, nonce });
            }
        }
    }

    fn on_setup(&mut self, from: NodeId, setup: &SecAggSetup) {
        let State::AwaitingSetup {
            round, publisher, ..
        } = &self.state
        else {
            return;
        };
        if *round != setup.round || *publisher != from {
            return;
        }
        let State::AwaitingSetup {
            round,
            publisher,
            update,
            fitted,
            privacy,
            nonce,
            commitment,
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        if let Err(why) = setup.check(self.id, &nonce, &commitment) {
            self.decline(publisher, round, DeclineReason::SecureAggregation(why));
            return;
        }
        match self.start_secure(setup, &update, fitted, &privacy) {
            Ok((client, min_in_sum)) => {
                self.last_progress_ms = self.now_ms;
                self.state = State::Aggregating {
                    round,
                    publisher,
                    client: Box::new(client),
                    min_in_sum,
                };
                self.drain_client();
            }
            Err(why) => self.decline(publisher, round, DeclineReason::SecureAggregation(why)),
        }
    }

    fn start_secure(
        &mut self,
        setup: &SecAggSetup,
        update: &[f32],
        fitted: Option<bool>,
        privacy: &RoundPrivacy,
    ) -> Result<(Client<ChaCha20Rng>, usize), String> {
        let Aggregation::Secure {
            encoding,
            min_survivors,
            count_noise,
        } = &privacy.aggregation
        else {
            return Err("the round is not securely aggregated".into());
        };
        // With groups, this node's sum is its own group's, drawn from the setup as every
        // member draws it: the publisher cannot choose who shares a sum with whom.
        let group_size = self.terms.secure_aggregation_group_size;
        let Some(setup) = setup
            .groups(group_size)
            .into_iter()
            .find(|group| group.index_of(self.id).is_some())
        else {
            return Err("this node is not a member of the round".into());
        };
        let setup = &setup;
        // The noise shares were sized for `encoding.n_clients()` members of whom at least
        // `min_survivors` reach the sum: a sum outside that range would carry less noise than
        // the contract promises (or, with groups, hide this node among fewer than it says).
        let members = setup.members.len();
        let fewest = (*min_survivors).max(group_size.unwrap_or(0));
        if members < fewest || members > encoding.n_clients() {
            return Err(format!(
                "this node's sum has {members} members; the contract needs {fewest} to {}",
                encoding.n_clients()
            ));
        }
        let min_in_sum = *min_survivors;
        let Some(me) = setup.index_of(self.id) else {
            return Err("this node is not a member of the round".into());
        };
        let Some(identity) = &self.identity else {
            return Err("this node has no identity key to sign its session keys".into());
        };
        let vector_len = encoding.padded_dimension() + usize::from(count_noise.is_some());
        let config = setup.round_config(&self.directory, vector_len)?;
        let mut words = ddg::encode(
            update,
            encoding,
            &setup.rotation_seed(),
            &mut self.privacy_rng,
        )
        .map_err(|e| format!("cannot encode the update: {e}"))?;
        if let Some(sigma_b) = count_noise {
            words.push(encode_count_bit(
                fitted,
                *sigma_b,
                *min_survivors,
                &mut self.privacy_rng,
            )?);
        }
        let client_rng = ChaCha20Rng::from_seed(self.privacy_rng.random());
        let client = Client::new(Arc::new(config), me, identity, words, client_rng)
            .map_err(|e| e.to_string())?;
        Ok((client, min_in_sum))
    }

    fn on_secagg(&mut self, from: NodeId, round: RoundId, msg: fedpool_secagg::ToClient) {
        match &mut self.state {
            State::Aggregating {
                round: current,
                publisher,
                client,
                min_in_sum,
            } if *current == round && *publisher == from => {
                // The survivor set names every member whose input is in the sum, and every
                // member signs the same one (in any topology): refuse to unmask a sum that holds
                // too few members' noise.
                if let fedpool_secagg::ToClient::Unmask(request) = &msg
                    && request.survivors.len() < *min_in_sum
                {
                    self.secure_aborts.push((
                        round,
                        format!(
                            "the sum would hold {} members' noise, the contract needs {}",
                            request.survivors.len(),
                            min_in_sum
                        ),
                    ));
                    self.state = State::Idle;
                    return;
                }
                self.last_progress_ms = self.now_ms;
                client.handle(ClientInput::Received(msg));
            }
            _ => return,
        }
        self.drain_client();
    }

    fn drain_client(&mut self) {
        let State::Aggregating {
            round,
            publisher,
            client,
            ..
        } = &mut self.state
        else {
            return;
        };
        let (round, publisher) = (*round, *publisher);
        let mut done = false;
        while let Some(output) = client.poll_output() {
            match output {
                ClientOutput::Send(msg) => self.outputs.push_back(ParticipantOutput::Send {
                    to: publisher,
                    msg: Msg::SecAggToServer { round, msg },
                }),
                ClientOutput::Event(ClientEvent::Finished) => done = true,
                ClientOutput::Event(ClientEvent::Aborted(error)) => {
                    // An honest member stops and sends nothing more: a forged key or a
                    // malformed message ends its part of the round.
                    self.secure_aborts.push((round, error.to_string()));
                    done = true;
                }
            }
        }
        if done {
            self.state = State::Idle;
        }
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        self.outputs.push_back(ParticipantOutput::Send { to, msg });
    }

    /// Secure-aggregation rounds this node aborted, with the reason (for audits and tests).
    pub fn secure_aborts(&self) -> &[(RoundId, String)] {
        &self.secure_aborts
    }
}

/// Adaptive clipping under secure aggregation: a node's "fitted" bit as `(2b − 1)·s` plus its
/// share of the count's discrete Gaussian noise (see `CountNoise`), as one word; a node that
/// does not contribute this round (`None`) encodes 0 plus its noise share.
fn encode_count_bit(
    fitted: Option<bool>,
    sigma_b: f64,
    min_survivors: usize,
    rng: &mut ChaCha20Rng,
) -> Result<u32, String> {
    let count = fedpool_privacy::CountNoise {
        n_clients: min_survivors,
        noise_std: sigma_b,
    };
    let mut value: i64 = match fitted {
        Some(true) => count.scale(),
        Some(false) => -count.scale(),
        None => 0,
    };
    if sigma_b > 0.0 {
        let sampler = ddg::DiscreteGaussian::new(count.local_variance())
            .map_err(|e| format!("cannot sample the count's noise: {e}"))?;
        let noise = sampler.sample(rng).clamp(-(1i128 << 40), 1i128 << 40) as i64;
        value += noise;
    }
    Ok(ddg::reduce_modular(&[value], crate::privacy::SECURE_AGGREGATION_BITS)[0])
}
