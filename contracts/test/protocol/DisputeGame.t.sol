// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";
import {IGameSettlement} from "../../protocol/interfaces/IGameSettlement.sol";
import {AlphabetWorld, AlphabetVerifier} from "./Alphabet.sol";

/// @notice Unit tests of every DisputeGame entry point and revert path, and a timeout at every
///         phase (DESIGN §6: silence loses, equivocation cannot move).
contract DisputeGameTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    AlphabetWorld.World internal w;
    Player internal dP;
    Player internal cP;
    uint256 internal jobId;
    uint256 internal gid;

    /// @dev A 40-leaf world with 600-element outputs (3 chunks: level-2 height 2); the executor
    ///      corrupts element 300 (chunk 1) of leaf 17, so a game visits every phase.
    function _open(Lie memory dLie, Lie memory cLie) internal {
        w = _world(11, 40, 600);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, dLie);
        Player memory c = _player(chal, w, honest, cLie);
        _trees(d, c);
        dP = d;
        cP = c;
        jobId = _post(1);
        _commit(exec, jobId, w.tokens(), d.root, d.length);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, c.root, c.length, 0);
    }

    function _openDefault() internal {
        _open(Lie(LieKind.Element, 17, 300, 7), Lie(LieKind.None, 0, 0, 0));
    }

    function _advanceTo(DisputeGame.Phase phase, uint8 turn) internal {
        Level2 memory l2;
        Player memory d = dP;
        Player memory c = cP;
        for (uint256 k = 0; k < 40; ++k) {
            At memory a = _at(gid);
            if (a.phase == phase && a.turn == turn) return;
            require(a.phase != DisputeGame.Phase.Resolved, "resolved before target");
            _move(gid, a, w, d, c, l2);
        }
        revert("target phase not reached");
    }

    function _resolved() internal view returns (bool done, bool defenderWon) {
        (, DisputeGame.Phase phase,,,,,, bool dw) = game.gameInfo(gid);
        return (phase == DisputeGame.Phase.Resolved, dw);
    }

    // ---- setup and creation ----

    function test_setMarketOnceByDeployer() public {
        vm.expectRevert(DisputeGame.MarketAlreadySet.selector);
        game.setMarket(IGameSettlement(address(1)));
        vm.prank(exec);
        vm.expectRevert(DisputeGame.NotDeployer.selector);
        game.setMarket(IGameSettlement(address(1)));
    }

    function test_createOnlyMarket() public {
        DisputeGame.Init memory init;
        vm.expectRevert(DisputeGame.NotMarket.selector);
        game.create(init);
    }

    function test_unknownGame() public {
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.BadGame.selector, uint256(99)));
        game.reveal(99, new bytes32[](16));
    }

    function test_fullGameVisitsEveryPhase() public {
        _openDefault();
        _advanceTo(DisputeGame.Phase.LeafOpen, 0);
        _advanceTo(DisputeGame.Phase.TensorBisect, 0);
        _advanceTo(DisputeGame.Phase.ChunkReveal, 0);
        _advanceTo(DisputeGame.Phase.ElementPick, 1);
        (,, uint8 turn,,, uint64 leaf, uint64 chunk,) = game.gameInfo(gid);
        assertEq(turn, 1);
        assertEq(leaf, 17);
        assertEq(chunk, 1);
        _advanceTo(DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind, uint256 e, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.Element);
        assertEq(e, 300);
        assertEq(bits, 7);
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.leafIndex, 17);
        assertEq(ctx.traceRoot, dP.root);
        assertEq(ctx.programRoot, PROGRAM);
        assertEq(ctx.inputHash, keccak256(_input()));
        game.resolve(gid, "");
        (bool done, bool dw) = _resolved();
        assertTrue(done);
        assertFalse(dw);
    }

    // ---- dissection reverts ----

    function test_revealReverts() public {
        _openDefault();
        bytes32[] memory good = _slice(dP.levels, 6, 0);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.reveal(gid, good);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.NotYourTurn.selector);
        game.respond(gid, good, good);
        vm.prank(chal2);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.reveal(gid, good);
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.BadWidth.selector, uint256(16), uint256(4)));
        game.reveal(gid, new bytes32[](4));
        // height 6 with k = 16: the first round reveals 2^min(4,6) = 16 nodes two levels down
        bytes32[] memory four = _slice(dP.levels, 6, 0);
        assertEq(four.length, 16);
    }

    function test_equivocationCannotMove() public {
        _openDefault();
        // D tries to reveal children that do not hash to its committed root.
        bytes32[] memory lie = _slice(cP.levels, 6, 0);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        game.reveal(gid, lie);
        // ...so it cannot move, and loses on its clock.
        vm.warp(block.timestamp + CLOCK + 1);
        game.claimTimeout(gid);
        (bool done, bool dw) = _resolved();
        assertTrue(done);
        assertFalse(dw);
    }

    function test_respondReverts() public {
        _openDefault();
        bytes32[] memory dc = _slice(dP.levels, 6, 0);
        bytes32[] memory cc = _slice(cP.levels, 6, 0);
        vm.prank(exec);
        game.reveal(gid, dc);
        // C misquotes D's children
        bytes32[] memory wrongD = _slice(cP.levels, 6, 0);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        game.respond(gid, cc, wrongD);
        // C equivocates on its own children
        vm.prank(chal);
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        game.respond(gid, dc, dc);
        vm.prank(chal);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.BadWidth.selector, uint256(16), uint256(2)));
        game.respond(gid, new bytes32[](2), dc);
        vm.prank(chal);
        game.respond(gid, cc, dc);
        (,,, uint8 height, uint64 pos,,,) = game.gameInfo(gid);
        assertEq(height, 2);
        assertEq(pos, 17 >> 2); // the first differing quarter-subtree holds leaf 17
    }

    function test_openLeafReverts() public {
        _openDefault();
        _advanceTo(DisputeGame.Phase.LeafOpen, 0);
        bytes memory hdr = w.header();
        vm.prank(exec);
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        game.openLeaf(gid, w.op(17), hdr, bytes32(uint256(1)));
        vm.prank(exec);
        vm.expectRevert(Commitments.BadHeader.selector);
        game.openLeaf(gid, w.op(17), hex"02", bytes32(0));
        vm.prank(chal);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.openLeaf(gid, w.op(17), hdr, bytes32(0));
    }

    function test_chunkAndElementReverts() public {
        _openDefault();
        _advanceTo(DisputeGame.Phase.ChunkReveal, 0);
        bytes memory honestChunk = w.chunk(17, 1, false, 0, 0);
        bytes memory dChunk = w.chunk(17, 1, true, 300, 7);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.BadChunk.selector);
        game.revealChunk(gid, honestChunk); // not D's chunk
        vm.prank(exec);
        vm.expectRevert(DisputeGame.BadChunk.selector);
        game.revealChunk(gid, new bytes(12)); // wrong length
        vm.prank(exec);
        game.revealChunk(gid, dChunk);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.BadElement.selector);
        game.pickElement(gid, 256, dChunk);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.BadChunk.selector);
        game.pickElement(gid, 0, honestChunk);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.pickElement(gid, 0, dChunk);
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.ChunkReveal, DisputeGame.Phase.ElementPick));
        game.revealChunk(gid, dChunk);
    }

    function test_resolveRevertsOnBadWitnessAndUnrevealedChain() public {
        _openDefault();
        _advanceTo(DisputeGame.Phase.Proof, 0);
        vm.expectRevert(AlphabetVerifier.BadWitness.selector);
        game.resolve(gid, "bad");
        // an element with links is not decided whole: D must reveal its chain first
        verifier.setChainLength(1536);
        vm.expectRevert(abi.encodeWithSelector(AlphabetVerifier.ChainRequired.selector, uint256(1536)));
        game.resolve(gid, "");
        verifier.setChainLength(0);
        game.resolve(gid, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Proof, DisputeGame.Phase.Resolved));
        game.resolve(gid, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.None, DisputeGame.Phase.Resolved));
        game.claimTimeout(gid);
    }

    function test_wrongPhaseCalls() public {
        _openDefault();
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.LeafOpen, DisputeGame.Phase.TraceBisect));
        game.openLeaf(gid, bytes32(0), "", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.ChunkReveal, DisputeGame.Phase.TraceBisect));
        game.revealChunk(gid, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.ElementPick, DisputeGame.Phase.TraceBisect));
        game.pickElement(gid, 0, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Proof, DisputeGame.Phase.TraceBisect));
        game.resolve(gid, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.LengthProof, DisputeGame.Phase.TraceBisect));
        game.proveLength(gid, bytes32(0), new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Proof, DisputeGame.Phase.TraceBisect));
        game.revealChain(gid, new uint32[](1), "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.LinkPick, DisputeGame.Phase.TraceBisect));
        game.pickLink(gid, 0, new uint32[](1));
        _advanceTo(DisputeGame.Phase.LeafOpen, 0);
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.TraceBisect, DisputeGame.Phase.LeafOpen));
        game.reveal(gid, new bytes32[](16));
    }

    function test_lengthProofBadProof() public {
        // Same leaves, executor claims a longer trace: the game starts in LengthProof.
        _open(Lie(LieKind.SameLeavesLength, 50, 0, 0), Lie(LieKind.None, 0, 0, 0));
        (, DisputeGame.Phase phase,,,,,,) = game.gameInfo(gid);
        assertTrue(phase == DisputeGame.Phase.LengthProof);
        (,,, uint64 idx, uint8 side,) = game.pending(gid);
        assertEq(idx, 40);
        assertEq(side, 1);
        bytes32[] memory proof = _proof(cP.levels, idx);
        vm.expectRevert(DisputeGame.BadProof.selector);
        game.proveLength(gid, bytes32(uint256(5)), proof); // not the leaf
        vm.expectRevert(DisputeGame.BadProof.selector);
        game.proveLength(gid, bytes32(0), new bytes32[](2)); // wrong depth
        game.proveLength(gid, bytes32(0), proof);
        (bool done, bool dw) = _resolved();
        assertTrue(done);
        assertFalse(dw);
    }

    // ---- clocks ----

    function test_chessClockCharged() public {
        _openDefault();
        vm.warp(block.timestamp + 600);
        vm.prank(exec);
        game.reveal(gid, _slice(dP.levels, 6, 0));
        (,,, uint64 clockD,) = game.partyInfo(gid, 0);
        (,,, uint64 clockC,) = game.partyInfo(gid, 1);
        assertEq(clockD, CLOCK - 600);
        assertEq(clockC, CLOCK);
        (,,,,, uint256 deadline) = game.pending(gid);
        assertEq(deadline, block.timestamp + CLOCK);
    }

    function _timeoutAt(DisputeGame.Phase phase, uint8 turn) internal {
        _advanceTo(phase, turn);
        (,,,,, uint256 deadline) = game.pending(gid);
        vm.warp(deadline);
        vm.expectRevert(DisputeGame.ClockRunning.selector);
        game.claimTimeout(gid);
        vm.warp(deadline + 1);
        game.claimTimeout(gid);
        (bool done, bool dw) = _resolved();
        assertTrue(done);
        assertEq(dw, turn == 1, "the silent side must lose");
    }

    function test_timeoutTraceBisectDefender() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.TraceBisect, 0);
    }

    function test_timeoutTraceBisectChallenger() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.TraceBisect, 1);
    }

    function test_timeoutLeafOpenDefender() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.LeafOpen, 0);
    }

    function test_timeoutLeafOpenChallenger() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.LeafOpen, 1);
    }

    function test_timeoutTensorBisectDefender() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.TensorBisect, 0);
    }

    function test_timeoutTensorBisectChallenger() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.TensorBisect, 1);
    }

    function test_timeoutChunkReveal() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.ChunkReveal, 0);
    }

    function test_timeoutElementPick() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.ElementPick, 1);
    }

    function test_timeoutProof() public {
        _openDefault();
        _timeoutAt(DisputeGame.Phase.Proof, 0);
    }

    function test_timeoutLengthProof() public {
        _open(Lie(LieKind.SameLeavesLength, 50, 0, 0), Lie(LieKind.None, 0, 0, 0));
        _timeoutAt(DisputeGame.Phase.LengthProof, 0);
    }

    function test_moveAfterClockExpired() public {
        _openDefault();
        vm.warp(block.timestamp + CLOCK + 1);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.ClockExpired.selector);
        game.reveal(gid, _slice(dP.levels, 6, 0));
    }

    function test_resolveAfterClockExpired() public {
        _openDefault();
        _advanceTo(DisputeGame.Phase.Proof, 0);
        vm.warp(block.timestamp + CLOCK + 1);
        vm.expectRevert(DisputeGame.ClockExpired.selector);
        game.resolve(gid, "");
    }

    // ---- one case per claim kind and per malformed-leaf rule, with the loser checked ----

    function _playOut() internal returns (bool defenderWon) {
        Level2 memory l2;
        Player memory d = dP;
        Player memory c = cP;
        for (uint256 k = 0; k < 40; ++k) {
            At memory a = _at(gid);
            if (a.phase == DisputeGame.Phase.Resolved) break;
            _move(gid, a, w, d, c, l2);
        }
        (, defenderWon) = _resolved();
    }

    function test_opHashLieDecidedByProgram() public {
        _open(Lie(LieKind.OpHash, 5, 0, 0), Lie(LieKind.None, 0, 0, 0));
        _advanceTo(DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind,,,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.OpHash);
        assertFalse(_playOut());
    }

    function test_headerLieDecidedByProgram() public {
        _open(Lie(LieKind.None, 0, 0, 0), Lie(LieKind.Header, 39, 0, 0));
        _advanceTo(DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind,,,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.OutputHeader);
        assertEq(keccak256(game.stepContext(gid).claim), keccak256(w.header()));
        assertTrue(_playOut());
    }

    function test_truncatedTraceDecidedByTraceEnd() public {
        _open(Lie(LieKind.Truncate, 33, 0, 0), Lie(LieKind.None, 0, 0, 0));
        _advanceTo(DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind,, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.TraceEnd);
        assertEq(bits, 1);
        assertFalse(_playOut());
    }

    function test_malformedZeroLeafLoses() public {
        _open(Lie(LieKind.ZeroLeaf, 0, 0, 0), Lie(LieKind.None, 0, 0, 0));
        assertFalse(_playOut());
    }

    function test_malformedPaddingLoses() public {
        _open(Lie(LieKind.None, 0, 0, 0), Lie(LieKind.BadPadding, 0, 0, 0));
        assertTrue(_playOut());
    }

    function test_singleLeafTracesDecidedAtCreation() public {
        w = _world(3, 1, 8);
        bytes32[] memory honest = _honestLeaves(w);
        Player memory d = _player(exec, w, honest, Lie(LieKind.ZeroLeaf, 0, 0, 0));
        Player memory c = _player(chal, w, honest, Lie(LieKind.None, 0, 0, 0));
        _trees(d, c);
        jobId = _post(1);
        _commit(exec, jobId, w.tokens(), d.root, d.length);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, c.root, c.length, 0);
        (bool done, bool dw) = _resolved();
        assertTrue(done);
        assertFalse(dw);
        assertEq(market.balanceOf(chal), BOND + BOND * 9 / 10);
    }

    // ---- level 3: accumulation chains (docs/trace-layout.md §L9) ----

    /// @dev D's chain for the disputed element (17, 300), from its own data (honest or lying).
    function _dChain(uint256 n) internal view returns (uint32[] memory) {
        return _chainOf(w, dP, 17, 300, n);
    }

    function _openChain(uint256 n, bool defenderLies) internal {
        verifier.setChainLength(n);
        if (defenderLies) {
            _openDefault();
        } else {
            _open(Lie(LieKind.None, 0, 0, 0), Lie(LieKind.Element, 17, 300, 7));
        }
    }

    function _pick(uint256 j, uint32[] memory accs) internal {
        vm.prank(chal);
        game.pickLink(gid, j, accs);
    }

    function test_chainHonestDefenderWinsAnyLink() public {
        uint256 n = 4;
        _openChain(n, false);
        _advanceTo(DisputeGame.Phase.LinkPick, 1);
        uint32[] memory accs = _dChain(n);
        assertEq(accs[n - 1], w.element(17, 300));
        (bytes32 h, uint256 links, bool picked,) = game.chainInfo(gid);
        assertEq(h, keccak256(abi.encode(accs)));
        assertEq(links, n);
        assertFalse(picked);
        for (uint256 j = 0; j < n; ++j) {
            uint256 snap = vm.snapshotState();
            uint256 start = j == 0 ? 0 : accs[j - 1];
            vm.expectEmit(true, false, false, true);
            emit DisputeGame.LinkPicked(gid, j, start, accs[j]);
            _pick(j, accs);
            (, DisputeGame.Phase phase, uint8 turn,,,,,) = game.gameInfo(gid);
            assertTrue(phase == DisputeGame.Phase.Proof);
            assertEq(turn, 0);
            (IOneStepVerifier.Claim kind, uint256 e, uint256 bits,,,) = game.pending(gid);
            assertTrue(kind == IOneStepVerifier.Claim.Element);
            assertEq(e, 300);
            assertEq(bits, accs[j]);
            IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
            assertEq(ctx.claim, abi.encode(j, start));
            assertEq(ctx.claimedBits, accs[j]);
            (,, bool pk, uint256 link) = game.chainInfo(gid);
            assertTrue(pk);
            assertEq(link, j);
            game.resolve(gid, "");
            (bool done, bool dw) = _resolved();
            assertTrue(done);
            assertTrue(dw, "honest chain loses a link");
            vm.revertToState(snap);
        }
    }

    function test_chainLyingDefenderLosesAtItsBadLink() public {
        uint256 n = 24;
        _openChain(n, true);
        uint256 bad = _lieLink(dP.lie, n);
        assertGt(bad, 0); // this lie keeps a true prefix, so an agreed link exists
        _advanceTo(DisputeGame.Phase.LinkPick, 1);
        uint32[] memory accs = _dChain(n);
        assertEq(accs[n - 1], 7);
        uint256 snap = vm.snapshotState();
        // C names the first link that differs from the truth: its start is true, its end not
        assertFalse(_playOut());
        (,, bool picked, uint256 link) = game.chainInfo(gid);
        assertTrue(picked);
        assertEq(link, bad);
        vm.revertToState(snap);
        // every later link starts from a wrong value and fails as well
        _pick(n - 1, accs);
        game.resolve(gid, "");
        (, bool dw) = _resolved();
        assertFalse(dw);
        vm.revertToState(snap);
        // a challenger that names an agreed link loses: the game decides the link, not the element
        _pick(bad - 1, accs);
        game.resolve(gid, "");
        (, dw) = _resolved();
        assertTrue(dw);
    }

    function test_revealChainReverts() public {
        uint256 n = 4;
        _openChain(n, true);
        _advanceTo(DisputeGame.Phase.Proof, 0);
        uint32[] memory accs = _dChain(n);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.revealChain(gid, accs, "");
        vm.prank(exec);
        vm.expectRevert(AlphabetVerifier.BadWitness.selector);
        game.revealChain(gid, accs, "bad");
        uint32[] memory short = new uint32[](n - 1);
        short[n - 2] = 7;
        vm.prank(exec);
        vm.expectRevert(DisputeGame.BadChain.selector);
        game.revealChain(gid, short, "");
        uint32[] memory wrongEnd = _dChain(n);
        wrongEnd[n - 1] = w.element(17, 300); // not D's claimed element
        vm.prank(exec);
        vm.expectRevert(DisputeGame.BadChain.selector);
        game.revealChain(gid, wrongEnd, "");
        verifier.setChainLength(1025);
        uint32[] memory huge = new uint32[](1025);
        huge[1024] = 7;
        vm.prank(exec);
        vm.expectRevert(DisputeGame.BadChain.selector);
        game.revealChain(gid, huge, "");
        verifier.setChainLength(0);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.NotChained.selector);
        game.revealChain(gid, accs, "");
        verifier.setChainLength(n);
        vm.warp(block.timestamp + 100);
        vm.expectEmit(true, false, false, true);
        emit DisputeGame.ChainRevealed(gid, accs);
        vm.prank(exec);
        game.revealChain(gid, accs, "");
        (, DisputeGame.Phase phase, uint8 turn,,,,,) = game.gameInfo(gid);
        assertTrue(phase == DisputeGame.Phase.LinkPick);
        assertEq(uint256(phase), 9);
        assertEq(turn, 1);
        (,,, uint64 clockD,) = game.partyInfo(gid, 0);
        assertEq(clockD, CLOCK - 100); // D's move, D's clock
        // wrong phase: the chain is revealed, C to pick
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Proof, DisputeGame.Phase.LinkPick));
        game.revealChain(gid, accs, "");
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Proof, DisputeGame.Phase.LinkPick));
        game.resolve(gid, "");
        _pick(0, accs);
        // once only
        vm.prank(exec);
        vm.expectRevert(DisputeGame.ChainAlreadyRevealed.selector);
        game.revealChain(gid, accs, "");
    }

    function test_revealChainOnlyForElementClaims() public {
        verifier.setChainLength(4);
        _open(Lie(LieKind.OpHash, 5, 0, 0), Lie(LieKind.None, 0, 0, 0));
        _advanceTo(DisputeGame.Phase.Proof, 0);
        uint32[] memory accs = new uint32[](4);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.NotChained.selector);
        game.revealChain(gid, accs, "");
        assertFalse(_playOut()); // the OpHash claim is decided as before
    }

    function test_pickLinkReverts() public {
        uint256 n = 4;
        _openChain(n, true);
        _advanceTo(DisputeGame.Phase.LinkPick, 1);
        uint32[] memory accs = _dChain(n);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.NotParty.selector);
        game.pickLink(gid, 0, accs);
        uint32[] memory forged = _dChain(n);
        forged[1] ^= 1;
        vm.prank(chal);
        vm.expectRevert(DisputeGame.BadChain.selector);
        game.pickLink(gid, 1, forged);
        vm.prank(chal);
        vm.expectRevert(DisputeGame.BadChain.selector);
        game.pickLink(gid, 1, new uint32[](n));
        vm.prank(chal);
        vm.expectRevert(DisputeGame.BadLink.selector);
        game.pickLink(gid, n, accs);
        vm.warp(block.timestamp + 50);
        _pick(n - 1, accs);
        (,,, uint64 clockC,) = game.partyInfo(gid, 1);
        assertEq(clockC, CLOCK - 50); // C's move, C's clock
        vm.prank(chal);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.LinkPick, DisputeGame.Phase.Proof));
        game.pickLink(gid, 0, accs);
    }

    function test_timeoutLinkPickChallenger() public {
        _openChain(4, true);
        _timeoutAt(DisputeGame.Phase.LinkPick, 1);
    }

    function test_timeoutProofBeforeChainReveal() public {
        // even an honest defender that never reveals its chain loses on its clock
        _openChain(4, false);
        _advanceTo(DisputeGame.Phase.Proof, 0);
        vm.expectRevert(abi.encodeWithSelector(AlphabetVerifier.ChainRequired.selector, uint256(4)));
        game.resolve(gid, "");
        _timeoutAt(DisputeGame.Phase.Proof, 0);
    }

    function test_timeoutProofAfterLinkPick() public {
        _openChain(4, true);
        _advanceTo(DisputeGame.Phase.LinkPick, 1);
        _pick(0, _dChain(4));
        _timeoutAt(DisputeGame.Phase.Proof, 0);
    }
}
