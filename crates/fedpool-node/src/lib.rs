//! fedpool's network node: separate processes that replicate the ledger and run rounds of the
//! round protocol over libp2p.
//!
//! # Code map
//!
//! - [`identity`]: one Ed25519 key is the node's DID, its PeerId and its round id.
//! - [`swarm`]: the libp2p stack (TCP/QUIC, Noise, Yamux, identify, ping, Kademlia,
//!   gossipsub, request-response).
//! - [`codec`], [`chunk`], [`outbox`]: length-capped frames; messages of any size in chunks;
//!   per-peer in-order delivery.
//! - [`sync`]: ledger catch-up by chain heads and ranges.
//! - [`owner`]: the data owner's participants, from its own ledger and data.
//! - [`publishing`]: a publisher's training run, its roster from the ledger, its rounds
//!   committed and resumable.
//! - [`replay`]: seeds that make a node replay an in-process simulation (tests only).
//! - [`control`]: the local control socket (`fedpool node status`, `fedpool train`).
//! - [`node`]: the event loop that ties them together.
//!
//! # Invariants
//!
//! - A message's sender is the peer the Noise handshake authenticated; every round message is
//!   bound to its model id, and is accepted only from that model's publisher (by an owner) or
//!   from a node with an active consent to it (by the publisher).
//! - Every event received is verified by the store before it is kept; invalid ones are
//!   dropped, logged and count against the peer that sent them.
//! - Decoding untrusted bytes never panics and never allocates from an unchecked count.
#![deny(missing_docs)]

#[cfg(test)]
mod attack_tests;
pub mod chunk;
pub mod codec;
pub mod control;
#[cfg(test)]
mod discovery_tests;
mod error;
pub mod identity;
pub mod node;
pub mod outbox;
pub mod owner;
pub mod payouts;
pub mod publishing;
pub mod replay;
mod swarm;
pub mod sync;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod test_support;
#[cfg(test)]
mod transfer_tests;
#[cfg(test)]
mod wiretap_tests;

use fedpool_core::Contract;
use fedpool_data::Table;

pub use error::Error;
pub use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
pub use node::{ConsentPolicyHook, NodeConfig, NodeInfo, run};

/// Where a node's rows come from: the CLI reads the files its owner registered. Rows are
/// read for training and evaluation only; they never leave the node.
pub trait DataSource: Send + Sync {
    /// The owner's rows for a model, validated against its contract's schema, from the dataset
    /// its consent names by fingerprint. The node encodes them (with the federated scaling,
    /// when the model has one) and computes its statistics from them; rows never leave it.
    fn training_data(
        &self,
        contract: &Contract,
        dataset_fingerprint: &str,
    ) -> Result<Table, String>;
    /// The publisher's held-out rows to evaluate each round on: the dataset registered under
    /// `name`, validated against the contract's schema.
    fn evaluation_data(&self, contract: &Contract, name: &str) -> Result<Table, String>;
}

/// Sees every payload a node hands to the transport (round-message chunks, gossiped events, sync
/// requests and answers), before encryption: for audits of what a node sends, and for the test
/// that no row of an owner's data ever leaves its node.
pub type WireTap = std::sync::Arc<dyn Fn(PeerId, &[u8]) + Send + Sync>;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
