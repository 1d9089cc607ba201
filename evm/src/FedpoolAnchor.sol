// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title FedpoolAnchor
/// @notice An append-only log of fedpool ledger anchors. Each anchor is the Merkle root of all
/// ledger chain heads at one moment, with the number of heads it covers. Anyone may anchor: the
/// contract records who submitted each anchor, and a verifier decides whose anchors it trusts.
contract FedpoolAnchor {
    struct Anchor {
        bytes32 root;
        // Packed into one slot: 20 + 8 bytes.
        address submitter;
        uint64 heads;
        // Packed into one slot: 8 + 8 bytes.
        uint64 blockNumber;
        uint64 timestamp;
    }

    Anchor[] private _anchors;

    /// @notice Emitted once per anchor; `index` is its position in the log (0-based).
    event Anchored(uint256 indexed index, address indexed submitter, bytes32 root, uint64 heads);

    /// @notice `anchorAt` was asked for an index at or beyond `count()`.
    error AnchorIndexOutOfRange(uint256 index, uint256 count);

    /// @notice Appends an anchor and returns its index.
    /// @param root The Merkle root of the ledger's chain heads.
    /// @param heads How many chain heads the root covers.
    function anchor(bytes32 root, uint64 heads) external returns (uint256 index) {
        index = _anchors.length;
        _anchors.push(
            Anchor({
                root: root,
                submitter: msg.sender,
                heads: heads,
                blockNumber: uint64(block.number),
                timestamp: uint64(block.timestamp)
            })
        );
        emit Anchored(index, msg.sender, root, heads);
    }

    /// @notice How many anchors have been recorded.
    function count() external view returns (uint256) {
        return _anchors.length;
    }

    /// @notice The anchor at `index`, with the block it was recorded in and who submitted it.
    function anchorAt(uint256 index)
        external
        view
        returns (bytes32 root, uint64 heads, uint64 blockNumber, uint64 timestamp, address submitter)
    {
        uint256 n = _anchors.length;
        if (index >= n) revert AnchorIndexOutOfRange(index, n);
        Anchor storage a = _anchors[index];
        return (a.root, a.heads, a.blockNumber, a.timestamp, a.submitter);
    }
}
