// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FedpoolRewardToken
/// @notice A fixed-supply ERC-20 for fedpool rewards. The whole supply is minted once, to
/// `initialHolder`, at deployment; nobody can mint or burn afterwards. Amounts are whole units
/// (`decimals()` is 0), the same integer units as the rewards on fedpool's ledger.
contract FedpoolRewardToken is ERC20 {
    constructor(string memory tokenName, string memory tokenSymbol, address initialHolder, uint256 initialSupply)
        ERC20(tokenName, tokenSymbol)
    {
        _mint(initialHolder, initialSupply);
    }

    /// @notice Amounts are whole units: no fractional digits.
    function decimals() public pure override returns (uint8) {
        return 0;
    }
}
