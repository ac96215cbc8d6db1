"""Scoring models: the quick window-level score, and the published protocol at scale.

:func:`evaluate` is ``avrsp evaluate`` (docs/EVALUATION.md): every frame of every test
video of a source through :mod:`workflows.protocol` (sliding window at step 1, reversed
first windows, maps at the ground truth's native resolution, the seven metrics), one
video per task of a Ray Data actor pool (:mod:`workflows.pool`), means per video → per
dataset (→ over folds), a centre-bias row beside the model's, one row per ``--audio``
mode, and the tables, per-video CSVs and an MLflow run written at the end.

:func:`evaluate_windows` scores stored windows instead:

Each stored window (docs/DATA.md) gives the model its T frames and audio; the predicted
map of the window's last frame is scored at model resolution with the MATLAB-faithful
metrics (:func:`avrsp.metrics.all_metrics`) against the window's target map (CC, SIM,
KLD) and its fixation points (NSS, AUC-Judd, AUC-Borji). Scores are averaged per video,
then over the videos of each group (:mod:`avrsp.tables`): by default a group is the
window's dataset; ``groups`` maps a video to another label (the synthetic dataset's
condition, for instance).

This is the quick, window-level evaluation that the demo and the learning check use.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from avrsp.errors import InputError
from avrsp.inference import frames_to_input
from avrsp.metrics import all_metrics
from avrsp.tables import DatasetScores, FrameScores, ResultsTable, summarize, video_means
from preprocessing.records import VideoRecord, decode_folds
from preprocessing.schema import decode_segment
from workflows.data import fixation_map, split_files
from workflows.export import LoadedModel, load_model
from workflows.protocol import AUDIO_MODES, PROTOCOLS


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
            # a window of a video in several folds' test lists counts once per fold
            for fold in decode_folds(b["fold"]) if b.get("split") == "cv" else (None,):
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


# --------------------------------------------------------------------------- the protocol

BASELINE_LABEL = "Centre bias (baseline)"
#: The paper's four columns, then our other metrics beside them.
TABLE_METRICS = ("sim", "cc", "nss", "auc_j", "kld", "auc_b")
#: Under the benchmarks' scripts (``--protocol vinet|stavis``): what the scripts report.
SCRIPT_METRICS = ("sim", "cc", "nss", "auc_j", "sauc")
#: Says in the table's title which protocol measured its rows.
PROTOCOL_TITLES = {
    "vinet": "protocol vinet: as ViNet's MATLAB scripts, those of the published tables",
    "stavis": "protocol stavis: as STAViS' MATLAB scripts",
    "native": "protocol native: float maps, no 8-bit storage",
}


@dataclass
class EvalOptions:
    """What ``avrsp evaluate`` was asked for (see :func:`evaluate`)."""

    source: str
    #: One model for every video, or ``{fold: model}``: each k-fold test video scored by
    #: its fold's model, a fixed split (DIEM) by every fold's model (:meth:`models`).
    model: str | Mapping[int, str] | None = None
    split: str = "test"
    fold: int | None = None
    audio: tuple[str, ...] = ("real",)
    baseline_only: bool = False
    #: Score the centre-bias baseline beside the model or maps (``--no-baseline``: not).
    baseline: bool = True
    published: bool = False
    out: Path = Path("runs/evaluate")
    overwrite: bool = False
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    address: str | None = None
    batch_size: int = 8
    device: str = "cpu"
    seed: int = 0
    limit: int | None = None
    mlflow_uri: str | None = None
    tracking: bool = True
    #: Score saved maps (a folder of one image per frame per video) instead of a model;
    #: ``{fold: folder}`` as ``model``.
    predictions: Path | Mapping[int, Path] | None = None
    #: How maps are scored: as ViNet's scripts (the published tables'), STAViS', or native.
    protocol: str = "vinet"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if isinstance(self.model, Mapping):
            self.model = _by_fold(self.model, "--model", str)
        if self.predictions is not None:
            self.predictions = (
                _by_fold(self.predictions, "--predictions", Path)
                if isinstance(self.predictions, Mapping)
                else Path(self.predictions)
            )
            if self.model is not None:
                raise InputError("--predictions scores saved maps: give it or --model, not both")
        if self.protocol not in PROTOCOLS:
            choices = ", ".join(PROTOCOLS)
            raise InputError(f"--protocol: choose from {choices}, got {self.protocol!r}")
        bad = [m for m in self.audio if m not in AUDIO_MODES]
        if bad or not self.audio:
            raise InputError(f"--audio: choose from {', '.join(AUDIO_MODES)}, got {bad or '[]'}")
        if self.baseline_only and not self.baseline:
            raise InputError("--baseline centre scores the baseline alone: not with --no-baseline")
        if self.model is None and self.predictions is None and not self.baseline_only:
            raise InputError(
                "--model is needed (or --predictions DIR to score saved maps, or --baseline "
                "centre to score the baseline alone)"
            )
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers must be >= 0, got {self.workers}")

    @property
    def models(self) -> dict[int, str]:
        """``{fold: model}``; fold 0: the one model of every video ({} without a model)."""
        return _fold_map(self.model)

    @property
    def prediction_dirs(self) -> dict[int, Path]:
        """``{fold: folder}`` of ``--predictions`` as :attr:`models`."""
        return _fold_map(self.predictions)


def _by_fold(given: Mapping[Any, Any], option: str, kind: Callable[[Any], Any]) -> dict[int, Any]:
    out = {}
    for fold, value in given.items():
        if not str(fold).isdigit() or int(fold) < 1:
            raise InputError(f"{option}: folds are numbered from 1, got {fold!r}")
        out[int(fold)] = kind(value)
    if not out:
        raise InputError(f"{option}: no fold given")
    return dict(sorted(out.items()))


def _fold_map(value: Any) -> dict[int, Any]:
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else {0: value}


def parse_fold_values(values: str | list[str] | None, option: str) -> Any:
    """``--model``/``--predictions`` as given on the command line: one value for every
    video, or ``K=VALUE`` per fold (``1=runs/f1 2=runs/f2 3=runs/f3``)."""
    if values is None or isinstance(values, str):
        return values
    pairs = [re.fullmatch(r"(\d+)=(.+)", v) for v in values]
    if len(values) == 1 and pairs[0] is None:
        return values[0]
    if any(p is None for p in pairs):
        raise InputError(f"{option}: give one value, or K=VALUE per fold (1=A 2=B 3=C): {values}")
    folds = [int(p.group(1)) for p in pairs]
    if len(set(folds)) != len(folds):
        raise InputError(f"{option}: a fold given twice: {values}")
    return {int(p.group(1)): p.group(2) for p in pairs}


def fold_entries(records: list[VideoRecord], folds: list[int]) -> list[tuple[VideoRecord, int]]:
    """What is scored, ``(record, key of the model or folder)``: with one model (``folds``
    empty) every record with key 0; with one per fold, a k-fold test video with its fold's
    (one the models do not cover is an InputError) and a fixed-split video once per fold,
    as a test video of that fold (STAViS' ``compute_all_diem.m``: DIEM's test split scored
    by each split's model, the splits' means averaged)."""
    if not folds:
        return [(r, 0) for r in records]
    out: list[tuple[VideoRecord, int]] = []
    uncovered: set[int] = set()
    for rec in records:
        if rec.split == "cv":
            if rec.fold in folds:
                out.append((rec, rec.fold))
            else:
                uncovered.add(rec.fold)
        else:
            out += [(dataclasses.replace(rec, split="cv", fold=k), k) for k in folds]
    if uncovered:
        raise InputError(
            f"test videos of fold(s) {sorted(uncovered)} but models/maps for folds {folds} "
            "only: give one per fold, or --fold K"
        )
    return out


#: Sources whose splits come from an optional ``splits.csv``, every video ``train`` without.
SPLITS_FILE_KINDS = ("csv", "synthetic", "diem")


def default_split(source: str) -> str:
    """``--split`` when none is given: ``test``; ``all`` for a source whose folder has no
    ``splits.csv`` (nothing was set aside for testing: every video is scored)."""
    from preprocessing.sources import parse_source

    kind, path = parse_source(source)
    if kind in SPLITS_FILE_KINDS and path.is_dir() and not (path / "splits.csv").is_file():
        return "all"
    return "test"


def test_records(source: str, split: str, fold: int | None) -> tuple[list[VideoRecord], list[dict]]:
    """The videos of ``source`` that are scored for ``split``: those of the split, and for a
    k-fold dataset (``split=cv``) the test videos of every fold (of ``fold`` only when
    given), one record per (video, test fold): a video in the test lists of two folds is
    scored for each, as STAViS' scripts score it; ``all``: every video. Also the listing's
    failures."""
    from preprocessing.sources import open_source

    listing = open_source(source)
    chosen = []
    for rec in listing.records:
        if rec.split == "cv" and (split == "all" or split in ("test", "cv")):
            chosen += [
                dataclasses.replace(rec, fold=k)
                for k in rec.test_folds
                if fold is None or k == fold
            ]
        elif rec.split == split or split == "all":
            chosen.append(rec)
    if not chosen:
        found = sorted({r.split for r in listing.records})
        raise InputError(
            f"--source {source}: no videos in split {split!r}"
            + (f" (fold {fold})" if fold is not None else "")
            + f"; splits found: {', '.join(found) or 'none'} (--split all: every video)"
        )
    return chosen, list(listing.failed)


def _groups(source: str) -> dict[str, str]:
    """For a synthetic source: video → its condition (the table's columns)."""
    from preprocessing.sources import parse_source

    kind, path = parse_source(source)
    if kind != "synthetic":
        return {}
    from preprocessing.synthetic import read_manifest

    return {c["clip"]: c["condition"] for c in read_manifest(path)["clips"]}


def _donors(records: list[VideoRecord], tries: int = 4) -> dict[str, list[VideoRecord]]:
    """``--audio shuffled``: the videos whose soundtrack each video may hear, in order of
    preference — the next videos in sorted order (wrapping round), never itself. The worker
    takes the first that has audio (a listing cannot tell a silent file)."""
    ordered = sorted((r for r in records if r.audio is not None), key=lambda r: r.key)
    out: dict[str, list[VideoRecord]] = {}
    for rec in records:
        later = [r for r in ordered if r.key > rec.key]
        earlier = [r for r in ordered if r.key < rec.key]
        out[rec.key] = (later + earlier)[:tries]
    return out


def _donor_waveform(candidates: list[dict[str, Any]], sample_rate: int) -> np.ndarray | None:
    """The first non-empty soundtrack among the donor candidates (None: none has one)."""
    from workflows.protocol import open_video

    for data in candidates:
        wave = open_video(VideoRecord.from_dict(data), sample_rate).media.waveform
        if wave.size:
            return wave
    return None


def load_models(
    specs: Mapping[int, str], tracking_uri: str | None = None
) -> dict[int, LoadedModel]:
    """The pool's ``load``: ``{key: model}`` of :attr:`EvalOptions.models` ({}: none)."""
    return {k: load_model(spec, tracking_uri=tracking_uri) for k, spec in specs.items()}


def score_item(models: Mapping[int, LoadedModel], item: dict[str, Any]) -> dict[str, Any]:
    """The pool's ``work``: one video, every row (audio modes and the baseline), with the
    model of the item's key (:func:`fold_entries`)."""
    from avrsp.config import preset
    from workflows.protocol import open_video, score_video

    loaded = models.get(item["key"])
    record = VideoRecord.from_dict(item["record"])
    config = loaded.config.input if loaded is not None else preset("tiny").input
    video = open_video(record, config.sample_rate)
    rows: dict[str, Any] = {}
    shares: dict[str, float] = {}
    notes = list(video.notes)
    common = {"group": item["group"], "seed": item["seed"], "protocol": item["protocol"]}
    if item["baseline"]:
        result = score_video(None, video, config, **common)
        rows[BASELINE_LABEL] = [asdict(f) for f in result.frames]
        counts = (result.num_frames, result.without_target)
    if item.get("predictions"):
        result, problems = _score_saved(video, Path(item["predictions"]), common)
        rows[item["labels"]["saved"]] = [asdict(f) for f in result.frames]
        notes += problems
        counts = (result.num_frames, result.without_target)
    if loaded is not None:
        donor = None
        if "shuffled" in item["audio"]:
            donor = _donor_waveform(item["donors"], config.sample_rate)
        for mode in item["audio"]:
            result = score_video(
                loaded.model,
                video,
                config,
                audio=mode,
                donor=donor,
                batch_size=item["batch"],
                device=item["device"],
                **common,
            )
            rows[item["labels"][mode]] = [asdict(f) for f in result.frames]
            shares[mode] = result.mean_audio_share()
            notes += [n for n in result.notes if n not in notes]
            counts = (result.num_frames, result.without_target)
    return {
        "name": item["name"],
        "dataset": record.dataset,
        "video": record.video_id,
        "fold": record.fold if record.split == "cv" else None,
        "group": item["group"],
        "rows": rows,
        "audio_share": shares,
        "frames": counts[0],
        "without_target": counts[1],
        "notes": notes,
    }


def _score_saved(video: Any, root: Path, common: dict[str, Any]) -> tuple[Any, list[str]]:
    """A video's saved maps (``--predictions``) scored; what did not match, as notes."""
    from workflows import saved_maps
    from workflows.protocol import score_maps

    rec = video.record
    folder = saved_maps.video_folder(root, rec.dataset, rec.video_id)
    if folder is None:
        raise InputError(
            f"--predictions {root}: no folder {rec.dataset}/{rec.video_id}/ or {rec.video_id}/"
        )
    matched = saved_maps.match_frames(folder, video.expected_frames)
    if not matched.maps:
        raise InputError(f"{folder}: no map for any of the video's frames; " + "; ".join(
            matched.problems()))  # fmt: skip
    native = common["protocol"] == "native"
    read = saved_maps.read_map if native else saved_maps.read_stored
    result = score_maps(video, matched.maps, read, **common)
    return result, [f"{folder}: {p}, not scored" for p in matched.problems()]


def row_labels(
    models: Mapping[int, LoadedModel], specs: Mapping[int, str], modes: tuple[str, ...]
) -> dict[str, str]:
    """Table row label per audio mode: ``"<model> (AV), audio real"``; the model is its run
    name (else :func:`_model_name`), ``1=NAME, 2=NAME, …`` with one model per fold."""
    if not models:
        return {}
    names = {k: str(m.meta.get("run_name") or _model_name(specs[k])) for k, m in models.items()}
    name = ", ".join(f"{k}={n}" for k, n in names.items()) if 0 not in names else names[0]
    loaded = next(iter(models.values()))
    if not loaded.config.model.use_audio:
        return {"real": f"{name} (V)"}
    return {m: f"{name} (AV), audio {m}" for m in modes}


@dataclass
class EvalReport:
    """What :func:`evaluate` wrote and scored."""

    table: ResultsTable
    out: Path
    videos: int
    failed: list[dict[str, str]]
    audio_share: dict[str, dict[str, float]] = field(default_factory=dict)
    run_id: str | None = None


def evaluate(opts: EvalOptions, *, log: Callable[[str], None] = print) -> EvalReport:
    """``avrsp evaluate``: score ``opts.model`` (and the centre-bias baseline) on every test
    video of ``opts.source`` by the published protocol (module docstring)."""
    from avrsp.io import made_folders_removed_on_error

    with made_folders_removed_on_error(opts.out):  # a refused run leaves no empty --out
        return _evaluate(opts, log)


def _evaluate(opts: EvalOptions, log: Callable[[str], None]) -> EvalReport:
    from functools import partial

    from avrsp.io import write_json
    from workflows.pool import default_actors, map_videos, run_local

    _check_out(opts.out, opts.overwrite)
    for folder in opts.prediction_dirs.values():
        if not folder.is_dir():
            raise InputError(f"--predictions {folder}: not a folder")
    from preprocessing.sources.check import preflight

    preflight(opts.source, log=log)  # a stavis/dhf1k folder's problems, before any Ray start
    records, failed = test_records(opts.source, opts.split, opts.fold)
    if opts.split == "all":
        log(f"split all: every video of {opts.source} ({len(records)})")
    records = records[: opts.limit] if opts.limit else records
    specs = {} if opts.baseline_only else opts.models
    models = load_models(specs, opts.mlflow_uri)  # a wrong --model fails here, before replicas
    local = {k: str(m.path) for k, m in models.items() if m.path is not None}
    load = partial(load_models, {**specs, **local}, opts.mlflow_uri)  # replicas: local files
    loaded = next(iter(models.values()), None)  # the first: what the row says
    if len({m.config.model.use_audio for m in models.values()}) > 1:
        raise InputError(f"--model {opts.model}: the fold models mix V and AV models")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)  # once the source and the model are good
    modes = opts.audio
    if loaded is not None and not loaded.config.model.use_audio and modes != ("real",):
        log("note: a visual-only model hears nothing; --audio modes other than real are skipped")
        modes = ("real",)
    labels = row_labels(models, specs, modes)
    dirs = opts.prediction_dirs
    if dirs:
        labels["saved"] = f"saved maps {_model_name(opts.predictions)}"
    keyed = [k for k in (specs or dirs) if k and opts.fold in (None, k)]
    entries = fold_entries(records, keyed)
    repeated = Counter((r.dataset, r.video_id) for r, _ in entries)
    groups = _groups(opts.source)
    donors = _donors(records) if "shuffled" in modes else {}
    items = [
        {
            "name": f"{r.dataset}/{r.video_id}"
            + (f" (fold {r.fold})" if repeated[(r.dataset, r.video_id)] > 1 else ""),
            "key": key,
            "record": r.to_dict(),
            "donors": [d.to_dict() for d in donors.get(r.key, [])],
            "group": groups.get(r.video_id, r.dataset),
            "audio": list(modes) if loaded is not None else [],
            "labels": labels,
            "baseline": opts.baseline,
            "predictions": str(dirs[key]) if dirs else None,
            "protocol": opts.protocol,
            "seed": opts.seed,
            "batch": opts.batch_size,
            "device": opts.device,
        }
        for r, key in entries
    ]
    if opts.workers == 0:
        results = run_local(lambda: models, score_item, items)
    else:
        from preprocessing.ray_runtime import init_ray

        init_ray(opts.address, packages=("avrsp", "preprocessing", "workflows"))
        actors = opts.workers or default_actors(opts.gpus_per_worker, opts.cpus_per_worker)
        results = map_videos(
            load,
            score_item,
            items,
            actors=actors,
            cpus_per_actor=opts.cpus_per_worker,
            gpus_per_actor=opts.gpus_per_worker,
        )
    frames: dict[str, list[FrameScores]] = {}
    shares: dict[str, dict[str, float]] = {}
    per_video: list[dict[str, Any]] = []
    started = time.perf_counter()
    for k, res in enumerate(results, start=1):
        if res["status"] != "ok":
            failed.append({"video": res["name"], "reason": res["reason"]})
            log(f"[{k}/{len(items)}] {res['name']}: FAILED — {res['reason']}")
            continue
        for label, rows in res["rows"].items():
            scored = [FrameScores(**row) for row in rows]
            frames.setdefault(label, []).extend(scored)
            (mean,) = video_means(scored) or [None]
            if mean is not None:
                per_video.append(
                    {
                        "row": label,
                        "group": res["group"],
                        "video": res["video"],
                        "fold": res["fold"],
                        "frames": res["frames"],
                        **mean.scores,
                    }
                )
        shares[res["name"]] = res["audio_share"]
        first = next(iter(res["rows"].values()), [])
        cc = np.nanmean([r["scores"]["cc"] for r in first]) if first else float("nan")
        notes = f"; {'; '.join(res['notes'])}" if res["notes"] else ""
        log(
            f"[{k}/{len(items)}] {res['name']}: {res['frames']} frames, CC {cc:.3f} "
            f"({res['seconds']:.1f} s){notes}"
        )
    if not frames:
        write_json(out / "failures.json", failed)
        raise InputError(
            f"--source {opts.source}: no video could be scored (see {out / 'failures.json'})"
        )
    table = _table(frames, groups, opts, loaded)
    files = {
        out / "videos.csv": lambda: _csv(per_video),
        out / "audio_share.json": lambda: json.dumps(shares, indent=2) + "\n",
        out / "failures.json": lambda: json.dumps(failed, indent=2) + "\n",
        **{
            out / "frames" / f"{_slug(label)}.csv": partial(_frames_csv, rows)
            for label, rows in frames.items()
        },
        out / "table.csv": table.to_csv,
        out / "table.md": table.to_markdown,  # the tables last: they say the rest is there
    }
    _write_all(files, out)
    report = EvalReport(table, out, len(records) - len(failed), failed, shares)
    if opts.tracking:
        report.run_id = _track(opts, loaded, report)
    log(
        f"scored {report.videos}/{len(records)} videos in {time.perf_counter() - started:.0f} s; "
        f"tables in {out}"
    )
    return report


