"""The trace-program option the `ree` and `judge` CLIs share (docs/decisions/0012).

Kept free of heavy imports (referee.lowering pulls in torch, ~1 s) so that `--help` and
argument errors stay instant; tests/ree/test_cli.py checks the default against the lowering's.
"""

DEFAULT_SEGMENT = 64  # referee.lowering.DEFAULT_SEGMENT

SEGMENT_HELP = (
    "fma steps per committed DOT segment of the trace program. Longer segments "
    "commit fewer intermediate tensors (192: a third of the DOT leaves, ~25%% less hashing "
    "per token) and cost more gas when a dispute re-executes one segment on-chain (64: "
    "~0.5M, 192: ~1.3M, 576: ~3.5M gas). The model hash binds the choice: a receipt records "
    "it, and `ree verify` re-runs with it."
)
