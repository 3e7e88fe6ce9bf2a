// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Float32} from "./Float32.sol";

/// @title Float32Transcendental: correctly rounded binary32 exp and log
/// @notice RepOps spec §5 defines exp and log as the correctly rounded results RN(e^x), RN(ln x),
///         so this library returns the same bits as the CPU and GPU kernels without sharing their
///         algorithm: it evaluates the function in 256-bit fixed point with a proven absolute
///         error bound ERR (in units of the last fixed-point bit) and rounds the two ends of the
///         interval [y - ERR, y + ERR] with `Float32.roundPack`. If both ends round to the same
///         binary32 value, that value is RN of the exact result (rounding is monotonic). The
///         bounds are far below what any binary32 input needs (relative 2^-115 for exp, 2^-96
///         for log near 1, versus about 2^-24 * 2^-40 for the hardest binary32 cases), so the
///         guard never fires; if it ever did, the call reverts instead of returning wrong bits.
library Float32Transcendental {
    /// @notice The error interval around the fixed-point value straddles a rounding boundary
    ///         (never expected for binary32; guards the correct-rounding claim).
    error Float32AmbiguousRounding(uint32 x);

    /// @dev ln 2 * 2^184, rounded to nearest (range reduction of exp).
    uint256 private constant LN2_184 = 0xb17217f7d1cf79abc9e3b39803f2f6af40f343267298b6;
    /// @dev ln 2 * 2^192, rounded to nearest (k * ln 2 in log).
    uint256 private constant LN2_192 = 0xb17217f7d1cf79abc9e3b39803f2f6af40f343267298b62e;
    /// @dev 2^64 / ln 2, rounded (only used to pick k; any k near x / ln 2 is correct).
    uint256 private constant INV_LN2_64 = 0x171547652b82fe177;
    /// @dev Error bound of exp's fixed-point value, units of 2^-120 (analysis in `exp`).
    uint256 private constant EXP_ERR = 16;
    /// @dev Error bound of log's fixed-point value, units of 2^-128 (analysis in `log`).
    uint256 private constant LOG_ERR = 64;

    /// @notice exp(x) = RN(e^x), correctly rounded for every binary32 x (RepOps spec §5).
    ///         exp(NaN) = NaN, exp(+inf) = +inf, exp(-inf) = +0, exp(+-0) = 1; overflow gives
    ///         +inf, underflow is gradual (subnormal results, RNE).
    /// @dev    |x| < 2^-26: e^x lies within 2^-26 (+ 2^-53) of 1, inside (1 - 2^-25, 1 + 2^-24),
    ///         the two midpoints around 1, so the result is 1. x >= 89 overflows, x < -104 is below
    ///         2^-150 (half the least subnormal), so +0. Otherwise x = m * 2^e is exact at scale
    ///         2^-184 (|x| >= 2^-26 makes e >= -49), k = round(x / ln 2), r = x - k ln 2 with
    ///         |r| <= 0.3466 (error <= 75.5 * 2^-184 before truncation to 2^-120, so <= 1 unit),
    ///         and P = sum_{n <= 24} r^n / n! by Horner at scale 2^-120 (coefficients rounded,
    ///         0.5 unit each; truncating products, 1 unit each; contraction |r| < 0.35): evaluation
    ///         error <= 1.5 / 0.65 = 2.31 units, r error times e^r <= 1.42 units, series tail
    ///         <= 0.28 units; total < 4.1 < EXP_ERR = 16. Then e^x = P * 2^(k - 120).
    /// @param x binary32 bit pattern.
    /// @return r the correctly rounded bit pattern.
    function exp(uint32 x) internal pure returns (uint32 r) {
        uint256 p;
        int256 k;
        bool done = true;
        assembly ("memory-safe") {
            x := and(x, 0xffffffff)
            let absX := and(x, 0x7fffffff)
            switch gt(absX, 0x7f800000)
            case 1 { r := 0x7fc00000 }
            default {
                switch lt(absX, 0x32800000)
                case 1 { r := 0x3f800000 }
                default {
                    let sx := shr(31, x)
                    // Out of range: x >= 89 overflows to +inf, x < -104 underflows to +0.
                    let out := gt(absX, 0x42b1ffff)
                    if sx { out := gt(absX, 0x42d00000) }
                    if out { r := mul(0x7f800000, iszero(sx)) }
                    if iszero(out) {
                        done := 0
                        // x * 2^184 = mx * 2^(ex - 150 + 184); 101 <= ex <= 133, so < 2^191.
                        let ex := shr(23, absX)
                        let xx := shl(add(ex, 34), or(and(x, 0x7fffff), 0x800000))
                        if sx { xx := sub(0, xx) }
                        k := sar(184, add(mul(sar(64, xx), INV_LN2_64), shl(183, 1)))
                        let rr := sar(64, sub(xx, mul(k, LN2_184)))
                        // P = e^r at scale 2^-120 (Taylor, degree 24, Horner).
                        p := 0x1f2cf01972f
                        p := add(0x2ec368262c70, sar(120, mul(p, rr)))
                        p := add(0x4338e5b6dfe15, sar(120, mul(p, rr)))
                        p := add(0x5c6e3bdb73d5c6, sar(120, mul(p, rr)))
                        p := add(0x7950ae900808942, sar(120, mul(p, rr)))
                        p := add(0x97a4da340a0ab926, sar(120, mul(p, rr)))
                        p := add(0xb413c31dcbecbbdd8, sar(120, mul(p, rr)))
                        p := add(0xca963b81856a535930, sar(120, mul(p, rr)))
                        p := add(0xd73f9f399dc0f88ec33, sar(120, mul(p, rr)))
                        p := add(0xd73f9f399dc0f88ec32b, sar(120, mul(p, rr)))
                        p := add(0xc9cba54603e4e905d6f8a, sar(120, mul(p, rr)))
                        p := add(0xb092309d43684be51c198f, sar(120, mul(p, rr)))
                        p := add(0x8f76c77fc6c4bdaa26d4c3d, sar(120, mul(p, rr)))
                        p := add(0x6b99159fd5138e3f9d1f92e1, sar(120, mul(p, rr)))
                        p := add(0x49f93edde27d71cbbc05b4faa, sar(120, mul(p, rr)))
                        p := add(0x2e3bc74aad8e671f5583911ca0, sar(120, mul(p, rr)))
                        p := add(0x1a01a01a01a01a01a01a01a01a0, sar(120, mul(p, rr)))
                        p := add(0xd00d00d00d00d00d00d00d00d01, sar(120, mul(p, rr)))
                        p := add(0x5b05b05b05b05b05b05b05b05b06, sar(120, mul(p, rr)))
                        p := add(0x22222222222222222222222222222, sar(120, mul(p, rr)))
                        p := add(0xaaaaaaaaaaaaaaaaaaaaaaaaaaaab, sar(120, mul(p, rr)))
                        p := add(0x2aaaaaaaaaaaaaaaaaaaaaaaaaaaab, sar(120, mul(p, rr)))
                        p := add(0x800000000000000000000000000000, sar(120, mul(p, rr)))
                        p := add(0x1000000000000000000000000000000, sar(120, mul(p, rr)))
                        p := add(0x1000000000000000000000000000000, sar(120, mul(p, rr)))
                    }
                }
            }
        }
        if (!done) {
            // p +- EXP_ERR lies in [2^119, 2^121): its msb is 119 or 120.
            unchecked {
                uint256 lo = p - EXP_ERR;
                uint256 hi = p + EXP_ERR;
                r = Float32.roundPackN(0, lo, k - 120, 119 + (lo >> 120));
                if (Float32.roundPackN(0, hi, k - 120, 119 + (hi >> 120)) != r) {
                    revert Float32AmbiguousRounding(x);
                }
            }
        }
    }

    /// @notice log(x) = RN(ln x), correctly rounded for every binary32 x (RepOps spec §5).
    ///         log(NaN) = NaN, log(x < 0) = NaN (-inf included), log(+-0) = -inf,
    ///         log(+inf) = +inf, log(1) = +0.
    /// @dev    x = f * 2^K with f = mx / 2^23 in [1, 2) (subnormals normalized first), halved
    ///         into [0.7071, 1.4142] when above sqrt 2. ln f = 2 atanh(s), s = (f - 1)/(f + 1),
    ///         |s| <= 0.17158, z = s^2 <= 0.029438: ln f = 2 s * sum_{n <= 22} z^n / (2n + 1),
    ///         Horner at scale 2^-128. Errors in units of 2^-128: s < 1 (truncating division), z
    ///         <= 2, p <= 0.5 / 0.97 coefficient rounding + 1 / 0.97 truncation + z's effect
    ///         (<= 1) = 2.6, 2 s p <= 2(0.172 * 2.6 + 1.01 * 1) + 1 = 3.9, series tail <= 15.6,
    ///         K ln 2 <= 1.1: total < 21 < LOG_ERR = 64. Relative to the result: |ln x| >=
    ///         2^-24 * 0.99 (at x = 1 - 2^-24), i.e. >= 2^103 units, so at worst 2^-97; for
    ///         K != 0, |ln x| >= 0.346.
    /// @param x binary32 bit pattern.
    /// @return r the correctly rounded bit pattern.
    function log(uint32 x) internal pure returns (uint32 r) {
        uint256 sign;
        uint256 a;
        bool done = true;
        assembly ("memory-safe") {
            x := and(x, 0xffffffff)
            switch or(gt(x, 0x7f7fffff), iszero(x))
            case 1 {
                // Zeros, infinities, NaNs and negatives.
                r := 0x7fc00000
                if iszero(and(x, 0x7fffffff)) { r := 0xff800000 }
                if eq(x, 0x7f800000) { r := x }
            }
            default {
                if iszero(eq(x, 0x3f800000)) {
                    done := 0
                    let ex := shr(23, x)
                    let mx := and(x, 0x7fffff)
                    switch ex
                    case 0 {
                        // Subnormal: shift the leading bit up to bit 23; x = mx * 2^(ex - 150).
                        let n := shl(4, lt(0xffff, mx))
                        n := or(n, shl(3, lt(0xff, shr(n, mx))))
                        n := or(n, shl(2, lt(0xf, shr(n, mx))))
                        n := or(n, shl(1, lt(0x3, shr(n, mx))))
                        n := or(n, lt(0x1, shr(n, mx)))
                        mx := shl(sub(23, n), mx)
                        ex := sub(n, 22)
                    }
                    default { mx := or(mx, 0x800000) }
                    let kk := sub(ex, 127)
                    let d := 0x800000
                    // f > sqrt 2 (sqrt 2 * 2^23 = 11863283.2): use f / 2 and K + 1.
                    if gt(mx, 11863283) {
                        d := 0x1000000
                        kk := add(kk, 1)
                    }
                    let s := sdiv(shl(128, sub(mx, d)), add(mx, d))
                    let z := shr(128, mul(s, s))
                    let p := 0
                    p := 0x5b05b05b05b05b05b05b05b05b05b06
                    p := add(0x5f417d05f417d05f417d05f417d05f4, shr(128, mul(p, z)))
                    p := add(0x63e7063e7063e7063e7063e7063e706, shr(128, mul(p, z)))
                    p := add(0x6906906906906906906906906906907, shr(128, mul(p, z)))
                    p := add(0x6eb3e45306eb3e45306eb3e45306eb4, shr(128, mul(p, z)))
                    p := add(0x7507507507507507507507507507507, shr(128, mul(p, z)))
                    p := add(0x7c1f07c1f07c1f07c1f07c1f07c1f08, shr(128, mul(p, z)))
                    p := add(0x8421084210842108421084210842108, shr(128, mul(p, z)))
                    p := add(0x8d3dcb08d3dcb08d3dcb08d3dcb08d4, shr(128, mul(p, z)))
                    p := add(0x97b425ed097b425ed097b425ed097b4, shr(128, mul(p, z)))
                    p := add(0xa3d70a3d70a3d70a3d70a3d70a3d70a, shr(128, mul(p, z)))
                    p := add(0xb21642c8590b21642c8590b21642c86, shr(128, mul(p, z)))
                    p := add(0xc30c30c30c30c30c30c30c30c30c30c, shr(128, mul(p, z)))
                    p := add(0xd79435e50d79435e50d79435e50d794, shr(128, mul(p, z)))
                    p := add(0xf0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f, shr(128, mul(p, z)))
                    p := add(0x11111111111111111111111111111111, shr(128, mul(p, z)))
                    p := add(0x13b13b13b13b13b13b13b13b13b13b14, shr(128, mul(p, z)))
                    p := add(0x1745d1745d1745d1745d1745d1745d17, shr(128, mul(p, z)))
                    p := add(0x1c71c71c71c71c71c71c71c71c71c71c, shr(128, mul(p, z)))
                    p := add(0x24924924924924924924924924924925, shr(128, mul(p, z)))
                    p := add(0x33333333333333333333333333333333, shr(128, mul(p, z)))
                    p := add(0x55555555555555555555555555555555, shr(128, mul(p, z)))
                    p := add(0x100000000000000000000000000000000, shr(128, mul(p, z)))
                    let y := add(sar(64, mul(kk, LN2_192)), sar(127, mul(s, p)))
                    sign := slt(y, 0)
                    a := y
                    if sign { a := sub(0, y) }
                }
            }
        }
        if (!done) {
            // a >= 2^103 >> LOG_ERR: the msbs of a -+ LOG_ERR are within one of a's.
            unchecked {
                uint256 n = Float32.log2(a);
                uint256 lo = a - LOG_ERR;
                uint256 hi = a + LOG_ERR;
                r = Float32.roundPackN(sign, lo, -128, (lo >> n) == 0 ? n - 1 : n);
                if (Float32.roundPackN(sign, hi, -128, (hi >> (n + 1)) != 0 ? n + 1 : n) != r) {
                    revert Float32AmbiguousRounding(x);
                }
            }
        }
    }
}
