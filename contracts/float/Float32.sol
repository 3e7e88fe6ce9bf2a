// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Float32: IEEE-754 binary32 arithmetic on bit patterns
/// @notice The one-step verifier re-executes a single RepOps step on-chain, so it must produce the
///         very bits the CPU reference and the GPU kernels produce (RepOps spec §1-§2, DESIGN §4).
///         A value is its binary32 bit pattern held in a `uint32` (sign bit 31, exponent bits
///         30..23, fraction bits 22..0): `uint32` rather than `bytes4` because every operation
///         needs integer shifts and masks, and the little-endian tensor loads produce integers.
///         All arithmetic is round-to-nearest-even with gradual underflow (subnormals in and out,
///         no flush-to-zero); every NaN result is the canonical quiet NaN `0x7FC00000`, whatever
///         NaN came in (RepOps spec §1). All functions are `internal`, so they are inlined into
///         the calling contract (no DELEGATECALL cost).
/// @dev    Every finite non-zero operand is unpacked to `m * 2^e` with an integer significand
///         `m < 2^24` and quantum exponent `e = max(E, 1) - 150` (E = biased exponent field). The
///         operation computes its exact result, or an integer carrying a sticky bit below the
///         rounding position, and `roundPack` rounds once. 256-bit words make all of this exact.
library Float32 {
    /// @notice The canonical quiet NaN of RepOps spec §1.
    uint32 internal constant NAN = 0x7FC00000;
    /// @notice +infinity.
    uint32 internal constant POS_INF = 0x7F800000;
    /// @notice -infinity.
    uint32 internal constant NEG_INF = 0xFF800000;
    /// @notice -0.0 (the additive identity used to pad folding sums, RepOps spec §4).
    uint32 internal constant NEG_ZERO = 0x80000000;
    /// @notice 1.0.
    uint32 internal constant ONE = 0x3F800000;

    /// @notice An element index past the end of a tensor chunk.
    error Float32IndexOutOfRange(uint256 index, uint256 length);

    // ------------------------------------------------------------------ classification

    /// @notice True for every NaN bit pattern (quiet or signalling, either sign).
    /// @param x binary32 bit pattern.
    /// @return r whether `x` is a NaN.
    function isNaN(uint32 x) internal pure returns (bool r) {
        assembly ("memory-safe") {
            r := gt(and(x, 0x7fffffff), 0x7f800000)
        }
    }

    /// @notice True for +inf and -inf.
    /// @param x binary32 bit pattern.
    /// @return r whether `x` is infinite.
    function isInf(uint32 x) internal pure returns (bool r) {
        assembly ("memory-safe") {
            r := eq(and(x, 0x7fffffff), 0x7f800000)
        }
    }

    // ------------------------------------------------------------------ sign operations

    /// @notice Negation flips the sign bit (RepOps spec §1.3: not `0 - x`, which would give +0
    ///         for x = +0); a NaN input gives the canonical NaN (§1.2).
    /// @param x binary32 bit pattern.
    /// @return r `x` with its sign bit flipped, or `NAN`.
    function neg(uint32 x) internal pure returns (uint32 r) {
        assembly ("memory-safe") {
            x := and(x, 0xffffffff)
            r := xor(x, 0x80000000)
            if gt(and(x, 0x7fffffff), 0x7f800000) { r := 0x7fc00000 }
        }
    }

    // ------------------------------------------------------------------ rounding core

    /// @dev Marks "msb position unknown" in the arithmetic fast paths; any n >= UNKNOWN_MSB
    ///      makes the caller compute floor(log2 m) with `log2` (only subnormal operands and
    ///      close-exponent cancellations need it). Each operation's assembly leaves (s, m, e, n);
    ///      m == 0 means `r` is already final (special values, zeros, exact cancellation).
    uint256 private constant UNKNOWN_MSB = 256;

    /// @notice floor(log2 x) for x > 0 (0 for x = 0).
    /// @dev    Binary search over 128/64/32/16/8 bits, then an 8-bit lookup (the two constants of
    ///         Solady's FixedPointMathLib.log2; the lookup was checked for all 255 byte values).
    /// @param x the integer.
    /// @return r the index of the most significant set bit.
    function log2(uint256 x) internal pure returns (uint256 r) {
        assembly ("memory-safe") {
            r := shl(7, lt(0xffffffffffffffffffffffffffffffff, x))
            r := or(r, shl(6, lt(0xffffffffffffffff, shr(r, x))))
            r := or(r, shl(5, lt(0xffffffff, shr(r, x))))
            r := or(r, shl(4, lt(0xffff, shr(r, x))))
            r := or(r, shl(3, lt(0xff, shr(r, x))))
            r := or(
                r,
                byte(
                    and(0x1f, shr(shr(r, x), 0x8421084210842108cc6318c6db6d54be)),
                    0x0706060506020504060203020504030106050205030304010505030400000000
                )
            )
        }
    }

    /// @notice Rounds `(-1)^sign * m * 2^e` to binary32, round-to-nearest-even, with gradual
    ///         underflow and overflow to infinity (IEEE-754 §4.3.1, RepOps spec §2).
    /// @dev    Exposed (internal) so that other float code (exp/log) rounds through the same
    ///         routine. Preconditions: `sign` is 0 or 1, `m < 2^249`. `m` may carry a sticky bit
    ///         in its least significant bit as long as that bit lies strictly below the rounding
    ///         position (callers keep at least two bits of slack).
    /// @param sign 1 for a negative result.
    /// @param m non-negative integer significand (zero gives a signed zero).
    /// @param e power-of-two exponent of `m`.
    /// @return r the rounded bit pattern.
    function roundPack(uint256 sign, uint256 m, int256 e) internal pure returns (uint32 r) {
        if (m == 0) return uint32(sign << 31);
        return roundPackN(sign, m, e, log2(m));
    }

    /// @notice `roundPack` for a caller that knows n = floor(log2 m) (m > 0).
    /// @dev    With the rounded significand M (at most 2^24) and quantum exponent q, the bit
    ///         pattern is `(q + 149) << 23 + M`: a round-up into 2^24 carries into the exponent
    ///         field, and a subnormal (q = -149, M < 2^23) gets exponent field 0, branch-free.
    ///         Round half to even: round up iff rem + (M & 1) > half (rem = dropped bits).
    /// @param sign 1 for a negative result.
    /// @param m positive integer significand, m < 2^249.
    /// @param e power-of-two exponent of `m`.
    /// @param n floor(log2 m).
    /// @return r the rounded bit pattern.
    function roundPackN(uint256 sign, uint256 m, int256 e, uint256 n) internal pure returns (uint32 r) {
        assembly ("memory-safe") {
            // Quantum exponent of a 24-bit significand.
            let q := sub(add(n, e), 23)
            switch slt(q, not(148))
            case 0 {
                // Normal range (q >= -149).
                switch gt(n, 23)
                case 1 {
                    let sh := sub(n, 23)
                    r := shr(sh, m)
                    r := add(r, gt(add(and(m, sub(shl(sh, 1), 1)), and(r, 1)), shl(sub(sh, 1), 1)))
                }
                default { r := shl(sub(23, n), m) }
                r := add(shl(23, add(q, 149)), r)
                if gt(r, 0x7f7fffff) { r := 0x7f800000 }
            }
            default {
                // Below 2^-126: quantum 2^-149, shift by sh = -149 - e (> n - 23).
                let sh := sub(not(148), e)
                switch sgt(sh, 0)
                case 1 {
                    // sh > 250 >= n + 2: |value| < 2^-150 rounds to zero.
                    if lt(sh, 251) {
                        r := shr(sh, m)
                        r := add(r, gt(add(and(m, sub(shl(sh, 1), 1)), and(r, 1)), shl(sub(sh, 1), 1)))
                    }
                }
                default { r := shl(sub(0, sh), m) }
            }
            r := or(r, shl(31, sign))
        }
    }

    // ------------------------------------------------------------------ arithmetic

    /// @notice a + b, correctly rounded (RepOps spec §2). x + (-x) = +0; (-0) + (-0) = -0.
    /// @dev    Operands are ordered by magnitude (|a| >= |b|, so the result takes a's sign) and
    ///         a's significand is shifted left by the exponent gap d. For d > 40, b lies
    ///         entirely below a quarter-ulp of the (normal) a and is replaced by a sticky 1 at
    ///         2^-40 of a's quantum: the exact sum and the substitute lie strictly between the
    ///         same two rounding boundaries. The result's msb is known without a search except
    ///         in a cancellation with d <= 1 or with subnormal operands.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r the rounded sum.
    function add(uint32 a, uint32 b) internal pure returns (uint32 r) {
        uint256 s;
        uint256 m;
        int256 e;
        uint256 n = UNKNOWN_MSB;
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            switch or(gt(absA, 0x7f7fffff), gt(absB, 0x7f7fffff))
            case 1 {
                // At least one NaN or infinity.
                r := 0x7fc00000
                if iszero(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))) {
                    r := b
                    if eq(absA, 0x7f800000) {
                        r := a
                        // inf + (-inf) is invalid.
                        if and(eq(absB, 0x7f800000), iszero(eq(a, b))) { r := 0x7fc00000 }
                    }
                }
            }
            default {
                switch or(iszero(absA), iszero(absB))
                case 1 {
                    // x + 0 = x; for two zeros, -0 only when both are -0.
                    r := a
                    if iszero(absA) { r := b }
                    if iszero(or(absA, absB)) { r := and(a, b) }
                }
                default {
                    if lt(absA, absB) {
                        let t := a
                        a := b
                        b := t
                        t := absA
                        absA := absB
                        absB := t
                    }
                    s := shr(31, a)
                    absA := shr(23, absA) // biased exponents from here on
                    absB := shr(23, absB)
                    m := or(and(a, 0x7fffff), shl(23, iszero(iszero(absA))))
                    let mb := or(and(b, 0x7fffff), shl(23, iszero(iszero(absB))))
                    let d := sub(add(absA, iszero(absA)), add(absB, iszero(absB)))
                    e := sub(sub(add(absA, iszero(absA)), d), 150)
                    if gt(d, 40) {
                        d := 40
                        mb := 1
                        e := sub(sub(absA, 40), 150)
                    }
                    m := shl(d, m)
                    // a normal: msb(a << d) = 23 + d and msb(b) <= 23.
                    switch eq(s, shr(31, b))
                    case 1 {
                        m := add(m, mb)
                        if absA { n := add(add(23, d), iszero(iszero(shr(add(24, d), m)))) }
                    }
                    default {
                        // Exact cancellation leaves m = 0 and r = +0 (round-to-nearest-even).
                        m := sub(m, mb)
                        if and(iszero(iszero(absA)), gt(d, 1)) {
                            n := sub(add(23, d), iszero(shr(add(23, d), m)))
                        }
                    }
                }
            }
        }
        if (m != 0) r = roundPackN(s, m, e, n < UNKNOWN_MSB ? n : log2(m));
    }

    /// @notice a - b = a + neg(b), correctly rounded (RepOps spec §2).
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return the rounded difference.
    function sub(uint32 a, uint32 b) internal pure returns (uint32) {
        return add(a, b ^ 0x80000000);
    }

    /// @notice a * b, correctly rounded (RepOps spec §2). inf * 0 is NaN.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r the rounded product.
    function mul(uint32 a, uint32 b) internal pure returns (uint32 r) {
        uint256 s;
        uint256 m;
        int256 e;
        uint256 n = UNKNOWN_MSB;
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            s := shr(31, xor(a, b))
            switch or(gt(absA, 0x7f7fffff), gt(absB, 0x7f7fffff))
            case 1 {
                r := 0x7fc00000
                if iszero(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))) {
                    // An infinity times a non-zero is a signed infinity; times zero, NaN.
                    if and(iszero(iszero(absA)), iszero(iszero(absB))) {
                        r := or(0x7f800000, shl(31, s))
                    }
                }
            }
            default {
                switch or(iszero(absA), iszero(absB))
                case 1 { r := shl(31, s) }
                default {
                    absA := shr(23, absA)
                    absB := shr(23, absB)
                    m := mul(
                        or(and(a, 0x7fffff), shl(23, iszero(iszero(absA)))),
                        or(and(b, 0x7fffff), shl(23, iszero(iszero(absB))))
                    )
                    e := sub(add(add(absA, iszero(absA)), add(absB, iszero(absB))), 300)
                    // Two normal significands: the product has 47 or 48 bits.
                    if mul(absA, absB) { n := add(46, shr(47, m)) }
                }
            }
        }
        if (m != 0) r = roundPackN(s, m, e, n < UNKNOWN_MSB ? n : log2(m));
    }

    /// @notice a / b, correctly rounded (RepOps spec §2). 0/0 and inf/inf are NaN; x/0 is a
    ///         signed infinity for x != 0.
    /// @dev    Quotient of `ma << 100` by `mb` has at least 76 bits; a non-zero remainder sets the
    ///         sticky bit, which sits at least 50 bits below the rounding position.
    /// @param a dividend bit pattern.
    /// @param b divisor bit pattern.
    /// @return r the rounded quotient.
    function div(uint32 a, uint32 b) internal pure returns (uint32 r) {
        uint256 s;
        uint256 m;
        int256 e;
        uint256 n = UNKNOWN_MSB;
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            s := shr(31, xor(a, b))
            switch or(gt(absA, 0x7f7fffff), gt(absB, 0x7f7fffff))
            case 1 {
                r := 0x7fc00000
                if iszero(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))) {
                    // inf / finite = inf; finite / inf = 0; inf / inf stays NaN.
                    if lt(absB, 0x7f800000) { r := or(0x7f800000, shl(31, s)) }
                    if lt(absA, 0x7f800000) { r := shl(31, s) }
                }
            }
            default {
                switch iszero(absB)
                case 1 {
                    r := 0x7fc00000
                    if absA { r := or(0x7f800000, shl(31, s)) }
                }
                default {
                    if absA {
                        absA := shr(23, absA)
                        absB := shr(23, absB)
                        let x := shl(100, or(and(a, 0x7fffff), shl(23, iszero(iszero(absA)))))
                        let mb := or(and(b, 0x7fffff), shl(23, iszero(iszero(absB))))
                        m := or(div(x, mb), iszero(iszero(mod(x, mb))))
                        e := sub(sub(add(absA, iszero(absA)), add(absB, iszero(absB))), 100)
                        // Two normal significands: ma/mb in (1/2, 2), quotient in (2^99, 2^101).
                        if mul(absA, absB) { n := add(99, shr(100, m)) }
                    }
                    // 0 / finite non-zero: signed zero.
                    if iszero(absA) { r := shl(31, s) }
                }
            }
        }
        if (m != 0) r = roundPackN(s, m, e, n < UNKNOWN_MSB ? n : log2(m));
    }

    /// @notice sqrt(a), correctly rounded (RepOps spec §2). sqrt(-0) = -0; sqrt(x < 0) = NaN.
    /// @dev    The significand is normalized to [2^23, 2^24) and shifted by 128 or 129 bits so the
    ///         exponent is even: N in [2^151, 2^153). Newton's iteration for floor(sqrt N) starts
    ///         from z0 = N/2^77 + 2^75 + 1 >= sqrt N (AM-GM with c = 2^76), at most 6.1% high;
    ///         the relative error squares each step (6.1e-2, 1.9e-3, 1.7e-6, 1.5e-12, 1.1e-24), so
    ///         four steps leave z in {isqrt N, isqrt N + 1}, and one comparison fixes it.
    ///         isqrt N is in [2^75.5, 2^76.5), so its msb is 75 or 76.
    /// @param a binary32 bit pattern.
    /// @return r the rounded square root.
    function sqrt(uint32 a) internal pure returns (uint32 r) {
        uint256 m;
        int256 e;
        uint256 n;
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            switch or(shr(31, a), or(iszero(absA), gt(absA, 0x7f7fffff)))
            case 1 {
                // Signed zeros and +inf return themselves; NaN and negatives are invalid.
                r := 0x7fc00000
                if or(iszero(absA), eq(a, 0x7f800000)) { r := a }
            }
            default {
                let ea := shr(23, a)
                let ma := and(a, 0x7fffff)
                switch ea
                case 0 {
                    // Subnormal: shift the leading bit up to bit 23.
                    let k := shl(4, lt(0xffff, ma))
                    k := or(k, shl(3, lt(0xff, shr(k, ma))))
                    k := or(k, shl(2, lt(0xf, shr(k, ma))))
                    k := or(k, shl(1, lt(0x3, shr(k, ma))))
                    k := or(k, lt(0x1, shr(k, ma)))
                    ma := shl(sub(23, k), ma)
                    ea := sub(k, 22)
                }
                default { ma := or(ma, 0x800000) }
                // value = ma * 2^(ea - 150); make the exponent even.
                let odd := and(ea, 1)
                let nn := shl(add(128, odd), ma)
                let z := add(add(shr(77, nn), shl(75, 1)), 1)
                z := shr(1, add(z, div(nn, z)))
                z := shr(1, add(z, div(nn, z)))
                z := shr(1, add(z, div(nn, z)))
                z := shr(1, add(z, div(nn, z)))
                z := sub(z, gt(mul(z, z), nn))
                m := or(z, iszero(eq(mul(z, z), nn)))
                n := add(75, shr(76, z))
                e := sdiv(sub(sub(ea, 150), add(128, odd)), 2)
            }
        }
        if (m != 0) r = roundPackN(0, m, e, n);
    }

    /// @notice fma(a, b, c) = a * b + c with a single rounding (IEEE-754 fusedMultiplyAdd,
    ///         RepOps spec §2-§3): the matmul chain step `acc <- fma(a, b, acc)`.
    /// @dev    The exact product has at most 48 bits. The term with the larger quantum exponent
    ///         is shifted left onto the other's; for a gap d <= 80 this is exact (< 2^128). For
    ///         d > 80 the smaller term is below 2^-25 of the larger's quantum and of half the
    ///         result's rounding grid, so it is replaced by a sticky 1 at 2^-80 of the larger
    ///         term's quantum (same sign): the exact sum and the substitute lie strictly between
    ///         the same two rounding boundaries. Exact cancellation gives +0; a zero product
    ///         plus zero follows the IEEE sign rule for sums of zeros. With normal operands the
    ///         msb of each term is known (product 46/47, addend 23, plus the shift), so the
    ///         result's msb needs at most one comparison unless the terms' msbs are within one
    ///         bit of each other and cancel.
    /// @param a binary32 bit pattern (factor).
    /// @param b binary32 bit pattern (factor).
    /// @param c binary32 bit pattern (addend).
    /// @return r the rounded fused multiply-add.
    function fma(uint32 a, uint32 b, uint32 c) internal pure returns (uint32 r) {
        uint256 s;
        uint256 m;
        int256 e;
        uint256 n;
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            c := and(c, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            let absC := and(c, 0x7fffffff)
            s := shr(31, xor(a, b))
            switch or(or(gt(absA, 0x7f7fffff), gt(absB, 0x7f7fffff)), gt(absC, 0x7f7fffff))
            case 1 {
                r := 0x7fc00000
                if iszero(or(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000)), gt(absC, 0x7f800000))) {
                    switch or(eq(absA, 0x7f800000), eq(absB, 0x7f800000))
                    case 1 {
                        // inf * 0 is invalid; inf * x + (opposite inf) is invalid.
                        if and(iszero(iszero(absA)), iszero(iszero(absB))) {
                            let p := or(0x7f800000, shl(31, s))
                            if or(iszero(eq(absC, 0x7f800000)), eq(c, p)) { r := p }
                        }
                    }
                    default { r := c }
                }
            }
            default {
                switch or(iszero(absA), iszero(absB))
                case 1 {
                    // Exact zero product: the IEEE sum-of-zeros sign rule.
                    r := c
                    if iszero(absC) { r := and(shl(31, s), c) }
                }
                default {
                    // Exact product (s, m, e) with msb n (UNKNOWN_MSB for a subnormal factor).
                    absA := shr(23, absA)
                    absB := shr(23, absB)
                    m := mul(
                        or(and(a, 0x7fffff), shl(23, iszero(iszero(absA)))),
                        or(and(b, 0x7fffff), shl(23, iszero(iszero(absB))))
                    )
                    e := sub(add(add(absA, iszero(absA)), add(absB, iszero(absB))), 300)
                    n := 256
                    if mul(absA, absB) { n := add(46, shr(47, m)) }
                    if absC {
                        absA := shr(23, absC)
                        let mc := or(and(c, 0x7fffff), shl(23, iszero(iszero(absA))))
                        let nc := 23
                        if iszero(absA) { nc := 256 }
                        absA := sub(add(absA, iszero(absA)), 150) // addend's quantum exponent
                        switch sgt(absA, e)
                        case 0 {
                            absB := sub(e, absA)
                            if gt(absB, 80) {
                                absB := 80
                                mc := 1
                                nc := 0
                            }
                            m := shl(absB, m)
                            e := sub(e, absB)
                            n := add(n, absB)
                        }
                        default {
                            absB := sub(absA, e)
                            if gt(absB, 80) {
                                absB := 80
                                m := 1
                                n := 0
                            }
                            mc := shl(absB, mc)
                            e := sub(absA, absB)
                            nc := add(nc, absB)
                        }
                        // absA := max(n, nc), absB := min(n, nc): the terms' msb positions.
                        absA := n
                        absB := nc
                        if lt(n, nc) {
                            absA := nc
                            absB := n
                        }
                        n := 256
                        switch eq(s, shr(31, c))
                        case 1 {
                            m := add(m, mc)
                            if lt(absA, 256) { n := add(absA, iszero(iszero(shr(add(absA, 1), m)))) }
                        }
                        default {
                            // Exact cancellation leaves m = 0 and r = +0.
                            switch lt(mc, m)
                            case 1 { m := sub(m, mc) }
                            default {
                                m := sub(mc, m)
                                s := shr(31, c)
                            }
                            if and(lt(absA, 256), gt(sub(absA, absB), 1)) { n := sub(absA, iszero(shr(absA, m))) }
                        }
                    }
                }
            }
        }
        if (m != 0) r = roundPackN(s, m, e, n < UNKNOWN_MSB ? n : log2(m));
    }

    // ------------------------------------------------------------------ comparison

    /// @notice a < b with IEEE semantics: false if either is NaN; -0 < +0 is false.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r whether a < b.
    function lt(uint32 a, uint32 b) internal pure returns (bool r) {
        assembly ("memory-safe") {
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            let ka := absA
            if and(shr(31, a), 1) { ka := sub(0, absA) }
            let kb := absB
            if and(shr(31, b), 1) { kb := sub(0, absB) }
            r := and(slt(ka, kb), iszero(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))))
        }
    }

    /// @notice a <= b with IEEE semantics: false if either is NaN; -0 <= +0 and +0 <= -0.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r whether a <= b.
    function le(uint32 a, uint32 b) internal pure returns (bool r) {
        assembly ("memory-safe") {
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            let ka := absA
            if and(shr(31, a), 1) { ka := sub(0, absA) }
            let kb := absB
            if and(shr(31, b), 1) { kb := sub(0, absB) }
            r := and(iszero(sgt(ka, kb)), iszero(or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))))
        }
    }

    /// @notice a == b with IEEE semantics: NaN equals nothing, -0 == +0.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r whether a == b.
    function eq(uint32 a, uint32 b) internal pure returns (bool r) {
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            r := and(or(eq(a, b), iszero(or(absA, absB))), iszero(gt(absA, 0x7f800000)))
        }
    }

    /// @notice max(a, b) per RepOps spec §4: NaN propagates (as the canonical NaN);
    ///         max(-0, +0) = +0 in either order.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r the maximum.
    function max(uint32 a, uint32 b) internal pure returns (uint32 r) {
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            switch or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))
            case 1 { r := 0x7fc00000 }
            default {
                let ka := absA
                if shr(31, a) { ka := sub(0, absA) }
                let kb := absB
                if shr(31, b) { kb := sub(0, absB) }
                // Equal keys: the same value, or two zeros (+0 unless both are -0).
                r := and(a, b)
                if sgt(ka, kb) { r := a }
                if slt(ka, kb) { r := b }
            }
        }
    }

    /// @notice min(a, b) per RepOps spec §4: NaN propagates (as the canonical NaN);
    ///         min(-0, +0) = -0 in either order.
    /// @param a binary32 bit pattern.
    /// @param b binary32 bit pattern.
    /// @return r the minimum.
    function min(uint32 a, uint32 b) internal pure returns (uint32 r) {
        assembly ("memory-safe") {
            a := and(a, 0xffffffff)
            b := and(b, 0xffffffff)
            let absA := and(a, 0x7fffffff)
            let absB := and(b, 0x7fffffff)
            switch or(gt(absA, 0x7f800000), gt(absB, 0x7f800000))
            case 1 { r := 0x7fc00000 }
            default {
                let ka := absA
                if shr(31, a) { ka := sub(0, absA) }
                let kb := absB
                if shr(31, b) { kb := sub(0, absB) }
                // Equal keys: the same value, or two zeros (-0 if either is -0).
                r := or(a, b)
                if slt(ka, kb) { r := a }
                if sgt(ka, kb) { r := b }
            }
        }
    }

    // ------------------------------------------------------------------ conversions

    /// @notice int -> binary32, round-to-nearest-even (RepOps spec §6.14). 0 converts to +0.
    /// @param v any int256 (int32 and int64 ids/indices included).
    /// @return r the rounded bit pattern.
    function fromInt(int256 v) internal pure returns (uint32 r) {
        uint256 s;
        uint256 m;
        int256 e;
        assembly ("memory-safe") {
            s := slt(v, 0)
            m := v
            if s { m := sub(0, v) }
            // roundPack wants m < 2^249: fold the low 64 bits into a sticky bit (m >= 2^144
            // keeps the sticky far below the rounding position).
            if gt(m, 0xffffffffffffffffffffffffffffffffffffffffffffffffffff) {
                m := or(shr(64, m), iszero(iszero(and(m, 0xffffffffffffffff))))
                e := 64
            }
        }
        r = roundPack(s, m, e);
    }

    /// @notice binary32 -> signed integer of `bits` bits (RepOps spec §6.14, Rust `as`
    ///         semantics): truncation toward zero, NaN -> 0, values beyond the range (and the
    ///         infinities) saturate to the type's min/max.
    /// @param x binary32 bit pattern.
    /// @param bits width of the target type (32 or 64; any 1..255 works).
    /// @return v the converted value, within [-2^(bits-1), 2^(bits-1) - 1].
    function toIntSat(uint32 x, uint256 bits) internal pure returns (int256 v) {
        assembly ("memory-safe") {
            x := and(x, 0xffffffff)
            let absX := and(x, 0x7fffffff)
            let ex := shr(23, absX)
            let sgn := shr(31, x)
            let lim := shl(sub(bits, 1), 1) // 2^(bits-1)
            switch gt(absX, 0x7f800000)
            case 1 { v := 0 }
            default {
                // |x| < 1 (ex < 127) truncates to 0; ex >= 127 + bits - 1 is at least 2^(bits-1)
                // in magnitude, so it saturates (this also covers the infinities, ex = 255).
                if gt(ex, 126) {
                    let mag := lim
                    if lt(ex, add(126, bits)) {
                        let mx := or(and(x, 0x7fffff), 0x800000)
                        switch lt(ex, 150)
                        case 1 { mag := shr(sub(150, ex), mx) }
                        default { mag := shl(sub(ex, 150), mx) }
                    }
                    switch sgn
                    case 1 {
                        if gt(mag, lim) { mag := lim }
                        v := sub(0, mag)
                    }
                    default {
                        if iszero(lt(mag, lim)) { mag := sub(lim, 1) }
                        v := mag
                    }
                }
            }
        }
    }

    /// @notice binary32 -> int32 (RepOps spec §6.14): truncation toward zero, NaN -> 0,
    ///         saturation at the int32 range (the infinities included).
    /// @param x binary32 bit pattern.
    /// @return the converted value.
    function toInt32(uint32 x) internal pure returns (int32) {
        return int32(toIntSat(x, 32));
    }

    /// @notice binary32 -> int64 (RepOps spec §6.14): truncation toward zero, NaN -> 0,
    ///         saturation at the int64 range (the infinities included).
    /// @param x binary32 bit pattern.
    /// @return the converted value.
    function toInt64(uint32 x) internal pure returns (int64) {
        return int64(toIntSat(x, 64));
    }

    // ------------------------------------------------------------------ tensor chunk access

    /// @notice Element `i` of a float32 (or int32) tensor chunk held in memory: 4 little-endian
    ///         bytes at offset 4i (commitments C1: canonical bytes are little-endian).
    /// @param chunk canonical tensor bytes.
    /// @param i element index.
    /// @return x the element's bit pattern.
    function load(bytes memory chunk, uint256 i) internal pure returns (uint32 x) {
        uint256 len = chunk.length;
        if (i >= len >> 2) revert Float32IndexOutOfRange(i, len >> 2);
        assembly ("memory-safe") {
            x := shr(224, mload(add(add(chunk, 32), shl(2, i))))
            x := or(shr(8, and(x, 0xff00ff00)), shl(8, and(x, 0x00ff00ff)))
            x := or(shr(16, x), and(shl(16, x), 0xffff0000))
        }
    }

    /// @notice Element `i` of a float32 (or int32) tensor chunk held in calldata: 4 little-endian
    ///         bytes at offset 4i (commitments C1).
    /// @param chunk canonical tensor bytes.
    /// @param i element index.
    /// @return x the element's bit pattern.
    function loadCalldata(bytes calldata chunk, uint256 i) internal pure returns (uint32 x) {
        uint256 len = chunk.length;
        if (i >= len >> 2) revert Float32IndexOutOfRange(i, len >> 2);
        assembly ("memory-safe") {
            x := shr(224, calldataload(add(chunk.offset, shl(2, i))))
            x := or(shr(8, and(x, 0xff00ff00)), shl(8, and(x, 0x00ff00ff)))
            x := or(shr(16, x), and(shl(16, x), 0xffff0000))
        }
    }

    /// @notice The canonical matmul accumulation chain of RepOps spec §3.1 over a slice:
    ///         for k in 0..count-1 (ascending): acc <- fma(a[aStart + k], b[bStart + k], acc),
    ///         with both rows read as little-endian float32 from memory (commitments C1).
    ///         A whole output element is `fmaChain(row, 0, col, 0, K, 0)`; a bisected
    ///         accumulation step starts from the agreed intermediate accumulator.
    /// @param a first row (e.g. activations), canonical bytes.
    /// @param aStart element offset into `a`.
    /// @param b second row (e.g. a weight row of a [N, K] weight, RepOps spec §3.3).
    /// @param bStart element offset into `b`.
    /// @param count number of FMA steps.
    /// @param acc starting accumulator (+0.0 = 0 for a fresh chain).
    /// @return the accumulator after `count` steps.
    function fmaChain(
        bytes memory a,
        uint256 aStart,
        bytes memory b,
        uint256 bStart,
        uint256 count,
        uint32 acc
    ) internal pure returns (uint32) {
        if (count == 0) return acc;
        if (aStart + count > a.length >> 2) revert Float32IndexOutOfRange(aStart + count - 1, a.length >> 2);
        if (bStart + count > b.length >> 2) revert Float32IndexOutOfRange(bStart + count - 1, b.length >> 2);
        uint256 pa;
        uint256 pb;
        assembly ("memory-safe") {
            pa := add(add(a, 32), shl(2, aStart))
            pb := add(add(b, 32), shl(2, bStart))
        }
        return _chain(pa, pb, pa + (count << 2), acc);
    }

    /// @notice `fmaChain` over rows held in calldata (RepOps spec §3.1). The rows are copied to
    ///         memory first (3 gas per word), so both entry points share one loop.
    /// @param a first row, canonical bytes in calldata.
    /// @param aStart element offset into `a`.
    /// @param b second row, canonical bytes in calldata.
    /// @param bStart element offset into `b`.
    /// @param count number of FMA steps.
    /// @param acc starting accumulator.
    /// @return the accumulator after `count` steps.
    function fmaChainCalldata(
        bytes calldata a,
        uint256 aStart,
        bytes calldata b,
        uint256 bStart,
        uint256 count,
        uint32 acc
    ) internal pure returns (uint32) {
        if (count == 0) return acc;
        if (aStart + count > a.length >> 2) revert Float32IndexOutOfRange(aStart + count - 1, a.length >> 2);
        if (bStart + count > b.length >> 2) revert Float32IndexOutOfRange(bStart + count - 1, b.length >> 2);
        uint256 pa;
        uint256 pb;
        assembly ("memory-safe") {
            let len := shl(2, count)
            pa := mload(0x40)
            pb := add(pa, len)
            calldatacopy(pa, add(a.offset, shl(2, aStart)), len)
            calldatacopy(pb, add(b.offset, shl(2, bStart)), len)
            // 32 bytes of slack after pb's row: the last load reads a whole word.
            mstore(0x40, add(add(pb, len), 32))
        }
        return _chain(pa, pb, pa + (count << 2), acc);
    }

    /// @dev The chain loop over memory pointers (pa, pb advance together until pa == end).
    ///      Steps whose three operands are normal and whose result is a normal number with at
    ///      least 24 significant bits before rounding run inline: the same arithmetic as `fma`
    ///      (exact product, alignment with the 80-bit sticky cut-off, known msb, RNE), without
    ///      the per-step calls. Any other step (zeros, subnormals, infinities, NaN, a subnormal
    ///      or massively cancelled result) leaves the loop and goes through `fma` itself.
    function _chain(uint256 pa, uint256 pb, uint256 end, uint32 acc) private pure returns (uint32) {
        while (pa < end) {
            bool slow;
            assembly ("memory-safe") {
                acc := and(acc, 0xffffffff)
                for {} lt(pa, end) {
                    pa := add(pa, 4)
                    pb := add(pb, 4)
                } {
                    let m
                    let e
                    let n
                    let mc
                    let nc
                    let s
                    {
                        let x := shr(224, mload(pa))
                        x := or(shr(8, and(x, 0xff00ff00)), shl(8, and(x, 0x00ff00ff)))
                        x := or(shr(16, x), and(shl(16, x), 0xffff0000))
                        let y := shr(224, mload(pb))
                        y := or(shr(8, and(y, 0xff00ff00)), shl(8, and(y, 0x00ff00ff)))
                        y := or(shr(16, y), and(shl(16, y), 0xffff0000))
                        let ex := and(shr(23, x), 0xff)
                        let ey := and(shr(23, y), 0xff)
                        let ec := shr(23, and(acc, 0x7fffffff))
                        // Fast path only for three normal operands (biased exponent 1..254).
                        if iszero(and(and(lt(sub(ex, 1), 254), lt(sub(ey, 1), 254)), lt(sub(ec, 1), 254))) {
                            slow := 1
                            break
                        }
                        s := shr(31, xor(x, y))
                        m := mul(or(and(x, 0x7fffff), 0x800000), or(and(y, 0x7fffff), 0x800000))
                        n := add(46, shr(47, m))
                        mc := or(and(acc, 0x7fffff), 0x800000)
                        nc := 23
                        // Quantum exponents: product ex + ey - 300, addend ec - 150.
                        e := sub(add(ex, ey), 300)
                        ex := sub(sub(add(ex, ey), ec), 150) // product minus addend exponent
                        switch slt(ex, 0)
                        case 0 {
                            if gt(ex, 80) {
                                ex := 80
                                mc := 1
                                nc := 0
                            }
                            m := shl(ex, m)
                            n := add(n, ex)
                            e := sub(e, ex)
                        }
                        default {
                            ex := sub(0, ex)
                            if gt(ex, 80) {
                                ex := 80
                                m := 1
                                n := 0
                            }
                            mc := shl(ex, mc)
                            nc := add(nc, ex)
                            e := sub(sub(ec, 150), ex)
                        }
                    }
                    // n := max(msb positions), nc := their distance.
                    switch lt(n, nc)
                    case 1 {
                        let t := n
                        n := nc
                        nc := sub(nc, t)
                    }
                    default { nc := sub(n, nc) }
                    switch eq(s, shr(31, acc))
                    case 1 {
                        m := add(m, mc)
                        n := add(n, iszero(iszero(shr(add(n, 1), m))))
                    }
                    default {
                        switch lt(mc, m)
                        case 1 { m := sub(m, mc) }
                        default {
                            m := sub(mc, m)
                            s := shr(31, acc)
                        }
                        switch gt(nc, 1)
                        case 1 { n := sub(n, iszero(shr(n, m))) }
                        default {
                            // Close msbs may cancel: search (m < 2^128 here).
                            n := shl(6, lt(0xffffffffffffffff, m))
                            n := or(n, shl(5, lt(0xffffffff, shr(n, m))))
                            n := or(n, shl(4, lt(0xffff, shr(n, m))))
                            n := or(n, shl(3, lt(0xff, shr(n, m))))
                            n := or(
                                n,
                                byte(
                                    and(0x1f, shr(shr(n, m), 0x8421084210842108cc6318c6db6d54be)),
                                    0x0706060506020504060203020504030106050205030304010505030400000000
                                )
                            )
                        }
                    }
                    // Inline rounding needs at least 25 significant bits (n >= 24) and a normal
                    // result; exact cancellation (m = 0, n = 0) also takes the general path.
                    let q := sub(add(n, e), 23)
                    if or(slt(q, not(148)), lt(n, 24)) {
                        slow := 1
                        break
                    }
                    nc := sub(n, 23)
                    mc := shr(nc, m)
                    mc := add(mc, gt(add(and(m, sub(shl(nc, 1), 1)), and(mc, 1)), shl(sub(nc, 1), 1)))
                    mc := add(shl(23, add(q, 149)), mc)
                    if gt(mc, 0x7f7fffff) { mc := 0x7f800000 }
                    acc := or(mc, shl(31, s))
                }
            }
            if (slow) {
                acc = fma(_loadAt(pa), _loadAt(pb), acc);
                pa += 4;
                pb += 4;
            }
        }
        return acc;
    }

    /// @dev The little-endian float32 at memory address p (commitments C1).
    function _loadAt(uint256 p) private pure returns (uint32 x) {
        assembly ("memory-safe") {
            x := shr(224, mload(p))
            x := or(shr(8, and(x, 0xff00ff00)), shl(8, and(x, 0x00ff00ff)))
            x := or(shr(16, x), and(shl(16, x), 0xffff0000))
        }
    }
}
