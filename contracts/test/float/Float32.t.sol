// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {Float32} from "../../float/Float32.sol";
import {Float32Transcendental} from "../../float/Float32Transcendental.sol";

/// @notice Unit tests (known bit patterns, IEEE special cases, RepOps spec §1-§6.14) and fuzz tests
///         of algebraic properties that hold for every input. The bit-exact comparison against
///         an exact oracle on >= 10^4 cases per primitive is tests/contracts/test_float32_diff.py.
contract Float32Test is Test {
    using Float32 for uint32;

    uint32 internal constant NAN = 0x7FC00000;
    uint32 internal constant INF = 0x7F800000;
    uint32 internal constant NINF = 0xFF800000;
    uint32 internal constant NZERO = 0x80000000;
    uint32 internal constant ONE = 0x3F800000;
    uint32 internal constant TWO = 0x40000000;
    uint32 internal constant MAXF = 0x7F7FFFFF;
    uint32 internal constant MINSUB = 0x00000001;

    function _isNaN(uint32 x) internal pure returns (bool) {
        return (x & 0x7fffffff) > 0x7f800000;
    }

    function _finite(uint32 x) internal pure returns (bool) {
        return (x & 0x7fffffff) < 0x7f800000;
    }

    // ------------------------------------------------------------------ unit: arithmetic

    function test_knownValues() public pure {
        assertEq(ONE.add(ONE), TWO);
        assertEq(uint32(0x3DCCCCCD).add(0x3E4CCCCD), 0x3E99999A, "0.1 + 0.2");
        assertEq(uint32(0x40400000).mul(0x40400000), 0x41100000, "3 * 3");
        assertEq(ONE.div(0x40400000), 0x3EAAAAAB, "1 / 3");
        assertEq(TWO.sqrt(), 0x3FB504F3, "sqrt 2");
        assertEq(uint32(0x40800000).sqrt(), TWO, "sqrt 4");
        assertEq(ONE.fma(ONE, ONE), TWO);
        assertEq(Float32Transcendental.exp(ONE), 0x402DF854, "e");
        assertEq(Float32Transcendental.log(TWO), 0x3F317218, "ln 2");
    }

    function test_roundHalfToEven() public pure {
        // 1 + 2^-24 is halfway between 1 and 1 + 2^-23: ties to even (1).
        assertEq(ONE.add(0x33800000), ONE);
        // (1 + 2^-23) + 2^-24 is halfway between 1 + 2^-23 and 1 + 2^-22: ties to 1 + 2^-22.
        assertEq(uint32(0x3F800001).add(0x33800000), 0x3F800002);
        // 2^-150 is halfway between 0 and the least subnormal: ties to 0.
        assertEq(uint32(0x00000001).mul(0x3F000000), 0);
        // 3 * 2^-150 is halfway between 2^-149 and 2^-148: ties to 2^-148 (even).
        assertEq(uint32(0x00000003).mul(0x3F000000), 0x00000002);
    }

    function test_subnormalsAndOverflow() public pure {
        assertEq(uint32(0x00800000).sub(0x00000001), 0x007FFFFF, "min normal - min subnormal");
        assertEq(uint32(0x007FFFFF).add(0x00000001), 0x00800000, "into the normal range");
        assertEq(uint32(0x00800000).mul(0x3F000000), 0x00400000, "halve the least normal");
        assertEq(MAXF.add(MAXF), INF);
        assertEq(MAXF.mul(0xFF7FFFFF), NINF);
        assertEq(uint32(0x00000001).div(0x7F7FFFFF), 0, "underflow to +0");
        assertEq(uint32(0x80000001).div(0x7F7FFFFF), NZERO, "underflow to -0");
        // MAX + half an ulp (2^103) rounds to even = inf; a hair less stays MAX.
        assertEq(MAXF.add(0x73000000), INF);
        assertEq(MAXF.add(0x72FFFFFF), MAXF);
    }

    function test_specials() public pure {
        assertEq(INF.add(NINF), NAN, "inf - inf");
        assertEq(INF.sub(INF), NAN);
        assertEq(INF.mul(0), NAN, "inf * 0");
        assertEq(uint32(0).div(0), NAN, "0 / 0");
        assertEq(INF.div(NINF), NAN, "inf / inf");
        assertEq(ONE.div(0), INF);
        assertEq(ONE.div(NZERO), NINF);
        assertEq(uint32(0xBF800000).sqrt(), NAN, "sqrt(-1)");
        assertEq(NZERO.sqrt(), NZERO, "sqrt(-0) = -0");
        assertEq(INF.sqrt(), INF);
        assertEq(uint32(0).fma(INF, ONE), NAN, "fma(0, inf, c)");
        assertEq(INF.fma(ONE, NINF), NAN, "fma(inf, 1, -inf)");
        assertEq(INF.fma(ONE, INF), INF);
        assertEq(ONE.fma(ONE, NINF), NINF);
        // Every NaN in gives the canonical NaN out, whatever its payload and sign.
        assertEq(uint32(0xFFFFFFFF).add(ONE), NAN);
        assertEq(uint32(0x7F800001).mul(ONE), NAN);
        assertEq(uint32(0xFFC00001).sqrt(), NAN);
        assertEq(ONE.fma(ONE, 0x7FA00000), NAN);
        assertEq(uint32(0xFFC00000).neg(), NAN, "neg(NaN) is canonical (spec 1.3)");
    }

    function test_signedZeros() public pure {
        assertEq(uint32(0).add(NZERO), 0, "+0 + -0");
        assertEq(NZERO.add(NZERO), NZERO, "-0 + -0");
        assertEq(ONE.sub(ONE), 0, "x - x = +0");
        assertEq(NZERO.fma(ONE, 0), 0, "fma(-0, 1, +0) = +0");
        assertEq(NZERO.fma(ONE, NZERO), NZERO, "fma(-0, 1, -0) = -0");
        assertEq(ONE.fma(0xBF800000, ONE), 0, "exact cancellation in fma is +0");
        assertEq(uint32(0).neg(), NZERO);
        assertEq(NZERO.mul(ONE), NZERO);
    }

    function test_compareAndMaxMin() public pure {
        assertTrue(NZERO.eq(0));
        assertFalse(NZERO.lt(0));
        assertTrue(NZERO.le(0));
        assertFalse(NAN.eq(NAN));
        assertFalse(NAN.lt(ONE) || ONE.lt(NAN) || NAN.le(NAN));
        assertTrue(NINF.lt(0xFF7FFFFF));
        assertTrue(uint32(0xBF800000).lt(NZERO));
        assertEq(NZERO.max(0), 0);
        assertEq(uint32(0).max(NZERO), 0);
        assertEq(NZERO.min(0), NZERO);
        assertEq(uint32(0).min(NZERO), NZERO);
        assertEq(ONE.max(0x7FC00001), NAN);
        assertEq(uint32(0xFFFFFFFF).min(ONE), NAN);
        assertEq(NINF.max(0xFF7FFFFF), 0xFF7FFFFF);
    }

    function test_conversions() public pure {
        assertEq(Float32.fromInt(0), 0);
        assertEq(Float32.fromInt(-1), 0xBF800000);
        assertEq(Float32.fromInt(16777217), 0x4B800000, "2^24 + 1 ties to even");
        assertEq(Float32.fromInt(16777219), 0x4B800002, "2^24 + 3 ties to even (up)");
        assertEq(Float32.fromInt(type(int256).min), NINF, "-2^255 overflows");
        assertEq(Float32.fromInt(type(int256).max), INF);
        assertEq(Float32.fromInt(-(2 ** 127)), 0xFF000000, "-2^127");
        assertTrue(int256(Float32.toInt32(0x3FBFFFFF)) == 1, "1.49.. truncates");
        assertTrue(int256(Float32.toInt32(0xC0600000)) == -3, "-3.5 truncates toward zero");
        assertTrue(int256(Float32.toInt32(NAN)) == 0, "NaN -> 0");
        assertTrue(int256(Float32.toInt32(INF)) == type(int32).max, "saturates");
        assertTrue(int256(Float32.toInt32(NINF)) == type(int32).min);
        assertTrue(int256(Float32.toInt32(0x4F000000)) == type(int32).max, "2^31 saturates");
        assertTrue(int256(Float32.toInt32(0xCF000000)) == type(int32).min, "-2^31 is exact");
        assertTrue(int256(Float32.toInt64(0x5F000000)) == type(int64).max, "2^63 saturates");
        assertTrue(int256(Float32.toInt64(0xDF000000)) == type(int64).min, "-2^63 is exact");
        assertTrue(int256(Float32.toInt64(0x5EFFFFFF)) == 9223371487098961920);
    }

    function test_expLogSpecials() public pure {
        assertEq(Float32Transcendental.exp(NAN), NAN);
        assertEq(Float32Transcendental.exp(INF), INF);
        assertEq(Float32Transcendental.exp(NINF), 0);
        assertEq(Float32Transcendental.exp(0), ONE);
        assertEq(Float32Transcendental.exp(NZERO), ONE);
        assertEq(Float32Transcendental.exp(0x42B17218), INF, "overflow threshold (spec 5)");
        assertEq(Float32Transcendental.exp(0x42B17217), 0x7F7FFF84, "largest finite result");
        assertEq(Float32Transcendental.exp(0xC2CFF1B4), 0x00000001, "least subnormal result");
        assertEq(Float32Transcendental.exp(0xC2CFF1B5), 0, "e^x below 2^-150 rounds to +0");
        assertEq(Float32Transcendental.log(NAN), NAN);
        assertEq(Float32Transcendental.log(NINF), NAN);
        assertEq(Float32Transcendental.log(0xBF800000), NAN, "log(-1)");
        assertEq(Float32Transcendental.log(0), NINF);
        assertEq(Float32Transcendental.log(NZERO), NINF);
        assertEq(Float32Transcendental.log(INF), INF);
        assertEq(Float32Transcendental.log(ONE), 0);
        assertEq(Float32Transcendental.log(MINSUB), 0xC2CE8ED0, "log of the least subnormal");
    }

    function test_loadLittleEndian() public pure {
        bytes memory chunk = hex"0000803f000000400100008000000000";
        assertEq(Float32.load(chunk, 0), ONE);
        assertEq(Float32.load(chunk, 1), TWO);
        assertEq(Float32.load(chunk, 2), 0x80000001);
        assertEq(Float32.load(chunk, 3), 0);
    }

    function test_loadOutOfRangeReverts() public {
        Loader l = new Loader();
        vm.expectRevert(abi.encodeWithSelector(Float32.Float32IndexOutOfRange.selector, 4, 4));
        l.load(hex"0000803f000000400100008000000000", 4);
    }

    function test_fmaChainDot() public pure {
        // [1, 2, 3] . [4, 5, 6] = 32, from +0; and the chain from a mid accumulator.
        bytes memory a = hex"0000803f0000004000004040";
        bytes memory b = hex"000080400000a0400000c040";
        assertEq(Float32.fmaChain(a, 0, b, 0, 3, 0), 0x42000000);
        assertEq(Float32.fmaChain(a, 1, b, 1, 2, 0x40800000), 0x42000000);
        assertEq(Float32.fmaChain(a, 3, b, 3, 0, ONE), ONE, "empty chain");
    }

    // ------------------------------------------------------------------ fuzz: properties

    function testFuzz_addMulCommute(uint32 a, uint32 b) public pure {
        assertEq(a.add(b), b.add(a));
        assertEq(a.mul(b), b.mul(a));
        assertEq(a.max(b), b.max(a));
        assertEq(a.min(b), b.min(a));
    }

    function testFuzz_subIsAddNeg(uint32 a, uint32 b) public pure {
        vm.assume(!_isNaN(b));
        assertEq(a.sub(b), a.add(b ^ 0x80000000));
    }

    function testFuzz_additiveInverseIsPlusZero(uint32 a) public pure {
        vm.assume(_finite(a));
        assertEq(a.add(a.neg()), 0);
        assertEq(a.sub(a), 0);
    }

    function testFuzz_identities(uint32 a) public pure {
        vm.assume(!_isNaN(a));
        assertEq(a.add(NZERO), a, "x + -0 = x");
        assertEq(a.mul(ONE), a, "x * 1 = x");
        assertEq(a.div(ONE), a, "x / 1 = x");
        assertEq(a.fma(ONE, NZERO), a, "fma(x, 1, -0) = x");
        assertEq(a.neg().neg(), a);
    }

    function testFuzz_divSelfIsOne(uint32 a) public pure {
        vm.assume(_finite(a) && (a & 0x7fffffff) != 0);
        assertEq(a.div(a), ONE);
    }

    function testFuzz_fmaWithZeroAddendIsMul(uint32 a, uint32 b) public pure {
        // fma(a, b, -0) = RN(a*b) for all a, b (-0 is the additive identity even for zeros).
        assertEq(a.fma(b, NZERO), a.mul(b));
    }

    function testFuzz_fmaIsMulAddWhenProductExact(uint32 a, uint32 b, uint32 c) public pure {
        // Significands of at most 12 bits and exponents in [-30, 30]: the product is exact,
        // so fma's single rounding equals add(mul) with its exact first step.
        a = (a & 0x80000000) | (uint32(bound((a >> 23) & 0xff, 97, 157)) << 23) | (a & 0x007FF000);
        b = (b & 0x80000000) | (uint32(bound((b >> 23) & 0xff, 97, 157)) << 23) | (b & 0x007FF000);
        assertEq(a.fma(b, c), a.mul(b).add(c));
    }

    function testFuzz_sqrtOfExactSquare(uint32 a) public pure {
        // |a| with a 12-bit significand and exponent in [-60, 60]: a*a is exact.
        a = (a & 0x007FF000) | (uint32(bound((a >> 23) & 0xff, 67, 187)) << 23);
        assertEq(a.mul(a).sqrt(), a);
        assertEq((a | 0x80000000).mul(a | 0x80000000).sqrt(), a);
    }

    function testFuzz_sqrtMonotoneAndSquareBracket(uint32 a, uint32 b) public pure {
        vm.assume(_finite(a) && _finite(b) && a < 0x80000000 && b < 0x80000000);
        if (a > b) (a, b) = (b, a);
        assertTrue(a.sqrt().le(b.sqrt()));
    }

    function testFuzz_addMonotone(uint32 a, uint32 b, uint32 c) public pure {
        vm.assume(_finite(a) && _finite(b) && _finite(c));
        if (b.lt(a)) (a, b) = (b, a);
        uint32 x = a.add(c);
        uint32 y = b.add(c);
        assertTrue(x.le(y));
        assertTrue(a.mul(0x3FC00000).le(b.mul(0x3FC00000)), "mul by a positive is monotone");
    }

    function testFuzz_signSymmetry(uint32 a, uint32 b) public pure {
        vm.assume(!_isNaN(a) && !_isNaN(b));
        uint32 p = a.mul(b);
        if (!_isNaN(p)) assertEq(a.neg().mul(b), p.neg());
        uint32 q = a.div(b);
        if (!_isNaN(q)) assertEq(a.neg().div(b), q.neg());
        uint32 s = a.add(b);
        // RNE is symmetric; only an exact zero sum is +0 in both directions.
        if (!_isNaN(s) && (s & 0x7fffffff) != 0) assertEq(a.neg().add(b.neg()), s.neg());
    }

    function testFuzz_compareConsistency(uint32 a, uint32 b) public pure {
        if (_isNaN(a) || _isNaN(b)) {
            assertFalse(a.lt(b) || a.le(b) || a.eq(b));
            assertEq(a.max(b), NAN);
            return;
        }
        assertEq(a.lt(b), !b.le(a));
        assertEq(a.eq(b), a.le(b) && b.le(a));
        uint32 mx = a.max(b);
        uint32 mn = a.min(b);
        assertTrue(mn.le(mx));
        assertTrue(mx == a || mx == b);
        assertTrue(mn == a || mn == b);
    }

    function testFuzz_intRoundTrip(int32 v) public pure {
        int256 w = int256(v) % 16777217; // |w| <= 2^24: exact in binary32
        assertTrue(int256(Float32.toInt32(Float32.fromInt(w))) == w);
        assertTrue(int256(Float32.toInt64(Float32.fromInt(w))) == w);
    }

    function testFuzz_toIntTruncates(uint32 a) public pure {
        // Below 2^24 every integer is exact: |trunc(a)| <= |a| < |trunc(a)| + 1.
        vm.assume((a & 0x7fffffff) < 0x4B800000);
        int256 t = Float32.toInt64(a);
        uint256 mag = t < 0 ? uint256(-t) : uint256(t);
        uint32 absA = a & 0x7fffffff;
        assertTrue(Float32.fromInt(int256(mag)).le(absA));
        assertTrue(absA.lt(Float32.fromInt(int256(mag + 1))));
        assertEq(t < 0, a >= 0x80000000 && mag != 0);
    }

    function testFuzz_expLogMonotone(uint32 a, uint32 b) public pure {
        vm.assume(_finite(a) && _finite(b));
        if (b.lt(a)) (a, b) = (b, a);
        assertTrue(Float32Transcendental.exp(a).le(Float32Transcendental.exp(b)));
        if (a < 0x80000000 && b < 0x80000000 && a != 0) {
            assertTrue(Float32Transcendental.log(a).le(Float32Transcendental.log(b)));
        }
    }

    function testFuzz_logOfExpNearIdentity(uint32 a) public pure {
        // For x in [-80, 80] far from 0, log(exp(x)) is within 2 ulps of x.
        a = (a & 0x807FFFFF) | (uint32(bound((a >> 23) & 0xff, 127, 133)) << 23);
        vm.assume((a & 0x7fffffff) <= 0x42A00000);
        uint32 y = Float32Transcendental.log(Float32Transcendental.exp(a));
        uint256 d = y > a ? y - a : a - y;
        assertLe(d, 2);
    }

    function testFuzz_loadMatchesBytes(bytes32 w, uint8 i) public pure {
        bytes memory chunk = abi.encodePacked(w);
        uint256 k = i % 8;
        uint32 want = uint32(uint8(chunk[4 * k])) | (uint32(uint8(chunk[4 * k + 1])) << 8)
            | (uint32(uint8(chunk[4 * k + 2])) << 16) | (uint32(uint8(chunk[4 * k + 3])) << 24);
        assertEq(Float32.load(chunk, k), want);
    }
}

/// @dev External wrapper so a library revert can be caught with expectRevert.
contract Loader {
    function load(bytes calldata chunk, uint256 i) external pure returns (uint32) {
        return Float32.loadCalldata(chunk, i);
    }
}
