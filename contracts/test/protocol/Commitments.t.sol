// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {Commitments} from "../../lib/Commitments.sol";

/// @dev External wrappers so reverts of the internal library functions can be expected.
contract CommitmentsHarness {
    function parseHeader(bytes memory h) external pure returns (Commitments.Shape memory) {
        return Commitments.parseHeader(h);
    }

    function rootOfLevel(bytes32[] memory nodes) external pure returns (bytes32) {
        return Merkle.rootOfLevel(nodes);
    }

    function lift(bytes32 root, uint256 fromDepth, uint256 toDepth) external pure returns (bytes32) {
        return Merkle.lift(root, fromDepth, toDepth);
    }
}

/// @notice contracts/lib against the published vectors of docs/commitments.md
///         (tests/vectors/commitments.json, written by repops/commit.py) and C3 properties.
contract CommitmentsTest is Test {
    string internal json;
    CommitmentsHarness internal h;

    function setUp() public {
        json = vm.readFile("tests/vectors/commitments.json");
        h = new CommitmentsHarness();
    }

    function _key(uint256 t, string memory field) internal view returns (string memory) {
        return string.concat(".tensors[", vm.toString(t), "].", field);
    }

    function _dtype(string memory name) internal pure returns (uint8) {
        bytes32 k = keccak256(bytes(name));
        if (k == keccak256("float32")) return 1;
        if (k == keccak256("int32")) return 2;
        if (k == keccak256("int64")) return 3;
        if (k == keccak256("uint8")) return 4;
        revert("unknown dtype");
    }

    function _unhex(string memory s) internal pure returns (bytes memory out) {
        bytes memory b = bytes(s);
        out = new bytes(b.length / 2);
        for (uint256 i = 0; i < out.length; ++i) {
            out[i] = bytes1(_nib(b[2 * i]) * 16 + _nib(b[2 * i + 1]));
        }
    }

    function _nib(bytes1 c) internal pure returns (uint8) {
        uint8 x = uint8(c);
        if (x >= 48 && x <= 57) return x - 48;
        if (x >= 97 && x <= 102) return x - 87;
        revert("bad hex");
    }

    /// @notice C2 chunks, C3 leaves and root, C4 header and tensor root for every vector.
    function test_tensorVectors() public view {
        for (uint256 t = 0; t < 10; ++t) {
            bytes memory data = _unhex(vm.parseJsonString(json, _key(t, "data_hex")));
            uint256[] memory shape = vm.parseJsonUintArray(json, _key(t, "shape"));
            bytes32[] memory want = vm.parseJsonBytes32Array(json, _key(t, "chunk_leaves"));
            uint32[] memory dims = new uint32[](shape.length);
            for (uint256 k = 0; k < shape.length; ++k) {
                dims[k] = uint32(shape[k]);
            }
            bytes memory hdr = Commitments.header(_dtype(vm.parseJsonString(json, _key(t, "dtype"))), dims);
            Commitments.Shape memory s = Commitments.parseHeader(hdr);
            assertEq(s.byteLength, data.length, "byte length");
            assertEq(s.nChunks, want.length, "chunk count");
            bytes32[] memory leaves = new bytes32[](s.nChunks);
            for (uint256 c = 0; c < s.nChunks; ++c) {
                uint256 len = Commitments.chunkLength(data.length, c);
                bytes memory chunk = new bytes(len);
                for (uint256 k = 0; k < len; ++k) {
                    chunk[k] = data[c * 1024 + k];
                }
                leaves[c] = Merkle.chunkLeaf(chunk);
                assertEq(leaves[c], want[c], "chunk leaf");
            }
            bytes32 dataRoot = Merkle.rootOf(leaves);
            assertEq(dataRoot, vm.parseJsonBytes32(json, _key(t, "data_root")), "data root");
            assertEq(Commitments.tensorRoot(hdr, dataRoot), vm.parseJsonBytes32(json, _key(t, "tensor_root")), "tensor root");
        }
    }

    /// @notice C5 trace leaves, proofs and root.
    function test_traceVectors() public view {
        bytes32[] memory ops = vm.parseJsonBytes32Array(json, ".trace.op_hashes");
        bytes32[] memory outs = vm.parseJsonBytes32Array(json, ".trace.output_roots");
        bytes32[] memory want = vm.parseJsonBytes32Array(json, ".trace.leaves");
        bytes32 root = vm.parseJsonBytes32(json, ".trace.root");
        bytes32[] memory leaves = new bytes32[](ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            leaves[i] = Commitments.traceLeaf(uint32(i), ops[i], outs[i]);
            assertEq(leaves[i], want[i], "trace leaf");
        }
        assertEq(Merkle.rootOf(leaves), root, "trace root");
        uint256 depth = Merkle.depthOf(ops.length);
        for (uint256 i = 0; i < ops.length; ++i) {
            bytes32[] memory proof = vm.parseJsonBytes32Array(json, string.concat(".trace.proofs[", vm.toString(i), "]"));
            assertTrue(Merkle.verify(leaves[i], i, proof, root, depth), "proof");
            assertFalse(Merkle.verify(leaves[i], i ^ 1, proof, root, depth), "wrong index");
        }
    }

    /// @notice C6: uint32 big-endian per token.
    function test_tokenBytes() public pure {
        uint32[] memory t = new uint32[](2);
        t[0] = 1;
        t[1] = 0xA1B2C3D4;
        assertEq(Commitments.tokenBytes(t), hex"00000001a1b2c3d4");
        assertEq(Commitments.tokensHash(t), keccak256(hex"00000001a1b2c3d4"));
        assertEq(Commitments.tokensHash(new uint32[](0)), keccak256(""));
    }

    function test_elementBitsLittleEndian() public pure {
        bytes memory c = hex"0000803f01020304";
        assertEq(Commitments.elementBits(c, 0, 4), 0x3f800000);
        assertEq(Commitments.elementBits(c, 1, 4), 0x04030201);
        assertEq(Commitments.elementBits(c, 0, 8), 0x040302013f800000);
        assertEq(Commitments.elementBits(c, 5, 1), 0x02);
    }

    function test_headerRejects() public {
        vm.expectRevert(Commitments.BadHeader.selector);
        h.parseHeader(hex"0301010000");
        vm.expectRevert(Commitments.BadHeader.selector);
        h.parseHeader(hex"02010200000001");
        vm.expectRevert(abi.encodeWithSelector(Commitments.UnknownDtype.selector, uint8(9)));
        h.parseHeader(hex"02090100000001");
        vm.expectRevert(Commitments.BadHeader.selector);
        h.parseHeader(hex"0201");
        // 2^32-1 cubed overflows the uint64 element bound
        vm.expectRevert(Commitments.BadHeader.selector);
        h.parseHeader(hex"020103ffffffffffffffffffffffff");
    }

    function test_rootOfLevelRejectsNonPowerOfTwo() public {
        vm.expectRevert(abi.encodeWithSelector(Merkle.BadWidth.selector, uint256(3)));
        h.rootOfLevel(new bytes32[](3));
        vm.expectRevert(abi.encodeWithSelector(Merkle.DepthTooLarge.selector, uint256(65)));
        h.lift(bytes32(0), 0, 65);
    }

    /// @notice Lifting a root equals the root of the same leaves padded further with ZERO.
    function testFuzz_liftMatchesPadding(bytes32 seed, uint8 n, uint8 extra) public pure {
        uint256 len = bound(n, 1, 100);
        bytes32[] memory leaves = new bytes32[](len);
        for (uint256 i = 0; i < len; ++i) {
            leaves[i] = keccak256(abi.encode(seed, i));
        }
        uint256 d = Merkle.depthOf(len);
        uint256 to = d + bound(extra, 0, 5);
        bytes32[] memory padded = new bytes32[](1 << to);
        for (uint256 i = 0; i < len; ++i) {
            padded[i] = leaves[i];
        }
        assertEq(Merkle.lift(Merkle.rootOf(leaves), d, to), Merkle.rootOfLevel(padded));
    }

    /// @notice Proofs built from the tree verify for every leaf; a changed leaf does not.
    function testFuzz_proofs(bytes32 seed, uint8 n, uint8 pick) public pure {
        uint256 len = bound(n, 1, 64);
        bytes32[] memory leaves = new bytes32[](len);
        for (uint256 i = 0; i < len; ++i) {
            leaves[i] = keccak256(abi.encode(seed, i));
        }
        bytes32 root = Merkle.rootOf(leaves);
        uint256 d = Merkle.depthOf(len);
        uint256 idx = pick % len;
        bytes32[] memory level = new bytes32[](1 << d);
        for (uint256 i = 0; i < len; ++i) {
            level[i] = leaves[i];
        }
        bytes32[] memory proof = new bytes32[](d);
        uint256 k = idx;
        for (uint256 j = 0; j < d; ++j) {
            proof[j] = level[k ^ 1];
            bytes32[] memory up = new bytes32[](level.length / 2);
            for (uint256 m = 0; m < up.length; ++m) {
                up[m] = Merkle.node(level[2 * m], level[2 * m + 1]);
            }
            level = up;
            k >>= 1;
        }
        assertTrue(Merkle.verify(leaves[idx], idx, proof, root, d));
        assertFalse(Merkle.verify(~leaves[idx], idx, proof, root, d));
    }
}
