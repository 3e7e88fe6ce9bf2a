// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {AlphabetWorld} from "./Alphabet.sol";

/// @dev forge prints console logs at -vv; forge-std is not available, so the one call we need.
library console {
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    function log(string memory p0, uint256 p1, uint256 p2, uint256 p3) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256,uint256,uint256)", p0, p1, p2, p3));
        ok;
    }
}

/// @notice Gas of every transaction of a full dispute at SmolLM2 scale: a 40 000-leaf trace
///         (2^16 padded) and a 49152-element float32 output (192 chunks), the executor lying
///         about one element in the middle. scripts/gas_report.py runs this and writes
///         docs/reports/gas.md. Also checks the issue-5 targets (≤ 12 rounds, < 3M gas per tx).
contract GasProfileTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    function test_gas40kLeafDispute() public {
        vm.pauseGasMetering();
        AlphabetWorld.World memory w = _world(2026, 40_000, 49_152);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, Lie(LieKind.Element, 23_456, 30_001, 0x7FC00000));
        Player memory c = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
        _trees(d, c);
        vm.resumeGasMetering(); // metered, so that --gas-report records postJob's real cost
        uint256 jobId = _post(1);
        vm.pauseGasMetering();
        uint32[] memory toks = new uint32[](64);
        for (uint256 k = 0; k < 64; ++k) {
            toks[k] = w.token(k);
        }
        bytes32 oh = Commitments.tokensHash(toks);
        measuring = true;

        _measureMarket(exec, BOND, abi.encodeCall(market.commit, (jobId, toks, oh, d.root, d.length)), "commit (64 tokens)");
        _measureMarket(chal, BOND, abi.encodeCall(market.challenge, (jobId, 0, c.root, c.length, 0)), "challenge (opens game)");
        uint256 moves = _play(1, w, d, c);
        (,,,,,,, bool dw) = game.gameInfo(1);
        assertFalse(dw, "lying executor won");
        vm.warp(block.timestamp + WINDOW + 1);
        _measureMarket(address(0), 0, abi.encodeCall(market.finalize, (jobId)), "finalize (failed job, refund)");
        _measureMarket(chal, 0, abi.encodeCall(market.withdraw, ()), "withdraw");

        // an unchallenged job for the honest-path numbers
        vm.resumeGasMetering();
        uint256 job2 = _post(1);
        vm.pauseGasMetering();
        _measureMarket(exec, BOND, abi.encodeCall(market.commit, (job2, toks, oh, c.root, c.length)), "commit (64 tokens), 2nd job");
        vm.warp(block.timestamp + WINDOW + 1);
        _measureMarket(address(0), 0, abi.encodeCall(market.finalize, (job2)), "finalize (unchallenged, pays executor)");

        // Caller-side gasleft deltas over-count (this frame holds megabytes of trees), so they
        // are only an upper bound here; exact per-tx numbers come from `--isolate --gas-report`.
        uint256 maxTx;
        for (uint256 k = 0; k < gasRows.length; ++k) {
            if (gasRows[k].txGas > maxTx) maxTx = gasRows[k].txGas;
        }
        console.log("SUMMARY moves, upper bound on any tx gas, rows", moves, maxTx, gasRows.length);
        assertLe(maxTx, 3_000_000);
        // rounds = move pairs: 4 trace rounds, 1 leaf opening, 2 tensor rounds, chunk + element, one-step
        assertLe((moves + 1) / 2, 12);
    }

    /// @notice postJob at the smallest input and at the largest one the registered context
    ///         leaves beside 64 new tokens (MAX_CTX − 64 = 1984 tokens: every id checked against
    ///         the vocabulary), and a registration. scripts/gas_report.py reads postJob's min and
    ///         max from `--gas-report`.
    function test_gasPostJobAndRegister() public {
        uint256 small = _post(1);
        uint256 n = MAX_CTX - 64;
        bytes memory big = new bytes(4 * n);
        for (uint256 i = 0; i < n; ++i) {
            bytes4 t = bytes4(uint32(uint256(keccak256(abi.encode(i))) % VOCAB));
            for (uint256 k = 0; k < 4; ++k) {
                big[4 * i + k] = t[k];
            }
        }
        JobMarket.JobRequest memory r = _request(1);
        vm.prank(requester);
        uint256 large = market.postJob{value: REWARD}(r, big);
        assertEq(market.jobOf(large).inputHash, keccak256(big));
        assertEq(large, small + 1);
        registry.register(keccak256("another model"), PROGRAM, 1, VOCAB, MAX_CTX, "SmolLM2-135M-Instruct", "hf://smollm2", bytes32(0));
    }

    function _measureMarket(address from, uint256 value, bytes memory data, string memory name) internal {
        if (from != address(0)) vm.prank(from);
        vm.resumeGasMetering();
        uint256 g0 = gasleft();
        (bool ok,) = address(market).call{value: value}(data);
        uint256 used = g0 - gasleft();
        vm.pauseGasMetering();
        require(ok, name);
        gasRows.push(GasRow(name, used, used + 21000 + _calldataGas(data), data.length));
    }
}

/// @notice Gas of the level-3 moves (docs/trace-layout.md §L9), apart from GasProfileTest so
///         that its small games do not mix into the 40k-leaf profile's `--gas-report` rows:
///         `forge test --match-contract GasChainTest --isolate --gas-report`. Game part only: the
///         test step answers chainLength for free (the real verifier's cost is its own).
contract GasChainTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    /// @notice A lying executor's element with a chain of n = 4, then n = 24 links (a K = 1536
    ///         dot at LINK = 64), played to the end: `--gas-report` holds revealChain's min
    ///         (n = 4) and max (n = 24) and pickLink's.
    function test_gasChainMoves() public {
        uint256[2] memory ns = [uint256(4), uint256(24)];
        for (uint256 r = 0; r < ns.length; ++r) {
            verifier.setChainLength(ns[r]);
            AlphabetWorld.World memory w = _world(500 + r, 40, 600);
            bytes32[] memory honest = _honestLeaves(w);
            Player memory d = _player(exec, w, honest, Lie(LieKind.Element, 17, 300, 7));
            Player memory c = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
            _trees(d, c);
            uint256 jobId = _post(1);
            _commit(exec, jobId, w.tokens(), d.root, d.length);
            vm.prank(chal);
            uint256 gameId = market.challenge{value: BOND}(jobId, 0, c.root, c.length, 0);
            _play(gameId, w, d, c);
            (,, bool picked, uint256 link) = game.chainInfo(gameId);
            assertTrue(picked);
            assertEq(link, _lieLink(d.lie, ns[r]));
            (,,,,,,, bool dw) = game.gameInfo(gameId);
            assertFalse(dw, "lying executor won");
        }
    }
}
