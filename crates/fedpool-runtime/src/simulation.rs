//! The in-process simulation driver: thousands of clients on one machine, running the same
//! publisher and participant state machines as the network, deterministic from one seed.
//!
//! Like quinn's test `Pair`, the driver holds every node and a message queue and runs on a
//! virtual clock. Training jobs emitted while messages are delivered are batched and run in
//! parallel across cores (one client per thread, since a small model trains faster on one
//! thread than split across two); results are fed back in node order, so the outcome never
//! depends on thread scheduling.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use fedpool_core::{Contract, Metrics, Network, evaluate_outputs, train_local};
use fedpool_data::{
    Dataset, FeatureScaling, Partition, StatisticsLayout, Table, Targets, partition_rows,
    train_test_split,
};
use fedpool_ledger::Keypair;
use fedpool_protocol::{
    Directory, Driver, Executor, Host, Inbox, Msg, NodeId, Participant, PrivacyRecord,
    PrivacySpend, PrivacyTerms, Publisher, PublisherConfig, RoundEvent, RoundId, RoundTask, Stage,
    TrainJob,
};
use fedpool_strategy::StrategyConfig;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::Error;
use crate::attack::{Attack, Behaviour};
use crate::consent_policy::{OwnerChoice, OwnerPolicy};
use crate::group_valuation::{self, GroupAttribution};
use crate::ledger::{SimulationLedger, round_plan};
use crate::rewards::{PayTerms, Payment, PublisherCheat, Treasury};
use crate::transport::{Envelope, InProcessTransport, Transport};
use crate::valuation::{
    self, RoundUpdate, RoundValuation, ScoreEvidence, ValuationRecipe, payout_details,
};
use fedpool_ledger::VerifyReport;

/// The publisher's address in a simulation; clients are `NodeId(0..n_clients)`.
pub const PUBLISHER: NodeId = NodeId(u32::MAX);

/// What to simulate, beyond the contract.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// Number of clients (ignored by `column:` partitions, which make one client per value).
    pub n_clients: usize,
    /// How the training rows are split across clients.
    pub partition: Partition,
    /// Master seed: data split, partition, initial model, sampling and every client's RNG.
    pub seed: u64,
    /// Overrides the contract's round count.
    pub rounds: Option<usize>,
    /// Overrides the contract's strategy.
    pub strategy: Option<StrategyConfig>,
    /// Misbehaviours, each run by its share of clients (disjoint shares, in this order).
    pub attacks: Vec<Attack>,
    /// Share of clients that consent to the model; the rest refuse and are never asked.
    /// Ignored when `owner_policies` decide.
    pub consent_rate: f64,
    /// Owners' consent policies, client `i` holding `owner_policies[i % len]`: each owner's
    /// policy decides (grant or refuse, on the ledger naming its rule) or leaves the model
    /// waiting. Empty: `consent_rate` decides.
    pub owner_policies: Vec<OwnerPolicy>,
    /// Where the simulation's ledger lives.
    pub ledger: LedgerChoice,
    /// Share of each round's sampled clients that drop out, each at a random stage of the
    /// round (training, or any stage of secure aggregation).
    pub dropout: f64,
    /// Every consenting owner's own cap on ε for this model (recorded in its consent); each
    /// node refuses rounds past it, whatever the publisher asks.
    pub owner_epsilon_cap: Option<f64>,
    /// Value every contributor of every plainly aggregated round (Shapley values of the
    /// round's updates for test accuracy; see [`SimulationReport::values`]).
    pub value_contributions: bool,
    /// With valuation: keep each valued round's evidence (the model before it and every
    /// update) in the report, so the scores can be recomputed or re-estimated.
    pub keep_round_evidence: bool,
    /// A dishonest publisher: its first round payout cheats so (tests of `ledger verify`).
    pub publisher_cheat: Option<PublisherCheat>,
    /// With valuation of a transparent model: also estimate each client's value from the
    /// sums of random groups of at least this many, formed from the updates (what per-group
    /// secure aggregation would reveal), by least squares over rounds
    /// ([`crate::group_valuation`]), to measure the method against the transparent values;
    /// see [`SimulationReport::group_estimates`]. A securely aggregated model is always
    /// valued from the group sums its rounds release.
    pub group_valuation: Option<usize>,
    /// With valuation: the validation metric (accuracy unless set).
    pub valuation_metric: Option<valuation::Utility>,
}

/// Where a simulation records its ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerChoice {
    /// No ledger (pure training speed measurements).
    Off,
    /// A temporary ledger, verified and then deleted.
    Temporary,
    /// A ledger file that is kept (created if missing; events are appended).
    At(PathBuf),
}

impl SimulationOptions {
    /// Options with everyone consenting, a temporary ledger and no overrides.
    pub fn new(n_clients: usize, partition: Partition, seed: u64) -> SimulationOptions {
        SimulationOptions {
            n_clients,
            partition,
            seed,
            rounds: None,
            strategy: None,
            attacks: Vec::new(),
            consent_rate: 1.0,
            owner_policies: Vec::new(),
            ledger: LedgerChoice::Temporary,
            dropout: 0.0,
            owner_epsilon_cap: None,
            value_contributions: false,
            keep_round_evidence: false,
            publisher_cheat: None,
            group_valuation: None,
            valuation_metric: None,
        }
    }
}

/// What the ledger says about a finished simulation.
#[derive(Debug, Clone)]
pub struct LedgerOutcome {
    /// The ledger file (already deleted if temporary).
    pub path: PathBuf,
    /// Whether it was temporary.
    pub temporary: bool,
    /// The model id recorded.
    pub model_id: String,
    /// The auditor's verification of the whole ledger.
    pub verify: VerifyReport,
}

/// One round's outcome, as reported to observers and written to `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    /// Round number, from 1.
    pub round: u32,
    /// Metrics of the new global model on the held-out test set.
    pub metrics: Metrics,
    /// Clients whose updates were aggregated.
    pub n_contributors: usize,
    /// Clients that declined.
    pub n_declined: usize,
    /// Sampled clients that never answered.
    pub n_dropped: usize,
    /// Example-weighted mean local training loss.
    pub train_loss: f64,
    /// Whether the round produced a model (false: the global model is unchanged).
    pub completed: bool,
    /// ε spent by all rounds so far (at the contract's δ), when rounds add noise.
    pub epsilon: Option<f64>,
    /// Sampled clients the simulation made drop out this round.
    pub n_dropouts: usize,
    /// Why the round failed, if it did.
    pub failure: Option<String>,
    /// The round's clip norm (0 for none; it moves with adaptive clipping).
    pub clip_norm: f64,
    /// Wall-clock seconds since the simulation started.
    pub elapsed_secs: f64,
    /// With valuation, the round's scores.
    pub valuation: Option<ValuedRound>,
}

