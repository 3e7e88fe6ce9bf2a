"""A local anvil chain as a context manager that never leaks a process.

Why so careful: demos and tests start many chains; a leaked anvil holds its port and its CPU,
and Ctrl-C must not leave one behind. anvil runs in its own process group and is killed as a
group on exit, on exceptions and on SIGINT/SIGTERM delivered to this process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.chain import toolchain

# anvil's default mnemonic accounts ("test test … junk"): public, for local chains only.
DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
]


class AnvilError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Anvil:
    """`with Anvil() as chain: chain.rpc_url` — a fresh local chain on a free (or given) port."""

    port: int | None = None
    block_time: float | None = None  # None: mine on every transaction
    chain_id: int = 31337
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    _old_handlers: dict = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Anvil:
        if self.port is None:
            self.port = free_port()
        elif port_in_use(self.port):
            raise AnvilError(
                f"port {self.port} is already in use; stop whatever listens there or choose "
                "another port (omit --port to pick a free one)"
            )
        args = [str(toolchain.anvil()), "--host", "127.0.0.1", "--port", str(self.port),
                "--chain-id", str(self.chain_id), "--silent"]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        args += self.extra_args
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_in_use(self.port):
            if self.proc.poll() is not None:
                raise AnvilError(f"anvil exited with code {self.proc.returncode} at start")
            if time.monotonic() > deadline:
                self.stop()
                raise AnvilError(f"anvil did not open port {self.port} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    interrupted: bool = False

    def _on_signal(self, signum, frame):  # noqa: ANN001
        self.interrupted = True  # a KeyboardInterrupt raised inside a __del__ is swallowed;
        self.stop()  # callers check this flag when the chain "disappears" after Ctrl-C
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    def __enter__(self) -> Anvil:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not in the main thread: rely on __exit__ only
            self._old_handlers.clear()
        try:
            return self.start()
        except BaseException:
            self._restore()
            raise

    def _restore(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()
        self._restore()
