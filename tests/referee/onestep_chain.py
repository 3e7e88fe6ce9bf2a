"""The Solidity one-step on anvil, batched through OneStepHarness (one eth_call per batch)."""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import decode, encode
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from node.chain.anvil import Anvil
from node.chain.compile import CONTRACTS, compile_contracts
from referee.witness import StepContext

SOURCES = ["verifier/OneStepVerifier.sol", "verifier/SampleStep.sol", "verifier/TraceOps.sol",
           "float/Float32.sol", "float/Float32Transcendental.sol", "lib/Merkle.sol",
           "lib/Commitments.sol", "protocol/interfaces/IOneStepVerifier.sol",
           "test/verifier/OneStepHarness.sol"]
CALL_GAS = 4_000_000_000
MAX_CALL_BYTES = 400_000  # witness bytes per eth_call (anvil refuses bodies past ~2 MB of hex)


ERRORS = {"0x" + Web3.keccak(text=sig)[:4].hex().removeprefix("0x"): sig
          for sig in ("ChainRequired(uint256)", "BadLink()", "MissingChunk(uint256)")}


class OneStepChain:
    """`with OneStepChain() as oc: oc.verify_many([(kind, ctx, witness), ...])`."""

    def __enter__(self) -> OneStepChain:
        arts = compile_contracts([CONTRACTS / s for s in SOURCES])
        self.anvil = Anvil(extra_args=["--disable-block-gas-limit"]).__enter__()
        try:
            self.w3 = Web3(Web3.HTTPProvider(self.anvil.rpc_url, request_kwargs={"timeout": 600}))
            me = self.w3.eth.accounts[0]
            self.verifier = self._deploy(arts["OneStepVerifier"], me)
            self.harness = self._deploy(arts["OneStepHarness"], me, self.verifier.address)
            fn = next(f for f in arts["OneStepHarness"]["abi"]
                      if f.get("type") == "function" and f["name"] == "verifyMany")
            self._many = (function_abi_to_4byte_selector(fn), get_abi_input_types(fn),
                          get_abi_output_types(fn))
        except BaseException:
            self.anvil.__exit__(None, None, None)
            raise
        return self

    def _deploy(self, art: dict, sender: str, *args):
        c = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = c.constructor(*args).transact({"from": sender, "gas": 29_000_000})
        addr = self.w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
        return self.w3.eth.contract(address=addr, abi=art["abi"])

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.anvil.__exit__(*exc)

    def verify_many(self, cases: Sequence[tuple[int, StepContext, bytes]], batch: int = 200,
                    max_bytes: int = MAX_CALL_BYTES) -> tuple[list[int], list[int]]:
        """Per case: 1 defender correct, 0 wrong, 2 reverted; and the gas of each verify.
        Cases go `batch` to an eth_call, fewer when their witnesses exceed `max_bytes`
        (anvil refuses very large request bodies)."""
        results: list[int] = []
        gas: list[int] = []
        i = 0
        while i < len(cases):
            j, size = i, 0
            while j < len(cases) and j - i < batch:
                size += len(cases[j][2])
                if j > i and size > max_bytes:
                    break
                j += 1
            part = cases[i:j]
            out, used = self._call_many(part)
            results += list(out)
            gas += list(used)
            i = j
        return results, gas

    def _call_many(self, part: Sequence[tuple[int, StepContext, bytes]]
                   ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """verifyMany by a raw eth_call, its calldata made by eth_abi directly: web3's own
        argument normalisation cost as much as the EVM for these nested batches (~50 % of
        the differential suite's time)."""
        selector, ins, outs = self._many
        data = selector + encode(ins, [[c[0] for c in part], [c[1].as_tuple() for c in part],
                                       [c[2] for c in part]])
        raw = self.w3.eth.call({"to": self.harness.address, "data": data, "gas": CALL_GAS})
        return decode(outs, raw)

    def chain_length(self, ctx: StepContext, witness: bytes) -> int | None:
        """OneStepVerifier.chainLength (docs/trace-layout.md §L9); None where it reverts."""
        fn = self.verifier.functions.chainLength(ctx.as_tuple(), witness)
        try:
            return fn.call({"gas": CALL_GAS})
        except (ContractLogicError, ContractCustomError):
            return None

    def revert_of(self, kind: int, ctx: StepContext, witness: bytes) -> str | None:
        """The custom error `verify` reverts with, by signature (None: it returned), e.g.
        "ChainRequired(uint256)" or "BadLink()" (§L9); "revert" for one without a selector."""
        fn = self.verifier.functions.verify(kind, ctx.as_tuple(), witness)
        try:
            fn.call({"gas": CALL_GAS})
        except ContractCustomError as e:
            raw = e.data if isinstance(e.data, str) else str(e.data)
            return ERRORS.get(raw[:10], raw[:10])
        except ContractLogicError:
            return "revert"
        return None

    def estimate(self, kind: int, ctx: StepContext, witness: bytes) -> int:
        """Gas of a transaction calling verify (intrinsic + calldata + execution)."""
        fn = self.verifier.functions.verify(kind, ctx.as_tuple(), witness)
        return fn.estimate_gas({"from": self.w3.eth.accounts[0]})
