"""The demo on the embedded defaults: no GPU, no server, no account.

Today it checks the whole inference path on a real clip: decode frames and audio with
ffmpeg at the ``tiny`` preset's size, run the (untrained, seeded) ``tiny`` AV network with
the sliding-window protocol over every frame, print the map shape and timing, and write a
contact sheet of frames with their maps. Training on the synthetic dataset joins it with
the training workflow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from avrsp.errors import InputError


def _default_clip() -> Path | None:
    shared = Path(os.environ.get("AVRSP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    clip = shared / "data" / "media" / "chaplin.mp4"
    return clip if clip.is_file() else None


def _generated_clip(out: Path) -> Path:
    """A 3 s 320×180 test pattern with a 440 Hz tone, written by ffmpeg."""
    import subprocess

    from preprocessing.ffmpeg import ffmpeg_exe

    path = out / "generated_clip.mp4"
    if not path.is_file():
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
    return path


def contact_sheet(frames: list[np.ndarray], maps: list[np.ndarray], path: Path) -> Path:
    """Frames on the top row, the same frames with their maps overlaid in red below."""
    from PIL import Image

    rows = []
    for frame, smap in zip(frames, maps, strict=True):
        m = (smap - smap.min()) / (smap.max() - smap.min() + 1e-8)
        overlay = frame.astype(np.float32)
        overlay[..., 0] = overlay[..., 0] * (1 - m) + 255 * m
        rows.append(np.concatenate([frame, overlay.astype(np.uint8)], axis=0))
    sheet = np.concatenate(rows, axis=1)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2)).save(path)
    return path


def run_demo(video: Path | None = None, out: Path = Path("runs/demo")) -> dict[str, float]:
    import torch

    from avrsp.config import tiny
    from avrsp.inference import predict_video
    from avrsp.model import build_model
    from preprocessing.ffmpeg import decode_audio, iter_frames, probe
    from workflows.commands.info import run as print_info

    out.mkdir(parents=True, exist_ok=True)
    print_info(None)  # type: ignore[arg-type]
    clip = video or _default_clip() or _generated_clip(out)
    if not clip.is_file():
        raise InputError(f"{clip}: no such video")
    cfg = tiny()
    info = probe(clip)
    print(
        f"\nclip: {clip} ({info.width}×{info.height}, {info.fps:.3g} fps, "
        f"{'with' if info.has_audio else 'no'} audio)"
    )
    waveform = decode_audio(clip, cfg.input.sample_rate)
    torch.manual_seed(0)
    model = build_model(cfg)
    size = (cfg.input.height, cfg.input.width)
    kept_frames: list[np.ndarray] = []
    kept_maps: list[np.ndarray] = []
    frames_seen: list[np.ndarray] = []

    def frames():
        for frame in iter_frames(clip, size=size, fps=info.fps):
            if len(frames_seen) < 1 or len(frames_seen) % 60 == 0:
                kept_frames.append(frame)
            frames_seen.append(frame[:0])  # count only: keeps memory flat
            yield frame

    start = time.perf_counter()
    n = 0
    first_map = None
    for index, smap in predict_video(
        model, frames(), fps=info.fps, waveform=waveform, config=cfg.input, batch_size=8
    ):
        if first_map is None:
            first_map = smap
        if index == 0 or index % 60 == 0:
            kept_maps.append(smap)
        n += 1
        if n % 50 == 0:
            print(f"  {n} frames …", flush=True)
    seconds = time.perf_counter() - start
    assert first_map is not None
    print(
        f"predicted {n} maps of shape {tuple(first_map.shape)} (model input "
        f"{cfg.input.frames}×{size[0]}×{size[1]}) in {seconds:.1f} s "
        f"({n / seconds:.1f} frames/s on CPU, untrained tiny AV model)"
    )
    sheet = contact_sheet(kept_frames[: len(kept_maps)], kept_maps, out / "demo_maps.png")
    print(f"contact sheet: {sheet}")
    return {"frames": float(n), "seconds": seconds}
