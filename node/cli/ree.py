"""`ree`: run a model reproducibly into a signed receipt, validate a receipt, verify it by
re-execution (issue 4; DESIGN §1.2).

    ree run --model smollm2 --prompt TEXT | --prompt-file FILE.jsonl --max-new-tokens N
            [--temperature T --top-k K --top-p P --seed S] [--device cpu|cuda]
            [--receipt PATH] [--keep-trace DIR] [--raw] [--batch N] [--segment S]
            [--trace full|compact] [--json]
    ree validate RECEIPT [--json]
    ree verify RECEIPT [--device cpu|cuda] [--json]

Progress goes to stderr; results to stdout (text, or one JSON object per job with --json).
Exit codes: 0 ok, 1 verification/validation failed, 2 bad input or environment.
Files are written atomically (temp name, then rename), so a failed run leaves none behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from node.cli.trace_options import DEFAULT_SEGMENT, SEGMENT_HELP, TRACE_HELP, TRACE_KINDS

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


class CliError(Exception):
    """A clear message for the user; exit code 2."""


def _err(msg: str) -> None:
    print(f"ree: {msg}", file=sys.stderr, flush=True)


class _Progress:
    """Token progress on stderr: one rewritten line on a terminal, whole lines (the first,
    every 16th and the last token) in a log. A job that stops early at EOS never reports
    done == total, so the caller ends the terminal line with `end()`."""

    def __init__(self, enabled: bool, prefix: str) -> None:
        self.enabled, self.prefix = enabled, prefix
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()
        self.open = False  # a terminal line is waiting for its newline

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        line = f"{self.prefix}: token {done}/{total} ({time.time() - self.t0:.1f}s)"
        if self.tty:
            self.open = done != total
            print(f"\r{line}", end="" if self.open else "\n", file=sys.stderr, flush=True)
        elif done == 1 or done == total or done % 16 == 0:
            print(line, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.open:
            print("", file=sys.stderr, flush=True)
            self.open = False


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def roots_path(receipt: Path) -> Path:
    """Per-leaf output roots beside a receipt (32 bytes per leaf), for naming a divergence."""
    return receipt.with_name(receipt.name + ".roots")


# ------------------------------------------------------------------------------ run


def _prompts(args: argparse.Namespace) -> list[str]:
    if (args.prompt is None) == (args.prompt_file is None):
        raise CliError("give exactly one of --prompt TEXT or --prompt-file FILE.jsonl")
    if args.prompt is not None:
        return [args.prompt]
    p = Path(args.prompt_file)
    if not p.is_file():
        raise CliError(f"prompt file {p} not found")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise CliError(f"{p}:{n}: not JSON ({e})") from None
        if isinstance(item, dict):
            item = item.get("prompt")
        if not isinstance(item, str):
            raise CliError(f"{p}:{n}: need a JSON string or an object with a 'prompt' string")
        out.append(item)
    if not out:
        raise CliError(f"prompt file {p} holds no prompts")
    return out


def _load_account(args: argparse.Namespace) -> Any:
    from node.keys import KeyError_, load_key

    try:
        return load_key(args.keystore)
    except KeyError_ as e:
        raise CliError(f"cannot sign the receipt: {e}") from None


def _session(model: str, device: str, max_ctx: int, segment: int,
             quiet: bool, trace: str = "full"):  # noqa: ANN202
    from node.ree.model import ModelLoadError
    from node.ree.session import Session

    log = (lambda m: None) if quiet else (lambda m: _err(m))
    try:
        return Session(model, device=device, max_ctx=max_ctx, log=log, segment=segment,
                       trace=trace)
    except ModelLoadError as e:
        raise CliError(str(e)) from None
    except RuntimeError as e:
        raise CliError(str(e)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from node.ree.sampling import SamplingConfig

    prompts = _prompts(args)
    try:
        SamplingConfig(args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.max_new_tokens < 1:
        raise CliError("--max-new-tokens must be at least 1")
    if args.batch < 1:
        raise CliError("--batch must be at least 1")
    account = _load_account(args) if args.receipt else None
    receipt_dir = None
    if args.receipt and len(prompts) > 1:
        receipt_dir = Path(args.receipt)
        if receipt_dir.exists() and not receipt_dir.is_dir():
            raise CliError("with several prompts, --receipt must name a directory")
    with _session(args.model, args.device, args.max_ctx, args.segment, args.quiet,
                  args.trace) as sess:
        return _run_jobs(sess, args, prompts, account, receipt_dir)


def _run_jobs(sess: Any, args: argparse.Namespace, prompts: list[str], account: Any,
              receipt_dir: Path | None) -> int:
    from node.ree.generate import GenerationError
    from node.ree.session import JobSpec

    specs = [JobSpec(p, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                     args.seed, chat=not args.raw) for p in prompts]
    try:  # reject bad input before spending time on any job
        encoded = [sess.encode(s) for s in specs]
        from node.ree.generate import check_lengths

        for toks in encoded:
            check_lengths(len(toks), args.max_new_tokens, sess.model.max_ctx)
    except (GenerationError, ValueError) as e:
        raise CliError(str(e)) from None
    keeps = [Path(args.keep_trace) / f"job-{i}" if args.keep_trace else None
             for i in range(len(specs))]
    batched = _run_batch(sess, specs, encoded, keeps, args) if args.batch > 1 else None
    for i, (spec, toks) in enumerate(zip(specs, encoded, strict=True)):
        keep = keeps[i]
        if batched is not None:
            res = batched[i]
        else:
            progress = _Progress(not args.quiet, f"job {i}")
            res = sess.run(spec, keep=keep, tokens=toks, progress=progress)
            progress.end()
        text = sess.text(res.tokens)
        out: dict[str, Any] = {"job": i, "text": text, "tokens": res.tokens,
                               "finish_reason": res.finish_reason,
                               "trace_root": "0x" + res.trace_root.hex(),
                               "trace_length": res.trace_length,
                               "seconds": {k: round(v, 3) for k, v in res.seconds.items()}}
        if keep is not None:
            out["kept_trace"] = str(keep)
            out["kept_bytes_per_token"] = res.bytes_kept // max(1, len(res.tokens))
        if args.receipt:
            r = sess.receipt(spec, res, account)
            path = receipt_dir / f"{i}.json" if receipt_dir else Path(args.receipt)
            _write_atomic(roots_path(path), b"".join(res.roots))
            r.save(path)
            out["receipt"] = str(path)
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print(text, flush=True)
            if not args.quiet:
                _err(f"job {i}: {len(res.tokens)} tokens, finish {res.finish_reason}, trace root "
                     f"{out['trace_root'][:18]}… ({res.trace_length} leaves)"
                     + (f", receipt {out['receipt']}" if args.receipt else ""))
    return EXIT_OK


def _run_batch(sess: Any, specs: list, encoded: list[list[int]], keeps: list,
               args: argparse.Namespace) -> list:
    """`--batch N`: the jobs run N at a time (node/ree/batch.py); each keeps its own trace,
    so its receipt is the one the unbatched run gives."""
    from node.ree.batch import generate_batch

    progress = _Progress(not args.quiet, "batch")
    out = generate_batch(sess.executor, encoded, args.max_new_tokens,
                         [s.sampling() for s in specs], keeps, sess.model.max_ctx,
                         batch=args.batch, progress=progress, compact=sess.compact)
    progress.end()
    return out


# ------------------------------------------------------------------------------ validate


def _load_receipt(path: str):  # noqa: ANN202
    from node.receipts import Receipt, ReceiptError

    try:
        return Receipt.load(path)
    except ReceiptError as e:
        raise CliError(f"invalid receipt: {e}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    from node.receipts import ReceiptError, validate

    r = _load_receipt(args.receipt)
    try:
        validate(r)
    except ReceiptError as e:
        if args.json:
            print(json.dumps({"valid": False, "field": e.field, "error": str(e)}))
        else:
            _err(f"INVALID: {e}" + (f" (field {e.field!r})" if e.field else ""))
        return EXIT_MISMATCH
    if args.json:
        print(json.dumps({"valid": True, "executor": r.executor}))
    else:
        print(f"valid: signed by {r.executor}, model {r.model_hash[:18]}…, "
              f"{r.token_count} tokens, trace root {r.trace_root[:18]}…")
    return EXIT_OK


# ------------------------------------------------------------------------------ verify


def _locate(sess: Any, leaf: int) -> tuple[int, int]:
    """(step, trace op) of a leaf of the session's trace kind (§L1, or §L10 compact)."""
    prog = sess.model.program
    if not sess.compact:
        return divmod(leaf, prog.n_ops)
    from referee.compact import compact_ops, full_index

    cmap = compact_ops(prog)
    return divmod(full_index(cmap, prog.n_ops, leaf), prog.n_ops)


