"""The one markdown table writer every report uses (prune steps, INT8 export, latency, comparisons, demo)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

_RULES = {"l": "---", "r": "--:", "c": ":-:"}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table: one ``| a | b |`` line per row, cells as ``str()`` (None -> empty).

    ``align`` has one letter per column: ``l`` (default), ``r`` or ``c``. Short rows are padded with empty cells.
    No trailing newline.
    """
    n = len(header)
    align = (align or "").ljust(n, "l")
    lines = [_line(header, n), "|" + "|".join(_RULES[a] for a in align[:n]) + "|"]
    lines += [_line(row, n) for row in rows]
    return "\n".join(lines)


def _line(cells: Sequence[Any], n: int) -> str:
    cells = ["" if c is None else str(c) for c in cells]
    return "| " + " | ".join(cells + [""] * (n - len(cells))) + " |"
