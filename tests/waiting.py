"""``wait_until``: the one polling loop of the tests (a process starting, a file appearing,
a cluster's nodes joining)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What was waited for did not happen in time (a test failure, naming it)."""


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    interval_s: float,
    what: str | Callable[[], str],
    *,
    not_yet: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``predicate()`` every ``interval_s`` until it returns something true; return that.

    An exception of a type in ``not_yet`` counts as false (a server that does not answer
    yet); any other ends the wait, which is how a predicate stops it early (the process it
    waits on has exited). After ``timeout_s`` it raises :class:`WaitTimeout` naming
    ``what``, or the text ``what()`` makes then (a log's tail, what is still alive).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except not_yet:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise WaitTimeout(f"timed out after {timeout_s:.0f} s waiting for {text}")
        time.sleep(interval_s)