/// A valued round: who contributed and what each was worth.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuedRound {
    /// Contributing clients, in the order of the valuation's scores.
    pub clients: Vec<usize>,
    /// Each contributor's update hash ([`crate::ledger::params_hash`]), in that order.
    pub update_hashes: Vec<String>,
    /// The scores.
    pub valuation: RoundValuation,
    /// What the round paid.
    pub payment: Payment,
}

/// What a valued round's scores are computed from.
#[derive(Debug, Clone)]
pub struct RoundEvidence {
    /// The round.
    pub round: u32,
    /// The global model before the round.
    pub before: Arc<Vec<f32>>,
    /// Each contributor's client index, update and rows, in the valuation's order.
    pub updates: Vec<(usize, Vec<f32>, usize)>,
}

impl RoundEvidence {
    /// The updates as [`crate::valuation::value_round`] takes them.
    pub fn round_updates(&self) -> Vec<RoundUpdate<'_>> {
        self.updates
            .iter()
            .map(|(_, delta, rows)| RoundUpdate { delta, rows: *rows })
            .collect()
    }
}

/// The result of a whole simulation.
#[derive(Debug, Clone)]
pub struct SimulationReport {
    /// One record per round.
    pub rounds: Vec<RoundRecord>,
    /// Final global parameters.
    pub global: Arc<Vec<f32>>,
    /// Metrics of the final model on the test set.
    pub final_metrics: Metrics,
    /// Wall-clock seconds for the training rounds (setup excluded).
    pub seconds: f64,
    /// Clients that refused consent.
    pub n_refused: usize,
    /// Training requests that reached a refusing client (the protocol guarantees 0).
    pub n_requests_to_refusers: usize,
    /// The ledger's verdict, when a ledger was kept.
    pub ledger: Option<LedgerOutcome>,
    /// ε spent in total at `delta`, when rounds add noise.
    pub epsilon: Option<f64>,
    /// δ of `epsilon`.
    pub delta: f64,
    /// Whether updates were securely aggregated.
    pub secure_aggregation: bool,
    /// Clients the simulation made drop out, over all rounds.
    pub n_dropouts: usize,
    /// Distinct clients whose updates went into at least one round.
    pub n_contributing_clients: usize,
    /// Rows of the held-out test set.
    pub n_test_rows: usize,
    /// Plain (unmasked) updates the publisher received: 0 under secure aggregation.
    pub plain_updates_seen: usize,
    /// Masked vectors the publisher received (secure aggregation's stage 3).
    pub masked_inputs_seen: usize,
    /// Why training stopped before the last round, if the privacy budget stopped it.
    pub stopped_by_budget: Option<String>,
    /// The largest ε any client's own accountant recorded for the model (each node accounts
    /// every round it was asked in, independently of the publisher).
    pub max_node_epsilon: f64,
    /// The statistics phase, when the contract standardises with federated statistics and the
    /// phase completed.
    pub statistics: Option<StatisticsOutcome>,
    /// With `value_contributions`: each client's summed Shapley value over the rounds it
    /// contributed to (FedSV, Wang et al. 2020): the utility of a subset of a round's
    /// contributors is the test metric (accuracy, or −RMSE) of the model before the round
    /// plus the subset's terms of the round's row-weighted mean (so the whole round gives the
    /// round's model, and a zero update is worth nothing). Exact up to 12 contributors,
    /// sampled above. Rounds under secure aggregation are not valued (no update is seen).
    pub values: Option<Vec<f64>>,
    /// How rounds were valued (with `value_contributions`).
    pub valuation_recipe: Option<ValuationRecipe>,
    /// With `keep_round_evidence`: each valued round's model before it and its updates.
    pub evidence: Vec<RoundEvidence>,
    /// The set valuation is measured on (the publisher's held-out set).
    pub validation_set: Option<Arc<Dataset>>,
    /// With valuation: what each client earned in total, in the pool's smallest unit.
    pub rewards: Option<Vec<u64>>,
    /// The final payout (what rounds carried and unrun rounds' shares, by total score).
    pub final_payment: Option<Payment>,
    /// With `group_valuation`: each client's value estimated from group sums alone, summed
    /// over the valued rounds it took part in (comparable to `values`).
    pub group_estimates: Option<Vec<f64>>,
}

/// What the statistics phase produced.
#[derive(Debug, Clone)]
pub struct StatisticsOutcome {
    /// The scaling every node and the test set standardised with.
    pub scaling: Arc<FeatureScaling>,
    /// Nodes whose statistics were aggregated.
    pub n_contributors: usize,
    /// ε the phase spent, when noised.
    pub epsilon: Option<f64>,
}

/// What a simulation needs to run the statistics phase and encode with its result: the rows
/// themselves, since every node and the test set are encoded again with the federated scaling.
struct FederatedStatistics {
    layout: StatisticsLayout,
    table: Table,
    client_rows: Vec<Vec<usize>>,
    test_rows: Vec<usize>,
    outcome: Option<StatisticsOutcome>,
}

/// Every random choice a simulation makes before its first round, drawn in one fixed order
/// from its seed: which rows are held out and who holds the rest, who attacks and who
/// consents, the initial model, and each node's seeds. `fedpool cluster up` draws the same plan
/// so that a network of processes can replay a simulation exactly.
#[derive(Debug, Clone)]
pub struct SimulationPlan {
    /// Held-out rows (the publisher's test set).
    pub test_rows: Vec<usize>,
    /// Each client's rows, in the order it trains on them.
    pub client_rows: Vec<Vec<usize>>,
    /// A random order of the clients (attackers are the first ones).
    pub client_order: Vec<usize>,
    /// Each client's consent decision.
    pub decisions: Vec<bool>,
    /// The initial global parameters.
    pub initial: Vec<f32>,
    /// Each client's training seed (its privacy stream is [`simulated_privacy_seed`] of it).
    pub client_seeds: Vec<u64>,
    /// The publisher's sampling seed (and, through [`simulated_privacy_seed`], its privacy
    /// stream).
    pub publisher_seed: u64,
}

