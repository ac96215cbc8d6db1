"""Starting or joining Ray: the one place every job does it.

Without an address (and without ``RAY_ADDRESS``) a local Ray starts for the run, without
its dashboard. With one, the job joins that cluster and ships this project's packages to
its workers (``runtime_env.py_modules``): a cluster's nodes need not have the project
installed, only its dependencies.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    packages: tuple[str, ...] = ("avrsp", "preprocessing"),
    log_to_driver: bool = True,
) -> None:
    """Start or join Ray once per process (a second call does nothing).

    ``num_cpus``: the logical CPUs of a local Ray (default: the machine's). ``packages``:
    what a cluster's workers import from this project (the training job adds
    ``workflows``). ``log_to_driver=False`` keeps the workers' output out of this
    process's terminal (it stays in Ray's session logs).
    """
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
        return
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        # The driver of a submitted job (avrsp submit): the job's runtime_env already ships
        # the project as its working_dir, which every worker of the job imports from.
        ray.init(address=address, log_to_driver=log_to_driver)
        return
    modules = [str(Path(importlib.import_module(p).__file__).parent) for p in packages]
    ray.init(address=address, runtime_env={"py_modules": modules}, log_to_driver=log_to_driver)