def first_divergence(mine: list[bytes], theirs: list[bytes]) -> int | None:
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        if a != b:
            return i
    return None if len(mine) == len(theirs) else min(len(mine), len(theirs))


def cmd_verify(args: argparse.Namespace) -> int:
    from node.receipts import ReceiptError, validate
    from node.ree.generate import GenerationError
    from node.ree.session import spec_from_receipt

    r = _load_receipt(args.receipt)
    try:
        validate(r)
    except ReceiptError as e:
        raise CliError(f"invalid receipt: {e}") from None
    try:
        spec = spec_from_receipt(r)
    except GenerationError as e:
        raise CliError(str(e)) from None
    p = r.parameters
    try:
        segment = int(p.get("segment", 64))  # receipts before ADR 0012 ran the 64 program
    except (TypeError, ValueError):
        raise CliError(f"receipt parameter segment is not an integer: {p.get('segment')!r}")\
            from None
    trace = p.get("trace", "full")  # receipts before §L10 committed the full trace
    if trace not in TRACE_KINDS:
        raise CliError(f"receipt parameter trace is {trace!r}, not one of "
                       f"{', '.join(TRACE_KINDS)}")
    with _session(r.model, args.device, int(p.get("max_ctx", 0)) or 2048, segment,
                  args.quiet, trace) as sess:
        return _verify_with(sess, args, r, spec)


