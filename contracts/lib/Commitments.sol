// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Merkle} from "./Merkle.sol";

/// @title Commitments
/// @notice Tensor roots, trace leaves and token-sequence hashes exactly as docs/commitments.md
///         defines them (C1–C6). Tested against tests/vectors/commitments.json.
library Commitments {
    /// @dev C2 chunk size.
    uint256 internal constant CHUNK_BYTES = 1024;
    /// @dev C4 header tag.
    bytes1 internal constant TENSOR_TAG = 0x02;
    /// @dev C5 leaf tag.
    bytes1 internal constant TRACE_TAG = 0x03;
    /// @dev Compact-map leaf tag (docs/trace-layout.md §L10).
    bytes1 internal constant COMPACT_MAP_TAG = 0x05;
    /// @dev Compact-commitment tag (docs/trace-layout.md §L10).
    bytes1 internal constant COMPACT_TAG = 0x06;

    error BadHeader();
    error UnknownDtype(uint8 code);

    /// @notice Facts about a tensor that follow from its C4 header.
    struct Shape {
        uint8 dtype;
        uint8 elemSize;
        uint256 elements;
        uint256 byteLength;
        uint256 nChunks;
    }

    /// @notice C1 bytes per element of a dtype code (float32 1, int32 2, int64 3, uint8 4).
    function elemSize(uint8 dtype) internal pure returns (uint8) {
        if (dtype == 1 || dtype == 2) return 4;
        if (dtype == 3) return 8;
        if (dtype == 4) return 1;
        revert UnknownDtype(dtype);
    }

    /// @notice C4: tensor_root = keccak256(header ‖ data_root), where `header` is the exact byte
    ///         string 0x02 ‖ u8 dtype ‖ u8 ndim ‖ u32 dim_0 ‖ … (big-endian dims).
    function tensorRoot(bytes memory hdr, bytes32 dataRoot) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(hdr, dataRoot));
    }

    /// @notice Builds the C4 header bytes from a dtype code and dims.
    function header(uint8 dtype, uint32[] memory dims) internal pure returns (bytes memory h) {
        if (dims.length > 255) revert BadHeader();
        h = abi.encodePacked(TENSOR_TAG, dtype, uint8(dims.length));
        for (uint256 i = 0; i < dims.length; ++i) {
            h = abi.encodePacked(h, dims[i]);
        }
    }

    /// @notice Parses and validates a C4 header; derives element count and C2 chunk count.
    /// @dev Reverts on a malformed header, an unknown dtype or an element count that overflows:
    ///      an honest party never opens such a header, so a revert only strands a liar.
    function parseHeader(bytes memory h) internal pure returns (Shape memory s) {
        if (h.length < 3 || h[0] != TENSOR_TAG) revert BadHeader();
        uint256 ndim = uint8(h[2]);
        if (h.length != 3 + 4 * ndim) revert BadHeader();
        s.dtype = uint8(h[1]);
        s.elemSize = elemSize(s.dtype);
        uint256 n = 1;
        for (uint256 i = 0; i < ndim; ++i) {
            uint256 o = 3 + 4 * i;
            uint256 d = (uint256(uint8(h[o])) << 24) | (uint256(uint8(h[o + 1])) << 16)
                | (uint256(uint8(h[o + 2])) << 8) | uint256(uint8(h[o + 3]));
            n *= d; // checked: overflow reverts
        }
        if (n > type(uint64).max) revert BadHeader();
        s.elements = n;
        s.byteLength = n * s.elemSize;
        s.nChunks = s.byteLength == 0 ? 1 : (s.byteLength + CHUNK_BYTES - 1) / CHUNK_BYTES;
    }

    /// @notice C2: byte length of chunk `c` of a tensor of `byteLength` bytes (last one short).
    function chunkLength(uint256 byteLength, uint256 c) internal pure returns (uint256) {
        uint256 start = c * CHUNK_BYTES;
        if (start >= byteLength) return 0;
        uint256 rest = byteLength - start;
        return rest < CHUNK_BYTES ? rest : CHUNK_BYTES;
    }

    /// @notice C5: trace_leaf(i) = keccak256(0x03 ‖ uint32 i ‖ op_hash ‖ output_root).
    function traceLeaf(uint32 index, bytes32 opHash, bytes32 outputRoot) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(TRACE_TAG, index, opHash, outputRoot));
    }

    /// @notice §L10 compact-map leaf: map_leaf(op) = keccak256(0x05 ‖ u32 op), one per op of
    ///         `compact_ops` (the ops a compact trace keeps), in order.
    /// @param op The full-trace op index (0 ≤ op < P).
    function compactMapLeaf(uint32 op) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(COMPACT_MAP_TAG, op));
    }

    /// @notice §L10 compact commitment: compact_root = keccak256(0x06 ‖ u32 P ‖ u32 Pc ‖
    ///         u32 c_tok ‖ map_root), what the model registry stores beside the program root.
    /// @param P Trace ops a step in the full trace.
    /// @param Pc Trace ops a step in the compact trace (the length of `compact_ops`).
    /// @param cTok The token op's place in `compact_ops`.
    /// @param mapRoot C3 root over the compact-map leaves of `compact_ops`.
    function compactRoot(uint32 P, uint32 Pc, uint32 cTok, bytes32 mapRoot) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(COMPACT_TAG, P, Pc, cTok, mapRoot));
    }

    /// @notice C1: element `e` of a chunk as the little-endian unsigned integer of its bytes
    ///         (for float32 this is the IEEE bit pattern).
    function elementBits(bytes memory chunk, uint256 e, uint256 size) internal pure returns (uint256 v) {
        uint256 o = e * size;
        for (uint256 k = size; k > 0; --k) {
            v = (v << 8) | uint8(chunk[o + k - 1]);
        }
    }

    /// @notice C6: uint32 big-endian per token, concatenated.
    function tokenBytes(uint32[] memory tokens) internal pure returns (bytes memory out) {
        out = new bytes(4 * tokens.length);
        for (uint256 i = 0; i < tokens.length; ++i) {
            uint32 t = tokens[i];
            out[4 * i] = bytes1(uint8(t >> 24));
            out[4 * i + 1] = bytes1(uint8(t >> 16));
            out[4 * i + 2] = bytes1(uint8(t >> 8));
            out[4 * i + 3] = bytes1(uint8(t));
        }
    }

    /// @notice C6: output_hash = keccak256(tokens_bytes).
    function tokensHash(uint32[] memory tokens) internal pure returns (bytes32) {
        return keccak256(tokenBytes(tokens));
    }
}
