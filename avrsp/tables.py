"""Result tables: per-frame metric rows → per-video → per-dataset means → paper-shaped tables.

Averaging follows the STAViS protocol (docs/METRICS.md), which produced the published numbers:

1. a video's score is the mean over its frames (:func:`video_means`);
2. a fold's score is the mean over its test videos — every video weighs the same, however
   long it is;
3. a dataset's score is the mean over its folds (the three STAViS splits), or over its
   videos when it has no folds (e.g. DIEM's one split) (:func:`dataset_means`).

A metric that is undefined on a frame (NaN, e.g. NSS on a frame without fixations) is
left out of that frame's mean rather than poisoning it; a video whose frames are all NaN
for a metric is left out of the fold's mean for that metric in the same way.

:class:`ResultsTable` holds such means for several methods and renders them like the
paper's Tables I/II (rows = methods, a two-level header: dataset, then SIM, CC, NSS,
AUC-J; three decimals, NSS two), as Markdown or CSV, and round-trips through CSV and JSON
(for MLflow artifacts).

Metric names are free-form in the rows; the table canonicalises the usual spellings
(``auc_judd``, ``AUC-J`` → ``auc_j``; ``auc_borji`` → ``auc_b``; ``shuffled_auc`` →
``sauc``; ``kl`` → ``kld``) so the output of the metrics module and the paper's labels meet.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avrsp.errors import InputError
from avrsp.io import write_text

__all__ = [
    "PAPER_METRICS",
    "DatasetScores",
    "FrameScores",
    "ResultsTable",
    "TableRow",
    "VideoScores",
    "canonical_metric",
    "dataset_means",
    "metric_label",
    "summarize",
    "video_means",
]

PAPER_METRICS: tuple[str, ...] = ("sim", "cc", "nss", "auc_j")
"""The metric columns of the paper's Tables I–III and V, in the paper's order."""

_ALIASES = {
    "aucj": "auc_j",
    "auc_judd": "auc_j",
    "aucb": "auc_b",
    "auc_borji": "auc_b",
    "s_auc": "sauc",
    "shuffled_auc": "sauc",
    "auc_shuffled": "sauc",
    "kl": "kld",
    "kl_div": "kld",
}
_LABELS = {
    "sim": "SIM",
    "cc": "CC",
    "nss": "NSS",
    "auc_j": "AUC-J",
    "auc_b": "AUC-B",
    "sauc": "sAUC",
    "kld": "KLD",
}
_LOWER_IS_BETTER = frozenset({"kld"})
_DECIMALS = {"nss": 2}  # as printed in the paper; everything else 3


def canonical_metric(name: str) -> str:
    """``"AUC-J"``, ``"auc_judd"`` → ``"auc_j"``; unknown names are lower-cased as they are."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return _ALIASES.get(key, key)


def metric_label(name: str) -> str:
    """The paper's column label of a metric (``"auc_j"`` → ``"AUC-J"``)."""
    key = canonical_metric(name)
    return _LABELS.get(key, name)


def _decimals(metric: str) -> int:
    return _DECIMALS.get(canonical_metric(metric), 3)


# --- aggregation -------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameScores:
    """The metric values of one frame. ``fold`` is None for a dataset without folds."""

    dataset: str
    video: str
    frame: int
    scores: Mapping[str, float]
    fold: int | None = None


@dataclass(frozen=True)
class VideoScores:
    """Per-video means: ``scores[m]`` over the ``frames[m]`` frames where ``m`` is defined."""

    dataset: str
    video: str
    fold: int | None
    scores: dict[str, float]
    frames: dict[str, int]


@dataclass(frozen=True)
class DatasetScores:
    """A dataset's means; ``per_fold`` maps each fold (None: no folds) to its video mean."""

    dataset: str
    scores: dict[str, float]
    videos: int
    per_fold: dict[int | None, dict[str, float]]


def _mean_defined(values: Iterable[float]) -> tuple[float, int]:
    """Mean over the non-NaN values and how many there were (NaN when there were none)."""
    total, count = 0.0, 0
    for v in values:
        v = float(v)
        if not math.isnan(v):
            total += v
            count += 1
    return (total / count if count else math.nan), count


