"""``avrsp datasets check KIND:PATH``: is a dataset complete, before an hour is spent on it?

Only folder listings and file-existence checks (no frame, map or wav is opened), through
the readers' own functions, so the check sees the layout exactly as ``avrsp preprocess``
and ``avrsp evaluate`` do (docs/DATA.md, "Checking a dataset").

- ``stavis``: per dataset, the videos of its fold lists (the folder's own, else the
  shipped published ones) against the frame folders on disk: missing videos by name, frame
  counts that differ from the list's ``nframes`` (the video named, both counts), videos
  without continuous maps, fixation maps (or whose fixation maps do not cover every frame)
  or audio; fold lists the reader refuses.
- ``dhf1k``: the 700 annotated videos (1–600 train, 601–700 val; the test videos 701–1000
  are counted when present, never required): missing numbers, videos whose frames and
  annotations disagree, videos without maps or fixation maps.

:func:`preflight` runs the same check at the start of ``avrsp preprocess`` and ``avrsp
evaluate``: it prints the problems found and refuses a dataset without any video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from avrsp.errors import InputError
from preprocessing.records import FixationSource, frame_tolerance
from preprocessing.sources import dhf1k, parse_source, stavis

KINDS = ("stavis", "dhf1k")
SHOWN = 10  # names shown per kind of problem; the rest are counted


@dataclass
class DatasetCheck:
    """What the check found for one dataset. Each problem list holds one text per video."""

    dataset: str
    lists: str  # where the expected videos come from
    expected: int
    found: int = 0
    missing: list[str] = field(default_factory=list)  # video names
    frames: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    fixations: list[str] = field(default_factory=list)
    audio: list[str] | None = field(default_factory=list)  # None: the dataset has no audio
    lists_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown, not problems

    @property
    def problems(self) -> int:
        return sum(
            len(x) for x in (self.missing, self.frames, self.maps, self.fixations, self.audio or [])
        ) + len(self.lists_problems)


@dataclass
class SourceCheck:
    source: str
    datasets: list[DatasetCheck]

    @property
    def ok(self) -> bool:
        return not any(d.problems for d in self.datasets)

    def table(self) -> str:
        head = ("dataset", "lists", "expected", "found", "missing", "frames", "maps", "fix")
        head += ("audio",)
        rows = [head]
        for d in self.datasets:
            audio = "-" if d.audio is None else str(len(d.audio))
            counts = (d.expected, d.found, *map(len, (d.missing, d.frames, d.maps, d.fixations)))
            rows.append((d.dataset, d.lists, *map(str, counts), audio))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        return "\n".join(lines)

    def details(self) -> str:
        """One block: a line per dataset and kind of problem (names, at most :data:`SHOWN`)."""
        lines: list[str] = []
        for d in self.datasets:
            lines += [f"  {d.dataset}: fold lists: {p}" for p in d.lists_problems]
            if d.missing:
                missing = _ranges(d.missing) if d.dataset == dhf1k.DATASET else d.missing
                lines.append(f"  {d.dataset}: {len(d.missing)} missing: {_names(missing)}")
            for what, items in (
                ("frame counts", d.frames),
                ("maps", d.maps),
                ("fixations", d.fixations),
                ("audio", d.audio or []),
            ):
                if items:
                    lines.append(f"  {d.dataset}: {what}: {_names(items, sep='; ')}")
            lines += [f"  {d.dataset}: note: {n}" for n in d.notes]
        return "\n".join(lines)

    def text(self) -> str:
        verdict = (
            "all videos found, complete"
            if self.ok
            else f"{sum(d.problems for d in self.datasets)} problem(s)"
        )
        details = self.details()
        return f"{self.source}: {verdict}\n{self.table()}" + (f"\n{details}" if details else "")


def _names(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:SHOWN])
    return shown + (f"{sep}… and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def check_source(spec: str, *, datasets: tuple[str, ...] | None = None) -> SourceCheck:
    """Check ``spec`` = ``KIND:PATH``. InputError (exit 2) for an unusable KIND or PATH."""
    kind, path = parse_source(spec)
    if kind not in KINDS:
        raise InputError(f"{spec}: datasets check knows {', '.join(KINDS)}, not {kind}")
    if not path.is_dir():
        raise InputError(f"{spec}: {path} is not a folder")
    if kind == "stavis":
        wanted = stavis.wanted_datasets(path, datasets)
        if not wanted:
            raise InputError(
                f"{spec}: no dataset folder under {path / 'video_frames'} "
                f"({', '.join(stavis.DATASETS)})"
            )
        return SourceCheck(spec, [check_stavis(path, d) for d in wanted])
    return SourceCheck(spec, [check_dhf1k(path)])


def check_stavis(root: Path, dataset: str) -> DatasetCheck:
    """One STAViS-layout dataset against its fold lists (module docstring)."""
    files = stavis.fold_list_files(root, dataset)
    lists = "none"
    if files:
        folder = next(iter(files.values())).parent
        lists = "shipped" if folder == stavis.SHIPPED_LISTS else str(folder)
    listed: dict[str, int] = {}
    for path in files.values():
        for name, (nframes, _) in stavis.parse_fold_list(path).items():
            listed.setdefault(name, nframes)
    report = DatasetCheck(dataset, lists, expected=len(listed))
    if not files:
        report.lists_problems.append(f"no {dataset}_list_*_fps.txt in fold_lists/ or the root")
    try:
        stavis.fold_assignment(root, dataset)
    except InputError as exc:  # e.g. a video in the test lists of two folds
        report.lists_problems.append(f"{exc} (avrsp preprocess refuses these lists)")
    frames_root = root / "video_frames" / dataset
    on_disk = (
        {p.name for p in frames_root.iterdir() if p.is_dir()} if frames_root.is_dir() else set()
    )
    report.missing = sorted(set(listed) - on_disk)
    unlisted = sorted(on_disk - set(listed))
    if unlisted:
        report.notes.append(
            f"{len(unlisted)} folder(s) in no fold list, skipped: {_names(unlisted)}"
        )
    for vid in sorted(set(listed) & on_disk):
        report.found += 1
        folder = frames_root / vid
        frames = stavis.video_frames(folder)
        count = frames.count if frames else 0
        problem = stavis.frames_problem(folder, frames, listed[vid])
        if count != listed[vid] or problem:
            what = f"{vid} {count} frames, list says {listed[vid]}"
            if frames is not None and frames.last - frames.first + 1 != frames.count:
                what += f" (numbered {frames.first}…{frames.last}: gaps)"
            if problem is None:
                what += f" (within the list's {frame_tolerance(listed[vid])}-frame tolerance)"
            report.frames.append(what)
        fix, maps, wav = stavis.annotation_files(root, dataset, vid)
        if maps is None:
            report.maps.append(vid)
        if fix is None:
            report.fixations.append(vid)
        elif frames is not None:
            try:
                source = FixationSource(kind="mat", pattern=fix.pattern, first_index=fix.first)
                source.open(fps=1.0, native_size=(1, 1)).check(count)  # two stat calls
            except InputError as exc:
                report.fixations.append(f"{vid}: {str(exc).replace(f'{root}/', '')}")
        if wav is None:
            assert report.audio is not None
            report.audio.append(vid)
    return report


def check_dhf1k(root: Path) -> DatasetCheck:
    """DHF1K's annotated videos 1–700 (module docstring), through :func:`dhf1k.read`."""
    listing = dhf1k.read(root)
    expected = {f"{n:04d}" for n in range(1, 701)}
    report = DatasetCheck(dhf1k.DATASET, "1-700", expected=len(expected), audio=None)
    seen = {r.video_id for r in listing.records}
    seen |= {x["video"] for x in listing.skipped + listing.failed}
    report.found = len(seen & expected)
    report.missing = sorted(expected - seen)
    report.frames = [f"{x['video']}: {x['reason']}" for x in listing.failed]
    for r in listing.records:
        if r.video_id not in expected:
            continue
        if r.maps_pattern is None:
            report.maps.append(r.video_id)
        if r.fixations.kind == "none":
            report.fixations.append(r.video_id)
    tests = len(seen - expected)
    if tests:
        report.notes.append(f"{tests} other video(s) (test set, not required) present")
    return report


