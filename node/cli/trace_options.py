"""The trace-program option the `ree` and `judge` CLIs share (docs/decisions/0012).

Kept free of heavy imports (referee.lowering pulls in torch, ~1 s) so that `--help` and
argument errors stay instant; tests/ree/test_cli.py checks the default against the lowering's.
"""

DEFAULT_SEGMENT = 192  # referee.lowering.DEFAULT_SEGMENT
TRACE_KINDS = ("full", "compact")  # referee.compact.TRACE_KINDS

SEGMENT_HELP = (
    "fma steps per committed DOT segment of the trace program. Longer segments commit fewer "
    "intermediate tensors (192: 16.6 instead of 23.7 MB a SmolLM2 decode step, ~20%% less "
    "trace overhead on a CPU); a dispute over one of their elements takes one more round (the "
    "executor reveals the element's chain, the one-step checks 64 fma steps of it). The model "
    "hash binds the choice: a receipt records it, and `ree verify` re-runs with it."
)

TRACE_HELP = (
    "what the run commits. full: every trace op's output (docs/trace-layout.md §L1), what "
    "the dispute game bisects. compact: only the ops whose output leaves its chain (the last "
    "segment of a linear, the last level of a fold, the KV caches, the token: §L10), a third "
    "of the bytes to hash (ADR 0013). A receipt records the choice and `ree verify` re-runs "
    "with it. On chain, models registered with `judge model register --trace compact` are "
    "run so; a dispute expands both sides' compact traces to full ones."
)
