"""The six audio-visual datasets in the STAViS layout (Tsiami et al., CVPR 2020; docs/DATA.md).

``ROOT/video_frames/<DS>/<vid>/img_%05d.jpg``, ``ROOT/video_audio/<DS>/<vid>/<vid>.wav``,
``ROOT/annotations/<DS>/<vid>/maps/eyeMap_%05d.jpg`` (continuous maps) and
``ROOT/annotations/<DS>/<vid>/fixMap_%05d.mat`` (variable ``eyeMap``, binary), for DS in
AVAD, Coutrot_db1, Coutrot_db2, DIEM, ETMD_av, SumMe.

Fold lists ``<DS>_list_{train,test}_{1,2,3}_fps.txt`` (DIEM: ``DIEM_list_{train,test}_fps.txt``),
one ``name nframes fps`` per line, are looked up in ``ROOT/fold_lists/`` and then ``ROOT/``;
a dataset with none of its lists there gets the published lists shipped in
``preprocessing/sources/fold_lists/`` (its README says where they come from).
A video in the test list of fold k gets ``split="cv", fold=k`` (train in the other folds);
one in the test lists of several folds (AVAD's published lists put V3_Speech3 and
V39_Guitar4 in folds 1 and 2, V26_Piano2 in 2 and 3) is a test video of each of them and a
training video of the others only (``fold`` holds :func:`~preprocessing.records.fold_code`),
as STAViS' scripts score it once per fold;
one found only in train lists gets ``split="train"``; DIEM's videos get ``train``/``test``.
Videos in no list are skipped (their fps is unknown) and named in the listing.
"""

from __future__ import annotations

from pathlib import Path

from avrsp.errors import InputError
from preprocessing.records import FixationSource, VideoRecord, fold_code, frame_tolerance
from preprocessing.sources.common import Listing, NumberedFiles, check_contiguous, numbered

