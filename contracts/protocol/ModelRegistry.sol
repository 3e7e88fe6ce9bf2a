// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Model hash → (name, URI, spec version, program root, vocabulary size, maximum context,
///         compact commitment).
///         DESIGN §6 "Registry".
/// @dev Policy (documented in contracts/protocol/README.md): curated and append-only. A curator address
///      (a multisig or DAO in production) registers models after checking that the program
///      root is the one the compiler produces for that model hash. Entries can never be
///      changed or removed, so the curator has no power over jobs already posted, nor over any
///      bond: the registry holds no funds. Why curated rather than open: the program root is
///      what the one-step checks ops against (checklist 1), and nothing on-chain can check it
///      against the model hash, so an open registry would let the first registrant of a hash
///      bind it to a wrong program. The same holds for the two limits: the curator checks that
///      the vocabulary size is the program's embedding rows and the maximum context the
///      positions the program (its RoPE tables, bound by the model hash) was compiled for.
///      JobMarket.postJob refuses a job outside them, so no job can exist whose trace the
///      program does not define (such a job could be "run" only by a made-up trace that no
///      one-step can check).
contract ModelRegistry is IModelRegistry {
    /// @notice Upper bound on a model's context, so every loop over a job input is bounded
    ///         (postJob checks input tokens + maxTokens ≤ maxContext before it reads the tokens).
    ///         2^17 covers the 128k-token windows of current open models.
    uint32 public constant MAX_CONTEXT = 1 << 17;

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
    /// @notice vocabSize is 0, or maxContext is below 2 (one input token and one new token) or
    ///         above MAX_CONTEXT.
    error BadLimits(uint32 vocabSize, uint32 maxContext);

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
    /// @param vocabSize The program's vocabulary size: job token ids must be below it.
    /// @param maxContext The positions the program was compiled for: a job's input tokens plus
    ///        its maxTokens must not exceed it (2 ≤ maxContext ≤ MAX_CONTEXT).
    /// @param name Human-readable name.
    /// @param uri Where the model files can be fetched.
    /// @param compactRoot The model's compact commitment (docs/trace-layout.md §L10), checked by
    ///        the curator against the program like the program root; 0 = the model's results
    ///        commit full traces (§L1).
    function register(
        bytes32 modelHash,
        bytes32 programRoot,
        uint32 specVersion,
        uint32 vocabSize,
        uint32 maxContext,
        string calldata name,
        string calldata uri,
        bytes32 compactRoot
    ) external {
        if (msg.sender != curator) revert NotCurator();
        if (modelHash == bytes32(0) || programRoot == bytes32(0)) revert ZeroValue();
        if (vocabSize == 0 || maxContext < 2 || maxContext > MAX_CONTEXT) revert BadLimits(vocabSize, maxContext);
        if (_models[modelHash].programRoot != bytes32(0)) revert AlreadyRegistered(modelHash);
        _models[modelHash] = Model({
            name: name,
            uri: uri,
            specVersion: specVersion,
            vocabSize: vocabSize,
            maxContext: maxContext,
            programRoot: programRoot,
            registrant: msg.sender,
            registeredAt: uint64(block.timestamp),
            compactRoot: compactRoot
        });
        emit ModelRegistered(modelHash, programRoot, specVersion, name, uri, msg.sender, vocabSize, maxContext, compactRoot);
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
    function termsOf(bytes32 modelHash) external view returns (bytes32 programRoot, uint32 vocabSize, uint32 maxContext) {
        Model storage m = _models[modelHash];
        return (m.programRoot, m.vocabSize, m.maxContext);
    }

    /// @inheritdoc IModelRegistry
    function compactRootOf(bytes32 modelHash) external view returns (bytes32) {
        return _models[modelHash].compactRoot;
    }

    /// @inheritdoc IModelRegistry
    function modelOf(bytes32 modelHash) external view returns (Model memory m) {
        m = _models[modelHash];
        if (m.programRoot == bytes32(0)) revert UnknownModel(modelHash);
    }
}
