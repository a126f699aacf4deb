// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title The seed paper's design, kept only as a baseline for the gas benchmarks
/// @notice One transaction per uploaded reading, each storing one hash. CarbonTraceRegistry replaces this with
/// one checkpoint per Merkle batch; comparing the two gives the gas per reading of each design.
contract NaiveHashStore {
    event HashStored(bytes32 indexed hash, address indexed sender);

    /// @notice block number at which a hash was stored (0: never)
    mapping(bytes32 => uint256) public storedAt;

    function storeHash(bytes32 hash) external {
        storedAt[hash] = block.number;
        emit HashStored(hash, msg.sender);
    }
}
