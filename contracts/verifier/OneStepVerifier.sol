// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IOneStepVerifier} from "../protocol/interfaces/IOneStepVerifier.sol";
import {Merkle} from "../lib/Merkle.sol";
import {Commitments} from "../lib/Commitments.sol";
import {TraceOps} from "./TraceOps.sol";
import {SampleStep} from "./SampleStep.sol";

/// @title OneStepVerifier
/// @notice The bottom of the dispute game (DESIGN §6 "One-step"): re-executes one element of
///         one trace op from agreed data and says whether the defender's claim is right.
///         The op is not the executor's to choose: trace leaf i is op i mod P of the program
///         registered with the model, at step i div P, with shapes derived from the job input
///         length and the step (docs/trace-layout.md §L1–§L3, DESIGN §6 checklist 1). Every input
///         element is proven against a trace leaf left of i, a weight root inside the op record,
///         or the job input (checklist 3). The Python mirror is `referee/onestep.py`.
/// @dev Witness = abi.encode(Witness). A witness that fails any check reverts (never `false`):
///      a valid witness fixes the answer, so a caller can only help the party that is right.
contract OneStepVerifier is IOneStepVerifier {
    /// @notice An input tensor of the disputed op: its C4 header and data root, where it sits
    ///         in the trace (OP inputs: the leaf's op hash and its proof under the trace root)
    ///         and the chunks the computation reads (C2, each with its C3 proof).
    struct Tensor {
        bytes header;
        bytes32 dataRoot;
        bytes32 leafOpHash;
        bytes32[] leafProof;
        TraceOps.Chunk[] chunks;
    }

    /// @notice Everything a one-step reads (docs/trace-layout.md §L7).
    struct Witness {
        uint32 nOps;
        uint32 tokenOp;
        uint32 eos;
        bytes32 opsRoot;
        bytes record;
        bytes32[] opProof;
        bytes job;
        bytes config;
        Tensor[] inputs;
    }

    /// @notice The SAMPLE stages' one-step (§L5.10), created with this verifier (SampleStep: why).
    SampleStep public immutable sampler;

    uint8 internal constant SRC_OP = 1;
    uint8 internal constant SRC_WEIGHT = 2;
    uint8 internal constant SRC_JOB = 3;
    uint256 internal constant NO_TOKEN = type(uint256).max;

    error BadProgram();
    error BadOpProof();
    error BadJobInput();
    error BadConfig();
    error BadRecord();
    error BadInput(uint256 slot);
    error BadLeafProof(uint256 slot);
    error BadChunk(uint256 slot, uint256 chunk);
    error NotAgreed(uint256 leaf);
    /// @notice The `self` tensor of a SCAN/MERGE witness is not the defender's output.
    error BadSelf();
    /// @notice The disputed DOT element has `links` > 0 links (§L9): it is decided one link at a
    ///         time (DisputeGame.revealChain, pickLink), never whole.
    error ChainRequired(uint256 links);

    constructor() {
        sampler = new SampleStep();
    }

    /// @inheritdoc IOneStepVerifier
    /// @dev The same witness as `verify` (§L7), checked the same way (program, op proof, job
    ///      input, input headers and leaf proofs, exact tensor count); chunks may be absent.
    function chainLength(StepContext calldata ctx, bytes calldata witness) external pure returns (uint256) {
        Witness memory w = abi.decode(witness, (Witness));
        _checkProgram(w, ctx.programRoot);
        if (_programOp(w, ctx.leafIndex % w.nOps) != ctx.opHash) return 0;
        TraceOps.Env memory env = _env(w, ctx);
        (TraceOps.Op memory op, uint8[] memory kinds, uint256[] memory words) = _parse(w.record, env);
        if (op.code != TraceOps.DOT) return 0;
        TraceOps.In[] memory ins = _inputs(w, ctx, kinds, words, env.step);
        _self(w, ctx, op, ins.length);
        return TraceOps.dotLinks(op, ins, ctx.elementIndex, env);
    }

    /// @inheritdoc IOneStepVerifier
    function verify(Claim kind, StepContext calldata ctx, bytes calldata witness) external view returns (bool) {
        Witness memory w = abi.decode(witness, (Witness));
        _checkProgram(w, ctx.programRoot);
        if (kind == Claim.OutputToken) return _outputToken(w, ctx);
        if (kind == Claim.TraceEnd) return _traceEnd(w, ctx);
        uint256 j = ctx.leafIndex % w.nOps;
        bytes32 programOp = _programOp(w, j);
        if (kind == Claim.OpHash) return programOp == ctx.opHash;
        if (programOp != ctx.opHash) return false; // the defender's leaf holds a foreign op
        TraceOps.Env memory env = _env(w, ctx);
        (TraceOps.Op memory op, uint8[] memory kinds, uint256[] memory words) = _parse(w.record, env);
        if (kind == Claim.OutputHeader) {
            return keccak256(ctx.claim) == keccak256(_header(op.dtype, op.dims));
        }
        if (op.code == TraceOps.SAMPLE) _sampling(w, ctx, env);
        return _element(w, ctx, op, kinds, words, env);
    }

    /// @dev Claim.Element: the op's input slots (§L4), the defender's own output for the ops
    ///      that read it (§L5.10), then the op's rule (TraceOps.holds). With a link claim
    ///      (`ctx.claim` = abi.encode(uint256 link, uint256 startBits), §L9) only link `link` of a
    ///      DOT element's chain is decided; without one, a DOT element that has links is refused.
    function _element(
        Witness memory w,
        StepContext calldata ctx,
        TraceOps.Op memory op,
        uint8[] memory kinds,
        uint256[] memory words,
        TraceOps.Env memory env
    ) internal view returns (bool) {
        TraceOps.In[] memory ins = _inputs(w, ctx, kinds, words, env.step);
        TraceOps.In memory me = _self(w, ctx, op, ins.length);
        if (ctx.claim.length != 0) {
            if (op.code != TraceOps.DOT || ctx.claim.length != 64) revert TraceOps.BadLink();
            (uint256 link, uint256 startBits) = abi.decode(ctx.claim, (uint256, uint256));
            return TraceOps.dotLink(op, ins, ctx.elementIndex, env, link, startBits) == ctx.claimedBits;
        }
        if (op.code == TraceOps.DOT) {
            uint256 links = TraceOps.dotLinks(op, ins, ctx.elementIndex, env);
            if (links != 0) revert ChainRequired(links);
        }
        if (op.code == TraceOps.SAMPLE) return sampler.holds(op, ins, me, ctx.elementIndex, env, ctx.claimedBits);
        return TraceOps.coreElement(op, ins, ctx.elementIndex, env) == ctx.claimedBits;
    }

    // ----------------------------------------------------------------------------- program

    /// @dev §L1: program_root = keccak256(0x04 ‖ u32 P ‖ u32 token_op ‖ u32 eos ‖ ops_root).
    function _checkProgram(Witness memory w, bytes32 programRoot) internal pure {
        bytes32 r = keccak256(abi.encodePacked(bytes1(0x04), w.nOps, w.tokenOp, w.eos, w.opsRoot));
        if (r != programRoot || w.nOps == 0 || w.tokenOp >= w.nOps) revert BadProgram();
    }

    /// @dev §L2: the op hash of program op j, proven under ops_root (C3).
    function _programOp(Witness memory w, uint256 j) internal pure returns (bytes32 h) {
        h = keccak256(w.record);
        if (!Merkle.verify(h, j, w.opProof, w.opsRoot, Merkle.depthOf(w.nOps))) revert BadOpProof();
    }

    /// @dev §L1: symbols of step s = i div P from the job input length (C6: 4 bytes a token).
    function _env(Witness memory w, StepContext calldata ctx) internal pure returns (TraceOps.Env memory env) {
        if (keccak256(w.job) != ctx.inputHash || w.job.length % 4 != 0) revert BadJobInput();
        uint256 l0 = w.job.length / 4;
        env.step = ctx.leafIndex / w.nOps;
        env.job = w.job;
        if (env.step == 0) {
            env.seq = l0;
        } else {
            env.seq = 1;
            env.past = l0 + env.step - 1;
        }
    }

    /// @dev §L2: word 0 = version ‖ code ‖ dtype ‖ ndim ‖ n_in ‖ n_attr ‖ kinds; then dims,
    ///      input words, attributes.
    function _parse(bytes memory rec, TraceOps.Env memory env)
        internal
        pure
        returns (TraceOps.Op memory op, uint8[] memory kinds, uint256[] memory words)
    {
        if (rec.length < 32 || rec.length % 32 != 0 || rec[0] != 0x01) revert BadRecord();
        op.code = uint8(rec[1]);
        op.dtype = uint8(rec[2]);
        uint256 ndim = uint8(rec[3]);
        uint256 nin = uint8(rec[4]);
        uint256 nattr = uint8(rec[5]);
        if (nin > 4 || rec.length != 32 * (1 + ndim + nin + nattr)) revert BadRecord();
        op.dims = new uint256[](ndim);
        for (uint256 k = 0; k < ndim; ++k) op.dims[k] = TraceOps.dimValue(_word(rec, 1 + k), env);
        kinds = new uint8[](nin);
        words = new uint256[](nin);
        for (uint256 k = 0; k < nin; ++k) {
            kinds[k] = uint8(rec[6 + k]);
            words[k] = _word(rec, 1 + ndim + k);
        }
        op.attrs = new uint256[](nattr);
        for (uint256 k = 0; k < nattr; ++k) op.attrs[k] = _word(rec, 1 + ndim + nin + k);
    }

    function _word(bytes memory b, uint256 k) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := mload(add(add(b, 32), mul(k, 32)))
        }
    }

    /// @dev §L6 / C4: 0x02 ‖ u8 dtype ‖ u8 ndim ‖ u32 dim × ndim.
    function _header(uint8 dtype, uint256[] memory dims) internal pure returns (bytes memory h) {
        h = abi.encodePacked(bytes1(0x02), dtype, uint8(dims.length));
        for (uint256 i = 0; i < dims.length; ++i) {
            if (dims[i] > type(uint32).max) revert BadRecord();
            h = abi.encodePacked(h, uint32(dims[i]));
        }
    }

    // ----------------------------------------------------------------------------- inputs

    /// @dev §L4: each input slot proven against agreed data (DESIGN §6 checklist 3).
    ///      SCAN and MERGE (§L5.10) take one more witness tensor after the slots (`self`).
    function _inputs(
        Witness memory w,
        StepContext calldata ctx,
        uint8[] memory kinds,
        uint256[] memory words,
        uint256 step
    ) internal pure returns (TraceOps.In[] memory ins) {
        if (w.inputs.length < kinds.length) revert BadInput(kinds.length);
        ins = new TraceOps.In[](kinds.length);
        for (uint256 k = 0; k < kinds.length; ++k) {
            if (kinds[k] == SRC_OP) {
                uint256 back = words[k] & type(uint64).max;
                uint256 opIdx = words[k] >> 64;
                if (back > step || opIdx >= w.nOps) continue; // absent: before step 0
                uint256 leaf = (step - back) * w.nOps + opIdx;
                if (leaf >= ctx.leafIndex) revert NotAgreed(leaf);
                ins[k] = _traceTensor(w.inputs[k], leaf, ctx, k);
            } else if (kinds[k] == SRC_WEIGHT) {
                ins[k] = _tensor(w.inputs[k], k);
                if (_root(w.inputs[k]) != bytes32(words[k])) revert BadInput(k);
            } else if (kinds[k] != SRC_JOB) {
                revert BadRecord();
            }
        }
    }

    /// @dev §L7, §L5.10: SCAN and MERGE take one witness tensor after the n input slots, the
    ///      defender's own output: its C4 root must be the disputed leaf's `ctx.outputRoot`, its
    ///      chunks are proven as any input's. Every other op takes exactly n tensors.
    function _self(Witness memory w, StepContext calldata ctx, TraceOps.Op memory op, uint256 n)
        internal
        pure
        returns (TraceOps.In memory me)
    {
        if (!TraceOps.readsSelf(op)) {
            if (w.inputs.length != n) revert BadInput(n);
            return me;
        }
        if (w.inputs.length != n + 1) revert BadInput(n);
        if (_root(w.inputs[n]) != ctx.outputRoot) revert BadSelf();
        me = _tensor(w.inputs[n], n);
    }

    function _root(Tensor memory t) private pure returns (bytes32) {
        return Commitments.tensorRoot(t.header, t.dataRoot);
    }

    /// @dev An agreed trace leaf's output: C5 leaf under the defender's trace root.
    function _traceTensor(Tensor memory t, uint256 leaf, StepContext calldata ctx, uint256 slot)
        internal
        pure
        returns (TraceOps.In memory x)
    {
        x = _tensor(t, slot);
        bytes32 h = Commitments.traceLeaf(uint32(leaf), t.leafOpHash, _root(t));
        if (!Merkle.verify(h, leaf, t.leafProof, ctx.traceRoot, Merkle.depthOf(ctx.traceLength))) {
            revert BadLeafProof(slot);
        }
    }

    /// @dev C4 header → dims; every chunk proven under the data root (C2, C3).
    function _tensor(Tensor memory t, uint256 slot) internal pure returns (TraceOps.In memory x) {
        Commitments.Shape memory s = Commitments.parseHeader(t.header);
        uint256 ndim = uint8(t.header[2]);
        x.dims = new uint256[](ndim);
        bytes memory h = t.header;
        for (uint256 i = 0; i < ndim; ++i) {
            uint256 v;
            assembly ("memory-safe") {
                v := shr(224, mload(add(add(h, 35), mul(i, 4))))
            }
            x.dims[i] = v;
        }
        x.present = true;
        x.dtype = s.dtype;
        x.size = s.elemSize;
        x.n = s.elements;
        x.chunks = t.chunks;
        uint256 depth = Merkle.depthOf(s.nChunks);
        for (uint256 c = 0; c < t.chunks.length; ++c) {
            TraceOps.Chunk memory ch = t.chunks[c];
            if (
                ch.index >= s.nChunks || ch.data.length != Commitments.chunkLength(s.byteLength, ch.index)
                    || !Merkle.verify(Merkle.chunkLeaf(ch.data), ch.index, ch.proof, t.dataRoot, depth)
            ) revert BadChunk(slot, ch.index);
        }
    }

    // ----------------------------------------------------------------------------- ends and tokens

    /// @dev §L1: the token of step s is element 0 of the token op's output at leaf s·P + token_op.
    function _token(Witness memory w, StepContext calldata ctx, uint256 s) internal pure returns (uint256) {
        if (w.inputs.length != 1) revert BadInput(0);
        TraceOps.In memory t = _traceTensor(w.inputs[0], s * w.nOps + w.tokenOp, ctx, 0);
        return TraceOps.ld(t, 0);
    }

    /// @dev The job's config bytes: abi.encode(JobMarket.JobConfig), bound by the job's config hash.
    function _config(Witness memory w, StepContext calldata ctx)
        internal
        pure
        returns (uint32 maxTokens, uint32 temperature, uint32 topK, uint32 topP, uint64 seed)
    {
        if (keccak256(w.config) != ctx.configHash || w.config.length != 160) revert BadConfig();
        return abi.decode(w.config, (uint32, uint32, uint32, uint32, uint64));
    }

    /// @dev §L5.10: SAMPLE ops read temperature, top_k, top_p and the seed (RepOps spec §7.2-§7.3).
    function _sampling(Witness memory w, StepContext calldata ctx, TraceOps.Env memory env) internal pure {
        (, env.temperature, env.topK, env.topP, env.seed) = _config(w, ctx);
    }

    /// @dev §L1: a trace of s steps ends when s = max(1, maxTokens) or step s−1 produced EOS.
    function _traceEnd(Witness memory w, StepContext calldata ctx) internal pure returns (bool) {
        (uint32 maxTokens,,,,) = _config(w, ctx);
        uint256 i = ctx.leafIndex;
        uint256 s = i / w.nOps;
        uint256 maxSteps = maxTokens == 0 ? 1 : maxTokens;
        bool ends;
        if (i % w.nOps == 0 && s >= 1 && s <= maxSteps) {
            if (s == maxSteps) {
                ends = true;
            } else {
                ends = _token(w, ctx, s - 1) == w.eos;
            }
        }
        return (ctx.claimedBits == 1) == ends;
    }

    /// @dev DESIGN §6 checklist 4: output token e is the token op's output at step e, and there
    ///      is none past the trace's last step (the two traces are equal here).
    function _outputToken(Witness memory w, StepContext calldata ctx) internal pure returns (bool) {
        uint256 nSteps = ctx.traceLength / w.nOps;
        uint256 e = ctx.elementIndex;
        if (e >= nSteps) return ctx.claimedBits == NO_TOKEN;
        return _token(w, ctx, e) == ctx.claimedBits;
    }
}
