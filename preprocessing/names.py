"""File names made from the names of videos and datasets: the one home of that rule.

Shards (``shards/<split>/<dataset>/<name>-00000.parquet``), done-markers
(``done/<dataset>__<name>.json``) and ``avrsp predict``'s output folders (``OUT/<name>/``)
are named after a video. A video's own name may be anything a file system holds: hidden
(``.a``), ``.``/``..``/``...``, spaces and punctuation, Unicode, or only the case apart from
another's (``a`` and ``A``, one file on a case-insensitive store). So:

- a **plain** name is used as it is: letters and digits (any script), ``-``, ``_`` and
  ``.``, not starting with ``.`` or ``_`` (hidden: Ray Data, pyarrow and our own listings
  skip such files), not ending with ``.`` (Windows drops it), at most
  :data:`MAX_READABLE` characters. Ordinary names (``clip01``, ``V32_Bicycle``,
  ``a.mp4``) are plain, so their files keep the names they always had;
- any other name becomes its readable part (every other character as ``_``, leading
  ``.``/``_`` dropped, cut to :data:`MAX_READABLE`) then ``~`` and the first 8 hex digits of
  the SHA-256 of the exact name: ``.a`` → ``a~…``, ``..`` → ``~…``, ``my clip`` →
  ``my_clip~…``. A plain name never holds ``~``, so the two kinds cannot meet;
- in one folder, names that are equal once case and Unicode forms are ignored (NFKC,
  case-folded) all take the hashed form: ``a`` → ``a~…``, ``A`` → ``A~…``
  (:func:`file_names`).

The result is always one path component that is neither hidden nor ``.``/``..``.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

from avrsp.errors import InputError

#: Characters of a name's readable part (a file name stays far below 255 bytes).
MAX_READABLE = 100
HASH_SEPARATOR = "~"


def sanitise(name: str) -> str:
    """Letters, digits and ``-_.`` kept; any other character becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def is_plain(name: str) -> bool:
    """``name`` can name a file as it is (module docstring)."""
    return (
        0 < len(name) <= MAX_READABLE
        and sanitise(name) == name
        and name[0] not in "._"
        and not name.endswith(".")
    )


def short_hash(name: str) -> str:
    """8 hex digits of the SHA-256 of ``name`` (undecodable file-name bytes included)."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def hashed_name(name: str) -> str:
    """The readable part of ``name`` and its hash: ``my clip`` → ``my_clip~<8 hex>``."""
    readable = sanitise(name).lstrip("._")[:MAX_READABLE]
    return f"{readable}{HASH_SEPARATOR}{short_hash(name)}"


def file_name(name: str) -> str:
    """The file name for ``name`` on its own: itself when plain, else :func:`hashed_name`.
    Where other names share the folder, use :func:`file_names`."""
    return name if is_plain(name) else hashed_name(name)


def folded(name: str) -> str:
    """What a case- and normalisation-insensitive store compares: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def file_names(names: Iterable[str]) -> dict[str, str]:
    """One file name per distinct name of one folder, no two equal even where case and
    Unicode forms are ignored: :func:`file_name`, with every name of a group that would
    meet another (``a`` and ``A``) in its hashed form."""
    out = {n: file_name(n) for n in dict.fromkeys(names)}
    groups: dict[str, list[str]] = {}
    for n, f in out.items():
        groups.setdefault(folded(f), []).append(n)
    for members in groups.values():
        if len(members) > 1:
            for n in members:
                out[n] = hashed_name(n)
    seen: dict[str, str] = {}
    for n, f in out.items():  # only an 8-digit hash collision could get here
        other = seen.setdefault(folded(f), n)
        if other != n:
            raise InputError(f"videos {other!r} and {n!r} get the same file name {f!r}")
    return out


def check_confined(name: str) -> str:
    """``name`` itself when it is one visible path component; InputError otherwise
    (for names given from outside, such as ``predict_one(name=…)``)."""
    if not name or name[0] == "." or any(c in name for c in "/\\\0"):
        raise InputError(
            f"{name!r}: not usable as an output name (empty, hidden, '.'/'..' or a path)"
        )
    return name
