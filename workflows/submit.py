"""``avrsp submit`` and ``avrsp jobs``: the same commands on a Ray cluster (Ray Jobs API).

:func:`submit` sends ``avrsp COMMAND ARGS`` to a cluster's job server as ``python -m
workflows.cli COMMAND ARGS``, with a ``runtime_env`` that carries

- the project as its ``working_dir`` (this checkout, minus :data:`EXCLUDES`: data, runs,
  virtualenvs, caches, pretrained weights, secret files such as ``.env``), so the cluster
  runs exactly the code that was submitted; its nodes need the dependencies only (the
  image of ``cluster/Dockerfile``);
- the environment the job needs to find its services: :data:`FORWARDED_ENV` when set
  here (the MLflow server, the object store's endpoint and region), plus every ``--env``.
  Secrets are not forwarded unless named with ``--env``: a job's runtime_env is visible to
  anyone who can read the dashboard; on a cluster, credentials belong to the nodes
  (an instance role, a Kubernetes Secret). So a forwarded URI loses a ``user:password@``
  it holds, with a warning (:func:`without_credentials`).

Before anything is sent, the command's arguments are checked here as the command itself
would check them: its parser, then its ``check(args)`` where it has one (the training
config, the options of preprocess, evaluate, predict), without touching the data.

It then streams the job's logs and returns the job's exit status. Ray's token
authentication (on by default for clusters since Ray 2.59) needs nothing from the user
beyond the token: ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` (``ray get-auth-token`` on
the head prints it); when one is there, token mode is switched on for the client.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from avrsp.errors import AVRSPError, ConfigError, InputError

#: The commands that can be submitted (the ones that do a job's work).
SUBMITTABLE = ("preprocess", "train", "tune", "evaluate", "predict")
#: Kept out of the uploaded working_dir (Ray's gitignore-style patterns).
EXCLUDES = [  # .git and .venv Ray leaves out by itself, and what .gitignore names
    "venv", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
    "runs", "data", "demo", "out", "mlruns", "mlruns.db", "*.db", "*.parquet", "*.mp4",
    "*.avi", "*.pt", "*.pth", "*.npz", "build", "dist", "docs/images",
    "/weights",  # pretrained backbones (docs/TRAINING.md): large, and not ours to copy
    ".env", ".env.*", "*.pem", "*.key",  # secrets: the job gets them from its nodes
]  # fmt: skip
#: Variables sent along when they are set here: where the services are, never a secret.
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
#: The options of the submittable commands whose value is a storage location.
LOCATION_OPTIONS = ("--data", "--out", "--storage", "--source", "--model", "--init-from")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: ``avrsp submit``'s exit status for a job that was stopped (``avrsp jobs stop``).
STOPPED_EXIT = 3


def project_root() -> Path:
    """The folder that holds the ``avrsp``, ``preprocessing``, ``workflows`` packages."""
    return Path(__file__).resolve().parents[1]


def dashboard_address(address: str | None) -> str:
    """The job server's HTTP address: ``address``, else ``RAY_ADDRESS``; ``HOST:PORT`` and
    ``ray://`` addresses are not the job server's (it is the dashboard's, port 8265)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError(
            "no cluster given: pass --address http://HEAD:8265 (the Ray dashboard) or set "
            "RAY_ADDRESS; to run on this machine, leave out 'submit'"
        )
    if not re.match(r"^https?://", address):
        raise ConfigError(
            f"--address {address}: the Jobs API is the dashboard's HTTP address, e.g. "
            "http://HEAD:8265 (not the GCS address HOST:6379 or ray://)"
        )
    return address.rstrip("/")


