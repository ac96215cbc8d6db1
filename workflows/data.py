"""Ray Data ingest for training: Parquet segments → decoded, augmented tensors.

The shards that ``avrsp preprocess`` writes (``docs/DATA.md``) are read with
``ray.data.read_parquet``; JPEG/PNG decoding runs as ``map_batches`` tasks on CPU, so the
training loop only receives ready arrays:

=============  ===========================  =============================================
column         dtype / shape                meaning
=============  ===========================  =============================================
``frames``     uint8 ``[B, T, H, W, 3]``    the window's frames, oldest first (RGB)
``audio``      float32 ``[B, S]``           the window's audio buffer (``audio_window``)
``target``     float32 ``[B, H, W]``        target map of the last frame, maximum 1
``fixmap``     uint8 ``[B, H, W]``          fixation points of the last frame as a binary
                                            map at model resolution (NSS, AUC-Judd)
=============  ===========================  =============================================

Frames stay uint8 until the training loop (4× less object-store traffic than float32).
The flip augmentation (:func:`flipped_batches`) mirrors frames, target map and fixation map
of a row together as the batches reach the training loop, its draws seeded per epoch and
worker, so that a seed fixes the whole training order (docs/TRAINING.md, "Same seed, same
run").

Fixation points are stored in native pixels; at model resolution the point ``(x, y)``
falls on pixel ``(⌊x·W/W₀⌋, ⌊y·H/H₀⌋)`` (``W₀×H₀`` the native size; a pixel ``c`` covers
``[c, c+1)``, docs/DATA.md). Validation scores NSS and AUC-Judd at model resolution; the
published protocol (scoring at native resolution) is ``avrsp evaluate``'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from avrsp.config import AVRSPConfig
from avrsp.errors import InputError
from avrsp.pixels import points_to_fixation_map
from preprocessing import storage
from preprocessing.records import in_test_fold

if TYPE_CHECKING:
    import ray.data

#: Columns a training batch holds after :func:`decode_batch`.
BATCH_COLUMNS = ("frames", "audio", "target", "fixmap")
_READ_COLUMNS = (
    "schema_version",
    "frames_jpeg",
    "audio",
    "target_png",
    "fixations",
    "native_height",
    "native_width",
)


def shards_root(data: str | Path) -> str:
    """The ``shards`` folder of a preprocessing output folder (or the folder itself), as a
    location (a path or an object-store URI, :mod:`preprocessing.storage`)."""
    inner = storage.join(data, "shards")
    if storage.is_dir(inner):
        return storage.as_location(inner)
    if storage.is_dir(data):
        return storage.as_location(data)
    raise InputError(f"--data {data}: no such folder (expected the output of avrsp preprocess)")


def committed_files(data: str | Path) -> dict[str, str] | None:
    """The shard files that the done-markers of ``DATA/done/`` list, as locations, each with
    the marker that lists it; None when the folder has no markers (a bare shards folder). A
    video's marker is written after all its shards, so these are exactly the shards of
    finished videos (on an object store too)."""
    data = storage.as_location(data)
    markers = storage.list_files(storage.join(data, "done"), suffix=".json")
    if not markers:
        return None
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(16, len(markers))) as pool:  # one request each on a store
        listed = list(pool.map(storage.read_json, markers))
    return {
        storage.join(data, f): marker
        for marker, summary in zip(markers, listed, strict=True)
        for f in summary.get("files", [])
    }


@dataclass(frozen=True)
class SplitSpec:
    """Which rows are one split: ``train``/``val``/``test``, or ``cv`` with a fold rule.

    ``fold`` > 0 with ``split="cv"`` selects the STAViS k-fold rows: ``keep_fold=True`` the
    test videos of that fold, ``keep_fold=False`` the training videos of that fold (the
    ``cv`` rows of the other folds; a video in the test lists of several folds is a test
    row of each, :func:`~preprocessing.records.in_test_fold`).
    """

    split: str
    fold: int = 0
    keep_fold: bool = True

    def describe(self) -> str:
        if not self.fold:
            return self.split
        return f"{self.split} fold {'=' if self.keep_fold else '≠'} {self.fold}"


def split_files(data: str | Path, split: str) -> list[str]:
    """The Parquet files of one split, sorted; InputError naming what exists when none.

    Where ``data`` has done-markers, a file that no marker lists (a shard of a video whose
    upload was interrupted, or a file not written by ``avrsp preprocess``) is an error that
    names it, before any training starts."""
    root = shards_root(data)
    folder = storage.join(root, split)
    files = storage.list_files(folder, suffix=".parquet")
    if not files:
        found = storage.list_dirs(root)
        raise InputError(
            f"{folder}: no Parquet segments for split {split!r} "
            f"(splits found under {root}: {', '.join(found) or 'none'})"
        )
    committed = committed_files(data) if root != storage.as_location(data) else None
    if committed is not None:
        unlisted = [f for f in files if f not in committed]
        if unlisted:
            more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
            raise InputError(
                f"{', '.join(unlisted[:3])}{more}: not a shard of a finished video (no "
                f"done-marker under {storage.join(data, 'done')} lists it): a file avrsp "
                "preprocess did not write, "
                "or one of an interrupted run; remove it, or run the same avrsp preprocess "
                "command again, which finishes that video and replaces its files"
            )
        _check_listed_exist(files, committed, folder)
    return files


def _check_listed_exist(files: list[str], committed: dict[str, str], folder: str) -> None:
    """InputError naming a shard of ``folder`` that a done-marker lists but that is not
    there (deleted, or a hidden name the readers skip), and the marker that lists it."""
    found = set(files)
    prefix = folder.rstrip("/") + "/"
    missing = sorted(f for f in committed if f.startswith(prefix) and f not in found)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        marker = committed[missing[0]]
        raise InputError(
            f"{missing[0]}{more}: listed by the done-marker {marker} but missing (deleted, or "
            "a hidden name that readers skip); remove that marker and run the same avrsp "
            "preprocess command again, which redoes the video"
        )


def datasets_of(files: list[str]) -> list[str]:
    """Dataset names of shard files (their parent folder, ``shards/<split>/<dataset>/``)."""
    return sorted({f.rstrip("/").rsplit("/", 2)[-2] for f in files})


def open_parquet(location: str) -> pq.ParquetFile:
    """A shard file by location (local or on an object store)."""
    filesystem, path = storage.resolve(location)
    return pq.ParquetFile(filesystem.open_input_file(path))


def check_shards(files: list[str], config: AVRSPConfig) -> None:
    """Raise InputError when the shards were cut for another T, H, W or audio buffer."""
    inp = config.input
    first = files[0]
    try:
        table = open_parquet(first).read_row_group(
            0, columns=["schema_version", "num_frames", "height", "width", "sample_rate", "audio"]
        )
    except Exception as exc:  # pyarrow raises several types for bad files
        raise InputError(f"{first}: cannot read segment shard ({exc})") from None
    if table.num_rows == 0:
        raise InputError(f"{first}: empty segment shard")
    row = table.slice(0, 1).to_pylist()[0]
    want = {
        "num_frames": inp.frames,
        "height": inp.height,
        "width": inp.width,
        "sample_rate": inp.sample_rate,
        "audio samples": inp.audio_samples,
    }
    got = {
        "num_frames": row["num_frames"],
        "height": row["height"],
        "width": row["width"],
        "sample_rate": row["sample_rate"],
        "audio samples": len(row["audio"]),
    }
    # The taper is not visible in a row; the manifest records it (older ones: "span").
    out = first.rstrip("/").rsplit("/", 4)[0]  # OUT/shards/<split>/<dataset>/<file>
    manifest = storage.join(out, "manifest.json")
    if storage.is_file(manifest):
        try:
            options = json.loads(storage.read_text(manifest)).get("options", {})
        except (InputError, ValueError) as exc:
            raise InputError(f"{manifest}: cannot read the shards' manifest ({exc})") from None
        want["audio alignment"] = inp.audio_alignment
        got["audio alignment"] = options.get("audio_alignment", "span")
    diffs = [f"{k} {got[k]} (config wants {want[k]})" for k in want if got[k] != want[k]]
    if diffs:
        raise InputError(
            f"{first}: shards were cut for another input config: {', '.join(diffs)}; "
            "preprocess again with this config, or train with the config the shards were made with"
        )


def fixation_map(points: np.ndarray, native: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Binary map ``uint8 [h, w]`` of ``size`` from points in native pixels (avrsp.pixels)."""
    return points_to_fixation_map(points, size, frame_size=native).view(np.uint8)


