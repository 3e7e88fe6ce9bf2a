"""One report file, several generators: each script owns the text between its own markers in
docs/reports/gas.md (protocol: gas_report.py; one-step: bench_onestep_gas.py), so regenerating
one section never touches another."""

from __future__ import annotations

from pathlib import Path


def replace_section(report: Path, begin: str, end: str, section: str) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) in place of the text
    between the markers, or append it when the markers are not there yet."""
    report.parent.mkdir(parents=True, exist_ok=True)
    text = report.read_text() if report.exists() else "# Gas report\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)
