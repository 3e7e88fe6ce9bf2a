// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {ModelRegistry} from "../../protocol/ModelRegistry.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {IJobResult} from "../../protocol/interfaces/IJobResult.sol";
import {AlphabetWorld, AlphabetVerifier} from "./Alphabet.sol";

/// @notice Drives the market with random jobs, commits, challenges, slot disputes, timeouts,
///         one-step resolutions, finalizations and withdrawals, keeping ghost totals of every
///         wei that went in and out.
contract MarketHandler is Test {
    using AlphabetWorld for AlphabetWorld.World;

    JobMarket internal market;
    DisputeGame internal game;
    AlphabetWorld.World internal w;
    address[5] internal actors = [address(0x1001), address(0x1002), address(0x1003), address(0x1004), address(0x1005)];

    uint256 public deposited;
    uint256 public withdrawn;
    uint256 public calls;
    mapping(address => uint256) public withdrawnBy;
    mapping(address => uint256) public creditedBy; // balanceOf increases observed

    constructor(JobMarket m, DisputeGame g, AlphabetWorld.World memory w_) {
        market = m;
        game = g;
        w = w_;
        for (uint256 k = 0; k < actors.length; ++k) {
            vm.deal(actors[k], 1e30);
        }
    }

    function actorCount() external pure returns (uint256) {
        return 5;
    }

    function actor(uint256 k) external view returns (address) {
        return actors[k];
    }

    function _a(uint256 s) internal view returns (address) {
        return actors[s % actors.length];
    }

    function _observe() internal {
        for (uint256 k = 0; k < actors.length; ++k) {
            uint256 b = market.balanceOf(actors[k]);
            uint256 seen = creditedBy[actors[k]] - withdrawnBy[actors[k]];
            if (b > seen) creditedBy[actors[k]] += b - seen;
        }
    }

    function _job(uint256 s) internal view returns (uint256) {
        uint256 n = market.jobCount();
        return n == 0 ? 0 : 1 + s % n;
    }

    function post(uint256 s, uint96 reward, uint96 bond, uint8 n) external {
        ++calls;
        JobMarket.JobRequest memory r;
        r.modelHash = keccak256("m");
        r.config.maxTokens = 16;
        r.config.topP = 0x3F800000;
        r.deadline = uint64(block.timestamp + 1 + s % 3 hours);
        r.challengeWindow = uint64(1 + s % 2 hours);
        r.bond = bound(bond, 0, 10 ether);
        r.nExecutors = uint8(bound(n, 1, 3));
        uint256 v = bound(reward, 1, 10 ether);
        vm.prank(_a(s));
        market.postJob{value: v}(r, hex"0000000100000002");
        deposited += v;
    }

    function commit(uint256 s, uint256 j, bool honestTokens, uint8 rootPick, uint8 len) external {
        ++calls;
        uint256 id = _job(j);
        if (id == 0) return;
        uint32[] memory t = w.tokens();
        if (!honestTokens) t[s % t.length] ^= 1;
        bytes32 root = keccak256(abi.encode(rootPick % 3));
        uint256 bond = market.jobOf(id).bond;
        vm.prank(_a(s));
        try market.commit{value: bond}(id, t, Commitments.tokensHash(t), root, uint64(1 + len % 40)) {
            deposited += bond;
        } catch {}
        _observe();
    }

    function challenge(uint256 s, uint256 j, uint8 rootPick, uint8 len, uint8 tokenIndex) external {
        ++calls;
        uint256 id = _job(j);
        if (id == 0) return;
        JobMarket.Job memory job = market.jobOf(id);
        if (job.nCommitted == 0) return;
        uint8 slot = uint8(s % job.nCommitted);
        uint256 bond = job.bond;
        vm.prank(_a(s >> 8));
        try market.challenge{value: bond}(id, slot, keccak256(abi.encode(rootPick % 4)), uint64(1 + len % 40), tokenIndex % 10) {
            deposited += bond;
        } catch {}
        _observe();
    }

    function disputeSlots(uint256 j, uint8 a, uint8 b) external {
        ++calls;
        uint256 id = _job(j);
        if (id == 0) return;
        try market.disputeSlots(id, a % 3, b % 3) {} catch {}
        _observe();
    }

    function resolve(uint256 g) external {
        ++calls;
        uint256 n = game.gameCount();
        if (n == 0) return;
        try game.resolve(1 + g % n, "") {} catch {}
        _observe();
    }

    function timeout(uint256 g) external {
        ++calls;
        uint256 n = game.gameCount();
        if (n == 0) return;
        try game.claimTimeout(1 + g % n) {} catch {}
        _observe();
    }

    function finalize(uint256 j) external {
        ++calls;
        uint256 id = _job(j);
        if (id == 0) return;
        try market.finalize(id) {} catch {}
        _observe();
    }

    function withdraw(uint256 s) external {
        ++calls;
        address who = _a(s);
        _observe();
        uint256 owed = market.balanceOf(who);
        uint256 before = who.balance;
        vm.prank(who);
        try market.withdraw() {
            require(who.balance == before + owed, "paid other than owed");
            require(market.balanceOf(who) == 0, "balance not zeroed");
            withdrawn += owed;
            withdrawnBy[who] += owed;
        } catch {
            require(owed == 0, "withdraw of a positive balance failed");
        }
    }

    function warp(uint32 dt) external {
        ++calls;
        vm.warp(block.timestamp + bound(dt, 1, 3 hours));
    }
}

/// @notice Solvency invariant (DESIGN §6 "Money"): the market's balance always equals what it
///         owes (escrow + credits) plus what it burned; every wei deposited is accounted for;
///         nobody is ever paid more than it was credited.
contract SolvencyInvariantTest is Test {
    JobMarket internal market;
    MarketHandler internal handler;

    function setUp() public {
        ModelRegistry registry = new ModelRegistry(address(this));
        registry.register(keccak256("m"), keccak256("p"), 1, 100, 64, "m", "u", bytes32(0));
        AlphabetVerifier verifier = new AlphabetVerifier();
        AlphabetWorld.World memory w = AlphabetWorld.World({seed: 1, length: 20, elems: 16, nTokens: 8});
        verifier.setWorld(w);
        DisputeGame game = new DisputeGame(verifier, 1 hours);
        market = new JobMarket(registry, game);
        game.setMarket(market);
        handler = new MarketHandler(market, game, w);
        targetContract(address(handler));
    }

    /// @dev One campaign of 500 runs x 200 calls = 10^5 calls checks all three properties.
    /// forge-config: default.invariant.runs = 500
    /// forge-config: default.invariant.depth = 200
    function invariant_solvency() public view {
        assertEq(address(market).balance, market.totalEscrow() + market.totalCredit() + market.totalBurned(), "balance");
        assertEq(handler.deposited(), handler.withdrawn() + address(market).balance, "deposits");
        uint256 credits;
        for (uint256 k = 0; k < handler.actorCount(); ++k) {
            address a = handler.actor(k);
            credits += market.balanceOf(a);
            assertLe(handler.withdrawnBy(a), handler.creditedBy(a));
        }
        assertEq(credits, market.totalCredit(), "credits");
    }
}
