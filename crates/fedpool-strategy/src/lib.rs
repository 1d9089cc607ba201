//! fedpool's aggregation strategies: how a publisher turns one round's client updates into the
//! next global model, and how it picks the clients of a round.
//!
//! Every strategy works on flat `f32` parameter vectors. A client's update is its *delta*: the
//! locally trained parameters minus the global parameters it started from. Working on deltas lets
//! differential privacy clip them and secure aggregation sum them without knowing the model.
//!
//! Architecture invariant: pure computation. No I/O, no clock, no global state; randomness only
//! from an RNG the caller passes in.
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// One client's contribution to a round, borrowed from wherever the update arrived: strategies
/// read updates in place and never copy them.
#[derive(Debug, Clone, Copy)]
pub struct ClientUpdate<'a> {
    /// Locally trained parameters minus the global parameters the client started from.
    pub delta: &'a [f32],
    /// Number of training examples the client used (the FedAvg weight).
    pub n_examples: usize,
}

/// What an aggregation did, for logs and the round record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AggregateReport {
    /// Number of updates received.
    pub n_updates: usize,
    /// Indices (into the `updates` slice) of the updates that contributed to the new model;
    /// all of them for averaging rules, the chosen ones for Krum, MultiKrum and Bulyan.
    pub selected: Vec<usize>,
}

/// Why an aggregation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrategyError {
    /// No update arrived.
    #[error("{strategy}: no updates to aggregate")]
    NoUpdates {
        /// Strategy name.
        strategy: &'static str,
    },
    /// An update's length differs from the global model's.
    #[error("{strategy}: update {update_idx} has {got} parameters, the model has {expected}")]
    LengthMismatch {
        /// Strategy name.
        strategy: &'static str,
        /// Index of the offending update.
        update_idx: usize,
        /// Its length.
        got: usize,
        /// The global model's length.
        expected: usize,
    },
    /// An update holds NaN or infinity.
    #[error("{strategy}: update {update_idx} has a non-finite value at parameter {param_idx}")]
    NonFinite {
        /// Strategy name.
        strategy: &'static str,
        /// Index of the offending update.
        update_idx: usize,
        /// First non-finite position.
        param_idx: usize,
    },
    /// The rule needs more updates than arrived (Krum needs n > 2f + 2, Bulyan n > 4f + 3).
    #[error("{strategy}: needs at least {needed} updates to tolerate {n_byzantine} Byzantine, got {got}")]
    TooFewUpdates {
        /// Strategy name.
        strategy: &'static str,
        /// Updates required.
        needed: usize,
        /// Updates received.
        got: usize,
        /// Byzantine updates tolerated.
        n_byzantine: usize,
    },
}

/// A rule that combines one round's updates into the next global model.
pub trait Strategy: Send {
    /// Short lower-case name, as accepted by [`StrategyConfig::from_str`](std::str::FromStr).
    fn name(&self) -> &'static str;

    /// FedProx's proximal coefficient μ that clients add to their local objective; 0 for others.
    fn proximal_mu(&self) -> f32 {
        0.0
    }

    /// Combines `updates` and applies the result to `global` in place.
    ///
    /// Server-optimizer state (momentum, Adam moments) lives in `self` and carries across rounds.
    fn aggregate(
        &mut self,
        global: &mut [f32],
        updates: &[ClientUpdate<'_>],
    ) -> Result<AggregateReport, StrategyError>;
}
