// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IJobResult} from "../protocol/interfaces/IJobResult.sol";

/// @title PredictionMarket
/// @notice Example consumer (DESIGN §6 "Consumers"): a YES/NO market that settles from a
///         verified model answer. The question is the input of a job posted to the JobMarket;
///         the market resolves YES or NO from the first generated token that is one of the
///         configured answer tokens, and INVALID (everyone refunded) when the job fails or the
///         model answered neither.
/// @dev Pull payments, checks-effects-interactions, bounded loops (answer sets ≤ 8 ids,
///      output ≤ the JobMarket's MAX_TOKENS).
contract PredictionMarket {
    enum Outcome {
        Unresolved,
        Yes,
        No,
        Invalid
    }

    struct Market {
        uint256 jobId;
        uint64 bettingCloses;
        Outcome outcome;
        uint256 yesPool;
        uint256 noPool;
        uint32[] yesTokens;
        uint32[] noTokens;
    }

    uint256 public constant MAX_ANSWER_TOKENS = 8;

    IJobResult public immutable jobs;
    uint256 public marketCount;
    mapping(uint256 => Market) internal _markets;
    /// @notice stakes[marketId][bettor][0 = NO, 1 = YES]
    mapping(uint256 => mapping(address => uint256[2])) public stakes;

    uint256 private _lock = 1;

    error BadMarket();
    error BettingClosed();
    error BettingOpen();
    error NotReady(IJobResult.Status status);
    error AlreadySettled();
    error NotSettled();
    error NothingToClaim();
    error TransferFailed();
    error Reentrancy();

    /// @notice A market on job `jobId`'s answer was opened.
    event MarketCreated(uint256 indexed marketId, uint256 indexed jobId, uint64 bettingCloses, uint32[] yesTokens, uint32[] noTokens);
    /// @notice A bet was placed.
    event BetPlaced(uint256 indexed marketId, address indexed bettor, bool yes, uint256 amount);
    /// @notice The market settled from the job's verified result.
    event Settled(uint256 indexed marketId, Outcome outcome, bytes32 outputHash);
    /// @notice A payout was claimed.
    event Claimed(uint256 indexed marketId, address indexed bettor, uint256 amount);

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(IJobResult jobs_) {
        jobs = jobs_;
    }

    /// @notice Opens a market on the answer of job `jobId`.
    /// @param jobId A job whose input asks a YES/NO question.
    /// @param bettingCloses Last second bets are accepted.
    /// @param yesTokens Token ids that mean YES (1..8 of them).
    /// @param noTokens Token ids that mean NO (1..8 of them).
    /// @return marketId The market's id.
    function createMarket(uint256 jobId, uint64 bettingCloses, uint32[] calldata yesTokens, uint32[] calldata noTokens)
        external
        returns (uint256 marketId)
    {
        (IJobResult.Status status,,) = jobs.resultOf(jobId);
        if (
            status == IJobResult.Status.None || yesTokens.length == 0 || noTokens.length == 0
                || yesTokens.length > MAX_ANSWER_TOKENS || noTokens.length > MAX_ANSWER_TOKENS
        ) revert BadMarket();
        marketId = ++marketCount;
        Market storage m = _markets[marketId];
        m.jobId = jobId;
        m.bettingCloses = bettingCloses;
        m.yesTokens = yesTokens;
        m.noTokens = noTokens;
        emit MarketCreated(marketId, jobId, bettingCloses, yesTokens, noTokens);
    }

    /// @notice Bets msg.value on YES (`yes` true) or NO.
    /// @param marketId The market.
    /// @param yes The side.
    function bet(uint256 marketId, bool yes) external payable {
        Market storage m = _market(marketId);
        if (block.timestamp > m.bettingCloses || m.outcome != Outcome.Unresolved) revert BettingClosed();
        if (msg.value == 0) revert BadMarket();
        stakes[marketId][msg.sender][yes ? 1 : 0] += msg.value;
        if (yes) m.yesPool += msg.value;
        else m.noPool += msg.value;
        emit BetPlaced(marketId, msg.sender, yes, msg.value);
    }

    /// @notice Settles from the job's result once it is Finalized (or Failed → INVALID).
    ///         Anyone may call.
    /// @param marketId The market.
    function settle(uint256 marketId) external {
        Market storage m = _market(marketId);
        if (m.outcome != Outcome.Unresolved) revert AlreadySettled();
        if (block.timestamp <= m.bettingCloses) revert BettingOpen();
        (IJobResult.Status status, bytes32 outputHash, uint32[] memory tokens) = jobs.resultOf(m.jobId);
        Outcome o;
        if (status == IJobResult.Status.Finalized) {
            o = answerOf(tokens, m.yesTokens, m.noTokens);
        } else if (status == IJobResult.Status.Failed) {
            o = Outcome.Invalid;
        } else {
            revert NotReady(status);
        }
        // A market where one side has no stake cannot pay winners from losers: refund all.
        if ((o == Outcome.Yes && m.yesPool == 0) || (o == Outcome.No && m.noPool == 0)) o = Outcome.Invalid;
        m.outcome = o;
        emit Settled(marketId, o, outputHash);
    }

    /// @notice Pays the caller: winners share the whole pool pro rata; INVALID refunds stakes.
    /// @param marketId The market.
    function claim(uint256 marketId) external nonReentrant {
        Market storage m = _market(marketId);
        if (m.outcome == Outcome.Unresolved) revert NotSettled();
        uint256[2] storage s = stakes[marketId][msg.sender];
        uint256 amount;
        if (m.outcome == Outcome.Invalid) {
            amount = s[0] + s[1];
        } else {
            bool yesWon = m.outcome == Outcome.Yes;
            uint256 stake = s[yesWon ? 1 : 0];
            uint256 winPool = yesWon ? m.yesPool : m.noPool;
            amount = stake == 0 ? 0 : stake * (m.yesPool + m.noPool) / winPool;
        }
        if (amount == 0) revert NothingToClaim();
        s[0] = 0;
        s[1] = 0;
        emit Claimed(marketId, msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    /// @notice The answer in `tokens`: the first token that is in either answer set.
    function answerOf(uint32[] memory tokens, uint32[] memory yesSet, uint32[] memory noSet)
        public
        pure
        returns (Outcome)
    {
        for (uint256 i = 0; i < tokens.length; ++i) {
            if (_contains(yesSet, tokens[i])) return Outcome.Yes;
            if (_contains(noSet, tokens[i])) return Outcome.No;
        }
        return Outcome.Invalid;
    }

    /// @notice Market fields for UIs and the demo.
    function marketOf(uint256 marketId)
        external
        view
        returns (uint256 jobId, uint64 bettingCloses, Outcome outcome, uint256 yesPool, uint256 noPool)
    {
        Market storage m = _markets[marketId];
        return (m.jobId, m.bettingCloses, m.outcome, m.yesPool, m.noPool);
    }

    function _market(uint256 marketId) internal view returns (Market storage m) {
        m = _markets[marketId];
        if (m.jobId == 0) revert BadMarket();
    }

    function _contains(uint32[] memory set, uint32 t) internal pure returns (bool) {
        for (uint256 i = 0; i < set.length; ++i) {
            if (set[i] == t) return true;
        }
        return false;
    }
}