impl SimulationPlan {
    /// Draws the plan of `options` over `table`.
    pub fn draw(
        contract: &Contract,
        table: &Table,
        options: &SimulationOptions,
    ) -> Result<SimulationPlan, Error> {
        let mut rng = ChaCha20Rng::seed_from_u64(options.seed);
        let (_, test_rows, client_rows) = {
            let (train_rows, test_rows) =
                train_test_split(table, contract.training.test_fraction, &mut rng)?;
            let client_rows = partition_rows(
                &options.partition,
                &train_rows,
                table,
                options.n_clients,
                &mut rng,
            )?;
            (train_rows, test_rows, client_rows)
        };
        let n_clients = client_rows.len();
        if n_clients == 0 {
            return Err(Error::Setup("the partition produced no clients".into()));
        }
        let mut client_order: Vec<usize> = (0..n_clients).collect();
        client_order.shuffle(&mut rng);
        if !(0.0..=1.0).contains(&options.consent_rate) {
            return Err(Error::Setup(format!(
                "consent rate must be in [0, 1], got {}",
                options.consent_rate
            )));
        }
        let decisions: Vec<bool> = (0..n_clients)
            .map(|_| rng.random::<f64>() < options.consent_rate)
            .collect();
        let network = Network::new(
            &contract.model,
            contract.n_features(),
            contract.schema.n_outputs(),
        )?;
        let initial = network.init_params(&mut rng);
        let client_seeds: Vec<u64> = (0..n_clients).map(|_| rng.random()).collect();
        let publisher_seed: u64 = rng.random();
        Ok(SimulationPlan {
            test_rows,
            client_rows,
            client_order,
            decisions,
            initial,
            client_seeds,
            publisher_seed,
        })
    }
}

/// A prepared simulation: nodes, their data, the publisher and the transport.
pub struct Simulation<T: Transport = InProcessTransport> {
    /// Each owner's answer to the model.
    choices: Vec<OwnerChoice>,
    network: Network,
    /// The publisher and every participant, driven by the protocol's one driver.
    driver: Driver,
    /// The driver's outputs land here: the in-process queue, with the simulation's extras.
    host: SimulationHost<T>,
    n_clients: usize,
    datasets: Vec<Dataset>,
    test_set: Dataset,
    clock_ms: u64,
    initial_metrics: Metrics,
    privacy: PrivacyTerms,
    stopped_by_budget: Option<String>,
    /// Per participant, whether (and how) it attacks: applied to what it trained, around the
    /// participant.
    behaviours: Vec<Behaviour>,
    /// The statistics phase's inputs and result, when the contract has one.
    statistics: Option<FederatedStatistics>,
    /// Per client, the labels a noisy-label client replaced: (row position, label).
    label_noise: Vec<Vec<(usize, u32)>>,
    /// The global model before the current round (what valuation adds subsets' updates to).
    previous_global: Arc<Vec<f32>>,
    /// With valuation: each client's summed value so far.
    values: Option<Vec<f64>>,
    /// With valuation: how rounds are valued.
    recipe: Option<ValuationRecipe>,
    /// The round just valued, for its record.
    last_valuation: Option<ValuedRound>,
    keep_round_evidence: bool,
    evidence: Vec<RoundEvidence>,
    /// With valuation: the pool as it is paid.
    treasury: Option<Treasury>,
    /// With group valuation: the minimum group and the equations gathered.
    groups: Option<(usize, u64, GroupAttribution)>,
    /// Clients whose updates went into a round.
    contributed: BTreeSet<NodeId>,
}

/// The simulation's side of the driver: the transport, and what a simulation adds around the
/// protocol without touching it (dropouts injected at random stages, counters of what the
/// publisher saw, each node's privacy records onto the simulated ledger).
struct SimulationHost<T> {
    transport: T,
    ledger: Option<SimulationLedger>,
    dropout: f64,
    dropout_rng: ChaCha20Rng,
    secure_aggregation: bool,
    /// This round's planned dropouts: the stage from which each node's messages are lost.
    drop_plan: BTreeMap<NodeId, Stage>,
    /// Nodes gone for the rest of the round.
    gone: BTreeSet<NodeId>,
    n_dropouts: usize,
    plain_updates_seen: usize,
    masked_inputs_seen: usize,
    /// Training jobs asked for, run in parallel once no message is in flight.
    jobs: Vec<TrainJob>,
    /// With valuation: the plain updates the publisher received this round.
    round_updates: Option<BTreeMap<NodeId, (Vec<f32>, usize)>>,
    /// The publisher's events, handled by the simulation after each driver call.
    events: Vec<RoundEvent>,
}

impl<T: Transport> Host for SimulationHost<T> {
    type Error = Error;

    /// Sends a message unless its sender has dropped out by then.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) -> Result<(), Error> {
        if from != PUBLISHER {
            if let Some(stage) = msg.participant_stage()
                && self.drop_plan.get(&from).is_some_and(|drop| *drop <= stage)
            {
                self.gone.insert(from);
            }
            if self.gone.contains(&from) {
                return Ok(());
            }
            if let Msg::Update(update) = &msg {
                self.plain_updates_seen += 1;
                if let Some(updates) = &mut self.round_updates {
                    updates.insert(from, (update.delta.clone(), update.n_examples));
                }
            } else if msg.participant_stage() == Some(Stage::MaskedInput) {
                self.masked_inputs_seen += 1;
            }
        }
        self.transport.send(Envelope { from, to, msg });
        Ok(())
    }

    fn train(&mut self, job: TrainJob) -> Result<(), Error> {
        self.jobs.push(job);
        Ok(())
    }

    fn event(&mut self, event: RoundEvent) -> Result<(), Error> {
        if let RoundEvent::Started { sampled, .. } = &event {
            self.plan_dropouts(sampled);
        }
        self.events.push(event);
        Ok(())
    }

    fn privacy_accounted(&mut self, node: NodeId, records: &[PrivacyRecord]) -> Result<(), Error> {
        if let Some(ledger) = &mut self.ledger {
            for record in records {
                ledger.note_privacy(node.0 as usize, *record);
            }
        }
        Ok(())
    }
}

impl<T> SimulationHost<T> {
    /// Picks this round's dropouts: each sampled node drops with probability `dropout`, at a
    /// uniformly random stage of the round.
    fn plan_dropouts(&mut self, sampled: &[NodeId]) {
        self.drop_plan.clear();
        self.gone.clear();
        if self.dropout <= 0.0 {
            return;
        }
        let stages: &[Stage] = if self.secure_aggregation {
            &Stage::SECURE
        } else {
            &[Stage::Training]
        };
        for &node in sampled {
            if self.dropout_rng.random::<f64>() < self.dropout {
                let stage = stages[self.dropout_rng.random_range(0..stages.len())];
                self.drop_plan.insert(node, stage);
            }
        }
        self.n_dropouts += self.drop_plan.len();
    }
}

/// Participants' inboxes in parallel: secure aggregation's key agreements and signature checks
/// dominate a secure round.
struct Parallel;

