"""A real MLflow tracking stack for tests: PostgreSQL, an S3-compatible store, ``mlflow server``.

Each service runs on loopback, on a free port, in one temporary folder (docs/MLFLOW.md,
"A shared server"):

- **PostgreSQL** (``initdb``, ``postgres``, ``pg_isready``, ``pg_ctl`` from
  ``/usr/lib/postgresql/*/bin``, the newest version there): the backend store. It refuses
  to run as root, so under root it runs as the unprivileged user ``nobody``.
- **moto** in server mode (``python -m moto.server``, from ``moto[server]``): the object
  store, with one bucket.
- **mlflow server** with ``--backend-store-uri postgresql://…`` and ``--artifacts-destination
  s3://BUCKET/mlflow``: only the server holds the S3 credentials' endpoint; clients reach
  artifacts through it (``mlflow-artifacts:`` URIs, proxied).

Every service is waited for (``pg_isready``, an HTTP health check); one that exits or does
not answer in time raises :class:`ServiceError` with the tail of its log. Each runs in a
process group of its own, which teardown stops (``pg_ctl stop -m fast`` first for
PostgreSQL) before it removes the folder. A watchdog process does the same if this process
dies without its teardown (killed, or interrupted twice).

Fixtures (session scope, so several test files share one stack; registered for every test
file by ``tests/conftest.py``): ``service_workspace``, ``postgres_server``, ``s3_store`` and
``tracking_stack``, which yields a :class:`TrackingStack` (``.mlflow_uri``, ``.s3_endpoint``,
``.bucket``, ``.postgres_dsn``, ``.env``). They skip, with the reason, where the PostgreSQL
binaries, moto, psycopg2 or boto3 are missing. Outside pytest::

    with start_tracking_stack() as stack:
        subprocess.run([...], env={**os.environ, **stack.env})
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from waiting import WaitTimeout, wait_until

from avrsp.errors import AVRSPError

HOST = "127.0.0.1"
PG_USER = "mlflow"  # the cluster's superuser (trust authentication on loopback only)
PG_DATABASE = "mlflow"
BUCKET = "avrsp-mlflow"
#: Dummy credentials: moto accepts any, boto3 and pyarrow want some.
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
UNPRIVILEGED_USER = "nobody"
START_TIMEOUT_S = 120.0  # mlflow server creates its schema in PostgreSQL on first start
STOP_TIMEOUT_S = 15.0
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


class ServiceError(AVRSPError):
    """A test service did not start or answer; the message holds its log's tail."""


class ServiceUnavailable(ServiceError):
    """What a service needs is not installed here (the fixtures skip on it)."""


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# =========================================================================== processes


_WATCHDOG = """
import os, shutil, signal, sys, time
parent, root, groups = int(sys.argv[1]), sys.argv[2], sys.argv[3]
while os.getppid() == parent:
    time.sleep(0.5)
try:
    with open(groups) as f:
        entries = [line.split() for line in f if line.strip()]
except OSError:
    entries = []
for pgid, sig in entries:
    try:
        os.killpg(int(pgid), int(sig))
    except OSError:
        pass
time.sleep(5)
for pgid, _ in entries:
    try:
        os.killpg(int(pgid), signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(root, ignore_errors=True)
"""


class Workspace:
    """The temporary folder of a set of services, and their watchdog.

    The watchdog is a child process that waits for this process to end; if it ends without
    :meth:`close` (SIGKILL, a second Ctrl-C during teardown), it stops every process group
    registered here (the signal given, then SIGKILL after 5 s) and removes the folder.
    """

    def __init__(self, prefix: str = "avrsp-services-") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        if os.geteuid() == 0:
            self.root.chmod(0o711)  # the unprivileged PostgreSQL user must get through
        self.logs = self.root / "logs"
        self.logs.mkdir()
        self._groups = self.root / "process-groups"
        self._groups.touch()
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.root), str(self._groups)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal does not reach it
        )

    def register(self, pgid: int, stop_signal: int) -> None:
        with open(self._groups, "a") as f:
            f.write(f"{pgid} {int(stop_signal)}\n")

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._watchdog.poll() is None:
            self._watchdog.kill()
            self._watchdog.wait()


def _unprivileged_ids() -> dict[str, Any]:
    """``Popen`` keywords that drop root to ``nobody`` (none when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError as exc:
        raise ServiceUnavailable(
            f"PostgreSQL will not run as root and there is no user {UNPRIVILEGED_USER!r} "
            "to run it as"
        ) from exc
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class Service:
    """One started process, the leader of its own process group, with its log."""

    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM
    before_stop: Callable[[], None] | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def fail(self, problem: str) -> ServiceError:
        return ServiceError(
            f"{self.name} {problem}; last lines of {self.log}:\n{log_tail(self.log)}"
        )

    def wait_ready(self, check: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll ``check()`` until it is true; raise with the log if the process exits first
        or ``timeout_s`` passes."""

        def ready() -> bool:
            if not self.alive():
                raise self.fail(f"exited with status {self.process.returncode} while starting")
            with contextlib.suppress(Exception):  # not answering yet
                return bool(check())
            return False

        try:
            wait_until(ready, timeout_s, 0.25, f"{self.name} to answer")
        except WaitTimeout:
            raise self.fail(f"did not answer within {timeout_s:.0f} s") from None

    def stop(self) -> None:
        """Its own stop command if any, then the stop signal to the group, then SIGKILL."""
        if self.before_stop is not None and self.alive():
            with contextlib.suppress(Exception):
                self.before_stop()
        pgid = self.process.pid  # start_new_session: the leader's pid is the group id
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):  # then SIGKILL
                self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):  # the leader's children, if any are left
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait()