def _verify_with(sess: Any, args: argparse.Namespace, r: Any, spec: Any) -> int:
    """Re-execute receipt `r` in `sess`; compare outputs and trace roots."""
    p = r.parameters
    problems: list[str] = []
    mh = sess.model.network_hash
    if mh != r.model_hash:
        problems.append(f"model hash {r.model_hash} is not this model's {mh}")
    prog_root = "0x" + sess.model.program.root().hex()
    if p.get("trace_program_root") != prog_root:
        problems.append(f"trace program root {p.get('trace_program_root')} != {prog_root}")
    if sess.encode(spec) != r.input_tokens:
        problems.append("input_tokens are not the tokenization of the prompt")
    progress = _Progress(not args.quiet, "re-executing")
    res = sess.run(spec, tokens=list(r.input_tokens), progress=progress)
    progress.end()
    out: dict[str, Any] = {"output_match": res.tokens == r.output_tokens,
                           "trace_root_match": "0x" + res.trace_root.hex() == r.trace_root,
                           "trace_length_match": res.trace_length == r.trace_length,
                           "finish_match": res.finish_reason == r.finish_reason}
    for k, v in out.items():
        if not v:
            problems.append(k.replace("_match", "") + " differs")
    if not out["trace_root_match"]:
        rp = roots_path(Path(args.receipt))
        if rp.is_file():
            raw = rp.read_bytes()
            theirs = [raw[i:i + 32] for i in range(0, len(raw), 32)]
            leaf = first_divergence(res.roots, theirs)
            if leaf is not None:
                step, j = _locate(sess, leaf)
                name = sess.model.program.ops[j].name
                out["first_divergent_leaf"] = {"leaf": leaf, "step": step, "op": j, "name": name}
                problems.append(f"first divergent op: leaf {leaf} = step {step}, op {j} ({name})")
        else:
            problems.append(f"no per-leaf roots at {rp} to locate the divergence")
    out["ok"] = not problems
    out["problems"] = problems
    if args.json:
        print(json.dumps(out))
    elif problems:
        for m in problems:
            _err(f"MISMATCH: {m}")
    else:
        print(f"verified: {len(res.tokens)} tokens and trace root {r.trace_root[:18]}… "
              f"reproduced on {args.device}")
    return EXIT_OK if not problems else EXIT_MISMATCH


