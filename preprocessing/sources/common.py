"""Helpers shared by the dataset readers: listings and numbered frame files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from avrsp.errors import InputError
from preprocessing.records import VideoRecord


@dataclass
class Listing:
    """What a reader found.

    ``records`` are the videos to process; ``skipped`` the videos left out on purpose
    (e.g. DHF1K test videos without annotations); ``failed`` the videos whose files are
    broken already at listing time (they go to the job's failure report).
    """

    records: list[VideoRecord] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def skip(self, dataset: str, video: str, reason: str) -> None:
        self.skipped.append({"dataset": dataset, "video": video, "reason": reason})

    def fail(self, dataset: str, video: str, reason: str) -> None:
        self.failed.append({"dataset": dataset, "video": video, "reason": reason})

    @property
    def empty(self) -> bool:
        return not (self.records or self.skipped or self.failed)


@dataclass(frozen=True)
class NumberedFiles:
    """Files ``<prefix><number><suffix>`` of one folder: a printf pattern and their numbers."""

    pattern: str
    first: int
    last: int
    count: int

    def file(self, number: int) -> Path:
        return Path(self.pattern % number)


def numbered(folder: Path, prefix: str, suffixes: tuple[str, ...]) -> NumberedFiles | None:
    """The numbered files in ``folder`` as a zero-padded pattern, or None when there are none.

    E.g. ``0001.png … 0412.png`` → ``folder/%04d.png``, first 1, count 412.
    """
    if not folder.is_dir():
        return None
    regex = re.compile(
        rf"^{re.escape(prefix)}(\d+)({'|'.join(re.escape(s) for s in suffixes)})$", re.IGNORECASE
    )
    found: dict[tuple[int, str], list[int]] = {}
    for path in folder.iterdir():
        match = regex.match(path.name)
        if match:
            digits, suffix = match.groups()
            found.setdefault((len(digits), suffix), []).append(int(digits))
    if not found:
        return None
    (width, suffix), numbers = max(found.items(), key=lambda kv: len(kv[1]))
    numbers.sort()
    pattern = str(folder / f"{prefix.replace('%', '%%')}%0{width}d{suffix}")
    return NumberedFiles(pattern=pattern, first=numbers[0], last=numbers[-1], count=len(numbers))


def check_contiguous(files: NumberedFiles, what: str) -> None:
    """Frames must be numbered without gaps, else frame index and file number disagree."""
    if files.last - files.first + 1 != files.count:
        raise InputError(
            f"{Path(files.pattern).parent}: {what} numbered {files.first}…{files.last} but "
            f"only {files.count} files exist (gaps)"
        )
