"""The pixel convention, written once, and the one fixation rasteriser.

Points are ``(x, y)`` in continuous pixel coordinates: x to the right and y down from the
top-left corner of the frame. Pixel (column c, row r) covers ``[c, c+1) × [r, r+1)`` and
is centred at ``(c + 0.5, r + 0.5)``. So a point lies in pixel ``(⌊x⌋, ⌊y⌋)``, and in a map
of another size ``(h, w)`` than the frame's ``(H, W)`` it lies in pixel
``(⌊x·w/W⌋, ⌊y·h/H⌋)``. A point is in the frame when ``0 ≤ x < W`` and ``0 ≤ y < H``.

Every binary fixation map in the project comes from :func:`points_to_fixation_map`: the
Gaussian maps of preprocessing (at native resolution), the fixation maps of training
batches (at model resolution) and of the metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avrsp.errors import InputError


def _shape(size: Any, name: str) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise InputError(f"{name}: expected a positive (H, W), got {tuple(size)}")
    return h, w


def in_frame(points: Any, frame_size: tuple[int, int]) -> np.ndarray:
    """``bool [K]``: which points ``[K, 2]`` lie in a frame of ``frame_size`` = (H, W)
    (non-finite points do not)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = frame_size
    x, y = pts[:, 0], pts[:, 1]
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < width) & (y >= 0) & (y < height)


def pixel_of(
    points: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows ``(int64 [K], int64 [K])`` of in-frame points in a map of ``size``
    (default: the frame's own size). The clip only guards the last pixel against float
    rounding of ``x·w/W`` for x just below W."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = frame_size
    h, w = (height, width) if size is None else size
    cols = np.floor(pts[:, 0] * (w / width)).astype(np.int64)
    rows = np.floor(pts[:, 1] * (h / height)).astype(np.int64)
    return np.clip(cols, 0, w - 1), np.clip(rows, 0, h - 1)


def points_to_fixation_map(
    points: Any, shape: tuple[int, int], *, frame_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Binary fixation map ``bool [H, W]`` of ``shape`` from fixation points ``[K, 2]`` (x, y).

    The points are in pixels of ``frame_size`` (default: ``shape`` itself; give the native
    frame size to rasterise native points at another resolution). Several points on one
    pixel give one fixated pixel, as in the benchmarks' binary maps. A point outside the
    frame raises :class:`InputError`: silently dropping gaze would change the scores
    (preprocessing counts and drops such points before they are stored).
    """
    h, w = _shape(shape, "shape")
    frame = (h, w) if frame_size is None else _shape(frame_size, "frame_size")
    out = np.zeros((h, w), dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return out
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points: expected an array [K, 2] of (x, y), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise InputError("points: contains NaN or inf coordinates")
    outside = ~in_frame(pts, frame)
    if outside.any():
        first = pts[np.argmax(outside)]
        what = "map" if frame_size is None else "frame"
        raise InputError(
            f"points: {int(outside.sum())} point(s) outside the {frame[0]}x{frame[1]} {what}, "
            f"e.g. (x={first[0]:g}, y={first[1]:g})"
        )
    cols, rows = pixel_of(pts, frame, (h, w))
    out[rows, cols] = True
    return out
