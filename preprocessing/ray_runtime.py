"""Starting or joining Ray: the one place every job does it.

Without an address (and without ``RAY_ADDRESS``) a local Ray starts for the run, without
its dashboard. With one, the job joins that cluster and ships this project's packages to
its workers (``runtime_env.py_modules``): a cluster's nodes need not have the project
installed, only its dependencies.

A local Ray is guarded (Linux): Ray kills its GCS and raylet when this process dies
(``PR_SET_PDEATHSIG``), but not the dashboard agent and runtime-env agent the raylet
starts. When the raylet dies unexpectedly they try for 60 s to report it to the (dead)
GCS, in calls that block their event loop and with it their SIGTERM handler (Ray 2.60,
``ray._private.process_watcher``). A small watcher process, started before Ray, notes the
Ray processes below this one as they appear, and when this process has ended (normally or
by SIGKILL) kills those still running, within about a second.

Quiet workers: Ray copies every line its worker processes write to the driver's terminal
(``log_to_driver``): Ray Train's and MLflow's INFO records, warnings of Ray's own helper
actors, C++ ``core_worker.cc`` lines. When the ``avrsp`` command routes the frameworks'
logs to a file (workflows/logs.py sets ``AVRSP_LOG_FILE``), :func:`init_ray` replaces
Ray's copier: a worker's line reaches the terminal only when it is one of this project's
own (it starts with ``[avrsp`` or ``[train ``, as the training loop's progress lines do),
printed as in a run without Ray; every other line goes to the log file with the name of
the process that wrote it. Ray Train's copy of ``print`` into its logger (which showed
every line twice) is turned off for the job's workers (``RAY_TRAIN_ENABLE_PRINT_PATCH=0``:
inherited by a local Ray's, in the runtime_env on a cluster and in ``avrsp submit``).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the guard's own import, not the jobs'
    import psutil


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    packages: tuple[str, ...] = ("avrsp", "preprocessing"),
    worker_lines: bool = True,
) -> None:
    """Start or join Ray once per process (a second call does nothing).

    ``num_cpus``: the logical CPUs of a local Ray (default: the machine's). ``packages``:
    what a cluster's workers import from this project (the training job adds
    ``workflows``). ``worker_lines=False``: none of the workers' lines on this process's
    terminal, not even the project's own (a sweep prints a line per trial instead); they
    go to the log file when the command has one, else stay in Ray's session logs.
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    log_file = os.environ.get(LOG_FILE_ENV)
    log_to_driver = worker_lines or bool(log_file)
    if not address:
        if log_file:  # the local Ray's workers inherit this process's environment
            os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
        _start_guard(str(Path(ray.__file__).parent))
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
    elif os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        # The driver of a submitted job (avrsp submit): the job's runtime_env already ships
        # the project as its working_dir, which every worker of the job imports from.
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        modules = [str(Path(importlib.import_module(p).__file__).parent) for p in packages]
        runtime_env: dict[str, Any] = {"py_modules": modules}
        if log_file:
            runtime_env["env_vars"] = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    if log_file:
        _route_worker_output(Path(log_file), own_lines=worker_lines)


# --------------------------------------------------------------------------- worker output

#: Set by workflows/logs.py: the log file the frameworks' records go to (module docstring).
LOG_FILE_ENV = "AVRSP_LOG_FILE"
#: A worker's line that is this project's own: ``[avrsp …]``, ``[train RUN] …``.
OWN_LINE = re.compile(r"^\[(avrsp|train) ")


def _route_worker_output(log_file: Path, *, own_lines: bool) -> None:
    """Replace Ray's copier of the workers' output (module docstring). Ray 2.60 keeps it as
    the handler ``ray_print_logs`` of ``global_worker_stdstream_dispatcher``, which gets a
    batch ``{"lines", "pid", "actor_name", "task_name", "is_err", …}`` at a time; where a
    Ray without it runs, its copier stays."""
    from ray._private import worker as ray_worker

    dispatcher = getattr(ray_worker, "global_worker_stdstream_dispatcher", None)
    if dispatcher is None or not hasattr(dispatcher, "remove_handler"):
        return
    lock = threading.Lock()

    def route(batch: dict[str, Any]) -> None:
        who = batch.get("actor_name") or batch.get("task_name") or "worker"
        rest = []
        for line in batch.get("lines", ()):
            if own_lines and OWN_LINE.match(line):
                print(line, file=sys.stderr if batch.get("is_err") else sys.stdout, flush=True)
            else:
                rest.append(f"({who} pid={batch.get('pid')}) {line}\n")
        if rest:
            with lock, open(log_file, "a", encoding="utf-8") as out:
                out.writelines(rest)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", route)


# --------------------------------------------------------------------------- the guard

_GUARD_PIPES: list[int] = []  # write ends, open until this process ends
# Polls of the process table (6 ms each on a machine of 160 processes): often while Ray
# starts its services and agents, then seldom. An agent started after the last poll is
# still found at the end, by its raylet's pid.
_FAST_POLL_S, _SLOW_POLL_S, _FAST_FOR_S = 0.25, 2.0, 30.0
_GRACE_S = 1.0  # for Ray's own shutdown to finish before the rest is killed


def _start_guard(ray_dir: str) -> None:
    """Start the watcher of this process's local Ray (module docstring); Linux only."""
    if not sys.platform.startswith("linux"):
        return
    read, write = os.pipe()  # not inherited by Ray's processes (close_fds, O_CLOEXEC)
    root = str(Path(__file__).resolve().parents[1])
    path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    subprocess.Popen(
        [sys.executable, "-m", "preprocessing.ray_runtime", str(os.getpid()), ray_dir],
        stdin=read,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is for this process, not the guard
        env=env,
    )
    os.close(read)
    _GUARD_PIPES.append(write)


def _command(proc: psutil.Process) -> list[str]:
    """The command line, or [] for a process gone or not ours to read."""
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _guard(parent: int, ray_dir: str) -> None:
    """Watch ``parent`` until its end of the pipe on stdin closes, noting the Ray processes
    below it (their program is in ``ray_dir``, or Ray renamed them ``ray::…``); then kill
    those still running (SIGKILL, after :data:`_GRACE_S`)."""
    import select
    import signal
    import time

    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.monotonic()
    seen: dict[int, psutil.Process] = {}
    raylets: set[int] = set()
    try:
        owner = psutil.Process(parent)
    except psutil.Error:
        return
    while True:
        fast = time.monotonic() - started < _FAST_FOR_S
        ready, _, _ = select.select([0], [], [], _FAST_POLL_S if fast else _SLOW_POLL_S)
        if ready and not os.read(0, 64):
            break  # the parent has ended: its end of the pipe is closed
        try:
            children = owner.children(recursive=True)
        except psutil.Error:
            break
        for proc in children:
            if proc.pid in seen:
                continue
            args = _command(proc)
            if " ".join(args[:3]).startswith("ray::") or ray_dir in " ".join(args[:3]):
                seen[proc.pid] = proc
                if os.path.basename(args[0]) == "raylet":
                    raylets.add(proc.pid)
    time.sleep(_GRACE_S)
    # Agents started after the last poll were not seen: they carry their raylet's pid.
    for proc in psutil.process_iter() if raylets else ():
        try:
            if proc.pid not in seen and int(proc.environ().get("RAY_RAYLET_PID", 0)) in raylets:
                seen[proc.pid] = proc
        except (psutil.Error, ValueError):
            pass
    for proc in seen.values():
        try:
            if proc.is_running():  # the same process (pid and start time), not a reused pid
                proc.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    _guard(int(sys.argv[1]), sys.argv[2])
