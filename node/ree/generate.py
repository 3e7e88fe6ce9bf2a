"""Generation with a trace: one trace-program step per token (docs/trace-layout.md §L1).

Step 0 is the prefill of the whole prompt, every later step a decode of one token whose KV
cache is the previous step's CONCAT outputs (§L5.9); the layout makes prefill and decode the
same ops with different symbols, so their bits agree (RepOps spec §6.10). The token of each
step is always the program's token op, the SAMPLE PICK (§L5.10): greedy (§7.1) for
temperature 0, else RepOps spec §7.3 under the job's config, which the executor's SAMPLE ops
read; the next step's TOKENS op reads that token, so every leaf of a sampled run is disputable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from node.ree.fastexec import FastExecutor
from node.ree.sampling import SamplingConfig
from node.ree.step_plan import token_of
from node.ree.trace import TraceRecorder
from referee.layout import Code, TraceProgram


class GenerationError(ValueError):
    """Bad generation input (prompt too long for the context, empty prompt, …)."""


@dataclass
class GenResult:
    prompt_tokens: list[int]
    tokens: list[int]
    finish_reason: str  # "stop" (EOS) or "length"
    trace_root: bytes
    trace_length: int
    roots: list[bytes]
    sampled: bool
    seconds: dict[str, float] = field(default_factory=dict)
    bytes_kept: int = 0
    fallbacks: int = 0


def logits_op(program: TraceProgram) -> int:
    """Index of the op whose output is the logits row: the first ARGFOLD level's input."""
    for op in program.ops:
        if op.code == Code.ARGFOLD and len(op.inputs) == 1:
            return op.inputs[0].op
    raise GenerationError("the trace program has no argmax over logits")


def check_lengths(n_prompt: int, max_new_tokens: int, max_ctx: int) -> None:
    if n_prompt < 1:
        raise GenerationError("the prompt has no tokens")
    if max_new_tokens < 1:
        raise GenerationError("max_new_tokens must be at least 1")
    if n_prompt >= max_ctx:
        raise GenerationError(f"prompt of {n_prompt} tokens is longer than the context "
                              f"({max_ctx} positions, one needed for the answer)")
    if n_prompt + max_new_tokens - 1 > max_ctx:
        raise GenerationError(f"prompt of {n_prompt} tokens + {max_new_tokens} new tokens "
                              f"exceeds the context of {max_ctx} positions")


def generate(executor: FastExecutor, prompt_tokens: Sequence[int], max_new_tokens: int,
             sampling: SamplingConfig | None = None, keep: str | Path | None = None,
             max_ctx: int | None = None,
             progress: Callable[[int, int], None] | None = None,
             compact: bool = False) -> GenResult:
    """Run until EOS (program.eos) or `max_new_tokens`; commit every leaf (C5), or with
    `compact` the compact trace's (docs/trace-layout.md §L10)."""
    prog = executor.program
    sampling = sampling or SamplingConfig()
    prompt = [int(t) for t in prompt_tokens]
    if max_ctx is not None:
        check_lengths(len(prompt), max_new_tokens, max_ctx)
    job_config = sampling.job_config(max_new_tokens)
    rec = TraceRecorder(prog, prompt, keep, compact=compact)
    executor.reset()
    fb0 = executor.fallbacks
    tokens: list[int] = []
    t_exec = t_commit = 0.0
    t_first = None
    finish = "length"
    feed = None
    ok = False
    try:
        with torch.no_grad():
            for s in range(max_new_tokens):
                t0 = time.perf_counter()
                # the step's token is read from the host (its tail waits for the device);
                # no device-wide sync: with `speculate` the next step is already queued
                outs = executor.run_step(s, prompt, feed, config=job_config,
                                         speculate=s + 1 < max_new_tokens)
                tok = token_of(outs, prog.token_op)
                t1 = time.perf_counter()
                rec.add_step(outs)
                # not held into the next step: after the prefill (~3,400 tensors, which the
                # executor does not keep: `FastExecutor.run_step`) they are freed here
                del outs
                t2 = time.perf_counter()
                t_exec += t1 - t0
                t_commit += t2 - t1
                if s == 0:
                    t_first = t1 - t0
                tokens.append(tok)
                feed = tok
                if progress is not None:
                    progress(s + 1, max_new_tokens)
                if tok == prog.eos:
                    finish = "stop"
                    break
        ok = True
    finally:
        rec.close(ok)
    t3 = time.perf_counter()
    root = rec.root()
    t_root = time.perf_counter() - t3
    return GenResult(prompt, tokens, finish, root, rec.length, rec.roots,
                     sampled=not sampling.greedy,
                     seconds={"execute": t_exec, "commit": t_commit + t_root,
                              "prefill": t_first or 0.0},
                     bytes_kept=rec.bytes_kept, fallbacks=executor.fallbacks - fb0)
