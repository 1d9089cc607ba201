//! The participant (data owner) side of a round, as a sans-IO state machine.
//!
//! The participant never trains by itself: it asks its driver to (`Output::Train`) and gets the
//! result back (`Input::Trained`), so the same machine runs in simulation, where the driver
//! trains thousands of clients in parallel, and on the network.

use std::collections::VecDeque;
use std::sync::Arc;

use fedpool_core::{LocalTraining, TrainOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};

use crate::msg::{DeclineReason, Msg, NodeId, RoundId, TrainRequest, UpdateMsg};

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
}

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
    /// Parameters to start from.
    pub global: Arc<Vec<f32>>,
    /// How to train.
    pub local: Arc<LocalTraining>,
    /// Seed for batch shuffling, drawn from the participant's own RNG so results do not depend
    /// on which thread runs the job.
    pub seed: u64,
}

/// How a simulated participant behaves: honestly, or as one of the poisoning attacks used to
/// test robust strategies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Trains on flipped labels (the driver flips them in this node's data).
    LabelFlip,
    /// Sends Gaussian noise of this standard deviation instead of an update.
    Noise {
        /// Per-coordinate standard deviation.
        std: f32,
    },
    /// Multiplies its honest update by this factor (boosting / model replacement).
    Scale {
        /// Factor applied to the update.
        factor: f32,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Idle,
    Training { round: RoundId, publisher: NodeId },
}

/// A data owner's side of the round protocol.
#[derive(Debug)]
pub struct Participant {
    id: NodeId,
    consented: bool,
    behaviour: Behaviour,
    state: State,
    rng: ChaCha20Rng,
    outputs: VecDeque<ParticipantOutput>,
    rounds_trained: usize,
    requests_received: usize,
}

impl Participant {
    /// A participant with the given id, consent decision, behaviour and RNG seed.
    pub fn new(id: NodeId, consented: bool, behaviour: Behaviour, seed: u64) -> Participant {
        Participant {
            id,
            consented,
            behaviour,
            state: State::Idle,
            rng: ChaCha20Rng::seed_from_u64(seed),
            outputs: VecDeque::new(),
            rounds_trained: 0,
            requests_received: 0,
        }
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

    /// Its behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// Rounds it has trained in.
    pub fn rounds_trained(&self) -> usize {
        self.rounds_trained
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
        }
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<ParticipantOutput> {
        self.outputs.pop_front()
    }

    fn on_message(&mut self, from: NodeId, msg: Msg) {
        match msg {
            Msg::TrainRequest(request) => self.on_train_request(from, request),
            // Updates and declines travel to the publisher only; a participant ignores them.
            Msg::Update(_) | Msg::Decline { .. } => {}
        }
    }

    fn on_train_request(&mut self, from: NodeId, request: TrainRequest) {
        self.requests_received += 1;
        // Consent is checked here, on the data owner's side, whatever the publisher asks: a node
        // without consent never trains and never sends an update.
        if !self.consented {
            self.send(
                from,
                Msg::Decline {
                    round: request.round,
                    reason: DeclineReason::NoConsent,
                },
            );
            return;
        }
        if let State::Training { round, .. } = self.state {
            if round != request.round {
                self.send(
                    from,
                    Msg::Decline {
                        round: request.round,
                        reason: DeclineReason::Busy,
                    },
                );
            }
            return;
        }
        self.state = State::Training {
            round: request.round,
            publisher: from,
        };
        let seed = self.rng.random();
        self.outputs.push_back(ParticipantOutput::Train(TrainJob {
            node: self.id,
            round: request.round,
            global: request.global,
            local: request.local,
            seed,
        }));
    }

    fn on_trained(&mut self, round: RoundId, outcome: Result<TrainOutcome, String>) {
        let State::Training {
            round: current,
            publisher,
        } = self.state
        else {
            return;
        };
        if current != round {
            return;
        }
        self.state = State::Idle;
        match outcome {
            Ok(outcome) => {
                self.rounds_trained += 1;
                let delta = self.apply_behaviour(outcome.delta);
                self.send(
                    publisher,
                    Msg::Update(UpdateMsg {
                        round,
                        delta,
                        n_examples: outcome.n_examples,
                        train_loss: outcome.final_loss,
                    }),
                );
            }
            Err(why) => self.send(
                publisher,
                Msg::Decline {
                    round,
                    reason: DeclineReason::TrainingFailed(why),
                },
            ),
        }
    }

    fn apply_behaviour(&mut self, mut delta: Vec<f32>) -> Vec<f32> {
        match self.behaviour {
            Behaviour::Honest | Behaviour::LabelFlip => {}
            Behaviour::Scale { factor } => delta.iter_mut().for_each(|d| *d *= factor),
            Behaviour::Noise { std } => {
                if let Ok(normal) = Normal::new(0.0f32, std) {
                    delta
                        .iter_mut()
                        .for_each(|d| *d = normal.sample(&mut self.rng));
                }
            }
        }
        delta
    }

    fn send(&mut self, to: NodeId, msg: Msg) {
        self.outputs.push_back(ParticipantOutput::Send { to, msg });
    }
}
