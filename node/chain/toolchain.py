"""Where the EVM toolchain lives: one place for tests, nodes and scripts to find it.

The binaries come from npm (`@foundry-rs/*`, `solc`) pinned by package-lock.json and installed
into the project's `node_modules/` by `make setup`; `tools/solc` adapts solcjs to the native CLI
that forge and py-solc-x expect (docs/decisions/0001-toolchain.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_HINT = "run `make setup` (it runs `npm ci` for the pinned toolchain)"


class ToolchainError(RuntimeError):
    """A toolchain binary is missing; the message says how to install it."""


def _find(name: str, env_var: str, default: Path) -> Path:
    override = os.environ.get(env_var)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainError(f"{env_var}={override} is not an executable file")
        return path
    if default.is_file() and os.access(default, os.X_OK):
        return default
    raise ToolchainError(f"{name} not found at {default}; {_HINT}")


def _npm_binary(tool: str) -> Path:
    """The platform binary inside the npm package, not the `.bin` Node shim: the shim does
    not pass the tool's exit code through (a failing `forge test` exits 0 through it)."""
    pkgs = sorted((ROOT / "node_modules" / "@foundry-rs").glob(f"{tool}-*/bin/{tool}"))
    return pkgs[0] if pkgs else ROOT / "node_modules" / ".bin" / tool


def anvil() -> Path:
    return _find("anvil", "JUDGE_ANVIL", _npm_binary("anvil"))


def forge() -> Path:
    return _find("forge", "JUDGE_FORGE", _npm_binary("forge"))


def cast() -> Path:
    return _find("cast", "JUDGE_CAST", _npm_binary("cast"))


def solc() -> Path:
    """The native-style solc wrapper (needs node and the npm `solc` package)."""
    if shutil.which("node") is None:
        raise ToolchainError("node (Node.js) is not on PATH; install Node.js 20+ and " + _HINT)
    _find("solcjs", "JUDGE_SOLCJS", ROOT / "node_modules" / ".bin" / "solcjs")
    return _find("solc wrapper", "JUDGE_SOLC", ROOT / "tools" / "solc")