def start_service(
    workspace: Workspace,
    name: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
    **popen: Any,
) -> Service:
    """Start ``command`` in a new session (its own process group), output to ``logs/NAME.log``."""
    log = workspace.logs / f"{name}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **popen,
        )
    workspace.register(process.pid, stop_signal)
    return Service(name, process, log, stop_signal)


def _with_free_ports(start: Callable[[int], Any]) -> Any:
    """``start(port)`` on a fresh free port, again when the port was taken meanwhile."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return start(free_port())
        except ServiceError as exc:
            taken = "already in use" in str(exc) or "Address in use" in str(exc)
            if not taken or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _http_ok(url: str, expect: str | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        body = response.read().decode(errors="replace")
    return response.status == 200 and (expect is None or body.strip() == expect)


# =========================================================================== PostgreSQL


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file() and (d / "postgres").is_file()]
    if not found:
        raise ServiceUnavailable(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb; Debian's "
            "package postgresql)"
        )
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


@dataclass
class Postgres:
    """A PostgreSQL cluster of its own: ``dsn(database)`` connects as its superuser."""

    service: Service
    data: Path
    host: str
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = PG_DATABASE) -> Any:
        """A psycopg2 connection (autocommit) to ``database``."""
        import psycopg2

        conn = psycopg2.connect(self.dsn(database))
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its DSN."""
        with contextlib.closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')  # a name of ours, not a user's
        return self.dsn(name)

    def close(self) -> None:
        self.service.stop()