def enable_token_auth() -> None:
    """Switch this process to Ray's token mode when a token is at hand and no mode is set."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def client(address: str | None) -> Any:
    """A ``JobSubmissionClient`` for the cluster; ConfigError naming it when unreachable."""
    url = dashboard_address(address)
    enable_token_auth()  # before Ray is imported: it reads the mode once
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except Exception as exc:  # ConnectionError, or Ray's RuntimeError around it
        raise ConfigError(f"cannot reach the Ray job server at {url}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    if "401" in reason or "403" in reason or "token" in reason.lower():
        reason += (
            " — the cluster uses token authentication: put its token (`ray get-auth-token` "
            "on the head node) in RAY_AUTH_TOKEN or ~/.ray/auth_token"
        )
    return reason


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` (that value) or ``--env KEY`` (its value here)."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE or KEY")
        if not sep:
            if key not in os.environ:
                raise ConfigError(f"--env {key}: not set in this shell (give KEY=VALUE)")
            value = os.environ[key]
        env[key] = value
    return env


def local_path_warnings(args: Sequence[str]) -> list[str]:
    """Relative paths given to location options: on the cluster they would be read in the
    job's working_dir (the uploaded copy of the project), which is rarely what was meant."""
    warnings = []
    for i, arg in enumerate(args):
        option, sep, value = arg.partition("=")
        if option not in LOCATION_OPTIONS:
            continue
        value = value if sep else (args[i + 1] if i + 1 < len(args) else "")
        path = value.split(":", 1)[1] if option == "--source" and ":" in value else value
        from preprocessing.storage import is_uri

        if path and not is_uri(path) and not path.startswith(("runs:/", "models:/", "/")):
            warnings.append(
                f"{option} {value}: a relative path is read on the cluster, inside the job's "
                "copy of the project; give an object-store URI (s3://…) or an absolute path "
                "on a filesystem the nodes share"
            )
    return warnings


