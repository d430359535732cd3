"""Console output for the CLI: rich tables and progress lines (library code logs; only the CLI prints)."""
from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.table import Table

# no markup (trial ids like "[b7f7e4aa]" would be read as styles); progress lines never wrap; piped into a
# log, tables get 140 columns instead of rich's 80
console = Console(highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


def fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in sorted(metrics):
        if "/" in k:
            table.add_row(k, fmt(metrics[k]))
    return table


def rows_table(title: str, rows: list[dict], columns: list[str]) -> Table:
    table = Table(title=title)
    for c in columns:
        left = c in ("regime", "status", "trial", "reason", "bench")
        table.add_column(c, justify="left" if left else "right", no_wrap=c == "bench")
    for r in rows:
        table.add_row(*[fmt(r.get(c, "")) for c in columns])
    return table
