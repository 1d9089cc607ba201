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
use fedpool_strategy::{ClientSampling, ClientUpdate, Strategy};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::msg::{DeclineReason, Msg, NodeId, RoundId, TrainRequest, UpdateMsg};

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
    /// Seed of the sampling RNG.
    pub seed: u64,
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
    /// All rounds are done.
    Finished {
        /// The final global model.
        global: Arc<Vec<f32>>,
    },
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
    /// Rows trained on across contributors.
    pub n_examples: usize,
}

#[derive(Debug)]
struct Collecting {
    round: RoundId,
    deadline_ms: u64,
    awaiting: BTreeSet<NodeId>,
    updates: BTreeMap<NodeId, UpdateMsg>,
    declined: Vec<(NodeId, DeclineReason)>,
    rejected: Vec<(NodeId, String)>,
}

#[derive(Debug)]
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
    next_round: u32,
    state: State,
    outputs: VecDeque<PublisherOutput>,
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
        Publisher {
            rng: ChaCha20Rng::seed_from_u64(config.seed),
            local: Arc::new(local),
            config,
            strategy,
            global: Arc::new(initial),
            roster,
            next_round: 1,
            state: State::NotStarted,
            outputs: VecDeque::new(),
        }
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
        match &self.state {
            State::NotStarted => self.start_round(now_ms),
            State::Collecting(c) if now_ms >= c.deadline_ms => self.finish_round(now_ms),
            State::Collecting(_) | State::Done => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg) {
        let State::Collecting(collecting) = &mut self.state else {
            return;
        };
        match msg {
            Msg::Update(update) => {
                // Only sampled nodes, only once, only for the current round: anything else is a
                // late or unsolicited message and is ignored.
                if update.round != collecting.round || !collecting.awaiting.remove(&from) {
                    return;
                }
                if update.delta.len() != self.global.len() {
                    collecting.rejected.push((
                        from,
                        format!(
                            "update has {} parameters, the model has {}",
                            update.delta.len(),
                            self.global.len()
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
            Msg::TrainRequest(_) => {}
        }
        if collecting.awaiting.is_empty() {
            let deadline = collecting.deadline_ms;
            self.finish_round(deadline);
        }
    }

    fn start_round(&mut self, now_ms: u64) {
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
        let sampled: Vec<NodeId> = match self.config.sampling.sample(&positions, &mut self.rng) {
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
        self.outputs
            .push_back(PublisherOutput::Event(RoundEvent::Started {
                round,
                sampled: sampled.clone(),
            }));
        for &node in &sampled {
            self.outputs.push_back(PublisherOutput::Send {
                to: node,
                msg: Msg::TrainRequest(TrainRequest {
                    round,
                    global: Arc::clone(&self.global),
                    local: Arc::clone(&self.local),
                }),
            });
        }
        self.state = State::Collecting(Collecting {
            round,
            deadline_ms: now_ms.saturating_add(self.config.round_timeout_ms),
            awaiting: sampled.into_iter().collect(),
            updates: BTreeMap::new(),
            declined: Vec::new(),
            rejected: Vec::new(),
        });
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
        let round = collecting.round;
        let n_updates = collecting.updates.len();
        let minimum = self.config.sampling.min_clients.max(1);
        if n_updates < minimum {
            return RoundEvent::Failed {
                round,
                reason: format!(
                    "{n_updates} updates arrived, at least {minimum} are needed ({} declined, {} dropped, {} rejected)",
                    collecting.declined.len(),
                    collecting.awaiting.len(),
                    collecting.rejected.len()
                ),
            };
        }
        // BTreeMap order: updates are aggregated in node order, whatever order they arrived in,
        // so a seeded run gives the same model bit for bit.
        let contributors: Vec<NodeId> = collecting.updates.keys().copied().collect();
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
        let n_examples: usize = collecting.updates.values().map(|u| u.n_examples).sum();
        let mean_train_loss = if n_examples == 0 {
            0.0
        } else {
            collecting
                .updates
                .values()
                .map(|u| u.train_loss as f64 * u.n_examples as f64)
                .sum::<f64>()
                / n_examples as f64
        };
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
        })
    }
}
