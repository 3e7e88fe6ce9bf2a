// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "../lib/Test.sol";
import {Merkle} from "../../lib/Merkle.sol";
import {Commitments} from "../../lib/Commitments.sol";
import {ModelRegistry} from "../../protocol/ModelRegistry.sol";
import {DisputeGame} from "../../protocol/DisputeGame.sol";
import {JobMarket} from "../../protocol/JobMarket.sol";
import {IJobResult} from "../../protocol/interfaces/IJobResult.sol";
import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";
import {AlphabetWorld, AlphabetVerifier} from "./Alphabet.sol";

/// @notice Deployment, job helpers and a full-game driver shared by the protocol tests.
abstract contract ProtocolBase is Test {
    using AlphabetWorld for AlphabetWorld.World;

    bytes32 internal constant MODEL = keccak256("smollm2-135m-instruct");
    bytes32 internal constant PROGRAM = keccak256("program-root");
    uint64 internal constant CLOCK = 1 hours;
    uint64 internal constant WINDOW = 1 days;
    uint256 internal constant BOND = 1 ether;
    uint256 internal constant REWARD = 0.5 ether;
    uint32 internal constant VOCAB = 49_152; // SmolLM2's vocabulary
    uint32 internal constant MAX_CTX = 2048;
    uint32 internal constant TOP_P_OFF = 0x3F800000; // 1.0: top-p disabled

    ModelRegistry internal registry;
    AlphabetVerifier internal verifier;
    DisputeGame internal game;
    JobMarket internal market;

    address internal requester = address(0xA11CE);
    address internal exec = address(0xE0);
    address internal exec2 = address(0xE1);
    address internal chal = address(0xC0);
    address internal chal2 = address(0xC1);

    // ---- what a player holds: its claimed length, its tree and its kind of lie ----
    enum LieKind {
        None,
        Element,
        OpHash,
        Header,
        Truncate,
        Extend,
        BadPadding,
        ZeroLeaf,
        SameLeavesLength
    }

    struct Lie {
        LieKind kind;
        uint64 pt; // leaf index, or the claimed length for length lies
        uint256 e; // element index (Element lie)
        uint32 bits; // corrupted bits (Element lie)
    }

    struct Player {
        address who;
        Lie lie;
        uint64 length;
        bytes32[] leaves; // content, unpadded
        bytes32[][] levels; // at the common depth of the game
        bytes32 root; // committed root (own depth)
    }

    function setUp() public virtual {
        vm.warp(1_000_000);
        registry = new ModelRegistry(address(this));
        registry.register(MODEL, PROGRAM, 1, VOCAB, MAX_CTX, "SmolLM2-135M-Instruct", "hf://smollm2", bytes32(0));
        verifier = new AlphabetVerifier();
        game = new DisputeGame(verifier, CLOCK);
        market = new JobMarket(registry, game);
        game.setMarket(market);
        address[6] memory who = [requester, exec, exec2, chal, chal2, address(this)];
        for (uint256 k = 0; k < who.length; ++k) {
            vm.deal(who[k], 1000 ether);
        }
    }

    // ---- jobs ----

    function _request(uint8 n) internal view returns (JobMarket.JobRequest memory r) {
        r.modelHash = MODEL;
        r.config = JobMarket.JobConfig({maxTokens: 64, temperature: 0, topK: 0, topP: TOP_P_OFF, seed: 7});
        r.deadline = uint64(block.timestamp + 1 hours);
        r.challengeWindow = WINDOW;
        r.bond = BOND;
        r.nExecutors = n;
    }

    function _input() internal pure returns (bytes memory) {
        return abi.encodePacked(uint32(1), uint32(9690), uint32(42));
    }

    function _post(uint8 n) internal returns (uint256 jobId) {
        vm.prank(requester);
        jobId = market.postJob{value: REWARD}(_request(n), _input());
    }

    function _commit(address who, uint256 jobId, uint32[] memory toks, bytes32 root, uint64 len) internal returns (uint8) {
        vm.prank(who);
        return market.commit{value: BOND}(jobId, toks, Commitments.tokensHash(toks), root, len);
    }

    function _world(uint256 seed, uint64 length, uint32 elems) internal returns (AlphabetWorld.World memory w) {
        w = AlphabetWorld.World({seed: seed, length: length, elems: elems, nTokens: 8});
        verifier.setWorld(w);
    }

    // ---- traces ----

    function _honestLeaves(AlphabetWorld.World memory w) internal pure returns (bytes32[] memory leaves) {
        bytes32[] memory path = w.chunk0Path();
        bytes memory buf = AlphabetWorld.fillChunk(new bytes(1024), w, 0, 0, false, 0, 0);
        bytes memory hdr = w.header();
        leaves = new bytes32[](w.length);
        for (uint256 i = 0; i < w.length; ++i) {
            leaves[i] = w.leaf(i, path, buf, hdr);
        }
    }

    function _junk(uint256 j) internal pure returns (bytes32) {
        return keccak256(abi.encode("junk", j));
    }

    /// @dev The leaves a player commits and the length it claims, from the honest leaves.
    function _player(address who, AlphabetWorld.World memory w, bytes32[] memory honest, Lie memory lie)
        internal
        pure
        returns (Player memory p)
    {
        p.who = who;
        p.lie = lie;
        uint256 n = w.length;
        LieKind k = lie.kind;
        if (k == LieKind.None) {
            p.leaves = honest;
            p.length = uint64(n);
        } else if (k == LieKind.Element || k == LieKind.OpHash || k == LieKind.Header || k == LieKind.ZeroLeaf) {
            require(lie.pt < n, "harness: leaf lie beyond the trace");
            p.leaves = new bytes32[](n);
            for (uint256 i = 0; i < n; ++i) {
                p.leaves[i] = i < lie.pt ? honest[i] : _junk(i);
            }
            p.leaves[lie.pt] = _lieLeaf(w, lie);
            p.length = uint64(n);
        } else if (k == LieKind.Truncate) {
            require(lie.pt >= 1 && lie.pt < n, "harness: truncation must keep 1..n-1 leaves");
            p.leaves = new bytes32[](lie.pt);
            for (uint256 i = 0; i < lie.pt; ++i) {
                p.leaves[i] = honest[i];
            }
            p.length = lie.pt;
        } else if (k == LieKind.Extend) {
            p.leaves = new bytes32[](lie.pt);
            for (uint256 i = 0; i < lie.pt; ++i) {
                p.leaves[i] = i < n ? honest[i] : _junk(i);
            }
            p.length = lie.pt;
        } else if (k == LieKind.BadPadding) {
            p.leaves = new bytes32[](n + 1);
            for (uint256 i = 0; i < n; ++i) {
                p.leaves[i] = honest[i];
            }
            p.leaves[n] = _junk(n);
            p.length = uint64(n);
        } else {
            // SameLeavesLength: the honest leaves, a wrong length claim
            p.leaves = honest;
            p.length = lie.pt;
        }
    }

    function _lieLeaf(AlphabetWorld.World memory w, Lie memory lie) internal pure returns (bytes32) {
        uint256 i = lie.pt;
        if (lie.kind == LieKind.ZeroLeaf) return bytes32(0);
        bytes32 op = lie.kind == LieKind.OpHash ? keccak256("wrong op") : w.op(i);
        bytes memory hdr = w.header();
        if (lie.kind == LieKind.Header) {
            hdr = abi.encodePacked(bytes1(0x02), uint8(1), uint8(1), w.elems + 1);
        }
        bytes32 dr = w.dataRoot(i, lie.kind == LieKind.Element, lie.e, lie.bits);
        return Commitments.traceLeaf(uint32(i), op, Commitments.tensorRoot(hdr, dr));
    }

    /// @dev Builds both players' trees at the game's common depth; sets committed roots.
    function _trees(Player memory d, Player memory c) internal pure {
        uint256 h = Merkle.depthOf(d.length);
        uint256 hc = Merkle.depthOf(c.length);
        if (hc > h) h = hc;
        d.levels = _levels(d.leaves, h);
        c.levels = _levels(c.leaves, h);
        d.root = d.levels[Merkle.depthOf(d.length)][0];
        c.root = c.levels[Merkle.depthOf(c.length)][0];
    }

    function _levels(bytes32[] memory leaves, uint256 h) internal pure returns (bytes32[][] memory lv) {
        uint256 p = 1 << h;
        require(leaves.length <= p, "content beyond tree");
        lv = new bytes32[][](h + 1);
        lv[0] = new bytes32[](p);
        for (uint256 i = 0; i < leaves.length; ++i) {
            lv[0][i] = leaves[i];
        }
        for (uint256 d = 1; d <= h; ++d) {
            uint256 m = p >> d;
            lv[d] = new bytes32[](m);
            for (uint256 i = 0; i < m; ++i) {
                lv[d][i] = Merkle.node(lv[d - 1][2 * i], lv[d - 1][2 * i + 1]);
            }
        }
    }

    function _slice(bytes32[][] memory lv, uint8 height, uint64 pos) internal pure returns (bytes32[] memory out) {
        uint256 b = height < 4 ? height : 4;
        bytes32[] memory level = lv[height - b];
        out = new bytes32[](1 << b);
        uint256 start = uint256(pos) << b;
        for (uint256 k = 0; k < out.length; ++k) {
            out[k] = level[start + k];
        }
    }

    /// @dev A player's opening of leaf i: op hash, header, data root, chunk leaves.
    function _opening(AlphabetWorld.World memory w, Player memory p, uint256 i)
        internal
        pure
        returns (bytes32 op, bytes memory hdr, bytes32[] memory chunkLeaves)
    {
        bool lieHere = p.lie.pt == i
            && (p.lie.kind == LieKind.Element || p.lie.kind == LieKind.OpHash || p.lie.kind == LieKind.Header);
        op = lieHere && p.lie.kind == LieKind.OpHash ? keccak256("wrong op") : w.op(i);
        hdr = w.header();
        if (lieHere && p.lie.kind == LieKind.Header) {
            hdr = abi.encodePacked(bytes1(0x02), uint8(1), uint8(1), w.elems + 1);
        }
        chunkLeaves = w.chunkLeaves(i, lieHere && p.lie.kind == LieKind.Element, p.lie.e, p.lie.bits);
    }

    function _chunkOf(AlphabetWorld.World memory w, Player memory p, uint256 i, uint256 c) internal pure returns (bytes memory) {
        bool bad = p.lie.kind == LieKind.Element && p.lie.pt == i;
        return w.chunk(i, c, bad, p.lie.e, p.lie.bits);
    }

    // ---- the driver: plays a whole game, each side from its own tree ----

    struct Level2 {
        bytes32[][] d;
        bytes32[][] c;
    }

    struct At {
        DisputeGame.Phase phase;
        uint8 turn;
        uint8 height;
        uint64 pos;
        uint64 leaf;
        uint64 chunk;
    }

    function _at(uint256 gameId) internal view returns (At memory a) {
        (, a.phase, a.turn, a.height, a.pos, a.leaf, a.chunk,) = game.gameInfo(gameId);
    }

    function _play(uint256 gameId, AlphabetWorld.World memory w, Player memory d, Player memory c)
        internal
        returns (uint256 moves)
    {
        Level2 memory l2;
        for (uint256 guard = 0; guard < 64; ++guard) {
            At memory a = _at(gameId);
            if (a.phase == DisputeGame.Phase.Resolved) return moves;
            ++moves;
            _move(gameId, a, w, d, c, l2);
        }
        revert("driver: game did not end");
    }

    /// @dev One move by whoever is to move, from its own data.
    function _move(uint256 gameId, At memory a, AlphabetWorld.World memory w, Player memory d, Player memory c, Level2 memory l2)
        internal
    {
        if (a.phase == DisputeGame.Phase.TensorBisect && l2.d.length == 0) {
            // resumed mid-game: rebuild both level-2 trees from the openings
            (,, bytes32[] memory dl) = _opening(w, d, a.leaf);
            (,, bytes32[] memory cl) = _opening(w, c, a.leaf);
            l2.d = _levels(dl, Merkle.depthOf(dl.length));
            l2.c = _levels(cl, Merkle.depthOf(cl.length));
        }
        if (a.phase == DisputeGame.Phase.TraceBisect || a.phase == DisputeGame.Phase.TensorBisect) {
            bool t = a.phase == DisputeGame.Phase.TraceBisect;
            _bisect(gameId, a, d.who, c.who, t ? d.levels : l2.d, t ? c.levels : l2.c);
        } else if (a.phase == DisputeGame.Phase.LeafOpen) {
            Player memory p = a.turn == 0 ? d : c;
            (bytes32 op, bytes memory hdr, bytes32[] memory cls) = _opening(w, p, a.leaf);
            bytes32[][] memory lv = _levels(cls, Merkle.depthOf(cls.length));
            if (a.turn == 0) l2.d = lv;
            else l2.c = lv;
            _exec(p.who, abi.encodeCall(game.openLeaf, (gameId, op, hdr, lv[lv.length - 1][0])), "openLeaf");
        } else if (a.phase == DisputeGame.Phase.ChunkReveal) {
            _exec(d.who, abi.encodeCall(game.revealChunk, (gameId, _chunkOf(w, d, a.leaf, a.chunk))), "revealChunk");
        } else if (a.phase == DisputeGame.Phase.ElementPick) {
            bytes memory dc = _chunkOf(w, d, a.leaf, a.chunk);
            uint256 e = _firstDiff(dc, _chunkOf(w, c, a.leaf, a.chunk));
            _exec(c.who, abi.encodeCall(game.pickElement, (gameId, e, dc)), "pickElement");
        } else if (a.phase == DisputeGame.Phase.Proof) {
            (IOneStepVerifier.Claim kind, uint256 e,,,,) = game.pending(gameId);
            (, uint256 revealed,,) = game.chainInfo(gameId);
            uint256 n = verifier.chain();
            if (kind == IOneStepVerifier.Claim.Element && n != 0 && revealed == 0) {
                bytes memory call = abi.encodeCall(game.revealChain, (gameId, _chainOf(w, d, a.leaf, e, n), ""));
                _exec(d.who, call, "revealChain");
            } else {
                _exec(address(0), abi.encodeCall(game.resolve, (gameId, "")), "resolve");
            }
        } else if (a.phase == DisputeGame.Phase.LinkPick) {
            (, uint256 e,,,,) = game.pending(gameId);
            uint256 n = verifier.chain();
            uint32[] memory dAccs = _chainOf(w, d, a.leaf, e, n);
            uint256 j = _firstDiffLink(dAccs, _chainOf(w, c, a.leaf, e, n));
            _exec(c.who, abi.encodeCall(game.pickLink, (gameId, j, dAccs)), "pickLink");
        } else if (a.phase == DisputeGame.Phase.LengthProof) {
            (,,, uint64 idx, uint8 side,) = game.pending(gameId);
            Player memory p = side == 0 ? d : c;
            _exec(address(0), abi.encodeCall(game.proveLength, (gameId, p.levels[0][idx], _proof(p.levels, idx))), "proveLength");
        } else {
            revert("driver: unexpected phase");
        }
    }

    function _bisect(uint256 gameId, At memory a, address dWho, address cWho, bytes32[][] memory dl, bytes32[][] memory cl)
        internal
    {
        if (a.turn == 0) {
            _exec(dWho, abi.encodeCall(game.reveal, (gameId, _slice(dl, a.height, a.pos))), "reveal");
        } else {
            _exec(cWho, abi.encodeCall(game.respond, (gameId, _slice(cl, a.height, a.pos), _slice(dl, a.height, a.pos))), "respond");
        }
    }

    /// @dev Level 3: the chain of n links a player holds for element e of leaf i: the honest
    ///      one, or, where it lies about that element, honest up to link `_lieLink` and junk from
    ///      there, ending at its lie bits.
    function _chainOf(AlphabetWorld.World memory w, Player memory p, uint256 i, uint256 e, uint256 n)
        internal
        pure
        returns (uint32[] memory accs)
    {
        accs = w.chain(i, e, n);
        if (p.lie.kind != LieKind.Element || p.lie.pt != i || p.lie.e != e) return accs;
        for (uint256 j = _lieLink(p.lie, n); j + 1 < n; ++j) {
            accs[j] = uint32(uint256(keccak256(abi.encode("junk acc", j))));
        }
        accs[n - 1] = p.lie.bits;
    }

    /// @dev The first link of a lying chain that is wrong (a function of the lie).
    function _lieLink(Lie memory lie, uint256 n) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(lie.pt, lie.e, lie.bits))) % n;
    }

    /// @dev First link where two chains differ (the last one when equal).
    function _firstDiffLink(uint32[] memory x, uint32[] memory y) internal pure returns (uint256 j) {
        while (j + 1 < x.length && x[j] == y[j]) ++j;
    }

    /// @dev First float32 element where two chunks differ (0 when equal).
    function _firstDiff(bytes memory x, bytes memory y) internal pure returns (uint256) {
        uint256 n = x.length / 4;
        for (uint256 e = 0; e < n; ++e) {
            if (keccak256(_word(x, e)) != keccak256(_word(y, e))) return e;
        }
        return 0;
    }

    // ---- measured calls (gas profile) ----

    struct GasRow {
        string name;
        uint256 execGas; // gas spent inside the call
        uint256 txGas; // + 21000 intrinsic + calldata (EIP-2028: 16 per non-zero byte, 4 per zero)
        uint256 calldataBytes;
    }

    bool internal measuring;
    GasRow[] internal gasRows;

    /// @dev Calls the game as `from` (no prank for address(0)); bubbles reverts; records gas
    ///      when measuring (metering is paused around everything else).
    function _exec(address from, bytes memory data, string memory name) internal {
        if (from != address(0)) vm.prank(from);
        if (measuring) vm.resumeGasMetering();
        uint256 g0 = gasleft();
        (bool ok, bytes memory ret) = address(game).call(data);
        uint256 used = g0 - gasleft();
        if (measuring) vm.pauseGasMetering();
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
        if (measuring) gasRows.push(GasRow(name, used, used + 21000 + _calldataGas(data), data.length));
    }

    function _calldataGas(bytes memory data) internal pure returns (uint256 g) {
        for (uint256 i = 0; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }

    function _word(bytes memory b, uint256 e) internal pure returns (bytes memory out) {
        out = new bytes(4);
        for (uint256 k = 0; k < 4; ++k) {
            out[k] = b[4 * e + k];
        }
    }

    function _proof(bytes32[][] memory lv, uint256 idx) internal pure returns (bytes32[] memory proof) {
        proof = new bytes32[](lv.length - 1);
        for (uint256 d = 0; d + 1 < lv.length; ++d) {
            proof[d] = lv[d][idx ^ 1];
            idx >>= 1;
        }
    }
}
