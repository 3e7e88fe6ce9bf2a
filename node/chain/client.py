"""A small web3.py client: deploy, transact, call, and read events at a safe depth.

Why not raw web3 everywhere: every node needs the same four things done carefully — sign
locally (keys never leave the process), survive a flapping RPC with bounded retries and
backoff, turn a revert into the contract's custom-error name, and only act on blocks that are
`confirmations` deep so a reorg cannot make a node act on an event that disappears.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account import Account
from eth_utils import function_abi_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted

from node.chain.compile import compile_contracts

log = logging.getLogger("judge.chain")
T = TypeVar("T")

RETRYABLE = (ConnectionError, TimeoutError, OSError)


class ChainError(RuntimeError):
    """An RPC or transaction failure, with a message a user can act on."""


class TxReverted(ChainError):
    def __init__(self, what: str, error: str, data: str | None = None):
        super().__init__(f"{what} reverted: {error}")
        self.error = error
        self.data = data


@dataclass
class TxResult:
    tx_hash: str
    block: int
    gas_used: int
    receipt: Any


def _error_selectors(abi: list[dict]) -> dict[str, str]:
    out = {}
    for item in abi:
        if item.get("type") == "error":
            sel = "0x" + function_abi_to_4byte_selector(item).hex()
            out[sel] = item["name"]
    return out


class ChainClient:
    def __init__(
        self,
        rpc_url: str,
        private_key: str | None = None,
        confirmations: int = 0,
        retries: int = 5,
        backoff: float = 0.5,
        request_timeout: float = 30.0,
        journal: Any = None,
    ) -> None:
        self.rpc_url = rpc_url
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": request_timeout}))
        self.account = Account.from_key(private_key) if private_key else None
        self.confirmations = confirmations
        self.retries = retries
        self.backoff = backoff
        self._artifacts: dict[str, dict] | None = None
        self._errors: dict[str, str] = {}
        # node.store.Store (or None): signed txs are recorded before sending (crash safety)
        self.journal = journal

    def __repr__(self) -> str:  # never print the key
        who = self.account.address if self.account else "read-only"
        return f"ChainClient({self.rpc_url}, {who})"

    # ---- plumbing ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.account is None:
            raise ChainError("this client has no key; set JUDGE_PRIVATE_KEY or a keystore")
        return self.account.address

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run an RPC call, retrying connection failures with exponential backoff."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except RETRYABLE as e:
                if attempt == self.retries:
                    raise ChainError(f"{what}: RPC {self.rpc_url} unreachable after "
                                     f"{self.retries + 1} attempts ({e.__class__.__name__})") from e
                log.warning("%s: RPC error (%s), retrying in %.1fs", what, e.__class__.__name__,
                            delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def artifacts(self) -> dict[str, dict]:
        if self._artifacts is None:
            self._artifacts = compile_contracts()
            for art in self._artifacts.values():
                self._errors.update(_error_selectors(art["abi"]))
        return self._artifacts

    def contract(self, name: str, address: str) -> Contract:
        art = self.artifacts()[name]
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=art["abi"])

    def block_number(self) -> int:
        return self.retry("eth_blockNumber", lambda: self.w3.eth.block_number)

    def safe_block(self) -> int:
        """The newest block a node may act on (reorg protection)."""
        return max(0, self.block_number() - self.confirmations)

    def timestamp(self, block: int | str = "latest") -> int:
        return self.retry("eth_getBlock", lambda: self.w3.eth.get_block(block)["timestamp"])

    def balance(self, address: str) -> int:
        return self.retry("eth_getBalance", lambda: self.w3.eth.get_balance(address))

    # ---- errors --------------------------------------------------------------------------

    def decode_revert(self, exc: Exception) -> TxReverted | None:
        data = None
        if isinstance(exc, ContractCustomError):
            data = exc.data if isinstance(exc.data, str) else None
        elif isinstance(exc, ContractLogicError):
            data = exc.data if isinstance(exc.data, str) else None
            if exc.message and "custom error" not in exc.message:
                return TxReverted("call", exc.message, data)
        if data is None:
            return None
        self.artifacts()
        name = self._errors.get(data[:10], f"unknown error {data[:10]}")
        return TxReverted("call", name, data)

    # ---- transactions --------------------------------------------------------------------

    def _wait(self, what: str, tx_hash: bytes) -> TxResult:
        try:
            receipt = self.retry("receipt", lambda: self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=120, poll_latency=0.1))
        except TimeExhausted as e:
            raise ChainError(f"{what}: transaction {tx_hash.hex()} not mined in 120s") from e
        if receipt["status"] != 1:
            raise TxReverted(what, f"status 0 in block {receipt['blockNumber']}")
        return TxResult("0x" + tx_hash.hex().removeprefix("0x"), receipt["blockNumber"],
                        receipt["gasUsed"], receipt)

    def rebroadcast(self, key: str, what: str) -> TxResult | None:
        """Send the recorded signed bytes of `key` again and wait for them (after a reorg
        dropped the tx): the same nonce and hash, never a second signature."""
        return self._journaled(key, what)

    def _journaled(self, key: str, what: str) -> TxResult | None:
        """A tx already recorded under `key`: wait for it (rebroadcasting if the chain lost
        it) instead of signing a second one. None when nothing usable is recorded."""
        if self.journal is None:
            return None
        old = self.journal.tx_by_key(key)
        if old is None or old.tx_hash is None:
            return None
        if old.status in ("mined",):
            rc = self.retry("receipt", lambda: self.w3.eth.get_transaction_receipt(old.tx_hash))
            return TxResult("0x" + old.tx_hash.hex(), rc["blockNumber"], rc["gasUsed"], rc)
        if old.status in ("failed", "dropped", "replaced"):
            raise TxReverted(what, f"recorded transaction {old.key} ended {old.status}")
        try:
            self.w3.eth.get_transaction(old.tx_hash)
        except Exception:  # unknown to the node: it never left, or the chain forgot it
            log.info("%s: rebroadcasting recorded tx %s", what, old.tx_hash.hex())
            try:
                self.retry("sendRawTransaction",
                           lambda: self.w3.eth.send_raw_transaction(old.raw))
            except ValueError as e:  # nonce already used by another tx: it will never mine
                self.journal.mark_tx(old.id, "dropped", error=str(e))
                raise TxReverted(what, f"recorded tx dropped: {e}") from None
        try:
            res = self._wait(what, old.tx_hash)
        except TxReverted:
            self.journal.mark_tx(old.id, "failed")
            raise
        self.journal.mark_tx(old.id, "mined", block=res.block)
        return res

    def _send(self, what: str, tx: dict, key: str | None = None) -> TxResult:
        acct = self.account
        if acct is None:
            raise ChainError(f"{what}: no key configured")
        if key is not None:
            done = self._journaled(key, what)
            if done is not None:
                return done
        tx.setdefault("from", acct.address)
        tx.setdefault("chainId", self.retry("eth_chainId", lambda: self.w3.eth.chain_id))
        tx["nonce"] = self.retry("nonce", lambda: self.w3.eth.get_transaction_count(
            acct.address, "pending"))
        if "gas" not in tx:
            try:
                est = self.retry("estimateGas", lambda: self.w3.eth.estimate_gas(tx))
            except (ContractLogicError, ContractCustomError) as e:
                rev = self.decode_revert(e)
                raise TxReverted(what, rev.error if rev else str(e)) from None
            tx["gas"] = int(est * 1.2) + 10_000
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            base = self.retry("getBlock", lambda: self.w3.eth.get_block("latest")).get(
                "baseFeePerGas", 0)
            tip = 10**9
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = 2 * base + tip
        signed = acct.sign_transaction(tx)
        row = None
        if key is not None and self.journal is not None:
            row = self.journal.prepare_tx(key, what, sender=acct.address, nonce=tx["nonce"],
                                          tx_hash=bytes(signed.hash),
                                          raw=bytes(signed.raw_transaction))
        tx_hash = self.retry("sendRawTransaction",
                             lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        if row is not None:
            self.journal.mark_tx(row.id, "sent", expect=["prepared"])
        try:
            res = self._wait(what, tx_hash)
        except TxReverted:
            if row is not None:
                self.journal.mark_tx(row.id, "failed")
            raise
        if row is not None:
            self.journal.mark_tx(row.id, "mined", block=res.block)
        return res

    def transact(self, fn: Any, value: int = 0, gas: int | None = None, what: str = "",
                 key: str | None = None) -> TxResult:
        """Build, sign, send and wait for a contract function call; decode reverts.

        With a `key` and a journal, the signed tx is recorded before it is sent, and a later
        call with the same key (e.g. after a crash) waits for that tx instead of sending anew.
        """
        what = what or getattr(fn, "fn_name", "transaction")
        if key is not None:
            done = self._journaled(key, what)
            if done is not None:
                return done
        params: dict[str, Any] = {"from": self.address, "value": value}
        if gas:
            params["gas"] = gas
        try:
            tx = fn.build_transaction(params)
        except (ContractLogicError, ContractCustomError) as e:
            rev = self.decode_revert(e)
            raise TxReverted(what, rev.error if rev else str(e)) from None
        if gas is None:
            tx.pop("gas", None)
        return self._send(what, tx, key=key)

    def call(self, fn: Any) -> Any:
        try:
            return self.retry("eth_call", fn.call)
        except (ContractLogicError, ContractCustomError) as e:
            rev = self.decode_revert(e)
            raise TxReverted(getattr(fn, "fn_name", "call"), rev.error if rev else str(e)) from None

    def deploy(self, name: str, *args: Any, value: int = 0) -> tuple[Contract, TxResult]:
        art = self.artifacts()[name]
        if art["bytecode"] in ("0x", ""):
            raise ChainError(f"{name} is abstract or an interface; nothing to deploy")
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx = factory.constructor(*args).build_transaction({"from": self.address, "value": value})
        tx.pop("gas", None)
        res = self._send(f"deploy {name}", tx)
        address = res.receipt["contractAddress"]
        return self.contract(name, address), res

    # ---- events --------------------------------------------------------------------------

    def events(self, contract: Contract, event: str, from_block: int, to_block: int) -> list:
        """Decoded logs of one event type in [from_block, to_block]."""
        if to_block < from_block:
            return []
        ev = getattr(contract.events, event)
        return self.retry(f"getLogs {event}",
                          lambda: ev.get_logs(from_block=from_block, to_block=to_block))
