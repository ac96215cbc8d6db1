"""Fingerprints: what made an output folder or a run, so a re-run cannot mix two of them.

``avrsp preprocess`` records in ``OUT/fingerprint.json`` what decides its rows (the source,
its options, the segment options, the schema version); ``avrsp train`` records in
``RUN/fingerprint.json`` the data's fingerprint and its own settings
(``workflows.loop.RUN_IDENTITY``). A re-run compares the new fingerprint with the stored one
and refuses, naming each difference, before any work (docs/DATA.md, docs/TRAINING.md).
"""

from __future__ import annotations

from typing import Any

FINGERPRINT_FILE = "fingerprint.json"


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key old → new`` for every top-level entry that differs; for a nested mapping, the
    names of its entries that differ (``options (stride, frames)``)."""
    diffs = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            inner = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            shown = ", ".join(f"{k} {old.get(k)} → {new.get(k)}" for k in inner[:6])
            diffs.append(f"{key}: {shown}" + (" …" if len(inner) > 6 else ""))
        else:
            diffs.append(f"{key} {old} → {new}")
    return diffs
