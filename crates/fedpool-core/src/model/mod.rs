//! Models: the contract's model spec and the architectures that realise it.

mod dense;
mod network;
mod spec;

pub(crate) use dense::DenseNet;

pub(crate) use network::BatchTargets;
pub use network::Network;
pub use spec::ModelSpec;
