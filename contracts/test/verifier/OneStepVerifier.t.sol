// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";
import {OneStepVerifier} from "../../verifier/OneStepVerifier.sol";
import {TraceOps} from "../../verifier/TraceOps.sol";

/// @notice Unit tests of the verifier's refusals and of TraceOps helpers. The op semantics are
///         tested differentially against the Python mirror (tests/referee/test_onestep_diff.py).
contract OneStepVerifierTest is Test {
    OneStepVerifier internal v;

    function setUp() public {
        v = new OneStepVerifier();
    }

    function _ctx(bytes32 programRoot) internal pure returns (IOneStepVerifier.StepContext memory c) {
        c.programRoot = programRoot;
    }

    function _witness(uint32 nOps, bytes32 opsRoot, bytes memory record) internal pure returns (bytes memory) {
        OneStepVerifier.Tensor[] memory none = new OneStepVerifier.Tensor[](0);
        OneStepVerifier.Witness memory w = OneStepVerifier.Witness({
            nOps: nOps,
            tokenOp: 0,
            eos: type(uint32).max,
            opsRoot: opsRoot,
            record: record,
            opProof: new bytes32[](0),
            job: "",
            config: "",
            inputs: none
        });
        return abi.encode(w);
    }

    function _root(uint32 nOps, bytes32 opsRoot) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x04), nOps, uint32(0), type(uint32).max, opsRoot));
    }

    function testChainLengthZeroForOtherOps() public view {
        bytes memory rec = hex"0101010000000000000000000000000000000000000000000000000000000000"; // TOKENS
        bytes32 h = keccak256(rec);
        bytes memory w = _witness(1, h, rec);
        IOneStepVerifier.StepContext memory c = _ctx(_root(1, h));
        c.inputHash = keccak256("");
        c.opHash = h;
        require(v.chainLength(c, w) == 0, "not a DOT: no chain");
        c.opHash = keccak256("other");
        require(v.chainLength(c, w) == 0, "foreign op: no chain");
    }

    function testChainLengthChecksTheWitness() public {
        bytes memory rec = hex"0101010000000000000000000000000000000000000000000000000000000000";
        bytes memory w = _witness(1, keccak256(rec), rec);
        vm.expectRevert(OneStepVerifier.BadProgram.selector);
        v.chainLength(_ctx(bytes32(uint256(1))), w);
        bytes32 root = keccak256("not the op");
        vm.expectRevert(OneStepVerifier.BadOpProof.selector);
        v.chainLength(_ctx(_root(1, root)), _witness(1, root, rec));
    }

    function testGarbageWitnessReverts() public {
        vm.expectRevert();
        v.verify(IOneStepVerifier.Claim.Element, _ctx(bytes32(uint256(1))), hex"1234");
    }

    function testWrongProgramRootReverts() public {
        bytes memory w = _witness(1, keccak256("rec"), "rec");
        vm.expectRevert(OneStepVerifier.BadProgram.selector);
        v.verify(IOneStepVerifier.Claim.OpHash, _ctx(bytes32(uint256(1))), w);
    }

    function testOpHashClaimBothWays() public view {
        bytes memory rec = hex"0101010000000000000000000000000000000000000000000000000000000000";
        bytes32 h = keccak256(rec);
        bytes memory w = _witness(1, h, rec); // one-op program: the root is the op hash (C3)
        IOneStepVerifier.StepContext memory c = _ctx(_root(1, h));
        c.opHash = h;
        require(v.verify(IOneStepVerifier.Claim.OpHash, c, w), "program op accepted");
        c.opHash = keccak256("other");
        require(!v.verify(IOneStepVerifier.Claim.OpHash, c, w), "foreign op rejected");
    }

    function testForgedOpProofReverts() public {
        bytes memory rec = hex"0101010000000000000000000000000000000000000000000000000000000000";
        bytes32 root = keccak256("not the op");
        bytes memory w = _witness(1, root, rec);
        vm.expectRevert(OneStepVerifier.BadOpProof.selector);
        v.verify(IOneStepVerifier.Claim.OpHash, _ctx(_root(1, root)), w);
    }

    function testFuzzDimValue(int64 c0, int32 cs, int32 cp, uint16 seq, uint16 past) public pure {
        uint256 w = (uint256(uint64(c0)) << 128) | (uint256(uint64(int64(cs))) << 64) | uint256(uint64(int64(cp)));
        int256 want = int256(c0) + int256(cs) * int256(uint256(seq)) + int256(cp) * int256(uint256(past));
        vm.assume(want >= 0);
        TraceOps.Env memory env;
        env.seq = seq;
        env.past = past;
        require(TraceOps.dimValue(w, env) == uint256(want), "affine dim");
    }

    function testBroadcastIndex() public pure {
        uint256[] memory out = new uint256[](3);
        out[0] = 2;
        out[1] = 3;
        out[2] = 4;
        uint256[] memory row = new uint256[](1);
        row[0] = 4;
        uint256[] memory col = new uint256[](2);
        col[0] = 3;
        col[1] = 1;
        for (uint256 e = 0; e < 24; ++e) {
            require(TraceOps.bindex(e, out, row) == e % 4, "row broadcast");
            require(TraceOps.bindex(e, out, col) == (e / 4) % 3, "column broadcast");
            require(TraceOps.bindex(e, out, out) == e, "identity");
        }
    }
}
