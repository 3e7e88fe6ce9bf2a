// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IOneStepVerifier} from "../../protocol/interfaces/IOneStepVerifier.sol";

/// @title OneStepHarness
/// @notice Batches many `verify` calls into one eth_call for the differential tests
///         (tests/referee): 1 = defender correct, 0 = defender wrong, 2 = reverted.
contract OneStepHarness {
    IOneStepVerifier public immutable verifier;

    constructor(IOneStepVerifier v) {
        verifier = v;
    }

    function verifyMany(
        IOneStepVerifier.Claim[] calldata kinds,
        IOneStepVerifier.StepContext[] calldata ctxs,
        bytes[] calldata witnesses
    ) external view returns (uint8[] memory out, uint256[] memory gasUsed) {
        out = new uint8[](kinds.length);
        gasUsed = new uint256[](kinds.length);
        for (uint256 i = 0; i < kinds.length; ++i) {
            uint256 g = gasleft();
            try verifier.verify(kinds[i], ctxs[i], witnesses[i]) returns (bool ok) {
                out[i] = ok ? 1 : 0;
            } catch {
                out[i] = 2;
            }
            gasUsed[i] = g - gasleft();
        }
    }
}
