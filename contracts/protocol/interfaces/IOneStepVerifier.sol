// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IOneStepVerifier
/// @notice The bottom of the dispute game (DESIGN §6 "One-step"): decides a single disputed
///         claim of the defending executor from data both parties agree on.
/// @dev Contract between the game and the verifier:
///      - `verify` is a view. It returns whether the defender's claim is correct.
///      - The witness is opaque and anyone may supply it. A verifier MUST revert on a witness it
///        cannot fully check (bad proof, wrong preimage, wrong op record) and MUST NOT return
///        `false` because of a bad witness: a valid witness determines the answer uniquely, so a
///        caller can only help the party that is right.
///      - Leaves of `ctx.traceRoot` left of `ctx.leafIndex` are agreed by both parties (the game
///        proved it by dissection), so proofs against that root for those leaves are agreed data.
///      - Level 3 (accumulation chains, docs/trace-layout.md §L9): `chainLength` tells the game
///        how many links (LINK = 64 fma steps each) the disputed Element has; 0 = `verify`
///        decides it whole. With links > 0, `verify` refuses the whole element; the defender
///        reveals its chain of accumulators, the challenger names one link, and `verify` decides
///        that link (`StepContext.claim` = abi.encode(uint256 link, uint256 startBits)).
interface IOneStepVerifier {
    /// @notice What is being decided. Each kind says how `elementIndex`, `claimedBits` and
    ///         `claim` are filled; the answer is always "is the defender right".
    enum Claim {
        /// Element `elementIndex` of the output tensor `outputRoot` of op `opHash` at leaf
        /// `leafIndex` has the little-endian bits `claimedBits` (C1). With a non-empty `claim`
        /// = abi.encode(uint256 link, uint256 startBits) (level 3): link `link` of the element's
        /// accumulation chain, started from `startBits` (ignored for link 0, which starts from
        /// the element's acc input or +0), ends at `claimedBits`.
        Element,
        /// `opHash` is the program's op record for trace leaf `leafIndex` (DESIGN §6 checklist 1).
        OpHash,
        /// `claim` (the exact C4 header bytes the defender opened) is the dtype/shape the
        /// program gives op `opHash` at leaf `leafIndex`.
        OutputHeader,
        /// The trace ends exactly at `leafIndex` ops when `claimedBits` == 1, or continues past
        /// it when `claimedBits` == 0 (the defender's claim).
        TraceEnd,
        /// Output token `elementIndex` of the job is `claimedBits` (a uint32 token id), or there
        /// is no such token when `claimedBits` == type(uint256).max (DESIGN §6 checklist 4).
        OutputToken
    }

    /// @notice Everything the game has established about the disputed step.
    struct StepContext {
        uint256 jobId;
        bytes32 modelHash;
        bytes32 programRoot; // registered with the model hash
        bytes32 inputHash; // C6 hash of the job's input tokens (the bytes are in JobPosted)
        bytes32 configHash; // keccak256(abi.encode(JobConfig))
        bytes32 traceRoot; // the defender's committed trace root
        uint256 traceLength; // the defender's committed trace length
        uint256 leafIndex;
        bytes32 opHash; // the defender's op hash at leafIndex (0 where not opened)
        bytes32 outputRoot; // the defender's output tensor root at leafIndex (0 where not opened)
        uint256 elementIndex;
        uint256 claimedBits;
        bytes claim; // kind-specific bytes (the C4 header for OutputHeader; Element: empty, or
        // abi.encode(uint256 link, uint256 startBits) once a link of the chain was picked)
    }

    /// @notice Decides the claim. Reverts on an invalid witness. For an Element claim with an
    ///         empty `ctx.claim` whose element has links (`chainLength` > 0) it reverts (the
    ///         element is decided one link at a time); with a link claim it decides that link and
    ///         reverts when the element has no such link (not a chained element, link ≥ links).
    /// @return defenderCorrect True when the defender's claim is the correct one.
    function verify(Claim kind, StepContext calldata ctx, bytes calldata witness)
        external
        view
        returns (bool defenderCorrect);

    /// @notice Level 3: number of links in the accumulation chain of the disputed element of an
    ///         Element claim (0 = checked whole by `verify`). Not the defender's to choose: it
    ///         follows from the program's op record and the agreed input shapes.
    /// @param ctx The pending claim's context (`claim` is ignored).
    /// @param witness The element witness `verify` takes, validated the same way (reverts when
    ///        invalid); the verifier may accept it without input data (shapes only).
    /// @return links 0 when the op at the leaf is not `ctx.opHash` or has no chain.
    function chainLength(StepContext calldata ctx, bytes calldata witness) external view returns (uint256 links);
}
