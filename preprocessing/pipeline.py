"""The Ray Data preprocessing job: a dataset source → Parquet segment shards (docs/DATA.md).

``ray.data.from_items(records).map(process)``: one task per video, each writing its own
shards and returning a one-line summary, so the driver's memory does not grow with the
number of videos and a crash loses at most the videos in flight. The same code runs on a
local Ray (started here when none is running) and on a cluster (``address``).

After the run the output folder holds (docs/DATA.md):

- ``shards/…`` and ``done/…`` (see :mod:`preprocessing.segments`);
- ``failures.json``: every video that failed, with its reason (an empty list when none);
- ``manifest.json``: schema version, config, options, and per split the videos, windows and
  bytes, plus the skipped videos with their reasons and the gaze rows each written video
  lost (``dropped_rows``).

Re-running the same command resumes: videos with a done-marker are not touched again.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avrsp.errors import InputError
from preprocessing import storage
from preprocessing.fingerprints import FINGERPRINT_FILE, differences
from preprocessing.ray_runtime import init_ray
from preprocessing.records import VideoRecord, dropped_rows_text
from preprocessing.schema import SCHEMA_VERSION
from preprocessing.segments import SegmentOptions, VideoSummary, read_marker, write_video
from preprocessing.sources import Listing, open_source
from preprocessing.sources.check import preflight

if TYPE_CHECKING:  # pydantic's models: not imported by the Ray workers (≈ 0.1 s each)
    from avrsp.config import AVRSPConfig


@dataclass
class JobReport:
    """The outcome of one run (what ``manifest.json`` and the printed summary say)."""

    out: str
    source: str
    ok: int = 0
    failed: int = 0
    done_before: int = 0
    skipped: int = 0
    windows: int = 0
    bytes: int = 0
    frames: int = 0
    seconds: float = 0.0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped_videos: list[dict[str, str]] = field(default_factory=list)
    # Written videos that lost gaze rows: dataset, video, rows, files (DroppedRows.to_list).
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"preprocess {self.source} → {self.out}",
            f"  videos: {self.ok} ok ({self.done_before} done before), {self.failed} failed, "
            f"{self.skipped} skipped",
            f"  windows: {self.windows}, shard bytes: {self.bytes / 2**20:.1f} MiB, "
            f"time: {self.seconds:.1f} s ({rate:.0f} new frames/s)",
        ]
        for split, counts in sorted(self.splits.items()):
            lines.append(
                f"  {split}: {counts['videos']} videos, {counts['windows']} windows, "
                f"{counts['bytes'] / 2**20:.1f} MiB"
            )
        for failure in self.failures:
            lines.append(f"  FAILED {failure['dataset']}/{failure['video']}: {failure['reason']}")
        for skip in self.skipped_videos[:_SHOWN]:
            lines.append(f"  SKIPPED {skip['dataset']}/{skip['video']}: {skip['reason']}")
        for video in self.dropped_rows[:_SHOWN]:
            text = dropped_rows_text(video["files"])
            lines.append(f"  DROPPED ROWS {video['dataset']}/{video['video']}: {text}")
        for what, items in (
            ("skipped", self.skipped_videos),
            ("with dropped rows", self.dropped_rows),
        ):
            if len(items) > _SHOWN:
                lines.append(f"  … {len(items) - _SHOWN} more videos {what} in manifest.json")
        return "\n".join(lines)


_SHOWN = 10  # skipped videos and videos with dropped rows named in the printed summary


def check_output(out: str | Path) -> str:
    """Create ``out`` (a folder or an object-store prefix) and prove it writable, before any
    work; InputError otherwise. Returns it as a location (:mod:`preprocessing.storage`)."""
    return storage.check_writable(out, "--out")


#: What decides the rows besides the videos: not how they are cut into files.
_LAYOUT_ONLY = ("max_shard_bytes", "row_group_bytes")
#: What an earlier run wrote under ``out`` (``--overwrite`` deletes these, nothing else).
OUTPUTS = ("shards", "done", "manifest.json", "failures.json", FINGERPRINT_FILE)


def fingerprint(
    source: str, source_options: dict[str, Any] | None, opts: SegmentOptions
) -> dict[str, Any]:
    """What decides the rows of a run: the source and its options, the segment options
    (input size, stride, target, sigma, JPEG quality, audio), the schema version."""
    return json.loads(
        json.dumps(
            {
                "schema_version": SCHEMA_VERSION,
                "source": source,
                "source_options": dict(sorted((source_options or {}).items())),
                "options": {k: v for k, v in asdict(opts).items() if k not in _LAYOUT_ONLY},
            }
        )
    )  # JSON types (tuples → lists), as a stored one reads back


def _mixed(out: str, diffs: list[str]) -> InputError:
    return InputError(
        f"--out {out}: holds shards made with other options ({'; '.join(diffs)}); resuming "
        "would mix them. Use a new --out, or --overwrite to delete them and start again"
    )


def check_fingerprint(out: str, now: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse a run into ``out`` whose rows would differ from those already there (naming
    each difference); ``overwrite`` deletes the earlier run's outputs instead. Then record
    ``now``: before any video is written, so the folder never holds rows of two kinds."""
    location = storage.join(out, FINGERPRINT_FILE)
    if overwrite:
        for name in OUTPUTS:
            storage.delete_tree(storage.join(out, name))
            storage.delete(storage.join(out, name))
    elif storage.is_file(location):
        diffs = differences(storage.read_json(location), now)
        if diffs:
            raise _mixed(out, diffs)
        return
    elif storage.is_file(storage.join(out, "manifest.json")):  # a run before fingerprints
        manifest = storage.read_json(storage.join(out, "manifest.json"))
        options = {k: v for k, v in manifest.get("options", {}).items() if k not in _LAYOUT_ONLY}
        before = {"schema_version": manifest.get("schema_version"),
                  "source": manifest.get("source"), "options": options}  # fmt: skip
        diffs = differences(before, {k: now[k] for k in before})
        if diffs:
            raise _mixed(out, diffs)
    elif storage.list_files(storage.join(out, "done"), suffix=".json", limit=1):
        raise InputError(
            f"--out {out}: holds shards of an earlier run that recorded no fingerprint, so "
            "they cannot be checked against these options; use a new --out, or --overwrite"
        )
    storage.write_json(location, now)


