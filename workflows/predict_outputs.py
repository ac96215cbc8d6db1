"""What ``avrsp predict`` writes for one video (docs/PREDICT.md): the maps (PNG sequence or
one ``.npz``), the overlay video (a heat map over the native frames, piped to ffmpeg with
the original sound), and an AV model's relevance table and plot. Each writer stages its
files in a folder that :mod:`workflows.predict` moves into place at the end.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import subprocess
import tempfile
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from avrsp.errors import AVRSPError, cause_in_text, storage_error
from avrsp.io import naming

#: Largest blend weight of the heat map over the frame (at the map's maximum).
OVERLAY_ALPHA = 0.6
OVERLAY_COLORMAP = "jet"


def map_to_uint8(saliency: np.ndarray) -> np.ndarray:
    """A map scaled to its own maximum, as 8 bits (an all-zero map stays zero)."""
    top = float(saliency.max()) if saliency.size else 0.0
    if top <= 0.0:
        return np.zeros(saliency.shape, np.uint8)
    return np.clip(saliency * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


class PngMaps:
    """``maps/000000.png …``: grey 8-bit, each scaled to its own maximum."""

    def __init__(self, staging: Path) -> None:
        self.folder = staging / "maps"
        self.folder.mkdir()

    def add(self, index: int, saliency: np.ndarray) -> None:
        from PIL import Image

        path = self.folder / f"{index:06d}.png"
        with naming(path):
            Image.fromarray(map_to_uint8(saliency), mode="L").save(path, compress_level=3)

    def close(self, times: np.ndarray, fps: float) -> None:
        del times, fps


class NpzMaps:
    """``maps.npz`` (``maps`` float32 [N, h, w], ``times`` float64 [N], ``fps``), written
    without holding the maps: they go to a raw file, copied into the archive at the end
    (the count is known only then)."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.raw_path = staging / ".maps.raw"
        self.raw: IO[bytes] = open(self.raw_path, "wb")  # noqa: SIM115 - closed in close()
        self.shape: tuple[int, int] | None = None
        self.count = 0

    def add(self, index: int, saliency: np.ndarray) -> None:
        del index
        self.shape = self.shape or (int(saliency.shape[0]), int(saliency.shape[1]))
        with naming(self.raw_path):
            self.raw.write(np.ascontiguousarray(saliency, dtype="<f4").tobytes())
        self.count += 1

    def close(self, times: np.ndarray, fps: float) -> None:
        with naming(self.raw_path):
            self.raw.close()
        h, w = self.shape or (0, 0)
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.count, h, w)}
        path = self.staging / "maps.npz"
        with (
            naming(path),
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
        ):
            with archive.open("maps.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array_header_2_0(out, header)
                with open(self.raw_path, "rb") as raw:
                    shutil.copyfileobj(raw, out, 1 << 22)
            for name, value in (("times", times), ("fps", np.float64(fps))):
                with archive.open(f"{name}.npy", "w") as out:
                    np.lib.format.write_array(out, np.asarray(value))
        self.raw_path.unlink()

    def abort(self) -> None:
        """Close the raw file, whatever its last flush meets (a full disk: the error being
        reported already says so), so that the staging folder can be removed."""
        with contextlib.suppress(OSError):
            self.raw.close()
        self.raw_path.unlink(missing_ok=True)


def _colormap_lut(name: str = OVERLAY_COLORMAP) -> np.ndarray:
    """``uint8 [256, 3]``: matplotlib's colormap ``name`` sampled at 256 levels."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def blend(frame: np.ndarray, saliency: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The heat map of ``saliency`` (float [H, W], the frame's size) over ``frame`` (uint8
    [H, W, 3]): colour by the map scaled to its maximum, weight up to
    :data:`OVERLAY_ALPHA` where the map is highest, the frame untouched where it is 0."""
    level = map_to_uint8(saliency)
    alpha = level.astype(np.float32)[..., None] * (OVERLAY_ALPHA / 255.0)
    mixed = frame.astype(np.float32) * (1.0 - alpha) + lut[level].astype(np.float32) * alpha
    return (mixed + 0.5).astype(np.uint8)


def _resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, pixel centres aligned (as :func:`avrsp.inference.predict_video` resizes)."""
    if saliency.shape == size:
        return saliency
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(saliency))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _rate(fps: float) -> str:
    """A frame rate for ffmpeg, exact where it is a ratio (29.97 → 30000/1001)."""
    r = Fraction(fps).limit_denominator(1001)
    return f"{r.numerator}/{r.denominator}" if abs(float(r) - fps) < 1e-6 else f"{fps:.10g}"


class Overlay:
    """``overlay.mp4``: an ffmpeg process fed raw RGB frames on its stdin; H.264 (libx264,
    yuv420p, padded to even sides) and the source's audio streams as AAC, cut to the
    maps' span."""

    def __init__(
        self,
        staging: Path,
        source: Path,
        native: tuple[int, int],
        fps: float,
        audio: bool,
        start_s: float,
        duration_s: float,
    ) -> None:
        from preprocessing.media import ffmpeg_exe

        self.path = staging / "overlay.mp4"
        self.height, self.width = native
        self.lut = _colormap_lut()
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}"]
        cmd += ["-framerate", _rate(fps), "-i", "pipe:0"]
        if audio:
            if start_s > 1e-3:  # the maps start at the first video frame
                cmd += ["-ss", f"{start_s:.6f}"]
            cmd += ["-t", f"{duration_s:.6f}", "-i", str(source), "-map", "0:v:0", "-map", "1:a?"]
            cmd += ["-c:a", "aac", "-b:a", "160k"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast"]
        cmd += ["-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.path)]
        # stderr to a file: a pipe nobody reads could fill up and stall ffmpeg.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close() / abort()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self.log)
        self.count = 0

    def add(self, frame: np.ndarray, saliency: np.ndarray) -> None:
        heat = _resize_map(saliency, (self.height, self.width))
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(blend(frame, heat, self.lut).tobytes())
        except BrokenPipeError:
            self._fail()
        self.count += 1

    def _errors(self) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip().splitlines()
        return " / ".join(text[-3:]) or f"exit status {self.proc.returncode}"

    def _fail(self) -> None:
        self.proc.wait()
        errors = self._errors()
        if (code := cause_in_text(errors)) is not None:  # a full disk: one line, the file
            raise storage_error(OSError(code, os.strerror(code), str(self.path))) or AVRSPError()
        raise AVRSPError(f"{self.path.name}: ffmpeg stopped writing the overlay: {errors}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        if self.proc.wait() != 0:
            self._fail()
        self.log.close()

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


class RelevanceLog:
    """Each window's :class:`~avrsp.inference.Relevance`, then ``relevance.csv`` and
    ``relevance.png``."""

    def __init__(self) -> None:
        self.ret_a: list[np.ndarray] = []
        self.ret_v: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.share: list[float] = []
        self.gates: list[dict[int, float]] = []

    def add(self, rel: Any) -> None:
        self.ret_a.append(np.asarray(rel.ret_a, np.float64))
        self.ret_v.append(np.asarray(rel.ret_v, np.float64))
        self.weights.append(np.asarray(rel.head_weights, np.float64))
        self.share.append(float(rel.audio_share))
        self.gates.append(dict(rel.gates))

    def mean_audio_share(self) -> float | None:
        finite = [v for v in self.share if math.isfinite(v)]
        return float(np.mean(finite)) if finite else None

    def write(self, staging: Path, times: np.ndarray, window: int, name: str) -> None:
        ret_a, ret_v, weights = (np.stack(v) for v in (self.ret_a, self.ret_v, self.weights))
        blocks, heads = ret_a.shape[1:]
        levels = sorted({lv for g in self.gates for lv in g})
        pairs = [(b, h) for b in range(blocks) for h in range(heads)]
        columns = ["frame", "time_s", "audio_share"]
        for key in ("ret_a", "ret_v", "head_weight"):
            columns += [f"{key}_b{b}_h{h}" for b, h in pairs]
        columns += [f"gate_l{lv}" for lv in levels]
        with (
            naming(staging / "relevance.csv"),
            open(staging / "relevance.csv", "w", newline="") as f,
        ):
            out = csv.writer(f)
            out.writerow(columns)
            for i in range(len(self.share)):
                row: list[object] = [i, f"{times[i]:.6f}", _num(self.share[i])]
                for values in (ret_a, ret_v, weights):
                    row += [_num(values[i, b, h]) for b, h in pairs]
                row += [_num(self.gates[i].get(lv, float("nan"))) for lv in levels]
                out.writerow(row)
        with naming(staging / "relevance.png"):
            _relevance_figure(staging / "relevance.png", name, times, ret_a, ret_v, self, window)


def _num(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.6g}"


TITLES = {
    "ret_a": "mean |Ret_A| per head (eq. 2: visual queries × audio keys)",
    "ret_v": "mean |Ret_V| per head (eq. 3: audio queries × visual keys)",
    "share": "audio share of the fused features (eq. 4) per window — 0: visual only",
    "gates": "mean MRG gate per level (eq. 14)",
}


def _relevance_figure(
    path: Path,
    name: str,
    times: np.ndarray,
    ret_a: np.ndarray,
    ret_v: np.ndarray,
    log: RelevanceLog,
    window: int,
) -> None:
    """Paper Fig. 6 over time: mean |Ret_A| and |Ret_V| per block and head as heat rows
    (brighter = more relevance), the audio share per window, the MRG gates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    blocks, heads = ret_a.shape[1:]
    levels = sorted({lv for g in log.gates for lv in g})
    share = np.array(log.share)
    panels: list[str] = []
    if blocks:
        panels += ["ret_a", "ret_v"]
    if np.isfinite(share).any():
        panels.append("share")
    if levels:
        panels.append("gates")
    fig = Figure(figsize=(10, 1.2 + 1.9 * max(len(panels), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(panels), 1), 1, sharex=True, squeeze=False)[:, 0]
    step = float(times[1] - times[0]) if len(times) > 1 else 1.0
    extent = (times[0] - step / 2, times[-1] + step / 2)
    labels = [
        f"b{b} h{h}" if blocks > 1 else f"head {h}" for b in range(blocks) for h in range(heads)
    ]
    for ax, panel in zip(axes, panels, strict=False):
        if panel in ("ret_a", "ret_v"):
            values = (ret_a if panel == "ret_a" else ret_v).reshape(len(times), -1).T
            image = ax.imshow(
                values,
                aspect="auto",
                origin="lower",
                cmap="magma",
                interpolation="nearest",
                extent=(*extent, -0.5, values.shape[0] - 0.5),
            )
            ax.set_yticks(range(values.shape[0]), labels)
            ax.set_title(TITLES[panel], fontsize=9, loc="left")
            fig.colorbar(image, ax=ax, pad=0.01)
        elif panel == "share":
            ax.plot(times, share, color="tab:red", lw=1.2)
            ax.set_ylim(0, max(0.05, float(np.nanmax(share)) * 1.15))
            ax.set_ylabel("audio share")
            ax.set_title(TITLES[panel], fontsize=9, loc="left")
        else:
            for lv in levels:
                ax.plot(times, [g.get(lv, np.nan) for g in log.gates], lw=1, label=f"level {lv}")
            ax.set_ylim(0, 1)
            ax.set_ylabel("gate")
            ax.set_title(TITLES[panel], fontsize=9, loc="left")
            ax.legend(fontsize=7, loc="upper right", ncols=len(levels))
        reversed_last = min(window - 1, len(times)) - 1  # maps 0 … T−2: reversed windows
        if reversed_last >= 0:
            ax.axvspan(extent[0], times[reversed_last] + step / 2, color="grey", alpha=0.12, lw=0)
    axes[-1].set_xlabel("time in the video (s)")
    fig.suptitle(f"{name}: relevance per window (shaded: reversed first windows)", fontsize=10)
    fig.savefig(path, dpi=100)
