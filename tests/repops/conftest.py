"""Make `import repops` mean the project package inside tests/repops.

pytest puts `tests/` on sys.path when it collects a test package that has an `__init__.py`
(e.g. tests/runtime); `tests/repops` then shadows the real package as a namespace package,
because the editable install's finder comes after the path finder. Putting the repository root
first fixes the lookup (a `pythonpath = ["."]` in pyproject's pytest options would do it for
every folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [ROOT]:
    sys.path.insert(0, ROOT)
_mod = sys.modules.get("repops")
if _mod is not None and getattr(_mod, "__file__", None) is None:  # a namespace impostor
    for name in [n for n in sys.modules if n == "repops" or n.startswith("repops.")]:
        del sys.modules[name]
