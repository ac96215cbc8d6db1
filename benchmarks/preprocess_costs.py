"""Where the preprocessing job's CPU goes, against the baseline of benchmarks/preprocess.py.

Complements ``benchmarks/preprocess.py`` (the ratio) with the split behind it
(docs/PERFORMANCE.md), on copies of one clip at a preset's size:

1. per video, CPU ms (minimum and median of ``--repeats`` runs): the baseline's ffmpeg
   command line with ffmpeg's default threads and with one thread, and its decoding alone;
   then the job's media work in this process (:mod:`preprocessing.media`, one thread):
   ``probe``, ``decode_audio``, decoding alone, decoding + scaling (``iter_frames``) and
   decoding + scaling + JPEG (``iter_jpeg_frames``, what the job runs);
2. one video written in this process (``write_video``), CPU ms per video;
3. ``--videos`` copies written without Ray, one and two processes at a time
   (``preprocess(use_ray=False)``), and with the Ray Data job on a local Ray, the last
   split by process kind (driver, workers, Ray's daemons; psutil).

    python benchmarks/preprocess_costs.py --clip ../shared/data/media/chaplin.mp4 --videos 40

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import psutil
from preprocess import ffmpeg_baseline, make_dataset, warm_up_ray_data

from avrsp.config import preset
from preprocessing import media
from preprocessing.pipeline import preprocess
from preprocessing.segments import SegmentOptions, write_video
from preprocessing.sources import open_source


def _cpu() -> tuple[float, float]:
    """(this process, its waited children) CPU seconds so far."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _decode_only(video: Path) -> None:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            pass


def media_costs(video: Path, size: tuple[int, int], repeats: int) -> None:
    h, w = size
    base = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    one = ["-threads", "1"]
    commands = {
        "baseline, default threads": [*base, "-i", video, "-map", "0:V:0", "-vf",
            f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        "baseline, one thread": [*base, *one, "-i", video, "-map", "0:V:0", "-vf",
            f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", *one,
            "-filter_threads", "1", "pipe:"],
        "ffmpeg decoding alone, one thread": [*base, *one, "-i", video, "-map", "0:V:0",
            "-f", "null", "-"],
    }  # fmt: skip
    info = media.probe(video)
    calls: dict[str, Callable[[], object]] = {
        "probe": lambda: media.probe(video),
        "decode_audio (22.05 kHz)": lambda: media.decode_audio(video, 22050, info=info),
        "PyAV decoding alone": lambda: _decode_only(video),
        "iter_frames (+ scaling)": lambda: sum(
            1 for _ in media.iter_frames(video, size, info=info)
        ),
        "iter_jpeg_frames (+ JPEG)": lambda: sum(
            1 for _ in media.iter_jpeg_frames(video, size, info=info)
        ),
    }
    print(f"1. {video.name}, CPU ms per video (min / median of {repeats})")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for name, cmd in commands.items():
        used = []
        for _ in range(repeats):
            before = _cpu()[1]
            subprocess.run([str(c) for c in cmd], check=True, **quiet)
            used.append(1000 * (_cpu()[1] - before))
        print(f"   {name:<36} {min(used):5.0f} / {statistics.median(used):5.0f}")
    for name, call in calls.items():
        used = []
        for _ in range(repeats):
            before = _cpu()[0]
            call()
            used.append(1000 * (_cpu()[0] - before))
        print(f"   {name:<36} {min(used):5.0f} / {statistics.median(used):5.0f}")


def in_process(root: Path, work: Path, opts: SegmentOptions, config_json: str) -> None:
    records = open_source(f"csv:{root}").records
    write_video(records[0], opts, work / "warm", config_json=config_json)  # imports, caches
    print("2. one video at a time in this process, CPU ms per video")
    for record in records[1:6]:
        before = _cpu()
        summary = write_video(record, opts, work / "one", config_json=config_json)
        after = _cpu()
        print(f"   {record.video_id}: {1000 * (after[0] - before[0]):.0f} "
              f"({summary.status})")  # fmt: skip


def _by_kind() -> dict[int, tuple[str, float]]:
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            name, t = proc.name(), proc.cpu_times()
        except psutil.Error:
            continue
        if proc.pid == me.pid:
            kind = "driver (+ its waited children)"
        elif name.startswith("ray::") and not name.endswith("Agent"):
            kind = "Ray workers"
        else:
            kind = name
        out[proc.pid] = (kind, t.user + t.system + t.children_user + t.children_system)
    return out


def whole_jobs(root: Path, work: Path, opts: SegmentOptions, config, frames: int) -> None:
    import ray

    size = (opts.height, opts.width)
    videos = sorted((root / "videos").iterdir())
    print(f"3. {len(videos)} videos, {frames} frames")
    before, start = _cpu(), time.perf_counter()
    base_frames, base_s = ffmpeg_baseline(videos, size, 2)
    used = sum(_cpu()) - sum(before)
    print(f"   baseline, 2 at a time: {base_frames / base_s:.0f} frames/s, "
          f"{1000 * used / base_frames:.2f} CPU ms/frame")  # fmt: skip
    for workers in (1, 2):
        before, start = _cpu(), time.perf_counter()
        report = preprocess(f"csv:{root}", work / f"local{workers}", config=config, options=opts,
                            use_ray=False, num_cpus=workers, log=lambda _: None)  # fmt: skip
        wall, used = time.perf_counter() - start, sum(_cpu()) - sum(before)
        print(f"   without Ray, {workers} process(es): {report.frames / wall:.0f} frames/s, "
              f"{1000 * used / report.frames:.2f} CPU ms/frame, "
              f"{1000 * used / len(videos):.0f} ms/video")  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False)
    warm_up_ray_data(2)
    first, start = _by_kind(), time.perf_counter()
    report = preprocess(
        f"csv:{root}", work / "ray", config=config, options=opts, log=lambda _: None
    )
    wall, last = time.perf_counter() - start, _by_kind()
    kinds: dict[str, float] = {}
    for pid, (kind, t) in last.items():
        kinds[kind] = kinds.get(kind, 0.0) + t - first.get(pid, (kind, 0.0))[1]
    total = sum(kinds.values())
    print(f"   Ray Data job: {report.frames / wall:.0f} frames/s, "
          f"{1000 * total / report.frames:.2f} CPU ms/frame; CPU s by process:")  # fmt: skip
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"     {kind:<32} {seconds:6.2f} ({100 * seconds / total:.1f} %)")
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/media/chaplin.mp4"))
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    config = preset(args.preset)
    opts = SegmentOptions.from_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "clips", Path(tmp)
        frames = make_dataset(args.clip, root, max(args.videos, 6))
        first = sorted((root / "videos").iterdir())[0]
        media_costs(first, (opts.height, opts.width), args.repeats)
        in_process(root, work, opts, config.to_json())
        whole_jobs(root, work, opts, config, frames)


if __name__ == "__main__":
    main()
