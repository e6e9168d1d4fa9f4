"""Plain-text tables for terminals and log lines: one aligner for every report."""

from __future__ import annotations

from collections.abc import Sequence


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "", rule: bool = True) -> str:
    """Columns left-aligned to their widest cell, two spaces apart; a rule under the header."""
    cells = [[str(c) for c in columns], *([str(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]

    def line(row: Sequence[str]) -> str:
        return (indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))).rstrip()

    lines = [line(cells[0])]
    if rule:
        lines.append(indent + "  ".join("-" * width for width in widths))
    lines += [line(row) for row in cells[1:]]
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, object]], indent: str = "  ") -> str:
    """`key  value` lines with the keys aligned (a run's summary)."""
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{indent}{key.ljust(width)}  {value}" for key, value in pairs)


def markdown(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The same table as GitHub markdown (benchmarks paste it into docs/benchmarks.md)."""
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