def start_postgres(workspace: Workspace, host: str = HOST) -> Postgres:
    """``initdb`` a cluster in ``WORKSPACE/postgres`` and run it on a free port of ``host``.

    Made for tests: trust authentication, no fsync, no durable commits (a crash loses the
    database, which the workspace does not keep anyway).
    """
    if importlib.util.find_spec("psycopg2") is None:
        raise ServiceUnavailable("psycopg2 is not installed (pip install psycopg2-binary)")
    bindir = postgres_bin()
    ids = _unprivileged_ids()
    data = workspace.root / "postgres"
    data.mkdir(mode=0o700)
    if ids:
        os.chown(data, ids["user"], ids["group"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    log = workspace.logs / "initdb.log"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
              "-E", "UTF8", "--no-locale", "--no-sync"]  # fmt: skip
    with open(log, "wb") as out:
        done = subprocess.run(
            initdb,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data,
            timeout=START_TIMEOUT_S,
            **ids,
        )
    if done.returncode != 0:
        raise ServiceError(f"initdb failed ({done.returncode}); {log}:\n{log_tail(log)}")

    def start(port: int) -> Postgres:
        command = [
            str(bindir / "postgres"), "-D", str(data), "-h", host, "-p", str(port),
            "-k", str(data),  # the Unix socket stays in the data folder
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients to leave).
        service = start_service(
            workspace, "postgres", command, env=env, cwd=data, stop_signal=signal.SIGINT, **ids
        )
        ready = [str(bindir / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", PG_USER,
                 "-d", "postgres", "-t", "2"]  # fmt: skip
        try:
            service.wait_ready(lambda: subprocess.run(ready, env=env, timeout=5).returncode == 0)
        except BaseException:
            service.stop()
            raise
        stop = [str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "10"]
        service.before_stop = lambda: subprocess.run(
            stop, env=env, cwd=data, capture_output=True, timeout=20, **ids
        )
        return Postgres(service, data, host, port)

    return _with_free_ports(start)


# =========================================================================== object store


@dataclass
class ObjectStore:
    """moto's S3 API on ``endpoint`` with the bucket ``bucket``."""

    service: Service
    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client (boto3, pyarrow) needs to reach this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            **AWS_KEYS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # no wait for an instance-metadata service
        }

    def client(self) -> Any:
        """A boto3 S3 client of this store."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=AWS_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_KEYS["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2")
        found = pages.paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in found for obj in page.get("Contents", [])]

    def close(self) -> None:
        self.service.stop()


def start_object_store(workspace: Workspace, host: str = HOST, bucket: str = BUCKET) -> ObjectStore:
    """moto in server mode on a free port of ``host``, with ``bucket`` created."""
    for module in ("moto", "flask", "flask_cors", "boto3"):
        if importlib.util.find_spec(module) is None:
            raise ServiceUnavailable(f"{module} is not installed (pip install 'moto[server]')")
    folder = workspace.root / "moto"
    folder.mkdir()

    def start(port: int) -> ObjectStore:
        endpoint = f"http://{host}:{port}"
        command = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
        env = {**os.environ, **AWS_KEYS, "AWS_DEFAULT_REGION": REGION}
        service = start_service(workspace, "moto", command, env=env, cwd=folder)
        try:
            service.wait_ready(lambda: _http_ok(f"{endpoint}/moto-api/data.json"))
            store = ObjectStore(service, endpoint, bucket)
            store.client().create_bucket(Bucket=bucket)
        except BaseException:
            service.stop()
            raise
        return store

    return _with_free_ports(start)


# =========================================================================== mlflow server


@dataclass
class TrackingStack:
    """A running ``mlflow server`` over PostgreSQL and the object store.

    ``env``: what a client or a job needs (``MLFLOW_TRACKING_URI`` and the S3 variables;
    MLflow clients need no S3 access, artifacts go through the server, but jobs that write
    to the bucket themselves, e.g. Ray storage, do).
    """

    mlflow: Service
    mlflow_uri: str
    postgres: Postgres
    store: ObjectStore
    database: str
    artifacts_destination: str
    workspace: Workspace
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def s3_endpoint(self) -> str:
        return self.store.endpoint

    @property
    def bucket(self) -> str:
        return self.store.bucket

    @property
    def postgres_dsn(self) -> str:
        return self.postgres.dsn(self.database)

    @property
    def env(self) -> dict[str, str]:
        return {**self.store.env, "MLFLOW_TRACKING_URI": self.mlflow_uri}

    def close(self) -> None:
        """Stop what this stack started (the server; all of it from start_tracking_stack)."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()

    def __enter__(self) -> TrackingStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_mlflow_server(
    workspace: Workspace,
    postgres: Postgres,
    store: ObjectStore,
    *,
    host: str = HOST,
    database: str = PG_DATABASE,
    workers: int = 1,
    extra_args: tuple[str, ...] = (),
) -> TrackingStack:
    """``mlflow server`` on a free port of ``host``: runs and models in PostgreSQL database
    ``database`` (created), artifacts proxied to ``s3://BUCKET/mlflow``.

    ``extra_args``: more ``mlflow server`` options (``--allowed-hosts`` when clients reach
    it by another name than loopback).
    """
    postgres.create_database(database)
    destination = f"s3://{store.bucket}/mlflow"
    folder = workspace.root / "mlflow"
    folder.mkdir()
    env = {
        **os.environ,
        **store.env,
        "MLFLOW_S3_ENDPOINT_URL": store.endpoint,  # the server's boto3 talks to moto
        # No GenAI job runner: it starts seven huey processes and a folder in /dev/shm
        # that outlives the server when it is killed.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)

    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; we have psycopg2.
    backend = postgres.dsn(database).replace("postgresql://", "postgresql+psycopg2://", 1)

    def start(port: int) -> TrackingStack:
        uri = f"http://{host}:{port}"
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend,
            "--artifacts-destination", destination,
            "--host", host, "--port", str(port), "--workers", str(workers), *extra_args,
        ]  # fmt: skip
        service = start_service(workspace, "mlflow", command, env=env, cwd=folder)
        try:
            service.wait_ready(lambda: _http_ok(f"{uri}/health", expect="OK"))
        except BaseException:
            service.stop()
            raise
        stack = TrackingStack(service, uri, postgres, store, database, destination, workspace)
        stack._closers.append(service.stop)
        return stack

    return _with_free_ports(start)


def start_tracking_stack(**server: Any) -> TrackingStack:
    """The whole stack in a new workspace; ``close()`` (or ``with``) stops all of it."""
    workspace = Workspace()
    closers: list[Callable[[], None]] = [workspace.close]
    try:
        postgres = start_postgres(workspace)
        closers.append(postgres.close)
        store = start_object_store(workspace)
        closers.append(store.close)
        stack = start_mlflow_server(workspace, postgres, store, **server)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    stack._closers[:0] = closers
    return stack


# =========================================================================== fixtures


@pytest.fixture(scope="session")
def service_workspace() -> Iterator[Workspace]:
    workspace = Workspace()
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture(scope="session")
def postgres_server(service_workspace: Workspace) -> Iterator[Postgres]:
    """A PostgreSQL cluster on loopback (skips where PostgreSQL or psycopg2 is missing)."""
    try:
        postgres = start_postgres(service_workspace)
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield postgres
    finally:
        postgres.close()


@pytest.fixture(scope="session")
def s3_store(service_workspace: Workspace) -> Iterator[ObjectStore]:
    """moto's S3 on loopback with one bucket (skips where moto[server] is missing)."""
    try:
        store = start_object_store(service_workspace)
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def tracking_stack(
    service_workspace: Workspace, postgres_server: Postgres, s3_store: ObjectStore
) -> Iterator[TrackingStack]:
    """``mlflow server`` over ``postgres_server`` and ``s3_store``, shared by the session."""
    stack = start_mlflow_server(service_workspace, postgres_server, s3_store)
    try:
        yield stack
    finally:
        stack.close()
