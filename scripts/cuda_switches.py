"""The CUDA runtime's module switches as command-line flags, for the scripts that A/B them
(bench_runtime.py, profile_batch_cuda.py, profile_cuda_step.py): one place that names each
switch, sets it before an executor is built, and reports what it ended at."""

from __future__ import annotations

import argparse


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Every switch's flag; a flag left out keeps the module's setting."""
    ap.add_argument("--grid-min", type=int, default=None,
                    help="size CUDA launch grids per position bucket from this one "
                         "(step_plan_cuda.GRID_MIN; 0: one grid for the largest position)")
    ap.add_argument("--root-streams", type=int, default=None,
                    help="side streams a CUDA batch's trace roots replay on "
                         "(step_lanes_cuda.ROOT_STREAMS; 0: the executor's stream)")
    ap.add_argument("--roots-beside", action=argparse.BooleanOptionalAction, default=None,
                    help="a CUDA job's trace roots on a side stream beside its next step "
                         "(step_plan_cuda.ROOTS_BESIDE, on by default)")
    ap.add_argument("--fuse-linears", action=argparse.BooleanOptionalAction, default=None,
                    help="q, k, v and gate, up as one CUDA launch each "
                         "(step_plan_cuda.FUSE_LINEARS, on by default)")
    ap.add_argument("--fuse-moves", action=argparse.BooleanOptionalAction, default=None,
                    help="each MOVE of one launch's output fused into that launch "
                         "(step_plan_cuda.FUSE_MOVES)")
    ap.add_argument("--fuse-ew", action=argparse.BooleanOptionalAction, default=None,
                    help="an EW fused into the RMSNorm it feeds or the EW before it "
                         "(step_plan_cuda.FUSE_EW)")
    ap.add_argument("--fuse-pairs", action=argparse.BooleanOptionalAction, default=None,
                    help="a layer's K and V cache appends as one CUDA launch, and its q and k "
                         "ROPEs (step_plan_cuda.FUSE_PAIRS; on: --no-fuse-pairs for the A/B)")
    ap.add_argument("--speculate", action=argparse.BooleanOptionalAction, default=None,
                    help="a greedy job's next CUDA step queued with the device's argmax as "
                         "its token before the host has it (step_plan_cuda.SPECULATE)")
    ap.add_argument("--quant-linears", action=argparse.BooleanOptionalAction, default=None,
                    help="decode linears of Q4_1 weights read the GGUF blocks, dequantized "
                         "exactly in the kernel (step_plan_cuda.QUANT_LINEARS)")
    ap.add_argument("--quant-q8", action=argparse.BooleanOptionalAction, default=None,
                    help="decode linears of Q8_0 weights (SmolLM2's head) read the GGUF "
                         "blocks, dequantized exactly in the kernel "
                         "(step_plan_cuda.QUANT_Q8, on by default)")
    ap.add_argument("--pdl", action=argparse.BooleanOptionalAction, default=None,
                    help="step launches with programmatic dependent launch: the next "
                         "launch placed while this one runs (step_plan_cuda.PDL)")
    ap.add_argument("--x-vectors", action=argparse.BooleanOptionalAction, default=None,
                    help="a decode linear's x loaded four values at a time "
                         "(step_plan_cuda.X_VECTORS, on by default)")
    ap.add_argument("--reg-folds", action=argparse.BooleanOptionalAction, default=None,
                    help="FOLD trees' levels after the first from registers "
                         "(step_plan_cuda.REG_FOLDS; off: slower on the H100)")
    ap.add_argument("--warp-folds", action=argparse.BooleanOptionalAction, default=None,
                    help="an RMSNorm in one warp, its FOLD levels in registers and shuffles "
                         "(step_plan_cuda.WARP_FOLDS; off: unmeasured alone)")
    ap.add_argument("--warp-softmax", action=argparse.BooleanOptionalAction, default=None,
                    help="a softmax of up to 512 keys in one warp, alike "
                         "(step_plan_cuda.WARP_SOFTMAX; off: with --warp-folds slower on "
                         "the H100)")
    ap.add_argument("--fuse-attention", action=argparse.BooleanOptionalAction, default=None,
                    help="a decode layer's q·k DOT, softmax and p·v DOT as one CUDA launch, "
                         "a program a head (step_plan_cuda.FUSE_ATTENTION, on by default)")
    ap.add_argument("--fuse-heads-move", action=argparse.BooleanOptionalAction, default=None,
                    help="with --fuse-attention, the MOVE of the heads' outputs after p·v in "
                         "the same launch (step_plan_cuda.FUSE_HEADS_MOVE; off until the GPU "
                         "report: −0.7 %% a step graph on the H100)")
    ap.add_argument("--fuse-norm-linears", action=argparse.BooleanOptionalAction, default=None,
                    help="each RMSNorm and the decode linear after it as one CUDA launch, the "
                         "linear's programs running the norm first "
                         "(step_plan_cuda.FUSE_NORM_LINEARS; off: slower on the H100)")
    ap.add_argument("--linear-blocks", action=argparse.BooleanOptionalAction, default=None,
                    help="a decode linear with 8 or 16 columns a CUDA program where that keeps "
                         "its programs within the GPU's multiprocessors "
                         "(step_plan_cuda.LINEAR_BLOCKS; off: slower on the H100)")
    ap.add_argument("--fold-carry", action=argparse.BooleanOptionalAction, default=None,
                    help="FOLD trees' levels with their own elements from the level before's "
                         "registers, only the pairs loaded back (step_plan_cuda.FOLD_CARRY; "
                         "off: slower on the H100)")
    ap.add_argument("--prefetch", type=int, choices=(0, 1), default=None,
                    help="chain_kernel's (and so the fused attention's DOT chains') L1 prefetch "
                         "of the segments ahead (step_plan_cuda.PREFETCH; default 0: 1 was slower)")
    ap.add_argument("--narrow-softmax", action=argparse.BooleanOptionalAction, default=None,
                    help="a softmax's EW passes and FOLD levels on 128-wide tensors, not 1,024 "
                         "(step_plan_cuda.NARROW_SOFTMAX, on by default)")
    ap.add_argument("--narrow-norms", action=argparse.BooleanOptionalAction, default=None,
                    help="an RMSNorm's EW passes and FOLD levels on 128-wide tensors, not 1,024 "
                         "(step_plan_cuda.NARROW_NORMS; off: slower on the H100)")
    ap.add_argument("--small-blocks", action=argparse.BooleanOptionalAction, default=None,
                    help="EW, MOVE and CONCAT launches of 256 elements a program, not 1,024 "
                         "(step_plan_cuda.SMALL_BLOCKS, on by default)")
    ap.add_argument("--chain-tail", action=argparse.BooleanOptionalAction, default=None,
                    help="an attention DOT chain's last partial k block as one masked block "
                         "of loads (step_plan_cuda.CHAIN_TAIL; off: slower on the H100)")
    ap.add_argument("--stack-lr", type=int, default=None,
                    help="a CUDA stack's decode linears with this many lanes a program, "
                         "each weight read once for them (step_plan_cuda.STACK_LR; 1: one)")
    ap.add_argument("--stack-linear-nb", type=int, default=None,
                    help="k block of a CUDA stack's decode linears "
                         "(step_plan_cuda.STACK_LINEAR_NB; default QCHAIN's)")
    ap.add_argument("--fused-speculate", action=argparse.BooleanOptionalAction, default=None,
                    help="a speculated step's guess and table in two Triton launches, the "
                         "host's copies on a side stream (step_plan_cuda.FUSED_SPECULATE, on by "
                         "default)")
    ap.add_argument("--gather-logits", action=argparse.BooleanOptionalAction, default=None,
                    help="a CUDA batch's logits in one gather and copy (fastexec.GATHER_LOGITS; "
                         "on by default)")
    ap.add_argument("--tail-early-threads", type=int, default=None,
                    help="threads of a CUDA batch's host tails up to the argmax, on the "
                         "calling thread (fastexec.TAIL_EARLY_THREADS; 0: all cores)")
    ap.add_argument("--tail-rest-threads", type=int, default=None,
                    help="threads of the rest of a CUDA batch's greedy host tails, on the "
                         "worker (fastexec.TAIL_REST_THREADS; 0: half the cores)")
    ap.add_argument("--tail-in-place", action=argparse.BooleanOptionalAction, default=None,
                    help="a CUDA batch's host tails read the logits where they lie on the host, "
                         "not copied into their arenas (fastexec.TAIL_IN_PLACE, on by default)")
    ap.add_argument("--host-prefill", action="store_true",
                    help="CUDA jobs' prefills on the host's cores (fastexec.HOST_PREFILL)")


def apply(args: argparse.Namespace) -> dict:
    """Set the switches the flags name (before any executor is built: plans read them when
    made) and return every switch's setting, for a report."""
    import importlib

    for key, (mod, attr) in _WHERE.items():
        value = getattr(args, key)
        if value is None or (value is False and key in _ONLY_ON):
            continue  # the flag left out: the module's setting stays
        if key == "grid_min":
            value = value or None  # 0: one grid for the largest position
        setattr(importlib.import_module(f"node.ree.{mod}"), attr, value)
    return settings()