def video_means(rows: Iterable[FrameScores]) -> list[VideoScores]:
    """Mean of each metric over each video's frames, in first-seen order.

    Videos are told apart by ``(dataset, fold, video)``. A frame listed twice is an error
    (it would count double).
    """
    grouped: dict[tuple[str, int | None, str], dict[str, list[float]]] = {}
    seen: set[tuple[str, int | None, str, int]] = set()
    for row in rows:
        key = (row.dataset, row.fold, row.video)
        frame_key = (*key, row.frame)
        if frame_key in seen:
            raise InputError(
                f"dataset {row.dataset!r}, fold {row.fold}, video {row.video!r}: "
                f"frame {row.frame} is scored twice"
            )
        seen.add(frame_key)
        per_metric = grouped.setdefault(key, {})
        for metric, value in row.scores.items():
            per_metric.setdefault(metric, []).append(value)
    out = []
    for (dataset, fold, video), per_metric in grouped.items():
        scores, frames = {}, {}
        for metric, values in per_metric.items():
            scores[metric], frames[metric] = _mean_defined(values)
        out.append(VideoScores(dataset, video, fold, scores, frames))
    return out


def dataset_means(
    videos: Iterable[VideoScores], *, pool_folds: bool = False
) -> dict[str, DatasetScores]:
    """Per dataset: mean over each fold's videos, then mean over the folds; with
    ``pool_folds`` the mean over every (fold, video) score instead, as STAViS'
    ``compute_all_*.m`` average (the per-fold means are kept either way). The two differ
    where folds hold different numbers of videos (AVAD, ETMD, SumMe); for a fixed split
    scored by each fold's model (DIEM) they agree.

    A dataset must either have folds for all its videos or for none.
    """
    by_dataset: dict[str, dict[int | None, list[VideoScores]]] = {}
    for v in videos:
        by_dataset.setdefault(v.dataset, {}).setdefault(v.fold, []).append(v)
    out: dict[str, DatasetScores] = {}
    for dataset, folds in by_dataset.items():
        if None in folds and len(folds) > 1:
            raise InputError(
                f"dataset {dataset!r}: some videos have a fold and some do not "
                f"(folds {sorted(f for f in folds if f is not None)} and None)"
            )
        per_fold: dict[int | None, dict[str, float]] = {}
        for fold in sorted(folds, key=lambda f: -1 if f is None else f):
            metrics = _ordered_union(v.scores for v in folds[fold])
            per_fold[fold] = {
                m: _mean_defined(v.scores.get(m, math.nan) for v in folds[fold])[0] for m in metrics
            }
        metrics = _ordered_union(per_fold.values())
        if pool_folds:
            every = [v for vs in folds.values() for v in vs]
            scores = {
                m: _mean_defined(v.scores.get(m, math.nan) for v in every)[0] for m in metrics
            }
        else:
            scores = {
                m: _mean_defined(f.get(m, math.nan) for f in per_fold.values())[0] for m in metrics
            }
        out[dataset] = DatasetScores(
            dataset, scores, sum(len(vs) for vs in folds.values()), per_fold
        )
    return out


def summarize(rows: Iterable[FrameScores], *, pool_folds: bool = False) -> dict[str, DatasetScores]:
    """Per-frame rows → per-dataset means: :func:`video_means` then :func:`dataset_means`."""
    return dataset_means(video_means(rows), pool_folds=pool_folds)


