#!/usr/bin/env bash
# Build the kit a borrowed GPU machine needs to run this repo (.model/ and .whl/, both
# ignored by git), from what `make setup` installed here.
#
# Why: those machines are bare and offline, with torch/triton/numpy/msgpack but not gguf or
# pycryptodome, and one call carries at most 64 MiB, less than the 98 MB model. So the
# model travels in two parts (two calls on one warm machine), the wheels beside part 2:
#
#   bash scripts/device_kit.sh                 # here, once a session (~1 s)
#   call 1, carry [".model/part00"]:           mkdir -p /tmp/m && cp .model/part00 /tmp/m/
#   call 2 (at once: a machine stays warm ~30 s), carry [".model/part01", ".model/setup.sh",
#          ".whl"]:                            source .model/setup.sh && <commands>
#
# setup.sh installs the wheels into /tmp/site, joins the model into the model cache
# (sha256 printed: compare with node/models.py), and keeps Triton's cache in /tmp/tc for
# later calls on the same machine. A fresh machine compiles the step kernels for minutes:
# `tar czf $OUT/tc.tgz -C /tmp tc` at the end of a call brings that cache back, and saved
# as .model/tc.tgz and carried, setup.sh unpacks it on the next machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
F=$($PY -m node.models path)
mkdir -p .model .whl
grep -qx '/.model/' .git/info/exclude 2>/dev/null || printf '/.model/\n' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n' >> .git/info/exclude
rm -f .model/part0*
split -b 50M -d -a 2 "$F" .model/part
ver() { $PY -c "import importlib.metadata as m; print(m.version('$1'))"; }
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl \
    "gguf==$(ver gguf)" "pycryptodome==$(ver pycryptodome)"
cat > .model/setup.sh <<SETUP
# sourced at the start of a device call (scripts/device_kit.sh)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
    --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:\$PWD PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=/tmp/tc JUDGE_CACHE_DIR=/tmp/jc
M=/root/.cache/judge-ree/models
if [ ! -f \$M/$(basename "$F") ]; then
  mkdir -p \$M && cat /tmp/m/part00 .model/part01 > \$M/$(basename "$F") || return 1
fi
sha256sum \$M/$(basename "$F") | cut -c1-16
if [ -f .model/tc.tgz ] && [ ! -d /tmp/tc ]; then tar xzf .model/tc.tgz -C /tmp; fi
nvidia-smi --query-gpu=name,clocks.max.sm,driver_version --format=csv,noheader
SETUP
ls -la .model .whl
