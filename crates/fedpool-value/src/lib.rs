//! Contribution valuation and reward splits: how much each participant of a round improved the
//! model, and how a pool is paid out for it.
//!
//! - [`shapley`]: Shapley values of a round's participants for a utility the caller defines
//!   (the validation metric of the model aggregated from a subset's updates): exact over every
//!   subset for up to [`shapley::MAX_EXACT`] participants; above that, permutation sampling
//!   with within-round truncation and a stopping rule on the estimate's standard error
//!   (GTG-Shapley, Liu et al. 2022), parallel across cores and reproducible from a seed; and
//!   leave-one-out, the cheap baseline.
//! - [`split`]: a pool in its smallest unit split in proportion to positive value, with an
//!   optional floor and cap, deterministic rounding, and what cannot be paid carried over, so
//!   payouts and the carry sum to the pool exactly.
//!
//! Pure: no I/O, no clock; randomness only from the caller's seed.
#![deny(missing_docs)]

pub mod shapley;
pub mod split;
pub mod stratified;

pub use shapley::{Estimate, Valuation, ValueError};
pub use split::{Split, SplitError, SplitRule};
