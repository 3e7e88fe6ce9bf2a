// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Commitments} from "../lib/Commitments.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {IJobResult} from "./interfaces/IJobResult.sol";
import {IGameSettlement} from "./interfaces/IGameSettlement.sol";
import {DisputeGame} from "./DisputeGame.sol";

/// @title JobMarket
/// @notice Jobs, commitments, bonds and payouts of DESIGN §6: a requester posts a job with a
///         reward; 1 executor (optimistic) or n executors (refereed delegation) commit output
///         tokens and a trace root with a bond; during each commitment's challenge window anyone
///         may dispute it with an equal bond; executors that disagree can be made to play each
///         other. The DisputeGame decides every game; this contract moves the money.
/// @dev Money rules: every wei is either escrowed for a job (`totalEscrow`: rewards and bonds
///      at stake), credited to an address (`totalCredit`, withdrawn by pull payment), or burned
///      (`totalBurned`, locked here forever). The solvency invariant is
///      balance == totalEscrow + totalCredit + totalBurned. No admin can touch any of it.
///      Burn: BURN_BPS of every forfeited bond is burned so that a cheater cannot recover its
///      whole bond by racing to challenge itself from a second address.
contract JobMarket is IJobResult, IGameSettlement {
    /// @notice Share of a forfeited bond that is burned, in basis points (10%).
    uint256 public constant BURN_BPS = 1000;
    /// @notice Upper bound on executors per job (bounds every loop over slots).
    uint8 public constant MAX_EXECUTORS = 16;
    /// @notice Upper bound on output tokens per job (bounds the output comparison loop).
    uint32 public constant MAX_TOKENS = 4096;
    /// @notice Marker for "challenger is not an executor slot".
    uint8 public constant EXTERNAL = type(uint8).max;

    /// @notice Generation parameters (hashed into the job; the bytes are in JobPosted). Valid
    ///         ranges (RepOps spec §7.3), enforced by postJob: 1 ≤ maxTokens ≤ MAX_TOKENS;
    ///         temperature finite and ≥ 0 (−0 counts as 0); 0 < topP ≤ 1 (1.0 = disabled).
    struct JobConfig {
        uint32 maxTokens;
        uint32 temperature; // float32 bits; 0 = greedy
        uint32 topK; // 0 = disabled
        uint32 topP; // float32 bits; 0x3F800000 (1.0) = disabled
        uint64 seed;
    }

    /// @notice What a requester asks for.
    struct JobRequest {
        bytes32 modelHash;
        JobConfig config;
        uint64 deadline; // last second a commitment is accepted
        uint64 challengeWindow; // seconds after each commitment
        uint256 bond; // required of every executor and every challenger
        uint8 nExecutors;
    }

    struct Job {
        address requester;
        uint64 deadline;
        uint64 challengeWindow;
        uint64 lastCommitAt;
        uint8 nExecutors;
        uint8 nCommitted;
        uint8 winnerSlot;
        Status status;
        uint32 activeGames;
        uint32 maxTokens;
        bytes32 modelHash;
        bytes32 programRoot;
        bytes32 inputHash;
        bytes32 configHash;
        uint256 reward;
        uint256 bond;
    }

    struct Commitment {
        address executor;
        uint64 committedAt;
        uint64 traceLength;
        bool eliminated; // lost a game; its bond is already paid out
        bytes32 outputHash;
        bytes32 traceRoot;
        uint32[] tokens;
    }

    struct GameRecord {
        uint256 jobId;
        uint8 defenderSlot;
        uint8 challengerSlot; // EXTERNAL for an outside challenger
        address challenger;
        uint256 challengerBond; // escrowed for an outside challenger, 0 for a slot
    }

    /// @dev The challenging side of a new game: its trace commitment, or (outputMode) the
    ///      disputed output token of an agreed trace.
    struct Opponent {
        bytes32 root;
        uint64 length;
        bool outputMode;
        uint256 tokenIndex;
        uint256 claimed;
    }

    IModelRegistry public immutable registry;
    DisputeGame public immutable game;

    uint256 public jobCount;
    uint256 public totalEscrow;
    uint256 public totalCredit;
    uint256 public totalBurned;

    mapping(uint256 => Job) internal _jobs;
    mapping(uint256 => mapping(uint256 => Commitment)) internal _commits;
    mapping(uint256 => GameRecord) public gameRecords;
    /// @notice Open game between two slots of a job (key: keccak(jobId, a, b), a < b).
    mapping(bytes32 => bool) public pairInDispute;
    /// @notice Pull-payment balances.
    mapping(address => uint256) public balanceOf;

    uint256 private _lock = 1;

    error UnknownModel(bytes32 modelHash);
    error BadRequest();
    /// @notice maxTokens is 0 or above MAX_TOKENS.
    error BadMaxTokens(uint32 maxTokens);
    /// @notice The temperature's float32 bits are NaN, ±inf or negative (RepOps spec §7.3).
    error BadTemperature(uint32 bits);
    /// @notice top_p's float32 bits are not in (0, 1]: ≤ 0, > 1 or NaN (RepOps spec §7.3).
    error BadTopP(uint32 bits);
    /// @notice The input is not a whole number of uint32 tokens (commitments C6).
    error InputNotTokens(uint256 byteLength);
    /// @notice The input has no token; step 0 of a trace program needs one (trace layout §L1).
    error EmptyInput();
    /// @notice Input tokens + maxTokens exceed the positions the model's program was compiled for.
    error ContextExceeded(uint256 inputTokens, uint32 maxTokens, uint32 maxContext);
    /// @notice Input token `index` is `token`, not below the model's vocabulary size.
    error TokenOutOfVocab(uint256 index, uint32 token, uint32 vocabSize);
    error NoSuchJob(uint256 jobId);
    error WrongStatus(Status expected, Status actual);
    error WrongValue(uint256 expected, uint256 got);
    error DeadlinePassed();
    error SlotsFull();
    error AlreadyCommitted();
    error OutputHashMismatch();
    error TooManyTokens();
    error BadSlot();
    error WindowClosed();
    error SameClaim();
    error NotGame();
    error NotFinalizable();
    error Disagreement();
    error NothingToWithdraw();
    error TransferFailed();
    error Reentrancy();
    error BadTokenIndex();
    error PairInDispute();

    /// @notice A job was posted; `input` (C6 token bytes) and `config` let anyone re-run it.
    event JobPosted(
        uint256 indexed jobId,
        address indexed requester,
        bytes32 indexed modelHash,
        bytes input,
        JobConfig config,
        uint256 reward,
        uint256 bond,
        uint64 deadline,
        uint64 challengeWindow,
        uint8 nExecutors
    );
    /// @notice An executor committed a result in `slot`.
    event Committed(
        uint256 indexed jobId,
        uint8 indexed slot,
        address indexed executor,
        bytes32 outputHash,
        bytes32 traceRoot,
        uint64 traceLength,
        uint32[] tokens
    );
    /// @notice A dispute game was opened against `defenderSlot`.
    event Challenged(
        uint256 indexed jobId, uint256 indexed gameId, uint8 defenderSlot, uint8 challengerSlot, address challenger
    );
    /// @notice A game's outcome was settled; `loser` forfeited `forfeited` wei of which `burned`.
    event GameSettled(uint256 indexed jobId, uint256 indexed gameId, bool defenderWon, address winner, uint256 paid, uint256 burned);
    /// @notice An executor slot lost a game and is out.
    event Eliminated(uint256 indexed jobId, uint8 indexed slot);
    /// @notice The job's result is final.
    event Finalized(uint256 indexed jobId, bytes32 outputHash, uint8 survivors);
    /// @notice The job ended without a result; the reward went back to the requester.
    event Failed(uint256 indexed jobId);
    /// @notice `who` was credited `amount` (claimable through withdraw).
    event Credited(address indexed who, uint256 amount);
    /// @notice `who` withdrew `amount`.
    event Withdrawn(address indexed who, uint256 amount);

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(IModelRegistry registry_, DisputeGame game_) {
        registry = registry_;
        game = game_;
    }

    // -----------------------------------------------------------------------------------------
    // Requester

    /// @notice Posts a job; msg.value is the reward. A job the registered program cannot run
    ///         is refused, because only a made-up trace could answer it and no one-step could
    ///         check that trace (each refusal names its reason):
    ///         UnknownModel; BadRequest (executors not 1..MAX_EXECUTORS, deadline passed, zero
    ///         window, no reward); BadMaxTokens, BadTemperature, BadTopP (config, RepOps spec
    ///         §7.3); InputNotTokens, EmptyInput, ContextExceeded, TokenOutOfVocab (input against
    ///         the model's registered limits).
    /// @param req Model, config, deadline, window, bond and executor count.
    /// @param input The input tokens as C6 bytes (uint32 big-endian each).
    /// @return jobId The new job's id.
    function postJob(JobRequest calldata req, bytes calldata input) external payable nonReentrant returns (uint256 jobId) {
        {
            bytes32 programRoot = _checkJob(req, input);
            jobId = ++jobCount;
            Job storage j = _jobs[jobId];
            j.requester = msg.sender;
            j.deadline = req.deadline;
            j.challengeWindow = req.challengeWindow;
            j.nExecutors = req.nExecutors;
            j.status = Status.Open;
            j.maxTokens = req.config.maxTokens;
            j.modelHash = req.modelHash;
            j.programRoot = programRoot;
            j.inputHash = keccak256(input);
            j.configHash = keccak256(abi.encode(req.config));
            j.reward = msg.value;
            j.bond = req.bond;
        }
        totalEscrow += msg.value;
        emit JobPosted(
            jobId, msg.sender, req.modelHash, input, req.config, msg.value, req.bond, req.deadline, req.challengeWindow, req.nExecutors
        );
    }

    // -----------------------------------------------------------------------------------------
    // Executor

    /// @notice Commits a result with the job's bond (msg.value). The first n executors get slots.
    /// @param jobId The job.
    /// @param tokens The output tokens.
    /// @param outputHash C6 hash of `tokens` (checked).
    /// @param traceRoot C5 trace root.
    /// @param traceLength Number of trace leaves (ops executed).
    /// @return slot The executor's slot.
    function commit(uint256 jobId, uint32[] calldata tokens, bytes32 outputHash, bytes32 traceRoot, uint64 traceLength)
        external
        payable
        nonReentrant
        returns (uint8 slot)
    {
        Job storage j = _job(jobId);
        if (j.status != Status.Open && j.status != Status.Committed) revert WrongStatus(Status.Open, j.status);
        if (block.timestamp > j.deadline) revert DeadlinePassed();
        if (j.nCommitted >= j.nExecutors) revert SlotsFull();
        if (msg.value != j.bond) revert WrongValue(j.bond, msg.value);
        if (tokens.length > j.maxTokens) revert TooManyTokens();
        if (Commitments.tokensHash(tokens) != outputHash) revert OutputHashMismatch();
        if (traceLength == 0 || traceLength > 1 << 32) revert BadRequest();
        for (uint8 s = 0; s < j.nCommitted; ++s) {
            if (_commits[jobId][s].executor == msg.sender) revert AlreadyCommitted();
        }
        slot = j.nCommitted++;
        Commitment storage c = _commits[jobId][slot];
        c.executor = msg.sender;
        c.committedAt = uint64(block.timestamp);
        c.traceLength = traceLength;
        c.outputHash = outputHash;
        c.traceRoot = traceRoot;
        c.tokens = tokens;
        j.lastCommitAt = uint64(block.timestamp);
        j.status = Status.Committed;
        totalEscrow += msg.value;
        emit Committed(jobId, slot, msg.sender, outputHash, traceRoot, traceLength, tokens);
    }

    // -----------------------------------------------------------------------------------------
    // Disputes

    /// @notice Disputes executor slot `slot` with the job's bond (msg.value) and the
    ///         challenger's own trace commitment. Equal root and length means the trace is
    ///         agreed and output token `tokenIndex` is disputed instead (DESIGN §6 checklist 4).
    /// @param jobId The job.
    /// @param slot The executor slot disputed.
    /// @param traceRoot The challenger's trace root.
    /// @param traceLength The challenger's trace length.
    /// @param tokenIndex Output-token dispute only: the token position (≤ tokens.length).
    /// @return gameId The game's id.
    function challenge(uint256 jobId, uint8 slot, bytes32 traceRoot, uint64 traceLength, uint256 tokenIndex)
        external
        payable
        nonReentrant
        returns (uint256 gameId)
    {
        Job storage j = _job(jobId);
        if (j.status != Status.Committed) revert WrongStatus(Status.Committed, j.status);
        Commitment storage c = _liveSlot(jobId, j, slot);
        if (block.timestamp > uint256(c.committedAt) + j.challengeWindow) revert WindowClosed();
        if (msg.value != j.bond) revert WrongValue(j.bond, msg.value);
        Opponent memory o = Opponent(traceRoot, traceLength, false, tokenIndex, 0);
        if (traceRoot == c.traceRoot && traceLength == c.traceLength) {
            if (tokenIndex > c.tokens.length) revert BadTokenIndex();
            o.outputMode = true;
            o.claimed = tokenIndex == c.tokens.length ? type(uint256).max : c.tokens[tokenIndex];
        }
        totalEscrow += msg.value;
        emit Challenged(jobId, game.gameCount() + 1, slot, EXTERNAL, msg.sender);
        gameId = _open(jobId, j, c, GameRecord(jobId, slot, EXTERNAL, msg.sender, msg.value), o);
    }

    /// @notice Refereed delegation: makes two live executor slots that disagree play each other
    ///         (slot `a` defends). Anyone may call; both bonds are already at stake.
    /// @param jobId The job.
    /// @param a Defending slot (a < b).
    /// @param b Challenging slot.
    /// @return gameId The game's id.
    function disputeSlots(uint256 jobId, uint8 a, uint8 b) external nonReentrant returns (uint256 gameId) {
        Job storage j = _job(jobId);
        if (j.status != Status.Committed) revert WrongStatus(Status.Committed, j.status);
        if (a >= b) revert BadSlot();
        Commitment storage ca = _liveSlot(jobId, j, a);
        Commitment storage cb = _liveSlot(jobId, j, b);
        bytes32 key = keccak256(abi.encode(jobId, a, b));
        if (pairInDispute[key]) revert PairInDispute();
        Opponent memory o = Opponent(cb.traceRoot, cb.traceLength, false, 0, 0);
        if (ca.traceRoot == cb.traceRoot && ca.traceLength == cb.traceLength) {
            if (ca.outputHash == cb.outputHash) revert SameClaim();
            o.outputMode = true;
            o.tokenIndex = _firstTokenDifference(ca.tokens, cb.tokens);
            o.claimed = o.tokenIndex == ca.tokens.length ? type(uint256).max : ca.tokens[o.tokenIndex];
        }
        pairInDispute[key] = true;
        emit Challenged(jobId, game.gameCount() + 1, a, b, cb.executor);
        gameId = _open(jobId, j, ca, GameRecord(jobId, a, b, cb.executor, 0), o);
    }

    /// @inheritdoc IGameSettlement
    /// @dev Pays the winner from the loser's bond (minus the burn). A slot already eliminated
    ///      by an earlier game forfeits nothing twice; an outside challenger that wins also gets
    ///      its own bond back.
    function onGameResolved(uint256 gameId, bool defenderWon) external {
        if (msg.sender != address(game)) revert NotGame();
        GameRecord storage r = gameRecords[gameId];
        Job storage j = _jobs[r.jobId];
        j.activeGames -= 1;
        if (r.challengerSlot != EXTERNAL) {
            if (r.defenderSlot < r.challengerSlot) {
                delete pairInDispute[keccak256(abi.encode(r.jobId, r.defenderSlot, r.challengerSlot))];
            }
        }
        address defender = _commits[r.jobId][r.defenderSlot].executor;
        uint256 paid;
        uint256 burned;
        address winner;
        if (defenderWon) {
            winner = defender;
            if (r.challengerSlot == EXTERNAL) {
                (paid, burned) = _forfeit(r.challengerBond, defender);
            } else {
                (paid, burned) = _forfeitSlot(r.jobId, j, r.challengerSlot, defender);
            }
        } else {
            winner = r.challenger;
            (paid, burned) = _forfeitSlot(r.jobId, j, r.defenderSlot, r.challenger);
            if (r.challengerSlot == EXTERNAL) {
                totalEscrow -= r.challengerBond;
                _credit(r.challenger, r.challengerBond);
            }
        }
        emit GameSettled(r.jobId, gameId, defenderWon, winner, paid, burned);
    }

    // -----------------------------------------------------------------------------------------
    // Settlement

    /// @notice Ends a job once nothing can change it any more: every commitment's window has
    ///         passed, no game is running, and the live executors agree. Pays each live
    ///         executor its bond and an equal share of the reward. With no live executor (or no
    ///         commitment by the deadline) the job fails and the requester gets the reward back.
    ///         Anyone may call.
    /// @param jobId The job.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage j = _job(jobId);
        if (j.status == Status.Open) {
            if (block.timestamp <= j.deadline) revert NotFinalizable();
            return _fail(jobId, j);
        }
        if (j.status != Status.Committed) revert WrongStatus(Status.Committed, j.status);
        if (j.activeGames != 0) revert NotFinalizable();
        if (j.nCommitted < j.nExecutors && block.timestamp <= j.deadline) revert NotFinalizable();
        if (block.timestamp <= uint256(j.lastCommitAt) + j.challengeWindow) revert NotFinalizable();
        (uint8 live, uint8 first) = _liveAgreeing(jobId, j);
        if (live == 0) return _fail(jobId, j);
        j.status = Status.Finalized;
        j.winnerSlot = first;
        uint256 share = j.reward / live;
        uint256 dust = j.reward - share * live;
        totalEscrow -= j.reward + j.bond * live;
        for (uint8 s = 0; s < j.nCommitted; ++s) {
            Commitment storage c = _commits[jobId][s];
            if (c.eliminated) continue;
            _credit(c.executor, j.bond + share + (s == first ? dust : 0));
        }
        emit Finalized(jobId, _commits[jobId][first].outputHash, live);
    }

    /// @notice Withdraws the caller's whole credited balance (pull payment; zeroed first).
    function withdraw() external nonReentrant {
        uint256 amount = balanceOf[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        balanceOf[msg.sender] = 0;
        totalCredit -= amount;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    // -----------------------------------------------------------------------------------------
    // Views

    /// @inheritdoc IJobResult
    function resultOf(uint256 jobId) external view returns (Status status, bytes32 outputHash, uint32[] memory outputTokens) {
        Job storage j = _jobs[jobId];
        status = j.status;
        if (status == Status.Finalized) {
            Commitment storage c = _commits[jobId][j.winnerSlot];
            outputHash = c.outputHash;
            outputTokens = c.tokens;
        }
    }

    /// @notice The job record.
    function jobOf(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @notice A commitment (slot < nCommitted).
    function commitmentOf(uint256 jobId, uint8 slot) external view returns (Commitment memory) {
        return _commits[jobId][slot];
    }

    // -----------------------------------------------------------------------------------------
    // Internals

    /// @dev Every check of postJob (its NatSpec lists them); returns the model's program root.
    ///      The registry is a trusted immutable contract and termsOf a view (staticcall).
    function _checkJob(JobRequest calldata req, bytes calldata input) internal view returns (bytes32 programRoot) {
        uint32 vocabSize;
        uint32 maxContext;
        (programRoot, vocabSize, maxContext) = registry.termsOf(req.modelHash);
        if (programRoot == bytes32(0)) revert UnknownModel(req.modelHash);
        if (
            req.nExecutors == 0 || req.nExecutors > MAX_EXECUTORS || req.deadline <= block.timestamp
                || req.challengeWindow == 0 || msg.value == 0
        ) revert BadRequest();
        _checkConfig(req.config);
        _checkInput(input, req.config.maxTokens, vocabSize, maxContext);
    }

    /// @dev RepOps spec §7.3: temperature finite and ≥ 0 (bits ≤ 0x7F7FFFFF: +0 up to the
    ///      largest finite; 0x80000000 is −0, which counts as 0); 0 < top_p ≤ 1 (bits 1 up to
    ///      0x3F800000: positive subnormals included, NaN and every negative excluded).
    ///      maxTokens 0 would be a trace of one step the requester did not ask for.
    function _checkConfig(JobConfig calldata c) internal pure {
        if (c.maxTokens == 0 || c.maxTokens > MAX_TOKENS) revert BadMaxTokens(c.maxTokens);
        if (c.temperature > 0x7F7FFFFF && c.temperature != 0x80000000) revert BadTemperature(c.temperature);
        if (c.topP == 0 || c.topP > 0x3F800000) revert BadTopP(c.topP);
    }

    /// @dev Commitments C6 tokens that the program can run (trace layout §L1): at least one,
    ///      input + maxTokens within the registered context, every id below the vocabulary.
    ///      The context check comes first, so the token loop runs at most
    ///      maxContext ≤ ModelRegistry.MAX_CONTEXT times. Why input + maxTokens ≤ maxContext
    ///      and not the program's exact need (input + maxTokens − 1 positions: the last token
    ///      is never fed back): it is the rule the node's runner applies (node/served.py), so
    ///      no job is accepted that an honest executor or watchtower would decline to run.
    function _checkInput(bytes calldata input, uint32 maxTokens, uint32 vocabSize, uint32 maxContext) internal pure {
        if (input.length % 4 != 0) revert InputNotTokens(input.length);
        uint256 n = input.length / 4;
        if (n == 0) revert EmptyInput();
        if (n + maxTokens > maxContext) revert ContextExceeded(n, maxTokens, maxContext);
        if (_anyTokenAtLeast(input, n, vocabSize)) {
            for (uint256 i = 0; i < n; ++i) {
                uint32 t = uint32(bytes4(input[4 * i:4 * i + 4]));
                if (t >= vocabSize) revert TokenOutOfVocab(i, t, vocabSize);
            }
        }
    }

    /// @dev Whether any of the n big-endian uint32 tokens of `input` is ≥ `vocabSize` (≥ 1).
    ///      Eight tokens per calldata word with no branch per token (a per-token loop costs
    ///      ~3x more gas), then the 0–7 tokens of the last partial word one by one; lanes past
    ///      the input are never read. Only the revert path looks for the first bad index.
    function _anyTokenAtLeast(bytes calldata input, uint256 n, uint32 vocabSize) internal pure returns (bool bad) {
        assembly ("memory-safe") {
            let top := sub(vocabSize, 1) // a token is bad iff it is > top
            let m := 0xffffffff
            let p := input.offset
            let wordsEnd := add(p, shl(5, shr(3, n)))
            for {} lt(p, wordsEnd) { p := add(p, 32) } {
                let w := calldataload(p)
                bad :=
                    or(
                        or(
                            or(gt(shr(224, w), top), gt(and(shr(192, w), m), top)),
                            or(gt(and(shr(160, w), m), top), gt(and(shr(128, w), m), top))
                        ),
                        or(
                            or(gt(and(shr(96, w), m), top), gt(and(shr(64, w), m), top)),
                            or(gt(and(shr(32, w), m), top), gt(and(w, m), top))
                        )
                    )
                if bad { break }
            }
            let end := add(input.offset, shl(2, n))
            for {} and(iszero(bad), lt(p, end)) { p := add(p, 4) } {
                bad := gt(shr(224, calldataload(p)), top)
            }
        }
    }

    function _job(uint256 jobId) internal view returns (Job storage j) {
        j = _jobs[jobId];
        if (j.status == Status.None) revert NoSuchJob(jobId);
    }

    function _liveSlot(uint256 jobId, Job storage j, uint8 slot) internal view returns (Commitment storage c) {
        if (slot >= j.nCommitted) revert BadSlot();
        c = _commits[jobId][slot];
        if (c.eliminated) revert BadSlot();
    }

    /// @dev Effects before the interaction: the game is recorded under the id the game contract
    ///      will assign (only this contract creates games, so it is gameCount + 1) before
    ///      `create` runs, because a game decidable at once (a one-leaf trace) calls back into
    ///      onGameResolved from inside `create`. A model with a compact commitment (registry
    ///      `compactRootOf`, docs/trace-layout.md §L10) has its commitments' compact traces
    ///      expanded by the game; the registry is a trusted immutable contract and entries never
    ///      change, so reading it here equals reading it at post time.
    function _open(
        uint256 jobId,
        Job storage j,
        Commitment storage c,
        GameRecord memory rec,
        Opponent memory o
    ) internal returns (uint256 gameId) {
        if (o.length == 0 || o.length > 1 << 32) revert BadRequest();
        uint256 expected = game.gameCount() + 1;
        gameRecords[expected] = rec;
        j.activeGames += 1;
        gameId = game.create(
            DisputeGame.Init({
                jobId: jobId,
                modelHash: j.modelHash,
                programRoot: j.programRoot,
                inputHash: j.inputHash,
                configHash: j.configHash,
                defender: c.executor,
                defenderRoot: c.traceRoot,
                defenderLength: c.traceLength,
                challenger: rec.challenger,
                challengerRoot: o.root,
                challengerLength: o.length,
                outputMode: o.outputMode,
                tokenIndex: o.tokenIndex,
                claimedToken: o.claimed,
                compactRoot: registry.compactRootOf(j.modelHash)
            })
        );
        assert(gameId == expected);
    }

    /// @dev Bounded by MAX_TOKENS. Returns the first index where the sequences differ (the
    ///      shorter length when one is a prefix of the other).
    function _firstTokenDifference(uint32[] storage a, uint32[] storage b) internal view returns (uint256 i) {
        uint256 n = a.length < b.length ? a.length : b.length;
        while (i < n && a[i] == b[i]) ++i;
    }

    /// @dev Bounded by MAX_EXECUTORS. Reverts with Disagreement when two live slots differ.
    function _liveAgreeing(uint256 jobId, Job storage j) internal view returns (uint8 live, uint8 first) {
        for (uint8 s = 0; s < j.nCommitted; ++s) {
            Commitment storage c = _commits[jobId][s];
            if (c.eliminated) continue;
            if (live == 0) {
                first = s;
            } else {
                Commitment storage ref = _commits[jobId][first];
                if (c.outputHash != ref.outputHash || c.traceRoot != ref.traceRoot || c.traceLength != ref.traceLength) {
                    revert Disagreement();
                }
            }
            ++live;
        }
    }

    /// @dev A slot's bond goes to `to` (minus the burn) the first time the slot loses.
    function _forfeitSlot(uint256 jobId, Job storage j, uint8 slot, address to) internal returns (uint256, uint256) {
        Commitment storage c = _commits[jobId][slot];
        if (c.eliminated) return (0, 0);
        c.eliminated = true;
        emit Eliminated(jobId, slot);
        return _forfeit(j.bond, to);
    }

    function _forfeit(uint256 amount, address to) internal returns (uint256 paid, uint256 burned) {
        burned = amount * BURN_BPS / 10_000;
        paid = amount - burned;
        totalEscrow -= amount;
        totalBurned += burned;
        _credit(to, paid);
    }

    function _fail(uint256 jobId, Job storage j) internal {
        j.status = Status.Failed;
        totalEscrow -= j.reward;
        _credit(j.requester, j.reward);
        emit Failed(jobId);
    }

    function _credit(address to, uint256 amount) internal {
        if (amount == 0) return;
        balanceOf[to] += amount;
        totalCredit += amount;
        emit Credited(to, amount);
    }
}
