"""Learning check: does AVRSP use the audio? (training issue, docs/RESULTS.md)

Runs the demo pipeline (synthetic data → Ray Data shards → Ray Train, ``tiny`` preset, V
and AV with the same data, steps and seed) and compares the two models on the held-out
clips of each condition:

- *relevant* clips (one object sounds; observers look at it): CC(AV) − CC(V) ≥ 0.15;
- *irrelevant* clips (background music): CC(AV) ≥ CC(V) − 0.02.

    .venv/bin/python benchmarks/learns_audio.py --out runs/learns_audio [--epochs 4 --steps 60]

Prints the per-condition CC/SIM/NSS/AUC-J of both models, the two differences and
whether each criterion holds; exits 1 when one does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workflows import demo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learns_audio"))
    parser.add_argument("--clips", type=int, default=demo.DEMO_CLIPS)
    parser.add_argument("--epochs", type=int, default=demo.DEMO_EPOCHS)
    parser.add_argument("--steps", type=int, default=demo.DEMO_STEPS_PER_EPOCH)
    args = parser.parse_args()
    scores = demo.run_demo(args.out, clips=args.clips, epochs=args.epochs, steps=args.steps)
    v, av = scores["AVRSP-tiny (V)"], scores["AVRSP-tiny (AV)"]
    gain_relevant = av["relevant"]["cc"] - v["relevant"]["cc"]
    gain_irrelevant = av["irrelevant"]["cc"] - v["irrelevant"]["cc"]
    ok_relevant = gain_relevant >= 0.15
    ok_irrelevant = gain_irrelevant >= -0.02
    print(f"relevant:   CC(AV) − CC(V) = {gain_relevant:+.3f}  (goal ≥ +0.15): "
          f"{'holds' if ok_relevant else 'FAILS'}")  # fmt: skip
    print(f"irrelevant: CC(AV) − CC(V) = {gain_irrelevant:+.3f}  (goal ≥ −0.02): "
          f"{'holds' if ok_irrelevant else 'FAILS'}")  # fmt: skip
    return 0 if ok_relevant and ok_irrelevant else 1


if __name__ == "__main__":
    sys.exit(main())
