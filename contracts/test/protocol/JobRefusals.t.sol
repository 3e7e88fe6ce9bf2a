// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";

/// @notice postJob refuses every job the registered program cannot run, naming the reason:
///         token ids outside the vocabulary, an empty input, input + maxTokens beyond the
///         context, maxTokens 0, and the sampling configs RepOps spec §7.3 calls invalid. Such a
///         job could only be answered by a made-up trace that no one-step can check.
contract JobRefusalsTest is ProtocolBase {
    uint32 internal constant NAN = 0x7FC00000;
    uint32 internal constant INF = 0x7F800000;
    uint32 internal constant NEG_INF = 0xFF800000;
    uint32 internal constant NEG_ZERO = 0x80000000;
    uint32 internal constant ONE = 0x3F800000;
    uint32 internal constant MAX_FINITE = 0x7F7FFFFF;

    function _tokens(uint256 n, uint32 fill) internal pure returns (bytes memory b) {
        b = new bytes(4 * n);
        for (uint256 i = 0; i < n; ++i) {
            bytes4 t = bytes4(fill);
            for (uint256 k = 0; k < 4; ++k) {
                b[4 * i + k] = t[k];
            }
        }
    }

    function _setToken(bytes memory b, uint256 i, uint32 token) internal pure {
        bytes4 t = bytes4(token);
        for (uint256 k = 0; k < 4; ++k) {
            b[4 * i + k] = t[k];
        }
    }

    function _refused(JobMarket.JobRequest memory r, bytes memory input, bytes memory err) internal {
        vm.prank(requester);
        vm.expectRevert(err);
        market.postJob{value: REWARD}(r, input);
    }

    function _accepted(JobMarket.JobRequest memory r, bytes memory input) internal returns (uint256 id) {
        vm.prank(requester);
        id = market.postJob{value: REWARD}(r, input);
    }

    // ---- config (RepOps spec §7.3) ----

    function test_maxTokensZeroOrAboveCap() public {
        JobMarket.JobRequest memory r = _request(1);
        r.config.maxTokens = 0;
        _refused(r, _input(), abi.encodeWithSelector(JobMarket.BadMaxTokens.selector, uint32(0)));
        r.config.maxTokens = market.MAX_TOKENS() + 1;
        _refused(r, _input(), abi.encodeWithSelector(JobMarket.BadMaxTokens.selector, market.MAX_TOKENS() + 1));
        r.config.maxTokens = 1;
        _accepted(r, _input());
    }

    function test_invalidTemperatures() public {
        uint32[8] memory bad = [NAN, 0xFFC00000, 0x7F800001, INF, NEG_INF, 0xBF800000, 0x80000001, 0xFF7FFFFF];
        JobMarket.JobRequest memory r = _request(1);
        for (uint256 k = 0; k < bad.length; ++k) {
            r.config.temperature = bad[k];
            _refused(r, _input(), abi.encodeWithSelector(JobMarket.BadTemperature.selector, bad[k]));
        }
        assertEq(market.jobCount(), 0);
        uint32[5] memory good = [uint32(0), NEG_ZERO, 1, ONE, MAX_FINITE];
        for (uint256 k = 0; k < good.length; ++k) {
            r.config.temperature = good[k];
            _accepted(r, _input());
        }
    }

    function test_invalidTopP() public {
        uint32[8] memory bad = [uint32(0), NEG_ZERO, 0x3F800001, 0x40000000, NAN, INF, 0xBF800000, 0x80000001];
        JobMarket.JobRequest memory r = _request(1);
        for (uint256 k = 0; k < bad.length; ++k) {
            r.config.topP = bad[k];
            _refused(r, _input(), abi.encodeWithSelector(JobMarket.BadTopP.selector, bad[k]));
        }
        uint32[4] memory good = [uint32(1), 0x3F000000, 0x3F7FFFFF, ONE];
        for (uint256 k = 0; k < good.length; ++k) {
            r.config.topP = good[k];
            _accepted(r, _input());
        }
    }

    // ---- input against the model's registered limits ----

    function test_inputNotTokens() public {
        JobMarket.JobRequest memory r = _request(1);
        _refused(r, hex"000001", abi.encodeWithSelector(JobMarket.InputNotTokens.selector, uint256(3)));
        _refused(r, hex"0000000100", abi.encodeWithSelector(JobMarket.InputNotTokens.selector, uint256(5)));
    }

    function test_emptyInput() public {
        _refused(_request(1), "", abi.encodeWithSelector(JobMarket.EmptyInput.selector));
    }

    function test_tokenOutsideTheVocabulary() public {
        JobMarket.JobRequest memory r = _request(1);
        bytes memory input = _tokens(5, VOCAB - 1); // the largest id is fine
        _accepted(r, input);
        _setToken(input, 3, VOCAB);
        _refused(r, input, abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, uint256(3), VOCAB, VOCAB));
        _setToken(input, 1, type(uint32).max); // the first bad id is named
        _refused(r, input, abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, uint256(1), type(uint32).max, VOCAB));
        _setToken(input, 0, VOCAB + 1);
        _refused(r, input, abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, uint256(0), VOCAB + 1, VOCAB));
        // the last token too (the loop reads exactly the input, not the calldata after it)
        input = _tokens(4, 0);
        _setToken(input, 3, VOCAB);
        _refused(r, input, abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, uint256(3), VOCAB, VOCAB));
        assertEq(market.jobCount(), 1);
    }

    /// @dev The check reads eight tokens per calldata word, then the tail one by one: a single
    ///      bad id is found at every position of full words, the tail and both at once.
    function test_everyPositionIsChecked() public {
        JobMarket.JobRequest memory r = _request(1);
        uint8[6] memory sizes = [1, 7, 8, 9, 16, 23];
        for (uint256 s = 0; s < sizes.length; ++s) {
            uint256 n = sizes[s];
            for (uint256 i = 0; i < n; ++i) {
                bytes memory input = _tokens(n, VOCAB - 1);
                _setToken(input, i, VOCAB);
                _refused(r, input, abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, i, VOCAB, VOCAB));
            }
            _accepted(r, _tokens(n, VOCAB - 1));
        }
        assertEq(market.jobCount(), sizes.length);
    }

    function test_contextExceeded() public {
        JobMarket.JobRequest memory r = _request(1);
        r.config.maxTokens = 48;
        _accepted(r, _tokens(MAX_CTX - 48, 1)); // exactly the context
        _refused(
            r,
            _tokens(MAX_CTX - 47, 1),
            abi.encodeWithSelector(JobMarket.ContextExceeded.selector, uint256(MAX_CTX - 47), uint32(48), MAX_CTX)
        );
        // a huge input is refused by the length check before any token is read
        r.config.maxTokens = 1;
        bytes memory huge = _tokens(20_000, VOCAB);
        _refused(r, huge, abi.encodeWithSelector(JobMarket.ContextExceeded.selector, uint256(20_000), uint32(1), MAX_CTX));
    }

    function test_refusalsMoveNoMoney() public {
        JobMarket.JobRequest memory r = _request(1);
        r.config.topP = 0;
        _refused(r, _input(), abi.encodeWithSelector(JobMarket.BadTopP.selector, uint32(0)));
        _refused(_request(1), "", abi.encodeWithSelector(JobMarket.EmptyInput.selector));
        assertEq(market.jobCount(), 0);
        assertEq(market.totalEscrow(), 0);
        assertEq(address(market).balance, 0);
    }

    // ---- fuzz: valid accepted, invalid refused with the first reason in check order ----

    /// @dev Reference predicates written from the spec's words on decoded fields (sign,
    ///      exponent, mantissa), independent of the contract's bit-range comparisons.
    function _finite(uint32 b) internal pure returns (bool) {
        return (b >> 23) & 0xFF != 0xFF;
    }

    function _negative(uint32 b) internal pure returns (bool) {
        return b >> 31 == 1 && b & 0x7FFFFFFF != 0; // −0 is not negative
    }

    function _isZero(uint32 b) internal pure returns (bool) {
        return b & 0x7FFFFFFF == 0;
    }

    function _atMostOne(uint32 b) internal pure returns (bool) {
        uint32 e = (b >> 23) & 0xFF;
        return b >> 31 == 1 || e < 127 || (e == 127 && b & 0x7FFFFF == 0);
    }

    function _expectedConfigError(JobMarket.JobConfig memory c) internal view returns (bytes memory) {
        if (c.maxTokens == 0 || c.maxTokens > market.MAX_TOKENS()) {
            return abi.encodeWithSelector(JobMarket.BadMaxTokens.selector, c.maxTokens);
        }
        if (!_finite(c.temperature) || _negative(c.temperature)) {
            return abi.encodeWithSelector(JobMarket.BadTemperature.selector, c.temperature);
        }
        bool pOk = _finite(c.topP) && !_negative(c.topP) && !_isZero(c.topP) && _atMostOne(c.topP);
        if (!pOk) return abi.encodeWithSelector(JobMarket.BadTopP.selector, c.topP);
        return "";
    }

    function _post(JobMarket.JobRequest memory r, bytes memory input) internal returns (bool ok, bytes memory err) {
        vm.prank(requester);
        try market.postJob{value: REWARD}(r, input) returns (uint256) {
            ok = true;
        } catch (bytes memory e) {
            err = e;
        }
    }

    function testFuzz_config(uint32 maxTokens, uint32 temperature, uint32 topK, uint32 topP, uint64 seed, uint8 pick)
        public
    {
        // half the runs from the interesting values, so every branch is hit often
        if (pick % 2 == 0) {
            uint32[10] memory edge = [uint32(0), NEG_ZERO, 1, 0x80000001, ONE, 0x3F800001, MAX_FINITE, INF, NAN, NEG_INF];
            temperature = edge[temperature % 10];
            topP = edge[topP % 10];
            maxTokens = maxTokens % 3 == 0 ? 0 : maxTokens % (market.MAX_TOKENS() + 2);
        }
        JobMarket.JobRequest memory r = _request(1);
        r.config = JobMarket.JobConfig(maxTokens, temperature, topK, topP, seed);
        bytes memory want = _expectedConfigError(r.config);
        bytes memory input = _tokens(1, 5);
        if (want.length == 0 && uint256(maxTokens) + 1 > MAX_CTX) {
            want = abi.encodeWithSelector(JobMarket.ContextExceeded.selector, uint256(1), maxTokens, MAX_CTX);
        }
        (bool ok, bytes memory err) = _post(r, input);
        if (want.length == 0) {
            assertTrue(ok, "valid config refused");
            assertEq(market.jobOf(market.jobCount()).configHash, keccak256(abi.encode(r.config)));
        } else {
            assertFalse(ok, "invalid config accepted");
            assertEq(err, want);
        }
    }

    function testFuzz_input(uint32 vocab, uint32 ctx, uint16 n, uint32 maxTokens, uint256 seed, bool plant) public {
        vocab = uint32(bound(vocab, 1, type(uint32).max));
        ctx = uint32(bound(ctx, 2, 600));
        n = uint16(bound(n, 0, 620));
        maxTokens = uint32(bound(maxTokens, 1, 64));
        bytes32 model = keccak256(abi.encode("fuzz model", vocab, ctx));
        registry.register(model, PROGRAM, 1, vocab, ctx, "f", "u", bytes32(0));
        bytes memory input = new bytes(4 * uint256(n));
        uint256 firstBad = type(uint256).max;
        for (uint256 i = 0; i < n; ++i) {
            uint32 t = uint32(uint256(keccak256(abi.encode(seed, i))));
            // mostly in range; some ids at or past the vocabulary edge
            if (plant && i % 7 == 3) {
                uint256 v = uint256(vocab) + (t % 3 == 0 ? 0 : t % 5);
                t = v > type(uint32).max ? type(uint32).max : uint32(v);
            } else {
                t = t % vocab;
            }
            if (t >= vocab && firstBad == type(uint256).max) firstBad = i;
            _setToken(input, i, t);
        }
        JobMarket.JobRequest memory r = _request(1);
        r.modelHash = model;
        r.config.maxTokens = maxTokens;
        bytes memory want;
        if (n == 0) {
            want = abi.encodeWithSelector(JobMarket.EmptyInput.selector);
        } else if (uint256(n) + maxTokens > ctx) {
            want = abi.encodeWithSelector(JobMarket.ContextExceeded.selector, uint256(n), maxTokens, ctx);
        } else if (firstBad != type(uint256).max) {
            uint32 t = uint32(bytes4(abi.encodePacked(input[4 * firstBad], input[4 * firstBad + 1], input[4 * firstBad + 2], input[4 * firstBad + 3])));
            want = abi.encodeWithSelector(JobMarket.TokenOutOfVocab.selector, firstBad, t, vocab);
        }
        (bool ok, bytes memory err) = _post(r, input);
        if (want.length == 0) {
            assertTrue(ok, "runnable input refused");
            assertEq(market.jobOf(market.jobCount()).inputHash, keccak256(input));
        } else {
            assertFalse(ok, "unrunnable input accepted");
            assertEq(err, want);
        }
    }
}
