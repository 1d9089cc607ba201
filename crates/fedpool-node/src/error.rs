use std::path::PathBuf;

/// What can go wrong in a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key cannot serve as a libp2p identity, or a peer's cannot be read.
    #[error("identity: {0}")]
    Identity(String),
    /// Bytes from a peer that do not parse.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] fedpool_ledger::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A request the node cannot carry out (unknown model, not its publisher, …).
    #[error("{0}")]
    Refused(String),
}
