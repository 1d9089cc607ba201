// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title FedpoolPayouts
/// @notice Settles fedpool reward payouts in batches. A payer (the publisher) pays a batch of
/// owners from its own balance, through an allowance it gave this contract; each batch is keyed
/// by (payer, modelId, nonce) and can be settled once only: a replay reverts with
/// `BatchAlreadySettled`. The contract holds no tokens and has no owner.
contract FedpoolPayouts {
    using SafeERC20 for IERC20;

    /// payer => modelId => nonce => settled
    mapping(address => mapping(bytes32 => mapping(uint64 => bool))) private _settled;

    /// @notice Emitted once per settled batch. The individual payments are the token's own
    /// `Transfer(payer, to[i], amounts[i])` events in the same transaction.
    event Settled(
        address indexed payer,
        bytes32 indexed modelId,
        uint64 indexed nonce,
        address token,
        uint256 total,
        uint256 count
    );

    /// @notice The batch (payer, modelId, nonce) was settled before.
    error BatchAlreadySettled(address payer, bytes32 modelId, uint64 nonce);
    /// @notice The batch has no payee.
    error EmptyBatch();
    /// @notice `to` and `amounts` differ in length.
    error LengthMismatch(uint256 toLength, uint256 amountsLength);

    /// @notice Pays `amounts[i]` of `token` from the caller to `to[i]` for every i, once per
    /// (caller, modelId, nonce). The caller must have approved this contract for the total.
    function settle(
        bytes32 modelId,
        uint64 nonce,
        IERC20 token,
        address[] calldata to,
        uint256[] calldata amounts
    ) external {
        uint256 n = to.length;
        if (n != amounts.length) revert LengthMismatch(n, amounts.length);
        if (n == 0) revert EmptyBatch();
        if (_settled[msg.sender][modelId][nonce]) revert BatchAlreadySettled(msg.sender, modelId, nonce);

        // Effects before interactions: the batch is spent before any token is called.
        _settled[msg.sender][modelId][nonce] = true;

        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            total += amounts[i];
            token.safeTransferFrom(msg.sender, to[i], amounts[i]);
        }

        emit Settled(msg.sender, modelId, nonce, address(token), total, n);
    }

    /// @notice Whether the batch (payer, modelId, nonce) has been settled.
    function isSettled(address payer, bytes32 modelId, uint64 nonce) external view returns (bool) {
        return _settled[payer][modelId][nonce];
    }
}
