// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Merkle
/// @notice The binary keccak Merkle tree of docs/commitments.md C3, shared by tensors and
///         traces, plus the k-ary dissection helper the dispute game uses.
/// @dev Node hashes are computed in scratch memory (no allocation) because the dispute game
///      re-hashes up to 2^b children per move and Merkle proofs in every one-step.
library Merkle {
    /// @dev C3 padding leaf.
    bytes32 internal constant ZERO = bytes32(0);

    error BadWidth(uint256 width);
    error DepthTooLarge(uint256 depth);

    /// @notice C3 inner node: keccak256(0x01 ‖ left ‖ right).
    function node(bytes32 left, bytes32 right) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 0x01)
            mstore(add(p, 1), left)
            mstore(add(p, 33), right)
            h := keccak256(p, 65)
        }
    }

    /// @notice C3 chunk leaf: keccak256(0x00 ‖ chunk).
    function chunkLeaf(bytes memory chunk) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x00), chunk));
    }

    /// @notice Root of a subtree whose 2^b nodes at its bottom are given (C3 k-ary dissection).
    /// @dev Hashes in place; the caller's array is overwritten. Width must be a power of two.
    function rootOfLevel(bytes32[] memory nodes) internal pure returns (bytes32) {
        uint256 n = nodes.length;
        if (n == 0 || n & (n - 1) != 0) revert BadWidth(n);
        while (n > 1) {
            uint256 half = n >> 1;
            for (uint256 i = 0; i < half; ++i) {
                nodes[i] = node(nodes[2 * i], nodes[2 * i + 1]);
            }
            n = half;
        }
        return nodes[0];
    }

    /// @notice Root of a C3 tree over `leaves` (padded with ZERO to a power of two).
    function rootOf(bytes32[] memory leaves) internal pure returns (bytes32) {
        uint256 p = nextPow2(leaves.length);
        bytes32[] memory level = new bytes32[](p);
        for (uint256 i = 0; i < leaves.length; ++i) {
            level[i] = leaves[i];
        }
        return rootOfLevel(level);
    }

    /// @notice Recomputes the root from a leaf and its bottom-up siblings (C3 proof; bit j of
    ///         `index` says the node at level j is a right child).
    function rootFromProof(bytes32 leaf, uint256 index, bytes32[] memory proof)
        internal
        pure
        returns (bytes32 h)
    {
        h = leaf;
        for (uint256 j = 0; j < proof.length; ++j) {
            h = (index >> j) & 1 == 1 ? node(proof[j], h) : node(h, proof[j]);
        }
    }

    /// @notice True when `proof` proves `leaf` at `index` under `root` in a tree of `depth`.
    function verify(bytes32 leaf, uint256 index, bytes32[] memory proof, bytes32 root, uint256 depth)
        internal
        pure
        returns (bool)
    {
        if (proof.length != depth || (depth < 256 && index >> depth != 0)) return false;
        return rootFromProof(leaf, index, proof) == root;
    }

    /// @notice Root of a subtree of `height` levels whose leaves are all ZERO (C3 padding).
    function zeroRoot(uint256 height) internal pure returns (bytes32 h) {
        for (uint256 i = 0; i < height; ++i) {
            h = node(h, h);
        }
    }

    /// @notice Re-roots a tree of depth `fromDepth` as the left part of a ZERO-padded tree of
    ///         depth `toDepth`: the same leaves, padded further, as C3 would commit them.
    /// @dev Lets two parties whose committed trace lengths round to different depths be
    ///      dissected over one common tree shape.
    function lift(bytes32 root, uint256 fromDepth, uint256 toDepth) internal pure returns (bytes32) {
        if (toDepth > 64) revert DepthTooLarge(toDepth);
        bytes32 z = zeroRoot(fromDepth);
        for (uint256 d = fromDepth; d < toDepth; ++d) {
            root = node(root, z);
            z = node(z, z);
        }
        return root;
    }

    /// @notice C3: P = next power of two ≥ n (P = 1 for n ≤ 1).
    function nextPow2(uint256 n) internal pure returns (uint256 p) {
        p = 1;
        while (p < n) p <<= 1;
    }

    /// @notice Depth of the C3 tree over n leaves: log2(nextPow2(n)).
    function depthOf(uint256 n) internal pure returns (uint256 d) {
        uint256 p = 1;
        while (p < n) {
            p <<= 1;
            ++d;
        }
    }
}
