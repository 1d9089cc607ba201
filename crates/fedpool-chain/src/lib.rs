//! fedpool's EVM client: anchors the ledger's chain heads in a public chain and settles
//! rewards as ERC-20 transfers to owners' linked wallets, over any JSON-RPC endpoint.
//!
//! - [`contracts`]: the bindings of `evm/src/*.sol` and their committed bytecode
//!   (`evm/out/*.json`, rebuilt and checked by `node evm/build.mjs --check`).
//! - [`wallet`]: the publisher's (or any node's) EVM key, kept like the node key (0600, never
//!   logged).
//! - [`client`]: [`ChainClient`] — deploy, anchor, read anchors, approve, settle, read
//!   settlements and balances; every call retried through a chain that goes away, every write
//!   made safe to retry (a settlement's nonce is checked on chain before it is sent again, an
//!   anchor is looked up by its root).
//! - [`Deployment`]: where the contracts of one chain live, as a node keeps it (`chain.json`).
//!
//! The ledger side (events, the Merkle root of heads, the rules `verify` checks) lives in
//! `fedpool-ledger`; this crate only talks to the chain.

#![deny(missing_docs)]

#[cfg(feature = "test-support")]
pub mod anvil;
pub mod audit;
pub mod client;
pub mod contracts;
pub mod wallet;

pub use audit::{AnchorAudit, AnchoredHeight, audit};
pub use client::{
    AnchorLogged, AnchorOnChain, AnchorReceipt, ChainClient, Retry, SettleReceipt, SettledLog,
};
pub use wallet::EvmWallet;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// What can go wrong talking to a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The endpoint URL cannot be used.
    #[error("`{url}` is not an RPC endpoint URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The chain did not answer, or answered an error, within the retry window.
    #[error("the chain at {url} {action}: {reason}")]
    Rpc {
        /// The endpoint.
        url: String,
        /// What was being done.
        action: String,
        /// The last error.
        reason: String,
    },
    /// A transaction was included but reverted.
    #[error("{action} reverted on chain (tx {tx})")]
    Reverted {
        /// What was being done.
        action: String,
        /// The transaction hash.
        tx: String,
    },
    /// The chain is not the one the deployment was made on.
    #[error("the endpoint serves chain {found}, but {what} is on chain {expected}")]
    WrongChain {
        /// The chain the caller expected.
        expected: u64,
        /// The chain the endpoint serves.
        found: u64,
        /// What was expected there.
        what: String,
    },
    /// A contract address holds no code (wrong address, or a chain that was reset).
    #[error(
        "no contract at {address} on chain {chain_id} ({what}); deploy with `fedpool chain deploy`"
    )]
    NoContract {
        /// The address.
        address: String,
        /// The chain.
        chain_id: u64,
        /// Which contract.
        what: String,
    },
    /// A key or deployment file cannot be used.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A committed contract artifact cannot be read (a broken build).
    #[error("contract artifact {name}: {reason}")]
    Artifact {
        /// The contract.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Where fedpool's contracts live on one chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// `FedpoolAnchor`.
    pub anchor: String,
    /// `FedpoolRewardToken` (ERC-20, 0 decimals: one token is one unit of the pool).
    pub token: String,
    /// `FedpoolPayouts`.
    pub payouts: String,
}

impl Deployment {
    /// Reads a deployment file (`chain.json`).
    pub fn load(path: &Path) -> Result<Deployment, ChainError> {
        let file_error = |reason: String| ChainError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let deployment: Deployment = serde_json::from_str(&text)
            .map_err(|e| file_error(format!("not a deployment: {e}")))?;
        for (what, address) in [
            ("anchor", &deployment.anchor),
            ("token", &deployment.token),
            ("payouts", &deployment.payouts),
        ] {
            fedpool_ledger::wallet::parse_address(address)
                .map_err(|reason| file_error(format!("{what}: {reason}")))?;
        }
        Ok(deployment)
    }

    /// Writes it (replacing any earlier file atomically).
    pub fn save(&self, path: &Path) -> Result<(), ChainError> {
        let text = serde_json::to_string_pretty(self).expect("a deployment serializes");
        fedpool_ledger::replace_file(path, text.as_bytes()).map_err(|e| ChainError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The three addresses, parsed (they were checked when loaded or made).
    pub fn addresses(&self) -> Result<ContractAddresses, ChainError> {
        let parse = |what: &str, text: &str| {
            fedpool_ledger::wallet::parse_address(text).map_err(|reason| ChainError::File {
                path: "chain.json".into(),
                reason: format!("{what}: {reason}"),
            })
        };
        Ok(ContractAddresses {
            anchor: parse("anchor", &self.anchor)?,
            token: parse("token", &self.token)?,
            payouts: parse("payouts", &self.payouts)?,
        })
    }
}

/// A [`Deployment`]'s addresses as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractAddresses {
    /// `FedpoolAnchor`.
    pub anchor: [u8; 20],
    /// `FedpoolRewardToken`.
    pub token: [u8; 20],
    /// `FedpoolPayouts`.
    pub payouts: [u8; 20],
}

/// The bytes32 a model is known by on chain: blake3 of its id's text (model ids are content
/// hashes as text; hashing the text is unambiguous and fits any id in 32 bytes).
pub fn model_key(model_id: &fedpool_ledger::ModelId) -> [u8; 32] {
    *blake3::hash(model_id.as_str().as_bytes()).as_bytes()
}
