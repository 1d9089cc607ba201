//! Messages exchanged in a round, and the ids they carry.

use std::fmt;
use std::sync::Arc;

use fedpool_core::LocalTraining;
use fedpool_data::FeatureScaling;
use fedpool_secagg::{ToClient, ToServer};

use crate::privacy::RoundPrivacy;
use crate::secure::SecAggSetup;

/// A node in a round, as the transport addresses it. The runtime maps transport addresses
/// (in-process indices, libp2p peer ids) to these compact ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// A round number: training rounds start at 1; [`STATISTICS_ROUND`] is the statistics phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoundId(pub u32);

/// The statistics phase's round number: before every training round.
pub const STATISTICS_ROUND: RoundId = RoundId(0);

impl fmt::Display for RoundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == STATISTICS_ROUND {
            f.write_str("the statistics phase")
        } else {
            write!(f, "round {}", self.0)
        }
    }
}

/// What a request asks of a participant.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundTask {
    /// The statistics phase: send this node's feature statistics (the contract's
    /// `fedpool_data::StatisticsLayout`), once, before the first training round.
    Statistics,
    /// Train from the request's global model.
    Train {
        /// The federated scaling to standardise with, when the model has a statistics phase.
        scaling: Option<Arc<FeatureScaling>>,
    },
}

/// Every message of the round protocol. Matched exhaustively by both roles: there is no
/// string-routed "category.action" dispatch to get wrong at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// Publisher → participant: train from this global model.
    TrainRequest(TrainRequest),
    /// Participant → publisher: the trained update.
    Update(UpdateMsg),
    /// Participant → publisher: will not take part in this round.
    Decline {
        /// The round declined.
        round: RoundId,
        /// Why.
        reason: DeclineReason,
    },
    /// Participant → publisher (secure rounds): trained, clipped and ready to be aggregated.
    Ready {
        /// The round.
        round: RoundId,
        /// The member's fresh random contribution to the round's secure-aggregation seeds, so
        /// that the neighbour graph is fixed by values the publisher committed to before it
        /// saw any of them (see [`SecAggSetup`]).
        nonce: [u8; 32],
    },
    /// Publisher → members: the round's secure aggregation begins.
    SecAggSetup(Arc<SecAggSetup>),
    /// Member → publisher: a secure-aggregation message.
    SecAggToServer {
        /// The round.
        round: RoundId,
        /// The message.
        msg: ToServer,
    },
    /// Publisher → member: a secure-aggregation message.
    SecAggToClient {
        /// The round.
        round: RoundId,
        /// The message.
        msg: ToClient,
    },
}

/// Where a participant is in a round, by the message it sends next: what a simulated dropout
/// at that point stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Training and sending the update (or readiness, in secure rounds).
    Training,
    /// Secure aggregation stage 1: advertising signed keys.
    AdvertiseKeys,
    /// Stage 2: sharing secrets with neighbours.
    ShareKeys,
    /// Stage 3: sending the masked input.
    MaskedInput,
    /// Stage 4: signing the survivor set.
    ConsistencyCheck,
    /// Stage 5: sending unmasking shares.
    Unmasking,
}

impl Stage {
    /// Every stage of a secure round, in order.
    pub const SECURE: [Stage; 6] = [
        Stage::Training,
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::ConsistencyCheck,
        Stage::Unmasking,
    ];
}

impl Msg {
    /// The round this message belongs to.
    pub fn round(&self) -> RoundId {
        match self {
            Msg::TrainRequest(r) => r.round,
            Msg::Update(u) => u.round,
            Msg::SecAggSetup(s) => s.round,
            Msg::Decline { round, .. }
            | Msg::Ready { round, .. }
            | Msg::SecAggToServer { round, .. }
            | Msg::SecAggToClient { round, .. } => *round,
        }
    }

    /// For a participant's message to the publisher, the stage it belongs to.
    pub fn participant_stage(&self) -> Option<Stage> {
        match self {
            Msg::Update(_) | Msg::Ready { .. } | Msg::Decline { .. } => Some(Stage::Training),
            Msg::SecAggToServer { msg, .. } => Some(match msg {
                ToServer::AdvertiseKeys(_) => Stage::AdvertiseKeys,
                ToServer::ShareKeys(_) => Stage::ShareKeys,
                ToServer::MaskedInput(_) => Stage::MaskedInput,
                ToServer::ConsistencySignature(_) => Stage::ConsistencyCheck,
                ToServer::UnmaskShares(_) => Stage::Unmasking,
            }),
            Msg::TrainRequest(_) | Msg::SecAggSetup(_) | Msg::SecAggToClient { .. } => None,
        }
    }
}

/// Publisher → participant request to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRequest {
    /// Round this request belongs to.
    pub round: RoundId,
    /// Statistics or training.
    pub task: RoundTask,
    /// The global parameters to start from (empty for statistics). Shared, not copied, between
    /// in-process recipients.
    pub global: Arc<Vec<f32>>,
    /// How to train locally this round.
    pub local: Arc<LocalTraining>,
    /// How the round is made private (clipping, noise, secure aggregation), as planned by the
    /// publisher; every participant checks it against the contract's terms.
    pub privacy: Arc<RoundPrivacy>,
    /// Secure rounds: the publisher's commitment ([`SecAggSetup::commitment`]) to the seed it
    /// will reveal in the setup, made before it knows who will be ready.
    pub secagg_commitment: Option<[u8; 32]>,
}

/// Participant → publisher update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateMsg {
    /// Round this update belongs to.
    pub round: RoundId,
    /// Trained parameters minus the global parameters (or, in the statistics phase, the node's
    /// statistics vector).
    pub delta: Vec<f32>,
    /// Rows trained on (the FedAvg weight).
    pub n_examples: usize,
    /// Mean local loss over the last local epoch.
    pub train_loss: f32,
    /// Whether the update's norm was within the round's clip norm before clipping (the bit
    /// adaptive clipping counts).
    pub within_clip: bool,
    /// Self-selected private rounds: whether the node's own coin made it contribute. When it
    /// did not, `delta` is all zeros and the update counts for nothing; it is sent all the
    /// same, so that who contributed is not written on the ledger.
    pub contributed: bool,
}

/// Why a participant declined a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclineReason {
    /// The node has not consented to (or has revoked consent for) this model.
    NoConsent,
    /// Local training failed; the message says why.
    TrainingFailed(String),
    /// Taking part would spend more privacy than the contract's budget or the owner's cap.
    PrivacyBudget(String),
    /// The request's privacy plan is not what the contract promises.
    PrivacyTerms(String),
    /// The node's part of secure aggregation failed; the message says why.
    SecureAggregation(String),
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclineReason::NoConsent => f.write_str("no consent for this model"),
            DeclineReason::TrainingFailed(why) => write!(f, "local training failed: {why}"),
            DeclineReason::PrivacyBudget(why) => write!(f, "privacy budget: {why}"),
            DeclineReason::PrivacyTerms(why) => write!(f, "privacy terms: {why}"),
            DeclineReason::SecureAggregation(why) => write!(f, "secure aggregation: {why}"),
        }
    }
}