# each switch's record name and where it lives (module of node.ree, attribute), in order
_WHERE = {"grid_min": ("step_plan_cuda", "GRID_MIN"),
          "fuse_linears": ("step_plan_cuda", "FUSE_LINEARS"),
          "fuse_moves": ("step_plan_cuda", "FUSE_MOVES"), "fuse_ew": ("step_plan_cuda", "FUSE_EW"),
          "fuse_pairs": ("step_plan_cuda", "FUSE_PAIRS"),
          "speculate": ("step_plan_cuda", "SPECULATE"),
          "fused_speculate": ("step_plan_cuda", "FUSED_SPECULATE"),
          "pdl": ("step_plan_cuda", "PDL"),
          "quant_linears": ("step_plan_cuda", "QUANT_LINEARS"),
          "quant_q8": ("step_plan_cuda", "QUANT_Q8"),
          "x_vectors": ("step_plan_cuda", "X_VECTORS"),
          "reg_folds": ("step_plan_cuda", "REG_FOLDS"),
          "warp_folds": ("step_plan_cuda", "WARP_FOLDS"),
          "warp_softmax": ("step_plan_cuda", "WARP_SOFTMAX"),
          "fuse_attention": ("step_plan_cuda", "FUSE_ATTENTION"),
          "fuse_heads_move": ("step_plan_cuda", "FUSE_HEADS_MOVE"),
          "fuse_norm_linears": ("step_plan_cuda", "FUSE_NORM_LINEARS"),
          "linear_blocks": ("step_plan_cuda", "LINEAR_BLOCKS"),
          "fold_carry": ("step_plan_cuda", "FOLD_CARRY"),
          "chain_tail": ("step_plan_cuda", "CHAIN_TAIL"),
          "narrow_softmax": ("step_plan_cuda", "NARROW_SOFTMAX"),
          "narrow_norms": ("step_plan_cuda", "NARROW_NORMS"),
          "small_blocks": ("step_plan_cuda", "SMALL_BLOCKS"),
          "prefetch": ("step_plan_cuda", "PREFETCH"),
          "stack_lr": ("step_plan_cuda", "STACK_LR"),
          "stack_linear_nb": ("step_plan_cuda", "STACK_LINEAR_NB"),
          "root_streams": ("step_lanes_cuda", "ROOT_STREAMS"),
          "roots_beside": ("step_plan_cuda", "ROOTS_BESIDE"),
          "gather_logits": ("fastexec", "GATHER_LOGITS"),
          "tail_early_threads": ("fastexec", "TAIL_EARLY_THREADS"),
          "tail_rest_threads": ("fastexec", "TAIL_REST_THREADS"),
          "tail_in_place": ("fastexec", "TAIL_IN_PLACE"),
          "host_prefill": ("fastexec", "HOST_PREFILL")}


# flags that can only turn their switch on (store_true: absent reads False)
_ONLY_ON = frozenset({"host_prefill"})


def set_switches(values: dict[str, str]) -> dict:
    """Set switches by record name from text ("1"/"0" or "true"/"false" for a bool, else an
    int), between runs of one process (a switch the executor reads at each step, not one a
    plan reads when made); returns the settings. An unknown name is a clear error."""
    import importlib

    for key, text in values.items():
        if key not in _WHERE:
            raise ValueError(f"no switch {key!r}: one of {', '.join(_WHERE)}")
        mod, attr = _WHERE[key]
        m = importlib.import_module(f"node.ree.{mod}")
        was = getattr(m, attr)
        value = text.lower() in ("1", "true", "on") if isinstance(was, bool) else int(text)
        setattr(m, attr, value)
    return settings()


def settings_names() -> tuple[str, ...]:
    """The keys of `settings`, in its order, without importing the CUDA modules (a report
    written on another machine names them)."""
    return tuple(_WHERE)


def settings() -> dict:
    """Every switch's current setting (the bench's and the GPU report's record of what ran)."""
    import importlib

    return {k: getattr(importlib.import_module(f"node.ree.{mod}"), attr)
            for k, (mod, attr) in _WHERE.items()}