def _ordered_union(dicts: Iterable[Mapping[str, object]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


# --- tables --------------------------------------------------------------------------------


@dataclass
class TableRow:
    """One row: its label cells (e.g. the method's name) and ``values[dataset][metric]``."""

    labels: tuple[str, ...]
    values: dict[str, dict[str, float]] = field(default_factory=dict)

    def get(self, dataset: str, metric: str) -> float | None:
        """The value, or None where the row has none."""
        return self.values.get(dataset, {}).get(canonical_metric(metric))


@dataclass
class ResultsTable:
    """Rows = methods (or configurations), columns = metric per dataset (paper Tables I/II).

    ``label_columns`` names the leading label cells of every row: ``("Method",)`` for
    Tables I/II, e.g. ``("Audio", "MS", "MRG")`` for Table III. ``metrics`` are canonical
    names (see :func:`canonical_metric`). A value that is missing or NaN renders as
    ``–`` in Markdown and as an empty cell in CSV.
    """

    datasets: tuple[str, ...]
    metrics: tuple[str, ...] = PAPER_METRICS
    label_columns: tuple[str, ...] = ("Method",)
    rows: list[TableRow] = field(default_factory=list)
    title: str = ""

    def __post_init__(self) -> None:
        self.datasets = tuple(self.datasets)
        self.metrics = tuple(canonical_metric(m) for m in self.metrics)
        self.label_columns = tuple(self.label_columns)
        for what, items in (("dataset", self.datasets), ("metric", self.metrics)):
            if not items or any(not str(x).strip() for x in items):
                raise InputError(f"table: need one or more non-empty {what} names, got {items}")
            if len(set(items)) != len(items):
                raise InputError(f"table: {what} names repeat: {items}")
        if not self.label_columns:
            raise InputError("table: need at least one label column")

    # -- building -------------------------------------------------------------------
    def add(
        self,
        label: str | Sequence[str],
        results: Mapping[str, DatasetScores | Mapping[str, float]],
    ) -> TableRow:
        """Append a row from ``{dataset: DatasetScores or {metric: value}}``.

        Datasets and metrics the table does not show are ignored; NaN values are dropped.
        """
        labels = (label,) if isinstance(label, str) else tuple(label)
        if len(labels) != len(self.label_columns):
            raise InputError(
                f"table row {labels}: expected {len(self.label_columns)} label cells "
                f"({', '.join(self.label_columns)})"
            )
        values: dict[str, dict[str, float]] = {}
        for dataset, scores in results.items():
            if dataset not in self.datasets:
                continue
            if isinstance(scores, DatasetScores):
                scores = scores.scores
            kept = {}
            for metric, value in scores.items():
                key = canonical_metric(metric)
                if key in self.metrics and value is not None and not math.isnan(value):
                    kept[key] = float(value)
            if kept:
                values[dataset] = kept
        row = TableRow(labels, values)
        self.rows.append(row)
        return row

    # -- rendering ------------------------------------------------------------------
    def _cell(self, value: float | None, metric: str, rounded: bool, missing: str) -> str:
        if value is None or math.isnan(value):
            return missing
        return f"{value:.{_decimals(metric)}f}" if rounded else repr(float(value))

    def to_markdown(self) -> str:
        """Markdown table; dataset names head their first metric column, metric labels
        (with ↑/↓ for better) form the first body row, as close to a two-level header as
        Markdown allows."""
        n_labels = len(self.label_columns)
        head = list(self.label_columns)
        sub = [""] * n_labels
        for dataset in self.datasets:
            for k, metric in enumerate(self.metrics):
                head.append(dataset if k == 0 else "")
                arrow = "↓" if metric in _LOWER_IS_BETTER else "↑"
                sub.append(f"{metric_label(metric)} {arrow}")
        align = [":--"] * n_labels + ["--:"] * (len(head) - n_labels)
        lines = [_md_row(head), _md_row(align), _md_row(sub)]
        for row in self.rows:
            cells = [_md_escape(x) for x in row.labels]
            for dataset in self.datasets:
                for metric in self.metrics:
                    cells.append(self._cell(row.get(dataset, metric), metric, True, "–"))
            lines.append(_md_row(cells))
        text = "\n".join(lines) + "\n"
        return f"**{self.title}**\n\n{text}" if self.title else text

    def to_csv(self, rounded: bool = True) -> str:
        """CSV with two header lines (dataset, metric label). ``rounded``: the paper's
        decimals; otherwise full precision (``repr``), which :meth:`from_csv` reads back
        exactly."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*self.label_columns, *(d for d in self.datasets for _ in self.metrics)])
        writer.writerow(
            [""] * len(self.label_columns)
            + [metric_label(m) for _ in self.datasets for m in self.metrics]
        )
        for row in self.rows:
            writer.writerow(
                [
                    *row.labels,
                    *(
                        self._cell(row.get(d, m), m, rounded, "")
                        for d in self.datasets
                        for m in self.metrics
                    ),
                ]
            )
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str, source: str = "CSV") -> ResultsTable:
        """Read :meth:`to_csv`'s output (rounded or not). Label columns are the leading
        columns whose second header cell is empty."""
        lines = list(csv.reader(io.StringIO(text)))
        if len(lines) < 2:
            raise InputError(f"{source}: expected two header lines (dataset, metric)")
        head, sub = lines[0], lines[1]
        if len(head) != len(sub):
            raise InputError(f"{source}: the two header lines differ in length")
        n_labels = 0
        while n_labels < len(sub) and not sub[n_labels].strip():
            n_labels += 1
        columns = [(head[c], canonical_metric(sub[c])) for c in range(n_labels, len(head))]
        if not columns or n_labels == 0:
            raise InputError(f"{source}: no label or no metric columns in the header")
        datasets = tuple(dict.fromkeys(d for d, _ in columns))
        metrics = tuple(dict.fromkeys(m for _, m in columns))
        if columns != [(d, m) for d in datasets for m in metrics]:
            raise InputError(f"{source}: columns are not every metric for every dataset")
        table = cls(datasets, metrics, tuple(head[:n_labels]))
        for k, cells in enumerate(lines[2:], start=3):
            if not cells:
                continue
            if len(cells) != len(head):
                raise InputError(f"{source}: line {k} has {len(cells)} cells, expected {len(head)}")
            values: dict[str, dict[str, float]] = {}
            for (dataset, metric), cell in zip(columns, cells[n_labels:], strict=True):
                if cell.strip() in ("", "–", "-"):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise InputError(
                        f"{source}: line {k}, {dataset} {metric}: not a number: {cell!r}"
                    ) from None
                if not math.isnan(value):
                    values.setdefault(dataset, {})[metric] = value
            table.rows.append(TableRow(tuple(cells[:n_labels]), values))
        return table

    def to_dict(self) -> dict[str, object]:
        return {
            "title": self.title,
            "label_columns": list(self.label_columns),
            "datasets": list(self.datasets),
            "metrics": list(self.metrics),
            "rows": [{"labels": list(r.labels), "values": r.values} for r in self.rows],
        }

    def to_json(self) -> str:
        """Full-precision JSON (missing values are simply absent)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], source: str = "JSON") -> ResultsTable:
        try:
            table = cls(
                tuple(data["datasets"]),  # type: ignore[arg-type]
                tuple(data.get("metrics", PAPER_METRICS)),  # type: ignore[arg-type]
                tuple(data.get("label_columns", ("Method",))),  # type: ignore[arg-type]
                title=str(data.get("title", "")),
            )
            for row in data.get("rows", []):  # type: ignore[union-attr]
                table.rows.append(
                    TableRow(
                        tuple(row["labels"]),
                        {
                            d: {canonical_metric(m): float(v) for m, v in ms.items()}
                            for d, ms in row.get("values", {}).items()
                        },
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{source}: not a results table ({type(exc).__name__}: {exc})"
            ) from None
        return table

    @classmethod
    def from_json(cls, text: str, source: str = "JSON") -> ResultsTable:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected an object at the top level")
        return cls.from_dict(data, source)

    # -- files ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.md``, ``.csv`` (full precision) or ``.json`` by suffix, atomically."""
        path = Path(path)
        writers = {
            ".md": self.to_markdown,
            ".csv": lambda: self.to_csv(rounded=False),
            ".json": self.to_json,
        }
        if path.suffix not in writers:
            raise InputError(f"{path}: unknown table format (use .md, .csv or .json)")
        return write_text(path, writers[path.suffix]())

    @classmethod
    def load(cls, path: str | Path) -> ResultsTable:
        """Read a table written by :meth:`save` (``.csv`` or ``.json``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot read table ({exc.strerror})") from None
        if path.suffix == ".csv":
            return cls.from_csv(text, str(path))
        if path.suffix == ".json":
            return cls.from_json(text, str(path))
        raise InputError(f"{path}: cannot read tables from {path.suffix or 'this'} files")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