def _ranges(names: list[str]) -> list[str]:
    """DHF1K numbers ``["0001", "0002", "0003", "0007"]`` → ``["0001-0003", "0007"]``."""
    out: list[str] = []
    for n in sorted(int(v) for v in names):
        if out and int(out[-1][-4:]) == n - 1:
            out[-1] = f"{out[-1][:4]}-{n:04d}"
        else:
            out.append(f"{n:04d}")
    return out


def preflight(
    source: str, *, datasets: tuple[str, ...] | None = None, log: Callable[[str], None] = print
) -> None:
    """At the start of ``avrsp preprocess`` / ``evaluate``: print the problems of a
    ``stavis`` or ``dhf1k`` source (one block); refuse a dataset without any video found.
    Other kinds, and a source the readers refuse anyway, pass through unchecked."""
    try:
        kind, path = parse_source(source)
    except InputError:
        return  # the reader says it
    if kind not in KINDS or not path.is_dir():
        return
    try:
        report = check_source(source, datasets=datasets)
    except InputError:
        return  # the reader says it, in its own words
    empty = [d for d in report.datasets if d.found == 0]
    if empty:
        names = ", ".join(f"{d.dataset} (0 of {d.expected})" for d in empty)
        raise InputError(
            f"--source {source}: no videos found for {names}; avrsp datasets check {source}"
        )
    if not report.ok:
        problems = sum(d.problems for d in report.datasets)
        log(f"dataset check of {source}: {problems} problem(s)\n{report.details()}")
