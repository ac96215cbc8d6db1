"""Where the preprocessing job's CPU goes, against the baseline of benchmarks/preprocess.py.

Complements ``benchmarks/preprocess.py`` (the ratio) with the split behind it
(docs/PERFORMANCE.md, "Re-measured 2026-11-26"), on copies of one clip at a preset's size:

1. ffmpeg command lines on one copy, CPU ms (``getrusage`` of the waited children, minimum
   and median of ``--repeats`` runs): the baseline with ffmpeg's default threads and with one
   thread, decoding alone, the video part of the job's process (MJPEG, and raw output
   instead to isolate the encoder), its audio part alone, the whole of it (frames, audio and
   the packet table: :class:`preprocessing.ffmpeg.OnePass`), and the probe scan (which the
   job now runs only for files that one process cannot do alone);
2. one video written in this process (``write_video``): Python's CPU and its ffmpeg
   children's, per video;
3. ``--videos`` copies written without Ray, one and two processes at a time
   (``preprocess(use_ray=False)``), and with the Ray Data job on a local Ray, the last
   split by process kind (driver, workers with their ffmpeg, Ray's daemons; psutil).

    python benchmarks/preprocess_costs.py --clip ../shared/data/media/chaplin.mp4 --videos 40

The command lines of step 1 mirror those :class:`preprocessing.ffmpeg.OnePass`,
:func:`preprocessing.ffmpeg.iter_jpeg_frames` and :func:`preprocessing.ffmpeg.probe` build
(the quantization matrices left at ffmpeg's own for ``-q:v 8``, which costs the same; the
audio and the packet table to ``/dev/null``); run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from preprocess import ffmpeg_baseline, make_dataset, warm_up_ray_data

from avrsp.config import preset
from preprocessing import ffmpeg
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


def command_costs(video: Path, size: tuple[int, int], repeats: int) -> None:
    h, w = size
    base = [ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    one = ["-threads", "1"]
    jfif = f"[0:V:0]scale={w}:{h}:flags=area:out_color_matrix=bt601:out_range=pc,format=yuvj420p[v]"
    pcm = "[0:a:0]aresample=first_pts=0:ochl=mono:osr=22050:rematrix_maxval=1[a]"
    tail = ["-filter_complex_threads", "1"]
    cases = {
        "baseline, default threads": [*base, "-i", video, "-map", "0:V:0", "-vf",
            f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        "baseline, one thread": [*base, *one, "-i", video, "-map", "0:V:0", "-vf",
            f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", *one,
            "-filter_threads", "1", "pipe:"],
        "decoding alone, one thread": [*base, *one, "-i", video, "-map", "0:V:0", "-f", "null",
            "-"],
        "job's video part (MJPEG)": [*base, *one, "-i", video, "-filter_complex", jfif,
            "-map", "[v]", "-f", "image2pipe", "-fps_mode", "passthrough", "-huffman",
            "default", "-q:v", "8", *one, "-vcodec", "mjpeg", "pipe:", *tail],
        "job's video part, raw output": [*base, *one, "-i", video, "-filter_complex", jfif,
            "-map", "[v]", "-f", "rawvideo", *one, "pipe:", *tail],
        "job's audio part alone": [*base, *one, "-i", video, "-filter_complex", pcm, "-map",
            "[a]", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:", *tail],
        "job's one process": [*base, *one, "-i", video, "-filter_complex", f"{jfif};{pcm}",
            "-map", "[v]", "-f", "image2pipe", "-fps_mode", "passthrough", "-flush_packets",
            "0", "-huffman", "default", "-q:v", "8", *one, "-vcodec", "mjpeg", "pipe:",
            "-map", "[a]", "-f", "f32le", "-acodec", "pcm_f32le", "-flush_packets", "0",
            "-y", "/dev/null", "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-y",
            "/dev/null", *tail],
        "probe scan (framecrc)": [*base, "-i", video, "-map", "0:V:0?", "-f", "framecrc",
            "-c", "copy", "pipe:"],
        "starting ffmpeg (-version)": [ffmpeg.ffmpeg_exe(), "-version"],
    }  # fmt: skip
    print(f"1. ffmpeg on {video.name}, CPU ms (min / median of {repeats})")
    for name, cmd in cases.items():
        used = []
        for _ in range(repeats):
            before = _cpu()[1]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            subprocess.run([str(c) for c in cmd], check=True, **quiet)
            used.append(1000 * (_cpu()[1] - before))
        print(f"   {name:<28} {min(used):5.0f} / {statistics.median(used):5.0f}")


def in_process(root: Path, work: Path, opts: SegmentOptions, config_json: str) -> None:
    records = open_source(f"csv:{root}").records
    write_video(records[0], opts, work / "warm", config_json=config_json)  # imports, caches
    print("2. one video at a time in this process, CPU ms per video")
    for record in records[1:6]:
        before = _cpu()
        summary = write_video(record, opts, work / "one", config_json=config_json)
        after = _cpu()
        print(f"   {record.video_id}: Python {1000 * (after[0] - before[0]):.0f}, "
              f"ffmpeg {1000 * (after[1] - before[1]):.0f} ({summary.status})")  # fmt: skip


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
            kind = "Ray workers (+ their ffmpeg)"
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
        command_costs(first, (opts.height, opts.width), args.repeats)
        in_process(root, work, opts, config.to_json())
        whole_jobs(root, work, opts, config, frames)


if __name__ == "__main__":
    main()
