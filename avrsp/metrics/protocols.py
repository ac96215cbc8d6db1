"""Scoring a frame exactly as the audio-visual benchmarks' own MATLAB scripts do.

Published audio-visual numbers come from two sets of evaluation scripts: ViNet's
(``eval_diem.m`` with ``createShuffmap1.m`` and the MIT benchmark's metric files in
``code_for_Metrics/``) and STAViS' (``eval_code/eval_<dataset>.m``, ``postprocessMap.m``,
``normalizeImage1.m``, ``createShuffmap1.m``, ``compute_all_<dataset>.m``; STAViS does not
ship the metric files, its scripts expect the same MIT ``code_forMetrics``). This module
states what those scripts compute, frame by frame, in our own code, reusing
:mod:`avrsp.metrics` for the metrics (``docs/METRICS.md``, "The benchmarks' own scripts").

============  ==============================================  ==============================
step          ``vinet`` (ViNet ``eval_diem.m``)               ``stavis`` (STAViS ``eval_*.m``)
============  ==============================================  ==============================
prediction    8-bit image read, ``im2double`` (/255), first    same
              channel
post-process  none                                            ``postprocessMap(p, 2)``:
                                                              ×255, clip to [0, 255],
                                                              /max·255, min-max to [0, 1]
                                                              (``normalizeImage1``; a constant
                                                              map becomes 0.5), Gaussian σ = 2
                                                              px, 13×13 (``fspecial``),
                                                              ``imfilter(…, 'symmetric',
                                                              'conv')``, at the prediction's
                                                              own size
resize        ``imresize(p, size(gt))``: bicubic, anti-        same, after post-processing
              aliased when shrinking, in double (no clip)
ground truth  continuous map, 8-bit image, ``im2double``;      same
              fixations: ``fixMap_*.mat`` ``eyeMap``, binary
"other" map   union of the fixation maps of **all** the        same
              video's annotated frames, minus the pixels
              fixated (``== 1``) in this frame; no randomness
metrics       ``CC``, ``similarity``, ``NSS``, ``AUC_Judd``   same
              (jitter on), ``AUC_shuffled`` (100 splits,
              step 0.1) on the resized map
means         NaN frames dropped per metric; mean per video;   NaN dropped per metric; mean
              then mean over videos (``per_frame='false'``)    per video, over the fold's
              or over all frames pooled                        videos, then over folds
============  ==============================================  ==============================

Where the metric files and :mod:`avrsp.metrics` (the MIT benchmark's definitions) differ:
nowhere for these five metrics at equal sizes (the scripts resize before calling them, so
the files' own ``imresize`` is the identity). ``im2double`` and ``double`` differ by the
factor 255, which changes none of the five, except the size of AUC-Judd's tie-breaking
jitter relative to the map (1e-7 of a [0, 1] map here).

Random draws: ``AUC_Judd.m`` jitters with ``rand`` and ``AUC_shuffled.m`` draws its 100
splits with ``randperm``, from MATLAB's global stream, which cannot be reproduced.
:func:`score_frame` uses :func:`avrsp.metrics.auc_judd` / :func:`auc_shuffled` with an
integer ``seed`` (their streams: same distribution as MATLAB's draws, ``docs/METRICS.md``);
:func:`score_video` gives frame ``i`` the seed :func:`frame_seed` ``(seed, i)``. So AUC-Judd
and shuffled AUC agree with the scripts in distribution; the spread over seeds of the
scripts' own shuffled AUC is measured in ``tests/data/protocols/reference.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from avrsp.errors import InputError
from avrsp.metrics import fast
from avrsp.metrics.plain import imresize

#: The protocols :func:`score_frame` knows.
PROTOCOLS = ("vinet", "stavis")
#: The metrics each protocol reports, in the scripts' order.
PROTOCOL_METRICS = ("cc", "sim", "nss", "auc_j", "sauc")
#: ``postprocessMap(I_pred, 2)`` in STAViS' scripts.
STAVIS_SIGMA = 2.0
#: How :func:`to_8bit` may store a map, after the programs that wrote the published maps.
EIGHT_BIT_RULES = ("avrsp", "vinet", "stavis")


def to_8bit(saliency: Any, how: str = "avrsp") -> np.ndarray:
    """A float map ``[h, w]`` stored as an 8-bit grey image (uint8), as a program saves it.

    * ``"avrsp"`` (``avrsp predict``'s PNG maps, ``workflows/predict_outputs.py``):
      divided by its own maximum, ×255, rounded half up (``+ 0.5``, truncate), clipped to
      [0, 255]; an all-zero (or all-negative) map stays 0; lossless PNG.
    * ``"vinet"`` (ViNet's ``img_save`` with ``normalize=True``): min-max normalised to
      [0, 1], then ``round(x·255 + 0.5)`` clipped to [0, 255] (so about half a level above
      plain rounding); a constant map becomes 0; saved as JPEG quality 100 (the loss is
      not modelled here).
    * ``"stavis"`` (STAViS' ``normalize_data``): min-max to [0, 255], truncated (not
      rounded); a constant map becomes 0; saved as JPEG (not modelled).

    Every protocol metric is invariant to an affine change of the map, so the rules differ
    only by quantisation (and JPEG loss, where the scripts read ``*.jpg``).
    """
    x = np.asarray(saliency, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"saliency: expected a [h, w] map, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("saliency: contains NaN or inf values")
    if how == "avrsp":
        top = float(x.max()) if x.size else 0.0
        if top <= 0:
            return np.zeros(x.shape, np.uint8)
        return np.clip(x * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    if how in ("vinet", "stavis"):
        lo, hi = float(x.min()), float(x.max())
        if hi == lo:
            return np.zeros(x.shape, np.uint8)
        if how == "vinet":  # torchvision normalises in place: (x - min) / (max - min)
            unit = (x - lo) / (hi - lo)
            return np.clip(np.round(unit * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return np.clip((x - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    raise InputError(f"how: expected one of {', '.join(EIGHT_BIT_RULES)}, got {how!r}")


def im2double(image: Any) -> np.ndarray:
    """MATLAB's ``im2double`` then ``(:, :, 1)``: uint8 / 255 (uint16 / 65535), float as is.

    A ``[h, w, c]`` image keeps its first channel (the scripts' ``I_pred(:, :, 1)``).
    """
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2:
        raise InputError(f"image: expected [h, w] or [h, w, c], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    if a.dtype == bool:
        return a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"image: expected uint8, uint16, bool or float, got {a.dtype}")
    return a.astype(np.float64)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: ``[size, size]``, sums to 1.

    ``exp(−(x² + y²) / (2σ²))`` on the integer grid centred on the middle, values below
    ``eps · max`` set to 0, divided by the sum.
    """
    half = (size - 1) / 2.0
    r = np.arange(size, dtype=np.float64) - half
    h = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def imfilter_symmetric(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``imfilter(double(image), kernel, 'symmetric', 'conv')``: same size, mirrored borders.

    MATLAB's ``'symmetric'`` padding repeats the border pixel (``… b a | a b …``), which
    is scipy's ``mode="reflect"``; ``'conv'`` flips the kernel, as ``ndimage.convolve``.
    A separable kernel (``fspecial('gaussian')`` is, unless its tails were cut to 0) is
    applied as a column then a row filter: the same sums in another order (~1e-16), 6×
    faster for STAViS' 13×13 kernel.
    """
    x = np.asarray(image, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    r, c = k.shape[0] // 2, k.shape[1] // 2
    column, row = k[:, c], k[r, :] / k[r, c] if k[r, c] else k[r, :]
    if k[r, c] and np.allclose(np.outer(column, row), k, rtol=1e-12, atol=0):
        x = ndimage.convolve1d(x, column, axis=0, mode="reflect")
        return ndimage.convolve1d(x, row, axis=1, mode="reflect")
    return ndimage.convolve(x, k, mode="reflect")


def normalize_image(image: np.ndarray) -> np.ndarray:
    """STAViS' ``normalizeImage1`` (range [0, 1]): min-max; a constant map becomes 0.5."""
    mx, mn = float(image.max()), float(image.min())
    if mx == mn:
        return image - mx + 0.5
    return (image - mn) / (mx - mn)


def postprocess_stavis(map8: Any, sigma: float = STAVIS_SIGMA) -> np.ndarray:
    """STAViS' ``postprocessMap(im2double(pred), sigma)``, float64 ``[h, w]``.

    ``map8`` is the prediction as read from its image (uint8, or a float map already in
    [0, 1]; ``im2double`` and the first channel are applied first). Then ×255, clipped to
    [0, 255], divided by its maximum and ×255 (an all-zero map becomes NaN, 0/0, as in
    MATLAB), :func:`normalize_image`, and the Gaussian of std ``sigma`` on a
    ``2⌈3σ⌉ + 1`` square grid (:func:`gaussian_kernel`) applied with
    :func:`imfilter_symmetric`, at the prediction's own size (before any resizing).
    """
    x = im2double(map8) * 255.0
    x = np.clip(x, 0.0, 255.0)
    top = float(x.max())
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / top * 255.0
    if not np.isfinite(x).all():
        return np.full(x.shape, math.nan)
    x = normalize_image(x)
    return imfilter_symmetric(x, gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma))


def prepare(protocol: str, pred8: Any, shape: tuple[int, int]) -> np.ndarray:
    """The saliency map the scripts score: ``[H, W]`` float64 at the ground truth's size.

    ``im2double`` and the first channel; for ``"stavis"`` :func:`postprocess_stavis`; then
    MATLAB's ``imresize(…, size(gt))`` (:func:`avrsp.metrics.plain.imresize`: bicubic,
    antialiased when shrinking, on doubles, so no rounding or clipping).
    """
    _check_protocol(protocol)
    pred = postprocess_stavis(pred8) if protocol == "stavis" else im2double(pred8)
    if not np.isfinite(pred).all():
        return np.full(tuple(shape), math.nan)
    return imresize(pred, tuple(int(s) for s in shape))


def shuffle_map(fixation_maps: Any, index: int) -> np.ndarray:
    """The "other" map of frame ``index`` (bool ``[H, W]``), as ``createShuffmap1`` + eval.

    The union (sum ``> 0``) of the fixation maps of every annotated frame of the video
    (``fixation_maps [N, H, W]``, the current frame included), then the pixels where frame
    ``index``'s map equals 1 removed (the scripts' ``shufMap1(eyeMap == 1) = 0``; with
    binary maps: its fixated pixels). Deterministic: no frame is drawn at random (unlike
    the DHF1K-style ``eval1.m`` / ``evaluationFunc.m``, which union 10 frames drawn with
    ``randsample`` from the whole dataset).
    """
    maps = np.asarray(fixation_maps)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise InputError(f"fixation_maps: expected [N, H, W] with N ≥ 1, got {maps.shape}")
    if not -maps.shape[0] <= index < maps.shape[0]:
        raise InputError(f"index: {index} is outside the video's {maps.shape[0]} frames")
    union = maps.astype(np.float64).sum(axis=0) > 0
    union[maps[index] == 1] = False
    return union


def frame_seed(seed: int, frame: int) -> int:
    """The seed :func:`score_video` gives frame ``frame`` (distinct streams per frame)."""
    return int(np.random.SeedSequence((int(seed), int(frame))).generate_state(1)[0])


def score_frame(
    protocol: str,
    pred8: Any,
    gt_map: Any,
    fixations: Any,
    other_map: Any,
    seed: int = 0,
    *,
    jitter: bool = True,
    n_splits: int = 100,
    step: float = 0.1,
) -> dict[str, float]:
    """One frame's ``{"cc", "sim", "nss", "auc_j", "sauc"}`` under ``protocol``.

    Args:
        protocol: ``"vinet"`` or ``"stavis"`` (module docstring).
        pred8: the prediction as read from its image, ``[h, w]`` or ``[h, w, c]`` uint8
            (or a float map in [0, 1], as ``im2double`` leaves it); any size.
        gt_map: the continuous ground truth ``[H, W]`` (uint8 image or float; CC and SIM
            do not change with its scale).
        fixations: the binary fixation map ``[H, W]`` (nonzero = fixated).
        other_map: the "other" map for shuffled AUC, ``[H, W]`` (:func:`shuffle_map`).
        seed: seeds AUC-Judd's jitter and shuffled AUC's splits (module docstring).
        jitter, n_splits, step: ``AUC_Judd``'s and ``AUC_shuffled``'s defaults.

    NaN where the scripts get NaN: no fixations (NSS, AUCs), a constant map, an empty
    "other" map (shuffled AUC), a constant ground truth (CC).
    """
    gt = im2double(gt_map)
    fix = np.asarray(fixations)
    if fix.shape != gt.shape:
        raise InputError(f"fixations: shape {fix.shape} differs from gt_map's {gt.shape}")
    sal = prepare(protocol, pred8, gt.shape)
    if not np.isfinite(sal).all():  # an all-zero STAViS prediction: 0/0 in postprocessMap
        return {m: math.nan for m in PROTOCOL_METRICS}
    return fast.script_metrics(
        sal, gt, fix, other_map, jitter=jitter, n_splits=n_splits, step=step, seed=seed
    )


def score_video(
    protocol: str,
    preds8: Sequence[Any],
    gt_maps: Sequence[Any],
    fixation_maps: Any,
    seed: int = 0,
    **options: Any,
) -> list[dict[str, float]]:
    """Every frame of one video: :func:`score_frame` with :func:`shuffle_map` per frame.

    ``preds8``, ``gt_maps`` and ``fixation_maps`` hold the video's frames in order (all
    annotated frames: the "other" maps union all of them). Frame ``i`` uses the seed
    ``frame_seed(seed, i)``; ``options`` go to :func:`score_frame`. Returns one dict per
    frame with ``"frame"`` (0-based) and the five metrics.
    """
    fix_all = np.asarray(fixation_maps)
    if not len(preds8) == len(gt_maps) == fix_all.shape[0]:
        raise InputError(
            f"a video needs as many predictions, maps and fixation maps: got {len(preds8)}, "
            f"{len(gt_maps)}, {fix_all.shape[0]}"
        )
    rows = []
    for i, (pred8, gt) in enumerate(zip(preds8, gt_maps, strict=True)):
        scores = score_frame(
            protocol, pred8, gt, fix_all[i], shuffle_map(fix_all, i), frame_seed(seed, i), **options
        )
        rows.append({"frame": i, **scores})
    return rows


def _mean_without_nan(values: Iterable[float]) -> float:
    """``x(isnan(x)) = []; mean(x)``: NaN when nothing is left (MATLAB's ``mean([])``)."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return math.fsum(kept) / len(kept) if kept else math.nan


def _mean(values: Sequence[float]) -> float:
    """MATLAB's ``mean``: NaN if any value is NaN (video means are not filtered again)."""
    return math.fsum(values) / len(values) if values else math.nan


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    *,
    per_frame: bool = False,
    metrics: Sequence[str] = PROTOCOL_METRICS,
) -> dict[str, Any]:
    """The scripts' means from per-frame rows (``{"video", metrics…[, "fold"]}``).

    Per video, each metric's NaN frames are dropped and the rest averaged (a video with
    none left gets NaN, MATLAB's ``mean([])``). Then:

    * rows without ``"fold"`` (ViNet's ``eval_diem``): the mean over videos, or with
      ``per_frame=True`` (``per_frame='true'``) each metric's sum over its non-NaN frames
      divided by the number of frames whose **CC** is not NaN (the script counts frames
      with ``length(frame_cc)`` for every metric);
    * rows with ``"fold"`` (STAViS' ``compute_all_*``): the mean over every (fold, video)
      mean — ``compute_all_avad.m`` and its four siblings append each split's videos to one
      list; ``compute_all_diem.m`` averages the three splits' means, which is the same
      number since every split scores the same videos. Per-fold means are returned too.

    Video and fold means are averaged as they are: a NaN video mean makes the result NaN,
    as MATLAB's ``mean`` does. Returns ``{"videos": {video: {metric: mean, "frames":
    n}}, "folds": {fold: {metric: mean}}`` (only with folds) ``, "overall": {metric:
    mean}}``; a video name is ``"fold/video"`` when rows carry folds.
    """
    by_video: dict[str, list[Mapping[str, Any]]] = {}
    fold_of: dict[str, Any] = {}
    with_folds: bool | None = None
    for row in rows:
        has_fold = "fold" in row
        if with_folds is None:
            with_folds = has_fold
        elif with_folds != has_fold:
            raise InputError("rows: either every row has a 'fold' or none has")
        key = f"{row['fold']}/{row['video']}" if has_fold else str(row["video"])
        by_video.setdefault(key, []).append(row)
        if has_fold:
            fold_of[key] = row["fold"]
    videos = {
        key: {
            **{m: _mean_without_nan(r[m] for r in frames) for m in metrics},
            "frames": len(frames),
        }
        for key, frames in by_video.items()
    }
    result: dict[str, Any] = {"videos": videos}
    if with_folds:
        folds: dict[Any, dict[str, float]] = {}
        for fold in dict.fromkeys(fold_of.values()):
            keys = [k for k in videos if fold_of[k] == fold]
            folds[fold] = {m: _mean([videos[k][m] for k in keys]) for m in metrics}
        result["folds"] = folds
        result["overall"] = {m: _mean([v[m] for v in videos.values()]) for m in metrics}
    elif per_frame:
        # eval_diem.m adds each metric's non-NaN frames to its sum but counts frames with
        # length(frame_cc): every pooled sum is divided by the number of frames with a CC.
        every = [r for frames in by_video.values() for r in frames]
        count = sum(1 for r in every if not math.isnan(float(r.get("cc", math.nan))))
        result["overall"] = {
            m: (
                math.fsum(float(r[m]) for r in every if not math.isnan(float(r[m]))) / count
                if count
                else math.nan
            )
            for m in metrics
        }
    else:
        result["overall"] = {m: _mean([v[m] for v in videos.values()]) for m in metrics}
    return result


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
