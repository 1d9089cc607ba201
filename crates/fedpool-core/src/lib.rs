//! fedpool's compute core: model contracts, candle models over flat parameter vectors, local
//! training and evaluation metrics.
//!
//! Architecture invariants: no I/O, no async, no clock, no global state. Contracts are parsed
//! from text, data arrives as [`fedpool_data::Dataset`]s, randomness comes from an RNG the
//! caller passes, so every result is reproducible from a seed. Parameters are always one
//! contiguous `f32` vector (see [`Network`]).
#![deny(missing_docs)]

pub mod card;
pub mod contract;
mod error;
pub mod metrics;
pub mod model;
pub mod model_card;
pub mod policy;
pub mod release;
pub mod train;

pub use card::{Card, CardStatus, CardTerms};
pub use contract::{AdaptiveClipping, Contract, ContractError};
pub use error::Error;
pub use metrics::{Metrics, evaluate_outputs};
pub use model::{ModelSpec, Network};
pub use train::{LocalTraining, Optimizer, TrainOutcome, train_local, train_local_with};
