// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {Float32} from "../../float/Float32.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";
import {OneStepVerifier} from "../../verifier/OneStepVerifier.sol";
import {TraceOps} from "../../verifier/TraceOps.sol";

/// @notice Level 3 of the one-step (docs/trace-layout.md §L9) on a real DOT op: a one-op program
///         whose DOT reads weights A [1,1,256] and B [2,256] (and, where named, an acc weight
///         [1,1,2]), with the witness built here exactly as `referee/witness.py` does (§L7).
///         The expected accumulators come from an independent fma loop over the same values.
contract DotChainTest is Test {
    OneStepVerifier internal v;

    uint256 internal constant K = 256;
    uint256 internal constant N = 2;
    uint256 internal constant E = 1; // the disputed element: row n = 1 of B (its own chunk)
    uint8 internal constant W = 2; // §L4 source WEIGHT

    /// @dev A weight tensor: the witness entry, its C4 root and its values.
    struct Weight {
        OneStepVerifier.Tensor t;
        bytes32 root;
        uint32[] vals;
    }

    /// @dev One DOT op (§L5.3): attrs k0, k1, group = 1, causal.
    struct Dot {
        uint256 k0;
        uint256 k1;
        uint256 causal;
        bool acc;
    }

    Weight internal a;
    Weight internal b;
    Weight internal c; // the acc input
    bytes internal job;

    function setUp() public {
        v = new OneStepVerifier();
        job = abi.encodePacked(uint32(1), uint32(2), uint32(3)); // L0 = 3
    }

    // ------------------------------------------------------------------ building

    /// @dev Values in ±[0.5, 2): a 256-step chain stays finite and rounds at every step.
    function _vals(string memory tag, uint256 n) internal pure returns (uint32[] memory xs) {
        xs = new uint32[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 h = uint256(keccak256(abi.encode(tag, i)));
            xs[i] = uint32(((h >> 255) << 31) | (0x3F000000 + (h & 0xFFFFFF)));
        }
    }

    /// @dev A float32 weight of `dims` with its chunks (C2), data root (C3) and C4 root.
    function _weight(uint32[] memory dims, uint32[] memory xs) internal pure returns (Weight memory wt) {
        bytes memory hdr = abi.encodePacked(bytes1(0x02), uint8(1), uint8(dims.length));
        for (uint256 i = 0; i < dims.length; ++i) {
            hdr = abi.encodePacked(hdr, dims[i]);
        }
        bytes memory data = new bytes(4 * xs.length);
        for (uint256 i = 0; i < xs.length; ++i) {
            for (uint256 k = 0; k < 4; ++k) {
                data[4 * i + k] = bytes1(uint8(xs[i] >> (8 * k))); // C1 little-endian
            }
        }
        uint256 nc = (data.length + 1023) / 1024;
        bytes[] memory chunks = new bytes[](nc);
        bytes32[] memory leaves = new bytes32[](Merkle.nextPow2(nc));
        for (uint256 j = 0; j < nc; ++j) {
            uint256 len = data.length - 1024 * j < 1024 ? data.length - 1024 * j : 1024;
            chunks[j] = new bytes(len);
            for (uint256 i = 0; i < len; ++i) {
                chunks[j][i] = data[1024 * j + i];
            }
            leaves[j] = Merkle.chunkLeaf(chunks[j]);
        }
        wt.t.header = hdr;
        wt.t.dataRoot = Merkle.rootOf(leaves);
        wt.t.leafProof = new bytes32[](0);
        wt.t.chunks = new TraceOps.Chunk[](nc);
        for (uint256 j = 0; j < nc; ++j) {
            wt.t.chunks[j] = TraceOps.Chunk({index: j, data: chunks[j], proof: _proof(leaves, j)});
        }
        wt.root = keccak256(abi.encodePacked(hdr, wt.t.dataRoot));
        wt.vals = xs;
    }

    function _proof(bytes32[] memory leaves, uint256 idx) internal pure returns (bytes32[] memory proof) {
        uint256 depth = Merkle.depthOf(leaves.length);
        proof = new bytes32[](depth);
        bytes32[] memory level = leaves;
        for (uint256 d = 0; d < depth; ++d) {
            proof[d] = level[idx ^ 1];
            bytes32[] memory up = new bytes32[](level.length / 2);
            for (uint256 i = 0; i < up.length; ++i) {
                up[i] = Merkle.node(level[2 * i], level[2 * i + 1]);
            }
            level = up;
            idx >>= 1;
        }
    }

    function _dims(uint32 x, uint32 y, uint32 z) internal pure returns (uint32[] memory d) {
        d = new uint32[](3);
        (d[0], d[1], d[2]) = (x, y, z);
    }

    function _dims(uint32 x, uint32 y) internal pure returns (uint32[] memory d) {
        d = new uint32[](2);
        (d[0], d[1]) = (x, y);
    }

    function _setWeights() internal {
        Weight memory wa = _weight(_dims(1, 1, uint32(K)), _vals("A", K));
        Weight memory wb = _weight(_dims(uint32(N), uint32(K)), _vals("B", N * K));
        Weight memory wc = _weight(_dims(1, 1, uint32(N)), _vals("C", N));
        _store(a, wa);
        _store(b, wb);
        _store(c, wc);
    }

    function _store(Weight storage s, Weight memory m) internal {
        s.t.header = m.t.header;
        s.t.dataRoot = m.t.dataRoot;
        delete s.t.chunks;
        for (uint256 j = 0; j < m.t.chunks.length; ++j) {
            s.t.chunks.push(m.t.chunks[j]);
        }
        s.root = m.root;
        s.vals = m.vals;
    }

    /// @dev §L2 record of a DOT with output [1, 1, N] over weights A, B (and acc).
    function _dotRecord(Dot memory d) internal view returns (bytes memory) {
        uint256 nin = d.acc ? 3 : 2;
        uint256 w0 = (uint256(1) << 248) | (uint256(TraceOps.DOT) << 240) | (uint256(1) << 232) | (uint256(3) << 224)
            | (nin << 216) | (uint256(4) << 208) | (uint256(W) << 200) | (uint256(W) << 192);
        if (d.acc) w0 |= uint256(W) << 184;
        bytes memory rec = abi.encodePacked(w0, uint256(1) << 128, uint256(1) << 128, uint256(N) << 128, a.root, b.root);
        if (d.acc) rec = abi.encodePacked(rec, c.root);
        return abi.encodePacked(rec, d.k0, d.k1, uint256(1), d.causal);
    }

    /// @dev §L2 record of EW copy (fn 22) of A: a non-DOT op over the same weight.
    function _copyRecord() internal view returns (bytes memory) {
        uint256 w0 = (uint256(1) << 248) | (uint256(TraceOps.EW) << 240) | (uint256(1) << 232) | (uint256(3) << 224)
            | (uint256(1) << 216) | (uint256(4) << 208) | (uint256(W) << 200);
        return abi.encodePacked(
            w0, uint256(1) << 128, uint256(1) << 128, uint256(K) << 128, a.root, uint256(22), uint256(0), uint256(0), uint256(0)
        );
    }

    /// @dev A one-op program (P = 1: leaf i is step i): witness and context for element E.
    function _case(bytes memory rec, uint256 nin, bool chunks, uint256 leaf)
        internal
        view
        returns (IOneStepVerifier.StepContext memory ctx, bytes memory witness)
    {
        bytes32 h = keccak256(rec);
        OneStepVerifier.Tensor[] memory ins = new OneStepVerifier.Tensor[](nin);
        ins[0] = a.t;
        if (nin > 1) ins[1] = b.t;
        if (nin > 2) ins[2] = c.t;
        if (!chunks) {
            for (uint256 k = 0; k < nin; ++k) {
                ins[k].chunks = new TraceOps.Chunk[](0);
            }
        }
        OneStepVerifier.Witness memory w = OneStepVerifier.Witness({
            nOps: 1,
            tokenOp: 0,
            eos: type(uint32).max,
            opsRoot: h,
            record: rec,
            opProof: new bytes32[](0),
            job: job,
            config: "",
            inputs: ins
        });
        witness = abi.encode(w);
        ctx.programRoot = keccak256(abi.encodePacked(bytes1(0x04), uint32(1), uint32(0), type(uint32).max, h));
        ctx.inputHash = keccak256(job);
        ctx.leafIndex = leaf;
        ctx.opHash = h;
        ctx.elementIndex = E;
    }

    function _dotCase(Dot memory d, uint256 leaf)
        internal
        returns (IOneStepVerifier.StepContext memory ctx, bytes memory witness)
    {
        _setWeights();
        return _case(_dotRecord(d), d.acc ? 3 : 2, true, leaf);
    }

    /// @dev Reference: the fma chain over k = from … to − 1 of element E from `acc`.
    function _ref(uint256 from, uint256 to, uint32 acc) internal view returns (uint32) {
        for (uint256 k = from; k < to; ++k) {
            acc = Float32.fma(a.vals[k], b.vals[E * K + k], acc);
        }
        return acc;
    }

    function _link(IOneStepVerifier.StepContext memory ctx, bytes memory w, uint256 j, uint256 start, uint256 claimed)
        internal
        view
        returns (bool)
    {
        ctx.claim = abi.encode(j, start);
        ctx.claimedBits = claimed;
        return v.verify(IOneStepVerifier.Claim.Element, ctx, w);
    }

    // ------------------------------------------------------------------ tests

    function testK256HasFourLinksEachDecided() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 0, false), 0);
        assertEq(v.chainLength(ctx, w), 4);
        (, bytes memory bare) = _case(_dotRecord(Dot(0, K, 0, false)), 2, false, 0);
        assertEq(v.chainLength(ctx, bare), 4, "shapes only: no chunk needed");
        uint32 start = 0;
        for (uint256 j = 0; j < 4; ++j) {
            uint32 end = _ref(64 * j, 64 * j + 64, start);
            assertTrue(_link(ctx, w, j, start, end), "true link");
            assertFalse(_link(ctx, w, j, start, end ^ 1), "wrong end");
            if (j > 0) assertFalse(_link(ctx, w, j, start ^ 0x100, end), "the start is read");
            start = end;
        }
        assertEq(start, _ref(0, K, 0)); // the last accumulator is the element (one §3.1 chain)
    }

    function testWholeElementRefusedWhenChained() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 0, false), 0);
        ctx.claimedBits = _ref(0, K, 0);
        vm.expectRevert(abi.encodeWithSelector(OneStepVerifier.ChainRequired.selector, uint256(4)));
        v.verify(IOneStepVerifier.Claim.Element, ctx, w);
    }

    function testBadLinks() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 0, false), 0);
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, 4, 0, 0);
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, type(uint256).max, 0, 0);
        ctx.claim = abi.encode(uint256(1));
        vm.expectRevert(TraceOps.BadLink.selector);
        v.verify(IOneStepVerifier.Claim.Element, ctx, w);
        // K = 64: checked whole, no link to name
        (ctx, w) = _case(_dotRecord(Dot(0, 64, 0, false)), 2, true, 0);
        assertEq(v.chainLength(ctx, w), 0);
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, 0, 0, _ref(0, 64, 0));
        ctx.claim = "";
        ctx.claimedBits = _ref(0, 64, 0); // the whole element = link 0 of the K = 256 chain
        assertTrue(v.verify(IOneStepVerifier.Claim.Element, ctx, w));
    }

    function verifyLink(IOneStepVerifier.StepContext memory ctx, bytes memory w, uint256 j, uint256 start, uint256 claimed)
        external
        view
        returns (bool)
    {
        return _link(ctx, w, j, start, claimed);
    }

    function testLinkBoundaryAt65Steps() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(10, 75, 0, false), 0);
        assertEq(v.chainLength(ctx, w), 2);
        uint32 l0 = _ref(10, 74, 0);
        assertTrue(_link(ctx, w, 0, 0, l0));
        assertTrue(_link(ctx, w, 1, l0, _ref(74, 75, l0)), "a one-step last link");
    }

    function testAccInputStartsLinkZero() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 0, true), 0);
        assertEq(v.chainLength(ctx, w), 4);
        uint32 acc = c.vals[E];
        uint32 l0 = _ref(0, 64, acc);
        assertTrue(_link(ctx, w, 0, 0, l0));
        assertTrue(_link(ctx, w, 0, 0xDEAD, l0), "link 0 ignores the start");
        assertFalse(_link(ctx, w, 0, 0, _ref(0, 64, 0)), "not from +0");
        assertTrue(_link(ctx, w, 1, l0, _ref(64, 128, l0)));
    }

    function testCausalClipsLinks() public {
        // causal 1, row 0: kend = min(256, past + 1); P = 1 so leaf i is step i, past = L0 + i − 1
        Dot memory d = Dot(0, K, 1, false);
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(d, 98); // past 100
        assertEq(v.chainLength(ctx, w), 2);
        uint32 l0 = _ref(0, 64, 0);
        assertTrue(_link(ctx, w, 0, 0, l0));
        assertTrue(_link(ctx, w, 1, l0, _ref(64, 101, l0)), "clipped last link");
        assertFalse(_link(ctx, w, 1, l0, _ref(64, 128, l0)), "past kend");
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, 2, 0, 0);
        (ctx, w) = _case(_dotRecord(d), 2, true, 62); // past 64: 65 steps, 2 links
        assertEq(v.chainLength(ctx, w), 2);
        (ctx, w) = _case(_dotRecord(d), 2, true, 61); // past 63: 64 steps, whole
        assertEq(v.chainLength(ctx, w), 0);
        ctx.claimedBits = _ref(0, 64, 0);
        assertTrue(v.verify(IOneStepVerifier.Claim.Element, ctx, w));
        (ctx, w) = _case(_dotRecord(d), 2, false, 0); // step 0: past 0, one step
        assertEq(v.chainLength(ctx, w), 0);
        (ctx, w) = _case(_dotRecord(d), 2, false, 500); // past ≥ K: not clipped
        assertEq(v.chainLength(ctx, w), 4);
    }

    function testCausalMaskedDotHasNoChain() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 2, false), 0);
        assertEq(v.chainLength(ctx, w), 0);
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, 0, 0, 0);
    }

    function testNonDotOpHasNoChain() public {
        _setWeights();
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _case(_copyRecord(), 1, true, 0);
        assertEq(v.chainLength(ctx, w), 0);
        ctx.claimedBits = a.vals[E];
        assertTrue(v.verify(IOneStepVerifier.Claim.Element, ctx, w));
        vm.expectRevert(TraceOps.BadLink.selector);
        this.verifyLink(ctx, w, 0, 0, a.vals[E]);
    }

    function testChainLengthForeignOpIsZero() public {
        (IOneStepVerifier.StepContext memory ctx, bytes memory w) = _dotCase(Dot(0, K, 0, false), 0);
        ctx.opHash = keccak256("another op");
        assertEq(v.chainLength(ctx, w), 0);
        assertFalse(_link(ctx, w, 0, 0, _ref(0, 64, 0)), "a foreign op is wrong, as for a whole element");
    }

    function testChainLengthRejectsBadWitness() public {
        (IOneStepVerifier.StepContext memory ctx,) = _dotCase(Dot(0, K, 0, false), 0);
        // B's header does not match the root in the record
        Weight memory wa = _weight(_dims(1, 1, uint32(K)), _vals("A", K));
        Weight memory bad = _weight(_dims(uint32(N), uint32(K)), _vals("X", N * K));
        OneStepVerifier.Tensor[] memory ins = new OneStepVerifier.Tensor[](2);
        ins[0] = wa.t;
        ins[1] = bad.t;
        bytes memory rec = _dotRecord(Dot(0, K, 0, false));
        OneStepVerifier.Witness memory wit = OneStepVerifier.Witness(
            1, 0, type(uint32).max, keccak256(rec), rec, new bytes32[](0), job, "", ins
        );
        vm.expectRevert(abi.encodeWithSelector(OneStepVerifier.BadInput.selector, uint256(1)));
        v.chainLength(ctx, abi.encode(wit));
        // a missing input tensor
        OneStepVerifier.Tensor[] memory one = new OneStepVerifier.Tensor[](1);
        one[0] = wa.t;
        wit.inputs = one;
        vm.expectRevert(abi.encodeWithSelector(OneStepVerifier.BadInput.selector, uint256(2)));
        v.chainLength(ctx, abi.encode(wit));
        // the job input is bound
        wit.inputs = ins;
        wit.job = hex"00000001";
        vm.expectRevert(OneStepVerifier.BadJobInput.selector);
        v.chainLength(ctx, abi.encode(wit));
    }
}
