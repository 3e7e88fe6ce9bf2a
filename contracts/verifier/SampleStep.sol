// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TraceOps} from "./TraceOps.sol";

/// @title SampleStep
/// @notice The one-step of the SAMPLE trace ops (docs/trace-layout.md §L5.10, RepOps spec §7.3)
///         in a contract of its own. Why: with the level-3 links (§L9) OneStepVerifier's code
///         passed the EIP-170 limit of 24,576 bytes, which every EVM chain enforces; the SAMPLE
///         stages (sort, merge, scan, the draw) are the largest self-contained part. The
///         verifier creates this contract in its constructor and calls it for SAMPLE elements
///         only, so deploying the verifier stays one transaction.
contract SampleStep {
    /// @notice Whether `claimed` is element `e` of SAMPLE op `op` (TraceOps.sampleHolds).
    /// @param op The op (code SAMPLE), its attributes and output dims at the step.
    /// @param ins Its input slots, with the chunks the element reads.
    /// @param me The defender's own output (SCAN and MERGE read it), else not present.
    /// @param e The element index.
    /// @param env The step's symbols, the job input and the job config.
    /// @param claimed The defender's claimed bits.
    /// @return True when the claim is the element.
    function holds(
        TraceOps.Op memory op,
        TraceOps.In[] memory ins,
        TraceOps.In memory me,
        uint256 e,
        TraceOps.Env memory env,
        uint256 claimed
    ) external pure returns (bool) {
        return TraceOps.sampleHolds(op, ins, me, e, env, claimed);
    }
}
