// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Merkle} from "../../lib/Merkle.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";

/// @notice The "alphabet" world of the game tests: a trivial, cheap truth function standing in
///         for a real model run, so game logic can be tested at real sizes. The real
///         one-step verifier lives beside this (issue 6); this is only the test step.
/// @dev Truth: trace of `length` leaves; op(i) = keccak("op", seed, i); every op outputs a
///      float32 tensor of `elems` elements; element (i, 0) is a mix of (seed, i) and element
///      (i, e > 0) a mix of (seed, e), so the data root of every leaf is cheap (rewrite one
///      element of chunk 0, hash it, walk a precomputed path) while any chunk can be disputed.
library AlphabetWorld {
    struct World {
        uint256 seed;
        uint64 length;
        uint32 elems;
        uint32 nTokens;
    }

    uint256 internal constant PER_CHUNK = 256; // float32 elements per 1 KiB chunk (C2)

    function op(World memory w, uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("op", w.seed, i));
    }

    function header(World memory w) internal pure returns (bytes memory) {
        return abi.encodePacked(bytes1(0x02), uint8(1), uint8(1), w.elems);
    }

    function element(World memory w, uint256 i, uint256 e) internal pure returns (uint32) {
        uint256 x = e == 0 ? (i + 1) * 0x9E3779B1 : (e + 1) * 0x85EBCA77;
        return uint32(x ^ w.seed);
    }

    /// @dev Level 3: the honest accumulator after link j of element (i, e)'s chain of n links;
    ///      the last one is the element itself.
    function acc(World memory w, uint256 i, uint256 e, uint256 j, uint256 n) internal pure returns (uint32) {
        if (j + 1 == n) return element(w, i, e);
        return uint32(uint256(keccak256(abi.encode("acc", w.seed, i, e, j))));
    }

    /// @dev Link j of element (i, e) applied to `start`: a true start (link 0: any start, as it
    ///      starts from the agreed acc input) gives the honest accumulator, any other start some
    ///      other value; so a chain that ends wrong from a true start has a false link.
    function link(World memory w, uint256 i, uint256 e, uint256 j, uint256 n, uint256 start)
        internal
        pure
        returns (uint32)
    {
        if (j == 0 || start == acc(w, i, e, j - 1, n)) return acc(w, i, e, j, n);
        return uint32(uint256(keccak256(abi.encode("off", w.seed, i, e, j, start))));
    }

    /// @dev The honest chain of n links of element (i, e).
    function chain(World memory w, uint256 i, uint256 e, uint256 n) internal pure returns (uint32[] memory accs) {
        accs = new uint32[](n);
        for (uint256 j = 0; j < n; ++j) {
            accs[j] = acc(w, i, e, j, n);
        }
    }

    function token(World memory w, uint256 j) internal pure returns (uint32) {
        return uint32(uint256(keccak256(abi.encode("tok", w.seed, j))) % 49152);
    }

    function tokens(World memory w) internal pure returns (uint32[] memory t) {
        t = new uint32[](w.nTokens);
        for (uint256 j = 0; j < w.nTokens; ++j) {
            t[j] = token(w, j);
        }
    }

    function nChunks(World memory w) internal pure returns (uint256) {
        uint256 b = uint256(w.elems) * 4;
        return b == 0 ? 1 : (b + 1023) / 1024;
    }

    /// @dev Writes chunk c of leaf i's output into `buf` (capacity ≥ 1024, length set here);
    ///      element `badE` is replaced by `badBits` when `corrupt`. Reusing one buffer keeps
    ///      memory (and the tests' run time) linear.
    function fillChunk(bytes memory buf, World memory w, uint256 i, uint256 c, bool corrupt, uint256 badE, uint32 badBits)
        internal
        pure
        returns (bytes memory)
    {
        uint256 start = c * PER_CHUNK;
        uint256 end = start + PER_CHUNK;
        if (end > w.elems) end = w.elems;
        uint256 len = end > start ? (end - start) * 4 : 0;
        assembly ("memory-safe") {
            mstore(buf, len)
        }
        for (uint256 e = start; e < end; ++e) {
            uint32 v = corrupt && e == badE ? badBits : element(w, i, e);
            assembly ("memory-safe") {
                let p := add(add(buf, 32), mul(sub(e, start), 4))
                mstore8(p, v)
                mstore8(add(p, 1), shr(8, v))
                mstore8(add(p, 2), shr(16, v))
                mstore8(add(p, 3), shr(24, v))
            }
        }
        return buf;
    }

    function chunk(World memory w, uint256 i, uint256 c, bool corrupt, uint256 badE, uint32 badBits)
        internal
        pure
        returns (bytes memory)
    {
        return fillChunk(new bytes(1024), w, i, c, corrupt, badE, badBits);
    }

    /// @dev All chunk leaves of leaf i's output (used only for the disputed leaf).
    function chunkLeaves(World memory w, uint256 i, bool corrupt, uint256 badE, uint32 badBits)
        internal
        pure
        returns (bytes32[] memory leaves)
    {
        uint256 n = nChunks(w);
        leaves = new bytes32[](n);
        bytes memory buf = new bytes(1024);
        for (uint256 c = 0; c < n; ++c) {
            leaves[c] = Merkle.chunkLeaf(fillChunk(buf, w, i, c, corrupt, badE, badBits));
        }
    }

    /// @dev Siblings of chunk 0 in the data tree; identical for every leaf (chunks ≥ 1 do not
    ///      depend on i).
    function chunk0Path(World memory w) internal pure returns (bytes32[] memory path) {
        bytes32[] memory leaves = chunkLeaves(w, 0, false, 0, 0);
        uint256 p = Merkle.nextPow2(leaves.length);
        bytes32[] memory level = new bytes32[](p);
        for (uint256 k = 0; k < leaves.length; ++k) {
            level[k] = leaves[k];
        }
        uint256 depth = Merkle.depthOf(leaves.length);
        path = new bytes32[](depth);
        for (uint256 d = 0; d < depth; ++d) {
            path[d] = level[1];
            uint256 half = level.length / 2;
            bytes32[] memory up = new bytes32[](half);
            for (uint256 k = 0; k < half; ++k) {
                up[k] = Merkle.node(level[2 * k], level[2 * k + 1]);
            }
            level = up;
        }
    }

    /// @dev The honest trace leaf i, given chunk0Path (fast path).
    function leaf(World memory w, uint256 i, bytes32[] memory path, bytes memory buf, bytes memory hdr)
        internal
        pure
        returns (bytes32)
    {
        // buf holds chunk 0 of any leaf; only element 0 depends on i.
        uint32 v = element(w, i, 0);
        assembly ("memory-safe") {
            let p := add(buf, 32)
            mstore8(p, v)
            mstore8(add(p, 1), shr(8, v))
            mstore8(add(p, 2), shr(16, v))
            mstore8(add(p, 3), shr(24, v))
        }
        bytes32 dr = Merkle.rootFromProof(Merkle.chunkLeaf(buf), 0, path);
        return Commitments.traceLeaf(uint32(i), op(w, i), Commitments.tensorRoot(hdr, dr));
    }

    function dataRoot(World memory w, uint256 i, bool corrupt, uint256 badE, uint32 badBits)
        internal
        pure
        returns (bytes32)
    {
        return Merkle.rootOf(chunkLeaves(w, i, corrupt, badE, badBits));
    }
}

