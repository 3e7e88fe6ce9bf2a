"""Compile-on-first-use of the RepOps CPU kernels (every `*.c` in `csrc/`) and ctypes loading.

Why compile per machine: `-march=native` lets the same sources use AVX-512, AVX2 or scalar
code; the results do not depend on which (RepOps spec §8: every path runs the same IEEE ops),
so only speed changes. The cache key hashes the sources, headers, compiler version, flags and
the CPU's feature flags, so a library built on another CPU is never loaded here. Builds go to a
temporary file and are renamed into place atomically, so concurrent first uses do not collide.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

CSRC = Path(__file__).parent / "csrc"

# RepOps spec §2: no contraction of a*b+c, no value-changing optimisations. -fno-math-errno
# only stops sqrtf from setting errno (its result is unchanged). -fopenmp: threads split
# outputs, never a chain.
CFLAGS = [
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-math-errno",
    "-fopenmp",
    "-fPIC",
    "-shared",
    "-std=gnu11",
    "-Wall",
]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


class BuildError(RuntimeError):
    """The C compiler failed; the message carries its output."""


def cache_dir() -> Path:
    root = os.environ.get("JUDGE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "judge-ree"
    return base / "build"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str:
    return os.environ.get("CC", "gcc")


def _sources() -> list[Path]:
    return sorted(CSRC.glob("*.c"))


def build_key() -> str:
    h = hashlib.sha256()
    for p in sorted(CSRC.glob("*.[ch]")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    cc = _compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    except OSError as e:
        raise BuildError(f"repops CPU backend: C compiler {cc!r} not found ({e})") from e
    h.update(version.encode())
    h.update(" ".join(CFLAGS).encode())
    h.update(_cpu_flags().encode())
    h.update(platform.machine().encode())
    return h.hexdigest()[:20]


def library_path() -> Path:
    return cache_dir() / f"librepops-cpu-{build_key()}.so"


def build() -> Path:
    """Build the shared library if this exact (sources, compiler, CPU) has none yet."""
    out = library_path()
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp.so", dir=out.parent)
    os.close(fd)
    cmd = [_compiler(), *CFLAGS, "-I", str(CSRC), *map(str, _sources()), "-o", tmp, "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise BuildError(f"repops CPU backend build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, out)
    return out


def load() -> ctypes.CDLL:
    """The loaded kernel library (built on first use), with argument types declared."""
    global _lib
    with _lock:
        if _lib is None:
            path = build()
            # Idle OpenMP workers sleep instead of spinning: the process also runs torch's own
            # thread pool, and spinning pools starve each other on a small shared machine.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:
                raise BuildError(
                    f"repops CPU backend: cannot load {path}: {e} "
                    "(missing symbol? every csrc/*.c must be present, incl. crmath.c)"
                ) from e
            _declare(lib)
            _lib = lib
        return _lib


def _declare(lib: ctypes.CDLL) -> None:
    P, I64, N, F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    sig = {
        "repops_gemm": [I64, I64, I64, P, I64, P, I64, I64, P, I64, N],
        "repops_linear_packed": [I64, I64, I64, P, I64, P, P, I64, N],
        "repops_pack_nk": [I64, I64, P, I64, P],
        "repops_cumsum_seq": [P, P, I64],
        "repops_qpack": [N, I64, I64, P, P],
        "repops_linear_q": [N, I64, I64, I64, P, I64, P, P, I64, N],
        "repops_qdequant": [N, I64, I64, P, P],
        "repops_binary": [N, P, P, P, I64, N, N, N],
        "repops_unary": [N, P, P, I64, N],
        "repops_i64_to_f32": [P, P, I64],
        "repops_f32_to_i64": [P, P, I64],
        "repops_sum_rows": [P, P, I64, I64, N],
        "repops_max_rows": [P, P, I64, I64, N, N],
        "repops_argmax_rows": [P, P, I64, I64, N],
        "repops_softmax_rows": [P, P, I64, I64, N, N],
        "repops_rms_norm_rows": [P, P, F, P, I64, I64, N],
        "repops_layer_norm_rows": [P, P, P, F, P, I64, I64, N],
        "repops_rope": [P, P, P, P, I64, I64, I64, I64, N, N],
        "repops_attention": [P, P, P, P, I64, I64, I64, I64, I64, I64, F, N],
    }
    for name, args in sig.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    lib.repops_qpanel_bytes.argtypes = [N, I64]
    lib.repops_qpanel_bytes.restype = I64
    lib.repops_pack_width.argtypes = []
    lib.repops_pack_width.restype = ctypes.c_int
    lib.repops_isa.argtypes = []
    lib.repops_isa.restype = ctypes.c_char_p