def without_credentials(value: str) -> str:
    """``value`` without the ``user:password@`` of a URI (``http://u:p@host:5000`` →
    ``http://host:5000``); anything else unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or "@" not in parts.netloc:
        return value
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def check_command(command: str, args: Sequence[str], working_dir: Path) -> None:
    """``avrsp COMMAND ARGS`` checked as the job would check it before its work starts: the
    parser, then the command module's ``check(args)`` (its config and options; no data is
    read). A relative ``--config`` is read from ``working_dir``, as the job reads it; an
    absolute one that is not on this machine (a path inside the cluster's image) is left
    to the job."""
    from workflows.cli import build_parser

    try:
        parsed = build_parser().parse_args([command, *args])
    except SystemExit as exc:
        raise ConfigError(f"avrsp {command}: invalid arguments (see above)") from exc
    check = getattr(importlib.import_module(f"workflows.commands.{command}"), "check", None)
    config = getattr(parsed, "config", None)
    if config and not Path(config).is_absolute():
        parsed.config = str(working_dir / config)
        if not Path(parsed.config).is_file():
            raise ConfigError(
                f"avrsp {command}: --config {config}: not in the project sent as the job's "
                f"code ({working_dir}); give a path there or an absolute path on the nodes"
            )
    elif config and not Path(config).is_file():
        return  # on the nodes only: the job checks it
    if check is not None:
        try:
            check(parsed)
        except AVRSPError as exc:
            raise ConfigError(f"avrsp {command}: {exc}") from None


@dataclass
class Submission:
    job_id: str
    address: str
    entrypoint: str
    runtime_env: dict[str, Any]
    #: What the user should know (credentials left out of a forwarded URI).
    warnings: list[str] = field(default_factory=list)


def build_submission(
    command: str,
    args: Sequence[str],
    *,
    address: str | None = None,
    env: dict[str, str] | None = None,
    working_dir: Path | None = None,
    job_id: str | None = None,
) -> Submission:
    """What :func:`submit` sends (no network): checked command, entrypoint, runtime_env."""
    if command not in SUBMITTABLE:
        raise ConfigError(
            f"avrsp submit {command}: only {', '.join(SUBMITTABLE)} run as cluster jobs"
        )
    working_dir = working_dir or project_root()
    check_command(command, args, working_dir)  # here and now rather than on the cluster
    forwarded, warnings = {}, []
    sent = []  # the arguments, without credentials in URIs (--mlflow-uri http://u:p@host)
    for arg in args:
        option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        clean = option + eq + without_credentials(value)
        if clean != arg:
            warnings.append(
                f"{clean}: the user name and password given in it are left out of the job's "
                "command (it shows on the dashboard); give them the job another way: the "
                "nodes' environment, or --env (cluster/README.md)"
            )
        sent.append(clean)
    args = sent
    for key in FORWARDED_ENV:
        value = os.environ.get(key)
        if not value:
            continue
        forwarded[key] = without_credentials(value)
        if forwarded[key] != value:
            warnings.append(
                f"{key} holds a user name and password: sent to the job as {forwarded[key]} "
                "without them (a job's environment shows on the dashboard); give the job "
                + (
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD another way: "
                    if key.startswith("MLFLOW_")
                    else "the credentials another way: "
                )
                + "the nodes' environment, or --env (cluster/README.md)"
            )
    runtime_env = {
        "working_dir": str(working_dir),
        "excludes": list(EXCLUDES),
        "env_vars": {
            **forwarded,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            # Ray Train's copy of print into its logger: each worker line twice in the logs
            "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        },
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Submission(
        job_id=job_id or f"avrsp-{command}-{stamp}-{uuid.uuid4().hex[:6]}",
        address=dashboard_address(address),
        entrypoint=shlex.join(["python", "-m", "workflows.cli", command, *args]),
        runtime_env=runtime_env,
        warnings=warnings,
    )


def submit(
    submission: Submission,
    *,
    wait: bool = True,
    echo: Callable[[str], None] = lambda line: print(line, end="", flush=True),
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> int:
    """Submit, then (``wait``) stream the logs and return the job's exit status:
    0 succeeded, the driver's exit code (or 1) when it failed, 3 when it was stopped."""
    jobs = client(submission.address)
    for name in ("ray._private.runtime_env", "ray.dashboard.modules.dashboard_sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)  # a line per ignored file
    # "'.git' is now ignored by default": true, and said on every submission
    logging.getLogger("ray._private.runtime_env.working_dir").setLevel(logging.ERROR)
    try:
        job_id = jobs.submit_job(
            entrypoint=submission.entrypoint,
            submission_id=submission.job_id,
            runtime_env=submission.runtime_env,
        )
    except Exception as exc:
        raise ConfigError(f"submitting to {submission.address} failed: {_reason(exc)}") from None
    log(f"avrsp submit: job {job_id} submitted to {submission.address}")
    if not wait:
        log(f"follow it with: avrsp jobs logs {job_id} --follow --address {submission.address}")
        return 0
    try:
        follow(jobs, job_id, echo)
    except KeyboardInterrupt:
        log(f"avrsp submit: stopped following; job {job_id} goes on (avrsp jobs stop {job_id})")
        return 130
    return exit_status(jobs, job_id, log)


def follow(jobs: Any, job_id: str, echo: Callable[[str], None]) -> None:
    """Stream the job's logs until it ends."""

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            echo(chunk)

    asyncio.run(tail())


def wait_until_done(jobs: Any, job_id: str, timeout_s: float = 60.0) -> str:
    """The job's terminal status (the log stream can end a moment before the status)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(jobs.get_job_status(job_id).value)
        if status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def exit_status(jobs: Any, job_id: str, log: Callable[[str], None]) -> int:
    status = wait_until_done(jobs, job_id)
    info = jobs.get_job_info(job_id)
    code = getattr(info, "driver_exit_code", None)
    log(f"avrsp submit: job {job_id} {status}" + (f": {info.message}" if info.message else ""))
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return STOPPED_EXIT
    return int(code) if code not in (None, 0) else 1


def list_jobs(address: str | None) -> list[dict[str, str]]:
    """The cluster's jobs, newest first: id, status, start time, entrypoint."""
    rows = []
    for job in client(address).list_jobs():
        start = (job.start_time or 0) / 1000
        rows.append(
            {
                "id": job.submission_id or job.job_id or "",
                "status": str(job.status.value),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
                if start
                else "",
                "entrypoint": job.entrypoint or "",
                "_t": start,
            }
        )
    rows.sort(key=lambda r: r.pop("_t"), reverse=True)
    return rows


def job_logs(address: str | None, job_id: str) -> str:
    jobs = client(address)
    try:
        return jobs.get_job_logs(job_id)
    except Exception as exc:
        raise InputError(f"job {job_id}: {_reason(exc)}") from None


def stop_job(address: str | None, job_id: str) -> bool:
    jobs = client(address)
    try:
        return bool(jobs.stop_job(job_id))
    except Exception as exc:
        raise InputError(f"job {job_id}: {_reason(exc)}") from None
