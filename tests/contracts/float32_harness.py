"""Drive contracts/test/float/Float32Harness.sol on a local anvil: compile, deploy, batch calls.

Why batches: one eth_call evaluates thousands of cases inside the EVM, so 10^4 cases per
primitive cost a few RPC round trips instead of 10^4 (the differential tests stay well under a
minute). Shared by tests/contracts/test_float32_diff.py and scripts/bench_float_gas.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.compile import compile_contracts

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "contracts" / "float" / "Float32.sol",
    ROOT / "contracts" / "float" / "Float32Transcendental.sol",
    ROOT / "contracts" / "test" / "float" / "Float32Harness.sol",
]

# Operation codes of Float32Harness.apply1.
OP = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5, "cmp": 6, "sqrt": 10,
      "exp": 11, "log": 12, "neg": 13, "toint32": 14, "fma": 20}
ARITY = {"add": 2, "sub": 2, "mul": 2, "div": 2, "max": 2, "min": 2, "cmp": 2, "sqrt": 1,
         "exp": 1, "log": 1, "neg": 1, "toint32": 1, "fma": 3}

CALL_GAS = 1_000_000_000
BATCH = 4096


def _sel(sig: str) -> bytes:
    return function_signature_to_4byte_selector(sig)


class Float32Harness:
    """A deployed harness on a private anvil; use as a context manager."""

    def __init__(self) -> None:
        self.chain = Anvil(extra_args=["--gas-limit", str(CALL_GAS * 2),
                                       "--disable-code-size-limit"])
        self.w3: Web3 | None = None
        self.address: str | None = None

    def __enter__(self) -> Float32Harness:
        art = compile_contracts(SOURCES)["Float32Harness"]
        self.chain.__enter__()
        try:
            self.w3 = Web3(Web3.HTTPProvider(self.chain.rpc_url, request_kwargs={"timeout": 120}))
            acct = self.w3.eth.account.from_key(DEV_KEYS[0])
            tx = {"from": acct.address, "data": art["bytecode"], "gas": 30_000_000,
                  "nonce": 0, "chainId": self.chain.chain_id, "gasPrice": 10**9}
            signed = acct.sign_transaction(tx)
            h = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            rcpt = self.w3.eth.wait_for_transaction_receipt(h)
            assert rcpt["status"] == 1, "harness deployment failed"
            self.address = rcpt["contractAddress"]
            self.code_size = len(self.w3.eth.get_code(self.address))
        except BaseException:
            self.chain.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.chain.__exit__(*exc)

    def call(self, sig: str, types: list[str], args: list, out_types: list[str]) -> tuple:
        data = _sel(sig) + encode(types, args)
        raw = self.w3.eth.call({"to": self.address, "data": "0x" + data.hex(), "gas": CALL_GAS})
        return decode(out_types, bytes(raw))

    # ------------------------------------------------------------ batched primitives

    def batch(self, op: str, *operands) -> np.ndarray:
        """Apply `op` elementwise to uint32 bit-pattern arrays; returns uint32 results."""
        arity = ARITY[op]
        assert len(operands) == arity
        cols = np.stack([np.asarray(x, dtype=np.uint32) for x in operands], axis=1)
        out = []
        for start in range(0, len(cols), BATCH):
            chunk = cols[start : start + BATCH].astype(">u4").tobytes()
            (res,) = self.call("batch(uint256,uint256,bytes)", ["uint256", "uint256", "bytes"],
                               [OP[op], arity, chunk], ["bytes"])
            out.append(np.frombuffer(res, dtype=">u4").astype(np.uint32))
        return np.concatenate(out) if out else np.zeros(0, np.uint32)

    def chain_steps(self, a, b, c) -> np.ndarray:
        """fmaChain of one step from accumulator c, for each triple (the chain's fast path)."""
        cols = np.stack([np.asarray(x, dtype=np.uint32) for x in (a, b, c)], axis=1)
        out = []
        for start in range(0, len(cols), BATCH):
            chunk = cols[start : start + BATCH].astype(">u4").tobytes()
            (res,) = self.call("chainStepBatch(bytes)", ["bytes"], [chunk], ["bytes"])
            out.append(np.frombuffer(res, dtype=">u4").astype(np.uint32))
        return np.concatenate(out)

    def from_int64(self, values) -> np.ndarray:
        v = np.asarray(values, dtype=np.int64)
        out = []
        for start in range(0, len(v), BATCH):
            (res,) = self.call("fromInt64Batch(bytes)", ["bytes"],
                               [v[start : start + BATCH].astype(">i8").tobytes()], ["bytes"])
            out.append(np.frombuffer(res, dtype=">u4").astype(np.uint32))
        return np.concatenate(out)

    def from_int256(self, values: list[int]) -> list[int]:
        (res,) = self.call("fromInt256Batch(int256[])", ["int256[]"], [values], ["uint32[]"])
        return list(res)

    def to_int64(self, bits) -> list[int]:
        b = np.asarray(bits, dtype=np.uint32)
        out: list[int] = []
        for start in range(0, len(b), BATCH):
            (res,) = self.call("toInt64Batch(bytes)", ["bytes"],
                               [b[start : start + BATCH].astype(">u4").tobytes()], ["int64[]"])
            out.extend(res)
        return out

    def gas_of(self, op: str, a: int, b: int = 0, c: int = 0) -> tuple[int, int]:
        """(result, gas) of one library call, measured inside the EVM with gasleft()."""
        r, g = self.call("gasOf(uint256,uint32,uint32,uint32)",
                         ["uint256", "uint32", "uint32", "uint32"], [OP[op], a, b, c],
                         ["uint256", "uint256"])
        return r, g

    def gas_batch(self, op: str, *operands) -> np.ndarray:
        """Gas of each case (as `gas_of`), evaluated in one eth_call per 1024 cases."""
        arity = ARITY[op]
        cols = np.stack([np.asarray(x, dtype=np.uint32) for x in operands], axis=1)
        out: list[int] = []
        for start in range(0, len(cols), 1024):
            chunk = cols[start : start + 1024].astype(">u4").tobytes()
            (res,) = self.call("gasBatch(uint256,uint256,bytes)", ["uint256", "uint256", "bytes"],
                               [OP[op], arity, chunk], ["uint256[]"])
            out.extend(res)
        return np.array(out, dtype=np.int64)

    def gas_of_from_int(self, v: int) -> tuple[int, int]:
        return self.call("gasOfFromInt(int256)", ["int256"], [v], ["uint256", "uint256"])

    def fma_chain(self, a: bytes, a_start: int, b: bytes, b_start: int, count: int, acc: int,
                  calldata: bool = False) -> tuple[int, int]:
        name = "fmaChainCalldata" if calldata else "fmaChain"
        types = ["bytes", "uint256", "bytes", "uint256", "uint256", "uint32"]
        return self.call(f"{name}(bytes,uint256,bytes,uint256,uint256,uint32)", types,
                         [a, a_start, b, b_start, count, acc], ["uint32", "uint256"])

    def loads(self, chunk: bytes, idx: list[int]) -> tuple[list[int], list[int]]:
        return self.call("loads(bytes,uint256[])", ["bytes", "uint256[]"], [chunk, idx],
                         ["uint32[]", "uint32[]"])
