"""Score a trained model on the windows of a split of segment shards.

Each stored window (docs/DATA.md) gives the model its T frames and audio; the predicted
map of the window's last frame is scored at model resolution with the MATLAB-faithful
metrics (:func:`avrsp.metrics.all_metrics`) against the window's target map (CC, SIM,
KLD) and its fixation points (NSS, AUC-Judd, AUC-Borji). Scores are averaged per video,
then over the videos of each group (:mod:`avrsp.tables`): by default a group is the
window's dataset; ``groups`` maps a video to another label (the synthetic dataset's
condition, for instance).

This is the quick, window-level evaluation that the demo and the learning check use. The
published protocol — every frame through the sliding window, maps resized to the native
resolution — is :func:`avrsp.inference.predict_video` plus the same metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from avrsp.inference import frames_to_input
from avrsp.metrics import all_metrics
from avrsp.tables import DatasetScores, FrameScores, summarize
from preprocessing.schema import decode_segment
from workflows.data import fixation_map, split_files
from workflows.export import LoadedModel, load_model


def evaluate_windows(
    model: LoadedModel | str | Path,
    data: str | Path,
    *,
    split: str = "test",
    groups: Mapping[str, str] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, DatasetScores]:
    """Per-group means of CC, NSS, SIM, KLD, AUC-Judd and AUC-Borji over ``split``."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    net = loaded.model.eval()
    size = (loaded.config.input.height, loaded.config.input.width)
    rows = [row for f in split_files(data, split) for row in pq.read_table(f).to_pylist()]
    frames: list[FrameScores] = []
    for start in range(0, len(rows), batch_size):
        batch = [decode_segment(r) for r in rows[start : start + batch_size]]
        clip = frames_to_input(np.stack([b["frames"] for b in batch]))
        audio = None
        if getattr(net, "uses_audio", True):
            audio = torch.from_numpy(np.stack([b["audio"] for b in batch]))
        with torch.inference_mode():
            pred = net(clip, audio).float().numpy()
        targets = np.stack([b["target"] for b in batch])
        fix = np.stack(
            [
                fixation_map(b["fixations"], (b["native_height"], b["native_width"]), size)
                for b in batch
            ]
        )
        scores = all_metrics(pred, targets, fix, seed=seed, index_offset=start)
        for i, b in enumerate(batch):
            group = (groups or {}).get(b["video"], b["dataset"])
            fold = int(b["fold"]) if b.get("split") == "cv" else None
            frames.append(
                FrameScores(
                    dataset=group,
                    video=b["video"],
                    frame=int(b["last_frame"]),
                    scores={k: float(v[i]) for k, v in scores.items()},
                    fold=fold,
                )
            )
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    return summarize(frames)
