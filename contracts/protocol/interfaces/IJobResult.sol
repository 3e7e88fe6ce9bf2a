// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IJobResult
/// @notice What a consumer contract reads (DESIGN §6 "Consumers").
interface IJobResult {
    /// @notice None: no such job. Open: waiting for commitments. Committed: in the challenge
    ///         window or in dispute. Finalized: the output is final. Failed: no valid result
    ///         (nobody committed by the deadline, or every executor lost a dispute).
    enum Status {
        None,
        Open,
        Committed,
        Finalized,
        Failed
    }

    /// @notice The job's status and, once Finalized, its output (C6 hash and tokens).
    /// @dev Consumers must act only on Finalized; the output fields are empty before that.
    function resultOf(uint256 jobId)
        external
        view
        returns (Status status, bytes32 outputHash, uint32[] memory outputTokens);
}
