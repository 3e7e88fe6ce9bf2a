// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IModelRegistry
/// @notice Model hash → metadata and the program root the one-step checks ops against
///         (DESIGN §6 "Registry", checklist 1).
interface IModelRegistry {
    struct Model {
        string name;
        string uri;
        uint32 specVersion;
        bytes32 programRoot;
        address registrant;
        uint64 registeredAt;
    }

    /// @notice Emitted once per model hash; entries never change afterwards.
    event ModelRegistered(
        bytes32 indexed modelHash, bytes32 programRoot, uint32 specVersion, string name, string uri, address registrant
    );

    /// @notice True when `modelHash` is registered.
    function isRegistered(bytes32 modelHash) external view returns (bool);

    /// @notice The program root registered with `modelHash` (reverts when unknown).
    function programRootOf(bytes32 modelHash) external view returns (bytes32);

    /// @notice The full registry entry (reverts when unknown).
    function modelOf(bytes32 modelHash) external view returns (Model memory);
}