impl Executor for Parallel {
    fn handle_inboxes(&self, inboxes: &mut [Inbox<'_>]) {
        inboxes.par_iter_mut().for_each(Inbox::handle_all);
    }
}

impl Simulation<InProcessTransport> {
    /// Splits `table` into a test set and per-client training sets, builds the model from the
    /// contract, and sets up every node.
    pub fn prepare(
        contract: &Contract,
        table: &Table,
        options: &SimulationOptions,
    ) -> Result<Simulation<InProcessTransport>, Error> {
        let mut plan = SimulationPlan::draw(contract, table, options)?;
        let n_clients = plan.client_rows.len();
        // Each attack takes its share of clients in the random order, one after another; the
        // honest ones follow.
        let shares: Vec<usize> = options
            .attacks
            .iter()
            .map(|a| (a.fraction() * n_clients as f64).round() as usize)
            .collect();
        let n_attackers: usize = shares.iter().sum();
        if n_attackers > n_clients {
            return Err(Error::Setup(format!(
                "the attacks take {n_attackers} of {n_clients} clients; their shares must add up to at most 1"
            )));
        }
        let client_order = plan.client_order.clone();
        let mut behaviours = vec![Behaviour::Honest; n_clients];
        let mut start = 0;
        for (attack, share) in options.attacks.iter().copied().zip(shares) {
            let attackers = &client_order[start..start + share];
            start += share;
            for (k, &client_idx) in attackers.iter().enumerate() {
                behaviours[client_idx] = match attack {
                    Attack::LabelFlip { .. } => Behaviour::LabelFlip,
                    Attack::Noise { std, .. } => Behaviour::Noise { std },
                    Attack::Scale { factor, .. } => Behaviour::Scale { factor },
                    Attack::FreeRider { std, .. } => Behaviour::FreeRider { std },
                    Attack::NoisyLabels { share, .. } => Behaviour::NoisyLabels { share },
                    Attack::Duplicate { .. } => {
                        // A copy of an honest client's rows (the honest ones follow the
                        // attackers in the random order).
                        let honest = &client_order[n_attackers..];
                        if honest.is_empty() {
                            return Err(Error::Setup(
                                "duplicate:1 leaves no honest client to copy".into(),
                            ));
                        }
                        let of = honest[k % honest.len()];
                        plan.client_rows[client_idx] = plan.client_rows[of].clone();
                        Behaviour::Duplicate { of }
                    }
                };
            }
        }
        // Noisy labels, drawn once from the seed: (row position, label) per client, applied
        // after every encoding of its rows.
        let label_noise: Vec<Vec<(usize, u32)>> = match table.class_labels() {
            Some(_) => behaviours
                .iter()
                .enumerate()
                .map(|(idx, behaviour)| match *behaviour {
                    Behaviour::NoisyLabels { share } => {
                        let mut rng =
                            ChaCha20Rng::seed_from_u64(options.seed ^ (0x6e6f_6973 + idx as u64));
                        let n_classes = contract.schema.n_outputs() as u32;
                        let mut noise = Vec::new();
                        for position in 0..plan.client_rows[idx].len() {
                            if rng.random::<f32>() < share {
                                noise.push((position, rng.random_range(0..n_classes)));
                            }
                        }
                        noise
                    }
                    _ => Vec::new(),
                })
                .collect(),
            None => vec![Vec::new(); n_clients],
        };
        // Each client standardises with statistics of its own rows, as a real node would.
        let mut datasets: Vec<Dataset> = plan
            .client_rows
            .iter()
            .map(|rows| table.encode(rows))
            .collect();
        for (idx, data) in datasets.iter_mut().enumerate() {
            corrupt_labels(&behaviours[idx], &label_noise[idx], data);
        }
        let test_set = table.encode(&plan.test_rows);

        let statistics = StatisticsLayout::of(&contract.schema).map(|layout| FederatedStatistics {
            layout,
            table: table.clone(),
            client_rows: plan.client_rows.clone(),
            test_rows: plan.test_rows.clone(),
            outcome: None,
        });
        let statistics_dimension = statistics.as_ref().map(|s| s.layout.dimension());
        let start_ms = wall_clock_ms();
        let publisher_did = crate::ledger::simulated_publisher(options.seed, start_ms).did();
        let choices: Vec<OwnerChoice> = if options.owner_policies.is_empty() {
            plan.decisions
                .iter()
                .map(|&consents| {
                    if consents {
                        OwnerChoice::granted_by_hand()
                    } else {
                        OwnerChoice::Waits
                    }
                })
                .collect()
        } else {
            let policies = &options.owner_policies;
            (0..plan.decisions.len())
                .map(|idx| policies[idx % policies.len()].decide(contract, &publisher_did))
                .collect()
        };
        let decisions: Vec<bool> = choices.iter().map(OwnerChoice::consents).collect();
        let network = Network::new(
            &contract.model,
            contract.n_features(),
            contract.schema.n_outputs(),
        )?;
        let initial = plan.initial.clone();
        if !(0.0..1.0).contains(&options.dropout) {
            return Err(Error::Setup(format!(
                "dropout must be in [0, 1), got {}",
                options.dropout
            )));
        }
        let strategy_config = options
            .strategy
            .clone()
            .unwrap_or_else(|| contract.training.strategy.clone());
        let privacy = PrivacyTerms::from_contract(contract);
        if privacy.is_active() && !strategy_config.works_on_the_mean() {
            return Err(Error::Setup(format!(
                "{} needs every update, but this contract clips, noises or securely aggregates them",
                strategy_config.name()
            )));
        }
        let ledger = match &options.ledger {
            LedgerChoice::Off => None,
            choice => {
                let fingerprints: Vec<String> = datasets.iter().map(dataset_fingerprint).collect();
                let path = match choice {
                    LedgerChoice::At(path) => Some(path.as_path()),
                    _ => None,
                };
                let mut ledger = SimulationLedger::record_setup(
                    path,
                    contract,
                    &choices,
                    &fingerprints,
                    options.owner_epsilon_cap,
                    options.seed,
                    start_ms,
                )?;
                if let Some(cheat) = options.publisher_cheat {
                    ledger.cheat_on_next_payout(cheat);
                }
                Some(ledger)
            }
        };
        // Secure aggregation signs with the nodes' ledger identities; without a ledger, with
        // identities derived from the seed the same way.
        let keys: Vec<Keypair> = match &ledger {
            Some(ledger) => ledger.client_keys().to_vec(),
            None => (0..n_clients)
                .map(|idx| Keypair::insecure_from_seed(options.seed.rotate_left(13) ^ idx as u64))
                .collect(),
        };
        // Who is asked, and whose keys sign secure-aggregation messages: with a ledger, the
        // consents active on it (as a deployed publisher reads them); without one, the
        // in-memory decisions.
        let (roster, directory): (Vec<NodeId>, Directory) = match &ledger {
            Some(ledger) => ledger
                .roster()?
                .into_iter()
                .map(|(idx, key)| (NodeId(idx as u32), (NodeId(idx as u32), key)))
                .unzip(),
            None => decisions
                .iter()
                .zip(&keys)
                .enumerate()
                .filter(|(_, (consented, _))| **consented)
                .map(|(idx, (_, key))| {
                    let node = NodeId(idx as u32);
                    (node, (node, key.signing_key().verifying_key()))
                })
                .unzip(),
        };
        let directory = Arc::new(directory);
        let mut driver = Driver::new();
        let participants: Vec<Participant> = decisions
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(idx, (&consented, key))| {
                let seed = plan.client_seeds[idx];
                // A simulation is reproducible from its seed, privacy randomness included; a
                // deployed node leaves it to the OS (the participant's default).
                let participant = Participant::new(NodeId(idx as u32), consented, seed)
                    .with_privacy_seed(simulated_privacy_seed(seed));
                let participant = match statistics_dimension {
                    Some(dimension) => participant.with_statistics(dimension),
                    None => participant,
                };
                participant
                    .with_privacy(privacy.clone(), options.owner_epsilon_cap)
                    .map(|p| {
                        p.with_identity(key.signing_key().clone(), Arc::clone(&directory))
                            .with_publisher(PUBLISHER)
                    })
                    .map_err(Error::Setup)
            })
            .collect::<Result<_, _>>()?;
        let publisher_seed = plan.publisher_seed;
        let publisher = Publisher::new(
            PublisherConfig {
                rounds: options.rounds.unwrap_or(contract.training.rounds),
                sampling: contract.training.sampling.clone(),
                local: contract.training.local.clone(),
                round_timeout_ms: 60_000,
                seed: publisher_seed,
                privacy: privacy.clone(),
                directory,
                statistics: statistics.as_ref().map(|s| s.layout.clone()),
            },
            strategy_config.build(),
            initial.clone(),
            roster,
        )
        .with_privacy_seed(simulated_privacy_seed(publisher_seed));
        participants
            .into_iter()
            .for_each(|p| driver.add_participant(p));
        let driver = driver.with_publisher(PUBLISHER, publisher);
        let initial_metrics = evaluate(&network, &initial, &test_set)?;
        Ok(Simulation {
            choices,
            behaviours,
            network,
            driver,
            host: SimulationHost {
                transport: InProcessTransport::new(),
                ledger,
                dropout: options.dropout,
                dropout_rng: ChaCha20Rng::seed_from_u64(options.seed ^ 0x0d0d_0d0d),
                secure_aggregation: privacy.secure_aggregation,
                drop_plan: BTreeMap::new(),
                gone: BTreeSet::new(),
                n_dropouts: 0,
                plain_updates_seen: 0,
                masked_inputs_seen: 0,
                jobs: Vec::new(),
                events: Vec::new(),
                round_updates: options.value_contributions.then(BTreeMap::new),
            },
            n_clients,
            datasets,
            test_set,
            clock_ms: 0,
            initial_metrics,
            privacy,
            stopped_by_budget: None,
            statistics,
            label_noise,
            previous_global: Arc::new(initial),
            values: options.value_contributions.then(|| vec![0.0; n_clients]),
            recipe: options.value_contributions.then(|| {
                let method = valuation::Method::of(contract);
                // The validation hash is filled in at the first valued round, once the
                // statistics phase has fixed how the held-out set is encoded.
                let mut recipe = ValuationRecipe::new(method, options.seed, String::new());
                recipe.metric = options.valuation_metric.unwrap_or_default();
                recipe
            }),
            last_valuation: None,
            keep_round_evidence: options.keep_round_evidence,
            evidence: Vec::new(),
            treasury: options
                .value_contributions
                .then(|| Treasury::new(PayTerms::of(contract), n_clients)),
            groups: options
                .group_valuation
                .or(contract
                    .privacy
                    .secure_aggregation
                    .then_some(fedpool_core::contract::MIN_SECURE_GROUP))
                .filter(|_| options.value_contributions)
                .map(|min| (min, options.seed, GroupAttribution::new(n_clients))),
            contributed: BTreeSet::new(),
        })
    }

