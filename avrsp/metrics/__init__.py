"""Saliency metrics as the MIT saliency benchmark / DHF1K MATLAB code computes them.

CC, NSS, SIM, KLD, AUC-Judd, AUC-Borji and shuffled AUC, in two implementations of one
definition (``docs/METRICS.md`` documents every choice):

* :mod:`avrsp.metrics.plain` — one function per metric, written out to be read beside the
  MATLAB file (``CC.m``, ``NSS.m``, ``similarity.m``, ``KLdiv.m``, ``AUC_Judd.m``,
  ``AUC_Borji.m``, ``AUC_shuffled.m``), with MATLAB's ``imresize``. This is the definition,
  including the documented random streams of the three random metrics. Slow.
* :mod:`avrsp.metrics.fast` — the same metrics, O(H·W) per frame, passes shared between
  metrics in :func:`all_metrics`; tested equal to the plain ones (to rounding, same
  random draws). This package exports these.
* :mod:`avrsp.metrics.protocols` — a frame prepared and scored as the audio-visual
  benchmarks' own scripts do (ViNet's and STAViS': 8-bit storage, STAViS' post-processing,
  the per-video "other" map, their means), checked against the scripts run in Octave.
* :mod:`avrsp.metrics.inputs` — the input checks both share. Fixation points become a
  binary map with :func:`points_to_fixation_map` (from :mod:`avrsp.pixels`, the project's
  one rasteriser: the point (x, y) fixates pixel (⌊x⌋, ⌊y⌋)).

Inputs: ``pred`` is the predicted map (any real dtype, any size: resized to the ground
truth's size first, see :func:`imresize`); ``gt_map`` the continuous human fixation map
``[H, W]``; ``fixations`` the binary fixation map ``[H, W]`` (nonzero = fixated). Numpy
arrays or CPU torch tensors; NaN or inf raises :class:`~avrsp.errors.InputError`;
undefined values are NaN, as in MATLAB. The random metrics take an integer ``seed``.
"""

from avrsp.metrics import fast, plain, protocols
from avrsp.metrics.fast import all_metrics, auc_borji, auc_judd, auc_shuffled, cc, kld, nss, sim
from avrsp.metrics.plain import EPS, JUDD_JITTER, METRIC_NAMES, imresize
from avrsp.pixels import points_to_fixation_map

__all__ = [
    "EPS",
    "JUDD_JITTER",
    "METRIC_NAMES",
    "all_metrics",
    "auc_borji",
    "auc_judd",
    "auc_shuffled",
    "cc",
    "fast",
    "imresize",
    "kld",
    "nss",
    "plain",
    "points_to_fixation_map",
    "protocols",
    "sim",
]
