"""The Ray Data preprocessing job: a dataset source → Parquet segment shards (DESIGN §2, §5).

``ray.data.from_items(records).map(process)``: one task per video, each writing its own
shards and returning a one-line summary, so the driver's memory does not grow with the
number of videos and a crash loses at most the videos in flight. The same code runs on a
local Ray (started here when none is running) and on a cluster (``address``).

After the run the output folder holds (docs/DATA.md):

- ``shards/…`` and ``done/…`` (see :mod:`preprocessing.segments`);
- ``failures.json``: every video that failed, with its reason (an empty list when none);
- ``manifest.json``: schema version, config, options, and per split the videos, windows and
  bytes, plus the skipped videos with their reasons.

Re-running the same command resumes: videos with a done-marker are not touched again.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preprocessing import storage
from preprocessing.ray_runtime import init_ray
from preprocessing.records import VideoRecord
from preprocessing.schema import SCHEMA_VERSION
from preprocessing.segments import SegmentOptions, VideoSummary, read_marker, write_video
from preprocessing.sources import Listing, open_source

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
        return "\n".join(lines)


def check_output(out: str | Path) -> str:
    """Create ``out`` (a folder or an object-store prefix) and prove it writable, before any
    work; InputError otherwise. Returns it as a location (:mod:`preprocessing.storage`)."""
    return storage.check_writable(out, "--out")


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
    log: Callable[[str], None] = print,
) -> JobReport:
    """Turn the videos of ``source`` (``KIND:PATH``) into segment shards under ``out``."""
    started = time.perf_counter()
    out = check_output(out)
    opts = options or SegmentOptions.from_config(config)
    listing: Listing = open_source(source, **(source_options or {}))
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
    report = _report(source, out, listing, summaries, time.perf_counter() - started)
    storage.write_json(storage.join(out, "failures.json"), report.failures)
    storage.write_json(
        storage.join(out, "manifest.json"),
        {
            "schema_version": SCHEMA_VERSION,
            "source": source,
            "config": json.loads(config_json),
            "options": asdict(opts),
            "videos": report.ok,
            "windows": report.windows,
            "bytes": report.bytes,
            "failed": report.failed,
            "splits": report.splits,
            "skipped": listing.skipped,
            "seconds": round(report.seconds, 3),
        },
    )
    log(report.text())
    return report


def _report(
    source: str, out: str, listing: Listing, summaries: list[VideoSummary], seconds: float
) -> JobReport:
    report = JobReport(out=str(out), source=source, seconds=seconds)
    report.skipped = len(listing.skipped)
    report.failures = [dict(f) for f in listing.failed]
    for s in summaries:
        if s.status == "failed":
            report.failures.append({"dataset": s.dataset, "video": s.video, "reason": s.reason})
            continue
        report.ok += 1
        report.done_before += s.status == "done_before"
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