DATASETS = ("AVAD", "Coutrot_db1", "Coutrot_db2", "DIEM", "ETMD_av", "SumMe")
FOLDS = (1, 2, 3)
FIXED_SPLIT = ("DIEM",)
#: The published STAViS fold lists, used for a dataset whose folder holds none of its own.
SHIPPED_LISTS = Path(__file__).with_name("fold_lists")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def parse_fold_list(path: Path) -> dict[str, tuple[int, float]]:
    """``{name: (nframes, fps)}`` of one fold list file."""
    entries: dict[str, tuple[int, float]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise InputError(f"{path}, line {number}: expected 'name nframes fps', got {line!r}")
        try:
            entries[parts[0]] = (int(parts[1]), float(parts[2]))
        except ValueError:
            raise InputError(
                f"{path}, line {number}: nframes/fps not numbers in {line!r}"
            ) from None
    return entries


def list_names(dataset: str) -> list[str]:
    """The names of a dataset's fold list files."""
    if dataset in FIXED_SPLIT:
        return [f"{dataset}_list_{split}_fps.txt" for split in ("train", "test")]
    return [
        f"{dataset}_list_{split}_{fold}_fps.txt" for split in ("train", "test") for fold in FOLDS
    ]


def fold_list_files(root: Path, dataset: str) -> dict[str, Path]:
    """``{list file name: path}`` of the dataset's fold lists: each looked up in
    ``root/fold_lists/`` then ``root/``; when none of them is there, the shipped ones."""
    found: dict[str, Path] = {}
    for name in list_names(dataset):
        for folder in (root / "fold_lists", root):
            if (folder / name).is_file():
                found[name] = folder / name
                break
    if found:
        return found
    return {
        name: SHIPPED_LISTS / name
        for name in list_names(dataset)
        if (SHIPPED_LISTS / name).is_file()
    }


def fold_assignment(root: Path, dataset: str) -> dict[str, tuple[str, int, int, float]]:
    """``{video: (split, fold, nframes, fps)}`` from a dataset's fold lists."""
    files = fold_list_files(root, dataset)

    def entries(name: str) -> dict[str, tuple[int, float]]:
        return parse_fold_list(files[name]) if name in files else {}

    out: dict[str, tuple[str, int, int, float]] = {}
    if dataset in FIXED_SPLIT:
        for split in ("train", "test"):
            for name, (n, fps) in entries(f"{dataset}_list_{split}_fps.txt").items():
                out[name] = (split, 0, n, fps)
        return out
    for fold in FOLDS:
        for name, (n, fps) in entries(f"{dataset}_list_train_{fold}_fps.txt").items():
            out.setdefault(name, ("train", 0, n, fps))
    tested: dict[str, list[int]] = {}
    for fold in FOLDS:
        for name, (n, fps) in entries(f"{dataset}_list_test_{fold}_fps.txt").items():
            if name in tested and out[name][2:] != (n, fps):
                raise InputError(
                    f"{files[f'{dataset}_list_test_{fold}_fps.txt']}: video {name!r} has "
                    f"{n} frames at {fps:g} fps, the test list of fold {tested[name][0]} "
                    f"says {out[name][2]} at {out[name][3]:g}"
                )
            tested.setdefault(name, []).append(fold)
            out[name] = ("cv", fold_code(tested[name]), n, fps)
    return out


def wanted_datasets(root: Path, datasets: tuple[str, ...] | None) -> tuple[str, ...]:
    """The datasets to read: ``datasets``, or those with a ``video_frames/<DS>`` folder."""
    frames_root = root / "video_frames"
    if not frames_root.is_dir():
        raise InputError(f"{root}: no video_frames/ folder (STAViS layout expected)")
    wanted = datasets or tuple(d for d in DATASETS if (frames_root / d).is_dir())
    unknown = [d for d in wanted if d not in DATASETS]
    if unknown:
        raise InputError(f"unknown STAViS dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    return wanted


def read(root: str | Path, *, datasets: tuple[str, ...] | None = None) -> Listing:
    """List the videos of the STAViS-layout datasets under ``root``."""
    root = Path(root)
    frames_root = root / "video_frames"
    wanted = wanted_datasets(root, datasets)
    listing = Listing()
    for dataset in wanted:
        folds = fold_assignment(root, dataset)
        if not folds:
            raise InputError(
                f"{root}: no fold lists for {dataset} ({dataset}_list_*_fps.txt in "
                "fold_lists/ or the root, and none shipped)"
            )
        video_dirs = sorted(p for p in (frames_root / dataset).glob("*") if p.is_dir())
        for folder in video_dirs:
            _read_video(root, dataset, folder, folds, listing)
        on_disk = {p.name for p in video_dirs}
        for name in sorted(set(folds) - on_disk):
            listing.fail(dataset, name, f"{frames_root / dataset / name}: listed but missing")
    return listing


def video_frames(folder: Path) -> NumberedFiles | None:
    """The ``img_%05d.jpg`` frames of one video folder (``video_frames/<DS>/<vid>``)."""
    return numbered(folder, "img_", FRAME_SUFFIXES)


def frames_problem(folder: Path, frames: NumberedFiles | None, listed: int) -> str | None:
    """Why a video's frames are unusable against its fold list's ``listed`` count, or None:
    no frames, gaps in their numbers, or a count off by more than 2 frames or 1 %."""
    if frames is None:
        return f"{folder}: no img_*.jpg frames"
    try:
        check_contiguous(frames, "frames")
    except InputError as exc:
        return str(exc)
    if abs(frames.count - listed) > frame_tolerance(listed):
        return f"{folder}: {frames.count} frames on disk but the fold list says {listed}"
    return None


def annotation_files(
    root: Path, dataset: str, vid: str
) -> tuple[NumberedFiles | None, NumberedFiles | None, Path | None]:
    """A video's fixation maps (``fixMap_%05d.mat``), continuous maps (``maps/eyeMap_%05d``)
    and audio (``<vid>.wav``); None for what is absent."""
    ann = root / "annotations" / dataset / vid
    fix = numbered(ann, "fixMap_", (".mat",))
    maps = numbered(ann / "maps", "eyeMap_", FRAME_SUFFIXES)
    wav = root / "video_audio" / dataset / vid / f"{vid}.wav"
    return fix, maps, (wav if wav.is_file() else None)


def _read_video(
    root: Path,
    dataset: str,
    folder: Path,
    folds: dict[str, tuple[str, int, int, float]],
    listing: Listing,
) -> None:
    vid = folder.name
    if vid not in folds:
        listing.skip(dataset, vid, "not in any fold list (fps unknown)")
        return
    split, fold, listed_frames, fps = folds[vid]
    frames = video_frames(folder)
    problem = frames_problem(folder, frames, listed_frames)
    if problem is not None or frames is None:
        listing.fail(dataset, vid, problem or f"{folder}: no img_*.jpg frames")
        return
    fix, maps, wav = annotation_files(root, dataset, vid)
    listing.records.append(
        VideoRecord(
            dataset=dataset,
            video_id=vid,
            split=split,
            fold=fold,
            frames=frames.pattern,
            first_index=frames.first,
            audio=str(wav) if wav else None,
            fps=fps,
            num_frames=frames.count,
            fixations=(
                FixationSource(kind="mat", pattern=fix.pattern, first_index=fix.first)
                if fix
                else FixationSource()
            ),
            maps_pattern=maps.pattern if maps else None,
        )
    )
