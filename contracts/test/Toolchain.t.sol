// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./lib/Test.sol";

/// @notice Proves the forge + solcjs-wrapper toolchain and the cheatcode interface work.
contract ToolchainTest is Test {
    function test_warpAndDeal() public {
        vm.warp(1000);
        assertEq(block.timestamp, 1000);
        vm.deal(address(0xBEEF), 5 ether);
        assertEq(address(0xBEEF).balance, 5 ether);
    }

    function test_readsCommitmentVectors() public view {
        string memory json = vm.readFile("tests/vectors/commitments.json");
        assertEq(vm.parseJsonUint(json, ".chunk_bytes"), 1024);
    }

    function testFuzz_bound(uint256 x) public pure {
        uint256 y = bound(x, 3, 9);
        assertTrue(y >= 3 && y <= 9);
    }
}