# ------------------------------------------------------------------------------ main


class _Defaults(argparse.HelpFormatter):
    """Shows an option's default when it has a meaningful one (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ree", description=__doc__.split("\n\n")[0],
        epilog="Example: ree run --prompt 'What is 2+2?' --max-new-tokens 8 --receipt r.json"
               " && ree validate r.json && ree verify r.json")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = _Defaults
    run = sub.add_parser("run", help="run a model into a signed receipt", formatter_class=d)
    run.add_argument("--model", default="smollm2", help="registry name or a .gguf path")
    run.add_argument("--prompt", help="one prompt (with the model's chat template)")
    run.add_argument("--prompt-file", help="many prompts: JSONL, one {\"prompt\": TEXT} or "
                     "string per line; one receipt each")
    run.add_argument("--max-new-tokens", type=int, default=32,
                     help="stop after this many new tokens (or at EOS)")
    run.add_argument("--temperature", type=float, default=0.0,
                     help="0 = greedy (argmax); > 0 samples with the seeded PRNG of the spec")
    run.add_argument("--top-k", type=int, default=0, help="keep the k likeliest (0 = all)")
    run.add_argument("--top-p", type=float, default=1.0, help="nucleus mass to keep")
    run.add_argument("--seed", type=lambda s: int(s, 0), default=0,
                     help="sampling seed (decimal or 0x hex); same seed, same tokens")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="where to run; every device gives the same bits")
    run.add_argument("--receipt", help="receipt path (.json or .msgpack; a dir for many)")
    run.add_argument("--keystore", help="eth-account keystore (else $JUDGE_PRIVATE_KEY)")
    run.add_argument("--keep-trace", help="directory to keep every leaf's tensor in")
    run.add_argument("--max-ctx", type=int, default=2048,
                     help="trace program context (part of the model hash)")
    run.add_argument("--segment", type=int, default=DEFAULT_SEGMENT, help=SEGMENT_HELP)
    run.add_argument("--trace", choices=TRACE_KINDS, default="full", help=TRACE_HELP)
    run.add_argument("--raw", action="store_true", help="no chat template")
    run.add_argument("--batch", type=int, default=1,
                     help="run up to N prompts of --prompt-file together (same receipts)")
    run.add_argument("--json", action="store_true", help="one JSON object per job on stdout")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    val = sub.add_parser("validate", help="check structure, hashes and signature (no run)")
    val.add_argument("receipt", help="receipt file (.json or .msgpack)")
    val.add_argument("--json", action="store_true", help="the result as one JSON object")
    ver = sub.add_parser("verify", help="re-execute and compare output and trace root; a "
                         "mismatch names the first divergent op", formatter_class=d)
    ver.add_argument("receipt", help="receipt file (.json or .msgpack)")
    ver.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="where to re-execute")
    ver.add_argument("--json", action="store_true", help="the result as one JSON object")
    ver.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "validate": cmd_validate, "verify": cmd_verify}[args.cmd](args)
    except CliError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