def process_record(item: dict[str, Any], *, options: str, out: str, config: str) -> dict[str, Any]:
    """Ray task body: ``{"record": json}`` → ``{"summary": json}`` (shards written on the way).

    Its modules are imported at module level (here and in :mod:`preprocessing.segments`), so
    a Ray worker (reused from task to task) pays the imports once, not once per video.
    """
    record = VideoRecord.from_json(item["record"])
    opts = SegmentOptions(**json.loads(options))
    summary = write_video(record, opts, out, config_json=config)
    return {"summary": json.dumps(summary.to_dict())}


def run_ray(
    records: list[VideoRecord], opts: SegmentOptions, out: str, config_json: str
) -> Iterable[VideoSummary]:
    """Process ``records`` in parallel with Ray Data, yielding summaries as they finish."""
    import ray

    dataset = ray.data.from_items(
        [{"record": r.to_json()} for r in records], override_num_blocks=len(records)
    ).map(
        process_record,
        fn_kwargs={"options": json.dumps(asdict(opts)), "out": str(out), "config": config_json},
        num_cpus=1,
    )
    # Ray Data reserves part of the CPUs for each operator by default; with one operator
    # whose outputs are one-line summaries, that reservation held the job to one task at a
    # time for much of a run on 2 CPUs (10 tasks sleeping 0.4 s: 3.0–3.4 s, two in flight
    # for only 0.8–1.2 s of it; without it 2.1 s; 12 videos: 8.0 → 5.8 s). This dataset's
    # own context: the global one is unchanged.
    dataset.context.op_resource_reservation_enabled = False
    for row in dataset.iter_rows():
        yield VideoSummary(**json.loads(row["summary"]))


def run_local(
    records: list[VideoRecord],
    opts: SegmentOptions,
    out: str,
    config_json: str,
    workers: int = 1,
) -> Iterable[VideoSummary]:
    """The same work without Ray: in this process, one video after another, or in
    ``workers`` spawned processes (for a machine where Ray is not installed)."""
    if workers <= 1 or len(records) <= 1:
        for record in records:
            yield write_video(record, opts, out, config_json=config_json)
        return
    task = partial(
        process_record, options=json.dumps(asdict(opts)), out=str(out), config=config_json
    )
    context = multiprocessing.get_context("spawn")  # the caller may hold threads
    with ProcessPoolExecutor(min(workers, len(records)), mp_context=context) as pool:
        for row in pool.map(task, [{"record": r.to_json()} for r in records]):
            yield VideoSummary(**json.loads(row["summary"]))


