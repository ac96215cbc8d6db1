"""Preprocessing throughput vs plain ffmpeg, and memory at two dataset sizes (DESIGN §11).

In one run, on the same copies of one clip:

1. *baseline*: plain ``ffmpeg`` decoding + scaling every video to raw RGB frames at the
   model size (the same filter chain as :func:`preprocessing.ffmpeg.iter_frames`: scale with
   area interpolation, rgb24 to a pipe that is read and dropped), ``--cpus`` videos at a time;
2. *job*: the Ray Data job (:func:`preprocessing.pipeline.preprocess`) writing the segment
   shards of the same videos, on a local Ray with ``--cpus`` CPUs (Ray started before the
   clock starts; its start-up time is printed apart).

Prints frames/s of both and their ratio (goal ≥ 0.8), and the peak memory (driver RSS and
the sum over Ray worker processes, sampled every 50 ms) for each dataset size in
``--videos`` (memory must stay flat as the number of videos grows).

    python benchmarks/preprocess.py --clip ../shared/data/media/chaplin.mp4 --videos 10 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from avrsp.config import preset
from preprocessing import ffmpeg
from preprocessing.pipeline import preprocess
from preprocessing.segments import SegmentOptions


def make_dataset(clip: Path, root: Path, count: int, observers: int = 8) -> int:
    """``count`` copies of ``clip`` in the plain CSV layout with random gaze; returns frames."""
    info = ffmpeg.probe(clip)
    frames = info.frame_count or round((info.duration_s or 0) * info.fps)
    (root / "videos").mkdir(parents=True)
    (root / "gaze").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        name = f"clip_{i:03d}"
        shutil.copyfile(clip, root / "videos" / f"{name}{clip.suffix}")
        lines = ["video,frame,observer,x,y"]
        for f in range(frames):
            for o in range(observers):
                x, y = rng.uniform(0, info.width), rng.uniform(0, info.height)
                lines.append(f"{name},{f},{o},{x:.1f},{y:.1f}")
        (root / "gaze" / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return frames * count


def ffmpeg_baseline(videos: list[Path], size: tuple[int, int], cpus: int) -> tuple[int, float]:
    """Decode + scale every video to raw frames, ``cpus`` at a time; (frames, seconds)."""
    h, w = size

    def one(path: Path) -> int:
        cmd = [
            ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-i", str(path), "-map", "0:V:0", "-vf", f"scale={w}:{h}:flags=area",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        total = 0
        while chunk := proc.stdout.read(1 << 20):
            total += len(chunk)
        proc.wait()
        return total // (h * w * 3)

    start = time.perf_counter()
    with ThreadPoolExecutor(cpus) as pool:
        frames = sum(pool.map(one, videos))
    return frames, time.perf_counter() - start


class MemorySampler(threading.Thread):
    """Peak RSS of this process and of the Ray worker processes (sum), every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.driver_peak = 0
        self.workers_peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.is_set():
            self.driver_peak = max(self.driver_peak, me.memory_info().rss)
            workers = 0
            for proc in psutil.process_iter(["name", "cmdline"]):
                try:
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if proc.info["name"].startswith("ray::") or "default_worker.py" in cmd:
                        workers += proc.memory_info().rss
                except (psutil.Error, TypeError, AttributeError):
                    continue
            self.workers_peak = max(self.workers_peak, workers)
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/media/chaplin.mp4"))
    parser.add_argument("--videos", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--stride", type=int, help="window stride (default T/2)")
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False)
    ray_start = time.perf_counter() - t0
    config = preset(args.preset)
    opts = SegmentOptions.from_config(config, stride=args.stride)
    size = (opts.height, opts.width)
    results = []
    print(f"clip {args.clip}, preset {args.preset} (T={opts.frames}, {size[0]}×{size[1]}, "
          f"stride {opts.stride}), {args.cpus} CPUs; ray.init took {ray_start:.1f} s")  # fmt: skip
    for count in args.videos:
        with tempfile.TemporaryDirectory() as tmp:
            root, out = Path(tmp) / "clips", Path(tmp) / "out"
            total = make_dataset(args.clip, root, count)
            videos = sorted((root / "videos").iterdir())
            base_frames, base_s = ffmpeg_baseline(videos, size, args.cpus)
            sampler = MemorySampler()
            sampler.start()
            start = time.perf_counter()
            report = preprocess(f"csv:{root}", out, config=config, options=opts, log=lambda _: None)
            job_s = time.perf_counter() - start
            sampler.stop()
            row = {
                "videos": count,
                "frames": total,
                "ffmpeg_fps": base_frames / base_s,
                "job_fps": report.frames / job_s,
                "ratio": (report.frames / job_s) / (base_frames / base_s),
                "windows": report.windows,
                "failed": report.failed,
                "shard_MiB": report.bytes / 2**20,
                "bytes_per_window": report.bytes / max(report.windows, 1),
                "driver_peak_MiB": sampler.driver_peak / 2**20,
                "workers_peak_MiB": sampler.workers_peak / 2**20,
            }
            results.append(row)
            print(
                f"{count:3d} videos, {total} frames: ffmpeg {row['ffmpeg_fps']:.0f} frames/s, "
                f"job {row['job_fps']:.0f} frames/s, ratio {row['ratio']:.2f}; "
                f"{report.windows} windows, {row['bytes_per_window'] / 1024:.0f} KiB/window; "
                f"peak RSS driver {row['driver_peak_MiB']:.0f} MiB, "
                f"Ray workers {row['workers_peak_MiB']:.0f} MiB"
            )
    ray.shutdown()
    cpu = platform.processor() or platform.machine()
    print(json.dumps({"machine": f"{cpu}, {os.cpu_count()} cores", "results": results}, indent=1))


if __name__ == "__main__":
    main()
