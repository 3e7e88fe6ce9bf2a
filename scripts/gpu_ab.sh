#!/usr/bin/env bash
# A/B of one CUDA switch on a warm GPU machine: profile_cuda_step.py --no-pdl without and
# with --SWITCH, interleaved (off, on, off, on), and the mean graph replay time of each.
#
# Why interleaved and --no-pdl: a borrowed machine's clocks drift over minutes, so runs of
# one variant back to back would fold the drift into the difference; without PDL each
# launch's time is its own (notes-runtime-perf.md). Run on the device after
# `source .model/setup.sh` (scripts/device_kit.sh):
#
#   bash scripts/gpu_ab.sh fuse-pairs [STEPS]
set -uo pipefail
SWITCH=${1:?name a switch of scripts/cuda_switches.py, e.g. fuse-pairs}
STEPS=${2:-64}
log=$(mktemp)
for v in "" "--$SWITCH" "" "--$SWITCH"; do
  python3 scripts/profile_cuda_step.py --no-pdl $v --steps "$STEPS" --out "$(mktemp -d)" 2>&1 \
    | grep "graph replay" | sed "s/^/[${v:-off}] /" | tee -a "$log"
done
for v in off "--$SWITCH"; do
  grep -F "[$v] graph replay" "$log" | awk -v v="$v" '{s += $4} END {
    if (NR) printf "%s: mean graph %.3f ms over %d runs\n", v, s / NR, NR}'
done
