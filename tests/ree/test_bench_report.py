"""The bench report's summary of the targets (scripts/bench_runtime.py `latest`): the newest
qualifying section of each machine, named beside its number."""

from scripts.bench_runtime import latest, markdown


def _sec(gpu: str | None, b1: float, tokens: int = 64, b32: float | None = None,
         segment: int = 192, date: str = "2026-12-08") -> dict:
    machine = {"gpu": gpu} if gpu else {"cpu": "AMD EPYC", "cpu_isa": "avx512"}
    machine.update(torch="2", cpu_isa="avx512", cpu_count=2)
    sec = {"date": date, "machine": machine, "segment": segment,
           "trace": {"decode_tokens": tokens, "decode_tok_s_exec_only": b1,
                     "compact": {"trace_overhead_pct": 7.0}}}
    if b32 is not None:
        sec["trace_batch"] = {"batch": 32, "decode_tok_s_exec_only": b32}
    return sec


def test_latest_takes_each_machines_newest_qualifying_section():
    rep = {"sections": {
        "h100-old": _sec("H100", 400.0, b32=2000.0),
        "h100-new": _sec("H100", 480.0),
        "h100-short": _sec("H100", 300.0, tokens=16, b32=3400.0),  # b=1 too short to count
        "h100-seg64": _sec("H100", 999.0, segment=64, b32=9999.0),  # not the default segment
        "cpu": _sec(None, 120.0)}}
    rows = {line.split(" | ")[0].strip("| "): line for line in latest(rep) if "|" in line}
    assert "480.0 (h100-new" in rows["H100"] and "3400.0 (h100-short" in rows["H100"]
    assert "h100-seg64" not in rows["H100"] and "h100-old" not in rows["H100"]
    assert "120.0 (cpu" in rows["AMD EPYC (avx512)"]
    assert "## Latest, against the issue's targets" in markdown({"sections": {}})
