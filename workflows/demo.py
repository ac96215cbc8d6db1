"""The demo on the embedded defaults: local Ray, SQLite MLflow, no GPU, no account.

1. ``avrsp synth``: the synthetic audio-visual relevance dataset (docs/SYNTHETIC.md);
2. ``avrsp preprocess``: the Ray Data job turns it into segment shards;
3. ``avrsp train`` twice, Ray Train in-process: the ``tiny`` preset as V (no audio) and
   as AV (audio + RAVF), the same steps, seed and data;
4. both models scored on the held-out clips per condition (relevant / irrelevant /
   silent) and the table printed — on *relevant* clips only the AV model can know which
   object the observers look at;
5. ``avrsp predict`` on one held-out relevant clip with each model: the overlay videos
   (and the AV model's relevance plot) a newcomer can open (docs/PREDICT.md);
6. how to open the runs in the MLflow UI.

Every step is resumable: re-running the demo skips the finished ones (the dataset, the
shards, the trained runs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# 128 clips (88 train, 40 held out): with 32, the models learnt the 24 training clips by
# heart (training loss far below the held-out one) and 4 relevant test clips made noisy
# scores (docs/RESULTS.md). Synthesis and preprocessing of 128 clips take about a minute.
DEMO_CLIPS = 128
# Frames between windows: 15 windows per 5 s clip (1,320 training windows, 150 steps of 8
# see most of them once). Stride 4 made the scoring of 1,200 held-out windows per model
# take 2.2 minutes and the demo 15.9 (docs/RESULTS.md, run 3).
DEMO_STRIDE = 8
DEMO_EPOCHS = 3
DEMO_STEPS_PER_EPOCH = 45  # 50 took 15.1 min in all on 2 idle cores (README)
DEMO_BATCH = 8
DEMO_LR = 3e-4
CONDITIONS = ("relevant", "irrelevant", "silent")


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _train_variant(out: Path, shards: Path, use_audio: bool, epochs: int, steps: int) -> Path:
    from workflows.train import TrainConfig, train

    name = "demo-av" if use_audio else "demo-v"
    model_path = out / "runs" / name / "model.pt"
    cfg = TrainConfig(
        preset="tiny",
        network={"model": {"use_audio": use_audio}},
        data=shards,
        val_split="test",
        epochs=epochs,
        max_steps_per_epoch=steps,
        max_val_batches=8,
        batch_size=DEMO_BATCH,
        lr=DEMO_LR,
        seed=0,
        run_name=name,
        storage_path=out / "runs",
        mlflow_uri=mlflow_uri(out),
        experiment="avrsp-demo",
        system_metrics_interval_s=30.0,
    )
    if model_path.is_file() and _finished(out / "runs" / name, epochs):
        _say(f"{name}: trained before ({model_path})")
        return model_path
    _say(
        f"training {name}: tiny preset, {'with' if use_audio else 'without'} audio, "
        f"{epochs} epochs × {steps} steps of {DEMO_BATCH} windows"
    )
    result = train(cfg)
    last = result.history[-1]
    _say(
        f"{name}: done — validation loss {last.get('val_loss', float('nan')):.3f}, "
        f"CC {last.get('val_cc', float('nan')):.3f}; model {result.model_path}"
    )
    return result.model_path


def _finished(run_dir: Path, epochs: int) -> bool:
    from workflows.loop import checkpoint_dirs

    return any(d.name.endswith(f"{epochs - 1:04d}") for d in checkpoint_dirs(run_dir))


def predict_examples(
    out: Path, synth: Path, manifest: dict[str, Any], models: dict[str, Path]
) -> dict[str, Path]:
    """``avrsp predict`` of the first held-out *relevant* clip with each model, into
    ``out/predict/<run>/<clip>/``; returns each model's output folder (one predicted after
    its model was trained is kept). No clip of that kind: nothing."""
    from workflows.export import load_model
    from workflows.predict import PredictOptions, predict_one

    held_out = [
        c for c in manifest["clips"] if c["condition"] == "relevant" and c["split"] == "test"
    ]
    if not held_out:
        _say("no held-out relevant clip: nothing to predict")
        return {}
    clip = min(held_out, key=lambda c: c["clip"])
    folders: dict[str, Path] = {}
    for label, model_path in models.items():
        dest = out / "predict" / model_path.parent.name
        folder = dest / clip["clip"]
        done = folder / "summary.json"
        if not done.is_file() or done.stat().st_mtime < model_path.stat().st_mtime:
            options = PredictOptions(device="cpu", overwrite=True)
            predict_one(
                load_model(model_path), synth / clip["video"], dest, options, name=clip["clip"]
            )
        folders[label] = folder
    return folders


def mlflow_uri(out: Path) -> str:
    return f"sqlite:///{(out / 'mlflow.db').resolve()}"


def run_demo(
    out: Path = Path("runs/demo"),
    *,
    clips: int = DEMO_CLIPS,
    seconds: float = 5.0,
    epochs: int = DEMO_EPOCHS,
    steps: int = DEMO_STEPS_PER_EPOCH,
) -> dict[str, Any]:
    """Run the whole demo under ``out``; returns the per-condition scores of V and AV."""
    from avrsp.config import preset
    from avrsp.tables import ResultsTable
    from preprocessing.pipeline import preprocess
    from preprocessing.segments import SegmentOptions
    from preprocessing.synthetic import SynthSettings, read_manifest, write_dataset
    from workflows.evaluate import evaluate_windows

    started = time.perf_counter()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    synth, shards = out / "synthetic", out / "shards"
    cfg = preset("tiny")

    if (synth / "synthetic.json").is_file():
        _say(f"synthetic dataset: found at {synth}")
    else:
        _say(f"1/6 writing the synthetic dataset ({clips} clips) to {synth}")
        settings = SynthSettings(videos=clips, seed=0, seconds=seconds)
        write_dataset(synth, settings, workers=os.cpu_count() or 1)
    manifest = read_manifest(synth)
    conditions = {c["clip"]: c["condition"] for c in manifest["clips"]}

    _say(f"2/6 preprocessing with Ray Data → {shards}")
    options = SegmentOptions.from_config(cfg, stride=DEMO_STRIDE)
    report = preprocess(f"synthetic:{synth}", shards, config=cfg, options=options, log=_say)
    if report.failed:
        _say(f"warning: {report.failed} videos failed, see {shards / 'failures.json'}")

    _say("3/6 training (Ray Train, in-process; progress per epoch below)")
    models = {
        "AVRSP-tiny (V)": _train_variant(out, shards, False, epochs, steps),
        "AVRSP-tiny (AV)": _train_variant(out, shards, True, epochs, steps),
    }

    _say("4/6 scoring both models on the held-out clips, per condition")
    table = ResultsTable(datasets=CONDITIONS, metrics=("cc", "sim", "nss", "auc_j"),
                         title="Synthetic audio-visual relevance, held-out clips")  # fmt: skip
    scores: dict[str, Any] = {}
    for label, path in models.items():
        by_condition = evaluate_windows(path, shards, split="test", groups=conditions)
        table.add(label, by_condition)
        scores[label] = {k: v.scores for k, v in by_condition.items()}
    print()
    print(table.to_markdown())
    print()
    table.save(out / "results.md")
    (out / "results.json").write_text(json.dumps(scores, indent=2))

    _say("5/6 predicting one held-out relevant clip with each model (avrsp predict)")
    overlays = predict_examples(out, synth, manifest, models)
    if overlays:
        print("\nWhere the models look (heat map over the clip, with its sound):")
    for label, folder in overlays.items():
        plot = folder / "relevance.png"
        extra = f"; audio relevance over time: {plot}" if plot.is_file() else ""
        print(f"  {label}: {folder / 'overlay.mp4'}{extra}")

    _say(
        f"6/6 done in {(time.perf_counter() - started) / 60:.1f} min; table in {out / 'results.md'}"
    )
    print(f"\nBrowse the runs:  .venv/bin/mlflow ui --backend-store-uri {mlflow_uri(out)}")
    print("then open http://127.0.0.1:5000 (experiment 'avrsp-demo').")
    return scores