def preprocess(
    source: str,
    out: str | Path,
    *,
    config: AVRSPConfig,
    options: SegmentOptions | None = None,
    source_options: dict[str, Any] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    use_ray: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> JobReport:
    """Turn the videos of ``source`` (``KIND:PATH``) into segment shards under ``out``.

    A re-run into the same ``out`` resumes when it would write the same rows (the same
    fingerprint); with other options it is refused, unless ``overwrite``, which deletes
    what the earlier run wrote and starts again."""
    started = time.perf_counter()
    out = check_output(out)
    opts = options or SegmentOptions.from_config(config)
    preflight(source, datasets=(source_options or {}).get("datasets"), log=log)
    listing: Listing = open_source(source, **(source_options or {}))
    maps = any(r.maps_pattern for r in listing.records)
    if opts.target == "dataset" and listing.records and not maps:
        raise InputError(
            f"--target dataset: {source} ships no saliency maps of its own; use --target auto "
            "or fixations (maps made from the gaze)"
        )
    check_fingerprint(out, fingerprint(source, source_options, opts), overwrite=overwrite)
    config_json = config.to_json()
    todo: list[VideoRecord] = []
    summaries: list[VideoSummary] = []
    for record in listing.records:
        done = read_marker(out, record)
        if done is not None:
            summaries.append(done)
            continue
        todo.append(record)
    log(
        f"{len(listing.records)} videos listed ({len(summaries)} done before, "
        f"{len(todo)} to do, {len(listing.skipped)} skipped, {len(listing.failed)} unusable)"
    )
    if todo:
        if use_ray:
            init_ray(address, num_cpus=num_cpus)
            summaries.extend(run_ray(todo, opts, out, config_json))
        else:
            summaries.extend(run_local(todo, opts, out, config_json, num_cpus or 1))
    _remove_empty_folders(out)
    report = _report(source, out, listing, summaries, time.perf_counter() - started)
    storage.write_json(storage.join(out, "failures.json"), report.failures)
    storage.write_json(
        storage.join(out, "manifest.json"),
        {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": storage.read_json(storage.join(out, FINGERPRINT_FILE)),
            "source": source,
            "config": json.loads(config_json),
            "options": asdict(opts),
            "videos": report.ok,
            "windows": report.windows,
            "bytes": report.bytes,
            "failed": report.failed,
            "splits": report.splits,
            "skipped": listing.skipped,
            "dropped_rows": report.dropped_rows,
            "seconds": round(report.seconds, 3),
        },
    )
    log(report.text())
    return report


def _remove_empty_folders(out: str) -> None:
    """Remove the shard folders left empty by videos that failed (a full disk fails every
    video of a split): here, once every task is done, never while one could still be
    writing into a folder it has just made."""
    if storage.is_uri(out):
        return  # an object store has no folders
    for folder, _, _ in os.walk(Path(out, "shards"), topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty


def _report(
    source: str, out: str, listing: Listing, summaries: list[VideoSummary], seconds: float
) -> JobReport:
    report = JobReport(out=str(out), source=source, seconds=seconds)
    report.skipped = len(listing.skipped)
    report.skipped_videos = [dict(s) for s in listing.skipped]
    report.failures = [dict(f) for f in listing.failed]
    for s in summaries:
        if s.status == "failed":
            report.failures.append({"dataset": s.dataset, "video": s.video, "reason": s.reason})
            continue
        report.ok += 1
        report.done_before += s.status == "done_before"
        if s.dropped_rows:
            rows = sum(f["rows"] for f in s.dropped_rows)
            entry = {"dataset": s.dataset, "video": s.video, "rows": rows, "files": s.dropped_rows}
            report.dropped_rows.append(entry)
        if s.status == "ok":
            report.frames += s.frames
        report.windows += s.windows
        report.bytes += s.bytes
        counts = report.splits.setdefault(s.split, {"videos": 0, "windows": 0, "bytes": 0})
        counts["videos"] += 1
        counts["windows"] += s.windows
        counts["bytes"] += s.bytes
    report.failed = len(report.failures)
    return report