    /// Messages delivered so far.
    pub fn n_messages(&self) -> u64 {
        self.host.transport.n_delivered()
    }
}

impl<T: Transport> Simulation<T> {
    /// Number of clients.
    pub fn n_clients(&self) -> usize {
        self.n_clients
    }

    /// Each client's number of training rows.
    pub fn client_sizes(&self) -> Vec<usize> {
        self.datasets.iter().map(Dataset::n_rows).collect()
    }

    /// The encoded training rows of one client.
    pub fn client_data(&self, client_idx: usize) -> Option<&Dataset> {
        self.datasets.get(client_idx)
    }

    /// Rows in the held-out test set.
    pub fn n_test_rows(&self) -> usize {
        self.test_set.n_rows()
    }

    /// Length of the flat parameter vector.
    pub fn n_params(&self) -> usize {
        self.network.n_params()
    }

    /// Each owner's answer to the model, in client order (by hand, or its policy's rule).
    pub fn owner_choices(&self) -> &[OwnerChoice] {
        &self.choices
    }

    /// Clients that consented.
    pub fn n_consenting(&self) -> usize {
        self.driver.participants().filter(|p| p.consented()).count()
    }

    /// The model's network (to evaluate or value parameters with).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// How each client behaves, in client order.
    pub fn behaviours(&self) -> &[Behaviour] {
        &self.behaviours
    }

    /// Clients that are not honest.
    pub fn n_attackers(&self) -> usize {
        self.behaviours
            .iter()
            .filter(|b| **b != Behaviour::Honest)
            .count()
    }

    /// Metrics of the initial model, before any round.
    pub fn initial_metrics(&self) -> Metrics {
        self.initial_metrics
    }

