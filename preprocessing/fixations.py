"""Fixation points → Gaussian-blurred fixation density maps (docs/DATA.md).

The recipe of DHF1K and the STAViS datasets: the fixation points of a frame (in the
annotation's native pixels) form a *binary* map, which is blurred with a Gaussian and
normalised. DHF1K's Gaussian has a full width at half maximum of 30 px at 640×360, i.e.
``sigma = 30 / (2 √(2 ln 2)) ≈ 12.74`` px; :func:`dhf1k_sigma` scales it to other widths.

Coordinates follow the project's pixel convention (:mod:`avrsp.pixels`): pixel (row r,
column c) covers ``[c, c + 1) × [r, r + 1)``. Points outside the frame are dropped and
counted here, before the rasteriser sees them.

Two ways to make a map of the model's size (``out_size``), which agree closely (tested):

- ``method="direct"`` (default, fast): each point is snapped to its native pixel's
  centre (the binary map), duplicates are merged, and the blurred map is evaluated
  directly on the output grid as a sum of separable Gaussians with the sigma scaled to
  the output (``sigma·h/H`` vertically, ``sigma·w/W`` horizontally):
  ``map = Σ_k Gy[k]ᵀ Gx[k]`` with ``Gy [K, h]`` and ``Gx [K, w]``. The cost is
  ``O(K·(h + w) + K·h·w)`` for K points, independent of the native resolution — a
  1080p video costs the same as a 360p one.
- ``method="native"`` (reference): the binary map at native resolution blurred with
  ``scipy.ndimage.gaussian_filter`` (zero outside the frame, truncated at 4 sigma), then
  resized with area interpolation (box filter). The difference from ``direct`` is the
  box filter's averaging over an output pixel (a variance of 1/12 output px²), which is
  negligible when the output sigma is more than a pixel or two.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from avrsp.errors import InputError
from avrsp.pixels import in_frame, pixel_of

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # ≈ 2.3548
DHF1K_FWHM_PX = 30.0
DHF1K_WIDTH_PX = 640
DHF1K_SIGMA_PX = DHF1K_FWHM_PX / FWHM_PER_SIGMA  # ≈ 12.74 px at 640×360


def sigma_from_fwhm(fwhm_px: float) -> float:
    """Gaussian sigma of a given full width at half maximum: ``fwhm / (2 √(2 ln 2))``."""
    if not (math.isfinite(fwhm_px) and fwhm_px > 0):
        raise InputError(f"fwhm_px must be a positive number, got {fwhm_px!r}")
    return fwhm_px / FWHM_PER_SIGMA


def sigma_from_visual_angle(
    degrees: float, distance_cm: float, screen_width_cm: float, screen_width_px: int
) -> float:
    """A sigma given in degrees of visual angle, in pixels.

    An angle ``θ`` seen from ``distance_cm`` spans ``2 d tan(θ / 2)`` cm on the screen;
    ``screen_width_px / screen_width_cm`` pixels per cm turn that into pixels. To get
    pixels of the *video* (native resolution), pass the width the video occupied on the
    screen in cm and the video's native width in pixels (if it filled the screen width:
    the screen's width in cm and the video's width).
    """
    for name, value in (
        ("degrees", degrees),
        ("distance_cm", distance_cm),
        ("screen_width_cm", screen_width_cm),
        ("screen_width_px", screen_width_px),
    ):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    if degrees >= 180:
        raise InputError(f"degrees must be below 180, got {degrees}")
    span_cm = 2.0 * distance_cm * math.tan(math.radians(degrees) / 2.0)
    return span_cm * screen_width_px / screen_width_cm


def dhf1k_sigma(native_width: int) -> float:
    """DHF1K's sigma (FWHM 30 px at 640 px wide) for a video ``native_width`` px wide."""
    return DHF1K_SIGMA_PX * native_width / DHF1K_WIDTH_PX


