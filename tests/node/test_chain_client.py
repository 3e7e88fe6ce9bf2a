"""The chain client against a real anvil and the real compiled registry contract."""

import pytest

from node.chain.anvil import DEV_KEYS, Anvil
from node.chain.client import ChainClient, ChainError, TxReverted
from node.store import Store


@pytest.fixture(scope="module")
def chain():
    with Anvil() as a:
        yield a


def _registry(client):
    reg, res = client.deploy("ModelRegistry", client.address)
    assert res.gas_used > 0
    return reg


def test_deploy_call_and_custom_error(chain):
    c = ChainClient(chain.rpc_url, DEV_KEYS[0])
    reg = _registry(c)
    h, root = b"\x11" * 32, b"\x22" * 32
    c.transact(reg.functions.register(h, root, 1, 100, 64, "m", "uri", bytes(32)))
    assert c.call(reg.functions.isRegistered(h))
    with pytest.raises(TxReverted, match="AlreadyRegistered"):
        c.transact(reg.functions.register(h, root, 1, 100, 64, "m", "uri", bytes(32)))
    other = ChainClient(chain.rpc_url, DEV_KEYS[1])
    with pytest.raises(TxReverted, match="NotCurator"):
        other.transact(other.contract("ModelRegistry", reg.address).functions.register(
            b"\x33" * 32, root, 1, 100, 64, "m", "uri", bytes(32)))


def test_journal_makes_sends_idempotent(chain, tmp_path):
    store = Store(tmp_path / "node.db")
    c = ChainClient(chain.rpc_url, DEV_KEYS[2], journal=store)
    reg = _registry(c)
    fn = reg.functions.register(b"\x44" * 32, b"\x55" * 32, 1, 100, 64, "m", "uri", bytes(32))
    first = c.transact(fn, key="register:44")
    nonce = c.w3.eth.get_transaction_count(c.address)
    again = c.transact(fn, key="register:44")  # e.g. after a restart: no second tx
    assert again.tx_hash == first.tx_hash
    assert c.w3.eth.get_transaction_count(c.address) == nonce
    assert store.tx_by_key("register:44").status == "mined"
    assert not store.pending_txs()


def test_rpc_down_is_a_clear_error():
    c = ChainClient("http://127.0.0.1:9", DEV_KEYS[0], retries=1, backoff=0.01)
    with pytest.raises(ChainError, match="unreachable"):
        c.block_number()