    /// Runs every round, calling `on_round` after each.
    pub fn run(
        &mut self,
        mut on_round: impl FnMut(&RoundRecord),
    ) -> Result<SimulationReport, Error> {
        let started = Instant::now();
        let mut records = Vec::new();
        self.driver.tick(self.clock_ms, &mut self.host)?;
        loop {
            if let Some(finished) = self.take_events(&mut records, &started, &mut on_round)? {
                let final_metrics = evaluate(&self.network, &finished, &self.test_set)?;
                let seconds = started.elapsed().as_secs_f64();
                let final_payment = match &mut self.treasury {
                    // Under secure aggregation the card promises no payout by contribution:
                    // the group estimates are reported, nothing is paid.
                    Some(_) if self.privacy.secure_aggregation => None,
                    Some(treasury) => treasury.pay_final()?,
                    None => None,
                };
                let ledger = match self.host.ledger.take() {
                    Some(mut ledger) => {
                        if let (Some(payment), Some(recipe)) = (&final_payment, &self.recipe) {
                            ledger.pay(payment, "total-score", &payout_details(recipe, &[]))?;
                        }
                        let n_rounds = records.iter().filter(|r| r.completed).count() as u32;
                        ledger.release(&finished, n_rounds, &final_metrics)?;
                        let verify = match &self.recipe {
                            Some(recipe) if self.keep_round_evidence => {
                                ledger.verify_with(&ScoreEvidence {
                                    network: &self.network,
                                    validation: &self.test_set,
                                    recipe,
                                    rounds: &self.evidence,
                                })?
                            }
                            _ => ledger.verify()?,
                        };
                        Some(LedgerOutcome {
                            path: ledger.path().to_path_buf(),
                            temporary: ledger.is_temporary(),
                            model_id: ledger.model_id().to_string(),
                            verify,
                        })
                    }
                    None => None,
                };
                let refusers = self.driver.participants().filter(|p| !p.consented());
                return Ok(SimulationReport {
                    rounds: records,
                    global: finished,
                    final_metrics,
                    seconds,
                    n_refused: refusers.clone().count(),
                    n_requests_to_refusers: refusers.map(Participant::requests_received).sum(),
                    ledger,
                    epsilon: self.epsilon(),
                    delta: self.privacy.delta,
                    secure_aggregation: self.privacy.secure_aggregation,
                    n_dropouts: self.host.n_dropouts,
                    n_contributing_clients: self.contributed.len(),
                    n_test_rows: self.test_set.n_rows(),
                    plain_updates_seen: self.host.plain_updates_seen,
                    masked_inputs_seen: self.host.masked_inputs_seen,
                    stopped_by_budget: self.stopped_by_budget.clone(),
                    max_node_epsilon: self
                        .driver
                        .participants()
                        .map(Participant::epsilon_spent)
                        .fold(0.0, f64::max),
                    statistics: self.statistics.as_ref().and_then(|s| s.outcome.clone()),
                    // Under secure aggregation, the group estimates (nothing is paid by them).
                    values: match &self.groups {
                        Some((_, _, attribution)) if self.privacy.secure_aggregation => {
                            self.values.as_ref().map(|_| attribution.totals())
                        }
                        _ => self.values.clone(),
                    },
                    valuation_recipe: self.recipe.clone(),
                    evidence: std::mem::take(&mut self.evidence),
                    validation_set: self
                        .recipe
                        .is_some()
                        .then(|| Arc::new(self.test_set.clone())),
                    rewards: self.treasury.as_ref().map(|t| t.earned().to_vec()),
                    final_payment,
                    group_estimates: self.groups.as_ref().map(|(_, _, g)| g.totals()),
                });
            }
            // Write-ahead: what nodes accounted is on the ledger before anything they sent
            // after accounting is delivered.
            if let Some(ledger) = &mut self.host.ledger {
                ledger.flush_privacy()?;
            }
            let gone = &self.host.gone;
            let batch: Vec<(NodeId, NodeId, Msg)> =
                std::iter::from_fn(|| self.host.transport.poll_recv())
                    .filter(|e| !gone.contains(&e.to))
                    .map(|e| (e.from, e.to, e.msg))
                    .collect();
            if !batch.is_empty() {
                self.driver.deliver(batch, &Parallel, &mut self.host)?;
                continue;
            }
            if !self.host.jobs.is_empty() {
                let jobs = std::mem::take(&mut self.host.jobs);
                let results = self.run_jobs(&jobs);
                self.driver.trained(results, &mut self.host)?;
                continue;
            }
            // Nothing in flight: jump the virtual clock to the next deadline, the publisher's or
            // a participant's; every node hears the time (consent expiry is checked by it).
            if self
                .driver
                .publisher()
                .and_then(Publisher::next_deadline_ms)
                .is_none()
            {
                return Err(Error::Setup(
                    "the publisher stopped without finishing; this is a bug".into(),
                ));
            }
            if let Some(deadline) = self.driver.next_deadline_ms() {
                self.clock_ms = self.clock_ms.max(deadline);
            }
            self.driver.tick(self.clock_ms, &mut self.host)?;
        }
    }

