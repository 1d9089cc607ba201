//! The core crate's error type.

/// Errors from models, training and contracts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model could not be built or run with the given shapes.
    #[error("model: {0}")]
    Model(String),
    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: loss is {loss}; lower training.learning_rate")]
    Diverged {
        /// Optimizer step at which the loss stopped being finite.
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// The tensor library failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A contract is malformed or invalid.
    #[error(transparent)]
    Contract(#[from] crate::contract::ContractError),
}
