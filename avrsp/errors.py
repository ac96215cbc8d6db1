"""Error types for people: each names the file or field and the problem."""

from __future__ import annotations

import errno
import os
import re


class AVRSPError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(AVRSPError, ValueError):
    """A configuration value is invalid or a config file cannot be read."""


class WeightsError(AVRSPError):
    """A weights file is missing, unreadable or does not fit the model."""


class InputError(AVRSPError, ValueError):
    """An input array, file or video cannot be used as given."""


class StorageError(AVRSPError):
    """An output could not be written where it was asked for: the disk is full or over
    quota, the folder is read-only or refused, or the device fails. Its text is one line
    naming the file and the cause (:func:`storage_error`); ``errno`` the cause's code."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


#: The causes that are the storage's, not the program's: their words and the way out.
STORAGE_CAUSES = {
    errno.ENOSPC: ("no space left on device", "free space there or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space within the quota or write elsewhere"),
    errno.EIO: ("input/output error", "check the device (dmesg) or write elsewhere"),
    errno.EROFS: ("read-only file system", "write elsewhere"),
    errno.EACCES: ("permission denied", "check the permissions or write elsewhere"),
    errno.EPERM: ("operation not permitted", "check the permissions or write elsewhere"),
    errno.EFBIG: ("file too large", "write elsewhere"),
}
# "[Errno 28] No space left on device: '/x/y'" (a copy: "'/src' -> '/dst'"): how an
# OSError reads once made text (a shutil.Error's list, a worker's error that Ray could only
# pass on as a string; pyarrow writes "[errno 28]" into an OSError without an errno).
_ERRNO_TEXT = re.compile(
    r"\[Errno (\d+)\][^:'\"\n]*(?::\s*'([^'\n]+)'(?:\s*->\s*'([^'\n]+)')?)?", re.IGNORECASE
)


def storage_error(
    exc: BaseException, where: str | os.PathLike[str] | None = None
) -> StorageError | None:
    """The :class:`StorageError` of the storage failure behind ``exc``, or None when there
    is none (``exc`` is then the program's to report).

    Errors reach the command wrapped: chained (``raise … from``), inside a Ray task's
    ``RayTaskError`` (``.cause``), Ray Train's ``WorkerGroupError`` (``.worker_failures``)
    or ``ControllerError``, an ``ExceptionGroup``, or as text in a ``shutil.Error``'s list
    of ``(src, dst, why)``; all are searched for an ``OSError`` whose ``errno`` is one of
    :data:`STORAGE_CAUSES`. The message names its file (``where`` when it names none: PIL
    and ``zipfile`` raise ``ENOSPC`` without one) so that the user sees one line, not a
    traceback of the library that happened to write."""
    found = _find(exc, set())
    if found is None or isinstance(found, StorageError):
        return found
    code, path = found
    words, way_out = STORAGE_CAUSES[code]
    path = path or (os.fspath(where) if where is not None else None)
    return StorageError(f"{path}: {words}; {way_out}" if path else f"{words}; {way_out}", code)


def cause_in_text(text: str) -> int | None:
    """The code of the storage cause a program's message names in words (ffmpeg's "No
    space left on device"), or None."""
    lower = text.lower()
    return next((code for code in STORAGE_CAUSES if os.strerror(code).lower() in lower), None)


def _find(
    exc: BaseException | None, seen: set[int]
) -> StorageError | tuple[int, str | None] | None:
    if exc is None or id(exc) in seen:
        return None
    seen.add(id(exc))
    if isinstance(exc, StorageError):
        return exc  # already said (a worker's, passed on)
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code in STORAGE_CAUSES:
        # A copy names source and destination: what could not be written is the latter.
        name = exc.filename if exc.filename2 is None else exc.filename2
        return code, os.fsdecode(name) if name is not None else None
    inner: list[BaseException | None] = [getattr(exc, "cause", None), exc.__cause__]
    inner += list(getattr(exc, "worker_failures", {}).values())
    inner += [getattr(exc, "controller_failure", None), exc.__context__]
    inner += list(getattr(exc, "exceptions", ()))
    for each in inner:
        if isinstance(each, BaseException) and (hit := _find(each, seen)) is not None:
            return hit
    for arg in exc.args:  # text: a shutil.Error's [(src, dst, why), …], or a message
        for src_dst_why in arg if isinstance(arg, list) else [(None, None, arg)]:
            why = src_dst_why[-1] if isinstance(src_dst_why, tuple) else None
            m = _ERRNO_TEXT.search(why) if isinstance(why, str) else None
            if m and int(m[1]) in STORAGE_CAUSES:
                return int(m[1]), m[3] or m[2] or src_dst_why[1]
    return None
