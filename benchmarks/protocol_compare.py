"""The same maps under the three evaluation protocols (docs/EVALUATION.md, "Protocols").

Scores one source with ``avrsp evaluate``'s code under ``native``, ``vinet`` and
``stavis`` — a model (``--model``), saved maps (``--predictions``) or the centre-bias
baseline alone (neither) — in this process (no Ray), and prints per protocol the mean over
videos of SIM, CC, NSS and AUC-J of every row, then the differences to ``native``::

    .venv/bin/python benchmarks/protocol_compare.py --source synthetic:/tmp/synth
    .venv/bin/python benchmarks/protocol_compare.py --source csv:DIR --predictions MAPS

The numbers of docs/EVALUATION.md were made with it (the command and machine are there).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workflows.evaluate import EvalOptions, evaluate, parse_fold_values
from workflows.protocol import PROTOCOLS

METRICS = (("sim", "SIM"), ("cc", "CC"), ("nss", "NSS"), ("auc_judd", "AUC-J"))


def scores(source: str, protocol: str, model: Any, predictions: Any,
           split: str | None, out: Path) -> dict[str, dict[str, float]]:  # fmt: skip
    """``{row: {metric: mean over (fold, video)}}`` of one evaluation."""
    opts = EvalOptions(
        source=source, model=model, predictions=predictions,
        baseline_only=model is None, split=split or "test", out=out / protocol, workers=0,
        tracking=False, protocol=protocol,
    )  # fmt: skip
    evaluate(opts, log=lambda m: None)
    rows: dict[str, dict[str, list[float]]] = {}
    for row in csv.DictReader((out / protocol / "videos.csv").open()):
        for key, _ in METRICS:
            rows.setdefault(row["row"], {}).setdefault(key, []).append(float(row[key]))
    return {r: {k: float(np.nanmean(v)) for k, v in m.items()} for r, m in rows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True)
    p.add_argument("--model", nargs="+", help="as avrsp evaluate's (K=MODEL per fold)")
    p.add_argument("--predictions", nargs="+", help="as avrsp evaluate's (K=DIR per fold)")
    p.add_argument("--split", help="default test")
    args = p.parse_args()
    found, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in PROTOCOLS:
            started = time.perf_counter()
            found[protocol] = scores(
                args.source, protocol, parse_fold_values(args.model, "--model"),
                parse_fold_values(args.predictions, "--predictions"), args.split, Path(tmp),
            )  # fmt: skip
            seconds[protocol] = time.perf_counter() - started
    print("| row | protocol | " + " | ".join(label for _, label in METRICS) + " | s |")
    print("|---|---|" + "--:|" * (len(METRICS) + 1))
    for row in found["native"]:
        for protocol in sorted(PROTOCOLS, key=lambda p: p != "native"):  # native first
            values = found[protocol][row]
            cells = [f"{values[k]:.4f}" for k, _ in METRICS]
            if protocol != "native":
                cells = [f"{c} ({values[k] - found['native'][row][k]:+.4f})"
                         for c, (k, _) in zip(cells, METRICS, strict=True)]  # fmt: skip
            print(f"| {row} | {protocol} | " + " | ".join(cells) + f" | {seconds[protocol]:.0f} |")


if __name__ == "__main__":
    main()