def _write_all(files: dict[Path, Callable[[], str]], out: Path) -> None:
    """Write ``files`` (path: its text) in order, or none of them: a write that fails (a
    full disk) removes those written before it and the tables an earlier run left
    (``--overwrite``), so that no ``table.md`` presents an incomplete output as done."""
    from avrsp.io import write_text

    written: list[Path] = []
    try:
        for name in ("table.md", "table.csv"):
            (out / name).unlink(missing_ok=True)  # an earlier run's, until the new one is in
        for path, text in files.items():
            write_text(path, text())
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in {p.parent for p in files} - {out}:  # out: evaluate()'s to remove
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        raise


def _check_out(out: Path, overwrite: bool) -> None:
    """The output folder may be written: one that holds files is refused unless
    ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: the folder holds files; pass --overwrite to replace them")


def _table(
    frames: dict[str, list[FrameScores]],
    groups: Mapping[str, str],
    opts: EvalOptions,
    loaded: LoadedModel | None,
) -> ResultsTable:
    from avrsp.published import add_published_rows

    seen = {f.dataset for rows in frames.values() for f in rows}
    order = [g for g in ("relevant", "irrelevant", "silent") if g in seen] if groups else []
    datasets = tuple(order or sorted(seen))
    scored = ["model"] if loaded is not None else ["saved maps"] if opts.predictions else []
    what = " and ".join(scored + ["centre-bias baseline"] * opts.baseline)
    table = ResultsTable(
        datasets=datasets,
        metrics=TABLE_METRICS if opts.protocol == "native" else SCRIPT_METRICS,
        title=f"{opts.source}, split {opts.split}: {what}, every frame "
        f"({PROTOCOL_TITLES[opts.protocol]})",
    )
    for label in [BASELINE_LABEL] + [k for k in frames if k != BASELINE_LABEL]:
        if label in frames:
            # the scripts' compute_all_*.m: the mean over every (fold, video) score
            table.add(label, summarize(frames[label], pool_folds=opts.protocol != "native"))
    if opts.published:
        add_published_rows(table)
    return table


def _saved_or_baseline(opts: EvalOptions) -> str:
    return f"saved maps {_model_name(opts.predictions)}" if opts.predictions else "baseline"


def _model_name(spec: str | Path | Mapping[int, Any]) -> str:
    """A short name for a model spec: the URI as given, a file's run folder or stem, a
    folder's name; ``1=NAME, 2=NAME`` for one per fold."""
    if isinstance(spec, Mapping):
        return ", ".join(f"{k}={_model_name(v)}" for k, v in spec.items())
    spec = str(spec)
    if "://" in spec or spec.startswith(("runs:/", "models:/")):
        return spec
    path = Path(spec)
    return path.parent.name if path.name == "model.pt" else path.stem


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip("_")


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _frames_csv(rows: list[FrameScores]) -> str:
    return _csv(
        [
            {"dataset": r.dataset, "video": r.video, "fold": r.fold, "frame": r.frame, **r.scores}
            for r in rows
        ]
    )