/// @notice The trivial one-step used by the game tests: decides every claim kind from the
///         alphabet world's truth function. Witness "bad" makes it revert (the interface's
///         "invalid witness reverts" rule). Level 3 as the real verifier (docs/trace-layout.md
///         §L9): with `chain` > 0 every Element has that many links, `verify` refuses an element
///         whole (ChainRequired) and decides a link claim (`AlphabetWorld.link`).
contract AlphabetVerifier is IOneStepVerifier {
    using AlphabetWorld for AlphabetWorld.World;

    AlphabetWorld.World public world;
    uint256 public chain;

    error BadWitness();
    error ChainRequired(uint256 links);
    error BadLink();

    function setWorld(AlphabetWorld.World memory w) external {
        world = w;
    }

    function setChainLength(uint256 n) external {
        chain = n;
    }

    function verify(Claim kind, StepContext calldata ctx, bytes calldata witness) external view returns (bool) {
        if (keccak256(witness) == keccak256("bad")) revert BadWitness();
        AlphabetWorld.World memory w = world;
        if (kind == Claim.Element) {
            bool ours = ctx.opHash == w.op(ctx.leafIndex) && ctx.elementIndex < w.elems;
            uint256 n = chain;
            if (ctx.claim.length != 0) {
                (uint256 j, uint256 start) = abi.decode(ctx.claim, (uint256, uint256));
                if (n == 0 || j >= n) revert BadLink();
                return ours && ctx.claimedBits == w.link(ctx.leafIndex, ctx.elementIndex, j, n, start);
            }
            if (n != 0) revert ChainRequired(n);
            return ours && ctx.claimedBits == w.element(ctx.leafIndex, ctx.elementIndex);
        }
        if (kind == Claim.OpHash) return ctx.opHash == w.op(ctx.leafIndex);
        if (kind == Claim.OutputHeader) return keccak256(ctx.claim) == keccak256(w.header());
        if (kind == Claim.TraceEnd) return (ctx.leafIndex == w.length) == (ctx.claimedBits == 1);
        // OutputToken
        if (ctx.elementIndex >= w.nTokens) return ctx.claimedBits == type(uint256).max;
        return ctx.claimedBits == w.token(ctx.elementIndex);
    }

    function chainLength(StepContext calldata, bytes calldata witness) external view returns (uint256) {
        if (keccak256(witness) == keccak256("bad")) revert BadWitness();
        return chain;
    }
}
