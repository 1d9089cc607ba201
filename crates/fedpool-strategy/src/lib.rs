//! fedpool's aggregation strategies: how a publisher turns one round's client updates into the
//! next global model, and how it picks the clients of a round.
//!
//! Every strategy works on flat `f32` parameter vectors. A client's update is its *delta*: the
//! locally trained parameters minus the global parameters it started from. Working on deltas lets
//! differential privacy clip them and secure aggregation sum them without knowing the model.
//!
//! Architecture invariant: pure computation. No I/O, no clock, no global state; randomness only
//! from an RNG the caller passes in.
//!
//! # Map
//!
//! - [`Strategy`] is the one interface; [`ClientUpdate`] is its input, [`AggregateReport`] and
//!   [`StrategyError`] its output.
//! - Averaging: [`FedAvg`], [`FedProx`] (`average.rs`).
//! - Server optimizers: [`FedAvgM`], [`FedAdagrad`], [`FedAdam`], [`FedYogi`] (`server_opt.rs`).
//! - Coordinate-wise robust rules: [`FedMedian`], [`FedTrimmedAvg`] (`robust.rs`).
//! - Distance-based robust rules: [`Krum`], [`MultiKrum`] (`krum.rs`), [`Bulyan`]
//!   (`bulyan.rs`).
//! - [`StrategyConfig`]: the `[training.strategy]` table of a contract and the CLI's
//!   `--strategy NAME[:PARAM]`, which builds a `Box<dyn Strategy>` (`config.rs`).
//! - [`ClientSampling`]: which clients take part in a round (`sampling.rs`).
//!
//! Every rule validates its input (one length per model, finite values) inside its main pass
//! over the data, never in a separate one, and leaves the model (and any optimizer state)
//! untouched when it returns an error. Updates are read in place, never copied whole: FedAvg
//! and the server optimizers stream each update once, blocked so the output stays in cache; the
//! coordinate-wise rules transpose one 64 KiB block at a time into scratch.
//!
//! ```
//! use fedpool_strategy::{ClientUpdate, Strategy, StrategyConfig};
//!
//! let mut strategy = "fedavg".parse::<StrategyConfig>().unwrap().build();
//! let mut global = vec![1.0f32, 1.0];
//! let (a, b) = ([1.0f32, 2.0], [5.0f32, -2.0]);
//! let updates = [
//!     ClientUpdate { delta: &a, n_examples: 1 },
//!     ClientUpdate { delta: &b, n_examples: 3 },
//! ];
//! let report = strategy.aggregate(&mut global, &updates).unwrap();
//! assert_eq!(global, [5.0, 0.0]);
//! assert_eq!(report.selected, [0, 1]);
//! ```
#![deny(missing_docs)]

mod average;
mod bulyan;
mod config;
mod krum;
mod robust;
mod sampling;
mod server_opt;
#[cfg(test)]
mod test_util;
mod validate;

pub use average::{FedAvg, FedProx};
pub use bulyan::Bulyan;
pub use config::{ConfigError, StrategyConfig, all_names};
pub use krum::{Krum, MultiKrum};
pub use robust::{FedMedian, FedTrimmedAvg};
pub use sampling::{ClientSampling, SamplingError};
pub use server_opt::{AdaptiveParams, FedAdagrad, FedAdam, FedAvgM, FedYogi};

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
    /// Every update reports zero training examples, so the example-weighted mean is undefined.
    #[error("{strategy}: every update reports 0 training examples; the weighted mean is undefined")]
    ZeroTotalWeight {
        /// Strategy name.
        strategy: &'static str,
    },
    /// The rule needs more updates than arrived (Krum needs n > 2f + 2, Bulyan n > 4f + 3).
    #[error(
        "{strategy}: needs at least {needed} updates to tolerate {n_byzantine} Byzantine, got {got}"
    )]
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
