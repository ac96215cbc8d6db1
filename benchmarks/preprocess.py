"""Preprocessing throughput vs plain ffmpeg, and memory at two dataset sizes.

In one run, on the same copies of one clip, for each dataset size in ``--videos``:

1. *baseline*: the plain ``ffmpeg`` program decoding + scaling every video to raw RGB
   frames at the model size (area interpolation, rgb24 to a pipe that this process reads in
   1 MiB pieces and discards), ``--cpus`` videos at a time;
2. *job*: the Ray Data job (:func:`preprocessing.pipeline.preprocess`) writing the segment
   shards of the same videos into a new folder, on a local Ray with ``--cpus`` CPUs. Ray's
   start-up is timed apart: ``ray.init`` and a no-op Ray Data job (the first Ray Data job
   of a Ray session spends seconds importing Ray Data in the driver and in every worker,
   once per session, whatever the dataset). The job's time includes everything else; the
   first round of the first size also pays the first import of this project's modules in
   each worker.

The two alternate: baseline, job, baseline, job, …, baseline (``--rounds`` jobs). Each
round's ratio divides the job's frames/s by the mean of the baselines right before and
right after it, so a change in the machine's speed during the run weighs on both sides
alike; the median over the rounds is the figure to quote (this VM's speed wanders by ±10 %
from one minute to the next).

Prints, per round, frames/s of both and their ratio (goal ≥ 0.8) and the CPU time per
frame of both (the benchmark process, its ffmpeg processes and the whole local Ray tree),
the load average around each measurement (other work on the machine skews the numbers),
and the peak memory of each size (driver RSS and the sum of the Ray worker processes'
peaks, as the kernel tracks them: :class:`PeakMemory`; memory must stay flat as the
number of videos grows).

    python benchmarks/preprocess.py --clip ../shared/data/media/chaplin.mp4 --videos 10 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from avrsp.config import preset
from preprocessing import media
from preprocessing.pipeline import preprocess
from preprocessing.segments import SegmentOptions


def make_dataset(clip: Path, root: Path, count: int, observers: int = 8) -> int:
    """``count`` copies of ``clip`` in the plain CSV layout with random gaze; returns frames."""
    info = media.probe(clip)
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
            media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
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


class CpuClock:
    """CPU seconds used by this process and its descendants since the last ``lap()``.

    Counts this process (user + system), the ffmpeg processes it waited for, and every
    live descendant (the local Ray: workers, raylet, GCS, agents). Unlike wall time it
    hardly depends on other work on the machine.
    """

    def __init__(self) -> None:
        self._seen: dict[int, float] = {}
        self._own = self._self_and_waited()
        self._descendants()

    @staticmethod
    def _self_and_waited() -> float:
        me, waited = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return me.ru_utime + me.ru_stime + waited.ru_utime + waited.ru_stime

    def _descendants(self) -> float:
        """CPU of the live descendants since the previous call (new ones: since their start)."""
        used = 0.0
        for proc in psutil.Process().children(recursive=True):
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total = t.user + t.system + t.children_user + t.children_system
            used += total - self._seen.get(proc.pid, 0.0)
            self._seen[proc.pid] = total
        return used

    def lap(self) -> float:
        own = self._self_and_waited()
        used = own - self._own + self._descendants()
        self._own = own
        return used


def warm_up_ray_data(cpus: int) -> list[int]:
    """A no-op Ray Data job over ``cpus`` blocks: Ray Data imported in the driver and in
    each worker, as any first Ray Data job of a Ray session does. Returns the workers' pids.

    Each task waits until every task has started (a file per task in a temporary folder:
    the local Ray shares this machine; at most 20 s), so the ``cpus`` tasks run on ``cpus``
    different workers: without it one worker took every quick task and the other paid Ray
    Data's import (≈ 1 s CPU) inside the measured job. No actor: its process would leave.
    """
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(tmp)

        def wait_for_all(row: dict) -> dict:
            Path(folder, str(row["i"])).touch()
            deadline = time.monotonic() + 20
            while len(os.listdir(folder)) < cpus and time.monotonic() < deadline:
                time.sleep(0.02)
            return {"pid": os.getpid()}

        items = [{"i": i} for i in range(cpus)]
        # A local function travels by value: the workers need not import this script.
        ds = ray.data.from_items(items, override_num_blocks=cpus).map(wait_for_all, num_cpus=1)
        ds.context.op_resource_reservation_enabled = False  # as the job does (pipeline.py)
        pids = [row["pid"] for row in ds.iter_rows()]
    assert len(pids) == cpus
    return pids


class PeakMemory:
    """Peak RSS of this process and the sum of its Ray workers' peaks, as the kernel
    tracks them (``VmHWM`` in ``/proc/PID/status``), since :meth:`reset`.

    Nothing runs during the measurement: a thread that sampled every process's RSS every
    50 ms took 12 % of a core, all of it charged to the job (it paused during the
    baselines). :meth:`reset` restarts each process's peak at its current RSS (``5`` to
    ``/proc/PID/clear_refs``, Linux ≥ 4.0). Only this process's descendants count (the
    local Ray started here), workers titled ``ray::IDLE``, ``ray::<task>`` and so on, not
    Ray's agents. A sum of peaks is at least the peak of the sum.
    """

    def __init__(self) -> None:
        self.since_start = False  # True when the kernel refused a reset

    @staticmethod
    def _workers() -> list[psutil.Process]:
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                name = proc.name()
            except psutil.Error:
                continue
            if name.startswith("ray::") and not name.endswith("Agent"):
                found.append(proc)
        return found

    @staticmethod
    def _peak(pid: int | str) -> int:
        """VmHWM in bytes (0 when the process is gone)."""
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def reset(self) -> None:
        if not os.path.isfile("/proc/self/status"):
            raise SystemExit("this benchmark reads peak memory from /proc (Linux only)")
        for pid in ["self", *(p.pid for p in psutil.Process().children(recursive=True))]:
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as refs:
                    refs.write("5")
            except FileNotFoundError:
                continue  # the process has ended
            except OSError:
                self.since_start = True

    def driver(self) -> int:
        return self._peak("self")

    def workers(self) -> int:
        return sum(self._peak(p.pid) for p in self._workers())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/media/chaplin.mp4"))
    parser.add_argument("--videos", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--stride", type=int, help="window stride (default T/2)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="job runs per size, each between two baselines"
    )
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False)
    ray_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm_pids = warm_up_ray_data(args.cpus)
    data_start = time.perf_counter() - t0
    config = preset(args.preset)
    opts = SegmentOptions.from_config(config, stride=args.stride)
    size = (opts.height, opts.width)
    results = []
    print(f"clip {args.clip}, preset {args.preset} (T={opts.frames}, {size[0]}×{size[1]}, "
          f"stride {opts.stride}), {args.cpus} CPUs; ray.init took {ray_start:.1f} s, "
          f"Ray Data's first (no-op) job {data_start:.1f} s "
          f"on {len(set(warm_pids))} workers")  # fmt: skip
    for count in args.videos:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "clips"
            total = make_dataset(args.clip, root, count)
            videos = sorted((root / "videos").iterdir())
            load = [os.getloadavg()[0]]
            cpu = CpuClock()
            base = [ffmpeg_baseline(videos, size, args.cpus)]  # (frames, seconds)
            base_cpu = [cpu.lap()]
            load.append(os.getloadavg()[0])
            jobs, memory = [], PeakMemory()
            memory.reset()
            for k in range(args.rounds):
                out = Path(tmp) / f"out{k}"  # a new folder: nothing is done before
                start = time.perf_counter()
                report = preprocess(
                    f"csv:{root}", out, config=config, options=opts, log=lambda _: None
                )
                jobs.append((report, time.perf_counter() - start, cpu.lap()))
                load.append(os.getloadavg()[0])
                shutil.rmtree(out)
                base.append(ffmpeg_baseline(videos, size, args.cpus))
                base_cpu.append(cpu.lap())
                load.append(os.getloadavg()[0])
            driver_peak, workers_peak = memory.driver(), memory.workers()
            rounds = []
            for k, (report, job_s, job_cpu) in enumerate(jobs):
                # The baselines right before and right after this round, equally weighted.
                ffmpeg_fps = sum(f / s for f, s in base[k : k + 2]) / 2
                base_cpu_ms = 1000 * sum(base_cpu[k : k + 2]) / sum(f for f, _ in base[k : k + 2])
                job_cpu_ms = 1000 * job_cpu / max(report.frames, 1)
                rounds.append({
                    "ffmpeg_fps": ffmpeg_fps,
                    "job_fps": report.frames / job_s,
                    "job_s": job_s,
                    "ratio": report.frames / job_s / ffmpeg_fps,
                    "ffmpeg_cpu_ms_per_frame": base_cpu_ms,
                    "job_cpu_ms_per_frame": job_cpu_ms,
                    "cpu_ratio": base_cpu_ms / job_cpu_ms,
                })  # fmt: skip
            report = jobs[0][0]
            row = {
                "videos": count,
                "frames": total,
                "rounds": rounds,
                "ratio_median": statistics.median(r["ratio"] for r in rounds),
                "cpu_ratio_median": statistics.median(r["cpu_ratio"] for r in rounds),
                "load_avg_1min": load,
                "windows": report.windows,
                "failed": report.failed,
                "shard_MiB": report.bytes / 2**20,
                "bytes_per_window": report.bytes / max(report.windows, 1),
                "driver_peak_MiB": driver_peak / 2**20,
                "workers_peak_MiB": workers_peak / 2**20,
                "peaks_since_process_start": memory.since_start,
            }
            results.append(row)
            print(f"{count:3d} videos, {total} frames, {report.windows} windows, "
                  f"{row['bytes_per_window'] / 1024:.0f} KiB/window; load "
                  f"{' → '.join(f'{v:.1f}' for v in load)}")  # fmt: skip
            for k, r in enumerate(rounds):
                print(
                    f"    round {k + 1}: ffmpeg {r['ffmpeg_fps']:.0f} frames/s, job "
                    f"{r['job_fps']:.0f} frames/s, ratio {r['ratio']:.2f}; CPU per frame: "
                    f"ffmpeg {r['ffmpeg_cpu_ms_per_frame']:.2f} ms, job "
                    f"{r['job_cpu_ms_per_frame']:.2f} ms (ratio {r['cpu_ratio']:.2f})"
                )
            print(
                f"    median ratio {row['ratio_median']:.2f} (CPU "
                f"{row['cpu_ratio_median']:.2f}); peak RSS driver "
                f"{row['driver_peak_MiB']:.0f} MiB, Ray workers {row['workers_peak_MiB']:.0f} MiB"
                + (" (since each process started: a reset failed)" if memory.since_start else "")
            )
    ray.shutdown()
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores"
    starts = {"ray_init_s": ray_start, "ray_data_first_job_s": data_start}
    print(json.dumps({"machine": machine, **starts, "results": results}, indent=1))


if __name__ == "__main__":
    main()
