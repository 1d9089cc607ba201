//! Messages exchanged in a round, and the ids they carry.

use std::fmt;
use std::sync::Arc;

use fedpool_core::LocalTraining;

/// A node in a round, as the transport addresses it. The runtime maps transport addresses
/// (in-process indices, libp2p peer ids) to these compact ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// A round number, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoundId(pub u32);

impl fmt::Display for RoundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {}", self.0)
    }
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
}

/// Publisher → participant request to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRequest {
    /// Round this request belongs to.
    pub round: RoundId,
    /// The global parameters to start from. Shared, not copied, between in-process recipients.
    pub global: Arc<Vec<f32>>,
    /// How to train locally this round.
    pub local: Arc<LocalTraining>,
}

/// Participant → publisher update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateMsg {
    /// Round this update belongs to.
    pub round: RoundId,
    /// Trained parameters minus the global parameters.
    pub delta: Vec<f32>,
    /// Rows trained on (the FedAvg weight).
    pub n_examples: usize,
    /// Mean local loss over the last local epoch.
    pub train_loss: f32,
}

/// Why a participant declined a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclineReason {
    /// The node has not consented to (or has revoked consent for) this model.
    NoConsent,
    /// The node is busy with another round.
    Busy,
    /// Local training failed; the message says why.
    TrainingFailed(String),
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclineReason::NoConsent => f.write_str("no consent for this model"),
            DeclineReason::Busy => f.write_str("busy with another round"),
            DeclineReason::TrainingFailed(why) => write!(f, "local training failed: {why}"),
        }
    }
}
