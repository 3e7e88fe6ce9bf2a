// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ProtocolBase} from "./Base.sol";
import {PredictionMarket} from "../../examples/PredictionMarket.sol";
import {IJobResult} from "../../protocol/interfaces/IJobResult.sol";

contract GreedyBettor {
    PredictionMarket internal immutable pm;
    bool internal reenter;

    constructor(PredictionMarket pm_) {
        pm = pm_;
    }

    function bet(uint256 id, bool yes) external payable {
        pm.bet{value: msg.value}(id, yes);
    }

    function claim(uint256 id, bool again) external {
        reenter = again;
        pm.claim(id);
    }

    receive() external payable {
        if (reenter) pm.claim(1);
    }
}

/// @notice The example consumer settles from a finalized job and pays bettors (DESIGN §6
///         "Consumers").
contract PredictionMarketTest is ProtocolBase {
    PredictionMarket internal pm;
    uint32 internal constant YES = 14134;
    uint32 internal constant NO = 3160;

    function setUp() public override {
        super.setUp();
        pm = new PredictionMarket(market);
    }

    function _market(uint256 jobId) internal returns (uint256) {
        uint32[] memory y = new uint32[](2);
        y[0] = YES;
        y[1] = 9690;
        uint32[] memory n = new uint32[](1);
        n[0] = NO;
        return pm.createMarket(jobId, uint64(block.timestamp + 30 minutes), y, n);
    }

    function _answer(uint256 jobId, uint32 first, uint32 second) internal {
        uint32[] memory t = new uint32[](3);
        t[0] = 198; // a token in neither set comes first
        t[1] = first;
        t[2] = second;
        _commit(exec, jobId, t, keccak256("trace"), 100);
    }

    function test_settlesYesAndPaysWinners() public {
        uint256 jobId = _post(1);
        uint256 id = _market(jobId);
        vm.prank(exec2);
        pm.bet{value: 3 ether}(id, true);
        vm.prank(chal);
        pm.bet{value: 1 ether}(id, false);
        vm.prank(chal2);
        pm.bet{value: 1 ether}(id, true);
        _answer(jobId, YES, NO);
        vm.warp(block.timestamp + 31 minutes);
        vm.expectRevert(abi.encodeWithSelector(PredictionMarket.NotReady.selector, IJobResult.Status.Committed));
        pm.settle(id);
        vm.expectRevert(PredictionMarket.BettingClosed.selector);
        pm.bet{value: 1}(id, true);
        vm.warp(block.timestamp + WINDOW);
        market.finalize(jobId);
        pm.settle(id);
        (,, PredictionMarket.Outcome o, uint256 yp, uint256 np) = pm.marketOf(id);
        assertTrue(o == PredictionMarket.Outcome.Yes);
        assertEq(yp, 4 ether);
        assertEq(np, 1 ether);
        uint256 b = exec2.balance;
        vm.prank(exec2);
        pm.claim(id);
        assertEq(exec2.balance, b + 3.75 ether);
        vm.prank(chal2);
        pm.claim(id);
        vm.prank(chal);
        vm.expectRevert(PredictionMarket.NothingToClaim.selector);
        pm.claim(id);
        vm.prank(exec2);
        vm.expectRevert(PredictionMarket.NothingToClaim.selector);
        pm.claim(id);
        assertEq(address(pm).balance, 0);
        vm.expectRevert(PredictionMarket.AlreadySettled.selector);
        pm.settle(id);
    }

    function test_noAnswerIsInvalidAndRefunds() public {
        uint256 jobId = _post(1);
        uint256 id = _market(jobId);
        vm.prank(chal);
        pm.bet{value: 1 ether}(id, false);
        vm.expectRevert(PredictionMarket.BettingOpen.selector);
        pm.settle(id);
        vm.expectRevert(PredictionMarket.NotSettled.selector);
        pm.claim(id);
        _answer(jobId, 1, 2);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        pm.settle(id);
        (,, PredictionMarket.Outcome o,,) = pm.marketOf(id);
        assertTrue(o == PredictionMarket.Outcome.Invalid);
        uint256 b = chal.balance;
        vm.prank(chal);
        pm.claim(id);
        assertEq(chal.balance, b + 1 ether);
    }

    function test_failedJobIsInvalid() public {
        uint256 jobId = _post(1);
        uint256 id = _market(jobId);
        vm.warp(block.timestamp + 2 hours);
        market.finalize(jobId);
        pm.settle(id);
        (,, PredictionMarket.Outcome o,,) = pm.marketOf(id);
        assertTrue(o == PredictionMarket.Outcome.Invalid);
    }

    function test_winningSideEmptyIsInvalid() public {
        uint256 jobId = _post(1);
        uint256 id = _market(jobId);
        vm.prank(chal);
        pm.bet{value: 1 ether}(id, false);
        _answer(jobId, 9690, 0);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        pm.settle(id);
        (,, PredictionMarket.Outcome o,,) = pm.marketOf(id);
        assertTrue(o == PredictionMarket.Outcome.Invalid);
    }

    function test_createReverts() public {
        uint32[] memory one = new uint32[](1);
        vm.expectRevert(PredictionMarket.BadMarket.selector);
        pm.createMarket(5, 0, one, one); // no such job
        uint256 jobId = _post(1);
        vm.expectRevert(PredictionMarket.BadMarket.selector);
        pm.createMarket(jobId, 0, new uint32[](0), one);
        vm.expectRevert(PredictionMarket.BadMarket.selector);
        pm.createMarket(jobId, 0, new uint32[](9), one);
        vm.expectRevert(PredictionMarket.BadMarket.selector);
        pm.bet{value: 1}(7, true);
        uint256 id = _market(jobId);
        vm.expectRevert(PredictionMarket.BadMarket.selector);
        pm.bet{value: 0}(id, true);
    }

    function test_claimReentrancyBlocked() public {
        uint256 jobId = _post(1);
        uint256 id = _market(jobId);
        GreedyBettor g = new GreedyBettor(pm);
        vm.deal(address(g), 5 ether);
        g.bet{value: 1 ether}(id, true);
        vm.prank(chal);
        pm.bet{value: 1 ether}(id, false);
        _answer(jobId, YES, 0);
        vm.warp(block.timestamp + WINDOW + 1);
        market.finalize(jobId);
        pm.settle(id);
        vm.expectRevert(PredictionMarket.TransferFailed.selector);
        g.claim(id, true);
        g.claim(id, false);
        assertEq(address(pm).balance, 0);
    }

    function testFuzz_answerOf(uint32 a, uint32 b) public view {
        uint32[] memory t = new uint32[](2);
        t[0] = a;
        t[1] = b;
        uint32[] memory y = new uint32[](1);
        y[0] = YES;
        uint32[] memory n = new uint32[](1);
        n[0] = NO;
        PredictionMarket.Outcome o = pm.answerOf(t, y, n);
        if (a == YES || (a != NO && b == YES)) assertTrue(o == PredictionMarket.Outcome.Yes);
        else if (a == NO || b == NO) assertTrue(o == PredictionMarket.Outcome.No);
        else assertTrue(o == PredictionMarket.Outcome.Invalid);
    }
}
