// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IGameSettlement
/// @notice The callback the dispute game makes to the job market when a game ends. The market
///         holds every wei; the game only decides who won.
interface IGameSettlement {
    function onGameResolved(uint256 gameId, bool defenderWon) external;
}
