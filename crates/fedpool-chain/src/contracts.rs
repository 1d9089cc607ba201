//! Bindings of fedpool's Solidity contracts (`evm/src`) and their committed bytecode.

use alloy::primitives::Bytes;

use crate::ChainError;

alloy::sol! {
    /// `evm/src/FedpoolAnchor.sol`.
    #[sol(rpc)]
    interface FedpoolAnchor {
        event Anchored(uint256 indexed index, address indexed submitter, bytes32 root, uint64 heads);
        function anchor(bytes32 root, uint64 heads) external returns (uint256 index);
        function count() external view returns (uint256);
        function anchorAt(uint256 index) external view returns (bytes32 root, uint64 heads, uint64 blockNumber, uint64 timestamp, address submitter);
    }

    /// The ERC-20 functions fedpool uses of `evm/src/FedpoolRewardToken.sol`.
    #[sol(rpc)]
    interface FedpoolRewardToken {
        function approve(address spender, uint256 value) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
        function balanceOf(address account) external view returns (uint256);
        function totalSupply() external view returns (uint256);
    }

    /// `evm/src/FedpoolPayouts.sol`.
    #[sol(rpc)]
    interface FedpoolPayouts {
        event Settled(address indexed payer, bytes32 indexed modelId, uint64 indexed nonce, address token, uint256 total, uint256 count);
        function settle(bytes32 modelId, uint64 nonce, address token, address[] to, uint256[] amounts) external;
        function isSettled(address payer, bytes32 modelId, uint64 nonce) external view returns (bool);
    }
}

/// `FedpoolAnchor`'s creation bytecode.
pub fn anchor_bytecode() -> Result<Bytes, ChainError> {
    bytecode(
        "FedpoolAnchor",
        include_str!("../../../evm/out/FedpoolAnchor.json"),
    )
}

/// `FedpoolRewardToken`'s creation bytecode (constructor arguments follow it).
pub fn token_bytecode() -> Result<Bytes, ChainError> {
    bytecode(
        "FedpoolRewardToken",
        include_str!("../../../evm/out/FedpoolRewardToken.json"),
    )
}

/// `FedpoolPayouts`'s creation bytecode.
pub fn payouts_bytecode() -> Result<Bytes, ChainError> {
    bytecode(
        "FedpoolPayouts",
        include_str!("../../../evm/out/FedpoolPayouts.json"),
    )
}

fn bytecode(name: &str, artifact: &str) -> Result<Bytes, ChainError> {
    let broken = |reason: String| ChainError::Artifact {
        name: name.into(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_str(artifact).map_err(|e| broken(e.to_string()))?;
    let hex = json["bytecode"]
        .as_str()
        .ok_or_else(|| broken("no `bytecode` string".into()))?;
    hex.parse::<Bytes>().map_err(|e| broken(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_committed_artifact_holds_bytecode() {
        for code in [
            super::anchor_bytecode(),
            super::token_bytecode(),
            super::payouts_bytecode(),
        ] {
            assert!(code.unwrap().len() > 100);
        }
    }
}
