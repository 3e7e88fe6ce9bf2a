// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {IJobResult} from "../../protocol/interfaces/IJobResult.sol";
import {AlphabetWorld} from "./Alphabet.sol";

/// @notice Full games between an honest party and a liar, with the divergence point and the
///         kind of lie fuzzed: the honest party must always win, and every wei must land where
///         the rules say (DESIGN §6; issue 5 "actor tests").
contract ActorsTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    /// @dev Turns fuzz inputs into a valid lie of kind 1 + k % 8 against a world of `n` leaves.
    ///      A kind the world cannot hold (Truncate needs n ≥ 2, BadPadding a padding leaf inside
    ///      the tree) falls back to an Element lie built from the same inputs, never to a
    ///      half-filled struct of the other kind (issue 5: a one-leaf world kept Truncate's
    ///      pt = 1 under kind Element and the harness indexed past its one leaf).
    function _lie(AlphabetWorld.World memory w, uint256 k, uint256 pt, uint256 e, uint32 bits)
        internal
        pure
        returns (Lie memory lie)
    {
        uint256 n = w.length;
        LieKind kind = LieKind(1 + (k % 8));
        if (kind == LieKind.Truncate && n < 2) kind = LieKind.Element;
        if (kind == LieKind.BadPadding && Merkle.nextPow2(n) == n) kind = LieKind.Element;
        lie.kind = kind;
        if (kind == LieKind.Element || kind == LieKind.OpHash || kind == LieKind.Header || kind == LieKind.ZeroLeaf) {
            lie.pt = uint64(pt % n);
            lie.e = e % w.elems;
            lie.bits = bits;
            if (kind == LieKind.Element && bits == w.element(lie.pt, lie.e)) lie.bits = bits ^ 1;
        } else if (kind == LieKind.Truncate) {
            lie.pt = uint64(1 + pt % (n - 1));
        } else if (kind == LieKind.Extend) {
            lie.pt = uint64(n + 1 + pt % n);
        } else if (kind == LieKind.SameLeavesLength) {
            // longer, or shorter while the content still fits the claimed depth
            uint256 half = Merkle.nextPow2(n) / 2;
            if (pt % 2 == 0 || n <= half + 1) {
                lie.pt = uint64(n + 1 + pt % n);
            } else {
                lie.pt = uint64(half + 1 + pt % (n - half - 1));
            }
        }
        // BadPadding: no parameters (a junk leaf right after the last real one)
    }

    function _setup(uint256 seed, uint256 n, uint256 elems) internal returns (AlphabetWorld.World memory w, bytes32[] memory honest) {
        w = _world(seed, uint64(bound(n, 1, 700)), uint32(bound(elems, 1, 900)));
        honest = _honestLeaves(w);
    }

    function _game(AlphabetWorld.World memory w, Player memory d, Player memory c) internal returns (uint256 jobId, uint256 gameId) {
        _trees(d, c);
        jobId = _post(1);
        _commit(d.who, jobId, w.tokens(), d.root, d.length);
        vm.prank(c.who);
        gameId = market.challenge{value: BOND}(jobId, 0, c.root, c.length, 0);
        _play(gameId, w, d, c);
    }

    function _defenderWon(uint256 gameId) internal view returns (bool won) {
        (, DisputeGame.Phase phase,,,,,, bool dw) = game.gameInfo(gameId);
        assertTrue(phase == DisputeGame.Phase.Resolved, "not resolved");
        return dw;
    }

    /// @notice Honest challenger vs lying executor: the challenger wins, gets its bond back
    ///         and 90% of the executor's, the requester gets the reward back.
    /// forge-config: default.fuzz.runs = 128
    function testFuzz_honestChallengerWins(uint256 seed, uint256 n, uint256 elems, uint256 k, uint256 pt, uint256 e, uint32 bits)
        public
    {
        (AlphabetWorld.World memory w, bytes32[] memory honest) = _setup(seed, n, elems);
        Lie memory lie = _lie(w, k, pt, e, bits);
        Player memory d = _player(exec, w, honest, lie);
        Player memory c = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
        (uint256 jobId, uint256 gameId) = _game(w, d, c);
        assertFalse(_defenderWon(gameId), "lying executor won");
        assertEq(market.balanceOf(chal), BOND + BOND * 9 / 10);
        assertEq(market.balanceOf(exec), 0);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        (IJobResult.Status st,,) = market.resultOf(jobId);
        assertTrue(st == IJobResult.Status.Failed);
        assertEq(market.balanceOf(requester), REWARD);
        _solvent();
    }

    /// @notice Honest executor vs lying challenger: the executor wins 90% of the challenger's
    ///         bond and, pt finalization, its own bond and the reward.
    /// forge-config: default.fuzz.runs = 128
    function testFuzz_honestExecutorWins(uint256 seed, uint256 n, uint256 elems, uint256 k, uint256 pt, uint256 e, uint32 bits)
        public
    {
        (AlphabetWorld.World memory w, bytes32[] memory honest) = _setup(seed, n, elems);
        Lie memory lie = _lie(w, k, pt, e, bits);
        Player memory d = _player(exec, w, honest, Lie(LieKind.None, 0, 0, 0));
        Player memory c = _player(chal, w, honest, lie);
        (uint256 jobId, uint256 gameId) = _game(w, d, c);
        assertTrue(_defenderWon(gameId), "lying challenger won");
        assertEq(market.balanceOf(exec), BOND * 9 / 10);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        (IJobResult.Status st, bytes32 oh, uint32[] memory toks) = market.resultOf(jobId);
        assertTrue(st == IJobResult.Status.Finalized);
        assertEq(toks.length, 8);
        assertEq(oh, keccak256(abi.encodePacked(toks[0], toks[1], toks[2], toks[3], toks[4], toks[5], toks[6], toks[7])));
        assertEq(market.balanceOf(exec), BOND * 9 / 10 + BOND + REWARD);
        assertEq(market.balanceOf(chal), 0);
        _solvent();
    }

    /// @notice Issue 5 counterexample, pinned: a one-leaf world and a Truncate lie (impossible
    ///         there) made the harness index past the trace before any game move.
    function test_regression_oneLeafTruncateFallsBackToElementLie() public {
        uint256 seed = 1034133961601711701942487773735806411413184111579775434511943320476;
        uint256 n = 182608023409321122950108525061866854198049062641262847165604229054222122600;
        AlphabetWorld.World memory w = _world(seed, uint64(bound(n, 1, 700)), 3);
        assertEq(w.length, 1);
        Lie memory lie = _lie(w, 3, 276094916352612619479660, 462688, 1);
        assertTrue(lie.kind == LieKind.Element);
        assertEq(lie.pt, 0);
        testFuzz_honestChallengerWins(seed, n, 3, 3, 276094916352612619479660, 462688, 1);
    }

    /// @notice Same counterexample with the honest side defending.
    function test_regression_oneLeafTruncateHonestExecutor() public {
        testFuzz_honestExecutorWins(
            1034133961601711701942487773735806411413184111579775434511943320476,
            182608023409321122950108525061866854198049062641262847165604229054222122600,
            3,
            3,
            276094916352612619479660,
            462688,
            1
        );
    }

    /// @notice Every lie kind, on both sides, at the trace lengths where the tree shape has
    ///         edges (one leaf, powers of two and one past them, where length lies lift the
    ///         roots to different depths): the honest side wins and the loser's bond moves.
    ///         Fuzzing rarely draws these lengths from a bound over 1..700.
    function test_everyLieKindAtTreeEdges() public {
        uint64[9] memory lengths = [uint64(1), 2, 3, 4, 5, 8, 9, 16, 17];
        for (uint256 li = 0; li < lengths.length; ++li) {
            AlphabetWorld.World memory w = _world(li + 11, lengths[li], 300);
            bytes32[] memory honest = _honestLeaves(w);
            for (uint256 k = 0; k < 8; ++k) {
                uint256 n = lengths[li];
                uint256[4] memory pts = [uint256(0), 1, n > 1 ? n - 2 : 0, n - 1];
                for (uint256 v = 0; v < pts.length; ++v) {
                    // pt: first, second, penultimate and last leaf for leaf lies; the shortest
                    // and longest truncations and extensions; odd pt = a shorter length claim
                    Lie memory lie = _lie(w, k, pts[v], 299, 0);
                    _duel(w, honest, lie, true);
                    _duel(w, honest, lie, false);
                }
            }
        }
        _solvent();
    }

    /// @dev One game, liar executor (or liar challenger); checks the winner and the bond moved.
    function _duel(AlphabetWorld.World memory w, bytes32[] memory honest, Lie memory lie, bool liarExecutes) internal {
        Lie memory none = Lie(LieKind.None, 0, 0, 0);
        Player memory d = _player(exec, w, honest, liarExecutes ? lie : none);
        Player memory c = _player(chal, w, honest, liarExecutes ? none : lie);
        uint256 winnerBefore = market.balanceOf(liarExecutes ? chal : exec);
        (, uint256 gameId) = _game(w, d, c);
        assertEq(_defenderWon(gameId), !liarExecutes, "liar won");
        uint256 gain = market.balanceOf(liarExecutes ? chal : exec) - winnerBefore;
        assertEq(gain, liarExecutes ? BOND + BOND * 9 / 10 : BOND * 9 / 10, "winner's share");
    }

    /// @notice The executor's trace is honest but it lies about an output token: the
    ///         challenger disputes with the same trace root (output mode) and wins.
    function testFuzz_outputTokenLie(uint256 seed, uint256 j, uint32 fake) public {
        AlphabetWorld.World memory w = _world(seed, 37, 300);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, Lie(LieKind.None, 0, 0, 0));
        Player memory c = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
        _trees(d, c);
        uint32[] memory toks = w.tokens();
        j = j % toks.length;
        if (fake == toks[j]) fake ^= 1;
        toks[j] = fake;
        uint256 jobId = _post(1);
        _commit(exec, jobId, toks, d.root, d.length);
        vm.prank(chal);
        uint256 gameId = market.challenge{value: BOND}(jobId, 0, c.root, c.length, j);
        (, DisputeGame.Phase phase,,,,,,) = game.gameInfo(gameId);
        assertTrue(phase == DisputeGame.Phase.Proof);
        game.resolve(gameId, "");
        assertFalse(_defenderWon(gameId));
        _solvent();
    }

    /// @notice A lying challenger disputing an honest output token (or claiming an extra token)
    ///         loses.
    function testFuzz_outputTokenFalseAlarm(uint256 seed, uint256 j) public {
        AlphabetWorld.World memory w = _world(seed, 37, 300);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, Lie(LieKind.None, 0, 0, 0));
        _trees(d, d);
        uint256 jobId = _post(1);
        _commit(exec, jobId, w.tokens(), d.root, d.length);
        j = j % (w.nTokens + 1); // includes "one past the end"
        vm.prank(chal);
        uint256 gameId = market.challenge{value: BOND}(jobId, 0, d.root, d.length, j);
        game.resolve(gameId, "");
        assertTrue(_defenderWon(gameId));
        _solvent();
    }

    /// @notice Refereed delegation with two executors: the liar is eliminated by a slot-vs-slot
    ///         game (whichever slot lies) and the honest one takes the whole reward.
    /// forge-config: default.fuzz.runs = 128
    function testFuzz_refereedDelegation(uint256 seed, uint256 k, uint256 pt, uint256 e, uint32 bits, bool liarFirst) public {
        (AlphabetWorld.World memory w, bytes32[] memory honest) = _setup(seed, 1 + (seed % 300), 1 + (seed % 700));
        Lie memory lie = _lie(w, k, pt, e, bits);
        Player memory liar = _player(liarFirst ? exec : exec2, w, honest, lie);
        Player memory good = _player(liarFirst ? exec2 : exec, w, honest, Lie(LieKind.None, 0, 0, 0));
        Player memory d = liarFirst ? liar : good;
        Player memory c = liarFirst ? good : liar;
        _trees(d, c);
        uint256 jobId = _post(2);
        _commit(d.who, jobId, w.tokens(), d.root, d.length);
        _commit(c.who, jobId, w.tokens(), c.root, c.length);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.expectRevert(JobMarket.Disagreement.selector);
        market.finalize(jobId);
        uint256 gameId = market.disputeSlots(jobId, 0, 1);
        _play(gameId, w, d, c);
        assertEq(_defenderWon(gameId), !liarFirst);
        market.finalize(jobId);
        (IJobResult.Status st,,) = market.resultOf(jobId);
        assertTrue(st == IJobResult.Status.Finalized);
        assertEq(market.balanceOf(good.who), BOND + REWARD + BOND * 9 / 10);
        assertEq(market.balanceOf(liar.who), 0);
        _solvent();
    }

    /// @notice Two challengers pt once, one honest and one lying, against a lying executor:
    ///         the honest challenger is paid from the executor's bond; the lying one loses its
    ///         bond to the (eliminated) executor's address; nothing is paid twice.
    function test_twoChallengers() public {
        AlphabetWorld.World memory w = _world(5, 1000, 600);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, Lie(LieKind.Element, 400, 300, 12345));
        Player memory c1 = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
        Player memory c2 = _player(chal2, w, honest, Lie(LieKind.OpHash, 399, 0, 0));
        _trees(d, c1);
        _trees(d, c2);
        uint256 jobId = _post(1);
        _commit(exec, jobId, w.tokens(), d.root, d.length);
        vm.prank(chal);
        uint256 g1 = market.challenge{value: BOND}(jobId, 0, c1.root, c1.length, 0);
        vm.prank(chal2);
        uint256 g2 = market.challenge{value: BOND}(jobId, 0, c2.root, c2.length, 0);
        _play(g1, w, d, c1);
        assertFalse(_defenderWon(g1));
        _play(g2, w, d, c2);
        assertTrue(_defenderWon(g2));
        assertEq(market.balanceOf(chal), BOND + BOND * 9 / 10);
        assertEq(market.balanceOf(chal2), 0);
        assertEq(market.balanceOf(exec), BOND * 9 / 10);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        assertEq(market.balanceOf(requester), REWARD);
        _solvent();
    }

    function _solvent() internal view {
        assertEq(address(market).balance, market.totalEscrow() + market.totalCredit() + market.totalBurned(), "solvency");
    }
}
