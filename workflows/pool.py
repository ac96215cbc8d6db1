"""Many videos through one model: a Ray Data actor pool of model replicas.

``avrsp evaluate`` and ``avrsp predict FOLDER`` both hand their videos to
:func:`map_videos`: each row of a Ray Dataset is one video (a JSON-able dict), and a
pool of actors, each holding the model once, turns a row into a result row. Results are
streamed back in the order they finish, so a long job shows progress and keeps nothing
but the results. An actor gets one GPU where the cluster has GPUs (``gpus_per_actor``),
else CPUs. A video that fails comes back as a result row with ``status="failed"`` and the
reason; the others carry on.

The work itself is a plain function ``work(model, item) -> dict`` (no Ray in it), so
the one-video path is the same with and without Ray: :func:`run_local` calls it in this
process, which is what a single video or ``--workers 0`` uses.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from avrsp.errors import AVRSPError, storage_error

log = logging.getLogger(__name__)

#: Restarts of a pool actor that died (and retries of its call) before the job gives up.
MAX_RESTARTS = 3
#: ``work(model, item) -> result`` — item and result are JSON-able dicts.
Work = Callable[[Any, dict[str, Any]], dict[str, Any]]
#: ``load() -> model`` — called once per actor (or once for :func:`run_local`).
Load = Callable[[], Any]


def _run_one(work: Work, model: Any, item: dict[str, Any]) -> dict[str, Any]:
    """``work`` on one item; an error becomes a ``failed`` row naming the video."""
    start = time.perf_counter()
    try:
        result = dict(work(model, item))
        result.setdefault("status", "ok")
    except AVRSPError as exc:
        result = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # a bug or a library error: keep the rest of the job going
        full = storage_error(exc)  # a full disk: the file and the cause in words, no traceback
        if full is None:
            log.error("%s: %s", item.get("name"), traceback.format_exc())
        reason = str(full) if full else f"{type(exc).__name__}: {exc}"
        result = {"status": "failed", "reason": reason}
    result.setdefault("name", item.get("name", "?"))
    result["seconds"] = time.perf_counter() - start
    return result


def run_local(load: Load, work: Work, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The items one after the other in this process, with one model."""
    model = load()
    for item in items:
        yield _run_one(work, model, item)


class _Replica:
    """One actor of the pool: loads the model once, then works one video per call."""

    def __init__(self, load: Load, work: Work, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # as many as the actor has CPUs, not the node's
        self.model = load()
        self.work = work

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out = []
        for text in batch["item"]:
            out.append(json.dumps(_run_one(self.work, self.model, json.loads(text))))
        return {"result": out}


def map_videos(
    load: Load,
    work: Work,
    items: list[dict[str, Any]],
    *,
    actors: int,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Run ``work`` on every item through a pool of ``actors`` model replicas (Ray must be
    initialised: :func:`preprocessing.ray_runtime.init_ray`). Yields result rows as they
    finish."""
    import ray

    if not items:
        return
    texts = [{"item": json.dumps(item)} for item in items]
    dataset = ray.data.from_items(texts, override_num_blocks=len(texts))
    results = dataset.map_batches(
        _Replica,
        fn_constructor_kwargs={"load": load, "work": work, "threads": max(1, int(cpus_per_actor))},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        # An actor killed (out of memory, say) is restarted a few times, then the job stops
        # with Ray's error instead of restarting it for ever.
        max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS,
    )
    for row in results.iter_rows():
        yield json.loads(row["result"])


def default_actors(gpus_per_actor: float, cpus_per_actor: float) -> int:
    """Replicas that fit the cluster Ray is connected to: one per GPU where there are
    GPUs, else one per ``cpus_per_actor`` CPUs (at least one)."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // gpus_per_actor))
    return max(1, int(resources.get("CPU", 1) // max(cpus_per_actor, 1e-9)))