def points_in_frame(points: np.ndarray, native_size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The points inside a frame of ``native_size`` = (H, W), and how many were dropped.

    ``points`` ``[K, 2]`` as (x, y); non-finite points count as dropped.
    Returns ``(float32 [K', 2], K - K')``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    keep = in_frame(pts, native_size)
    return pts[keep].astype(np.float32), int((~keep).sum())


def fixation_map(
    points: np.ndarray,
    native_size: tuple[int, int],
    sigma_px: float | None = None,
    out_size: tuple[int, int] | None = None,
    *,
    method: Literal["direct", "native"] = "direct",
) -> tuple[np.ndarray, int]:
    """The fixation density map of one frame (module docstring).

    ``points`` ``[K, 2]`` (x, y) in native pixels; ``native_size`` = (H, W);
    ``sigma_px`` in native pixels (None: :func:`dhf1k_sigma` of the native width);
    ``out_size`` = (h, w) of the result (None: native).
    Returns ``(float32 [h, w] with maximum 1 — all zeros when no point is in the frame,
    number of points dropped as out of frame)``.
    """
    height, width = (int(v) for v in native_size)
    if height < 1 or width < 1:
        raise InputError(f"native_size must be positive (H, W), got {native_size}")
    out_h, out_w = (height, width) if out_size is None else (int(v) for v in out_size)
    if out_h < 1 or out_w < 1:
        raise InputError(f"out_size must be positive (h, w), got {out_size}")
    sigma = dhf1k_sigma(width) if sigma_px is None else float(sigma_px)
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma_px must be a positive number, got {sigma_px!r}")
    inside, dropped = points_in_frame(points, native_size)
    out = np.zeros((out_h, out_w), dtype=np.float32)
    if inside.shape[0] == 0:
        return out, dropped
    # The binary map as its fixated native pixels (avrsp.pixels), unique by pixel index:
    # O(K), not a full-size native raster.
    cols, rows = pixel_of(inside, (height, width))
    index = np.unique(rows * width + cols)
    cells = np.stack([index % width, index // width], axis=1)
    if method == "direct":
        out = _direct(cells, (height, width), sigma, (out_h, out_w))
    elif method == "native":
        out = _native(cells, (height, width), sigma, (out_h, out_w))
    else:
        raise InputError(f"method must be 'direct' or 'native', got {method!r}")
    peak = float(out.max())
    if peak > 0:
        out /= peak
    return out.astype(np.float32, copy=False), dropped


def _gaussians(centres: np.ndarray, sigma: float, length: int) -> np.ndarray:
    """``[K, length]``: exp(-(i + 0.5 - c)² / 2σ²) at the pixel centres of one axis."""
    grid = np.arange(length, dtype=np.float64) + 0.5
    d = grid[None, :] - centres[:, None]
    return np.exp(-0.5 * (d / sigma) ** 2)


def _direct(
    cells: np.ndarray, native: tuple[int, int], sigma: float, out: tuple[int, int]
) -> np.ndarray:
    (height, width), (out_h, out_w) = native, out
    sy, sx = out_h / height, out_w / width
    gy = _gaussians((cells[:, 1] + 0.5) * sy, sigma * sy, out_h).astype(np.float32)  # [K, h]
    gx = _gaussians((cells[:, 0] + 0.5) * sx, sigma * sx, out_w).astype(np.float32)  # [K, w]
    # einsum's own loop, not BLAS: a BLAS call this small loses more to thread start-up
    # and contention (measured 12 ms vs 2 ms on a loaded 2-core machine). In float32: the
    # sum of K products is as exact as the map needs, at half the time of float64.
    return np.einsum("ki,kj->ij", gy, gx)


def _native(
    cells: np.ndarray, native: tuple[int, int], sigma: float, out: tuple[int, int]
) -> np.ndarray:
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    binary = np.zeros(native, dtype=np.float32)
    binary[cells[:, 1], cells[:, 0]] = 1.0
    blurred = gaussian_filter(binary, sigma=sigma, mode="constant", truncate=4.0)
    if blurred.shape == out:
        return blurred
    image = Image.fromarray(blurred, mode="F").resize((out[1], out[0]), Image.BOX)
    return np.array(image, dtype=np.float32)
