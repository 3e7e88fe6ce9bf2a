"""anvil starts on a free port, refuses a busy one clearly, and never outlives its owner."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from node.chain.anvil import Anvil, AnvilError, port_in_use


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); check its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_start_stop_no_leak():
    with Anvil() as chain:
        pid = chain.proc.pid
        assert port_in_use(chain.port)
    assert not _alive(pid)
    assert not port_in_use(chain.port)


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(AnvilError, match="already in use"):
            Anvil(port=port).start()


def test_sigint_cleans_up(tmp_path):
    code = textwrap.dedent(
        """
        import sys, time
        from node.chain.anvil import Anvil
        with Anvil() as chain:
            print(chain.proc.pid, flush=True)
            time.sleep(60)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(p.stdout.readline())
    assert _alive(pid)
    p.send_signal(signal.SIGINT)
    # what matters is that anvil is gone, not how fast: cleanup takes ~1 s, but one CI run on
    # the shared 2-core machine needed more than 20 s (the run before and after: ~1 s)
    p.wait(timeout=90)
    assert not _alive(pid)
