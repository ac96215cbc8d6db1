"""Fixation points → blurred maps: peak, width, dropping, unit conversions, two methods."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avrsp.errors import InputError
from preprocessing.fixations import (
    DHF1K_SIGMA_PX,
    dhf1k_sigma,
    fixation_map,
    points_in_frame,
    sigma_from_fwhm,
    sigma_from_visual_angle,
)


def _fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum of a 1-D peak, with linear interpolation at the edges."""
    half = profile.max() / 2
    above = np.nonzero(profile >= half)[0]
    lo, hi = above[0], above[-1]
    left = lo - (profile[lo] - half) / (profile[lo] - profile[lo - 1])
    right = hi + (profile[hi] - half) / (profile[hi] - profile[hi + 1])
    return float(right - left)


def test_dhf1k_sigma() -> None:
    # FWHM = 2 sqrt(2 ln 2) sigma = 2.35482 sigma; 30 / 2.35482 = 12.7398.
    assert sigma_from_fwhm(30) == pytest.approx(12.7398, abs=1e-4)
    assert abs(DHF1K_SIGMA_PX - 12.7398) < 1e-4
    assert dhf1k_sigma(1280) == pytest.approx(2 * 12.7398, abs=1e-3)


def test_visual_angle_by_hand() -> None:
    # 1 degree at 60 cm: 2 · 60 · tan(0.5°) = 2 · 60 · 0.0087269 = 1.04722 cm;
    # a 53 cm wide, 1920 px screen has 36.2264 px/cm → 37.937 px.
    assert sigma_from_visual_angle(1.0, 60.0, 53.0, 1920) == pytest.approx(37.937, abs=0.01)
    # 10 degrees at 57 cm on 40 cm / 800 px: 2 · 57 · tan(5°) = 9.9738 cm → 199.48 px.
    assert sigma_from_visual_angle(10.0, 57.0, 40.0, 800) == pytest.approx(199.48, abs=0.01)
    with pytest.raises(InputError, match="distance_cm"):
        sigma_from_visual_angle(1.0, 0.0, 53.0, 1920)


def test_peak_at_the_point_and_fwhm_matches() -> None:
    native = (360, 640)
    smap, dropped = fixation_map(np.array([[200.3, 100.7]]), native, sigma_from_fwhm(30))
    assert dropped == 0 and smap.dtype == np.float32 and smap.shape == native
    assert smap.max() == pytest.approx(1.0)
    assert np.unravel_index(smap.argmax(), smap.shape) == (100, 200)  # (row, column)
    assert _fwhm(smap[100]) == pytest.approx(30.0, abs=0.2)
    assert _fwhm(smap[:, 200]) == pytest.approx(30.0, abs=0.2)
    # Resized to the model size: the peak moves with the scale, the width too.
    small, _ = fixation_map(np.array([[200.5, 100.5]]), native, sigma_from_fwhm(30), (180, 320))
    assert np.unravel_index(small.argmax(), small.shape) == (50, 100)
    assert _fwhm(small[50]) == pytest.approx(15.0, abs=0.2)


def test_out_of_frame_points_are_dropped_and_counted() -> None:
    native = (96, 160)
    points = np.array(
        [[-0.1, 5], [160.0, 10], [10, 96.0], [np.nan, 3], [5, -3], [0.0, 0.0], [159.9, 95.9]]
    )
    inside, dropped = points_in_frame(points, native)
    assert dropped == 5 and np.allclose(inside, [[0, 0], [159.9, 95.9]])
    smap, dropped = fixation_map(points, native, 4.0)
    assert dropped == 5 and smap[0, 0] == pytest.approx(1.0) and smap[95, 159] == pytest.approx(1.0)
    empty, dropped = fixation_map(points[:5], native, 4.0, (48, 80))
    assert dropped == 5 and empty.shape == (48, 80) and not empty.any()


def test_binary_map_counts_a_pixel_once() -> None:
    native = (90, 160)
    one, _ = fixation_map(np.array([[40.2, 30.2], [100.0, 60.0]]), native, 5.0)
    two, _ = fixation_map(np.array([[40.2, 30.2], [40.8, 30.9], [100.0, 60.0]]), native, 5.0)
    assert np.array_equal(one, two)  # two fixations in one pixel = one binary entry


@pytest.mark.parametrize(
    ("native", "out"),
    [((360, 640), (112, 192)), ((540, 960), (224, 384)), ((360, 640), (96, 96))],
)
def test_direct_and_native_methods_agree(native: tuple[int, int], out: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform([0, 0], [native[1], native[0]], (15, 2))
    sigma = dhf1k_sigma(native[1])
    fast, d1 = fixation_map(points, native, sigma, out)
    slow, d2 = fixation_map(points, native, sigma, out, method="native")
    assert d1 == d2 == 0
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.9995
    assert np.abs(fast - slow).max() < 0.03


def test_default_sigma_is_dhf1k_scaled_to_the_width() -> None:
    pts = np.array([[320.0, 180.0]])
    default, _ = fixation_map(pts, (360, 640), None)
    explicit, _ = fixation_map(pts, (360, 640), 30 / (2 * math.sqrt(2 * math.log(2))))
    assert np.allclose(default, explicit)
    wide, _ = fixation_map(pts * 2, (720, 1280), None, (360, 640))
    assert np.abs(wide - default).max() < 0.02  # same picture at twice the resolution


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="sigma_px"):
        fixation_map(np.zeros((1, 2)), (10, 10), 0.0)
    with pytest.raises(InputError, match="native_size"):
        fixation_map(np.zeros((1, 2)), (0, 10), 1.0)