def _track(opts: EvalOptions, loaded: LoadedModel | None, report: EvalReport) -> str | None:
    """One MLflow run for the evaluation, linked to the model's training run."""
    from workflows import tracking

    uri = opts.mlflow_uri or tracking.default_tracking_uri()
    meta = loaded.meta if loaded is not None else {}
    run_id = tracking.start_linked_run(
        uri,
        run_name=f"evaluate {_model_name(opts.model) if opts.model else _saved_or_baseline(opts)}",
        model_meta=meta,
        tags={
            "avrsp.command": "evaluate",
            "avrsp.source": opts.source,
            "split": opts.split,
            "protocol": opts.protocol,
        },
        params={
            "model": _model_name(opts.model) if opts.model else "None",
            "predictions": _model_name(opts.predictions) if opts.predictions else "None",
            "protocol": opts.protocol,
            "source": opts.source,
            "split": opts.split,
            "audio": ",".join(opts.audio),
            "seed": opts.seed,
            "fold": str(opts.fold),
        },
    )
    c = tracking.client(uri)
    for row in report.table.rows:
        for dataset, scores in row.values.items():
            for metric, value in scores.items():
                key = f"{_slug(dataset)}.{_slug(row.labels[0])}.{metric}"
                c.log_metric(run_id, key[:250], value)
    tracking.log_table(c, run_id, report.table, "evaluation")
    shares = [
        {"video": video, "audio": mode, "audio_share": value}
        for video, modes in report.audio_share.items()
        for mode, value in modes.items()
    ]
    if shares:
        c.log_table(run_id, {k: [r[k] for r in shares] for k in shares[0]}, "audio_share.json")
    for name in ("table.csv", "videos.csv", "failures.json", "audio_share.json"):
        c.log_artifact(run_id, str(report.out / name))
    c.set_terminated(run_id)
    return run_id
