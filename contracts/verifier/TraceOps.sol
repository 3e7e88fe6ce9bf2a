// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Float32} from "../float/Float32.sol";
import {Float32Transcendental} from "../float/Float32Transcendental.sol";

/// @title TraceOps
/// @notice What each trace op computes for one output element (docs/trace-layout.md §L5), on
///         inputs whose chunks the verifier has already proven. Mirrors `referee/ops.py` line for
///         line: the two must agree on every bit, including when they refuse (revert here,
///         `OpError` there).
library TraceOps {
    /// @notice A proven 1 KiB chunk of an input tensor (commitments C2).
    struct Chunk {
        uint256 index;
        bytes data;
        bytes32[] proof;
    }

    /// @notice An input tensor as the op sees it: shape from its proven C4 header, and the
    ///         chunks the witness opened. `present` is false for an input that refers before
    ///         step 0 (§L4).
    struct In {
        bool present;
        uint8 dtype;
        uint256 size;
        uint256 n;
        uint256[] dims;
        Chunk[] chunks;
    }

    /// @notice The parsed op record (§L2) with its output dims evaluated at the step (§L3).
    struct Op {
        uint8 code;
        uint8 dtype;
        uint256[] dims;
        uint256[] attrs;
    }

    /// @notice The step's symbols (§L1), the job's input tokens (C6 bytes) and, for SAMPLE ops
    ///         (§L5.10), the job's sampling config (JobMarket.JobConfig, checked against the
    ///         job's config hash by the verifier before any op reads it).
    struct Env {
        uint256 step;
        uint256 seq;
        uint256 past;
        bytes job;
        uint32 temperature;
        uint32 topK;
        uint32 topP;
        uint64 seed;
    }

    uint8 internal constant TOKENS = 1;
    uint8 internal constant GATHER = 2;
    uint8 internal constant DOT = 3;
    uint8 internal constant FOLD = 4;
    uint8 internal constant ARGFOLD = 5;
    uint8 internal constant EW = 6;
    uint8 internal constant ROPE = 7;
    uint8 internal constant MOVE = 8;
    uint8 internal constant CONCAT = 9;
    uint8 internal constant SAMPLE = 10;

    /// @notice SAMPLE stages (attr word 0, docs/trace-layout.md §L5.10).
    uint256 internal constant SCALE = 1;
    uint256 internal constant SORT = 2;
    uint256 internal constant EXP = 3;
    uint256 internal constant SCAN = 4;
    uint256 internal constant TOPP = 5;
    uint256 internal constant DRAW = 6;
    uint256 internal constant JSTAR = 7;
    uint256 internal constant PICK = 8;
    uint256 internal constant MERGE = 9;
    /// @dev Per stage (nibble `stage`): how many inputs it reads, and which input besides
    ///      ins[0] must be a row of V (0: none; ins[0] trivially is).
    uint256 private constant SAMPLE_INPUTS = 0x2443112110;
    uint256 private constant SAMPLE_ROW = 0x1221001000;

    /// @notice Fma steps per link of a DOT accumulation chain (docs/trace-layout.md §L9; the
    ///         protocol constant, mirrored by `referee.ops.LINK`).
    uint256 internal constant LINK = 64;

    /// @notice The inputs do not fit the op; an honest party never builds such a step.
    error OpMismatch(uint8 code, uint256 why);
    /// @notice The witness lacks the chunk holding a needed element.
    error MissingChunk(uint256 chunk);
    /// @notice An element index outside a tensor.
    error OutOfRange(uint256 index, uint256 n);
    error UnknownCode(uint8 code);
    /// @notice A link claim (§L9) on an element that has no such link: not a DOT, a DOT
    ///         element checked whole (0 links), or a link index past the chain.
    error BadLink();

    function _need(bool ok, uint8 code, uint256 why) private pure {
        if (!ok) revert OpMismatch(code, why);
    }

    // ------------------------------------------------------------------------ element access

    /// @notice Element `e` of a proven input (C1: little-endian; ints as two's-complement bits).
    function ld(In memory t, uint256 e) internal pure returns (uint256 v) {
        if (!t.present || e >= t.n) revert OutOfRange(e, t.n);
        uint256 off = e * t.size;
        uint256 c = off >> 10;
        Chunk[] memory cs = t.chunks;
        for (uint256 k = 0; k < cs.length; ++k) {
            if (cs[k].index == c) {
                bytes memory d = cs[k].data;
                uint256 o = off & 1023;
                uint256 w;
                assembly ("memory-safe") {
                    w := mload(add(add(d, 32), o))
                }
                for (uint256 b = 0; b < t.size; ++b) {
                    v |= ((w >> (248 - 8 * b)) & 0xff) << (8 * b);
                }
                return v;
            }
        }
        revert MissingChunk(c);
    }

    /// @dev An element as the mirror reads it (C1): int32 and int64 signed, other dtypes unsigned.
    function _sint(In memory t, uint256 v) private pure returns (int256) {
        if (t.dtype == 2) return int256(int32(uint32(v)));
        if (t.dtype == 3) return int256(int64(uint64(v)));
        return int256(v);
    }

    /// @notice (batch, rows, cols) of a shape read as [..., R, C] (§L5; 1-D is one row).
    function rc(uint256[] memory d) internal pure returns (uint256 b, uint256 r, uint256 c) {
        uint256 n = d.length;
        if (n == 0) return (1, 1, 1);
        if (n == 1) return (1, 1, d[0]);
        b = 1;
        for (uint256 i = 0; i + 2 < n; ++i) b *= d[i];
        return (b, d[n - 2], d[n - 1]);
    }

    function numel(uint256[] memory d) internal pure returns (uint256 n) {
        n = 1;
        for (uint256 i = 0; i < d.length; ++i) n *= d[i];
    }

    /// @notice §L3: value of a dim word c0 + c_seq·seq + c_past·past (int64 coefficients).
    function dimValue(uint256 w, Env memory env) internal pure returns (uint256) {
        int256 c0 = int256(int64(uint64(w >> 128)));
        int256 cs = int256(int64(uint64(w >> 64)));
        int256 cp = int256(int64(uint64(w)));
        int256 v = c0 + cs * int256(env.seq) + cp * int256(env.past);
        if (v < 0) revert OpMismatch(0, 0);
        return uint256(v);
    }

    // ------------------------------------------------------------------------ dispatch

    /// @notice Value (C1 bits) of output element `e` of `op` (§L5).
    function element(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        if (op.code == SAMPLE) {
            uint256 n = numel(op.dims);
            if (e >= n) revert OutOfRange(e, n);
            return sample(op, ins, e, env);
        }
        return coreElement(op, ins, e, env);
    }

    /// @notice `element` for every op code but SAMPLE. Why apart: a contract that calls only
    ///         this one does not carry the SAMPLE stages' code (OneStepVerifier delegates
    ///         those to SampleStep to stay under the EIP-170 size limit).
    function coreElement(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 n = numel(op.dims);
        if (e >= n) revert OutOfRange(e, n);
        uint8 c = op.code;
        if (c == DOT) return dot(op, ins, e, env);
        if (c == EW) return ew(op, ins, e, env);
        if (c == FOLD) return fold(op, ins, e, env);
        if (c == ARGFOLD) return argfold(op, ins, e);
        if (c == ROPE) return rope(op, ins, e, env);
        if (c == MOVE) return move(op, ins, e, env);
        if (c == CONCAT) return concat(op, ins, e);
        if (c == GATHER) return gather(op, ins, e);
        if (c == TOKENS) return tokens(ins, e, env);
        revert UnknownCode(c);
    }

    /// @notice Whether `claimed` is output element `e` of `op` (the Claim.Element decision).
    ///         For every op but SAMPLE SORT, MERGE and SCAN it is `element(...) == claimed`;
    ///         those three follow the one-step rules of §L5.10 (`me` is the defender's own
    ///         output, read by MERGE and SCAN only; `present` false for every other op).
    function holds(Op memory op, In[] memory ins, In memory me, uint256 e, Env memory env, uint256 claimed)
        internal
        pure
        returns (bool)
    {
        if (op.code == SAMPLE) return sampleHolds(op, ins, me, e, env, claimed);
        return coreElement(op, ins, e, env) == claimed;
    }

    /// @notice `holds` for a SAMPLE op (§L5.10): SORT, MERGE and SCAN by their one-step rules,
    ///         the other stages by their element.
    function sampleHolds(Op memory op, In[] memory ins, In memory me, uint256 e, Env memory env, uint256 claimed)
        internal
        pure
        returns (bool)
    {
        uint256 n = numel(op.dims);
        if (e >= n) revert OutOfRange(e, n);
        uint256 st = _sampleStage(op, ins);
        uint256 v = ins[0].n;
        if (st == SORT) return sortHolds(op, ins, v, e, claimed);
        if (st == MERGE) return mergeHolds(op, ins, me, v, e, claimed);
        if (st == SCAN) return scanHolds(ins, me, e, claimed);
        return sample(op, ins, e, env) == claimed;
    }

    /// @notice Whether the one-step of `op` reads the defender's own output (SAMPLE SCAN and
    ///         MERGE, §L5.10): the verifier then takes one more witness tensor (`self`, §L7).
    function readsSelf(Op memory op) internal pure returns (bool) {
        if (op.code != SAMPLE || op.attrs.length == 0) return false;
        return op.attrs[0] == SCAN || op.attrs[0] == MERGE;
    }

    // ------------------------------------------------------------------------ §L5.1 TOKENS

    function tokens(In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        if (env.step == 0) {
            bytes memory job = env.job;
            _need(e < job.length / 4, TOKENS, 1);
            uint256 w;
            assembly ("memory-safe") {
                w := mload(add(add(job, 32), mul(e, 4)))
            }
            return w >> 224;
        }
        _need(e == 0, TOKENS, 2);
        return ld(ins[1], 0);
    }

    // ------------------------------------------------------------------------ §L5.2 GATHER

    function gather(Op memory op, In[] memory ins, uint256 e) internal pure returns (uint256) {
        In memory table = ins[1];
        _need(table.present && table.dims.length == 2, GATHER, 1);
        uint256 v = table.dims[0];
        uint256 d = table.dims[1];
        _need(op.dims[op.dims.length - 1] == d, GATHER, 2);
        int256 tok = _sint(ins[0], ld(ins[0], e / d));
        _need(tok >= 0 && uint256(tok) < v, GATHER, 3);
        return ld(table, uint256(tok) * d + e % d);
    }

    // ------------------------------------------------------------------------ §L5.3 DOT

    /// @dev Chain geometry of one DOT element (a struct keeps the stack shallow).
    struct DotAt {
        uint256 r;
        uint256 n;
        uint256 k;
        uint256 arow;
        uint256 brow;
        uint256 kend;
    }

    /// @dev Shape rules of DOT (§L5.3) and the geometry of element e: its A and B rows and
    ///      `kend` (min(k1, K), clipped to past + r + 1 when causal = 1).
    function _dotAt(Op memory op, In[] memory ins, uint256 e, Env memory env) private pure returns (DotAt memory g) {
        _need(ins[0].present && ins[1].present, DOT, 1);
        (uint256 ba, uint256 r, uint256 k) = rc(ins[0].dims);
        (uint256 bb, uint256 nb, uint256 kb) = rc(ins[1].dims);
        {
            (uint256 ob, uint256 orow, uint256 on) = rc(op.dims);
            _need(kb == k && orow == r && on == nb && ob == ba, DOT, 2);
        }
        uint256 group = op.attrs[2];
        _need(group >= 1 && ba == bb * group, DOT, 3);
        g.r = r;
        g.n = nb;
        g.k = k;
        uint256 ri = (e / nb) % r;
        uint256 bi = e / (r * nb);
        g.arow = (bi * r + ri) * k;
        g.brow = ((bi / group) * nb + e % nb) * k;
        g.kend = op.attrs[1] < k ? op.attrs[1] : k;
        if (op.attrs[3] == 1 && env.past + ri + 1 < g.kend) g.kend = env.past + ri + 1;
    }

    /// @dev The fma chain over k = from … to − 1 ascending, from `acc` (§L5.3, RepOps §3.1).
    function _fmaChain(In[] memory ins, DotAt memory g, uint256 from, uint256 to, uint256 acc)
        private
        pure
        returns (uint256)
    {
        In memory a = ins[0];
        In memory b = ins[1];
        for (uint256 kk = from; kk < to; ++kk) {
            acc = Float32.fma(uint32(ld(a, g.arow + kk)), uint32(ld(b, g.brow + kk)), uint32(acc));
        }
        return acc;
    }

    /// @dev The chain's start: acc_in[e], or +0 without an acc input.
    function _accIn(In[] memory ins, uint256 e) private pure returns (uint256) {
        return ins.length > 2 ? ld(ins[2], e) : 0;
    }

    /// @dev §L9: ⌈len / LINK⌉ for len = max(0, kend − k0) > LINK and causal ≠ 2, else 0.
    function _links(Op memory op, DotAt memory g) private pure returns (uint256) {
        uint256 k0 = op.attrs[0];
        uint256 len = g.kend > k0 ? g.kend - k0 : 0;
        if (op.attrs[3] == 2 || len <= LINK) return 0;
        return (len + LINK - 1) / LINK;
    }

    function dot(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        DotAt memory g = _dotAt(op, ins, e, env);
        uint256 acc = _fmaChain(ins, g, op.attrs[0], g.kend, _accIn(ins, e));
        if (op.attrs[3] == 2 && e % g.n > env.past + (e / g.n) % g.r) acc = Float32.NEG_INF;
        return acc;
    }

    /// @notice §L9: number of links of DOT element `e` (0: the element is checked whole).
    ///         Reads the op's shapes only (no input element). Reverts as `dot` does on shapes
    ///         that do not fit, and on `e` outside the output.
    function dotLinks(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 n = numel(op.dims);
        if (e >= n) revert OutOfRange(e, n);
        return _links(op, _dotAt(op, ins, e, env));
    }

    /// @notice §L9: the accumulator after link `link` of DOT element `e`: the fma chain over
    ///         k = k0 + link·LINK … min(k0 + (link + 1)·LINK, kend) − 1 ascending, from
    ///         acc_in[e] (or +0) when link = 0, else from `start` (float32 bits, low 32 bits).
    ///         Reverts `BadLink` unless link < dotLinks(op, ins, e, env).
    function dotLink(Op memory op, In[] memory ins, uint256 e, Env memory env, uint256 link, uint256 start)
        internal
        pure
        returns (uint256)
    {
        uint256 n = numel(op.dims);
        if (e >= n) revert OutOfRange(e, n);
        DotAt memory g = _dotAt(op, ins, e, env);
        if (link >= _links(op, g)) revert BadLink();
        uint256 from = op.attrs[0] + link * LINK;
        uint256 to = from + LINK < g.kend ? from + LINK : g.kend;
        return _fmaChain(ins, g, from, to, link == 0 ? _accIn(ins, e) : uint32(start));
    }

    // ------------------------------------------------------------------------ §L5.4 FOLD

    function fold(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        In memory x = ins[0];
        _need(x.present && x.dims.length >= 1, FOLD, 1);
        uint256 cap = op.attrs[1];
        (, uint256 r, uint256 w) = rc(x.dims);
        _need(cap >= 1 && w <= 2 * cap, FOLD, 2);
        _need(op.dims.length == x.dims.length && op.dims[op.dims.length - 1] == cap, FOLD, 3);
        for (uint256 i = 0; i + 1 < x.dims.length; ++i) _need(op.dims[i] == x.dims[i], FOLD, 3);
        uint256 row = e / cap;
        uint256 col = e % cap;
        uint256 n = dimValue(op.attrs[3], env);
        if (w < n) n = w;
        if (op.attrs[2] != 0 && env.past + row % r + 1 < n) n = env.past + row % r + 1;
        if (col >= w) return Float32.NEG_ZERO;
        uint32 lo = uint32(ld(x, row * w + col));
        lo = Float32.isNaN(lo) ? Float32.NAN : lo;
        if (n > cap && col + cap < n) {
            uint32 hi = uint32(ld(x, row * w + col + cap));
            return op.attrs[0] == 0 ? Float32.add(lo, hi) : Float32.max(lo, hi);
        }
        return lo;
    }

    // ------------------------------------------------------------------------ §L5.5 ARGFOLD

    /// @dev RepOps spec §6.11 as a pairwise rule: first NaN, else greater value, else lower index.
    function _winner(uint32 va, uint256 ia, uint32 vb, uint256 ib) private pure returns (uint256) {
        bool na = Float32.isNaN(va);
        bool nb = Float32.isNaN(vb);
        uint256 lo = ia < ib ? ia : ib;
        if (na && nb) return lo;
        if (na) return ia;
        if (nb) return ib;
        if (Float32.lt(vb, va)) return ia;
        if (Float32.lt(va, vb)) return ib;
        return lo;
    }

    function argfold(Op memory op, In[] memory ins, uint256 e) internal pure returns (uint256) {
        In memory x = ins[0];
        _need(x.present, ARGFOLD, 1);
        uint256 cap = op.attrs[0];
        uint256 v;
        uint256 w;
        {
            (uint256 xb, uint256 xr, uint256 xv) = rc(x.dims);
            v = xv;
            w = ins.length < 2 ? v : _lastDim(ins[1]);
            _need(cap >= 1 && w <= 2 * cap, ARGFOLD, 2);
            _need(numel(op.dims) == xb * xr * (w < cap ? w : cap), ARGFOLD, 3);
        }
        uint256 row = e / (w < cap ? w : cap);
        uint256 i = e % (w < cap ? w : cap);
        uint256 ia = ins.length < 2 ? i : _index(ins[1], row * w + i, v);
        if (i + cap >= w) return ia;
        uint256 ib = ins.length < 2 ? i + cap : _index(ins[1], row * w + i + cap, v);
        return _winner(uint32(ld(x, row * v + ia)), ia, uint32(ld(x, row * v + ib)), ib);
    }

    function _lastDim(In memory t) private pure returns (uint256) {
        (,, uint256 c) = rc(t.dims);
        return c;
    }

    function _index(In memory idx, uint256 pos, uint256 v) private pure returns (uint256) {
        int256 got = _sint(idx, ld(idx, pos));
        _need(got >= 0 && uint256(got) < v, ARGFOLD, 4);
        return uint256(got);
    }

    // ------------------------------------------------------------------------ §L5.6 EW

    /// @notice Flat index into an input broadcast (NumPy rules, right-aligned) to `out`.
    function bindex(uint256 e, uint256[] memory out, uint256[] memory shape) internal pure returns (uint256 flat) {
        _need(shape.length <= out.length, EW, 1);
        uint256 off = out.length - shape.length;
        uint256 stride = 1;
        for (uint256 ax = out.length; ax > 0; --ax) {
            uint256 dout = out[ax - 1];
            uint256 coord = dout == 0 ? 0 : e % dout;
            e = dout == 0 ? e : e / dout;
            if (ax - 1 >= off) {
                uint256 din = shape[ax - 1 - off];
                _need(din == 1 || din == dout, EW, 2);
                if (din != 1) flat += coord * stride;
                stride *= din;
            }
        }
    }

    function ew(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 fn = op.attrs[0];
        _need(ins[0].present, EW, 3);
        uint32 a = uint32(ld(ins[0], bindex(e, op.dims, ins[0].dims)));
        uint32 r;
        if (fn < 16) {
            uint32 b = ins.length > 1 ? uint32(ld(ins[1], bindex(e, op.dims, ins[1].dims))) : uint32(op.attrs[1]);
            r = _binary(fn, a, b);
        } else {
            r = _unary(fn, a);
        }
        if (op.attrs[2] != 0) {
            (, uint256 rows, uint256 cols) = rc(op.dims);
            if (e % cols > env.past + (e / cols) % rows) r = uint32(op.attrs[3]);
        }
        return r;
    }

    function _binary(uint256 fn, uint32 a, uint32 b) private pure returns (uint32) {
        if (fn == 1) return Float32.add(a, b);
        if (fn == 2) return Float32.sub(a, b);
        if (fn == 3) return Float32.mul(a, b);
        if (fn == 4) return Float32.div(a, b);
        if (fn == 5) return Float32.max(a, b);
        if (fn == 6) return Float32.min(a, b);
        revert OpMismatch(EW, 4);
    }

    /// @dev RepOps spec §1.3, §2, §5, §6.3 (sigmoid), §6.4 (SiLU).
    function _unary(uint256 fn, uint32 x) private pure returns (uint32) {
        if (fn == 16) return Float32.neg(x);
        if (fn == 17) return Float32.sqrt(x);
        if (fn == 18) return Float32Transcendental.exp(x);
        if (fn == 19) return Float32Transcendental.log(x);
        if (fn == 20) return sigmoid(x);
        if (fn == 21) return Float32.mul(x, sigmoid(x));
        if (fn == 22) return Float32.isNaN(x) ? Float32.NAN : x;
        revert OpMismatch(EW, 5);
    }

    /// @notice RepOps spec §6.3: div(1, add(1, exp(neg(x)))).
    function sigmoid(uint32 x) internal pure returns (uint32) {
        uint32 t = Float32Transcendental.exp(Float32.neg(x));
        return Float32.div(Float32.ONE, Float32.add(Float32.ONE, t));
    }

    // ------------------------------------------------------------------------ §L5.7 ROPE

    function rope(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 w = _ropeCheck(op, ins);
        uint256 dh = op.attrs[0];
        uint256 d = (e % w) % dh;
        if (d >= op.attrs[1]) {
            uint32 v = uint32(ld(ins[0], e));
            return Float32.isNaN(v) ? Float32.NAN : v;
        }
        uint256 half = op.attrs[1] / 2;
        uint256 p = (e / w) % op.dims[op.dims.length - 2] + env.past;
        _need(p < ins[1].dims[0], ROPE, 4);
        uint256 i = op.attrs[2] == 0 ? d / 2 : d % half;
        uint256 ia = op.attrs[2] == 0 ? e - d + 2 * i : e - d + i;
        bool first = op.attrs[2] == 0 ? d % 2 == 0 : d < half;
        return _rot(ins, ia, op.attrs[2] == 0 ? ia + 1 : ia + half, p * half + i, first);
    }

    /// @dev Shape rules of ROPE (§L5.7); returns the row width W.
    function _ropeCheck(Op memory op, In[] memory ins) private pure returns (uint256 w) {
        In memory x = ins[0];
        uint256 dh = op.attrs[0];
        uint256 rot = op.attrs[1];
        _need(x.present && x.dims.length == op.dims.length && op.dims.length >= 2, ROPE, 1);
        for (uint256 i = 0; i < x.dims.length; ++i) _need(x.dims[i] == op.dims[i], ROPE, 1);
        (,, w) = rc(op.dims);
        _need(dh >= 2 && dh % 2 == 0 && rot % 2 == 0 && rot <= dh && w % dh == 0, ROPE, 2);
        uint256[] memory cd = ins[1].dims;
        uint256[] memory sd = ins[2].dims;
        _need(cd.length == 2 && cd[1] == rot / 2 && sd.length == 2 && sd[0] == cd[0] && sd[1] == rot / 2, ROPE, 3);
    }

    /// @dev RepOps spec §6.9: a' = a·c − b·s, b' = a·s + b·c, each product rounded.
    function _rot(In[] memory ins, uint256 ia, uint256 ib, uint256 tab, bool first) private pure returns (uint32) {
        uint32 a = uint32(ld(ins[0], ia));
        uint32 b = uint32(ld(ins[0], ib));
        uint32 c = uint32(ld(ins[1], tab));
        uint32 s = uint32(ld(ins[2], tab));
        if (first) return Float32.sub(Float32.mul(a, c), Float32.mul(b, s));
        return Float32.add(Float32.mul(a, s), Float32.mul(b, c));
    }

    // ------------------------------------------------------------------------ §L5.8 MOVE

    function move(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 nd = op.dims.length;
        _need(op.attrs.length == 1 + nd, MOVE, 1);
        uint256 src = dimValue(op.attrs[0], env);
        for (uint256 ax = nd; ax > 0; --ax) {
            uint256 dout = op.dims[ax - 1];
            src += (e % dout) * dimValue(op.attrs[ax], env);
            e /= dout;
        }
        return ld(ins[0], src);
    }

    // ------------------------------------------------------------------------ §L5.9 CONCAT

    function concat(Op memory op, In[] memory ins, uint256 e) internal pure returns (uint256) {
        uint256 axis = op.attrs[0];
        In memory a = ins[0];
        In memory b = ins[1];
        uint256 nd = op.dims.length;
        _need(b.present && axis < nd && b.dims.length == nd, CONCAT, 1);
        uint256 lb = b.dims[axis];
        _need(op.dims[axis] >= lb, CONCAT, 2);
        uint256 la = op.dims[axis] - lb;
        for (uint256 i = 0; i < nd; ++i) {
            if (i != axis) _need(b.dims[i] == op.dims[i], CONCAT, 2);
        }
        if (a.present) {
            _need(a.dims.length == nd && a.dims[axis] == la, CONCAT, 3);
            for (uint256 i = 0; i < nd; ++i) {
                if (i != axis) _need(a.dims[i] == op.dims[i], CONCAT, 3);
            }
        } else {
            _need(la == 0, CONCAT, 3);
        }
        uint256 inner = 1;
        for (uint256 i = axis + 1; i < nd; ++i) inner *= op.dims[i];
        uint256 len = op.dims[axis];
        uint256 outer = e / (len * inner);
        uint256 pos = (e / inner) % len;
        uint256 rest = e % inner;
        if (pos < la) return ld(a, (outer * la + pos) * inner + rest);
        return ld(b, (outer * lb + pos - la) * inner + rest);
    }

    // ------------------------------------------------------------------------ §L5.10 SAMPLE

    /// @notice Value of element `e` of a SAMPLE op (RepOps spec §7.3 in stages, §L5.10). SORT,
    ///         MERGE and SCAN are decided by `holds` (their one-step rules), not valued here.
    function sample(Op memory op, In[] memory ins, uint256 e, Env memory env) internal pure returns (uint256) {
        uint256 st = _sampleStage(op, ins);
        uint256 v = ins[0].n;
        if (st == SCALE) return Float32.div(uint32(ld(ins[0], e)), env.temperature);
        if (st == EXP) return _sampleExp(ins, e, v, env);
        if (st == TOPP) return _topp(ins, e, v, env);
        if (st == DRAW) return _draw(ins, e, v, env);
        if (st == JSTAR) return _jstar(ins, v, env);
        if (st == PICK) return _pick(ins, v, env);
        revert OpMismatch(SAMPLE, 2);
    }

    /// @notice RepOps spec §7.3 step 4: K = V if top_k == 0 or top_k ≥ V, else top_k.
    function keff(uint256 v, Env memory env) internal pure returns (uint256) {
        return env.topK == 0 || env.topK >= v ? v : env.topK;
    }

    /// @notice RepOps spec §7.2: u = r24 · 2^-24 as binary32 bits (exact), r24 the first 24 bits
    ///         of keccak256(bytes32(uint256(seed)) ‖ uint64_be(step)).
    function prngU(uint64 seed, uint256 step) internal pure returns (uint32) {
        uint256 r24;
        assembly ("memory-safe") {
            mstore(0, seed) // bytes32(uint256(seed))
            mstore(32, shl(192, and(step, 0xffffffffffffffff))) // uint64 big-endian
            r24 := shr(232, keccak256(0, 40))
        }
        if (r24 == 0) return 0;
        uint256 msb = Float32.log2(r24); // 0..23: u = 1.f · 2^(msb − 24), always normal
        return uint32(((msb + 103) << 23) | ((r24 << (23 - msb)) & 0x7FFFFF));
    }

    /// @dev Stage and shape rules of SAMPLE (§L5.10), returns the stage: attr 0 names one of
    ///      stages 1-9 (SORT, MERGE: attr 1 = block ≥ 1, exactly two attrs); the stage's inputs
    ///      are present; ins[0] is the row of V ≥ 1; the other row input (EXP, DRAW, MERGE:
    ///      ins[1]; JSTAR, PICK: ins[2]) has V elements; JSTAR and PICK output one element,
    ///      the others V.
    function _sampleStage(Op memory op, In[] memory ins) private pure returns (uint256 st) {
        _need(op.attrs.length >= 1 && op.attrs[0] >= SCALE && op.attrs[0] <= MERGE, SAMPLE, 1);
        st = op.attrs[0];
        uint256 nin = (SAMPLE_INPUTS >> (4 * st)) & 15;
        _need(ins.length >= nin, SAMPLE, 2);
        for (uint256 k = 0; k < nin; ++k) _need(ins[k].present, SAMPLE, 2);
        uint256 v = ins[0].n;
        uint256 row = (SAMPLE_ROW >> (4 * st)) & 15;
        _need(v >= 1 && numel(op.dims) == (st == JSTAR || st == PICK ? 1 : v) && ins[row].n == v, SAMPLE, 3);
        if (st == SORT || st == MERGE) _need(op.attrs.length == 2 && op.attrs[1] >= 1, SAMPLE, 1);
    }

    /// @dev An index input's element 0 (J0, j0, A, j*): must lie in [0, V).
    function _index(In memory t, uint256 v) private pure returns (uint256) {
        int256 got = _sint(t, ld(t, 0));
        _need(got >= 0 && uint256(got) < v, SAMPLE, 4);
        return uint256(got);
    }

    /// @dev An order entry (SORT int32 or MERGE int64 element of a row of V, `_sampleStage`)
    ///      names token low(o) = o mod 2^32, which must be < V.
    function _low(In memory t, uint256 pos) private pure returns (uint256 tok) {
        tok = ld(t, pos) & 0xFFFFFFFF;
        _need(tok < t.n, SAMPLE, 4);
    }

    /// @notice The SORT key: any NaN below −inf, −0 = +0, otherwise IEEE value order.
    function sortKey(uint32 x) internal pure returns (int256) {
        if (Float32.isNaN(x)) return -(2 ** 31);
        int256 m = int256(uint256(x & 0x7FFFFFFF));
        return x >> 31 == 1 ? -m : m;
    }

    /// @notice prec(a, b), "token a comes before token b": key(z'[a]) > key(z'[b]), or equal
    ///         keys and a < b (§L5.10; RepOps spec §7.3 step 3 for NaN-free z').
    function prec(In memory zp, uint256 a, uint256 b) internal pure returns (bool) {
        int256 ka = sortKey(uint32(ld(zp, a)));
        int256 kb = sortKey(uint32(ld(zp, b)));
        return ka > kb || (ka == kb && a < b);
    }

    /// @notice SORT (attr 1 = block B) one-step rule: the claimed int32 token x lies in the
    ///         block [s0, min(s0 + B, V)) of element j and exactly j − s0 of the block's tokens
    ///         precede it (equivalent to the element's definition: prec is a strict total order).
    function sortHolds(Op memory op, In[] memory ins, uint256 v, uint256 j, uint256 claimed)
        internal
        pure
        returns (bool)
    {
        uint256 b = op.attrs[1];
        uint256 s0 = (j / b) * b;
        uint256 end = v - s0 < b ? v : s0 + b;
        if (claimed >= 2 ** 31) {
            if (claimed < 2 ** 32) return false; // a negative int32
            claimed -= 2 ** 32; // the mirror's reading of bits past 32 (never a C1 int32)
        }
        if (claimed < s0 || claimed >= end) return false;
        In memory zp = ins[0];
        int256 kx = sortKey(uint32(ld(zp, claimed)));
        uint256 ahead = 0;
        for (uint256 y = s0; y < end; ++y) {
            int256 ky = sortKey(uint32(ld(zp, y)));
            if (ky > kx || (ky == kx && y < claimed)) ++ahead;
        }
        return ahead == j - s0;
    }

    /// @dev takeA(t, q) of the MERGE rule (§L5.10) in the block at s0 with runs A = prev[s0,
    ///      s0 + lenA) and B' = prev[s0 + h, s0 + h + lenB): output offset q, with t of A before
    ///      it, takes A[t] (A left, and B' exhausted or A[t] first in prec).
    function _takeA(In[] memory ins, uint256 s0, uint256 h, uint256 lens, uint256 t, uint256 q)
        private
        pure
        returns (bool)
    {
        if (t >= lens >> 128) return false;
        if (q - t >= uint128(lens)) return true;
        return prec(ins[1], _low(ins[0], s0 + t), _low(ins[0], s0 + h + q - t));
    }

    /// @dev lenA << 128 | lenB for a block with `rest` = V − s0 > 0 tokens left in the row.
    function _lens(uint256 rest, uint256 h) private pure returns (uint256) {
        uint256 lenA = rest < h ? rest : h;
        uint256 lenB = rest - lenA < h ? rest - lenA : h; // lenA < h leaves no B'
        return (lenA << 128) | lenB;
    }

    /// @notice MERGE (attr 1 = half h) one-step rule: t (how many of A precede offset q) is 0
    ///         at the block start, else the high word of the defender's own previous element
    ///         (`me`) advanced by one merge step; an impossible previous t makes the claim false.
    ///         Correct iff claimed == t·2^32 + the token taken at q.
    function mergeHolds(Op memory op, In[] memory ins, In memory me, uint256 v, uint256 e, uint256 claimed)
        internal
        pure
        returns (bool)
    {
        uint256 h = op.attrs[1];
        uint256 s0 = (e / (2 * h)) * 2 * h;
        uint256 lens = _lens(v - s0, h); // e < V, so s0 < V
        uint256 q = e - s0;
        uint256 t = 0;
        if (q > 0) {
            uint256 tp = (uint256(_sint(me, ld(me, e - 1))) & type(uint64).max) >> 32;
            if (tp > lens >> 128 || tp >= q || q - 1 - tp > uint128(lens)) return false;
            t = _takeA(ins, s0, h, lens, tp, q - 1) ? tp + 1 : tp;
        }
        uint256 pos = _takeA(ins, s0, h, lens, t, q) ? s0 + t : s0 + h + q - t;
        return claimed == (t << 32) + _low(ins[0], pos);
    }

    /// @notice SCAN one-step rule: claimed == canon(p[0]) at j = 0, else add(self[j−1], p[j]) with
    ///         self the defender's own output (RepOps spec §7.3 step 6).
    function scanHolds(In[] memory ins, In memory me, uint256 j, uint256 claimed) internal pure returns (bool) {
        uint32 p = uint32(ld(ins[0], j));
        if (j == 0) return claimed == (Float32.isNaN(p) ? Float32.NAN : p);
        return claimed == Float32.add(uint32(ld(me, j - 1)), p);
    }

    /// @dev Stage 3: e[j] = exp(sub(z'[low(order[j])], z'[low(order[0])])) for j < K, else −0
    ///      (the fold pad), RepOps spec §7.3 step 5.
    function _sampleExp(In[] memory ins, uint256 j, uint256 v, Env memory env) private pure returns (uint256) {
        if (j >= keff(v, env)) return Float32.NEG_ZERO;
        uint32 x = uint32(ld(ins[0], _low(ins[1], j)));
        uint32 m = uint32(ld(ins[0], _low(ins[1], 0)));
        return Float32Transcendental.exp(Float32.sub(x, m));
    }

    /// @dev Stage 5: f[j] = 1.0 iff top_p < 1 and j < K and c[j] ≥ top_p (IEEE), RepOps spec
    ///      §7.3 step 6; ARGFOLD over f then finds the first such j.
    function _topp(In[] memory ins, uint256 j, uint256 v, Env memory env) private pure returns (uint256) {
        if (!Float32.lt(env.topP, Float32.ONE) || j >= keff(v, env)) return 0;
        return Float32.le(env.topP, uint32(ld(ins[0], j))) ? Float32.ONE : 0;
    }

    /// @dev J of RepOps spec §7.3 step 6 from TOPP's f and its first maximum J0: J0 if
    ///      bits(f[J0]) = 1.0, else K − 1.
    function _bigJ(In memory f, In memory j0, uint256 v, Env memory env) private pure returns (uint256) {
        uint256 i0 = _index(j0, v);
        return ld(f, i0) == Float32.ONE ? i0 : keff(v, env) - 1;
    }

    /// @dev Stage 6: r = mul(u, c[J]); g[j] = 1.0 iff j ≤ J and c[j] > r (RepOps spec §7.3
    ///      steps 7-8); ARGFOLD over g then finds the first such j.
    function _draw(In[] memory ins, uint256 j, uint256 v, Env memory env) private pure returns (uint256) {
        uint256 bigJ = _bigJ(ins[1], ins[2], v, env);
        if (j > bigJ) return 0;
        uint32 r = Float32.mul(prngU(env.seed, env.step), uint32(ld(ins[0], bigJ)));
        return Float32.lt(r, uint32(ld(ins[0], j))) ? Float32.ONE : 0;
    }

    /// @dev Stage 7: j* = j0 if bits(g[j0]) = 1.0, else J (RepOps spec §7.3 step 8).
    function _jstar(In[] memory ins, uint256 v, Env memory env) private pure returns (uint256) {
        uint256 bigJ = _bigJ(ins[2], ins[3], v, env);
        uint256 j0 = _index(ins[1], v);
        return ld(ins[0], j0) == Float32.ONE ? j0 : bigJ;
    }

    /// @dev Stage 8: the token. The greedy argmax A when T = ±0 or z[A] is NaN (RepOps spec §7.3
    ///      step 1), else low(order[j*]).
    function _pick(In[] memory ins, uint256 v, Env memory env) private pure returns (uint256) {
        uint256 a = _index(ins[1], v);
        if (env.temperature & 0x7FFFFFFF == 0 || Float32.isNaN(uint32(ld(ins[0], a)))) return a;
        return _low(ins[2], _index(ins[3], v));
    }
}
