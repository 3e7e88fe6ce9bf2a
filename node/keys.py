"""Signing keys for nodes: from an eth-account keystore or the environment, never logged.

Why both: operators keep keys in encrypted keystores; tests and local demos use anvil's
well-known dev keys through env. A key object's repr never shows the secret.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount


class KeyError_(RuntimeError):
    """No usable key; the message says where keys are looked for."""


def load_key(keystore: str | None = None, env_var: str = "JUDGE_PRIVATE_KEY",
             password_env: str = "JUDGE_KEYSTORE_PASSWORD",
             interactive: bool = False) -> LocalAccount:
    """A keystore path wins; else the private key in `env_var`.

    The keystore password comes from `password_env`, or a prompt when interactive.
    """
    if keystore:
        path = Path(keystore).expanduser()
        if not path.is_file():
            raise KeyError_(f"keystore {path} not found")
        password = os.environ.get(password_env)
        if password is None:
            if not interactive:
                raise KeyError_(f"keystore {path} needs a password: set {password_env}")
            password = getpass.getpass(f"password for {path.name}: ")
        try:
            secret = Account.decrypt(json.loads(path.read_text()), password)
        except ValueError:
            raise KeyError_(f"keystore {path}: wrong password or corrupt file") from None
        return Account.from_key(secret)
    value = os.environ.get(env_var)
    if not value:
        raise KeyError_(f"no key: pass --keystore FILE or set {env_var}")
    try:
        return Account.from_key(value.strip())
    except (ValueError, TypeError):
        raise KeyError_(f"{env_var} does not hold a valid private key") from None


def write_keystore(account: LocalAccount, path: Path, password: str) -> Path:
    """Encrypt a key to a keystore file (mode 0600)."""
    data = Account.encrypt(account.key, password)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    return path
