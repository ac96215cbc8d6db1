"""The paper's three ablations as named search spaces (Tables III, IV and V).

Every row is an explicit point with the paper's label cells, so the dry run lists exactly
the paper's rows and the table comes out in the paper's order:

- ``table3``: audio × MS × MRG on/off, 8 rows. The paper's network has three MS&MRG
  pairs (its Table III "AVRSP" V row is Table IV's 3-pair V row), so every row sets
  ``ms_mrg_pairs: 3``: with 4, "MS on, MRG off" is refused by the config (level 0 would
  get no MS module: the 3-pair network). "Audio off" rows are the V variant, whose fusion
  fields ``ModelConfig.identity()`` ignores; all off is the pairs-0 network.
- ``table4``: 4, 3, 2, 1, 0 MS&MRG pairs for V and AV, 10 rows (MS and MRG both on).
- ``table5``: the visual-only baseline, then addition, multiplication, concatenation,
  bilinear, MBT and RAVF fusion in the AV variant, 7 rows.
"""

from __future__ import annotations

from typing import Any

from avrsp.errors import ConfigError
from tuning.spaces import SearchSpace

_CHECK = "✓"
_LEVELS = {
    4: ("X3, X2, X1, X0", "X3, X2, X1, X0"),
    3: ("X3, X2, X1, X0", "X3, X2, X1"),
    2: ("X3, X2, X1", "X3, X2"),
    1: ("X3, X2", "X3"),
    0: ("Null", "Null"),
}
FUSION_ROWS = (
    ("Element-wise addition", "add"),
    ("Element-wise multiplication", "mul"),
    ("Concatenation", "concat"),
    ("Bilinear", "bilinear"),
    ("MBT", "mbt"),
    ("RAVF (ours)", "ravf"),
)


def _table3() -> dict[str, Any]:
    rows = []
    # The paper's order: audio off, then on; within each none, MS, MRG, both.
    for audio in (False, True):
        for ms, mrg in ((False, False), (True, False), (False, True), (True, True)):
            rows.append(
                {
                    "use_audio": audio,
                    "use_ms": ms,
                    "use_mrg": mrg,
                    "ms_mrg_pairs": 3,
                    "fusion": "ravf",
                    "label": [_CHECK if x else "" for x in (audio, ms, mrg)],
                }
            )
    return {
        "name": "table3",
        "title": "Table III: multi-scale feature enhancement (MS, MRG) with and without audio",
        "label_columns": ["Audio", "MS", "MRG"],
        "rows": rows,
    }


def _table4() -> dict[str, Any]:
    rows = []
    for audio, variant in ((False, "Visual-only"), (True, "Audio-Visual")):
        for pairs in (4, 3, 2, 1, 0):
            inputs, outputs = _LEVELS[pairs]
            rows.append(
                {
                    "use_audio": audio,
                    "use_ms": True,
                    "use_mrg": True,
                    "ms_mrg_pairs": pairs,
                    "fusion": "ravf",
                    "label": [variant, str(pairs), inputs, outputs],
                }
            )
    return {
        "name": "table4",
        "title": "Table IV: number of MS&MRG pairs",
        "label_columns": ["Variant", "Number", "Input", "Output"],
        "rows": rows,
    }


def _table5() -> dict[str, Any]:
    common = {"use_ms": True, "use_mrg": True, "ms_mrg_pairs": 3}
    rows = [{"use_audio": False, "fusion": "ravf", **common, "label": ["Visual-only baseline"]}]
    for label, method in FUSION_ROWS:
        rows.append({"use_audio": True, "fusion": method, **common, "label": [label]})
    return {
        "name": "table5",
        "title": "Table V: multi-modal feature fusion methods",
        "label_columns": ["Fusion method"],
        "rows": rows,
    }


ABLATIONS = {"table3": _table3, "table4": _table4, "table5": _table5}


def named_space(name: str) -> SearchSpace:
    """The named ablation's space (``table3``, ``table4``, ``table5``)."""
    try:
        data = ABLATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown ablation {name!r}; choose one of {', '.join(ABLATIONS)}"
        ) from None
    return SearchSpace.from_dict({**data, "ablation": name}, source=f"ablation {name}")
