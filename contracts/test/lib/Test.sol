// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice The subset of Foundry's cheatcodes our tests use. forge-std is not available from
///         the package registries this project may use (see docs/decisions/0001-toolchain.md),
///         so this file declares the cheatcode interface directly; forge implements it at the
///         fixed address below.
interface Vm {
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function deal(address who, uint256 newBalance) external;
    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit() external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function assume(bool condition) external pure;
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function label(address account, string calldata newLabel) external;
    function readFile(string calldata path) external view returns (string memory);
    function parseJson(string calldata json, string calldata key) external pure returns (bytes memory);
    function parseJsonBytes(string calldata json, string calldata key) external pure returns (bytes memory);
    function parseJsonBytes32(string calldata json, string calldata key) external pure returns (bytes32);
    function parseJsonBytes32Array(string calldata json, string calldata key)
        external
        pure
        returns (bytes32[] memory);
    function parseJsonUint(string calldata json, string calldata key) external pure returns (uint256);
    function parseJsonUintArray(string calldata json, string calldata key) external pure returns (uint256[] memory);
    function parseJsonString(string calldata json, string calldata key) external pure returns (string memory);
    function toString(uint256 value) external pure returns (string memory);
    function snapshotState() external returns (uint256);
    function revertToState(uint256 snapshotId) external returns (bool);
    function getBlockTimestamp() external view returns (uint256);
    function txGasPrice(uint256 newGasPrice) external;
    function pauseGasMetering() external;
    function resumeGasMetering() external;
}

/// @notice Minimal test base: assertions plus the invariant-target hooks forge looks up by name.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    address[] private _targetSenders;
    address[] private _excludeContracts;
    FuzzSelector[] private _targetSelectors;

    bool public IS_TEST = true;

    error AssertionFailed(string message);

    // ---- invariant configuration (forge calls these view functions by name) ----

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    function excludeContract(address target) internal {
        _excludeContracts.push(target);
    }

    function targetSelector(FuzzSelector memory sel) internal {
        _targetSelectors.push(sel);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }

    function excludeContracts() public view returns (address[] memory) {
        return _excludeContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    // ---- assertions ----

    function fail(string memory message) internal pure {
        revert AssertionFailed(message);
    }

    function assertTrue(bool c) internal pure {
        if (!c) fail("assertTrue");
    }

    function assertTrue(bool c, string memory m) internal pure {
        if (!c) fail(m);
    }

    function assertFalse(bool c) internal pure {
        if (c) fail("assertFalse");
    }

    function assertFalse(bool c, string memory m) internal pure {
        if (c) fail(m);
    }

    function assertEq(uint256 a, uint256 b) internal pure {
        if (a != b) fail(string.concat("assertEq(uint) ", _u(a), " != ", _u(b)));
    }

    function assertEq(uint256 a, uint256 b, string memory m) internal pure {
        if (a != b) fail(string.concat(m, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(int256 a, int256 b) internal pure {
        if (a != b) fail("assertEq(int)");
    }

    function assertEq(address a, address b) internal pure {
        if (a != b) fail("assertEq(address)");
    }

    function assertEq(address a, address b, string memory m) internal pure {
        if (a != b) fail(m);
    }

    function assertEq(bytes32 a, bytes32 b) internal pure {
        if (a != b) fail("assertEq(bytes32)");
    }

    function assertEq(bytes32 a, bytes32 b, string memory m) internal pure {
        if (a != b) fail(m);
    }

    function assertEq(bool a, bool b) internal pure {
        if (a != b) fail("assertEq(bool)");
    }

    function assertEq(bool a, bool b, string memory m) internal pure {
        if (a != b) fail(m);
    }

    function assertEq(bytes memory a, bytes memory b) internal pure {
        if (keccak256(a) != keccak256(b)) fail("assertEq(bytes)");
    }

    function assertEq(string memory a, string memory b) internal pure {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) fail(string.concat("assertEq(string) ", a, " != ", b));
    }

    function assertNotEq(bytes32 a, bytes32 b) internal pure {
        if (a == b) fail("assertNotEq(bytes32)");
    }

    function assertNotEq(uint256 a, uint256 b) internal pure {
        if (a == b) fail("assertNotEq(uint)");
    }

    function assertGt(uint256 a, uint256 b) internal pure {
        if (a <= b) fail(string.concat("assertGt ", _u(a), " <= ", _u(b)));
    }

    function assertGe(uint256 a, uint256 b) internal pure {
        if (a < b) fail(string.concat("assertGe ", _u(a), " < ", _u(b)));
    }

    function assertLt(uint256 a, uint256 b) internal pure {
        if (a >= b) fail(string.concat("assertLt ", _u(a), " >= ", _u(b)));
    }

    function assertLe(uint256 a, uint256 b) internal pure {
        if (a > b) fail(string.concat("assertLe ", _u(a), " > ", _u(b)));
    }

    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 size = hi - lo + 1;
        if (size == 0) return x; // full range
        return lo + (x % size);
    }

    function _u(uint256 v) private pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory buf = new bytes(78);
        uint256 i = 78;
        while (v != 0) {
            buf[--i] = bytes1(uint8(48 + (v % 10)));
            v /= 10;
        }
        bytes memory out = new bytes(78 - i);
        for (uint256 j = 0; j < out.length; j++) {
            out[j] = buf[i + j];
        }
        return string(out);
    }
}
