// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {TraceOps} from "../../verifier/TraceOps.sol";
import {Float32} from "../../float/Float32.sol";

/// @notice Hand-made cases for each SAMPLE stage (docs/trace-layout.md §L5.10), the one-step
///         rules of SORT and SCAN, and the whole chain of stages against tokens from the
///         Python oracle `repops.sample.sample_token` (RepOps spec §7.3). The same code is
///         held to the Python mirror on real traces by tests/referee/test_onestep_diff.py.
contract SampleOpsTest is Test {
    uint32 internal constant NAN = 0x7FC00000;
    uint32 internal constant INF = 0x7F800000;
    uint32 internal constant NINF = 0xFF800000;
    uint32 internal constant NZERO = 0x80000000;
    uint32 internal constant ONE = 0x3F800000;
    uint32 internal constant HALF = 0x3F000000;
    uint32 internal constant TWO_M24 = 0x33800000; // 2^-24

    // ------------------------------------------------------------------ builders

    /// @dev A proven-looking row [1, n] of `size`-byte elements of C1 dtype `dtype`: the chunks
    ///      hold the little-endian bytes, as the verifier hands them to TraceOps.
    function _mk(uint256[] memory xs, uint256 size, uint8 dtype) internal pure returns (TraceOps.In memory t) {
        uint256 n = xs.length;
        t.present = true;
        t.dtype = dtype;
        t.size = size;
        t.n = n;
        t.dims = new uint256[](2);
        t.dims[0] = 1;
        t.dims[1] = n;
        uint256 bytesLen = n * size;
        uint256 nc = bytesLen == 0 ? 1 : (bytesLen + 1023) / 1024;
        t.chunks = new TraceOps.Chunk[](nc);
        for (uint256 c = 0; c < nc; ++c) {
            uint256 len = bytesLen - c * 1024 < 1024 ? bytesLen - c * 1024 : 1024;
            bytes memory d = new bytes(len);
            for (uint256 i = 0; i < len; ++i) {
                uint256 o = c * 1024 + i;
                d[i] = bytes1(uint8(xs[o / size] >> (8 * (o % size))));
            }
            t.chunks[c].index = c;
            t.chunks[c].data = d;
        }
    }

    /// @dev Big-endian u32 words (`hex"3f800000_..."`) as values.
    function _vals(bytes memory be) internal pure returns (uint256[] memory xs) {
        xs = new uint256[](be.length / 4);
        for (uint256 i = 0; i < xs.length; ++i) {
            xs[i] = (uint256(uint8(be[4 * i])) << 24) | (uint256(uint8(be[4 * i + 1])) << 16)
                | (uint256(uint8(be[4 * i + 2])) << 8) | uint256(uint8(be[4 * i + 3]));
        }
    }

    /// @dev A float32 row from big-endian words.
    function _in(bytes memory be) internal pure returns (TraceOps.In memory) {
        return _mk(_vals(be), 4, 1);
    }

    function _f32(uint256[] memory xs) internal pure returns (TraceOps.In memory) {
        return _mk(xs, 4, 1);
    }

    /// @dev An int32 row (values as two's-complement bits).
    function _i32(uint256[] memory xs) internal pure returns (TraceOps.In memory) {
        return _mk(xs, 4, 2);
    }

    function _i64(uint256[] memory xs) internal pure returns (TraceOps.In memory) {
        return _mk(xs, 8, 3);
    }

    /// @dev An int32 index tensor [1, 1].
    function _one(uint256 x) internal pure returns (TraceOps.In memory) {
        uint256[] memory xs = new uint256[](1);
        xs[0] = x;
        return _mk(xs, 4, 2);
    }

    function _none() internal pure returns (TraceOps.In memory t) {}

    function _op(uint256 stage, uint256 outN) internal pure returns (TraceOps.Op memory op) {
        op.code = TraceOps.SAMPLE;
        op.dims = new uint256[](2);
        op.dims[0] = 1;
        op.dims[1] = outN;
        op.attrs = new uint256[](1);
        op.attrs[0] = stage;
    }

    /// @dev SORT (block) or MERGE (half) with its second attribute.
    function _op(uint256 stage, uint256 outN, uint256 blk) internal pure returns (TraceOps.Op memory op) {
        op = _op(stage, outN);
        op.attrs = new uint256[](2);
        op.attrs[0] = stage;
        op.attrs[1] = blk;
    }

    function _env(uint32 t, uint32 topK, uint32 topP, uint64 seed, uint256 step)
        internal
        pure
        returns (TraceOps.Env memory env)
    {
        env.temperature = t;
        env.topK = topK;
        env.topP = topP;
        env.seed = seed;
        env.step = step;
    }

    function _ins(TraceOps.In memory a) internal pure returns (TraceOps.In[] memory ins) {
        ins = new TraceOps.In[](1);
        ins[0] = a;
    }

    function _ins(TraceOps.In memory a, TraceOps.In memory b) internal pure returns (TraceOps.In[] memory ins) {
        ins = new TraceOps.In[](2);
        ins[0] = a;
        ins[1] = b;
    }

    function _ins(TraceOps.In memory a, TraceOps.In memory b, TraceOps.In memory c)
        internal
        pure
        returns (TraceOps.In[] memory ins)
    {
        ins = new TraceOps.In[](3);
        ins[0] = a;
        ins[1] = b;
        ins[2] = c;
    }

    function _ins(TraceOps.In memory a, TraceOps.In memory b, TraceOps.In memory c, TraceOps.In memory d)
        internal
        pure
        returns (TraceOps.In[] memory ins)
    {
        ins = new TraceOps.In[](4);
        ins[0] = a;
        ins[1] = b;
        ins[2] = c;
        ins[3] = d;
    }

    function _el(uint256 stage, uint256 outN, TraceOps.In[] memory ins, uint256 e, TraceOps.Env memory env)
        internal
        pure
        returns (uint256)
    {
        return TraceOps.element(_op(stage, outN), ins, e, env);
    }

    /// @dev External entry so that reverts can be expected.
    function holdsExt(
        TraceOps.Op memory op,
        TraceOps.In[] memory ins,
        TraceOps.In memory me,
        uint256 e,
        TraceOps.Env memory env,
        uint256 c
    ) external pure returns (bool) {
        return TraceOps.holds(op, ins, me, e, env, c);
    }

    function elementExt(TraceOps.Op memory op, TraceOps.In[] memory ins, uint256 e, TraceOps.Env memory env)
        external
        pure
        returns (uint256)
    {
        return TraceOps.element(op, ins, e, env);
    }

    function _holds(TraceOps.Op memory op, TraceOps.In[] memory ins, uint256 e, TraceOps.Env memory env, uint256 c)
        internal
        pure
        returns (bool)
    {
        return TraceOps.holds(op, ins, _none(), e, env, c);
    }

    // ------------------------------------------------------------------ §7.2 PRNG

    function testPrngVectors() public pure {
        // r24 from repops.sample.prng_r24 (seed 0 step 0 hashes 40 zero bytes)
        assertEq(TraceOps.prngU(0, 0), Float32.mul(Float32.fromInt(0xdaa774), TWO_M24), "seed 0 step 0");
        assertEq(TraceOps.prngU(0, 0), 0x3f5aa774, "u bits");
        assertEq(TraceOps.prngU(42, 7), Float32.mul(Float32.fromInt(0xb301cf), TWO_M24), "seed 42 step 7");
        assertEq(
            TraceOps.prngU(type(uint64).max, 3), Float32.mul(Float32.fromInt(0x79e626), TWO_M24), "seed 2^64-1 step 3"
        );
    }

    function testFuzzPrngIsExactR24(uint64 seed, uint64 step) public pure {
        uint256 r24 = uint256(keccak256(abi.encodePacked(bytes32(uint256(seed)), step))) >> 232;
        assertEq(TraceOps.prngU(seed, step), Float32.mul(Float32.fromInt(int256(r24)), TWO_M24), "u = r24 * 2^-24");
    }

    // ------------------------------------------------------------------ stage 1 SCALE

    function testScale() public pure {
        TraceOps.In[] memory ins = _ins(_in(hex"3f800000_c0400000_00000000_80000000_7f800000_7fc00000"));
        TraceOps.Env memory env = _env(0x3f333333, 0, ONE, 0, 0); // T = 0.7
        assertEq(_el(1, 6, ins, 0, env), Float32.div(ONE, 0x3f333333), "1/T");
        assertEq(_el(1, 6, ins, 1, env), 0xc0892492, "-3/0.7");
        assertEq(_el(1, 6, ins, 2, env), 0, "+0/T");
        assertEq(_el(1, 6, ins, 3, env), NZERO, "-0/T");
        assertEq(_el(1, 6, ins, 4, env), INF, "inf/T");
        assertEq(_el(1, 6, ins, 5, env), NAN, "NaN/T");
        env.temperature = 0; // greedy jobs still compute SCALE: div rules
        assertEq(_el(1, 6, ins, 0, env), INF, "1/+0");
        assertEq(_el(1, 6, ins, 1, env), NINF, "-3/+0");
        assertEq(_el(1, 6, ins, 2, env), NAN, "0/0");
        env.temperature = NZERO;
        assertEq(_el(1, 6, ins, 0, env), NINF, "1/-0");
    }

    // ------------------------------------------------------------------ stage 2 SORT

    /// z' = [1, NaN, -0, +inf, +0, -inf, 1, -1]: +inf, 1 (idx 0), 1 (idx 6), -0, +0 (equal: by
    /// index), -1, -inf, NaN (below everything).
    bytes internal constant SORT_Z = hex"3f800000_7fc00000_80000000_7f800000_00000000_ff800000_3f800000_bf800000";

    function _order(uint256 a, uint256 b, uint256 c, uint256 d, uint256 e, uint256 f, uint256 g, uint256 h)
        internal
        pure
        returns (uint256[] memory o)
    {
        o = new uint256[](8);
        (o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]) = (a, b, c, d, e, f, g, h);
    }

    /// @dev The SORT one-step on every element of a claimed output `out` (block `blk`).
    function _sortAll(uint256[] memory out, uint256 blk) internal pure returns (bool[] memory ok) {
        TraceOps.In[] memory ins = _ins(_in(SORT_Z));
        ok = new bool[](out.length);
        for (uint256 j = 0; j < out.length; ++j) {
            ok[j] = _holds(_op(2, 8, blk), ins, j, _env(ONE, 0, ONE, 0, 0), out[j]);
        }
    }

    function testSortHonestOrderHoldsEverywhere() public pure {
        bool[] memory ok = _sortAll(_order(3, 0, 6, 2, 4, 7, 5, 1), 8);
        for (uint256 j = 0; j < 8; ++j) assertTrue(ok[j], "honest SORT element, one block");
        ok = _sortAll(_order(3, 0, 2, 1, 6, 4, 7, 5), 4); // two blocks of 4, each sorted
        for (uint256 j = 0; j < 8; ++j) assertTrue(ok[j], "honest SORT element, blocks of 4");
        ok = _sortAll(_order(3, 0, 2, 1, 6, 4, 7, 5), 256); // one block larger than the row
        for (uint256 j = 0; j < 8; ++j) assertEq(ok[j], j < 2, "blocks of 4 are not the row order");
    }

    function testSortSwappedZerosFail() public pure {
        // -0 (idx 2) and +0 (idx 4) are equal keys: ascending index decides; swapped is wrong
        bool[] memory ok = _sortAll(_order(3, 0, 6, 4, 2, 7, 5, 1), 8);
        for (uint256 j = 0; j < 8; ++j) assertEq(ok[j], j != 3 && j != 4, "only the swapped pair fails");
    }

    function testSortEqualValuesByIndex() public pure {
        bool[] memory ok = _sortAll(_order(3, 6, 0, 2, 4, 7, 5, 1), 8);
        for (uint256 j = 0; j < 8; ++j) assertEq(ok[j], j != 1 && j != 2, "1.0 at 0 before 1.0 at 6");
    }

    function testSortNanIsLastAndInfFirst() public pure {
        bool[] memory ok = _sortAll(_order(3, 0, 6, 2, 4, 7, 1, 5), 8); // NaN above -inf: wrong
        for (uint256 j = 0; j < 8; ++j) assertEq(ok[j], j < 6, "NaN sorts below -inf");
        ok = _sortAll(_order(0, 3, 6, 2, 4, 7, 5, 1), 8); // 1.0 above +inf: wrong
        for (uint256 j = 0; j < 8; ++j) assertEq(ok[j], j > 1, "+inf first");
    }

    /// A wrong element far from others (the top token moved to the end) fails by itself: the
    /// rule is the element's definition, no neighbour is consulted.
    function testSortMovedTopTokenFailsWhereItDiffers() public pure {
        bool[] memory ok = _sortAll(_order(0, 6, 2, 4, 7, 5, 1, 3), 8);
        for (uint256 j = 0; j < 8; ++j) assertFalse(ok[j], "every shifted element is wrong");
    }

    function testSortClaimChecks() public pure {
        TraceOps.In[] memory ins = _ins(_in(SORT_Z));
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        assertTrue(_holds(_op(2, 8, 8), ins, 2, env, 6), "honest");
        assertFalse(_holds(_op(2, 8, 8), ins, 2, env, 8), "claimed index V");
        assertFalse(_holds(_op(2, 8, 8), ins, 2, env, 0xFFFFFFFF), "claimed index -1 (int32 bits)");
        assertTrue(_holds(_op(2, 8, 8), ins, 7, env, 1), "last element");
        assertTrue(_holds(_op(2, 8, 4), ins, 4, env, 6), "first of the second block");
        assertFalse(_holds(_op(2, 8, 4), ins, 0, env, 6), "a token of another block");
        assertFalse(_holds(_op(2, 8, 4), ins, 4, env, 3), "a token of the first block");
        // bits past 32 never come from a C1 int32 element; the mirror reads them mod 2^32
        assertTrue(_holds(_op(2, 8, 8), ins, 0, env, (1 << 32) + 3), "2^32 + 3 reads as 3");
    }

    function testSortClippedLastBlock() public pure {
        // V = 6, blocks of 4: the second block is tokens 4, 5 (+0, -inf)
        TraceOps.In[] memory ins = _ins(_in(hex"3f800000_7fc00000_80000000_7f800000_00000000_ff800000"));
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        assertTrue(_holds(_op(2, 6, 4), ins, 4, env, 4), "+0 first");
        assertTrue(_holds(_op(2, 6, 4), ins, 5, env, 5), "-inf second");
        assertFalse(_holds(_op(2, 6, 4), ins, 5, env, 6), "token V");
    }

    function testSortSingleElement() public pure {
        TraceOps.In[] memory ins = _ins(_one(NAN));
        ins[0].dtype = 1;
        assertTrue(_holds(_op(2, 1, 256), ins, 0, _env(ONE, 0, ONE, 0, 0), 0), "V = 1");
        assertFalse(_holds(_op(2, 1, 256), ins, 0, _env(ONE, 0, ONE, 0, 0), 1), "V = 1, index 1");
    }

    function testSortNeedsABlock() public {
        TraceOps.In[] memory ins = _ins(_in(SORT_Z));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(1)));
        this.holdsExt(_op(2, 8), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), 3); // no block attr
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(1)));
        this.holdsExt(_op(2, 8, 0), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), 3); // block 0
    }

    // ------------------------------------------------------------------ stage 9 MERGE

    /// @dev t·2^32 + token.
    function _tt(uint256 t, uint256 tok) internal pure returns (uint256) {
        return (t << 32) | tok;
    }

    /// Blocks of 4 sorted ([3, 0, 2, 1] and [6, 4, 7, 5]) merged with h = 4 into the row order.
    function _merged8() internal pure returns (uint256[] memory m) {
        m = _order(_tt(0, 3), _tt(1, 0), _tt(2, 6), _tt(2, 2), _tt(3, 4), _tt(3, 7), _tt(3, 5), _tt(3, 1));
    }

    function _mergeIns() internal pure returns (TraceOps.In[] memory) {
        return _ins(_i32(_order(3, 0, 2, 1, 6, 4, 7, 5)), _in(SORT_Z));
    }

    function testMergeHonestHoldsEverywhere() public pure {
        uint256[] memory m = _merged8();
        TraceOps.In memory me = _i64(m);
        for (uint256 j = 0; j < 8; ++j) {
            assertTrue(TraceOps.holds(_op(9, 8, 4), _mergeIns(), me, j, _env(ONE, 0, ONE, 0, 0), m[j]), "merge");
        }
    }

    function testMergeWrongClaims() public pure {
        uint256[] memory m = _merged8();
        TraceOps.In memory me = _i64(m);
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        TraceOps.Op memory op = _op(9, 8, 4);
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 3, env, _tt(2, 4)), "wrong token");
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 3, env, _tt(3, 2)), "wrong count");
        assertTrue(TraceOps.holds(op, _mergeIns(), me, 0, env, 3), "t(0) = 0 needs no self");
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 0, env, _tt(1, 3)), "t(0) is 0");
    }

    function testMergeJudgedFromOwnPrefix() public pure {
        uint256[] memory m = _merged8();
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        TraceOps.Op memory op = _op(9, 8, 4);
        m[3] = _tt(1, 2); // the defender's t at q = 3 is off (1 instead of 2), still possible
        TraceOps.In memory me = _i64(m);
        // from t = 1 at q = 3: A[1] = 0 (1.0) beats B'[2] = 7 (-1), so t = 2 at q = 4 and
        // q = 4 takes A[2] = 2 (-0) over B'[2] = 7
        assertTrue(TraceOps.holds(op, _mergeIns(), me, 4, env, _tt(2, 2)), "consistent with own prefix");
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 4, env, _tt(3, 4)), "the honest value is not");
        m[3] = _tt(5, 2); // t > lenA: impossible
        me = _i64(m);
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 4, env, _tt(3, 4)), "impossible t");
        m[3] = _tt(0, 2); // q - 1 - t = 3 <= lenB, possible
        me = _i64(m);
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 4, env, _tt(3, 4)), "t = 0");
        m[0] = type(uint64).max; // int64 -1: t = 2^32 - 1
        me = _i64(m);
        assertFalse(TraceOps.holds(op, _mergeIns(), me, 1, env, _tt(1, 0)), "t from a negative int64");
    }

    function testMergeClippedBlocks() public pure {
        // V = 6, h = 4: A = [3, 0, 2, 1], B' = [4, 5] (+0, -inf)
        TraceOps.In[] memory ins = _ins(
            _i32(_vals(hex"00000003_00000000_00000002_00000001_00000004_00000005")),
            _in(hex"3f800000_7fc00000_80000000_7f800000_00000000_ff800000")
        );
        uint256[] memory m = new uint256[](6);
        (m[0], m[1], m[2], m[3], m[4], m[5]) = (_tt(0, 3), _tt(1, 0), _tt(2, 2), _tt(3, 4), _tt(3, 5), _tt(3, 1));
        TraceOps.In memory me = _i64(m);
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        for (uint256 j = 0; j < 6; ++j) assertTrue(TraceOps.holds(_op(9, 6, 4), ins, me, j, env, m[j]), "h = 4");
        // h = 8 > V: B' is empty and the level copies A with t = q
        (m[0], m[1], m[2], m[3], m[4], m[5]) = (_tt(0, 3), _tt(1, 0), _tt(2, 2), _tt(3, 1), _tt(4, 4), _tt(5, 5));
        me = _i64(m);
        for (uint256 j = 0; j < 6; ++j) assertTrue(TraceOps.holds(_op(9, 6, 8), ins, me, j, env, m[j]), "h = 8");
    }

    function testMergePrevOutOfRangeReverts() public {
        TraceOps.In[] memory ins = _ins(_i32(_order(3, 0, 2, 9, 6, 4, 7, 5)), _in(SORT_Z));
        uint256[] memory m = _merged8();
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(4)));
        this.holdsExt(_op(9, 8, 4), ins, _i64(m), 7, _env(ONE, 0, ONE, 0, 0), m[7]);
    }

    // ------------------------------------------------------------------ stage 3 EXP

    function testExp() public pure {
        // z' = [1, 3, -inf, 2.5, 1], order = [1, 3, 0, 4, 2]
        TraceOps.In memory zp = _in(hex"3f800000_40400000_ff800000_40200000_3f800000");
        TraceOps.In memory ord = _i32(_vals(hex"00000001_00000003_00000000_00000004_00000002"));
        TraceOps.In[] memory ins = _ins(zp, ord);
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        assertEq(_el(3, 5, ins, 0, env), ONE, "exp(0)");
        assertEq(_el(3, 5, ins, 1, env), 0x3f1b4598, "exp(-0.5)");
        assertEq(_el(3, 5, ins, 2, env), 0x3e0a9555, "exp(-2)");
        assertEq(_el(3, 5, ins, 4, env), 0, "exp(-inf) = +0");
        env.topK = 2; // Keff < V: the fold pad
        assertEq(_el(3, 5, ins, 1, env), 0x3f1b4598, "inside top-k");
        assertEq(_el(3, 5, ins, 2, env), NZERO, "past top-k: -0");
        env.topK = 5;
        assertEq(_el(3, 5, ins, 4, env), 0, "top_k = V keeps all");
        env.topK = 9;
        assertEq(_el(3, 5, ins, 4, env), 0, "top_k > V keeps all");
        // MERGE output as the order: the token is the low word, the high word (t) is ignored
        uint256[] memory o = new uint256[](5);
        (o[0], o[1], o[2], o[3], o[4]) = (_tt(0, 1), _tt(1, 3), _tt(1, 0), _tt(2, 4), _tt(3, 2));
        ins = _ins(zp, _i64(o));
        assertEq(_el(3, 5, ins, 2, env), 0x3e0a9555, "exp(-2) through int64 order entries");
    }

    function testExpInfiniteMaxIsNaN() public pure {
        TraceOps.In[] memory ins = _ins(_in(hex"7f800000_3f800000"), _i32(_vals(hex"00000000_00000001")));
        assertEq(_el(3, 2, ins, 0, _env(ONE, 0, ONE, 0, 0)), NAN, "inf - inf");
        assertEq(_el(3, 2, ins, 1, _env(ONE, 0, ONE, 0, 0)), 0, "1 - inf");
    }

    function testExpOrderOutOfRangeReverts() public {
        TraceOps.In[] memory ins = _ins(_in(hex"3f800000_40400000"), _i32(_vals(hex"00000001_00000002")));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(4)));
        this.holdsExt(_op(3, 2), ins, _none(), 1, _env(ONE, 0, ONE, 0, 0), 0);
    }

    function testExpOrderOfAnotherLengthReverts() public {
        TraceOps.In[] memory ins = _ins(_in(hex"3f800000_40400000"), _one(0));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(3)));
        this.holdsExt(_op(3, 2), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), ONE);
    }

    // ------------------------------------------------------------------ stage 4 SCAN

    function testScanReadsDefendersOwnPrefix() public pure {
        TraceOps.In[] memory ins = _ins(_in(hex"7fc00001_3e800000_3f000000_80000000"));
        // the defender's c: c[1] is off (0.5 instead of NaN); element 2 is judged from it
        TraceOps.In memory me = _in(hex"7fc00000_3f000000_3f800000_3f800000");
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        TraceOps.Op memory op = _op(4, 4);
        assertTrue(TraceOps.holds(op, ins, me, 0, env, NAN), "c[0] = canon(p[0])");
        assertFalse(TraceOps.holds(op, ins, me, 0, env, 0x7fc00001), "c[0] is canonical");
        assertTrue(TraceOps.holds(op, ins, me, 1, env, NAN), "c[1] = add(c_D[0], p[1])");
        assertTrue(TraceOps.holds(op, ins, me, 2, env, ONE), "c[2] = add(c_D[1], p[2]) = 0.5 + 0.5");
        assertTrue(TraceOps.holds(op, ins, me, 3, env, ONE), "c[3] = add(1, -0)");
        assertFalse(TraceOps.holds(op, ins, me, 1, env, HALF), "wrong claim");
        assertFalse(TraceOps.holds(op, ins, me, 3, env, ONE + 1), "one ulp off");
    }

    function testScanHasNoElementFunction() public {
        TraceOps.In[] memory ins = _ins(_in(hex"3e800000"));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(2)));
        this.elementExt(_op(4, 1), ins, 0, _env(ONE, 0, ONE, 0, 0));
    }

    // ------------------------------------------------------------------ stage 5 TOPP

    function testTopP() public pure {
        // c = [0.1, 0.5, 0.9, 1.0, NaN]
        TraceOps.In[] memory ins = _ins(_in(hex"3dcccccd_3f000000_3f666666_3f800000_7fc00000"));
        TraceOps.Env memory env = _env(ONE, 0, 0x3f666666, 0, 0); // top_p = 0.9
        uint256[5] memory want = [uint256(0), 0, ONE, ONE, 0];
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(5, 5, ins, j, env), want[j], "c >= 0.9, NaN never");
        env.topK = 3;
        assertEq(_el(5, 5, ins, 2, env), ONE, "inside top-k");
        assertEq(_el(5, 5, ins, 3, env), 0, "past top-k");
        env.topK = 0;
        env.topP = ONE; // disabled
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(5, 5, ins, j, env), 0, "top_p = 1: no cut");
        env.topP = 0x3f7d70a4; // 0.99: no c[j] >= top_p (1.0 is at j = 3: use 4 elements)
        ins = _ins(_in(hex"3dcccccd_3f000000_3f666666_3f7ae148"));
        for (uint256 j = 0; j < 4; ++j) assertEq(_el(5, 4, ins, j, env), 0, "no c[j] >= top_p");
        env.topP = NAN; // invalid config: IEEE comparisons are false
        for (uint256 j = 0; j < 4; ++j) assertEq(_el(5, 4, ins, j, env), 0, "NaN top_p");
    }

    // ------------------------------------------------------------------ stage 6 DRAW

    bytes internal constant DRAW_C = hex"00000000_3e800000_3f000000_3f400000_3f800000"; // 0, .25, .5, .75, 1

    function testDrawWithoutTopPHit() public pure {
        // f all zero, J0 = 0 (first max of zeros) -> J = K - 1 = 4; u(0, 0) = 0xdaa774 / 2^24
        TraceOps.In[] memory ins = _ins(_in(DRAW_C), _in(hex"00000000_00000000_00000000_00000000_00000000"), _one(0));
        TraceOps.Env memory env = _env(ONE, 0, 0x3f7d70a4, 0, 0);
        uint256[5] memory want = [uint256(0), 0, 0, 0, ONE]; // r = 0.854 * 1.0
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(6, 5, ins, j, env), want[j], "g, J = K-1");
        env.topK = 4; // J = 3, r = 0.854 * 0.75 = 0.64
        want = [uint256(0), 0, 0, ONE, 0];
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(6, 5, ins, j, env), want[j], "g, J = Keff-1");
    }

    function testDrawWithTopPHit() public pure {
        // f[2] = 1 = f[J0]: J = 2, r = 0.854 * 0.5 = 0.427 -> only c[2] > r, and j > J never
        TraceOps.In[] memory ins = _ins(_in(DRAW_C), _in(hex"00000000_00000000_3f800000_3f800000_3f800000"), _one(2));
        TraceOps.Env memory env = _env(ONE, 0, HALF, 0, 0);
        uint256[5] memory want = [uint256(0), 0, ONE, 0, 0];
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(6, 5, ins, j, env), want[j], "g, J = J0");
    }

    function testDrawUZero() public pure {
        // seed 109183225 at step 0: keccak256 starts with 24 zero bits, so u = 0 and r = +0
        assertEq(TraceOps.prngU(U0_SEED, 0), 0, "u = 0");
        TraceOps.In[] memory ins = _ins(_in(DRAW_C), _in(hex"00000000_00000000_00000000_00000000_00000000"), _one(0));
        TraceOps.Env memory env = _env(ONE, 0, ONE, U0_SEED, 0);
        uint256[5] memory want = [uint256(0), ONE, ONE, ONE, ONE]; // the first c[j] > 0 wins
        for (uint256 j = 0; j < 5; ++j) assertEq(_el(6, 5, ins, j, env), want[j], "u = 0");
    }

    function testDrawJ0OutOfRangeReverts() public {
        TraceOps.In[] memory ins = _ins(_in(DRAW_C), _in(hex"00000000_00000000_00000000_00000000_00000000"), _one(5));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(4)));
        this.holdsExt(_op(6, 5), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), 0);
    }

    // ------------------------------------------------------------------ stage 7 JSTAR

    function testJStar() public pure {
        TraceOps.In memory f = _in(hex"00000000_00000000_3f800000_3f800000");
        TraceOps.In memory fNone = _in(hex"00000000_00000000_00000000_00000000");
        TraceOps.In memory g = _in(hex"00000000_3f800000_00000000_00000000");
        TraceOps.In memory gNone = _in(hex"00000000_00000000_00000000_00000000");
        TraceOps.Env memory env = _env(ONE, 0, HALF, 0, 0);
        assertEq(_el(7, 1, _ins(g, _one(1), f, _one(2)), 0, env), 1, "g[j0] = 1: j0");
        assertEq(_el(7, 1, _ins(gNone, _one(0), f, _one(2)), 0, env), 2, "no g: J = J0");
        assertEq(_el(7, 1, _ins(gNone, _one(0), fNone, _one(0)), 0, env), 3, "no g, no f: K - 1");
        env.topK = 2;
        assertEq(_el(7, 1, _ins(gNone, _one(0), fNone, _one(0)), 0, env), 1, "no g, no f: Keff - 1");
    }

    // ------------------------------------------------------------------ stage 8 PICK

    function testPick() public pure {
        TraceOps.In memory z = _in(hex"3f800000_7fc00000_40000000");
        TraceOps.In memory ord = _in(hex"00000002_00000000_00000001");
        TraceOps.Env memory env = _env(ONE, 0, ONE, 0, 0);
        assertEq(_el(8, 1, _ins(z, _one(2), ord, _one(1)), 0, env), 0, "sampled: order[j*]");
        assertEq(_el(8, 1, _ins(z, _one(1), ord, _one(1)), 0, env), 1, "z[A] NaN: A");
        env.temperature = 0;
        assertEq(_el(8, 1, _ins(z, _one(2), ord, _one(1)), 0, env), 2, "T = +0: A");
        env.temperature = NZERO;
        assertEq(_el(8, 1, _ins(z, _one(2), ord, _one(1)), 0, env), 2, "T = -0: A");
        env.temperature = 0x00000001; // smallest subnormal is not zero
        assertEq(_el(8, 1, _ins(z, _one(2), ord, _one(1)), 0, env), 0, "T subnormal: sampled");
    }

    function testUnknownStageReverts() public {
        TraceOps.In[] memory ins = _ins(_one(ONE));
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(1)));
        this.holdsExt(_op(10, 1), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), 0);
        vm.expectRevert(abi.encodeWithSelector(TraceOps.OpMismatch.selector, uint8(10), uint256(1)));
        this.holdsExt(_op(0, 1), ins, _none(), 0, _env(ONE, 0, ONE, 0, 0), 0);
    }

    // ------------------------------------------------------------------ the chain of stages

    uint64 internal constant U0_SEED = 109183225;

    struct Case {
        uint256[] z;
        uint32 t;
        uint32 topK;
        uint32 topP;
        uint64 seed;
        uint256 step;
        uint256 token;
        uint256 block;
    }

    /// @dev The trace ops of one sampled token (§L8 lowering), each element through TraceOps,
    ///      the fold sum and the argmax folds computed here (RepOps spec §4.1, §6.11).
    function _run(Case memory k) internal pure returns (uint256) {
        uint256 v = k.z.length;
        TraceOps.Env memory env = _env(k.t, k.topK, k.topP, k.seed, k.step);
        TraceOps.In memory z = _f32(k.z);
        (TraceOps.In memory zp, TraceOps.In memory ord) = _sortStage(z, v, env, k.block);
        TraceOps.In memory c = _scanStage(_probs(zp, ord, v, env), v, env);
        return _draw(z, ord, c, v, env);
    }

    /// @dev SCALE, SORT in blocks of `blk`, MERGE levels h = blk, 2·blk, … while h < V (§L8);
    ///      every element of each level passes its one-step rule, and the last level's tokens
    ///      are the row's order by rank.
    function _sortStage(TraceOps.In memory z, uint256 v, TraceOps.Env memory env, uint256 blk)
        internal
        pure
        returns (TraceOps.In memory zp, TraceOps.In memory ord)
    {
        zp = _f32(_stage(1, v, _ins(z), env));
        uint256[] memory cur = _blockOrder(zp, v, blk);
        ord = _i32(cur);
        for (uint256 j = 0; j < v; ++j) {
            require(_holds(_op(2, v, blk), _ins(zp), j, env, cur[j]), "block order passes SORT");
        }
        for (uint256 h = blk; h < v; h *= 2) {
            uint256[] memory next = _mergeLevel(zp, cur, v, h);
            TraceOps.In memory me = _i64(next);
            for (uint256 j = 0; j < v; ++j) {
                require(TraceOps.holds(_op(9, v, h), _ins(ord, zp), me, j, env, next[j]), "merge passes MERGE");
            }
            (cur, ord) = (next, me);
        }
        uint256[] memory want = _rankOrder(zp, v, 0, v);
        for (uint256 j = 0; j < v; ++j) require(cur[j] & 0xFFFFFFFF == want[j], "row order");
    }

    /// @dev SORT's honest output: each block's tokens by rank.
    function _blockOrder(TraceOps.In memory zp, uint256 v, uint256 blk) internal pure returns (uint256[] memory o) {
        o = new uint256[](v);
        for (uint256 s0 = 0; s0 < v; s0 += blk) {
            uint256 end = s0 + blk < v ? s0 + blk : v;
            uint256[] memory part = _rankOrder(zp, v, s0, end);
            for (uint256 i = 0; i < part.length; ++i) o[s0 + i] = part[i];
        }
    }

    /// @dev A MERGE level by the textbook two-pointer merge of each pair of runs of h.
    function _mergeLevel(TraceOps.In memory zp, uint256[] memory prev, uint256 v, uint256 h)
        internal
        pure
        returns (uint256[] memory out)
    {
        out = new uint256[](v);
        for (uint256 s0 = 0; s0 < v; s0 += 2 * h) {
            uint256 endA = s0 + h < v ? s0 + h : v;
            uint256 endB = s0 + 2 * h < v ? s0 + 2 * h : v;
            (uint256 i, uint256 k) = (s0, endA);
            for (uint256 q = 0; q < endB - s0; ++q) {
                uint256 t = i - s0;
                bool a = i < endA && (k >= endB || _before(zp, prev[i] & 0xFFFFFFFF, prev[k] & 0xFFFFFFFF));
                out[s0 + q] = (t << 32) | (a ? prev[i++] : prev[k++]) & 0xFFFFFFFF;
            }
        }
    }

    /// @dev EXP, then the FOLD add levels and EW div of the lowering.
    function _probs(TraceOps.In memory zp, TraceOps.In memory ord, uint256 v, TraceOps.Env memory env)
        internal
        pure
        returns (uint256[] memory p)
    {
        uint256[] memory e = _stage(3, v, _ins(zp, ord), env);
        uint32 s = _foldSum(e);
        p = new uint256[](v);
        for (uint256 j = 0; j < v; ++j) p[j] = Float32.div(uint32(e[j]), s);
    }

    function _scanStage(uint256[] memory p, uint256 v, TraceOps.Env memory env)
        internal
        pure
        returns (TraceOps.In memory cIn)
    {
        uint256[] memory c = new uint256[](v);
        c[0] = Float32.isNaN(uint32(p[0])) ? NAN : p[0];
        for (uint256 j = 1; j < v; ++j) c[j] = Float32.add(uint32(c[j - 1]), uint32(p[j]));
        cIn = _f32(c);
        TraceOps.In memory pIn = _f32(p);
        for (uint256 j = 0; j < v; ++j) {
            require(TraceOps.holds(_op(4, v), _ins(pIn), cIn, j, env, c[j]), "c passes SCAN");
        }
    }

    /// @dev TOPP, its ARGFOLD, DRAW, its ARGFOLD, JSTAR, PICK (with the greedy ARGFOLD over z).
    function _draw(TraceOps.In memory z, TraceOps.In memory ord, TraceOps.In memory c, uint256 v, TraceOps.Env memory env)
        internal
        pure
        returns (uint256)
    {
        TraceOps.In memory js = _one(_jstarOf(c, v, env));
        TraceOps.In memory a = _one(_argmax(z, v));
        return _el(8, 1, _ins(z, a, ord, js), 0, env);
    }

    function _jstarOf(TraceOps.In memory c, uint256 v, TraceOps.Env memory env) internal pure returns (uint256) {
        TraceOps.In memory f = _f32(_stage(5, v, _ins(c), env));
        TraceOps.In memory bigJ0 = _one(_argmax(f, v));
        TraceOps.In memory g = _f32(_stage(6, v, _ins(c, f, bigJ0), env));
        return _el(7, 1, _ins(g, _one(_argmax(g, v)), f, bigJ0), 0, env);
    }

    function _stage(uint256 st, uint256 v, TraceOps.In[] memory ins, TraceOps.Env memory env)
        internal
        pure
        returns (uint256[] memory out)
    {
        out = new uint256[](v);
        for (uint256 j = 0; j < v; ++j) out[j] = _el(st, v, ins, j, env);
    }

    /// @dev Token a before token b, from IEEE comparisons: NaN last, equal values by index.
    function _before(TraceOps.In memory zp, uint256 a, uint256 b) internal pure returns (bool) {
        uint32 x = uint32(TraceOps.ld(zp, a));
        uint32 y = uint32(TraceOps.ld(zp, b));
        bool xNaN = Float32.isNaN(x);
        bool yNaN = Float32.isNaN(y);
        if (xNaN || yNaN) return !xNaN || (yNaN && a < b);
        return Float32.lt(y, x) || (Float32.eq(x, y) && a < b);
    }

    /// @dev Tokens lo … hi−1 in order, by rank (how many come before each).
    function _rankOrder(TraceOps.In memory zp, uint256, uint256 lo, uint256 hi)
        internal
        pure
        returns (uint256[] memory order)
    {
        order = new uint256[](hi - lo);
        for (uint256 i = lo; i < hi; ++i) {
            uint256 rank = 0;
            for (uint256 k = lo; k < hi; ++k) {
                if (_before(zp, k, i)) ++rank;
            }
            order[rank] = i;
        }
    }

    function _foldSum(uint256[] memory x) internal pure returns (uint32) {
        uint256 p = 1;
        while (p < x.length) p *= 2;
        uint256[] memory y = new uint256[](p);
        for (uint256 i = 0; i < p; ++i) y[i] = i < x.length ? x[i] : NZERO;
        for (uint256 h = p / 2; h >= 1; h /= 2) {
            for (uint256 i = 0; i < h; ++i) y[i] = Float32.add(uint32(y[i]), uint32(y[i + h]));
        }
        return Float32.isNaN(uint32(y[0])) ? NAN : uint32(y[0]);
    }

    /// @dev RepOps spec §6.11: the first NaN, else the first maximum (-0 = +0).
    function _argmax(TraceOps.In memory x, uint256 v) internal pure returns (uint256 best) {
        for (uint256 i = 0; i < v; ++i) {
            uint32 a = uint32(TraceOps.ld(x, i));
            if (Float32.isNaN(a)) return i;
            if (Float32.lt(uint32(TraceOps.ld(x, best)), a)) best = i;
        }
    }

    function _case(
        uint256[8] memory z,
        uint32 t,
        uint32 topK,
        uint32 topP,
        uint64 seed,
        uint256 step,
        uint256 token
    ) internal pure {
        Case memory k;
        k.z = new uint256[](8);
        for (uint256 i = 0; i < 8; ++i) k.z[i] = z[i];
        (k.t, k.topK, k.topP, k.seed, k.step, k.token) = (t, topK, topP, seed, step, token);
        k.block = 8; // one SORT block: no MERGE level
        assertEq(_run(k), token, "token of repops.sample.sample_token (SORT only)");
        k.block = 2; // MERGE h = 2, 4
        assertEq(_run(k), token, "token of repops.sample.sample_token (blocks of 2)");
        k.block = 3; // clipped runs: MERGE h = 3, 6
        assertEq(_run(k), token, "token of repops.sample.sample_token (blocks of 3)");
    }

    /// @notice Tokens from `repops.sample.sample_token(z, SamplingConfig(T, top_k, top_p, seed),
    ///         step)` (printed by a throwaway script, values as bits).
    function testChainMatchesOracle() public pure {
        _case([uint256(0x3fc00000), 0x80000000, 0x0, 0x40500000, 0x40500000, 0xff800000, 0x3f000000, 0xc0000000], 0x3f333333, 0, 0x3f800000, 5, 0, 3);
        _case([uint256(0x3fc00000), 0x80000000, 0x0, 0x40500000, 0x40500000, 0xff800000, 0x3f000000, 0xc0000000], 0x3f333333, 3, 0x3f666666, 5, 1, 4);
        _case([uint256(0x3fc00000), 0x80000000, 0x0, 0x40500000, 0x40500000, 0xff800000, 0x3f000000, 0xc0000000], 0x3fa66666, 0, 0x3f000000, 9, 2, 3);
        _case([uint256(0x3dcccccd), 0x3e4ccccd, 0x3e99999a, 0x3ecccccd, 0x3f000000, 0x3f19999a, 0x3f333333, 0x3f4ccccd], 0x40000000, 0, 0x3a83126f, 1, 0, 7);
        _case([uint256(0x7149f2ca), 0x71c9f2ca, 0xf149f2ca, 0x0, 0x40a00000, 0x40c00000, 0x40e00000, 0x41000000], 0x2edbe6ff, 0, 0x3f800000, 3, 4, 2);
        _case([uint256(0x3f800000), 0x7fc00000, 0x40000000, 0x0, 0x40a00000, 0x40c00000, 0x40e00000, 0x41000000], 0x3f800000, 0, 0x3f800000, 3, 4, 1);
        _case([uint256(0x3f800000), 0x41100000, 0x40000000, 0x0, 0x40a00000, 0x40c00000, 0x40e00000, 0x41000000], 0x0, 0, 0x3f800000, 3, 4, 1);
        _case([uint256(0xff800000), 0xff800000, 0xff800000, 0xff800000, 0xff800000, 0xff800000, 0xff800000, 0xff800000], 0x3f800000, 0, 0x3f800000, 3, 4, 7);
        _case([uint256(0x3f84b44f), 0x401dc02d, 0x3f7dc693, 0xc07a34c9, 0x402dd40d, 0x3fab6868, 0xbfce30a7, 0x3fdf263c], 0x3f9dfdd9, 0, 0x3f800000, 6949931735954725146, 83, 1);
        _case([uint256(0xc00d6631), 0xbefa3acc, 0xbfb92242, 0x3fe5f4fa, 0x3df40d79, 0xbf609b56, 0xc016205d, 0xbf45860d], 0x3fc9adea, 5, 0x3f800000, 4475096866107063867, 28, 4);
        _case([uint256(0x40414a83), 0xc10222c4, 0xc0b55864, 0xbf063997, 0xbfa21f02, 0x3f2413ec, 0x3f26e73b, 0x40cb5001], 0x3fae1245, 4, 0x3f19999a, 5653957505432283243, 77, 7);
        _case([uint256(0x3ffe9dc8), 0xbfc560e2, 0xc09e3718, 0x3f009ce9, 0x3ea77215, 0xc06ba6cf, 0xc0032df5, 0xbe5d5175], 0x3fdd2881, 9, 0x3f733333, 4712118250928551200, 50, 0);
        _case([uint256(0x3ddaa450), 0xbfc26a7f, 0x3fe3ffcf, 0x402b1aa3, 0x3f766958, 0xc01d19a7, 0x400c7a2c, 0xbfc08d8f], 0x3ee0955a, 2, 0x3f19999a, 7943938114449624347, 84, 3);
        _case([uint256(0xc06fc281), 0xbf711326, 0x3e2633c3, 0x3f5180f6, 0xc03c9483, 0xc0549d9a, 0x3f1947ea, 0xbfb33b5b], 0x3fb184bd, 8, 0x3f19999a, 8888294981329739757, 80, 2);
    }
}
