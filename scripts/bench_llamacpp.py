"""llama.cpp baseline of the runtime benchmark (issue 4): the CPU decode target is relative to it.

The issue's CPU target is "REE decode at batch 1 ≥ 0.5× llama.cpp on the same GGUF", so the
baseline must run the very file our loader reads (the sha256-pinned SmolLM2 Q4_1 GGUF from
node/models.py), on the very token ids our tokenizer produced, greedy, with the same number of
decode steps and every CPU thread. It goes through llama-cpp-python (the optional `bench` extra),
and feeds token ids with `Llama.eval` rather than text, so tokenizer differences cannot change
the work measured; the tokenization llama.cpp would have chosen is recorded beside it as a check.

Used by scripts/bench_runtime.py; standalone for a quick measurement:

    python scripts/bench_llamacpp.py --tokens 32 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INSTALL_HINT = "pip install -e '.[bench]' (builds llama-cpp-python from source, ~8 min)"


def skipped_reason() -> str | None:
    """Why the llama.cpp row cannot be measured here, or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        return f"llama_cpp not installed ({e}); {INSTALL_HINT}"
    return None


def _greedy_run(llm, toks: Sequence[int], n_new: int) -> tuple[float, float, list[int]]:  # noqa: ANN001
    """One prefill of `toks` then `n_new` single-token decode steps, argmax each time.

    Mirrors bench_runtime's step schedule: step 0 is the prefill (it yields the first new
    token), steps 1..n_new each evaluate one token. Returns (prefill s, decode s, new tokens).
    """
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()

    def argmax_last() -> int:
        # Llama.eval no longer copies logits into llm.scores (0.3.x samples inside C), so read
        # the context's logits of the batch's last token directly.
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(n_vocab,))))

    llm.reset()  # n_tokens = 0; eval drops the stale KV cells past it
    t0 = time.perf_counter()
    llm.eval(list(toks))
    t1 = time.perf_counter()
    out = [argmax_last()]
    for _ in range(n_new):
        llm.eval([out[-1]])
        out.append(argmax_last())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def bench_llama_cpp(toks: Sequence[int], n_new: int, prompt_text: str | None = None,
                    reps: int = 3, gguf_path: Path | None = None,
                    n_threads: int | None = None) -> dict:
    """Prefill and batch-1 greedy decode tokens/s of llama.cpp on the pinned GGUF.

    Returns {"skipped": reason} when llama_cpp is absent, so the report says why the row is
    missing instead of silently dropping it. Medians over `reps` runs after one warm-up.
    """
    reason = skipped_reason()
    if reason is not None:
        return {"skipped": reason}
    import llama_cpp
    from llama_cpp import Llama

    from node.models import MODELS, smollm2_path

    path = Path(gguf_path) if gguf_path is not None else smollm2_path()
    threads = n_threads or os.cpu_count() or 1
    n_ctx = max(512, len(toks) + n_new + 16)
    load0 = os.getloadavg()[0]
    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=max(512, len(toks)),
                n_threads=threads, n_threads_batch=threads, verbose=False)
    _greedy_run(llm, toks[:8], 2)  # warm-up: page in the weights, size the compute buffers
    pre, dec, new = [], [], []
    for _ in range(max(1, reps)):
        p, d, new = _greedy_run(llm, toks, n_new)
        pre.append(p)
        dec.append(d)
    res = {
        "engine": "llama.cpp via llama-cpp-python",
        "llama_cpp_python": llama_cpp.__version__,
        "gguf": path.name,
        "gguf_sha256": MODELS["smollm2"].sha256 if gguf_path is None else None,
        "n_threads": threads,
        "reps": len(pre),
        "prefill_tokens": len(toks),
        "prefill_tok_s": round(len(toks) / statistics.median(pre), 1),
        "decode_tokens": n_new,
        "decode_tok_s": round(n_new / statistics.median(dec), 1),
        "decode_tok_s_runs": [round(n_new / d, 1) for d in dec],
        "greedy_tokens": new,
        "greedy_text": llm.detokenize(new).decode("utf-8", errors="replace"),
        "loadavg_1m_before": round(load0, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    if prompt_text is not None:  # would llama.cpp have tokenized the prompt the same way?
        theirs = llm.tokenize(prompt_text.encode(), add_bos=False, special=True)
        res["same_tokenization"] = list(theirs) == list(toks)
    if hasattr(llm, "close"):  # frees the model now, not at interpreter exit
        llm.close()
    return res


def ratio_to_llama_cpp(ree_tok_s: float, lc: dict | None) -> float | None:
    """REE decode tok/s as a fraction of llama.cpp's (issue 4 CPU target ≥ 0.5×)."""
    if not lc or "decode_tok_s" not in lc or not lc["decode_tok_s"]:
        return None
    return round(ree_tok_s / lc["decode_tok_s"], 3)


def markdown_row(lc: dict | None) -> list[str]:
    """The llama.cpp row of bench_runtime's engine table (empty when not measured)."""
    if not lc:
        return []
    if "skipped" in lc:
        return [f"| llama.cpp | skipped: {lc['skipped']} | | |"]
    if "decode_tok_s" not in lc:  # a section written by an older version of this script
        return [f"| llama.cpp | unrecognized result {sorted(lc)} | | |"]
    return [f"| llama.cpp {lc['llama_cpp_python']} (same GGUF, {lc['n_threads']} threads) | "
            f"{lc['prefill_tok_s']} | {lc['decode_tok_s']} | n/a |"]


def markdown_ratio(trace: dict, lc: dict | None) -> list[str]:
    """The sentence that states the CPU decode target of issue 4 against the measured numbers."""
    if not lc or "decode_tok_s" not in lc:
        return []
    exec_r = ratio_to_llama_cpp(trace["decode_tok_s_exec_only"], lc)
    trace_r = ratio_to_llama_cpp(trace["decode_tok_s_with_trace"], lc)
    tok = "" if lc.get("same_tokenization") is None else (
        "; llama.cpp tokenizes the prompt identically" if lc["same_tokenization"]
        else "; llama.cpp would tokenize the prompt differently (ids fed as ours)")
    return ["", f"REE decode (b=1) as a fraction of llama.cpp on the same GGUF: "
            f"**{exec_r}×** exec only, **{trace_r}×** with trace (target ≥ 0.5×, stretch 1.0×). "
            f"llama.cpp: greedy, {lc['decode_tokens']} decode steps after a "
            f"{lc['prefill_tokens']}-token prefill, median of {lc['reps']} runs "
            f"{lc['decode_tok_s_runs']} tok/s, 1-min load {lc['loadavg_1m_before']}→"
            f"{lc['loadavg_1m_after']}{tok}."] + _busy_note(lc)


def _busy_note(lc: dict) -> list[str]:
    """llama.cpp's threads meet at a barrier per graph node: with more runnable processes than
    cores a descheduled thread stalls the others, so a busy machine understates it many-fold
    (measured here at load 8-9: 1.2 tok/s with 2 threads, 19.6 with 1)."""
    load = max(lc["loadavg_1m_before"], lc["loadavg_1m_after"])
    if load <= lc["n_threads"]:
        return []
    return ["", f"**Caution**: the machine was busy (1-min load {load} > {lc['n_threads']} "
            "threads); llama.cpp's numbers are understated and the ratio flatters REE. "
            "Re-run at a quiet moment."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=32, help="decode steps")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prompt", default=None, help="default: bench_runtime's PROMPT")
    ap.add_argument("--threads", type=int, default=None, help="default: the CPU count")
    args = ap.parse_args(argv)
    from node.models import smollm2_path
    from node.runtime.gguf_loader import open_reader, read_metadata
    from node.runtime.tokenizer import Tokenizer
    from scripts.bench_runtime import PROMPT

    tok = Tokenizer.from_metadata(read_metadata(open_reader(smollm2_path())))
    text = tok.apply_chat_template([{"role": "user", "content": args.prompt or PROMPT}])
    res = bench_llama_cpp(tok.encode(text), args.tokens, text, reps=args.reps,
                          n_threads=args.threads)
    print(json.dumps(res, indent=1))
    return 0 if "skipped" not in res else 2


if __name__ == "__main__":
    sys.exit(main())
