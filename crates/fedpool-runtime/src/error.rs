//! The runtime's error type.

/// Errors from setting up or running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or partitioning data failed.
    #[error(transparent)]
    Data(#[from] fedpool_data::DataError),
    /// Building or running the model failed.
    #[error(transparent)]
    Core(#[from] fedpool_core::Error),
    /// Recording on or verifying the ledger failed.
    #[error(transparent)]
    Ledger(#[from] fedpool_ledger::Error),
    /// The simulation could not be set up as asked.
    #[error("simulation: {0}")]
    Setup(String),
}