def decode_rows(rows: list[dict[str, Any]], size: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    """Stored rows → ``{frames, audio, target, fixmap}`` each (via ``decode_segment``)."""
    from preprocessing.schema import decode_segment

    out = []
    for row in rows:
        seg = decode_segment(row)
        native = (int(row["native_height"]), int(row["native_width"]))
        out.append(
            {
                "frames": seg["frames"],
                "audio": seg["audio"],
                "target": seg["target"],
                "fixmap": fixation_map(seg["fixations"], native, size),
            }
        )
    return out


def decode_batch(batch: dict[str, np.ndarray], *, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The ``map_batches`` body: a batch of stored rows → stacked arrays (module docstring)."""
    n = len(batch["frames_jpeg"])
    rows = [{k: batch[k][i] for k in _READ_COLUMNS} for i in range(n)]
    decoded = decode_rows(rows, size)
    return {k: np.stack([r[k] for r in decoded]) for k in BATCH_COLUMNS}


def flip_batch(batch: dict[str, Any], flips: Any) -> dict[str, Any]:
    """Mirror the rows ``flips`` (bool ``[B]``) of a batch left-right: frames
    ``[B, T, H, W, 3]``, target and fixation map ``[B, H, W]`` together (numpy or torch)."""
    out = dict(batch)
    for key, width_axis in (("frames", 3), ("target", 2), ("fixmap", 2)):
        x = batch[key]
        if hasattr(x, "flip"):  # torch
            mirrored = x.flip(width_axis)
            mask = flips.view(-1, *([1] * (x.ndim - 1)))
            out[key] = mirrored.where(mask, x)
        else:
            out[key] = np.where(
                np.reshape(flips, (-1,) + (1,) * (x.ndim - 1)), np.flip(x, width_axis), x
            )
    return out


def flipped_batches(batches: Any, prob: float, seed: int) -> Any:
    """The training augmentation: each row of each batch mirrored with chance ``prob``, the
    draws from one generator seeded with ``seed`` (so the same batches get the same flips)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        n = len(batch["frames"])
        flips = torch.rand(n, generator=generator) < prob
        yield flip_batch(batch, flips) if prob > 0 else batch


def read_parquet_files(files: list[str]) -> ray.data.Dataset:
    """``ray.data.read_parquet`` through Ray's classic Parquet reader.

    Ray 2.60's new reader (``DataContext.use_datasource_v2``) lists files by starting 32
    footer-reader actors per execution: measured here, iterating a 6-row shard took 13 s
    with it and 0.3 s without (2-core machine). Every epoch re-executes the read, so the
    classic reader is used; the context flag is restored afterwards.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = getattr(ctx, "use_datasource_v2", None)
    if before is not None:
        ctx.use_datasource_v2 = False
    try:
        filesystem, _ = storage.resolve(files[0])  # one store holds a dataset's shards
        paths = [storage.resolve(f)[1] for f in files]
        return ray.data.read_parquet(paths, filesystem=filesystem)
    finally:
        if before is not None:
            ctx.use_datasource_v2 = before


def segment_dataset(
    files: list[str],
    config: AVRSPConfig,
    *,
    spec: SplitSpec | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    decode_batch_size: int = 8,
) -> ray.data.Dataset:
    """A lazy Ray Dataset of decoded windows.

    ``shuffle`` randomises the order of blocks (one video's rows share a file); with a
    ``seed`` that order is the same in every run (and every epoch), and the training loop's
    seeded local shuffle buffer varies it per epoch. The flip augmentation is applied to the
    batches by the training job (:func:`flipped_batches`), where its draws can be seeded.
    """
    ds = read_parquet_files(files)
    if spec is not None and spec.fold:
        fold, keep = spec.fold, spec.keep_fold
        ds = ds.filter(lambda r: in_test_fold(int(r["fold"]), fold) == keep)
    ds = ds.select_columns(list(_READ_COLUMNS))
    if shuffle:
        ds = ds.randomize_block_order(seed=seed)
    size = (config.input.height, config.input.width)
    return ds.map_batches(
        decode_batch,
        fn_kwargs={"size": size},
        batch_size=decode_batch_size,
        batch_format="numpy",
        # One whole CPU per decode task: with 0.5, twice as many worker processes run as
        # there are CPUs, and Ray ends idle workers beyond that count after a second, so
        # every epoch started new ones (each re-importing Ray Data and this project).
        # Measured (benchmarks/ingest.py, docs/PERFORMANCE.md): ~35 % less CPU in Ray's
        # processes per batch on the 2-core machine, and no new workers after epoch 0.
        num_cpus=1,
    )


def fixed_windows(
    files: list[str], count: int, config: AVRSPConfig, spec: SplitSpec | None = None
) -> dict[str, np.ndarray]:
    """The first ``count`` rows of the sorted files, decoded (the same rows every epoch).

    Read with pyarrow directly (no Ray): rank 0 draws its per-epoch image grid from them.
    """
    size = (config.input.height, config.input.width)
    rows: list[dict[str, Any]] = []
    for f in files:
        if len(rows) >= count:
            break
        table = open_parquet(f).read(columns=[*_READ_COLUMNS, "fold"])
        if spec is not None and spec.fold:
            keep = [in_test_fold(c, spec.fold) == spec.keep_fold for c in table["fold"].to_pylist()]
            table = table.filter(pa.array(keep, type=pa.bool_()))
        rows += table.slice(0, count - len(rows)).to_pylist()
    decoded = decode_rows(rows, size)
    return {k: np.stack([r[k] for r in decoded]) for k in BATCH_COLUMNS} if decoded else {}
