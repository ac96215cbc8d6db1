"""One video through a model, by the published protocol (docs/EVALUATION.md). No Ray here.

Both ``avrsp evaluate`` and ``avrsp predict`` come through this module, one video at a
time (the Ray Data actor pool of :mod:`workflows.pool` runs it per video):

- :func:`open_video` probes a file (or a dataset's :class:`VideoRecord`) and decodes its
  soundtrack; its frames are read lazily at the model's size, at a constant rate (a
  variable-frame-rate file is resampled to its average rate), each with the time it
  belongs to (:attr:`OpenedVideo.times`).
- :func:`soundtrack` picks what the model hears (``--audio``): the ``real`` soundtrack,
  ``none`` (silence), ``shuffled`` (another video's soundtrack, cut or looped to this
  video's length) or ``noise`` (white noise at the real soundtrack's loudness).
- :func:`frame_maps` runs :func:`avrsp.inference.predict_video`: the window of ``T``
  frames at step 1, the reversed first windows (audio reversed too), maps resized to the
  size asked for.
- :func:`score_video` scores every frame that has ground truth, at the ground truth's
  native resolution, with the seven metrics; :func:`centre_bias` is the baseline that
  needs no model.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avrsp.config import InputConfig
from avrsp.errors import InputError
from avrsp.inference import Relevance, predict_video
from avrsp.metrics import all_metrics, points_to_fixation_map
from avrsp.tables import FrameScores
from preprocessing.fixations import dhf1k_sigma
from preprocessing.media import iter_frames
from preprocessing.records import VideoRecord
from preprocessing.segments import Media, frame_target, open_media

AUDIO_MODES = ("real", "none", "shuffled", "noise")
#: How maps are scored (docs/EVALUATION.md, "Protocols"): as ViNet's or STAViS' MATLAB
#: scripts do (:mod:`avrsp.metrics.protocols`), or ``native`` (float maps, no storage).
PROTOCOLS = ("vinet", "stavis", "native")
#: The metrics each protocol reports (names as :func:`avrsp.metrics.all_metrics` gives).
PROTOCOL_METRICS = {
    "native": ("cc", "nss", "sim", "kld", "auc_judd", "auc_borji"),
    "vinet": ("cc", "sim", "nss", "auc_judd", "auc_shuffled"),
    "stavis": ("cc", "sim", "nss", "auc_judd", "auc_shuffled"),
}
_FROM_SCRIPTS = {"auc_j": "auc_judd", "sauc": "auc_shuffled"}
#: Frames scored per call of the metrics (bounds memory at native resolution).
SCORE_CHUNK = 16


@dataclass
class OpenedVideo:
    """A video ready to be read: its record, rate, sizes, soundtrack and notes."""

    record: VideoRecord
    media: Media
    sample_rate: int

    @property
    def name(self) -> str:
        return self.record.video_id

    @property
    def fps(self) -> float:
        return self.media.fps

    @property
    def native_size(self) -> tuple[int, int]:
        return self.media.native_size

    @property
    def has_audio(self) -> bool:
        return self.media.waveform.size > 0

    @property
    def notes(self) -> list[str]:
        return self.media.notes

    @property
    def expected_frames(self) -> int:
        """Frames the probe expects (decoding may give up to two fewer)."""
        info = self.media.info
        if self.media.resample_fps is not None:
            return info.cfr_frame_count(self.media.resample_fps)
        return int(info.frame_count or 0)

    def frames(self, size: tuple[int, int]) -> Iterator[np.ndarray]:
        """The frames as ``uint8 [H, W, 3]`` at ``size`` = (H, W), in order, at the constant
        rate :attr:`fps`."""
        rec = self.record
        fps = self.fps if rec.is_frame_folder else self.media.resample_fps
        return iter_frames(rec.frames, size, fps=fps, info=self.media.info)

    def times(self, count: int) -> np.ndarray:
        """Time in seconds of frames ``0 … count−1`` in the source file (frame ``k`` at
        ``start + k / fps``, ``start`` being the first frame's time)."""
        return self.media.info.start_s + np.arange(count, dtype=np.float64) / self.fps


def open_video(source: str | Path | VideoRecord, sample_rate: int) -> OpenedVideo:
    """Probe a video file (or a dataset record) and decode its audio at ``sample_rate``.

    Raises :class:`InputError` naming the file when it is missing or cannot be read.
    """
    if isinstance(source, VideoRecord):
        record = source
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: no such video file")
        record = VideoRecord(
            dataset="video",
            video_id=path.stem,
            split="test",
            frames=str(path),
            audio=str(path),
        )
    return OpenedVideo(record, open_media(record, sample_rate), sample_rate)


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def soundtrack(
    video: OpenedVideo,
    mode: str,
    *,
    donor: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """What the model hears for ``video`` under ``--audio MODE``, and a note saying it.

    ``real``: its own soundtrack (empty when it has none: silent buffers). ``none``: silence.
    ``shuffled``: ``donor`` (another video's soundtrack) looped or cut to this video's
    length. ``noise``: Gaussian white noise with the real soundtrack's RMS (or 0.1 for a
    silent video), seeded by ``seed`` and the video's name.
    """
    if mode not in AUDIO_MODES:
        raise InputError(f"--audio must be one of {', '.join(AUDIO_MODES)}, got {mode!r}")
    real = video.media.waveform
    n = max(real.size, round(video.expected_frames / video.fps * video.sample_rate))
    if mode == "real":
        return real, "real soundtrack" if real.size else "no audio track: silent buffers"
    if mode == "none":
        return np.zeros(0, np.float32), "audio replaced by silence"
    if mode == "shuffled":
        if donor is None or donor.size == 0:
            raise InputError(f"{video.name}: --audio shuffled needs another video with audio")
        reps = math.ceil(n / donor.size)
        return np.tile(donor, reps)[:n].astype(np.float32), "another video's soundtrack"
    rms = float(np.sqrt(np.mean(real.astype(np.float64) ** 2))) if real.size else 0.1
    rng = np.random.default_rng(_stable_seed(seed, video.record.dataset, video.name))
    noise = np.clip(rng.standard_normal(n) * rms, -1.0, 1.0).astype(np.float32)
    return noise, f"white noise at the soundtrack's RMS ({rms:.3g})"


def frame_maps(
    model: Any,
    video: OpenedVideo,
    waveform: np.ndarray,
    config: InputConfig,
    *,
    out_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    relevance: bool = False,
) -> Iterator[tuple[int, np.ndarray, Relevance | None]]:
    """``(frame, map, relevance)`` for every frame of ``video``, in order (maps float32 at
    ``out_size``, default the model's; ``relevance`` None unless asked for)."""
    frames = video.frames((config.height, config.width))
    stream = predict_video(
        model,
        frames,
        fps=video.fps,
        waveform=waveform,
        config=config,
        batch_size=batch_size,
        device=device,
        out_size=out_size,
        relevance=relevance,
    )
    for item in stream:
        if relevance:
            yield item  # type: ignore[misc]
        else:
            yield item[0], item[1], None


# --------------------------------------------------------------------------- scoring


def centre_bias_map(size: tuple[int, int]) -> np.ndarray:
    """The centre-bias baseline at ``size`` = (H, W): a Gaussian at the frame's centre with
    σ a quarter of each side (the same map for every frame; scale does not matter to the
    metrics)."""
    h, w = size
    ys = (np.arange(h) + 0.5 - h / 2) / (0.25 * h)
    xs = (np.arange(w) + 0.5 - w / 2) / (0.25 * w)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


@dataclass
class VideoResult:
    """What scoring one video gave: per-frame scores, relevance, counts and notes."""

    dataset: str
    video: str
    fold: int | None
    frames: list[FrameScores] = field(default_factory=list)
    num_frames: int = 0
    without_target: int = 0
    audio_share: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, video: OpenedVideo, group: str | None = None) -> VideoResult:
        """An empty result for ``video``, labelled ``group`` (default its dataset)."""
        rec = video.record
        return cls(
            dataset=group or rec.dataset,
            video=rec.video_id,
            fold=int(rec.fold) if rec.split == "cv" else None,
            notes=list(video.notes),
        )

    def mean_audio_share(self) -> float:
        values = [v for v in self.audio_share if math.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")


class _Scorer:
    """Collects (prediction, ground truth) pairs of one video and scores them: in chunks
    (``native``), or frame by frame as the benchmarks' scripts do (``vinet``, ``stavis``:
    :func:`avrsp.metrics.protocols.score_frame`, the 8-bit map a saved image holds, the
    "other" map of shuffled AUC from the fixations of all the video's frames)."""

    def __init__(
        self,
        video: OpenedVideo,
        result: VideoResult,
        seed: int,
        sigma: float | None,
        protocol: str = "native",
    ):
        rec = video.record
        if protocol not in PROTOCOLS:
            raise InputError(f"--protocol: choose from {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.video, self.result, self.seed, self.protocol = video, result, seed, protocol
        self.loader = rec.fixations.open(fps=video.fps, native_size=video.native_size)
        self.use_maps = rec.maps_pattern is not None
        if not self.use_maps and not self.loader.available:
            raise InputError(f"{rec.dataset}/{rec.video_id}: no fixations and no maps to score")
        self.sigma = sigma or dhf1k_sigma(video.native_size[1])
        self.pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.scored = 0
        self.union = self._fixation_union() if protocol != "native" else None

    def _fixation_union(self) -> np.ndarray:
        """Every fixated pixel of the video (``createShuffmap1``: the union of all its
        annotated frames' fixation maps); read once, before the frames are scored."""
        from preprocessing.fixations import points_in_frame

        size = self.video.native_size
        union = np.zeros(size, bool)
        for frame in range(self.video.expected_frames):
            points, _ = points_in_frame(self.loader(frame), size)
            if len(points):
                union |= points_to_fixation_map(np.asarray(points, np.float32), size) > 0
        return union

    def add(self, frame: int, pred: np.ndarray) -> None:
        size = self.video.native_size
        made = frame_target(
            self.video.record,
            self.loader,
            frame,
            size,
            size,
            sigma=self.sigma,
            use_maps=self.use_maps,
            exact_size=True,
        )
        if made.saliency is None:
            self.result.without_target += 1
            return
        fix = points_to_fixation_map(made.points, size)
        if not fix.any():
            self.result.without_target += 1
            return
        if self.protocol != "native":
            self._score_as_scripts(frame, pred, made.saliency, fix)
            return
        self.pending.append((frame, pred, made.saliency, fix))
        if len(self.pending) >= SCORE_CHUNK:
            self.flush()

    def _score_as_scripts(
        self, frame: int, pred: np.ndarray, gt: np.ndarray, fix: np.ndarray
    ) -> None:
        """One frame as ViNet's or STAViS' scripts score it: the map as its saved image
        holds it (a float map is stored as ``avrsp predict`` stores it: ``to_8bit``)."""
        from avrsp.metrics import protocols

        assert self.union is not None
        stored = pred if pred.dtype in (np.uint8, np.uint16) else protocols.to_8bit(pred)
        other = self.union & ~(fix > 0)
        scores = protocols.score_frame(
            self.protocol, stored, gt, fix, other, seed=protocols.frame_seed(self.seed, frame)
        )
        rec = self.video.record
        self.result.frames.append(
            FrameScores(
                dataset=self.result.dataset,
                video=rec.video_id,
                frame=int(frame),
                scores={_FROM_SCRIPTS.get(k, k): float(v) for k, v in scores.items()},
                fold=int(rec.fold) if rec.split == "cv" else None,
            )
        )
        self.scored += 1

    def flush(self) -> None:
        if not self.pending:
            return
        frames, preds, gts, fixes = zip(*self.pending, strict=True)
        scores = all_metrics(
            np.stack(preds),
            np.stack(gts),
            np.stack(fixes),
            seed=self.seed,
            index_offset=self.scored,
        )
        rec = self.video.record
        fold = int(rec.fold) if rec.split == "cv" else None
        for i, frame in enumerate(frames):
            self.result.frames.append(
                FrameScores(
                    dataset=self.result.dataset,
                    video=rec.video_id,
                    frame=int(frame),
                    scores={k: float(v[i]) for k, v in scores.items()},
                    fold=fold,
                )
            )
        self.scored += len(frames)
        self.pending.clear()

    def finish(self, num_frames: int) -> None:
        self.flush()
        self.result.num_frames = num_frames
        self.loader.check(num_frames)  # gaze of another length is an InputError
        if not self.result.frames:
            raise InputError(
                f"{self.video.record.frames}: none of its {num_frames} frames has ground truth "
                "to score"
            )


def score_video(
    model: Any,
    video: OpenedVideo,
    config: InputConfig,
    *,
    group: str | None = None,
    audio: str = "real",
    donor: np.ndarray | None = None,
    seed: int = 0,
    sigma_px: float | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    protocol: str = "native",
) -> VideoResult:
    """Score every frame of ``video`` that has ground truth (module docstring).

    ``group`` labels the video in the tables (default its dataset). ``audio``/``donor``: see
    :func:`soundtrack`. ``model`` None scores the :func:`centre_bias_map` baseline.
    The random metrics draw per scored frame (stream = ``seed``, frame counter).
    ``protocol``: :data:`PROTOCOLS` (``_Scorer``).
    """
    result = VideoResult.of(video, group)
    scorer = _Scorer(video, result, seed, sigma_px, protocol)
    if model is None:
        baseline = centre_bias_map(video.native_size)
        count = video.expected_frames
        for frame in range(count):
            scorer.add(frame, baseline)
        scorer.finish(count)
        return result
    waveform, note = soundtrack(video, audio, donor=donor, seed=seed)
    if audio != "real" or not video.has_audio:
        result.notes.append(note)
    uses_audio = bool(getattr(model, "uses_audio", True))
    count = 0
    for frame, pred, rel in frame_maps(
        model,
        video,
        waveform,
        config,
        out_size=video.native_size,
        batch_size=batch_size,
        device=device,
        relevance=uses_audio,
    ):
        scorer.add(frame, pred)
        if rel is not None:
            result.audio_share.append(rel.audio_share)
        count = frame + 1
    scorer.finish(count)
    return result


def score_maps(
    video: OpenedVideo,
    maps: dict[int, Any],
    read: Any,
    *,
    group: str | None = None,
    seed: int = 0,
    sigma_px: float | None = None,
    protocol: str = "native",
) -> VideoResult:
    """Score saved maps of ``video`` (``avrsp evaluate --predictions``): ``maps`` is
    ``{frame index: what read() turns into a map}``; each map is scored against that
    frame's ground truth as a model's would be (resized to the native size by MATLAB's
    ``imresize``, under ``protocol``). Frames without a map are not scored (the caller
    reports them)."""
    result = VideoResult.of(video, group)
    scorer = _Scorer(video, result, seed, sigma_px, protocol)
    for frame in sorted(maps):
        scorer.add(frame, read(maps[frame]))
    scorer.finish(video.expected_frames)
    return result
