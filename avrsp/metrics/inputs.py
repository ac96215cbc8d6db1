"""What the metrics take in: checked arrays, fixation points as a map, batch shapes.

Shared by both implementations (:mod:`avrsp.metrics.plain`, :mod:`avrsp.metrics.fast`), so
they accept and reject the same inputs with the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from avrsp.errors import InputError


def as_array(
    x: Any, name: str, ndims: Sequence[int], *, finite: bool = True, mask: bool = False
) -> np.ndarray:
    """``x`` as a real numpy array with one of ``ndims`` dimensions, non-empty.

    Numpy arrays and CPU torch tensors are accepted. ``finite``: check for NaN / inf here
    (the fast batch path checks maps frame by frame instead). ``mask``: a fixation map,
    where only "nonzero" matters, so booleans stay booleans (no copy); elsewhere they
    become uint8 (a uint8 map, as MATLAB reads one).
    """
    if hasattr(x, "detach"):  # torch tensor (CPU); avoids importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == bool and not mask:
        arr = arr.astype(np.uint8)
    elif arr.dtype == bool:
        return check_shape(arr, name, ndims)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    check_shape(arr, name, ndims)
    if finite:
        check_finite(arr, name)
    return arr


def check_shape(arr: np.ndarray, name: str, ndims: Sequence[int]) -> np.ndarray:
    """``arr`` itself if it has one of ``ndims`` dimensions and is non-empty."""
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise InputError(f"{name}: expected a {want} array, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: empty array (shape {arr.shape})")
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise :class:`InputError` if ``arr`` holds NaN or inf."""
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise InputError(f"{name}: contains {bad} values; metrics need finite maps")


def check_splits(n_splits: int) -> None:
    """AUC-Borji / shuffled AUC: ``n_splits`` must be a positive integer."""
    if int(n_splits) != n_splits or n_splits < 1:
        raise InputError(f"n_splits: expected a positive integer, got {n_splits}")


def batch_inputs(
    preds: Any, gt_maps: Any, fixations: Any, other: Any, *, finite: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The arrays of an ``all_metrics`` call, checked: ``[N, h, w]``, ``[N, H, W]`` twice, and
    ``other`` as ``None``, ``[H, W]`` or ``[N, H, W]``.

    ``finite``: check ``preds`` and ``gt_maps`` for NaN / inf here (else the caller must).
    """
    p_all = as_array(preds, "preds", (3,), finite=finite)
    g_all = as_array(gt_maps, "gt_maps", (3,), finite=finite)
    f_all = as_array(fixations, "fixations", (3,), mask=True)
    n = p_all.shape[0]
    if g_all.shape != f_all.shape or g_all.shape[0] != n:
        raise InputError(
            f"preds/gt_maps/fixations: batch shapes differ: preds {p_all.shape}, "
            f"gt_maps {g_all.shape}, fixations {f_all.shape} (need [N, ...] with the same N "
            "and gt_maps and fixations of one size)"
        )
    o_all = None
    if other is not None:
        o_all = as_array(other, "other", (2, 3), mask=True)
        if o_all.shape[-2:] != g_all.shape[1:] or (o_all.ndim == 3 and o_all.shape[0] != n):
            raise InputError(
                f"other: shape {o_all.shape} does not fit fixations {f_all.shape} "
                "(need [H, W] or [N, H, W])"
            )
    return p_all, g_all, f_all, o_all