    /// Handles the publisher's events; returns the final model once the publisher reports it
    /// is finished.
    fn take_events(
        &mut self,
        records: &mut Vec<RoundRecord>,
        started: &Instant,
        on_round: &mut impl FnMut(&RoundRecord),
    ) -> Result<Option<Arc<Vec<f32>>>, Error> {
        let mut finished = None;
        for event in std::mem::take(&mut self.host.events) {
            match event {
                RoundEvent::Started { .. } => {
                    if let Some(updates) = &mut self.host.round_updates {
                        updates.clear();
                    }
                }
                RoundEvent::StatisticsCompleted(summary) => {
                    self.standardise_with(&summary.scaling)?;
                    if let Some(ledger) = &mut self.host.ledger {
                        let contributors: Vec<usize> =
                            summary.contributors.iter().map(|n| n.0 as usize).collect();
                        ledger.commit_statistics(&contributors, &summary)?;
                    }
                    if let Some(statistics) = &mut self.statistics {
                        statistics.outcome = Some(StatisticsOutcome {
                            scaling: summary.scaling,
                            n_contributors: summary.contributors.len(),
                            epsilon: summary.privacy.map(|p| p.epsilon_round),
                        });
                    }
                }
                RoundEvent::BudgetExhausted {
                    round,
                    epsilon_spent,
                    epsilon_next,
                    epsilon_budget,
                } => {
                    self.stopped_by_budget = Some(format!(
                        "{round} would bring ε from {epsilon_spent:.3} to {epsilon_next:.3}, past the budget of {epsilon_budget}"
                    ));
                }
                RoundEvent::Completed(summary) => {
                    if summary.secure_aggregation {
                        self.value_round_by_groups(summary.round, &summary.group_sums)?;
                    } else {
                        self.value_round(summary.round, &summary.contributors)?;
                    }
                    self.previous_global = Arc::clone(&summary.global);
                    let metrics = evaluate(&self.network, &summary.global, &self.test_set)?;
                    if let Some(ledger) = &mut self.host.ledger {
                        let contributors: Vec<usize> =
                            summary.contributors.iter().map(|n| n.0 as usize).collect();
                        let (epsilon_round, epsilon_total, delta) =
                            PrivacySpend::ledger_figures(summary.privacy);
                        ledger.commit_round(
                            summary.round.0,
                            &contributors,
                            &summary.global,
                            epsilon_round,
                            epsilon_total,
                            delta,
                            round_plan(summary.asked, summary.eligible, summary.clip_norm),
                            &metrics,
                        )?;
                        // A round's payout follows its commitment, which names its participants.
                        if let (Some(valued), Some(recipe)) = (&self.last_valuation, &self.recipe) {
                            ledger.pay(
                                &valued.payment,
                                &valued.valuation.method,
                                &payout_details(recipe, &valued.update_hashes),
                            )?;
                        }
                    }
                    self.contributed
                        .extend(summary.contributors.iter().copied());
                    let record = RoundRecord {
                        round: summary.round.0,
                        metrics,
                        n_contributors: summary.contributors.len(),
                        n_declined: summary.declined.len(),
                        n_dropped: summary.dropped.len(),
                        train_loss: summary.mean_train_loss,
                        completed: true,
                        elapsed_secs: started.elapsed().as_secs_f64(),
                        epsilon: self.epsilon(),
                        n_dropouts: self.host.drop_plan.len(),
                        failure: None,
                        clip_norm: summary.clip_norm,
                        valuation: self.last_valuation.take(),
                    };
                    on_round(&record);
                    records.push(record);
                }
                RoundEvent::Failed { round, reason } => {
                    // Failed rounds are part of the protocol (dropouts, budgets), reported in
                    // the round records; the log keeps the detail.
                    tracing::info!(%round, %reason, "round failed");
                    let metrics = records
                        .last()
                        .map_or(self.initial_metrics, |r: &RoundRecord| r.metrics);
                    let record = RoundRecord {
                        round: round.0,
                        metrics,
                        n_contributors: 0,
                        n_declined: 0,
                        n_dropped: 0,
                        train_loss: f64::NAN,
                        completed: false,
                        elapsed_secs: started.elapsed().as_secs_f64(),
                        epsilon: self.epsilon(),
                        n_dropouts: self.host.drop_plan.len(),
                        failure: Some(reason),
                        clip_norm: self.driver.publisher().map_or(0.0, Publisher::clip_norm),
                        valuation: None,
                    };
                    on_round(&record);
                    records.push(record);
                }
                RoundEvent::Finished { global } => finished = Some(global),
            }
        }
        Ok(finished)
    }

    /// Values this round's contributors (with valuation on): adds each one's score to its
    /// total and keeps the round's valuation for its record.
    fn value_round(&mut self, round: RoundId, contributors: &[NodeId]) -> Result<(), Error> {
        let (Some(values), Some(updates), Some(recipe)) =
            (&mut self.values, &self.host.round_updates, &mut self.recipe)
        else {
            return Ok(());
        };
        if recipe.validation_hash.is_empty() {
            recipe.validation_hash = valuation::validation_hash(&self.test_set);
        }
        let (members, round_updates) = contributed_updates(updates, contributors);
        let scored = valuation::value_round(
            &self.network,
            &self.previous_global,
            &round_updates,
            &self.test_set,
            recipe,
            u64::from(round.0),
        )?;
        for ((client, _), score) in members.iter().zip(&scored.scores) {
            values[*client] += score;
        }
        if self.keep_round_evidence {
            self.evidence.push(RoundEvidence {
                round: round.0,
                before: Arc::clone(&self.previous_global),
                updates: members
                    .iter()
                    .map(|(client, (delta, rows))| (*client, delta.clone(), *rows))
                    .collect(),
            });
        }
        let clients: Vec<usize> = members.iter().map(|(client, _)| *client).collect();
        if let Some(groups) = &mut self.groups {
            attribute_group_sums(
                groups,
                &self.network,
                &self.previous_global,
                &self.test_set,
                recipe,
                round,
                &clients,
                &round_updates,
            )?;
        }
        let update_hashes: Vec<String> = members
            .iter()
            .map(|(_, (delta, _))| crate::ledger::params_hash(delta))
            .collect();
        let Some(treasury) = &mut self.treasury else {
            return Ok(());
        };
        let payment = treasury.pay_round(round.0, &clients, &scored.scores)?;
        self.last_valuation = Some(ValuedRound {
            clients,
            update_hashes,
            valuation: scored,
            payment,
        });
        Ok(())
    }

    /// Values a securely aggregated round from the sums its groups released (the publisher
    /// never sees an individual update) and adds the round's equations to the least-squares
    /// attribution. The card of a secure contract promises no payout by contribution, so the
    /// estimates are reported and nothing is paid. One sum per round (a contract without
    /// groups) says nothing about who gave what and is not valued.
    fn value_round_by_groups(
        &mut self,
        round: RoundId,
        group_sums: &[fedpool_protocol::GroupSum],
    ) -> Result<(), Error> {
        let (Some((_, _, attribution)), Some(recipe)) = (&mut self.groups, &mut self.recipe) else {
            return Ok(());
        };
        if group_sums.len() < 2 {
            return Ok(());
        }
        if recipe.validation_hash.is_empty() {
            recipe.validation_hash = valuation::validation_hash(&self.test_set);
        }
        // The round's model weighs every member alike (the sum over the expected count): a
        // group enters as its mean, weighted by its size.
        let means: Vec<(Vec<f32>, usize)> = group_sums
            .iter()
            .map(|group| {
                let size = group.members.len().max(1);
                let mean = group.sum.iter().map(|x| x / size as f32).collect();
                (mean, size)
            })
            .collect();
        let values = group_valuation::value_group_means(
            &self.network,
            &self.previous_global,
            &means,
            &self.test_set,
            recipe,
            u64::from(round.0),
        )?;
        let by_client: Vec<Vec<usize>> = group_sums
            .iter()
            .map(|g| g.members.iter().map(|n| n.0 as usize).collect())
            .collect();
        attribution.add_round(&by_client, &values);
        Ok(())
    }

    /// Encodes every client's rows and the test set again with the federated scaling (an
    /// attacker that flips labels flips them again).
    fn standardise_with(&mut self, scaling: &FeatureScaling) -> Result<(), Error> {
        let Some(statistics) = &self.statistics else {
            return Err(Error::Setup(
                "federated statistics arrived for a contract without them; this is a bug".into(),
            ));
        };
        let encode = |rows: &[usize]| {
            statistics
                .table
                .encode_scaled(rows, scaling)
                .map_err(|e| Error::Setup(e.to_string()))
        };
        let mut datasets: Vec<Dataset> = statistics
            .client_rows
            .par_iter()
            .map(|rows| encode(rows))
            .collect::<Result<_, _>>()?;
        for ((data, behaviour), noise) in datasets
            .iter_mut()
            .zip(&self.behaviours)
            .zip(&self.label_noise)
        {
            corrupt_labels(behaviour, noise, data);
        }
        self.test_set = encode(&statistics.test_rows)?;
        self.datasets = datasets;
        Ok(())
    }

