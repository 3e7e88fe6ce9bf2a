// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {IModelRegistry} from "../../protocol/interfaces/IModelRegistry.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";
import {AlphabetWorld} from "./Alphabet.sol";

/// @notice The compact-trace expansion phase (docs/trace-layout.md §L10, ADR 0013): games over
///         compact roots dissect them, expand both sides to full traces bound at the disputed
///         compact leaf, and then play the full-trace game. Traces are real pairs built from the
///         alphabet world: a program of P = 6 ops a step keeps ops {1, 3, 5} (Pc = 3, the token
///         op 5 at cTok = 2); 8 steps, so a full trace has 48 leaves and a compact one 24.
contract CompactGameTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    uint32 internal constant P = 6;
    uint32 internal constant PC = 3;
    uint32 internal constant CTOK = 2;
    uint256 internal constant STEPS = 8;
    bytes32 internal constant CMODEL = keccak256("compact model");

    /// @dev One party's data: its compact and full traces (as the driver's Players) and the
    ///      (op hash, output root) of every full leaf.
    struct Side {
        Player c;
        Player f;
        bytes32[] ops;
        bytes32[] outs;
    }

    /// @dev The arguments of one `expand` call.
    struct X {
        bytes32 fullRoot;
        DisputeGame.Compact c;
        bytes32 opHash;
        bytes32 outputRoot;
        uint32 op;
        bytes32[] mapProof;
        bytes32[] compactProof;
        bytes32[] leafProof;
    }

    AlphabetWorld.World internal w;
    bytes32 internal croot;
    bytes32 internal mapRoot;
    uint256 internal jobId;
    uint256 internal gid;
    bool internal outGame;
    uint256 internal tokenIdx;

    function setUp() public override {
        super.setUp();
        w = _world(21, uint64(STEPS * P), 300); // 2 chunks a leaf: level 2 has height 1
        mapRoot = Merkle.rootOf(_mapLeaves());
        croot = Commitments.compactRoot(P, PC, CTOK, mapRoot);
        registry.register(CMODEL, PROGRAM, 1, VOCAB, MAX_CTX, "compact", "hf://compact", croot);
    }

    // ---- the compact map ----

    function _compactOps() internal pure returns (uint32[] memory o) {
        o = new uint32[](PC);
        (o[0], o[1], o[2]) = (1, 3, 5);
    }

    function _mapLeaves() internal pure returns (bytes32[] memory leaves) {
        uint32[] memory o = _compactOps();
        leaves = new bytes32[](PC);
        for (uint256 k = 0; k < PC; ++k) {
            leaves[k] = Commitments.compactMapLeaf(o[k]);
        }
    }

    function _cmp() internal view returns (DisputeGame.Compact memory) {
        return DisputeGame.Compact({P: P, Pc: PC, cTok: CTOK, mapRoot: mapRoot});
    }

    /// @dev Full leaf of compact leaf k: (k div Pc)·P + compact_ops[k mod Pc].
    function _fullOf(uint256 k) internal pure returns (uint256) {
        return (k / PC) * P + _compactOps()[k % PC];
    }

    // ---- traces ----

    /// @dev A party's traces. Lies: None; Element at full leaf `pt` (element `e` := `bits`, junk
    ///      leaves after it, as a wrong value spreads); Truncate (only `pt` steps).
    function _side(address who, Lie memory lie) internal view returns (Side memory s) {
        uint256 nSteps = lie.kind == LieKind.Truncate ? lie.pt : STEPS;
        uint256 n = nSteps * P;
        bytes memory hdr = w.header();
        s.ops = new bytes32[](n);
        s.outs = new bytes32[](n);
        s.f.leaves = new bytes32[](n);
        bool el = lie.kind == LieKind.Element;
        for (uint256 f = 0; f < n; ++f) {
            if (el && f > lie.pt) {
                s.ops[f] = keccak256(abi.encode("junk op", f));
                s.outs[f] = keccak256(abi.encode("junk out", f));
            } else {
                s.ops[f] = w.op(f);
                s.outs[f] = Commitments.tensorRoot(hdr, w.dataRoot(f, el && f == lie.pt, lie.e, lie.bits));
            }
            s.f.leaves[f] = Commitments.traceLeaf(uint32(f), s.ops[f], s.outs[f]);
        }
        s.f.who = who;
        s.f.lie = el ? lie : Lie(LieKind.None, 0, 0, 0);
        s.f.length = uint64(n);
        s.c.who = who;
        s.c.length = uint64(nSteps * PC);
        s.c.leaves = new bytes32[](s.c.length);
        for (uint256 k = 0; k < s.c.length; ++k) {
            uint256 f = _fullOf(k);
            s.c.leaves[k] = Commitments.traceLeaf(uint32(k), s.ops[f], s.outs[f]);
        }
    }

    function _honest(address who) internal view returns (Side memory) {
        return _side(who, Lie(LieKind.None, 0, 0, 0));
    }

    function _elementLie(address who, uint64 f) internal view returns (Side memory) {
        return _side(who, Lie(LieKind.Element, f, 280, 7)); // element 280: chunk 1
    }

    // ---- games ----

    function _request() internal view returns (JobMarket.JobRequest memory r) {
        r = _request(1);
        r.modelHash = CMODEL;
    }

    /// @dev Posts a job for the compact model, D commits `dTokens` and its compact trace, C
    ///      challenges with its own compact commitment (equal ones: an output game at `k`).
    function _openGame(Side memory d, Side memory c, uint32[] memory dTokens, uint256 k) internal {
        _trees(d.c, c.c);
        _trees(d.f, c.f);
        vm.prank(requester);
        jobId = market.postJob{value: REWARD}(_request(), _input());
        _commit(exec, jobId, dTokens, d.c.root, d.c.length);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, c.c.root, c.c.length, k);
        outGame = d.c.root == c.c.root && d.c.length == c.c.length;
        tokenIdx = k;
    }

    function _open(Side memory d, Side memory c) internal {
        _openGame(d, c, w.tokens(), 0);
    }

    /// @dev The compact leaf the expansion binds (output games: tokenIndex·Pc + cTok).
    function _leaf() internal view returns (uint256 i) {
        if (outGame) return tokenIdx * PC + CTOK;
        (,, uint64 li,) = game.compactInfo(gid);
        return li;
    }

    /// @dev An honest `expand` of party `s`: its full root and, where its compact leaf i is real,
    ///      the op and output of i with the map, compact and full-leaf proofs.
    function _args(Side memory s) internal view returns (X memory x) {
        x.fullRoot = s.f.root;
        x.c = _cmp();
        uint256 i = _leaf();
        if (i >= s.c.length) return x;
        uint256 f = _fullOf(i);
        x.op = _compactOps()[i % PC];
        x.opHash = s.ops[f];
        x.outputRoot = s.outs[f];
        x.mapProof = _proof(_levels(_mapLeaves(), Merkle.depthOf(PC)), i % PC);
        x.compactProof = _proof(_levels(s.c.leaves, Merkle.depthOf(s.c.length)), i);
        x.leafProof = _proof(_levels(s.f.leaves, Merkle.depthOf(s.f.length)), f);
    }

    function _expand(address who, X memory x) internal {
        vm.prank(who);
        game.expand(gid, x.fullRoot, x.c, x.opHash, x.outputRoot, x.op, x.mapProof, x.compactProof, x.leafProof);
    }

    /// @dev One move by whoever is to move: expansions here, everything else by the shared
    ///      driver on the compact traces (before the expansion) or the full ones (after).
    function _step(Side memory d, Side memory c, Level2 memory l2) internal {
        At memory a = _at(gid);
        if (a.phase == DisputeGame.Phase.Expand) {
            Side memory s = a.turn == 0 ? d : c;
            _expand(s.c.who, _args(s));
            return;
        }
        (, bool expanded,,) = game.compactInfo(gid);
        if (expanded) _move(gid, a, w, d.f, c.f, l2);
        else _move(gid, a, w, d.c, c.c, l2);
    }

    function _advanceTo(Side memory d, Side memory c, DisputeGame.Phase phase, uint8 turn) internal {
        Level2 memory l2;
        for (uint256 k = 0; k < 64; ++k) {
            At memory a = _at(gid);
            if (a.phase == phase && a.turn == turn) return;
            require(a.phase != DisputeGame.Phase.Resolved, "resolved before target");
            _step(d, c, l2);
        }
        revert("target phase not reached");
    }

    function _playOut(Side memory d, Side memory c) internal returns (bool defenderWon) {
        Level2 memory l2;
        for (uint256 k = 0; k < 64; ++k) {
            At memory a = _at(gid);
            if (a.phase == DisputeGame.Phase.Resolved) {
                (,,,,,,, defenderWon) = game.gameInfo(gid);
                return defenderWon;
            }
            _step(d, c, l2);
        }
        revert("driver: game did not end");
    }

    function _phase() internal view returns (DisputeGame.Phase phase) {
        (, phase,,,,,,) = game.gameInfo(gid);
    }

    function _party(uint8 side) internal view returns (bytes32 root, uint64 length) {
        (, root, length,,) = game.partyInfo(gid, side);
    }

    // ---- registry and market plumbing ----

    function test_registryStoresCompactRoot() public {
        assertEq(registry.compactRootOf(CMODEL), croot);
        assertEq(registry.compactRootOf(MODEL), bytes32(0)); // registered, full traces
        assertEq(registry.compactRootOf(keccak256("unknown")), bytes32(0)); // never reverts
        IModelRegistry.Model memory m = registry.modelOf(CMODEL);
        assertEq(m.compactRoot, croot);
        assertEq(m.programRoot, PROGRAM);
        bytes32 h = keccak256("third");
        vm.expectEmit();
        emit IModelRegistry.ModelRegistered(h, PROGRAM, 1, "n", "u", address(this), VOCAB, MAX_CTX, bytes32(uint256(5)));
        registry.register(h, PROGRAM, 1, VOCAB, MAX_CTX, "n", "u", bytes32(uint256(5)));
        assertEq(registry.compactRootOf(h), bytes32(uint256(5)));
    }

    function test_commitmentHelpers() public pure {
        assertEq(Commitments.compactMapLeaf(0x01020304), keccak256(hex"0501020304"));
        bytes32 m = bytes32(uint256(0xabc));
        assertEq(
            Commitments.compactRoot(6, 3, 2, m), keccak256(abi.encodePacked(hex"06", hex"00000006", hex"00000003", hex"00000002", m))
        );
    }

    function test_marketPassesCompactRoot() public {
        _open(_elementLie(exec, 15), _honest(chal));
        (bytes32 r, bool expanded, uint64 li,) = game.compactInfo(gid);
        assertEq(r, croot);
        assertFalse(expanded);
        assertEq(li, 0);
        assertTrue(_phase() == DisputeGame.Phase.TraceBisect);
        (bytes32 root, uint64 len) = _party(0);
        assertEq(len, 24); // the compact length was committed
        assertNotEq(root, bytes32(0));
    }

    // ---- full disputes: both compact leaves real ----

    /// @dev Lie at full leaf 15 = op 3 of step 2, a kept op: compact leaf 7 = 2·3 + 1 differs.
    function test_lyingDefenderAtKeptOpExpandsAndLoses() public {
        Side memory d = _elementLie(exec, 15);
        Side memory c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        _checkAtExpand(7);
        _checkDefenderExpands(d, c);
        _checkChallengerExpands(d, c);
        // the full game: the first differing full leaf is 15, decided by the element
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind, uint256 e, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.Element);
        assertEq(e, 280);
        assertEq(bits, 7);
        _checkContext(d, 15);
        assertFalse(_playOut(d, c));
        assertEq(market.balanceOf(chal), BOND + BOND * 9 / 10);
    }

    function _checkAtExpand(uint64 i) internal view {
        (, bool expanded, uint64 li,) = game.compactInfo(gid);
        assertEq(li, i);
        assertFalse(expanded);
        (,,,, uint64 pos, uint64 leaf,,) = game.gameInfo(gid);
        assertEq(pos, i);
        assertEq(leaf, i);
    }

    /// @dev D's expansion: its commitment is full, C (still compact) to move, still Expand.
    function _checkDefenderExpands(Side memory d, Side memory c) internal {
        X memory x = _args(d);
        vm.expectEmit(true, false, false, true);
        emit DisputeGame.Expanded(gid, 0, d.f.root, 48);
        _expand(exec, x);
        At memory a = _at(gid);
        assertTrue(a.phase == DisputeGame.Phase.Expand);
        assertEq(a.turn, 1);
        (bytes32 rootD, uint64 lenD) = _party(0);
        assertEq(rootD, d.f.root);
        assertEq(lenD, 48);
        (bytes32 rootC, uint64 lenC) = _party(1);
        assertEq(rootC, c.c.root);
        assertEq(lenC, 24);
    }

    /// @dev C's expansion: level 1 restarts on the two full roots (48 leaves: height 6).
    function _checkChallengerExpands(Side memory d, Side memory c) internal {
        (,, uint64 i,) = game.compactInfo(gid);
        X memory x = _args(c);
        vm.expectEmit(true, false, false, true);
        emit DisputeGame.Expanded(gid, 1, c.f.root, 48);
        _expand(chal, x);
        At memory a = _at(gid);
        assertTrue(a.phase == DisputeGame.Phase.TraceBisect);
        assertEq(a.turn, 0);
        assertEq(a.height, 6);
        assertEq(a.pos, 0);
        (, bool expanded, uint64 li,) = game.compactInfo(gid);
        assertTrue(expanded);
        assertEq(li, i);
        (,,,, bytes32 nodeD) = game.partyInfo(gid, 0);
        assertEq(nodeD, d.f.root);
        (,,,, bytes32 nodeC) = game.partyInfo(gid, 1);
        assertEq(nodeC, c.f.root);
    }

    /// @dev The verifier's context carries D's full root and length and the full leaf.
    function _checkContext(Side memory d, uint256 leaf) internal view {
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.traceRoot, d.f.root);
        assertEq(ctx.traceLength, d.f.length);
        assertEq(ctx.leafIndex, leaf);
        assertEq(ctx.opHash, d.ops[leaf]);
    }

    /// @dev Lie at full leaf 14 = op 2 of step 2, an interior op: the compact traces first differ
    ///      at compact leaf 7 (full leaf 15, junk after the lie), the full game finds leaf 14.
    function test_lyingDefenderAtInteriorOpLoses() public {
        Side memory d = _elementLie(exec, 14);
        Side memory c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        assertEq(_leaf(), 7);
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.leafIndex, 14);
        assertEq(ctx.traceRoot, d.f.root);
        assertEq(ctx.traceLength, 48);
        assertFalse(_playOut(d, c));
    }

    function test_lyingChallengerExpandsAndLoses() public {
        Side memory d = _honest(exec);
        Side memory c = _elementLie(chal, 33); // op 3 of step 5: compact leaf 16
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        assertEq(_leaf(), 16);
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.leafIndex, 33);
        assertEq(ctx.traceRoot, d.f.root);
        assertEq(ctx.traceLength, 48);
        assertTrue(_playOut(d, c));
        assertEq(market.balanceOf(exec), BOND * 9 / 10);
    }

    // ---- one compact trace ends at i (TraceEnd case) ----

    function test_truncatedDefenderExpandsThenLosesTraceEnd() public {
        Side memory d = _side(exec, Lie(LieKind.Truncate, 7, 0, 0)); // 7 steps: 21 compact, 42 full
        Side memory c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        assertEq(_leaf(), 21);
        // D's trace has ended at 21: only its full root counts (the other arguments are ignored)
        X memory x;
        x.fullRoot = d.f.root;
        x.c = _cmp();
        x.opHash = keccak256("ignored");
        _expand(exec, x);
        (bytes32 rootD, uint64 lenD) = _party(0);
        assertEq(rootD, d.f.root);
        assertEq(lenD, 42);
        _expand(chal, _args(c)); // C's leaf 21 is real: full leaf 43
        assertTrue(_phase() == DisputeGame.Phase.TraceBisect);
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind,, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.TraceEnd);
        assertEq(bits, 1); // D claims its (full) trace ends at 42
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.leafIndex, 42);
        assertEq(ctx.traceLength, 42);
        assertFalse(_playOut(d, c));
    }

    function test_truncatedChallengerLoses() public {
        Side memory d = _honest(exec);
        Side memory c = _side(chal, Lie(LieKind.Truncate, 5, 0, 0));
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 1);
        assertEq(_leaf(), 15);
        (bytes32 rootD, uint64 lenD) = _party(0);
        assertEq(rootD, d.f.root);
        assertEq(lenD, 48);
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        (IOneStepVerifier.Claim kind,, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.TraceEnd);
        assertEq(bits, 0); // D claims the trace goes on past 30
        assertEq(game.stepContext(gid).leafIndex, 30);
        assertTrue(_playOut(d, c));
    }

    /// @dev Same compact leaves, a longer length claim: the structural length proof stays.
    function test_compactLengthProofNeedsNoExpansion() public {
        Side memory d = _honest(exec);
        d.c.length = 27; // same leaves, claims 3 compact leaves more
        Side memory c = _honest(chal);
        _open(d, c);
        assertTrue(_phase() == DisputeGame.Phase.LengthProof);
        (,,, uint64 idx, uint8 side,) = game.pending(gid);
        assertEq(idx, 24);
        assertEq(side, 1);
        assertFalse(_playOut(d, c));
        (, bool expanded,,) = game.compactInfo(gid);
        assertFalse(expanded);
    }

    // ---- output games ----

    function _tokensWith(uint256 k, uint32 t) internal view returns (uint32[] memory toks) {
        toks = w.tokens();
        toks[k] = t;
    }

    function test_outputGameExpandsThenDecidesToken() public {
        Side memory d = _honest(exec);
        _openGame(d, _honest(chal), _tokensWith(3, 77), 3); // D's token 3 is wrong
        At memory a = _at(gid);
        assertTrue(a.phase == DisputeGame.Phase.Expand);
        assertEq(a.turn, 0);
        (bytes32 r, bool expanded, uint64 li, bool outputGame) = game.compactInfo(gid);
        assertEq(r, croot);
        assertFalse(expanded);
        assertTrue(outputGame);
        assertEq(li, 0); // fixed by D's move
        // C never expands in an output game
        X memory x = _args(d);
        vm.expectRevert(DisputeGame.NotYourTurn.selector);
        _expand(chal, x);
        vm.expectEmit(true, false, false, true);
        emit DisputeGame.Expanded(gid, 0, d.f.root, 48);
        _expand(exec, x);
        (, expanded, li,) = game.compactInfo(gid);
        assertTrue(expanded);
        assertEq(li, 3 * PC + CTOK);
        a = _at(gid);
        assertTrue(a.phase == DisputeGame.Phase.Proof);
        assertEq(a.turn, 0);
        (IOneStepVerifier.Claim kind, uint256 e, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.OutputToken);
        assertEq(e, 3);
        assertEq(bits, 77);
        IOneStepVerifier.StepContext memory ctx = game.stepContext(gid);
        assertEq(ctx.traceRoot, d.f.root);
        assertEq(ctx.traceLength, 48);
        (bytes32 rootC, uint64 lenC) = _party(1);
        assertEq(rootC, d.c.root); // C keeps the (agreed) compact commitment
        assertEq(lenC, 24);
        game.resolve(gid, "");
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertFalse(dw);
    }

    function test_outputGameHonestDefenderWins() public {
        Side memory d = _honest(exec);
        _openGame(d, _honest(chal), w.tokens(), 5);
        assertTrue(_playOut(d, _honest(chal)));
        (,, uint64 li,) = game.compactInfo(gid);
        assertEq(li, 5 * PC + CTOK);
    }

    /// @dev No token 8 (the trace has 8 steps): i = 26 ≥ 24, only D's full root is used.
    function test_outputGamePastTheTrace() public {
        Side memory d = _honest(exec);
        _openGame(d, _honest(chal), w.tokens(), 8);
        X memory x;
        x.fullRoot = d.f.root;
        x.c = _cmp();
        _expand(exec, x);
        (IOneStepVerifier.Claim kind,, uint256 bits,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.OutputToken);
        assertEq(bits, type(uint256).max);
        assertEq(game.stepContext(gid).traceLength, 48);
        game.resolve(gid, "");
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertTrue(dw);
    }

    function test_outputGameRevertsOnBadCompactProof() public {
        Side memory d = _honest(exec);
        _openGame(d, _honest(chal), _tokensWith(2, 1), 2);
        X memory x = _args(d);
        x.compactProof[0] = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        _expand(exec, x);
        x = _args(d);
        x.compactProof = new bytes32[](2); // wrong depth
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        _expand(exec, x);
        x = _args(d);
        x.leafProof[1] = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        _expand(exec, _args(d));
        assertTrue(_phase() == DisputeGame.Phase.Proof);
    }

    // ---- every revert of expand ----

    function _openAtExpand() internal returns (Side memory d, Side memory c) {
        d = _elementLie(exec, 15);
        c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
    }

    function test_expandRevertsWrongPhase() public {
        Side memory d = _elementLie(exec, 15);
        Side memory c = _honest(chal);
        _open(d, c);
        X memory x;
        x.c = _cmp();
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Expand, DisputeGame.Phase.TraceBisect));
        game.expand(gid, d.f.root, x.c, bytes32(0), bytes32(0), 0, x.mapProof, x.compactProof, x.leafProof);
        _advanceTo(d, c, DisputeGame.Phase.Proof, 0);
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Expand, DisputeGame.Phase.Proof));
        game.expand(gid, d.f.root, x.c, bytes32(0), bytes32(0), 0, x.mapProof, x.compactProof, x.leafProof);
        vm.expectRevert(abi.encodeWithSelector(DisputeGame.BadGame.selector, uint256(99)));
        game.expand(99, d.f.root, x.c, bytes32(0), bytes32(0), 0, x.mapProof, x.compactProof, x.leafProof);
    }

    function test_expandRevertsTurnAndParty() public {
        (Side memory d, Side memory c) = _openAtExpand();
        X memory xd = _args(d); // computed before expectRevert: _args reads the game
        X memory xc = _args(c);
        vm.expectRevert(DisputeGame.NotYourTurn.selector);
        _expand(chal, xc);
        vm.expectRevert(DisputeGame.NotParty.selector);
        _expand(chal2, xd);
        _expand(exec, xd);
        vm.expectRevert(DisputeGame.NotYourTurn.selector);
        _expand(exec, xd);
        vm.expectRevert(DisputeGame.NotParty.selector);
        _expand(chal2, xc);
        _expand(chal, xc);
        assertTrue(_phase() == DisputeGame.Phase.TraceBisect);
    }

    function test_expandRevertsBadCompact() public {
        (Side memory d,) = _openAtExpand();
        X memory x = _args(d);
        x.c.P = P + 1;
        vm.expectRevert(DisputeGame.BadCompact.selector);
        _expand(exec, x);
        x = _args(d);
        x.c.cTok = 0;
        vm.expectRevert(DisputeGame.BadCompact.selector);
        _expand(exec, x);
        x = _args(d);
        x.c.mapRoot = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.BadCompact.selector);
        _expand(exec, x);
    }

    /// @dev D committed 23 compact leaves (not a whole number of steps): it cannot expand.
    function test_expandRevertsBadLengthNotWholeSteps() public {
        Side memory d = _honest(exec);
        d.c.length = 23;
        bytes32[] memory cut = new bytes32[](23);
        for (uint256 k = 0; k < 23; ++k) {
            cut[k] = d.c.leaves[k];
        }
        d.c.leaves = cut;
        Side memory c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        assertEq(_leaf(), 23); // D's trace ends at 23: the TraceEnd case
        X memory x;
        x.fullRoot = d.f.root;
        x.c = _cmp();
        vm.expectRevert(DisputeGame.BadLength.selector);
        _expand(exec, x);
        // it cannot move, so it loses on its clock
        vm.warp(block.timestamp + CLOCK + 1);
        game.claimTimeout(gid);
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertFalse(dw);
    }

    /// @dev A compact length whose full length would exceed 2^32 leaves (3·2^30 → 6·2^30).
    function test_expandRevertsBadLengthTooLong() public {
        bytes32 root = keccak256("some compact root");
        uint64 len = 3 << 30;
        vm.prank(requester);
        jobId = market.postJob{value: REWARD}(_request(), _input());
        _commit(exec, jobId, w.tokens(), root, len);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, root, len, 1);
        assertTrue(_phase() == DisputeGame.Phase.Expand);
        X memory x;
        x.c = _cmp();
        vm.expectRevert(DisputeGame.BadLength.selector);
        _expand(exec, x);
    }

    function test_expandRevertsRootMismatch() public {
        (Side memory d, Side memory c) = _openAtExpand();
        X memory x = _args(d);
        x.opHash = w.op(15); // the honest op/output: not D's compact leaf 7
        x.outputRoot = c.outs[15];
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        _expand(exec, x);
        x = _args(d);
        x.outputRoot = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        _expand(exec, x);
    }

    function test_expandRevertsBadProof() public {
        (Side memory d,) = _openAtExpand();
        X memory x = _args(d);
        x.op = 5; // compact_ops[1] is 3, not 5
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        x = _args(d);
        x.mapProof[0] = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        x = _args(d);
        x.mapProof = new bytes32[](1); // wrong depth
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        x = _args(d);
        x.op = P + 3; // past the step's ops
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        x = _args(d);
        x.leafProof[0] = bytes32(uint256(1));
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        x = _args(d);
        x.fullRoot = Merkle.rootOf(_honest(chal).f.leaves); // the honest full trace: no D's leaf 7
        assertNotEq(x.fullRoot, d.f.root);
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        _expand(exec, _args(d));
        assertEq(_at(gid).turn, 1);
    }

    /// @dev A defender whose compact root lies at leaf 7 while its full trace is honest can give
    ///      neither its own compact leaf's full leaf nor the honest one: it loses on its clock.
    function test_wrongCompactHonestFullCannotExpand() public {
        Side memory d = _honest(exec);
        d.c.leaves[7] = Commitments.traceLeaf(7, keccak256("bad op"), keccak256("bad out"));
        Side memory c = _honest(chal);
        _open(d, c);
        _advanceTo(d, c, DisputeGame.Phase.Expand, 0);
        assertEq(_leaf(), 7);
        X memory x = _args(d); // the honest full leaf's op and output
        vm.expectRevert(DisputeGame.RootMismatch.selector);
        _expand(exec, x);
        x.opHash = keccak256("bad op");
        x.outputRoot = keccak256("bad out");
        vm.expectRevert(DisputeGame.BadProof.selector);
        _expand(exec, x);
        vm.warp(block.timestamp + CLOCK + 1);
        game.claimTimeout(gid);
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertFalse(dw);
    }

    // ---- clocks ----

    function _timeout(uint8 turn) internal {
        (,,,,, uint256 deadline) = game.pending(gid);
        vm.warp(deadline);
        vm.expectRevert(DisputeGame.ClockRunning.selector);
        game.claimTimeout(gid);
        vm.warp(deadline + 1);
        game.claimTimeout(gid);
        (, DisputeGame.Phase phase,,,,,, bool dw) = game.gameInfo(gid);
        assertTrue(phase == DisputeGame.Phase.Resolved);
        assertEq(dw, turn == 1, "the silent side must lose");
    }

    function test_timeoutExpandDefender() public {
        _openAtExpand();
        _timeout(0);
    }

    function test_timeoutExpandChallenger() public {
        (Side memory d, Side memory c) = _openAtExpand();
        _advanceTo(d, c, DisputeGame.Phase.Expand, 1);
        _timeout(1);
    }

    function test_timeoutOutputExpandDefender() public {
        _openGame(_honest(exec), _honest(chal), w.tokens(), 1);
        _timeout(0);
    }

    function test_expandChargesTheMoversClock() public {
        (Side memory d, Side memory c) = _openAtExpand();
        (,,, uint64 before,) = game.partyInfo(gid, 0);
        vm.warp(block.timestamp + 300);
        _expand(exec, _args(d));
        (,,, uint64 clockD,) = game.partyInfo(gid, 0);
        assertEq(clockD, before - 300);
        vm.warp(block.timestamp + 100);
        _expand(chal, _args(c));
        (,,, uint64 clockC,) = game.partyInfo(gid, 1);
        assertEq(clockC, CLOCK - 100); // the driver's earlier moves took no time
        vm.warp(block.timestamp + CLOCK);
        vm.prank(exec);
        vm.expectRevert(DisputeGame.ClockExpired.selector);
        game.reveal(gid, new bytes32[](16));
    }

    // ---- full-trace games never expand ----

    function test_fullTraceGameNeverExpands() public {
        AlphabetWorld.World memory fw = _world(11, 40, 600);
        bytes32[] memory honest = _honestLeaves(fw);
        Player memory d = _player(exec, fw, honest, Lie(LieKind.Element, 17, 300, 7));
        Player memory c = _player(chal, fw, honest, Lie(LieKind.None, 0, 0, 0));
        _trees(d, c);
        jobId = _post(1); // MODEL: compactRootOf = 0
        _commit(exec, jobId, fw.tokens(), d.root, d.length);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, c.root, c.length, 0);
        (bytes32 r, bool expanded, uint64 li,) = game.compactInfo(gid);
        assertEq(r, bytes32(0));
        Level2 memory l2;
        uint256 moves;
        for (; moves < 64; ++moves) {
            At memory a = _at(gid);
            assertTrue(a.phase != DisputeGame.Phase.Expand, "a full-trace game entered Expand");
            if (a.phase == DisputeGame.Phase.Resolved) break;
            if (a.phase == DisputeGame.Phase.LeafOpen) {
                X memory x;
                vm.prank(exec);
                vm.expectRevert(abi.encodeWithSelector(DisputeGame.WrongPhase.selector, DisputeGame.Phase.Expand, DisputeGame.Phase.LeafOpen));
                game.expand(gid, d.root, _cmp(), bytes32(0), bytes32(0), 0, x.mapProof, x.compactProof, x.leafProof);
            }
            _move(gid, a, fw, d, c, l2);
        }
        assertGt(moves, 5);
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertFalse(dw);
        (r, expanded, li,) = game.compactInfo(gid);
        assertEq(r, bytes32(0));
        assertFalse(expanded);
        assertEq(li, 0);
        assertEq(game.stepContext(gid).traceRoot, d.root);
    }

    function test_fullOutputGameSkipsExpand() public {
        AlphabetWorld.World memory fw = _world(11, 40, 8);
        bytes32 root = keccak256("agreed full root");
        jobId = _post(1);
        uint32[] memory toks = fw.tokens();
        toks[2] ^= 1;
        _commit(exec, jobId, toks, root, 40);
        vm.prank(chal);
        gid = market.challenge{value: BOND}(jobId, 0, root, 40, 2);
        assertTrue(_phase() == DisputeGame.Phase.Proof);
        (IOneStepVerifier.Claim kind,,,,,) = game.pending(gid);
        assertTrue(kind == IOneStepVerifier.Claim.OutputToken);
        game.resolve(gid, "");
        (,,,,,,, bool dw) = game.gameInfo(gid);
        assertFalse(dw);
    }

    function test_phaseNumbersUnchanged() public pure {
        assertEq(uint256(DisputeGame.Phase.Resolved), 8);
        assertEq(uint256(DisputeGame.Phase.LinkPick), 9);
        assertEq(uint256(DisputeGame.Phase.Expand), 10);
    }
}
