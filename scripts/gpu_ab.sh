#!/usr/bin/env bash
# A/B of one CUDA switch on a warm GPU machine: profile_cuda_step.py --no-pdl without and
# with --SWITCH, interleaved (off, on, off, on), and the mean graph replay time of each.
# With LOOP=N: the real greedy loop instead (`--loop N`, PDL as the defaults have it), and
# the mean wall a step of each (what b = 1 decode gets: the graph and the work beside it).
#
# Why interleaved and --no-pdl: a borrowed machine's clocks drift over minutes, so runs of
# one variant back to back would fold the drift into the difference; without PDL each
# launch's time is its own (notes-runtime-perf.md). Run on the device after
# `source .model/setup.sh` (scripts/device_kit.sh):
#
#   bash scripts/gpu_ab.sh fuse-pairs [STEPS]
#   LOOP=64 bash scripts/gpu_ab.sh fused-speculate 16
set -uo pipefail
SWITCH=${1:?name a switch of scripts/cuda_switches.py, e.g. fuse-pairs}
STEPS=${2:-64}
LOOP=${LOOP:-0}
log=$(mktemp)
if [ "$LOOP" -gt 0 ]; then
  mode=(--loop "$LOOP") pick="^loop:" what="wall a step"
else
  mode=(--no-pdl) pick="graph replay" what="graph"
fi
for v in "" "--$SWITCH" "" "--$SWITCH"; do
  python3 scripts/profile_cuda_step.py "${mode[@]}" $v --steps "$STEPS" --out "$(mktemp -d)" \
    2>&1 | grep "$pick" | sed "s/^/[${v:-off}] /" | tee -a "$log"
done
for v in off "--$SWITCH"; do
  grep -F "[$v] ${pick#^}" "$log" | awk -v v="$v" -v w="$what" '{s += $4}
    END { if (NR) printf "%s: mean %s %.3f ms over %d runs\n", v, w, s / NR, NR }'
done
