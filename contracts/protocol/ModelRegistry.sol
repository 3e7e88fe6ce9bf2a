// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Model hash → (name, URI, spec version, program root). DESIGN §6 "Registry".
/// @dev Policy (documented in contracts/protocol/README.md): curated and append-only. A curator address
///      (a multisig or DAO in production) registers models after checking that the program
///      root is the one the compiler produces for that model hash. Entries can never be
///      changed or removed, so the curator has no power over jobs already posted, nor over any
///      bond: the registry holds no funds. Why curated rather than open: the program root is
///      what the one-step checks ops against (checklist 1), and nothing on-chain can check it
///      against the model hash, so an open registry would let the first registrant of a hash
///      bind it to a wrong program.
contract ModelRegistry is IModelRegistry {
    /// @notice The address allowed to register models.
    address public curator;
    /// @notice A curator handover in progress (two-step, so a typo cannot brick the registry).
    address public pendingCurator;

    mapping(bytes32 => Model) private _models;

    error NotCurator();
    error NotPendingCurator();
    error AlreadyRegistered(bytes32 modelHash);
    error UnknownModel(bytes32 modelHash);
    error ZeroValue();

    /// @notice A curator handover was proposed.
    event CuratorProposed(address indexed current, address indexed proposed);
    /// @notice A curator handover completed.
    event CuratorChanged(address indexed previous, address indexed current);

    constructor(address curator_) {
        if (curator_ == address(0)) revert ZeroValue();
        curator = curator_;
        emit CuratorChanged(address(0), curator_);
    }

    /// @notice Registers a model once. Only the curator may call.
    /// @param modelHash The model hash (binds program, weights, tokenizer, spec version).
    /// @param programRoot The root of the compiled program's op records.
    /// @param specVersion The RepOps spec version the program targets.
    /// @param name Human-readable name.
    /// @param uri Where the model files can be fetched.
    function register(
        bytes32 modelHash,
        bytes32 programRoot,
        uint32 specVersion,
        string calldata name,
        string calldata uri
    ) external {
        if (msg.sender != curator) revert NotCurator();
        if (modelHash == bytes32(0) || programRoot == bytes32(0)) revert ZeroValue();
        if (_models[modelHash].programRoot != bytes32(0)) revert AlreadyRegistered(modelHash);
        _models[modelHash] = Model({
            name: name,
            uri: uri,
            specVersion: specVersion,
            programRoot: programRoot,
            registrant: msg.sender,
            registeredAt: uint64(block.timestamp)
        });
        emit ModelRegistered(modelHash, programRoot, specVersion, name, uri, msg.sender);
    }

    /// @notice Proposes a new curator; it takes over when it calls `acceptCurator`.
    /// @param next The proposed curator.
    function proposeCurator(address next) external {
        if (msg.sender != curator) revert NotCurator();
        pendingCurator = next;
        emit CuratorProposed(msg.sender, next);
    }

    /// @notice Completes a curator handover.
    function acceptCurator() external {
        if (msg.sender != pendingCurator) revert NotPendingCurator();
        emit CuratorChanged(curator, msg.sender);
        curator = msg.sender;
        pendingCurator = address(0);
    }

    /// @inheritdoc IModelRegistry
    function isRegistered(bytes32 modelHash) external view returns (bool) {
        return _models[modelHash].programRoot != bytes32(0);
    }

    /// @inheritdoc IModelRegistry
    function programRootOf(bytes32 modelHash) external view returns (bytes32 root) {
        root = _models[modelHash].programRoot;
        if (root == bytes32(0)) revert UnknownModel(modelHash);
    }

    /// @inheritdoc IModelRegistry
    function modelOf(bytes32 modelHash) external view returns (Model memory m) {
        m = _models[modelHash];
        if (m.programRoot == bytes32(0)) revert UnknownModel(modelHash);
    }
}
