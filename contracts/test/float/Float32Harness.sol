// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Float32} from "../../float/Float32.sol";
import {Float32Transcendental} from "../../float/Float32Transcendental.sol";

/// @notice Batch entry points over the Float32 libraries for the differential tests
///         (tests/contracts/test_float32_diff.py) and the gas benchmark
///         (scripts/bench_float_gas.py). Batching thousands of cases per eth_call keeps 10^4
///         cases per primitive to a handful of RPC round trips. Operands travel packed as
///         big-endian 32-bit words (bit patterns, not the little-endian tensor encoding).
contract Float32Harness {
    using Float32 for uint32;

    /// @notice Unknown operation code.
    error UnknownOp(uint256 op);

    uint256 internal constant OP_ADD = 0;
    uint256 internal constant OP_SUB = 1;
    uint256 internal constant OP_MUL = 2;
    uint256 internal constant OP_DIV = 3;
    uint256 internal constant OP_MAX = 4;
    uint256 internal constant OP_MIN = 5;
    uint256 internal constant OP_CMP = 6; // bit 0: lt, bit 1: le, bit 2: eq
    uint256 internal constant OP_SQRT = 10;
    uint256 internal constant OP_EXP = 11;
    uint256 internal constant OP_LOG = 12;
    uint256 internal constant OP_NEG = 13;
    uint256 internal constant OP_TOINT32 = 14; // int32 result as a 32-bit two's complement word
    uint256 internal constant OP_FMA = 20;

    /// @dev Word `i` (32-bit, big-endian) of packed calldata.
    function _word(bytes calldata xs, uint256 i) private pure returns (uint32 w) {
        assembly ("memory-safe") {
            w := shr(224, calldataload(add(xs.offset, shl(2, i))))
        }
    }

    /// @dev Stores a 32-bit word at index `i` of `out` (big-endian).
    function _put(bytes memory out, uint256 i, uint256 w) private pure {
        assembly ("memory-safe") {
            let p := add(add(out, 32), shl(2, i))
            mstore(p, or(shl(224, w), and(mload(p), 0x00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff)))
        }
    }

    /// @notice One operation on one operand triple (unused operands ignored); the dispatcher
    ///         shared by the batch and gas entry points.
    function apply1(uint256 op, uint32 a, uint32 b, uint32 c) public pure returns (uint256) {
        if (op == OP_ADD) return a.add(b);
        if (op == OP_SUB) return a.sub(b);
        if (op == OP_MUL) return a.mul(b);
        if (op == OP_DIV) return a.div(b);
        if (op == OP_MAX) return a.max(b);
        if (op == OP_MIN) return a.min(b);
        if (op == OP_CMP) {
            return (a.lt(b) ? 1 : 0) | (a.le(b) ? 2 : 0) | (a.eq(b) ? 4 : 0);
        }
        if (op == OP_SQRT) return a.sqrt();
        if (op == OP_EXP) return Float32Transcendental.exp(a);
        if (op == OP_LOG) return Float32Transcendental.log(a);
        if (op == OP_NEG) return a.neg();
        if (op == OP_TOINT32) return uint32(uint256(int256(a.toInt32())));
        if (op == OP_FMA) return a.fma(b, c);
        revert UnknownOp(op);
    }

    /// @notice Applies `op` to `n` cases; `xs` holds `arity` big-endian words per case.
    /// @return out one big-endian word per case.
    function batch(uint256 op, uint256 arity, bytes calldata xs) external pure returns (bytes memory out) {
        uint256 n = xs.length / (4 * arity);
        out = new bytes(4 * n);
        for (uint256 i = 0; i < n; i++) {
            uint256 j = i * arity;
            uint32 a = _word(xs, j);
            uint32 b = arity > 1 ? _word(xs, j + 1) : 0;
            uint32 c = arity > 2 ? _word(xs, j + 2) : 0;
            _put(out, i, apply1(op, a, b, c));
        }
    }

    /// @notice One-step `fmaChain` per (a, b, c) triple of `xs` (packed as in `batch`): the
    ///         chain loop's inline fast path checked case by case against fma's oracle.
    function chainStepBatch(bytes calldata xs) external pure returns (bytes memory out) {
        uint256 n = xs.length / 12;
        out = new bytes(4 * n);
        for (uint256 i = 0; i < n; i++) {
            _put(out, i, _chainStep(_word(xs, 3 * i), _word(xs, 3 * i + 1), _word(xs, 3 * i + 2)));
        }
    }

    /// @dev fmaChain(a, b, count 1, acc c) over freshly encoded 4-byte little-endian rows.
    function _chainStep(uint32 a, uint32 b, uint32 c) private pure returns (uint32) {
        bytes memory ra = new bytes(4);
        bytes memory rb = new bytes(4);
        assembly ("memory-safe") {
            let la := or(shr(8, and(a, 0xff00ff00)), shl(8, and(a, 0x00ff00ff)))
            la := or(shr(16, la), and(shl(16, la), 0xffff0000))
            let lb := or(shr(8, and(b, 0xff00ff00)), shl(8, and(b, 0x00ff00ff)))
            lb := or(shr(16, lb), and(shl(16, lb), 0xffff0000))
            mstore(add(ra, 32), shl(224, la))
            mstore(add(rb, 32), shl(224, lb))
        }
        return Float32.fmaChain(ra, 0, rb, 0, 1, c);
    }

    /// @notice int64 -> f32 for each big-endian 8-byte two's complement integer in `xs`.
    function fromInt64Batch(bytes calldata xs) external pure returns (bytes memory out) {
        uint256 n = xs.length / 8;
        out = new bytes(4 * n);
        for (uint256 i = 0; i < n; i++) {
            int64 v;
            assembly ("memory-safe") {
                v := signextend(7, shr(192, calldataload(add(xs.offset, shl(3, i)))))
            }
            _put(out, i, Float32.fromInt(v));
        }
    }

    /// @notice int256 -> f32 (the wide path of fromInt).
    function fromInt256Batch(int256[] calldata xs) external pure returns (uint32[] memory out) {
        out = new uint32[](xs.length);
        for (uint256 i = 0; i < xs.length; i++) {
            out[i] = Float32.fromInt(xs[i]);
        }
    }

    /// @notice f32 -> int64 for each big-endian word in `xs`.
    function toInt64Batch(bytes calldata xs) external pure returns (int64[] memory out) {
        uint256 n = xs.length / 4;
        out = new int64[](n);
        for (uint256 i = 0; i < n; i++) {
            out[i] = Float32.toInt64(_word(xs, i));
        }
    }

    /// @notice Gas of one operation (the library code inlined at the call site, excluding the
    ///         dispatch) and its result.
    function gasOf(uint256 op, uint32 a, uint32 b, uint32 c) external view returns (uint256 r, uint256 gasUsed) {
        uint256 g;
        if (op == OP_ADD) {
            g = gasleft();
            r = a.add(b);
        } else if (op == OP_SUB) {
            g = gasleft();
            r = a.sub(b);
        } else if (op == OP_MUL) {
            g = gasleft();
            r = a.mul(b);
        } else if (op == OP_DIV) {
            g = gasleft();
            r = a.div(b);
        } else if (op == OP_MAX) {
            g = gasleft();
            r = a.max(b);
        } else if (op == OP_MIN) {
            g = gasleft();
            r = a.min(b);
        } else if (op == OP_CMP) {
            g = gasleft();
            r = a.lt(b) ? 1 : 0;
        } else if (op == OP_SQRT) {
            g = gasleft();
            r = a.sqrt();
        } else if (op == OP_EXP) {
            g = gasleft();
            r = Float32Transcendental.exp(a);
        } else if (op == OP_LOG) {
            g = gasleft();
            r = Float32Transcendental.log(a);
        } else if (op == OP_NEG) {
            g = gasleft();
            r = a.neg();
        } else if (op == OP_TOINT32) {
            g = gasleft();
            r = uint32(uint256(int256(a.toInt32())));
        } else if (op == OP_FMA) {
            g = gasleft();
            r = a.fma(b, c);
        } else {
            revert UnknownOp(op);
        }
        gasUsed = g - gasleft();
    }

    /// @notice `gasOf` for many cases in one eth_call (`xs` packed as in `batch`).
    function gasBatch(uint256 op, uint256 arity, bytes calldata xs) external view returns (uint256[] memory gasUsed) {
        uint256 n = xs.length / (4 * arity);
        gasUsed = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 j = i * arity;
            uint32 b = arity > 1 ? _word(xs, j + 1) : 0;
            uint32 c = arity > 2 ? _word(xs, j + 2) : 0;
            (, gasUsed[i]) = this.gasOf(op, _word(xs, j), b, c);
        }
    }

    /// @notice Gas of fromInt on one int256.
    function gasOfFromInt(int256 v) external view returns (uint256 r, uint256 gasUsed) {
        uint256 g = gasleft();
        r = Float32.fromInt(v);
        gasUsed = g - gasleft();
    }

    /// @notice The matmul chain over little-endian rows in memory (copied from calldata).
    function fmaChain(bytes memory a, uint256 aStart, bytes memory b, uint256 bStart, uint256 count, uint32 acc)
        external
        view
        returns (uint32 r, uint256 gasUsed)
    {
        uint256 g = gasleft();
        r = Float32.fmaChain(a, aStart, b, bStart, count, acc);
        gasUsed = g - gasleft();
    }

    /// @notice The matmul chain over little-endian rows read straight from calldata.
    function fmaChainCalldata(
        bytes calldata a,
        uint256 aStart,
        bytes calldata b,
        uint256 bStart,
        uint256 count,
        uint32 acc
    ) external view returns (uint32 r, uint256 gasUsed) {
        uint256 g = gasleft();
        r = Float32.fmaChainCalldata(a, aStart, b, bStart, count, acc);
        gasUsed = g - gasleft();
    }

    /// @notice Element loads from a little-endian chunk, memory and calldata paths.
    function loads(bytes calldata chunk, uint256[] calldata idx)
        external
        pure
        returns (uint32[] memory fromMemory, uint32[] memory fromCalldata)
    {
        bytes memory m = chunk;
        fromMemory = new uint32[](idx.length);
        fromCalldata = new uint32[](idx.length);
        for (uint256 i = 0; i < idx.length; i++) {
            fromMemory[i] = Float32.load(m, idx[i]);
            fromCalldata[i] = Float32.loadCalldata(chunk, idx[i]);
        }
    }
}
