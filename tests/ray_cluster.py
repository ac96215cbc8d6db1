"""A real multi-node Ray cluster on this machine, for the cluster tests.

:class:`LocalCluster` starts a head node (``ray start --head --block``) and worker nodes
(``ray start --address … --block``), each in a process group of its own registered with
the services' watchdog (:mod:`tests.services`), on free loopback ports: two nodes on one
machine must not share the dashboard agent's, metrics or client ports, and a default
port may be held by another Ray here. Token authentication is on, as on a real cluster
(``RAY_AUTH_MODE=token`` with a token made for the test).

:meth:`LocalCluster.stop` stops every process each node started: the node's ``ray
start`` is sent SIGTERM (it then stops its processes), and whatever of its process tree
is left after a grace period is killed. Never ``ray stop``: it stops every Ray on the
machine, other people's included.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from services import HOST, Service, ServiceError, Workspace, free_port, start_service
from waiting import wait_until

RAY = str(Path(sys.executable).with_name("ray"))
STOP_GRACE_S = 15.0


@dataclass
class Node:
    name: str
    service: Service
    resources: dict[str, float]

    def tree(self) -> list[psutil.Process]:
        """The node's ``ray start`` and everything below it that is still alive."""
        try:
            leader = psutil.Process(self.service.process.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def raylet_pid(self) -> int:
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                if proc.name() == "raylet":
                    return proc.pid
        raise ServiceError(f"node {self.name}: no raylet process below its ray start")

    def stop(self) -> None:
        procs = self.tree()
        if self.service.alive():
            with contextlib.suppress(ProcessLookupError):
                self.service.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                self.service.process.wait(timeout=STOP_GRACE_S)
        procs += self.tree()  # workers started meanwhile
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.service.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.service.process.wait(timeout=5)


@dataclass
class LocalCluster:
    workspace: Workspace
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)
    gcs_address: str = ""
    dashboard_url: str = ""

    @classmethod
    def create(cls, workspace: Workspace, extra_env: dict[str, str] | None = None) -> LocalCluster:
        env = {
            **os.environ,
            **(extra_env or {}),
            # the job's `python` is the one on the nodes' PATH: this virtualenv's
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
        }
        env.pop("RAY_ADDRESS", None)
        return cls(workspace, env)

    def _ports(self) -> list[str]:
        return [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
        ]

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        cpus = int(resources.get("CPU", 1))
        custom = {k: v for k, v in resources.items() if k != "CPU"}
        command = [RAY, "start", "--block", f"--node-ip-address={HOST}", f"--num-cpus={cpus}",
                   "--num-gpus=0", f"--object-store-memory={400 * 2**20}", *self._ports(),
                   *args]  # fmt: skip
        if custom:
            command.append(f"--resources={json.dumps(custom)}")
        service = start_service(self.workspace, f"ray-{name}", command, env=self.env)
        node = Node(name, service, resources)
        self.nodes.append(node)
        return node

    def start_head(self, cpus: int = 4, timeout_s: float = 90.0) -> Node:
        port, dashboard = free_port(), free_port()
        self.gcs_address, self.dashboard_url = f"{HOST}:{port}", f"http://{HOST}:{dashboard}"
        node = self._start(
            "head",
            ["--head", f"--port={port}", f"--dashboard-host={HOST}",
             f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
             f"--temp-dir={self.workspace.root / 'ray'}", "--disable-usage-stats"],
            {"CPU": cpus},
        )  # fmt: skip
        node.service.wait_ready(self._jobs_api_ready, timeout_s)
        return node

    def add_worker(
        self, name: str, cpus: int = 2, timeout_s: float = 90.0, **custom: float
    ) -> Node:
        node = self._start(name, [f"--address={self.gcs_address}"], {"CPU": cpus, **custom})
        node.service.wait_ready(lambda: len(self.alive_nodes()) == len(self.nodes), timeout_s)
        return node

    def _jobs_api_ready(self) -> bool:
        """The job server answers and the head node is registered as alive."""
        return bool(self.api("/api/version")) and len(self.alive_nodes()) >= 1

    def api(self, path: str) -> Any:
        """A GET of the dashboard's REST API, with the cluster's token (no Ray client in
        this process: the token mode is read once per process by Ray)."""
        request = urllib.request.Request(
            self.dashboard_url + path,
            headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def alive_nodes(self) -> list[dict[str, Any]]:
        data = self.api("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]
        return [n for n in data if n["state"] == "ALIVE"]

    def actors(self, class_name: str) -> list[dict[str, Any]]:
        query = ("/api/v0/actors?limit=1000&detail=1&filter_keys=class_name"
                 f"&filter_predicates=%3D&filter_values={class_name}")  # fmt: skip
        return self.api(query)["data"]["result"]["result"]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.nodes.clear()


def wait_for(check, timeout_s: float, what: str, every_s: float = 1.0):
    """Poll ``check()`` until it returns something true (an error counts as not yet);
    AssertionError naming ``what``."""
    return wait_until(check, timeout_s, every_s, what, not_yet=(Exception,))
