"""``avrsp predict``: saliency maps, an overlay video and relevance plots for any video
(docs/PREDICT.md).

One video (:func:`predict_one`, no Ray) goes through the published protocol of
:mod:`workflows.protocol` — a window of ``T`` frames at step 1, the first ``T−1`` frames
from reversed windows — and its outputs land in ``OUT/<video name>/``:

- ``maps/000000.png …`` (each map scaled to its own maximum, 8 bits) or ``maps.npz``
  (``maps`` float32 ``[N, h, w]``, ``times`` seconds, ``fps``), at the model's output size
  or the video's native size;
- ``times.csv``: the time in the source file of each map's frame;
- ``overlay.mp4``: the maps as a heat map over the native frames, H.264 + the original
  audio re-encoded to AAC, one video frame per map;
- audio-visual models: ``relevance.csv`` (per frame: the audio share, mean |Ret_A| and
  |Ret_V| per block and head, head weights, MRG gates) and ``relevance.png`` (paper Fig. 6
  as curves over time);
- ``summary.json``: model, config, frames, rate, audio, notes, time taken.

Everything is written into a hidden staging folder first and moved into place at the end,
so a run that fails or is interrupted leaves the previous outputs (or none). Memory does
not grow with the video's length: frames, maps and the overlay are streamed.

A folder (:func:`predict`) goes through the Ray Data actor pool of :mod:`workflows.pool`,
one model replica per actor; a video that fails is reported in ``OUT/failures.json`` and
the others complete.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from avrsp.errors import AVRSPError, InputError, WeightsError
from avrsp.inference import resolve_device
from avrsp.io import made_folders_removed_on_error, write_json, write_text
from preprocessing.names import check_confined, file_name, file_names
from workflows.export import load_model
from workflows.predict_outputs import NpzMaps, Overlay, PngMaps, RelevanceLog

#: The model ``avrsp predict`` uses without ``--model``: the demo's audio-visual one.
DEFAULT_MODEL = Path("runs/demo/runs/demo-av/model.pt")
FORMATS = ("png", "npz")
SIZES = ("model", "native")
DEVICES = ("auto", "cpu", "cuda")
#: What predict writes into a video's folder (``--overwrite`` replaces these, nothing else).
OUTPUTS = (
    "maps",
    "maps.npz",
    "times.csv",
    "overlay.mp4",
    "relevance.csv",
    "relevance.png",
    "summary.json",
)
STAGING = ".predict-partial"
#: Frames between progress lines when stderr is not a terminal.
PROGRESS_EVERY = 100

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PredictOptions:
    """How ``avrsp predict`` writes its outputs (the command's options)."""

    format: str = "png"  # png: maps/NNNNNN.png; npz: maps.npz
    size: str = "model"  # model: the model's output size; native: the video's
    overlay: bool = True
    batch_size: int = 8
    device: str = "auto"  # auto: cuda where there is one
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.size not in SIZES:
            raise InputError(f"--size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.device not in DEVICES:
            raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")


def model_or_default(spec: str | Path | None) -> str:
    """``--model`` as given, or the demo's AV model when there is one under the current
    folder; otherwise a :class:`WeightsError` saying which command makes one."""
    if spec is not None:
        return str(spec)
    if DEFAULT_MODEL.is_file():
        return str(DEFAULT_MODEL)
    raise WeightsError(
        f"no --model given and no demo model at {DEFAULT_MODEL} (under {Path.cwd()}): run "
        "`avrsp demo` here first, or train one with `avrsp train … --run-name X` and pass "
        "`--model runs/X/model.pt`"
    )


def preset_of(config: Any) -> str:
    """The preset whose input and network ``config`` has (``tiny``, ``paper``), else
    ``custom``."""
    from avrsp.config import PRESETS

    for name, make in PRESETS.items():
        ref = make()
        if config.input == ref.input and config.model.identity() == ref.model.identity():
            return name
    return "custom"


# --------------------------------------------------------------------------- output folder


def prepare_folder(folder: Path, overwrite: bool) -> Path:
    """Make ``folder`` ready and return its staging folder. A folder that already holds
    files is refused unless ``overwrite`` (a staging folder left by an interrupted run does
    not count: it is removed)."""
    staging = folder / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: output path exists and is not a folder")
    if not overwrite and existing_files(folder):
        raise InputError(_held_message([folder]))
    staging.mkdir(parents=True)
    return staging


def _held_message(folders: list[Path]) -> str:
    """The refusal of output folders that already hold files."""
    advice = "pass --overwrite to replace predict's outputs there, or choose another --out"
    if len(folders) == 1:
        held = existing_files(folders[0])
        shown = ", ".join(held[:5]) + (f", … {len(held) - 5} more" if len(held) > 5 else "")
        return f"{folders[0]}: output folder already holds files ({shown}); {advice}"
    shown = ", ".join(str(f) for f in folders[:5])
    more = f" and {len(folders) - 5} more" if len(folders) > 5 else ""
    return f"output folders already hold files: {shown}{more}; {advice}"


def existing_files(folder: Path) -> list[str]:
    """Names in ``folder`` (none when it does not exist), the staging folder left out."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != STAGING)


def _commit(staging: Path, folder: Path) -> list[str]:
    """Move every output of ``staging`` into ``folder`` (replacing predict's old outputs,
    removing the old ones this run did not write), then remove ``staging``."""
    written = sorted(p.name for p in staging.iterdir())
    for name in OUTPUTS:
        old = folder / name
        if name in written or not old.exists():
            continue
        if old.is_dir():  # stale: written by a run with another --format or model
            shutil.rmtree(old)
        else:
            old.unlink()
    for name in written:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / name, target)
    staging.rmdir()
    return written


# --------------------------------------------------------------------------- writers


class Progress:
    """Frames done and frames/s on stderr: one line redrawn on a terminal, a line every
    :data:`PROGRESS_EVERY` frames elsewhere (a log file, CI)."""

    def __init__(self, name: str, total: int, stream: IO[str] | None = None) -> None:
        self.name, self.total = name, max(total, 0)
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.shown = 0.0
        self.last_line = 0

    def _line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        total = max(self.total, done)
        left = f", {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        return f"{self.name}: {done}/{total} frames, {rate:.1f} frames/s{left}"

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self.shown >= 0.2:
                total = max(self.total, done, 1)
                bar = "#" * round(24 * done / total)
                self.stream.write(f"\r[{bar:<24}] {self._line(done)}\033[K")
                self.stream.flush()
                self.shown = now
        elif done - self.last_line >= PROGRESS_EVERY:
            self.stream.write(self._line(done) + "\n")
            self.stream.flush()
            self.last_line = done

    def close(self, done: int) -> None:
        self.total = done
        line = self._line(done)
        self.stream.write(f"\r{line}\033[K\n" if self.tty else f"{line}\n")
        self.stream.flush()


# --------------------------------------------------------------------------- one video


def _lockstep(frames: Iterator[np.ndarray]) -> Callable[[], np.ndarray]:
    """``next()`` of the native frames, the last one repeated should they run short."""
    last: list[np.ndarray] = []

    def take() -> np.ndarray:
        try:
            frame = next(frames)
        except StopIteration:
            if not last:
                raise InputError("the video gave no frames at its native size") from None
            return last[0]
        last[:] = [frame]
        return frame

    return take


def predict_one(
    loaded: Any,
    video_path: str | Path,
    out: str | Path,
    options: PredictOptions | None = None,
    *,
    name: str | None = None,
    say: Say | None = None,
    progress: bool = False,
    model_label: str | None = None,
) -> dict[str, Any]:
    """Predict one video with ``loaded`` (a :class:`workflows.export.LoadedModel`) into
    ``out/<name>/`` (module docstring); returns what ``summary.json`` holds.

    ``name`` defaults to the file's stem as :func:`preprocessing.names.file_name` makes it
    a folder name (a given one that is hidden, ``..`` or a path is refused). ``say`` gets
    the notes (no audio track, short video) as they arise; ``progress`` draws
    :class:`Progress` on stderr. ``model_label``: how ``summary.json`` names the model
    (default what it was loaded from).
    """
    from workflows.protocol import frame_maps, open_video, soundtrack

    started = time.perf_counter()
    options = options or PredictOptions()
    source = Path(video_path)
    model, config = loaded.model, loaded.config
    inp = config.input
    device = resolve_device(options.device)
    video = open_video(source, inp.sample_rate)  # InputError naming a missing/unreadable file
    name = check_confined(name) if name else file_name(source.stem)
    folder = Path(out) / name
    created = not folder.exists()
    staging = prepare_folder(folder, options.overwrite)
    uses_audio = bool(getattr(model, "uses_audio", True))

    notes = [n for n in video.notes if not n.startswith("no audio")]
    waveform, _ = soundtrack(video, "real")
    if not video.has_audio:
        notes.append("no audio track: predicted as silent" if uses_audio else "no audio track")
    for note in notes:
        if say:
            say(f"{name}: {note}")

    out_size = video.native_size if options.size == "native" else None
    maps: PngMaps | NpzMaps | None = None
    overlay: Overlay | None = None
    rel_log = RelevanceLog() if uses_audio else None
    bar = Progress(name, video.expected_frames) if progress else None
    count = 0
    map_size: tuple[int, int] | None = None
    try:
        maps = PngMaps(staging) if options.format == "png" else NpzMaps(staging)
        native_frame = None
        if options.overlay:
            overlay = Overlay(
                staging,
                source,
                video.native_size,
                video.fps,
                audio=video.has_audio,
                start_s=video.media.info.start_s,
                duration_s=max(video.expected_frames, 1) / video.fps,
            )
            native_frame = _lockstep(video.frames(video.native_size))
        stream = frame_maps(
            model,
            video,
            waveform,
            inp,
            out_size=out_size,
            batch_size=options.batch_size,
            device=device,
            relevance=uses_audio,
        )
        for index, saliency, rel in stream:
            if not np.isfinite(saliency).all():
                raise AVRSPError(f"{source}: the model gave non-finite values at frame {index}")
            map_size = map_size or (int(saliency.shape[0]), int(saliency.shape[1]))
            maps.add(index, saliency)
            if overlay is not None and native_frame is not None:
                overlay.add(native_frame(), saliency)
            if rel_log is not None and rel is not None:
                rel_log.add(rel)
            count = index + 1
            if bar:
                bar.update(count)
        if bar:
            bar.close(count)
        if count < inp.frames:
            note = (
                f"{count} frame{'s' * (count != 1)}, fewer than the model's window of "
                f"{inp.frames}: every window repeats the last frame to fill it"
            )
            notes.append(note)
            if say:
                say(f"{name}: {note}")
        times = video.times(count)
        maps.close(times, video.fps)
        rows = "".join(f"{i},{t:.6f}\n" for i, t in enumerate(times))
        write_text(staging / "times.csv", "frame,time_s\n" + rows)
        if overlay is not None:
            overlay.close()
            overlay = None
        if rel_log is not None:
            rel_log.write(staging, times, inp.frames, name)
        seconds = time.perf_counter() - started
        summary: dict[str, Any] = {
            "video": str(source.resolve()),
            "name": name,
            "model": model_label or getattr(loaded, "source", "") or str(loaded.path),
            "model_file": str(loaded.path) if loaded.path else None,
            "model_meta": loaded.meta,
            "config": {
                "preset": preset_of(config),
                "input": config.input.model_dump(mode="json"),
                "model": config.model.identity(),
            },
            "uses_audio": uses_audio,
            "frames": count,
            "fps": video.fps,
            "times": "frame k at start_s + k / fps in the source file (constant rate)",
            "start_s": float(video.media.info.start_s),
            "native_size": list(video.native_size),
            "map_size": list(map_size or ()),
            "format": options.format,
            "has_audio": video.has_audio,
            "audio": ("real soundtrack" if video.has_audio else "silence")
            if uses_audio
            else "not used (visual-only model)",
            "notes": notes,
            "mean_audio_share": rel_log.mean_audio_share() if rel_log else None,
            "device": device,
            "batch_size": options.batch_size,
            "seconds": round(seconds, 3),
            "frames_per_s": round(count / seconds, 3) if seconds > 0 else None,
        }
        write_json(staging / "summary.json", summary)
        summary["outputs"] = _commit(staging, folder)
        summary["folder"] = str(folder)
        return summary
    except BaseException:
        if bar is not None and bar.tty:
            bar.stream.write("\n")  # end the redrawn line before the error
        if isinstance(maps, NpzMaps):
            maps.abort()
        if overlay is not None:
            overlay.abort()
        shutil.rmtree(staging, ignore_errors=True)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


# --------------------------------------------------------------------------- many videos


def video_files(folder: Path) -> list[Path]:
    """The video files directly in ``folder`` (by suffix, :data:`VIDEO_SUFFIXES`), sorted."""
    from preprocessing.records import VIDEO_SUFFIXES

    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not files:
        raise InputError(f"{folder}: no video files in this folder ({', '.join(VIDEO_SUFFIXES)})")
    return files


def output_names(files: list[Path]) -> list[str]:
    """One output folder name per file, unique and inside ``OUT`` (:mod:`preprocessing.names`):
    its stem, or its whole name where two files share a stem (``a.mp4`` and ``a.mkv``), made
    a file name by :func:`preprocessing.names.file_names` (``..`` → ``~<hash>``; ``a`` and
    ``A`` each with its hash)."""
    stems = [p.stem for p in files]
    bases = [p.name if stems.count(s) > 1 else s for p, s in zip(files, stems, strict=True)]
    names = file_names(bases)
    return [names[b] for b in bases]


def _work(options: dict[str, Any], loaded: Any, item: dict[str, Any]) -> dict[str, Any]:
    """One video of a folder (in a pool actor): the summary without the model's meta."""
    summary = predict_one(
        loaded,
        item["video"],
        item["out"],
        PredictOptions(**options),
        name=item["name"],
        model_label=item.get("model"),
    )
    summary.pop("model_meta", None)
    return summary


@dataclass
class PredictReport:
    """What :func:`predict` did: one summary per finished video, the failures."""

    out: Path
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: every video done; 1: some failed (a single video's failure raises instead)."""
        return 1 if self.failures else 0


def predict(
    source: str | Path,
    out: str | Path,
    *,
    model: str | Path | None = None,
    options: PredictOptions | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    say: Say = _stderr,
    progress: bool = True,
) -> PredictReport:
    """``avrsp predict SOURCE``: one video in this process, or every video of a folder
    through :func:`workflows.pool.map_videos` (``workers`` actors; 0: one after the other
    here, without Ray). Failures of a folder's videos go to ``OUT/failures.json``.
    ``model``: a path or an MLflow URI (read from ``tracking_uri``); default
    :data:`DEFAULT_MODEL`. A run that raises leaves no empty folder it made."""
    with made_folders_removed_on_error(out):
        return _predict(
            Path(source),
            Path(out),
            model=model,
            options=options,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            address=address,
            tracking_uri=tracking_uri,
            say=say,
            progress=progress,
        )


def _predict(
    source: Path,
    out: Path,
    *,
    model: str | Path | None,
    options: PredictOptions | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float | None,
    address: str | None,
    tracking_uri: str | None,
    say: Say,
    progress: bool,
) -> PredictReport:
    options = options or PredictOptions()
    spec = model_or_default(model)
    report = PredictReport(out=out)
    if not source.exists():
        raise InputError(f"{source}: no such video file or folder")
    single = not source.is_dir()
    files = [source] if single else video_files(source)
    names = output_names(files)
    if not options.overwrite:  # before loading anything
        taken = [out / n for n in names if existing_files(out / n)]
        if taken:
            raise InputError(_held_message(taken))
    load = functools.partial(load_model, spec, tracking_uri=tracking_uri)
    if single:
        summary = predict_one(
            load(), source, out, options, name=names[0], say=say, progress=progress
        )
        report.results.append(summary)
        return report

    loaded = load()  # a wrong --model fails here, before any worker starts
    say(f"{len(files)} videos in {source}; model {loaded.path} ({preset_of(loaded.config)})")
    # The replicas read the local file (an MLflow URI is downloaded once, here).
    load = functools.partial(load_model, str(loaded.path))
    del loaded
    items = [
        {"name": n, "video": str(p.resolve()), "out": str(out.resolve()), "model": spec}
        for n, p in zip(names, files, strict=True)
    ]
    work = functools.partial(_work, asdict(options))
    if workers == 0:
        from workflows.pool import run_local

        rows = run_local(load, work, items)
    else:
        rows = _pool_rows(
            load, work, items, options, workers, cpus_per_worker, gpus_per_worker, address
        )
    by_name = {item["name"]: item["video"] for item in items}
    for k, row in enumerate(rows, 1):
        label = f"[{k}/{len(items)}] {row.get('name')}"
        if row.get("status") == "failed":
            failure = {
                "name": row.get("name"),
                "video": by_name.get(row.get("name")),
                "reason": row.get("reason"),
            }
            report.failures.append(failure)
            say(f"{label}: FAILED: {row.get('reason')}")
            continue
        report.results.append(row)
        for note in row.get("notes", []):
            say(f"{label}: {note}")
        say(
            f"{label}: {row['frames']} frames, {row['frames_per_s']:.1f} frames/s → {row['folder']}"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "failures.json", report.failures)
    return report


def _pool_rows(
    load: Callable[[], Any],
    work: Callable[[Any, dict[str, Any]], dict[str, Any]],
    items: list[dict[str, Any]],
    options: PredictOptions,
    workers: int | None,
    cpus: float,
    gpus: float | None,
    address: str | None,
) -> Iterator[dict[str, Any]]:
    import ray

    from preprocessing.ray_runtime import init_ray
    from workflows.pool import default_actors, map_videos

    init_ray(address, packages=("avrsp", "preprocessing", "workflows"))
    if gpus is None:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        gpus = 1.0 if has_gpus and options.device != "cpu" else 0.0
    actors = workers if workers is not None else default_actors(gpus, cpus)
    yield from map_videos(
        load, work, items, actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus
    )
