"""Frames per second of ``avrsp predict`` end to end, and whether the cost per frame grows
with the length of the video.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/predict.py --preset tiny --threads 1

Makes a 10 s and a 60 s clip (640×360, 25 fps, H.264 + AAC: ``--clip`` looped with
ffmpeg's ``-stream_loop``, or ffmpeg's ``testsrc2`` + a sine tone where the clip is absent),
exports a random-init model of ``--preset`` and times :func:`workflows.predict.predict_one`
on each clip — decoding, the sliding-window model, writing the PNG maps, times.csv,
summary.json and, for the audio-visual model, relevance.csv/png — once without the overlay
video (``maps``) and once with it (``maps+overlay``: a second decode at native size, the
blend, libx264). One warm-up run on a 1 s clip comes first (imports, kernel selection).
Prints a table and, per mode, the 60 s clip's time per frame over the 10 s clip's (1.0:
the cost per frame does not grow with the length). On a GPU:

    python benchmarks/predict.py --device cuda --preset paper --batch-size 16

(bf16 autocast is automatic on CUDA in avrsp.inference.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from avrsp.config import preset
from avrsp.inference import resolve_device
from avrsp.model import build_model
from preprocessing.media import ffmpeg_exe
from workflows.export import export_model, load_model
from workflows.predict import PredictOptions, predict_one

MODES = {"maps": False, "maps+overlay": True}


def make_clip(path: Path, seconds: float, source: Path | None) -> Path:
    """A ``seconds`` long 640×360 25 fps clip with stereo AAC audio at ``path``."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    if source is not None:
        cmd += ["-stream_loop", "-1", "-i", str(source)]
    else:
        cmd += ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"]
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", f"{seconds}", "-vf", "scale=640:360,fps=25", "-c:v", "libx264"]
    cmd += ["-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(path)]
    subprocess.run(cmd, check=True)
    return path


def run_once(loaded: Any, clip: Path, work: Path, options: PredictOptions) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(dir=work))
    start = time.perf_counter()
    summary = predict_one(loaded, clip, out, options)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    frames = int(summary["frames"])
    return {
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 3),
        "ms_per_frame": round(1000 * seconds / frames, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    parser.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="an audio-visual model (relevance files written) or visual-only",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[10.0, 60.0], help="seconds")
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    parser.add_argument("--format", choices=("png", "npz"), default="png")
    parser.add_argument("--clip", type=Path, default=Path("../shared/data/media/chaplin.mp4"))
    parser.add_argument("--model", help="an exported model instead of a random-init preset")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    source = args.clip if args.clip.is_file() else None
    work = Path(tempfile.mkdtemp(prefix="avrsp-bench-predict-"))
    try:
        if args.model:
            loaded = load_model(args.model)
        else:
            cfg = preset(args.preset).with_overrides(**{"model.use_audio": args.audio})
            torch.manual_seed(0)
            loaded = load_model(export_model(work / "model", build_model(cfg), cfg))
        clips = {s: make_clip(work / f"clip-{s:g}s.mp4", s, source) for s in args.lengths}
        warm = make_clip(work / "warm.mp4", 1.0, source)
        options = {
            mode: PredictOptions(
                format=args.format, overlay=overlay, batch_size=args.batch_size, device=device
            )
            for mode, overlay in MODES.items()
            if mode in args.modes
        }
        run_once(loaded, warm, work, next(iter(options.values())))
        results = []
        for length, clip in clips.items():
            for mode, opts in options.items():
                row = {"length_s": length, "mode": mode, **run_once(loaded, clip, work, opts)}
                results.append(row)
                print(f"  {length:g} s, {mode}: {row['frames_per_s']:.2f} frames/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratios = {}
    short, long = min(args.lengths), max(args.lengths)
    for mode in options:
        per = {r["length_s"]: r["ms_per_frame"] for r in results if r["mode"] == mode}
        if short != long:
            ratios[mode] = round(per[long] / per[short], 3)
    cpu = platform.processor() or platform.machine()
    machine = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "preset": args.model or args.preset,
        "audio": args.audio,
        "batch_size": args.batch_size,
        "format": args.format,
        "source": str(source) if source else "testsrc2 + sine",
    }
    print()
    print(f"predict, {machine['preset']} ({'AV' if args.audio else 'V'}), {device}, "
          f"batch {args.batch_size}, {machine['torch_threads']} torch threads")  # fmt: skip
    print("| clip | mode | frames | seconds | frames/s | ms/frame |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['length_s']:g} s | {r['mode']} | {r['frames']} | {r['seconds']:.1f} | "
              f"{r['frames_per_s']:.2f} | {r['ms_per_frame']:.1f} |")  # fmt: skip
    for mode, ratio in ratios.items():
        print(f"{mode}: time per frame, {long:g} s clip / {short:g} s clip = {ratio:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "results": results, "ratios": ratios}, indent=1)
        )


if __name__ == "__main__":
    main()
