"""Storage locations: a local folder, a shared filesystem, an object store (ARCHITECTURE.md).

Every job takes its data, shard, checkpoint and output locations as one string: a path
(``runs``, ``/mnt/shared/avrsp``) or a URI that pyarrow's filesystems open
(``s3://bucket/prefix``, ``gs://…``). An S3-compatible store (MinIO, Ceph, a loopback
test server) is reached through the standard ``AWS_ENDPOINT_URL`` variable, which
pyarrow honours; credentials come from the usual ``AWS_*`` variables or the machine's role.

**Atomicity.** On a file system a file is written under a temporary name and renamed
(:mod:`avrsp.io`). An object store has no rename, but every object appears whole or not
at all when its upload ends; so a *group* of objects (one video's shards, a checkpoint)
is committed by one more object written after all of them, and readers trust only what a
commit lists: a video's shards by its done-marker (``done/<key>.json`` names its files),
a checkpoint by Ray Train's registration of it. An interrupted upload leaves objects that
no commit names; the next run deletes them before it writes that group again.

The helpers take and return location strings, so one code path serves both kinds; a
location that is a URI keeps its scheme (``s3://bucket/a`` joined with ``b`` is
``s3://bucket/a/b``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from avrsp.errors import InputError
from avrsp.io import write_bytes as _write_local_bytes

Location = str


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for ``scheme://…`` other than ``file://``: an object store or remote filesystem."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def as_location(location: str | os.PathLike[str]) -> Location:
    """A URI unchanged; a local path made absolute (``file://`` prefixes removed)."""
    text = os.fspath(location)
    if is_uri(text):
        return text.rstrip("/")
    return str(Path(text.removeprefix("file://")).expanduser().resolve())


def join(location: str | os.PathLike[str], *parts: str) -> Location:
    text = os.fspath(location)
    if is_uri(text):
        return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return str(Path(text, *parts))


def name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def resolve(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(pyarrow filesystem, path within it)``; InputError naming the location otherwise."""
    from pyarrow import fs as pafs

    text = os.fspath(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), as_location(text)
    try:
        filesystem, path = pafs.FileSystem.from_uri(text)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with its own words
        raise InputError(f"{text}: cannot open this storage location ({exc})") from None
    return filesystem, path.rstrip("/")


def _info(location: str) -> Any:
    filesystem, path = resolve(location)
    try:
        return filesystem.get_file_info(path)
    except OSError as exc:
        raise InputError(f"{location}: cannot reach this storage location ({exc})") from None


def is_file(location: str) -> bool:
    from pyarrow import fs as pafs

    return _info(location).type == pafs.FileType.File


def is_dir(location: str) -> bool:
    """A folder; on an object store, a prefix that holds at least one object."""
    from pyarrow import fs as pafs

    if not is_uri(location):
        return Path(location).is_dir()
    info = _info(location)
    if info.type in (pafs.FileType.Directory, pafs.FileType.File):
        return info.type == pafs.FileType.Directory
    return bool(list_files(location, limit=1))


def list_files(location: str, *, suffix: str = "", limit: int | None = None) -> list[Location]:
    """The files under ``location`` (recursively, sorted), hidden names (``.x``) left out."""
    from pyarrow import fs as pafs

    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    try:
        infos = filesystem.get_file_info(selector)
    except OSError as exc:
        raise InputError(f"{location}: cannot list this storage location ({exc})") from None
    found = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.endswith(suffix):
            continue
        relative = info.path[len(path) :].lstrip("/")
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        found.append(join(location, relative))
        if limit is not None and len(found) >= limit:
            break
    return sorted(found)


def list_dirs(location: str) -> list[str]:
    """The names of the folders (prefixes) directly under ``location``."""
    from pyarrow import fs as pafs

    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, recursive=False, allow_not_found=True)
    try:
        infos = filesystem.get_file_info(selector)
    except OSError as exc:
        raise InputError(f"{location}: cannot list this storage location ({exc})") from None
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def size(location: str) -> int:
    return int(_info(location).size or 0)


def read_bytes(location: str) -> bytes:
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"{location}: cannot read ({exc})") from None


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def read_json(location: str) -> Any:
    try:
        return json.loads(read_text(location))
    except ValueError as exc:
        raise InputError(f"{location}: not valid JSON ({exc})") from None


def write_bytes(location: str, data: bytes) -> Location:
    """Write a whole file or object: renamed into place locally, one upload on a store."""
    if not is_uri(location):
        return str(_write_local_bytes(location, data))
    filesystem, path = resolve(location)
    try:
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
    except OSError as exc:
        raise InputError(f"{location}: cannot write ({exc})") from None
    return location


def write_text(location: str, text: str) -> Location:
    return write_bytes(location, text.encode("utf-8"))


def write_json(location: str, data: Any, *, indent: int | None = 2) -> Location:
    return write_text(location, json.dumps(data, indent=indent) + "\n")


def upload(local: str | os.PathLike[str], location: str) -> Location:
    """Copy one local file to ``location`` (a rename-free single upload on a store)."""
    from pyarrow import fs as pafs

    if not is_uri(location):
        target = Path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(local, temp)
        os.replace(temp, target)
        return location
    filesystem, path = resolve(location)
    try:
        pafs.copy_files(os.fspath(local), path, destination_filesystem=filesystem)
    except OSError as exc:
        raise InputError(f"{location}: cannot upload {local} ({exc})") from None
    return location


def delete(location: str) -> None:
    """Remove a file or object; nothing when it is not there."""
    filesystem, path = resolve(location)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_file(path)


def delete_tree(location: str) -> None:
    """Remove a folder (or every object under a prefix); nothing when it is not there."""
    if not is_uri(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    filesystem, path = resolve(location)
    with contextlib.suppress(FileNotFoundError):
        filesystem.delete_dir_contents(path, missing_dir_ok=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        filesystem.delete_dir(path)


def check_writable(location: str, what: str = "--out") -> Location:
    """Create ``location`` (a folder) and prove it writable before any work."""
    location = as_location(location)
    probe = join(location, f".write-test-{os.getpid()}")
    try:
        if not is_uri(location):
            Path(location).mkdir(parents=True, exist_ok=True)
        write_bytes(probe, b"")
        delete(probe)
    except (OSError, InputError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(
            f"{what} {location}: output folder cannot be created or written ({reason})"
        ) from None
    return location


@contextlib.contextmanager
def local_file(location: str) -> Iterator[Path]:
    """A local path to read ``location`` from: the file itself, or a downloaded copy."""
    if not is_uri(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="avrsp-") as folder:
        target = Path(folder) / name(location)
        target.write_bytes(read_bytes(location))
        yield target


@contextlib.contextmanager
def staged_output(
    location: str | os.PathLike[str], *, overwrite: bool = False, last: tuple[str, ...] = ()
) -> Iterator[Path]:
    """The local folder a job writes its outputs into.

    For a path, the folder itself (the job keeps its own rules). For an object store, a
    temporary folder whose files are uploaded under ``location`` when the job ends without
    an error (nothing is uploaded when it fails), the files named in ``last`` after all the
    others: they are the commit, a reader that finds them finds everything. A prefix that
    holds objects is refused unless ``overwrite``.
    """
    text = os.fspath(location)
    if not is_uri(text):
        yield Path(text)
        return
    if not overwrite and list_files(text, limit=1):
        raise InputError(
            f"--out {text}: the prefix holds objects; pass --overwrite to replace them"
        )
    check_writable(text)
    with tempfile.TemporaryDirectory(prefix="avrsp-out-") as folder:
        yield Path(folder)
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name in last)  # stable: the commit files at the end
        for path in files:
            upload(path, join(text, path.relative_to(folder).as_posix()))
