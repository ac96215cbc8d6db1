"""Quiet by default: the frameworks' logs go to a file, the terminal shows our own lines.

Ray (core, Data, Train) and MLflow log at INFO to the terminal: execution plans, progress
tables every few seconds, "Started monitoring system metrics", database migrations. For a
person running ``avrsp demo`` these bury the few lines that say what is happening. So
:func:`route_framework_logs`, called by the ``avrsp`` command before it runs a
subcommand, sends every record of those frameworks to one log file and lets only their
errors through to the terminal; ``--verbose`` leaves them as the frameworks set them.

The routing works through what each framework offers for it, so it also reaches the Ray
worker processes (they inherit the environment): ``RAY_DATA_LOGGING_CONFIG`` (a logging
config for the ``ray.data`` loggers, written next to the log file),
``RAY_DATA_DISABLE_PROGRESS_BARS``, ``MLFLOW_CONFIGURE_LOGGING=false`` (MLflow's records
then propagate to the root logger, which writes them to the file). Ray core configures its
``ray`` logger once, when ``ray`` is first imported; that logger's terminal handler is
replaced here after the import. What Ray's worker processes print (Ray Train's and
MLflow's records there, Ray's helper actors, C++ lines) is copied to the terminal by Ray;
``AVRSP_LOG_FILE`` tells :func:`preprocessing.ray_runtime.init_ray` to send those lines to
the file too, all but the project's own (that module's docstring).

The log file: ``$AVRSP_LOG_DIR/<command>-<UTC time>.log``, ``AVRSP_LOG_DIR`` defaulting to
``runs/logs`` under the current folder.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from preprocessing.ray_runtime import LOG_FILE_ENV

#: This project's loggers: their warnings reach the terminal too (everyone's errors do).
PROJECT_LOGGERS = ("avrsp", "preprocessing", "workflows", "tuning")

_RAY_DATA_SUFFIX = ".ray-data-logging.json"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    return Path(os.environ.get("AVRSP_LOG_DIR", "runs/logs"))


def route_framework_logs(command: str, *, folder: Path | None = None) -> Path:
    """Send the frameworks' log records to a new file under ``folder``; returns its path."""
    folder = (folder or log_dir()).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.log"

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    # The Ray workers' output: ours to the terminal, the rest to this file (ray_runtime).
    os.environ[LOG_FILE_ENV] = str(path)
    # A user's own Ray Data logging config wins; one of ours from an earlier command in
    # this process (tests run several) is replaced, so each command logs to its own file.
    # In a job on a cluster (avrsp submit) the workers on other nodes cannot open a file of
    # this node: they keep Ray Data's own logging (Ray's session logs of their node).
    current = os.environ.get("RAY_DATA_LOGGING_CONFIG", "")
    in_job = bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))
    if in_job and current.endswith(_RAY_DATA_SUFFIX):
        del os.environ["RAY_DATA_LOGGING_CONFIG"]
    elif not in_job and (not current or current.endswith(_RAY_DATA_SUFFIX)):
        os.environ["RAY_DATA_LOGGING_CONFIG"] = str(_ray_data_config(folder, path))

    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter(_FORMAT))
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    ours = logging.StreamHandler(sys.stderr)
    ours.setLevel(logging.WARNING)
    ours.addFilter(lambda r: r.levelno < logging.ERROR and r.name.split(".")[0] in PROJECT_LOGGERS)
    ours.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [h for h in root.handlers if getattr(h, "_avrsp_route", False)]:
        root.removeHandler(handler)  # an earlier command's, in this process
        handler.close()
    for handler in (to_file, errors, ours):
        handler._avrsp_route = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.captureWarnings(True)

    import ray  # configures the "ray" logger (once per process), replaced below

    del ray
    core = logging.getLogger("ray")
    for handler in list(core.handlers):
        core.removeHandler(handler)
    core.propagate = True
    return path


def _ray_data_config(folder: Path, path: Path) -> Path:
    """A logging config for Ray Data (its own format: the keys of ``logging.config``)."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": _FORMAT}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "formatter": "plain", "filename": str(path)},
            "console": {"class": "logging.StreamHandler", "formatter": "plain", "level": "ERROR"},
        },
        "loggers": {
            "ray.data": {"level": "INFO", "handlers": ["file", "console"], "propagate": False}
        },
    }
    out = folder / f"{path.stem}{_RAY_DATA_SUFFIX}"
    out.write_text(json.dumps(config, indent=2))
    return out


def unroute() -> None:
    """``--verbose``: the workers' output as Ray prints it (no file set by an earlier
    command of this process)."""
    os.environ.pop(LOG_FILE_ENV, None)