    /// ε spent so far at the contract's δ, when rounds add noise.
    fn epsilon(&self) -> Option<f64> {
        self.privacy.adds_noise().then(|| {
            self.driver
                .publisher()
                .map_or(0.0, Publisher::epsilon_spent)
        })
    }

    /// Trains every job in parallel (one client per thread); an attacker's behaviour is applied
    /// to what it trained.
    #[allow(clippy::type_complexity)]
    fn run_jobs(
        &self,
        jobs: &[TrainJob],
    ) -> Vec<(NodeId, RoundId, Result<fedpool_core::TrainOutcome, String>)> {
        let network = &self.network;
        let datasets = &self.datasets;
        let behaviours = &self.behaviours;
        let statistics = &self.statistics;
        jobs.par_iter()
            .map(|job| {
                if matches!(job.task, RoundTask::Statistics) {
                    let outcome = match statistics {
                        Some(s) => {
                            let rows = &s.client_rows[job.node.0 as usize];
                            s.layout
                                .node_statistics(&s.table, rows)
                                .map(|delta| fedpool_core::TrainOutcome {
                                    delta,
                                    n_examples: rows.len(),
                                    final_loss: 0.0,
                                    n_steps: 0,
                                })
                                .map_err(|e| e.to_string())
                        }
                        None => Err("this simulation has no statistics phase".into()),
                    };
                    return (job.node, job.round, outcome);
                }
                let behaviour = &behaviours[job.node.0 as usize];
                if let Behaviour::FreeRider { .. } = behaviour {
                    // It claims its rows and sends what it likes, without training.
                    let mut rng = ChaCha20Rng::seed_from_u64(job.seed);
                    let mut delta = vec![0.0; job.global.len()];
                    behaviour.apply(&mut delta, &mut rng);
                    let outcome = fedpool_core::TrainOutcome {
                        delta,
                        n_examples: datasets[job.node.0 as usize].n_rows(),
                        final_loss: 0.0,
                        n_steps: 0,
                    };
                    return (job.node, job.round, Ok(outcome));
                }
                let data = &datasets[job.node.0 as usize];
                let mut rng = ChaCha20Rng::seed_from_u64(job.seed);
                let outcome = train_local(network, &job.global, data, &job.local, &mut rng)
                    .map_err(|e| e.to_string())
                    .map(|mut outcome| {
                        // An attacker sends something else in place of what it trained.
                        behaviours[job.node.0 as usize].apply(&mut outcome.delta, &mut rng);
                        outcome
                    });
                (job.node, job.round, outcome)
            })
            .collect()
    }
}

/// Content hash of a client's encoded rows: what its consent names, never the rows themselves.
fn dataset_fingerprint(data: &Dataset) -> String {
    let mut bytes = Vec::with_capacity((data.features.len() + data.n_rows()) * 4);
    for f in &data.features {
        bytes.extend_from_slice(&f.to_le_bytes());
    }
    match &data.targets {
        Targets::Classes { labels, .. } => labels
            .iter()
            .for_each(|l| bytes.extend_from_slice(&l.to_le_bytes())),
        Targets::Real(values) => values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
    }
    fedpool_ledger::content_hash(&bytes)
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a label-flipping or noisy-label client does to its own rows' labels.
fn corrupt_labels(behaviour: &Behaviour, noise: &[(usize, u32)], data: &mut Dataset) {
    match behaviour {
        Behaviour::LabelFlip => flip_labels(&mut data.targets),
        Behaviour::NoisyLabels { .. } => {
            if let Targets::Classes { labels, .. } = &mut data.targets {
                for &(position, label) in noise {
                    labels[position] = label;
                }
            }
        }
        _ => {}
    }
}

fn flip_labels(targets: &mut Targets) {
    if let Targets::Classes { labels, n_classes } = targets {
        let top = *n_classes as u32 - 1;
        labels.iter_mut().for_each(|l| *l = top - *l);
    }
}

fn evaluate(network: &Network, params: &[f32], data: &Dataset) -> Result<Metrics, Error> {
    let outputs = network.predict(params, &data.features)?;
    Ok(evaluate_outputs(&outputs, &data.targets))
}

/// The privacy stream of a simulated node or publisher, derived from its `u64` seed so that a
/// simulation replays bit for bit. Only simulations do this: a deployed node draws 256 bits
/// from the OS.
pub fn simulated_privacy_seed(seed: u64) -> [u8; 32] {
    use rand::SeedableRng;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x7072_6976_6163_7921).get_seed()
}

/// Values random groups of a transparent round's contributors from their sums and adds the
/// round's equations to the least-squares attribution: the method measured against the
/// transparent values.
#[allow(clippy::too_many_arguments)]
fn attribute_group_sums(
    (min_group, seed, attribution): &mut (usize, u64, GroupAttribution),
    network: &Network,
    before: &[f32],
    validation: &Dataset,
    recipe: &ValuationRecipe,
    round: RoundId,
    clients: &[usize],
    round_updates: &[RoundUpdate<'_>],
) -> Result<(), Error> {
    let seed = *seed ^ u64::from(round.0).wrapping_mul(0xA24B_AED4_963E_E407);
    let groups = group_valuation::random_groups(clients.len(), *min_group, seed);
    let values = group_valuation::value_groups(
        network,
        before,
        round_updates,
        &groups,
        validation,
        recipe,
        u64::from(round.0),
    )?;
    let by_client: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| g.iter().map(|&i| clients[i]).collect())
        .collect();
    attribution.add_round(&by_client, &values);
    Ok(())
}

/// The held updates of a round's contributors, in contributor order: each with its client, and
/// as the valuation takes them.
#[allow(clippy::type_complexity)]
fn contributed_updates<'a>(
    updates: &'a BTreeMap<NodeId, (Vec<f32>, usize)>,
    contributors: &[NodeId],
) -> (Vec<(usize, &'a (Vec<f32>, usize))>, Vec<RoundUpdate<'a>>) {
    let members: Vec<(usize, &(Vec<f32>, usize))> = contributors
        .iter()
        .filter_map(|node| updates.get(node).map(|u| (node.0 as usize, u)))
        .collect();
    let round_updates = members
        .iter()
        .map(|(_, (delta, rows))| RoundUpdate { delta, rows: *rows })
        .collect();
    (members, round_updates)
}
