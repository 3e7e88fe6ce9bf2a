// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {ModelRegistry} from "../../protocol/ModelRegistry.sol";
import {IJobResult} from "../../protocol/interfaces/IJobResult.sol";
import {IModelRegistry} from "../../protocol/interfaces/IModelRegistry.sol";
import {AlphabetWorld} from "./Alphabet.sol";

/// @notice Receives payouts and tries to re-enter the market while being paid.
contract Reenterer {
    JobMarket internal immutable m;
    uint8 public mode; // 0: accept, 1: re-enter withdraw, 2: re-enter finalize

    constructor(JobMarket m_) {
        m = m_;
    }

    function setMode(uint8 x) external {
        mode = x;
    }

    function post(JobMarket.JobRequest calldata r) external payable returns (uint256) {
        return m.postJob{value: msg.value}(r, hex"00000001");
    }

    function withdraw() external {
        m.withdraw();
    }

    receive() external payable {
        if (mode == 1) m.withdraw();
        if (mode == 2) m.finalize(1);
    }
}

/// @notice Unit tests of every JobMarket function and revert path, the money rules and the
///         registry (DESIGN §6 "Registry", "Jobs", "Commit", "Money").
contract JobMarketTest is ProtocolBase {
    using AlphabetWorld for AlphabetWorld.World;

    uint32[] internal toks;
    bytes32 internal constant ROOT = keccak256("root");

    function setUp() public override {
        super.setUp();
        toks.push(11);
        toks.push(22);
    }

    // ---- registry ----

    function test_registry() public {
        assertTrue(registry.isRegistered(MODEL));
        assertEq(registry.programRootOf(MODEL), PROGRAM);
        IModelRegistry.Model memory m = registry.modelOf(MODEL);
        assertEq(m.name, "SmolLM2-135M-Instruct");
        assertEq(m.specVersion, 1);
        assertEq(m.vocabSize, VOCAB);
        assertEq(m.maxContext, MAX_CTX);
        (bytes32 root, uint32 vocab, uint32 ctx) = registry.termsOf(MODEL);
        assertEq(root, PROGRAM);
        assertEq(vocab, VOCAB);
        assertEq(ctx, MAX_CTX);
        (root, vocab, ctx) = registry.termsOf(bytes32(uint256(1))); // unknown: zeros, no revert
        assertEq(root, bytes32(0));
        assertEq(uint256(vocab) + ctx, 0);
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.AlreadyRegistered.selector, MODEL));
        registry.register(MODEL, PROGRAM, 1, VOCAB, MAX_CTX, "x", "y", bytes32(0));
        vm.expectRevert(ModelRegistry.ZeroValue.selector);
        registry.register(bytes32(uint256(1)), bytes32(0), 1, VOCAB, MAX_CTX, "x", "y", bytes32(0));
        vm.prank(exec);
        vm.expectRevert(ModelRegistry.NotCurator.selector);
        registry.register(bytes32(uint256(1)), PROGRAM, 1, VOCAB, MAX_CTX, "x", "y", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.UnknownModel.selector, bytes32(uint256(1))));
        registry.programRootOf(bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.UnknownModel.selector, bytes32(uint256(1))));
        registry.modelOf(bytes32(uint256(1)));
        vm.expectRevert(ModelRegistry.ZeroValue.selector);
        new ModelRegistry(address(0));
    }

    function test_registryLimits() public {
        bytes32 h = bytes32(uint256(7));
        uint32 maxCtx = registry.MAX_CONTEXT();
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.BadLimits.selector, uint32(0), MAX_CTX));
        registry.register(h, PROGRAM, 1, 0, MAX_CTX, "x", "y", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.BadLimits.selector, VOCAB, uint32(1)));
        registry.register(h, PROGRAM, 1, VOCAB, 1, "x", "y", bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(ModelRegistry.BadLimits.selector, VOCAB, maxCtx + 1));
        registry.register(h, PROGRAM, 1, VOCAB, maxCtx + 1, "x", "y", bytes32(0));
        // the extremes are fine, and the event carries the limits
        vm.expectEmit();
        emit IModelRegistry.ModelRegistered(h, PROGRAM, 1, "x", "y", address(this), type(uint32).max, maxCtx, bytes32(0));
        registry.register(h, PROGRAM, 1, type(uint32).max, maxCtx, "x", "y", bytes32(0));
        registry.register(bytes32(uint256(8)), PROGRAM, 1, 1, 2, "x", "y", bytes32(0));
        (, uint32 vocab, uint32 ctx) = registry.termsOf(bytes32(uint256(8)));
        assertEq(vocab, 1);
        assertEq(ctx, 2);
    }

    function test_curatorHandover() public {
        vm.prank(exec);
        vm.expectRevert(ModelRegistry.NotCurator.selector);
        registry.proposeCurator(exec);
        registry.proposeCurator(exec);
        vm.prank(chal);
        vm.expectRevert(ModelRegistry.NotPendingCurator.selector);
        registry.acceptCurator();
        vm.prank(exec);
        registry.acceptCurator();
        assertEq(registry.curator(), exec);
        vm.expectRevert(ModelRegistry.NotCurator.selector);
        registry.register(bytes32(uint256(1)), PROGRAM, 1, VOCAB, MAX_CTX, "x", "y", bytes32(0));
        vm.prank(exec);
        registry.register(bytes32(uint256(1)), PROGRAM, 1, VOCAB, MAX_CTX, "x", "y", bytes32(0));
    }

    // ---- postJob ----

    function test_postJob() public {
        uint256 id = _post(1);
        JobMarket.Job memory j = market.jobOf(id);
        assertEq(j.requester, requester);
        assertEq(j.reward, REWARD);
        assertEq(j.programRoot, PROGRAM);
        assertEq(j.inputHash, keccak256(_input()));
        assertEq(j.configHash, keccak256(abi.encode(_request(1).config)));
        (IJobResult.Status st, bytes32 oh, uint32[] memory out) = market.resultOf(id);
        assertTrue(st == IJobResult.Status.Open);
        assertEq(oh, bytes32(0));
        assertEq(out.length, 0);
        assertEq(market.totalEscrow(), REWARD);
    }

    function test_postJobReverts() public {
        JobMarket.JobRequest memory r = _request(1);
        r.modelHash = bytes32(uint256(5));
        vm.expectRevert(abi.encodeWithSelector(JobMarket.UnknownModel.selector, bytes32(uint256(5))));
        market.postJob{value: 1}(r, "");
        r = _request(0);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.postJob{value: 1}(r, "");
        r = _request(17);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.postJob{value: 1}(r, "");
        r = _request(1);
        r.deadline = uint64(block.timestamp);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.postJob{value: 1}(r, "");
        r = _request(1);
        r.challengeWindow = 0;
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.postJob{value: 1}(r, "");
        r = _request(1);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.postJob{value: 0}(r, _input());
        // the refusals of jobs the program cannot run: JobRefusals.t.sol
    }

    // ---- commit ----

    function test_commitAndReverts() public {
        uint256 id = _post(1);
        vm.prank(exec);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongValue.selector, BOND, uint256(1)));
        market.commit{value: 1}(id, toks, Commitments.tokensHash(toks), ROOT, 10);
        vm.prank(exec);
        vm.expectRevert(JobMarket.OutputHashMismatch.selector);
        market.commit{value: BOND}(id, toks, bytes32(0), ROOT, 10);
        vm.prank(exec);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.commit{value: BOND}(id, toks, Commitments.tokensHash(toks), ROOT, 0);
        uint32[] memory many = new uint32[](65);
        vm.prank(exec);
        vm.expectRevert(JobMarket.TooManyTokens.selector);
        market.commit{value: BOND}(id, many, Commitments.tokensHash(many), ROOT, 10);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.NoSuchJob.selector, uint256(9)));
        market.commit{value: BOND}(9, toks, Commitments.tokensHash(toks), ROOT, 10);
        assertEq(_commit(exec, id, toks, ROOT, 10), 0);
        JobMarket.Commitment memory c = market.commitmentOf(id, 0);
        assertEq(c.executor, exec);
        assertEq(c.traceRoot, ROOT);
        assertEq(c.tokens.length, 2);
        vm.prank(exec2);
        vm.expectRevert(JobMarket.SlotsFull.selector);
        market.commit{value: BOND}(id, toks, Commitments.tokensHash(toks), ROOT, 10);
        assertEq(market.totalEscrow(), REWARD + BOND);
    }

    function test_commitTwiceAndDeadline() public {
        uint256 id = _post(2);
        _commit(exec, id, toks, ROOT, 10);
        vm.prank(exec);
        vm.expectRevert(JobMarket.AlreadyCommitted.selector);
        market.commit{value: BOND}(id, toks, Commitments.tokensHash(toks), ROOT, 10);
        vm.warp(block.timestamp + 2 hours);
        vm.prank(exec2);
        vm.expectRevert(JobMarket.DeadlinePassed.selector);
        market.commit{value: BOND}(id, toks, Commitments.tokensHash(toks), ROOT, 10);
    }

    // ---- finalize ----

    function test_unchallengedFinalizes() public {
        uint256 id = _post(1);
        _commit(exec, id, toks, ROOT, 10);
        vm.expectRevert(JobMarket.NotFinalizable.selector);
        market.finalize(id);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(id);
        (IJobResult.Status st, bytes32 oh, uint32[] memory out) = market.resultOf(id);
        assertTrue(st == IJobResult.Status.Finalized);
        assertEq(oh, Commitments.tokensHash(toks));
        assertEq(out.length, 2);
        assertEq(out[1], 22);
        assertEq(market.balanceOf(exec), BOND + REWARD);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongStatus.selector, IJobResult.Status.Committed, IJobResult.Status.Finalized));
        market.finalize(id);
        uint256 before = exec.balance;
        vm.prank(exec);
        market.withdraw();
        assertEq(exec.balance, before + BOND + REWARD);
        vm.prank(exec);
        vm.expectRevert(JobMarket.NothingToWithdraw.selector);
        market.withdraw();
        assertEq(address(market).balance, 0);
    }

    function test_noCommitFailsAndRefunds() public {
        uint256 id = _post(1);
        vm.expectRevert(JobMarket.NotFinalizable.selector);
        market.finalize(id);
        vm.warp(block.timestamp + 1 hours + 1);
        market.finalize(id);
        (IJobResult.Status st,,) = market.resultOf(id);
        assertTrue(st == IJobResult.Status.Failed);
        assertEq(market.balanceOf(requester), REWARD);
    }

    function test_partialCommitsFinalizeAfterDeadline() public {
        uint256 id = _post(3);
        _commit(exec, id, toks, ROOT, 10);
        _commit(exec2, id, toks, ROOT, 10);
        vm.warp(block.timestamp + WINDOW + 1); // window passed but the deadline too
        market.finalize(id);
        assertEq(market.balanceOf(exec), BOND + REWARD / 2);
        assertEq(market.balanceOf(exec2), BOND + REWARD / 2);
    }

    function test_rewardDustGoesToFirstSlot() public {
        JobMarket.JobRequest memory r = _request(3);
        vm.prank(requester);
        uint256 id = market.postJob{value: 10}(r, _input());
        _commit(exec, id, toks, ROOT, 10);
        _commit(exec2, id, toks, ROOT, 10);
        _commit(chal, id, toks, ROOT, 10);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(id);
        assertEq(market.balanceOf(exec), BOND + 4);
        assertEq(market.balanceOf(exec2), BOND + 3);
        assertEq(market.balanceOf(chal), BOND + 3);
    }

    function test_finalizeWaitsForGames() public {
        uint256 id = _post(1);
        _commit(exec, id, toks, ROOT, 10);
        vm.prank(chal);
        uint256 g = market.challenge{value: BOND}(id, 0, keccak256("other"), 10, 0);
        assertEq(g, 1);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.expectRevert(JobMarket.NotFinalizable.selector);
        market.finalize(id);
        // the executor never answers: its clock runs out and it loses
        game.claimTimeout(g);
        market.finalize(id);
        (IJobResult.Status st,,) = market.resultOf(id);
        assertTrue(st == IJobResult.Status.Failed);
        assertEq(market.balanceOf(chal), BOND + BOND * 9 / 10);
        assertEq(market.balanceOf(requester), REWARD);
        assertEq(market.totalBurned(), BOND / 10);
    }

    // ---- challenge and disputeSlots reverts ----

    function test_challengeReverts() public {
        uint256 id = _post(1);
        vm.prank(chal);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongStatus.selector, IJobResult.Status.Committed, IJobResult.Status.Open));
        market.challenge{value: BOND}(id, 0, ROOT, 10, 0);
        _commit(exec, id, toks, ROOT, 10);
        vm.prank(chal);
        vm.expectRevert(JobMarket.BadSlot.selector);
        market.challenge{value: BOND}(id, 1, ROOT, 10, 0);
        vm.prank(chal);
        vm.expectRevert(abi.encodeWithSelector(JobMarket.WrongValue.selector, BOND, uint256(0)));
        market.challenge(id, 0, ROOT, 10, 0);
        vm.prank(chal);
        vm.expectRevert(JobMarket.BadTokenIndex.selector);
        market.challenge{value: BOND}(id, 0, ROOT, 10, 3);
        vm.prank(chal);
        vm.expectRevert(JobMarket.BadRequest.selector);
        market.challenge{value: BOND}(id, 0, ROOT, 0, 0);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.prank(chal);
        vm.expectRevert(JobMarket.WindowClosed.selector);
        market.challenge{value: BOND}(id, 0, keccak256("x"), 10, 0);
    }

    function test_challengeEliminatedSlotReverts() public {
        uint256 id = _post(1);
        _commit(exec, id, toks, ROOT, 10);
        vm.prank(chal);
        uint256 g = market.challenge{value: BOND}(id, 0, keccak256("other"), 10, 0);
        vm.warp(block.timestamp + CLOCK + 1);
        game.claimTimeout(g);
        vm.prank(chal2);
        vm.expectRevert(JobMarket.BadSlot.selector);
        market.challenge{value: BOND}(id, 0, keccak256("other"), 10, 0);
    }

    function test_disputeSlotsReverts() public {
        uint256 id = _post(2);
        _commit(exec, id, toks, ROOT, 10);
        _commit(exec2, id, toks, ROOT, 10);
        vm.expectRevert(JobMarket.BadSlot.selector);
        market.disputeSlots(id, 1, 0);
        vm.expectRevert(JobMarket.SameClaim.selector);
        market.disputeSlots(id, 0, 1);
        // agreeing executors finalize and share
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(id);
        assertEq(market.balanceOf(exec), BOND + REWARD / 2);
    }

    function test_disputeSlotsOutputModeAndPairLock() public {
        AlphabetWorld.World memory w = _world(1, 20, 10);
        uint256 id = _post(2);
        uint32[] memory good = w.tokens();
        uint32[] memory bad = w.tokens();
        bad[3] ^= 1;
        _commit(exec, id, bad, ROOT, 20);
        _commit(exec2, id, good, ROOT, 20);
        uint256 g = market.disputeSlots(id, 0, 1);
        vm.expectRevert(JobMarket.PairInDispute.selector);
        market.disputeSlots(id, 0, 1);
        (, uint256 e, uint256 bits,,,) = game.pending(g);
        assertEq(e, 3);
        assertEq(bits, bad[3]);
        game.resolve(g, "");
        assertEq(market.pairInDispute(keccak256(abi.encode(id, uint8(0), uint8(1)))), false);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(id);
        (, bytes32 oh,) = market.resultOf(id);
        assertEq(oh, Commitments.tokensHash(good));
        assertEq(market.balanceOf(exec2), BOND + REWARD + BOND * 9 / 10);
    }

    function test_onGameResolvedOnlyGame() public {
        vm.expectRevert(JobMarket.NotGame.selector);
        market.onGameResolved(1, true);
    }

    // ---- reentrancy on payouts ----

    function test_reentrantWithdrawReverts() public {
        Reenterer r = new Reenterer(market);
        vm.deal(address(r), 10 ether);
        uint256 id = r.post{value: REWARD}(_request(1));
        vm.warp(block.timestamp + 1 hours + 1);
        market.finalize(id); // no commit: the reward is credited back to the requester contract
        assertEq(market.balanceOf(address(r)), REWARD);
        r.setMode(1);
        vm.expectRevert(JobMarket.TransferFailed.selector); // inner withdraw hit the guard
        r.withdraw();
        assertEq(market.balanceOf(address(r)), REWARD);
        r.setMode(2);
        vm.expectRevert(JobMarket.TransferFailed.selector);
        r.withdraw();
        r.setMode(0);
        uint256 before = address(r).balance;
        r.withdraw();
        assertEq(address(r).balance, before + REWARD);
        vm.expectRevert(JobMarket.NothingToWithdraw.selector);
        r.withdraw();
        assertEq(address(market).balance, 0);
    }
}
