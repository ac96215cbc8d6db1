"""The sweeps' tables: the paper-shaped ablation table (ours beside the quoted values, the
best measured value per column in bold, mean ± spread over seeds) and the trial list."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from avrsp.tables import _LOWER_IS_BETTER, ResultsTable, _decimals, metric_label

MEASURED, QUOTED = "measured", "paper (quoted)"


def best_rows(table: ResultsTable, among: Sequence[int]) -> dict[tuple[str, str], int]:
    """``{(dataset, metric): row index}`` of the best value among rows ``among``."""
    best: dict[tuple[str, str], int] = {}
    for d in table.datasets:
        for m in table.metrics:
            scored = [(table.rows[i].get(d, m), i) for i in among]
            scored = [(v, i) for v, i in scored if v is not None and not math.isnan(v)]
            if scored:
                pick = min if m in _LOWER_IS_BETTER else max
                best[(d, m)] = pick(scored, key=lambda x: x[0])[1]
    return best


def to_markdown(
    table: ResultsTable,
    *,
    spread: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
    measured: Sequence[int] | None = None,
) -> str:
    """Markdown like :meth:`ResultsTable.to_markdown`, with each column's best value among
    the ``measured`` rows (default: all) in bold and ``± spread`` where given."""
    measured = list(range(len(table.rows))) if measured is None else list(measured)
    best = best_rows(table, measured)
    n = len(table.label_columns)
    head, sub = list(table.label_columns), [""] * n
    for d in table.datasets:
        for k, m in enumerate(table.metrics):
            head.append(d if k == 0 else "")
            sub.append(f"{metric_label(m)} {'↓' if m in _LOWER_IS_BETTER else '↑'}")
    lines = [_row(head), _row([":--"] * n + ["--:"] * (len(head) - n)), _row(sub)]
    for i, row in enumerate(table.rows):
        cells = [c.replace("|", "\\|") for c in row.labels]
        for d in table.datasets:
            for m in table.metrics:
                v = row.get(d, m)
                if v is None or math.isnan(v):
                    cells.append("–")
                    continue
                text = f"{v:.{_decimals(m)}f}"
                s = (spread or {}).get(i, {}).get(d, {}).get(m)
                if s is not None and not math.isnan(s):
                    text += f" ± {s:.{_decimals(m)}f}"
                cells.append(f"**{text}**" if best.get((d, m)) == i else text)
        lines.append(_row(cells))
    text = "\n".join(lines) + "\n"
    return f"**{table.title}**\n\n{text}" if table.title else text


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def trials_markdown(rows: list[dict[str, Any]], metric: str) -> str:
    """The trial list (already sorted): name, status, values, the metric, scores."""
    columns = ["trial", "status", "values", metric, "epochs", "eval"]
    lines = [_row(columns), _row(["--"] * len(columns))]
    for r in rows:
        value = r.get(metric)
        lines.append(
            _row(
                [
                    r["trial"],
                    r["status"],
                    r["values"].replace("|", "\\|"),
                    "–" if value is None else f"{value:.4f}",
                    str(r.get("epochs", "")),
                    r.get("eval", ""),
                ]
            )
        )
    return "\n".join(lines) + "\n"
