// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IModelRegistry
/// @notice Model hash → metadata, the program root the one-step checks ops against
///         (DESIGN §6 "Registry", checklist 1) and the limits of the job inputs that program can
///         run (vocabulary size, context positions), which JobMarket.postJob enforces.
interface IModelRegistry {
    struct Model {
        string name;
        string uri;
        uint32 specVersion;
        uint32 vocabSize; // token ids of a job input must be < vocabSize
        uint32 maxContext; // input tokens + maxTokens of a job must be ≤ maxContext
        bytes32 programRoot;
        address registrant;
        uint64 registeredAt;
        bytes32 compactRoot; // §L10 compact commitment; 0 = results commit full traces
    }

    /// @notice Emitted once per model hash; entries never change afterwards. `compactRoot` is the
    ///         model's compact commitment (docs/trace-layout.md §L10), 0 when its results commit
    ///         full traces.
    event ModelRegistered(
        bytes32 indexed modelHash,
        bytes32 programRoot,
        uint32 specVersion,
        string name,
        string uri,
        address registrant,
        uint32 vocabSize,
        uint32 maxContext,
        bytes32 compactRoot
    );

    /// @notice True when `modelHash` is registered.
    function isRegistered(bytes32 modelHash) external view returns (bool);

    /// @notice The program root registered with `modelHash` (reverts when unknown).
    function programRootOf(bytes32 modelHash) external view returns (bytes32);

    /// @notice What a job for `modelHash` is checked against, in one call: the program root
    ///         (zero when the model is unknown: this view never reverts), the vocabulary size
    ///         and the maximum context.
    function termsOf(bytes32 modelHash) external view returns (bytes32 programRoot, uint32 vocabSize, uint32 maxContext);

    /// @notice The compact commitment registered with `modelHash` (docs/trace-layout.md §L10:
    ///         keccak256(0x06 ‖ u32 P ‖ u32 Pc ‖ u32 c_tok ‖ map_root)): results and challenges
    ///         for such a model commit compact traces, and its games expand them. 0 when the model
    ///         is unknown or commits full traces; this view never reverts.
    function compactRootOf(bytes32 modelHash) external view returns (bytes32);

    /// @notice The full registry entry (reverts when unknown).
    function modelOf(bytes32 modelHash) external view returns (Model memory);
}
