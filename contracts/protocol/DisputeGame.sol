// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Merkle} from "../lib/Merkle.sol";
import {Commitments} from "../lib/Commitments.sol";
import {IOneStepVerifier} from "./interfaces/IOneStepVerifier.sol";
import {IGameSettlement} from "./interfaces/IGameSettlement.sol";

/// @title DisputeGame
/// @notice The k-ary dissection game of DESIGN §6 between a defending executor (D) and a
///         challenger (C), both bound to their own committed trace roots:
///         level 1 dissects the two traces (C5) to the first differing leaf i with every leaf
///         left of i agreed; the leaves are opened (op hash, C4 header, data root) and checked
///         against both leaf hashes; level 2 dissects the two output tensors' data trees (C3) to
///         the first differing 1 KiB chunk; D reveals its chunk, C names one element; the
///         IOneStepVerifier decides. Level 3 (a DOT element longer than one link, docs/trace-layout.md
///         §L9): D reveals the element's chain of accumulators, C names one link, the verifier
///         decides that link. Every move is re-hashed to the mover's own committed node,
///         so a party that equivocates cannot move and loses on its clock. A model with a
///         compact commitment (docs/trace-layout.md §L10) has its parties commit compact traces:
///         level 1 runs on them first, then each party expands its trace to a full one bound at
///         the disputed leaf (phase Expand) and the game continues on the full traces.
/// @dev Holds no funds: the JobMarket holds every wei and is told the winner through
///      IGameSettlement. Clocks are chess clocks (one budget per party, only the side to move
///      runs); anyone may call `claimTimeout` once the mover's budget is spent.
///      Spec references: docs/commitments.md C2–C6 (bytes), DESIGN §6 (game, checklist).
contract DisputeGame {
    /// @notice log2 of the dissection arity: each move reveals up to 2^BITS = 16 nodes.
    /// @dev k = 16: a 2^16-leaf trace takes 4 rounds, a 192-chunk tensor 2 (contracts/protocol/README.md).
    uint256 public constant BITS = 4;
    /// @notice Most links a revealed accumulation chain may have (bounds the hashing loop; a DOT
    ///         element of 65 536 fma steps at LINK = 64).
    uint256 public constant MAX_LINKS = 1024;

    enum Phase {
        None,
        TraceBisect,
        LeafOpen,
        TensorBisect,
        ChunkReveal,
        ElementPick,
        Proof,
        LengthProof,
        Resolved,
        LinkPick, // level 3: C names a link of D's revealed chain (appended: Resolved stays 8)
        Expand // compact traces (§L10): D, then C, binds its compact trace to a full one
    }

    /// @notice Why a game ended (for indexers and the demo story).
    enum Reason {
        Verifier,
        MalformedLeaf,
        LengthProof,
        Timeout
    }

    uint8 internal constant D = 0;
    uint8 internal constant C = 1;

    /// @notice What the market passes when it opens a game.
    struct Init {
        uint256 jobId;
        bytes32 modelHash;
        bytes32 programRoot;
        bytes32 inputHash;
        bytes32 configHash;
        address defender;
        bytes32 defenderRoot;
        uint64 defenderLength;
        address challenger;
        bytes32 challengerRoot;
        uint64 challengerLength;
        bool outputMode; // equal traces: dispute output token `tokenIndex`
        uint256 tokenIndex;
        uint256 claimedToken;
        bytes32 compactRoot; // the model's §L10 compact commitment; 0 = full traces committed
    }

    /// @notice The preimage of a model's compact commitment (docs/trace-layout.md §L10):
    ///         compactRoot = keccak256(0x06 ‖ u32 P ‖ u32 Pc ‖ u32 cTok ‖ mapRoot).
    struct Compact {
        uint32 P; // trace ops a step (full trace)
        uint32 Pc; // kept ops a step (compact trace)
        uint32 cTok; // the token op's place among the kept ops
        bytes32 mapRoot; // C3 root over map_leaf(compact_ops[k]), k < Pc
    }

    struct Party {
        address who;
        bytes32 root; // committed trace root
        uint64 length; // committed trace length
        uint64 clock; // seconds left
        bytes32 node; // current node of the dissection, in this party's tree
        bytes32 opHash; // opened at the disputed leaf
        bytes32 outputRoot;
        bytes32 headerHash;
    }

    struct Game {
        uint256 jobId;
        bytes32 modelHash;
        bytes32 programRoot;
        bytes32 inputHash;
        bytes32 configHash;
        Phase phase;
        uint8 turn;
        bool defenderWon;
        uint8 height; // levels below the current node
        uint64 turnStart;
        uint64 pos; // index of the current node among the nodes of its level
        uint64 leafIndex; // disputed trace leaf, once reached
        uint64 chunkIndex; // disputed chunk, once reached
        uint64 byteLength; // of the disputed output tensor
        uint64 nChunks;
        uint8 elemSize;
        uint8 proofSide; // LengthProof: the side whose trace claims padding at `proofIndex`
        uint64 proofIndex;
        bytes32 revealHash; // hash of D's children revealed this round
        IOneStepVerifier.Claim claimKind;
        uint256 elementIndex;
        uint256 claimedBits;
        bytes claim; // D's opened header (OutputHeader claims)
        bytes32 chainHash; // keccak256(abi.encode(accs)) of D's revealed chain (level 3)
        uint64 links; // links of the revealed chain; 0 = none revealed
        uint64 link; // the link C picked
        uint32 linkStart; // its start bits: accs[link − 1], 0 for link 0
        bool linkPicked;
        bool expanded; // compact games: both (output games: D's) commitments are full now
        bool outputGame; // compact output game: Expand precedes the OutputToken proof
        uint64 compactLeaf; // compact leaf the expansion binds (output games: set by D's move)
        bytes32 compactRoot; // Init.compactRoot; 0 = a full-trace game (never expands)
    }

    IOneStepVerifier public immutable verifier;
    /// @notice Seconds each party may spend in total on its moves in one game.
    uint64 public immutable clockBudget;
    address private immutable _deployer;
    /// @notice The job market (set once; the only contract that may open games).
    IGameSettlement public market;
    /// @notice Number of games ever created; ids are 1..gameCount.
    uint256 public gameCount;

    mapping(uint256 => Game) internal _games;
    mapping(uint256 => Party[2]) internal _parties;

    error NotDeployer();
    error MarketAlreadySet();
    error NotMarket();
    error BadGame(uint256 gameId);
    error WrongPhase(Phase expected, Phase actual);
    error NotYourTurn();
    error NotParty();
    error ClockExpired();
    error ClockRunning();
    error BadWidth(uint256 expected, uint256 got);
    error RootMismatch();
    error NoDifference();
    error BadChunk();
    error BadElement();
    error BadProof();
    error ChainAlreadyRevealed();
    error NotChained();
    error BadChain();
    error BadLink();
    error BadLength();
    error BadCompact();

    /// @notice A game was opened.
    event GameCreated(
        uint256 indexed gameId,
        uint256 indexed jobId,
        address indexed defender,
        address challenger,
        bytes32 defenderRoot,
        bytes32 challengerRoot,
        Phase phase
    );
    /// @notice D revealed the nodes below the current node.
    event ChildrenRevealed(uint256 indexed gameId, uint8 side, uint8 height, uint64 pos, bytes32[] children);
    /// @notice C revealed its nodes and the game descended into `childIndex`.
    event Descended(uint256 indexed gameId, Phase phase, uint8 height, uint64 pos, uint256 childIndex, bytes32[] children);
    /// @notice Level 1 ended at trace leaf `index`.
    event TraceLeafReached(uint256 indexed gameId, uint64 index, bytes32 defenderLeaf, bytes32 challengerLeaf);
    /// @notice A party opened its disputed leaf.
    event LeafOpened(uint256 indexed gameId, uint8 side, bytes32 opHash, bytes header, bytes32 dataRoot);
    /// @notice Level 2 ended at chunk `index`.
    event ChunkReached(uint256 indexed gameId, uint64 index);
    /// @notice D revealed its disputed chunk (so C can read it even if D withholds data).
    event ChunkRevealed(uint256 indexed gameId, uint64 index, bytes chunk);
    /// @notice C named the disputed element.
    event ElementPicked(uint256 indexed gameId, uint256 elementIndex, uint256 claimedBits);
    /// @notice D revealed the accumulation chain of the disputed element (level 3): `accs[j]` is
    ///         the accumulator after link j, the last one D's claimed element.
    event ChainRevealed(uint256 indexed gameId, uint32[] accs);
    /// @notice C named link `link`; the one-step decides it from `startBits` to `claimedBits`.
    event LinkPicked(uint256 indexed gameId, uint256 link, uint256 startBits, uint256 claimedBits);
    /// @notice The game waits for a one-step decision of `kind`.
    event ProofRequired(uint256 indexed gameId, IOneStepVerifier.Claim kind);
    /// @notice The game waits for a proof of trace leaf `index` (padding or not).
    event LengthProofRequired(uint256 indexed gameId, uint64 index, uint8 paddingSide);
    /// @notice `side` bound its compact trace to the full trace `fullRoot` of `fullLength` leaves
    ///         (docs/trace-layout.md §L10); its commitment is now that full trace.
    event Expanded(uint256 indexed gameId, uint8 side, bytes32 fullRoot, uint64 fullLength);
    /// @notice The game ended.
    event GameResolved(uint256 indexed gameId, bool defenderWon, Reason reason);
    /// @notice The market was bound.
    event MarketSet(address market);

    constructor(IOneStepVerifier verifier_, uint64 clockBudget_) {
        verifier = verifier_;
        clockBudget = clockBudget_;
        _deployer = msg.sender;
    }

    /// @notice Binds the market once (deployment step; no funds exist yet, nothing can change
    ///         it afterwards).
    /// @param market_ The JobMarket.
    function setMarket(IGameSettlement market_) external {
        if (msg.sender != _deployer) revert NotDeployer();
        if (address(market) != address(0)) revert MarketAlreadySet();
        market = market_;
        emit MarketSet(address(market_));
    }

    // -----------------------------------------------------------------------------------------
    // Creation

    /// @notice Opens a game. Only the market may call (it holds the bonds).
    /// @param init The job context and both parties' commitments.
    /// @return gameId The new game's id.
    function create(Init calldata init) external returns (uint256 gameId) {
        if (msg.sender != address(market)) revert NotMarket();
        gameId = ++gameCount;
        Game storage g = _games[gameId];
        g.jobId = init.jobId;
        g.modelHash = init.modelHash;
        g.programRoot = init.programRoot;
        g.inputHash = init.inputHash;
        g.configHash = init.configHash;
        g.turnStart = uint64(block.timestamp);
        Party[2] storage p = _parties[gameId];
        p[D].who = init.defender;
        p[D].root = init.defenderRoot;
        p[D].length = init.defenderLength;
        p[D].clock = clockBudget;
        p[C].who = init.challenger;
        p[C].root = init.challengerRoot;
        p[C].length = init.challengerLength;
        p[C].clock = clockBudget;
        if (init.defenderLength == 0 || init.challengerLength == 0) revert BadLength();
        if (init.defenderLength > 1 << 32 || init.challengerLength > 1 << 32) revert BadLength();

        if (init.compactRoot != bytes32(0)) g.compactRoot = init.compactRoot; // §L10

        if (init.outputMode) {
            // DESIGN §6 checklist 4: same trace, disputed output token.
            g.elementIndex = init.tokenIndex;
            g.claimedBits = init.claimedToken;
            if (init.compactRoot != bytes32(0)) {
                // §L10: D first binds its compact trace to a full one (D's turn: the default).
                g.outputGame = true;
                g.phase = Phase.Expand;
            } else {
                _requireProof(gameId, g, IOneStepVerifier.Claim.OutputToken);
            }
        } else {
            _startTrace(gameId, g, p);
        }
        emit GameCreated(gameId, init.jobId, init.defender, init.challenger, init.defenderRoot, init.challengerRoot, g.phase);
    }

    /// @dev Lifts both roots to one depth (C3 ZERO padding) and starts level 1.
    function _startTrace(uint256 gameId, Game storage g, Party[2] storage p) internal {
        uint256 dD = Merkle.depthOf(p[D].length);
        uint256 dC = Merkle.depthOf(p[C].length);
        uint256 h = dD > dC ? dD : dC;
        p[D].node = Merkle.lift(p[D].root, dD, h);
        p[C].node = Merkle.lift(p[C].root, dC, h);
        g.height = uint8(h);
        g.phase = Phase.TraceBisect;
        if (p[D].node == p[C].node) {
            // Same leaves, different lengths: the leaf at the shorter length decides who
            // mis-stated its length.
            uint8 shorter = p[D].length < p[C].length ? D : C;
            _requireLengthProof(gameId, g, shorter, p[shorter].length);
        } else if (h == 0) {
            _atTraceLeaf(gameId, g, p);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Level 1 and level 2 dissection (commitments C3: k-ary dissection)

    /// @notice D reveals the 2^b nodes b levels below the current node of its tree.
    /// @param gameId The game.
    /// @param children The nodes, left to right; must re-hash to D's current node.
    function reveal(uint256 gameId, bytes32[] calldata children) external {
        Game storage g = _game(gameId);
        _requireBisect(g);
        Party[2] storage p = _parties[gameId];
        _spend(g, p, D);
        uint256 width = _width(g.height);
        if (children.length != width) revert BadWidth(width, children.length);
        if (Merkle.rootOfLevel(children) != p[D].node) revert RootMismatch();
        g.revealHash = keccak256(abi.encodePacked(children));
        g.turn = C;
        emit ChildrenRevealed(gameId, D, g.height, g.pos, children);
    }

    /// @notice C reveals its own 2^b nodes; the game descends into the first child where the
    ///         two differ (so every node left of it is agreed by both).
    /// @param gameId The game.
    /// @param children C's nodes; must re-hash to C's current node.
    /// @param defenderChildren D's nodes as revealed this round (checked against their hash).
    function respond(uint256 gameId, bytes32[] calldata children, bytes32[] calldata defenderChildren) external {
        Game storage g = _game(gameId);
        _requireBisect(g);
        Party[2] storage p = _parties[gameId];
        _spend(g, p, C);
        uint256 width = _width(g.height);
        if (children.length != width) revert BadWidth(width, children.length);
        if (keccak256(abi.encodePacked(defenderChildren)) != g.revealHash) revert RootMismatch();
        if (Merkle.rootOfLevel(children) != p[C].node) revert RootMismatch();
        uint256 j = 0;
        while (j < width && children[j] == defenderChildren[j]) ++j;
        if (j == width) revert NoDifference(); // unreachable: the two nodes differ
        uint256 b = Merkle.depthOf(width);
        g.height -= uint8(b);
        g.pos = uint64((uint256(g.pos) << b) | j);
        p[D].node = defenderChildren[j];
        p[C].node = children[j];
        g.revealHash = bytes32(0);
        emit Descended(gameId, g.phase, g.height, g.pos, j, children);
        if (g.height > 0) {
            g.turn = D;
        } else if (g.phase == Phase.TraceBisect) {
            _atTraceLeaf(gameId, g, p);
        } else {
            _atChunkLeaf(gameId, g, p);
        }
    }

    /// @dev End of level 1 at leaf i = pos. A real leaf (i < length) is never ZERO and padding
    ///      is always ZERO (C3); whoever breaks that loses. Otherwise: both real → open the
    ///      leaves; one padding → the dispute is the trace's length. Compact traces not yet
    ///      expanded (§L10) expand first where the leaves would be opened or TraceEnd decided.
    function _atTraceLeaf(uint256 gameId, Game storage g, Party[2] storage p) internal {
        uint64 i = g.pos;
        g.leafIndex = i;
        bytes32 leafD = p[D].node;
        bytes32 leafC = p[C].node;
        emit TraceLeafReached(gameId, i, leafD, leafC);
        bool realD = i < p[D].length;
        bool realC = i < p[C].length;
        if ((leafD == bytes32(0)) == realD) return _finish(gameId, g, false, Reason.MalformedLeaf);
        if ((leafC == bytes32(0)) == realC) return _finish(gameId, g, true, Reason.MalformedLeaf);
        bool compact = g.compactRoot != bytes32(0) && !g.expanded;
        if (realD && realC) {
            if (compact) return _toExpand(g, i);
            g.phase = Phase.LeafOpen;
            _turnTo(g, D);
            return;
        }
        uint8 pad = realD ? C : D; // the side whose trace ends at or before i
        uint64 n = p[pad].length;
        if (n == i && compact) {
            // §L10: one compact trace ends here; both expand, then level 1 runs on full traces.
            _toExpand(g, i);
        } else if (n == i) {
            // Does the program's trace end exactly here? (claim TraceEnd)
            g.claimedBits = pad == D ? 1 : 0;
            _requireProof(gameId, g, IOneStepVerifier.Claim.TraceEnd);
        } else {
            // n < i: leaf n is agreed; it is ZERO (the other side is malformed) or not (pad is).
            _requireLengthProof(gameId, g, pad, n);
        }
    }

    /// @dev §L10: level 1 on compact traces ended at compact leaf i; D, then C, expands.
    function _toExpand(Game storage g, uint64 i) internal {
        g.phase = Phase.Expand;
        g.compactLeaf = i;
        _turnTo(g, D);
    }

    /// @dev End of level 2 at chunk c = pos: same padding rule as level 1, then D reveals.
    function _atChunkLeaf(uint256 gameId, Game storage g, Party[2] storage p) internal {
        uint64 c = g.pos;
        g.chunkIndex = c;
        emit ChunkReached(gameId, c);
        bool real = c < g.nChunks;
        if ((p[D].node == bytes32(0)) == real) return _finish(gameId, g, false, Reason.MalformedLeaf);
        if ((p[C].node == bytes32(0)) == real) return _finish(gameId, g, true, Reason.MalformedLeaf);
        g.phase = Phase.ChunkReveal;
        _turnTo(g, D);
    }

    // -----------------------------------------------------------------------------------------
    // Leaf opening: the link from level 1 to level 2 (DESIGN §6 checklist 2)

    /// @notice Opens the mover's disputed trace leaf: C5 leaf = keccak(0x03 ‖ u32 i ‖ opHash ‖
    ///         C4 root(header, dataRoot)). D opens first, then C.
    /// @param gameId The game.
    /// @param opHash The op record hash at the leaf.
    /// @param header The exact C4 header bytes of the op's output tensor.
    /// @param dataRoot The C3 root of the output tensor's chunks.
    function openLeaf(uint256 gameId, bytes32 opHash, bytes calldata header, bytes32 dataRoot) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.LeafOpen) revert WrongPhase(Phase.LeafOpen, g.phase);
        Party[2] storage p = _parties[gameId];
        uint8 side = g.turn;
        _spend(g, p, side);
        Commitments.Shape memory s = Commitments.parseHeader(header);
        bytes32 outputRoot = Commitments.tensorRoot(header, dataRoot);
        if (Commitments.traceLeaf(uint32(g.leafIndex), opHash, outputRoot) != p[side].node) revert RootMismatch();
        p[side].opHash = opHash;
        p[side].outputRoot = outputRoot;
        p[side].headerHash = keccak256(header);
        emit LeafOpened(gameId, side, opHash, header, dataRoot);
        if (side == D) {
            g.claim = header;
            g.byteLength = uint64(s.byteLength);
            g.nChunks = uint64(s.nChunks);
            g.elemSize = s.elemSize;
            p[D].node = dataRoot;
            g.turn = C;
            return;
        }
        p[C].node = dataRoot;
        if (p[D].opHash != opHash) {
            _requireProof(gameId, g, IOneStepVerifier.Claim.OpHash);
        } else if (p[D].headerHash != p[C].headerHash) {
            _requireProof(gameId, g, IOneStepVerifier.Claim.OutputHeader);
        } else {
            // Same op, same shape, different data: level 2 over the data trees.
            g.phase = Phase.TensorBisect;
            g.height = uint8(Merkle.depthOf(g.nChunks));
            g.pos = 0;
            if (g.height == 0) {
                _atChunkLeaf(gameId, g, p);
            } else {
                _turnTo(g, D);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Expansion: compact trace → full trace (docs/trace-layout.md §L10, ADR 0013)

    /// @notice Binds the mover's compact trace to a full trace, in phase Expand: D moves first,
    ///         then C (in an output game only D). With `i` the disputed compact leaf (output
    ///         games: `i = tokenIndex·Pc + cTok`, fixed by this move) and `Lc` the mover's
    ///         committed compact length, it checks: (1) `c` is the preimage of the model's
    ///         compact root, else BadCompact; (2) `Pc > 0`, `Lc mod Pc = 0` and
    ///         `0 < Lf = Lc / Pc · P ≤ 2^32`, else BadLength; (3) if `i < Lc`, that
    ///         `trace_leaf(i, opHash, outputRoot)` is the mover's compact leaf i (its dissection
    ///         node; in an output game proven against its compact root by `compactProof`), else
    ///         RootMismatch, and that `map_leaf(op)` sits at index `i mod Pc` of `c.mapRoot` and
    ///         `trace_leaf(f, opHash, outputRoot)` at index `f = (i div Pc)·P + op` of `fullRoot`,
    ///         else BadProof (for `i ≥ Lc` the mover's trace has ended there: only `fullRoot` is
    ///         used). The mover's commitment becomes (`fullRoot`, `Lf`). After C's move level 1
    ///         restarts on the two full traces; after D's move in an output game the
    ///         OutputToken proof is required on D's full trace.
    /// @param gameId The game.
    /// @param fullRoot The mover's full trace root (C5 over Lf leaves).
    /// @param c The model's compact commitment preimage (P, Pc, cTok, mapRoot).
    /// @param opHash The op hash at compact leaf i (and full leaf f).
    /// @param outputRoot The C4 output root at compact leaf i (and full leaf f).
    /// @param op compact_ops[i mod Pc]: the full-trace op of compact leaf i.
    /// @param mapProof C3 siblings of map_leaf(op) in `c.mapRoot`, bottom-up (depth ⌈log2 Pc⌉).
    /// @param compactProof Output games only: C3 siblings of compact leaf i in the mover's
    ///        committed compact root (depth ⌈log2 Lc⌉); ignored otherwise.
    /// @param leafProof C3 siblings of full leaf f in `fullRoot` (depth ⌈log2 Lf⌉).
    function expand(
        uint256 gameId,
        bytes32 fullRoot,
        Compact calldata c,
        bytes32 opHash,
        bytes32 outputRoot,
        uint32 op,
        bytes32[] calldata mapProof,
        bytes32[] calldata compactProof,
        bytes32[] calldata leafProof
    ) external {
        // Split into helpers only to stay within the EVM's 16 reachable stack slots.
        (uint256 i, uint256 lf) = _expandBegin(gameId, c, opHash, outputRoot, compactProof);
        if (i != type(uint256).max) {
            _checkMap(c, op, mapProof, i);
            _checkFull(fullRoot, c, opHash, outputRoot, op, leafProof, i, lf);
        }
        _expandEnd(gameId, fullRoot, lf);
    }

    /// @dev Phase, turn and clock of an expansion move; returns the game and the mover.
    function _expandMover(uint256 gameId) internal returns (Game storage g, Party storage q) {
        g = _game(gameId);
        if (g.phase != Phase.Expand) revert WrongPhase(Phase.Expand, g.phase);
        Party[2] storage p = _parties[gameId];
        uint8 side = g.turn;
        if (msg.sender != p[side].who && msg.sender == p[1 - side].who) revert NotYourTurn();
        _spend(g, p, side);
        q = p[side];
    }

    /// @dev §L10 steps 1-3 up to the map and full-leaf proofs: the compact preimage, the
    ///      lengths, and the mover's compact leaf i. Returns i (type(uint256).max when the
    ///      mover's compact trace has ended at or before i: nothing more to prove) and Lf. In an
    ///      output game i is fixed here: tokenIndex·Pc + cTok.
    function _expandBegin(
        uint256 gameId,
        Compact calldata c,
        bytes32 opHash,
        bytes32 outputRoot,
        bytes32[] calldata compactProof
    ) internal returns (uint256 i, uint256 lf) {
        (Game storage g, Party storage q) = _expandMover(gameId);
        if (Commitments.compactRoot(c.P, c.Pc, c.cTok, c.mapRoot) != g.compactRoot) revert BadCompact();
        uint256 lc = q.length;
        if (c.Pc == 0 || lc % c.Pc != 0) revert BadLength();
        lf = (lc / c.Pc) * c.P;
        if (lf == 0 || lf > 1 << 32) revert BadLength();
        bool outputGame = g.outputGame;
        if (outputGame) {
            i = g.elementIndex * c.Pc + c.cTok; // tokenIndex ≤ MAX_TOKENS (the market's bound)
            g.compactLeaf = uint64(i);
        } else {
            i = g.compactLeaf;
        }
        if (i >= lc) return (type(uint256).max, lf);
        bytes32 leaf = Commitments.traceLeaf(uint32(i), opHash, outputRoot);
        bool bound = outputGame ? Merkle.verify(leaf, i, compactProof, q.root, Merkle.depthOf(lc)) : leaf == q.node;
        if (!bound) revert RootMismatch();
    }

    /// @dev §L10 step 3, the map proof: op = compact_ops[i mod Pc]. `op < P` holds for every
    ///      registered map; checked so a full leaf past a step's ops can never be proven.
    function _checkMap(Compact calldata c, uint32 op, bytes32[] calldata mapProof, uint256 i) internal pure {
        if (op >= c.P || !Merkle.verify(Commitments.compactMapLeaf(op), i % c.Pc, mapProof, c.mapRoot, Merkle.depthOf(c.Pc))) {
            revert BadProof();
        }
    }

    /// @dev §L10 step 3, the full-leaf proof: full leaf f = (i div Pc)·P + op of `fullRoot`
    ///      holds the compact leaf's op hash and output root.
    function _checkFull(
        bytes32 fullRoot,
        Compact calldata c,
        bytes32 opHash,
        bytes32 outputRoot,
        uint32 op,
        bytes32[] calldata leafProof,
        uint256 i,
        uint256 lf
    ) internal pure {
        uint256 f = (i / c.Pc) * c.P + op;
        bytes32 leaf = Commitments.traceLeaf(uint32(f), opHash, outputRoot);
        if (!Merkle.verify(leaf, f, leafProof, fullRoot, Merkle.depthOf(lf))) revert BadProof();
    }

    /// @dev §L10 step 4: the mover's commitment becomes the full trace; then C's turn, or (after
    ///      C, or D in an output game) the full-trace game.
    function _expandEnd(uint256 gameId, bytes32 fullRoot, uint256 lf) internal {
        Game storage g = _games[gameId];
        Party[2] storage p = _parties[gameId];
        uint8 side = g.turn;
        p[side].root = fullRoot;
        p[side].length = uint64(lf);
        emit Expanded(gameId, side, fullRoot, uint64(lf));
        if (g.outputGame) {
            g.expanded = true;
            _requireProof(gameId, g, IOneStepVerifier.Claim.OutputToken);
        } else if (side == D) {
            _turnTo(g, C);
        } else {
            // Both traces are full now: level 1 restarts on them, as in a full-trace game.
            g.expanded = true;
            g.pos = 0;
            g.leafIndex = 0;
            _turnTo(g, D);
            _startTrace(gameId, g, p);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Chunk and element

    /// @notice D reveals its disputed chunk's bytes (C2 length, C3 leaf hash checked).
    /// @param gameId The game.
    /// @param chunk The chunk bytes.
    function revealChunk(uint256 gameId, bytes calldata chunk) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.ChunkReveal) revert WrongPhase(Phase.ChunkReveal, g.phase);
        Party[2] storage p = _parties[gameId];
        _spend(g, p, D);
        _checkChunk(g, p, chunk);
        g.phase = Phase.ElementPick;
        g.turn = C;
        emit ChunkRevealed(gameId, g.chunkIndex, chunk);
    }

    /// @notice C names the element of D's chunk it disputes; the one-step decides it.
    /// @param gameId The game.
    /// @param element Index of the element inside the chunk.
    /// @param defenderChunk D's chunk bytes as revealed (checked against D's chunk leaf).
    function pickElement(uint256 gameId, uint256 element, bytes calldata defenderChunk) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.ElementPick) revert WrongPhase(Phase.ElementPick, g.phase);
        Party[2] storage p = _parties[gameId];
        _spend(g, p, C);
        _checkChunk(g, p, defenderChunk);
        uint256 size = g.elemSize;
        if (element >= defenderChunk.length / size) revert BadElement();
        g.elementIndex = uint256(g.chunkIndex) * (Commitments.CHUNK_BYTES / size) + element;
        g.claimedBits = Commitments.elementBits(defenderChunk, element, size);
        emit ElementPicked(gameId, g.elementIndex, g.claimedBits);
        _requireProof(gameId, g, IOneStepVerifier.Claim.Element);
    }

    // -----------------------------------------------------------------------------------------
    // Level 3: accumulation chains (docs/trace-layout.md §L9)

    /// @notice D reveals the accumulation chain of the disputed element when the verifier will
    ///         not decide it whole (`chainLength` > 0): `accs[j]` is the accumulator after link j
    ///         and `accs[n − 1]` must be D's claimed element. Only once per game, in the proof of
    ///         an Element claim.
    /// @param gameId The game.
    /// @param accs D's chain, float32 bits, one entry per link.
    /// @param witness The element witness the verifier reads the chain length from (it reverts
    ///        on an invalid one).
    function revealChain(uint256 gameId, uint32[] calldata accs, bytes calldata witness) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.Proof) revert WrongPhase(Phase.Proof, g.phase);
        if (g.claimKind != IOneStepVerifier.Claim.Element) revert NotChained();
        if (g.links != 0) revert ChainAlreadyRevealed();
        Party[2] storage p = _parties[gameId];
        _spend(g, p, D);
        uint256 n = verifier.chainLength(stepContext(gameId), witness); // a staticcall (view)
        if (n == 0) revert NotChained();
        if (n > MAX_LINKS || accs.length != n || accs[n - 1] != g.claimedBits) revert BadChain();
        g.chainHash = keccak256(abi.encode(accs));
        g.links = uint64(n);
        g.phase = Phase.LinkPick;
        _turnTo(g, C);
        emit ChainRevealed(gameId, accs);
    }

    /// @notice C names the link of D's chain it disputes; the one-step then decides that link
    ///         (claimed `accs[link]`, started from `accs[link − 1]`, or from the element's acc
    ///         input for link 0).
    /// @param gameId The game.
    /// @param link Index of the link, < the chain's length.
    /// @param accs D's chain as revealed (checked against its stored hash).
    function pickLink(uint256 gameId, uint256 link, uint32[] calldata accs) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.LinkPick) revert WrongPhase(Phase.LinkPick, g.phase);
        Party[2] storage p = _parties[gameId];
        _spend(g, p, C);
        if (keccak256(abi.encode(accs)) != g.chainHash) revert BadChain();
        if (link >= g.links) revert BadLink();
        uint32 start = link == 0 ? 0 : accs[link - 1];
        g.claimedBits = accs[link];
        g.link = uint64(link);
        g.linkStart = start;
        g.linkPicked = true;
        emit LinkPicked(gameId, link, start, accs[link]);
        _requireProof(gameId, g, IOneStepVerifier.Claim.Element);
    }

    function _checkChunk(Game storage g, Party[2] storage p, bytes calldata chunk) internal view {
        if (chunk.length != Commitments.chunkLength(g.byteLength, g.chunkIndex)) revert BadChunk();
        if (Merkle.chunkLeaf(chunk) != p[D].node) revert BadChunk();
    }

    // -----------------------------------------------------------------------------------------
    // Resolution

    /// @notice Decides the pending one-step claim through the verifier. Anyone may call with a
    ///         witness; an invalid witness makes the verifier revert, never decide. An Element
    ///         whose chain has links is only decided once a link was picked (the verifier
    ///         reverts before: D must `revealChain`).
    /// @param gameId The game.
    /// @param witness Opaque proof data for the verifier.
    function resolve(uint256 gameId, bytes calldata witness) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.Proof) revert WrongPhase(Phase.Proof, g.phase);
        Party[2] storage p = _parties[gameId];
        _checkClock(g, p);
        bool ok = verifier.verify(g.claimKind, stepContext(gameId), witness);
        _finish(gameId, g, ok, Reason.Verifier);
    }

    /// @notice Settles a length dispute: proves trace leaf `proofIndex` (agreed by both
    ///         parties) in the padding side's tree. ZERO → the other side claimed a real leaf
    ///         there and loses; not ZERO → the padding side mis-stated its length and loses.
    /// @param gameId The game.
    /// @param leaf The leaf value.
    /// @param proof Its C3 siblings, bottom-up, in the lifted tree the game dissected.
    function proveLength(uint256 gameId, bytes32 leaf, bytes32[] calldata proof) external {
        Game storage g = _game(gameId);
        if (g.phase != Phase.LengthProof) revert WrongPhase(Phase.LengthProof, g.phase);
        Party[2] storage p = _parties[gameId];
        _checkClock(g, p);
        uint8 pad = g.proofSide;
        uint256 dD = Merkle.depthOf(p[D].length);
        uint256 dC = Merkle.depthOf(p[C].length);
        uint256 h = dD > dC ? dD : dC;
        bytes32 root = Merkle.lift(p[pad].root, Merkle.depthOf(p[pad].length), h);
        if (!Merkle.verify(leaf, g.proofIndex, proof, root, h)) revert BadProof();
        bool padLoses = leaf != bytes32(0);
        bool defenderWon = padLoses == (pad == C);
        _finish(gameId, g, defenderWon, Reason.LengthProof);
    }

    /// @notice Ends the game against the side to move once its clock has run out. Anyone may
    ///         call.
    /// @param gameId The game.
    function claimTimeout(uint256 gameId) external {
        Game storage g = _game(gameId);
        if (g.phase == Phase.Resolved) revert WrongPhase(Phase.None, g.phase);
        Party[2] storage p = _parties[gameId];
        if (block.timestamp - g.turnStart <= p[g.turn].clock) revert ClockRunning();
        _finish(gameId, g, g.turn == C, Reason.Timeout);
    }

    // -----------------------------------------------------------------------------------------
    // Views

    /// @notice The context the verifier receives for the pending claim. `claim`: D's header for
    ///         OutputHeader; abi.encode(uint256 link, uint256 startBits) for an Element once a
    ///         link of its chain was picked; otherwise empty.
    /// @param gameId The game.
    function stepContext(uint256 gameId) public view returns (IOneStepVerifier.StepContext memory ctx) {
        Game storage g = _games[gameId];
        Party storage d = _parties[gameId][D];
        bytes memory claim;
        if (g.claimKind == IOneStepVerifier.Claim.OutputHeader) {
            claim = g.claim;
        } else if (g.claimKind == IOneStepVerifier.Claim.Element && g.linkPicked) {
            claim = abi.encode(uint256(g.link), uint256(g.linkStart));
        }
        ctx = IOneStepVerifier.StepContext({
            jobId: g.jobId,
            modelHash: g.modelHash,
            programRoot: g.programRoot,
            inputHash: g.inputHash,
            configHash: g.configHash,
            traceRoot: d.root,
            traceLength: d.length,
            leafIndex: g.leafIndex,
            opHash: d.opHash,
            outputRoot: d.outputRoot,
            elementIndex: g.elementIndex,
            claimedBits: g.claimedBits,
            claim: claim
        });
    }

    /// @notice Game state for off-chain players.
    function gameInfo(uint256 gameId)
        external
        view
        returns (
            uint256 jobId,
            Phase phase,
            uint8 turn,
            uint8 height,
            uint64 pos,
            uint64 leafIndex,
            uint64 chunkIndex,
            bool defenderWon
        )
    {
        Game storage g = _games[gameId];
        return (g.jobId, g.phase, g.turn, g.height, g.pos, g.leafIndex, g.chunkIndex, g.defenderWon);
    }

    /// @notice Level-3 state for off-chain players: the hash of D's revealed chain
    ///         (keccak256(abi.encode(accs))), its number of links (0 = none revealed), whether C
    ///         picked a link, and which.
    /// @param gameId The game.
    function chainInfo(uint256 gameId)
        external
        view
        returns (bytes32 accsHash, uint256 links, bool picked, uint256 link)
    {
        Game storage g = _games[gameId];
        return (g.chainHash, g.links, g.linkPicked, g.link);
    }

    /// @notice Compact-trace state (docs/trace-layout.md §L10): the model's compact root (0 = a
    ///         full-trace game, which never expands), whether the expansion is done (output
    ///         games: D's; otherwise both sides'), the compact leaf it binds (output games:
    ///         0 until D's move fixes it), and whether it is an output game (only D expands,
    ///         at the disputed token's leaf).
    /// @param gameId The game.
    function compactInfo(uint256 gameId)
        external
        view
        returns (bytes32 compactRoot, bool expanded, uint64 leafIndex, bool outputGame)
    {
        Game storage g = _games[gameId];
        return (g.compactRoot, g.expanded, g.compactLeaf, g.outputGame);
    }

    /// @notice Per-party state: address, committed root and length, clock left, current node.
    function partyInfo(uint256 gameId, uint8 side)
        external
        view
        returns (address who, bytes32 root, uint64 length, uint64 clock, bytes32 node)
    {
        Party storage q = _parties[gameId][side];
        return (q.who, q.root, q.length, q.clock, q.node);
    }

    /// @notice The pending decision: claim kind and its fields, the length-proof index and the
    ///         side whose trace claims padding there, and the current turn's deadline.
    function pending(uint256 gameId)
        external
        view
        returns (
            IOneStepVerifier.Claim kind,
            uint256 elementIndex,
            uint256 claimedBits,
            uint64 proofIndex,
            uint8 proofSide,
            uint256 deadline
        )
    {
        Game storage g = _games[gameId];
        return (
            g.claimKind,
            g.elementIndex,
            g.claimedBits,
            g.proofIndex,
            g.proofSide,
            uint256(g.turnStart) + _parties[gameId][g.turn].clock
        );
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    function _game(uint256 gameId) internal view returns (Game storage g) {
        g = _games[gameId];
        if (g.phase == Phase.None) revert BadGame(gameId);
    }

    function _requireBisect(Game storage g) internal view {
        if (g.phase != Phase.TraceBisect && g.phase != Phase.TensorBisect) revert WrongPhase(Phase.TraceBisect, g.phase);
    }

    /// @dev Width of this round's reveal: 2^min(BITS, height).
    function _width(uint8 height) internal pure returns (uint256) {
        return 1 << (height < BITS ? height : BITS);
    }

    /// @dev Chess clock: the mover pays the time since its turn began; moving after the budget
    ///      is spent is refused (the other side claims the timeout instead).
    function _spend(Game storage g, Party[2] storage p, uint8 side) internal {
        if (g.turn != side) revert NotYourTurn();
        if (msg.sender != p[side].who) revert NotParty();
        uint256 elapsed = block.timestamp - g.turnStart;
        if (elapsed > p[side].clock) revert ClockExpired();
        p[side].clock -= uint64(elapsed);
        g.turnStart = uint64(block.timestamp);
    }

    function _checkClock(Game storage g, Party[2] storage p) internal view {
        if (block.timestamp - g.turnStart > p[g.turn].clock) revert ClockExpired();
    }

    /// @dev Hands the move to `side` without charging anyone (used after an automatic step).
    function _turnTo(Game storage g, uint8 side) internal {
        g.turn = side;
    }

    /// @dev Pending one-step claim: D's clock runs (D must justify its claim; C may resolve
    ///      early with its own witness).
    function _requireProof(uint256 gameId, Game storage g, IOneStepVerifier.Claim kind) internal {
        g.phase = Phase.Proof;
        g.claimKind = kind;
        _turnTo(g, D);
        emit ProofRequired(gameId, kind);
    }

    function _requireLengthProof(uint256 gameId, Game storage g, uint8 paddingSide, uint64 index) internal {
        g.phase = Phase.LengthProof;
        g.proofSide = paddingSide;
        g.proofIndex = index;
        _turnTo(g, D);
        emit LengthProofRequired(gameId, index, paddingSide);
    }

    /// @dev Effects before the interaction: the game is Resolved before the market is told.
    function _finish(uint256 gameId, Game storage g, bool defenderWon, Reason reason) internal {
        g.phase = Phase.Resolved;
        g.defenderWon = defenderWon;
        emit GameResolved(gameId, defenderWon, reason);
        market.onGameResolved(gameId, defenderWon);
    }
}
