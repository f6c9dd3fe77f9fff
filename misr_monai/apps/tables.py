# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Result tables: CSV (full precision) and markdown (rounded), written atomically."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from misr_monai.io import atomic_write

__all__ = ["format_value", "markdown_table", "write_table"]


def format_value(value) -> str:
    """A table cell: floats rounded to 2 decimals from 10 up, 4 below, scientific under 0.01."""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A markdown table of already formatted cells."""
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(text + ["| " + " | ".join(line) + " |" for line in lines]) + "\n"


def write_table(rows: list[dict], columns, path: str | os.PathLike) -> None:
    """Write rows as CSV (full precision) or a markdown table (rounded), chosen by the file's suffix, atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = markdown_table(list(columns), [[format_value(r.get(c, "")) for c in columns] for r in rows])
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
