"""Training steps/s with Ray Data ingest vs the same batches already in memory (docs: PERFORMANCE).

In one run, on the same model and optimizer settings (:class:`workflows.loop.TrainConfig`,
a fresh model from the same seed for every phase), for each of ``--rounds`` rounds:

1. *ingest*: the training workflow's own path — the ``train`` dataset that
   :func:`workflows.train.train` builds (:func:`workflows.train.training_dataset`: Parquet
   segment shards read by Ray Data, JPEG/PNG decode in ``map_batches``, seeded block order,
   blocks in order with ``deterministic``), handed to the loop by a Ray Train ``TorchTrainer``
   (``--num-workers 0``: local mode, the loop in this process, which is what training runs
   by default; ``--num-workers 1``: one Train worker, as on a GPU node) and iterated with
   the training job's :func:`workflows.train.shard_batches` (local shuffle buffer,
   ``iter_torch_batches``); every batch goes through the loop's
   :func:`workflows.loop.train_step`. ``--warmup`` steps, then
   ``--steps`` timed steps; then the iterator is closed, which stops Ray Data's executor.
   When the split runs out the next epoch starts, as in training (counted in the output).
2. *memory*: the very batches of phase 1 (torch tensors, kept as the ingest yielded them),
   replayed in the same order through ``train_step`` with a fresh model: the same warm-up,
   then the same timed steps.

Prints steps/s of both and their ratio (goal ≥ 0.9), the time the loop waited for the
ingest (inside ``next()``), and the load average (other jobs on the machine skew both
sides; compare the two sides of one round). Shards: ``--data DIR`` (the output of
``avrsp preprocess``), or made here with ``avrsp synth`` + ``avrsp preprocess``'s functions
into ``--work DIR`` (a temporary folder by default).

    python benchmarks/ingest.py                       # tiny preset, CPU, local mode
    python benchmarks/ingest.py --data /tmp/ingest-bench/out --rounds 3
    python benchmarks/ingest.py --preset paper --device cuda --batch-size 8 --num-workers 1 \\
        --videos 48 --seconds 20 --steps 100           # on a GPU node (docs/PERFORMANCE.md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_shards(work: Path, preset_name: str, videos: int, seconds: float) -> Path:
    """Synthetic clips (:func:`preprocessing.synthetic.write_dataset`) → segment shards
    (:func:`preprocessing.pipeline.preprocess`, Ray Data) under ``work``; returns the
    preprocess output folder. Reuses ``work/shards-<preset>`` when it is complete."""
    from avrsp.config import preset
    from preprocessing.pipeline import preprocess
    from preprocessing.synthetic import SynthSettings, write_dataset

    synth = work / f"synth-{videos}x{seconds:g}s"
    out = work / f"shards-{preset_name}-{videos}x{seconds:g}s"
    if (out / "manifest.json").is_file():
        return out
    if not (synth / "synthetic.json").is_file():
        started = time.perf_counter()
        write_dataset(synth, SynthSettings(videos=videos, seconds=seconds))
        print(f"synthetic clips: {videos} × {seconds:g} s in {time.perf_counter() - started:.0f} s")
    preprocess(f"synthetic:{synth}", out, config=preset(preset_name), log=print)
    return out


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", "") == "cuda":
        torch.cuda.synchronize(device)


def _fresh(cfg: Any, device: Any) -> tuple[Any, Any]:
    """The model (seeded, train mode) and optimizer every phase starts from."""
    from avrsp.model import build_model
    from workflows.loop import make_optimizer, seed_everything

    seed_everything(cfg.seed)
    model = build_model(cfg.network).to(device)
    model.train()
    return model, make_optimizer(model, cfg)


def _epochs(shard: Any, cfg: Any, first_epoch: int, counter: list[int]) -> Any:
    """Training batches epoch after epoch, each epoch iterated as the training loop does;
    ``counter[0]`` counts the epochs begun. Closing this generator closes the open epoch's
    iterator (and so stops Ray Data's executor)."""
    from workflows.train import shard_batches

    epoch = first_epoch
    while True:
        counter[0] += 1
        batches = shard_batches(shard, cfg, train=True, epoch=epoch, rank=0)
        try:
            yield from batches
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        epoch += 1


class CpuClock:
    """CPU seconds (user + system) of this process and all its live descendants (the local
    Ray: workers, raylet, GCS) since the previous ``lap()``: the work each phase costs,
    hardly changed by other jobs on the machine, unlike wall time."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._seen: dict[int, float] = {}
        self.lap()

    def lap(self) -> tuple[float, float]:
        """(this process, descendants) CPU seconds since the previous call."""
        import psutil

        t = self._me.cpu_times()
        own, workers = t.user + t.system - self._seen.get(-1, 0.0), 0.0
        self._seen[-1] = t.user + t.system
        for proc in self._me.children(recursive=True):
            try:
                c = proc.cpu_times()
            except psutil.Error:
                continue
            total = c.user + c.system
            workers += total - self._seen.get(proc.pid, 0.0)
            self._seen[proc.pid] = total
        return own, workers


def _ingest_phase(
    shard: Any, cfg: Any, device: Any, warmup: int, steps: int, first_epoch: int
) -> dict[str, Any]:
    """Phase (a): warm-up + timed steps fed by Ray Data; keeps every batch it got."""
    from workflows.loop import train_step

    model, optimizer = _fresh(cfg, device)
    epochs = [0]
    batches = _epochs(shard, cfg, first_epoch=first_epoch, counter=epochs)
    kept: list[dict[str, Any]] = []
    clock = CpuClock()
    wait, epochs_at_start = 0.0, 0
    first = started = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            started, wait, epochs_at_start = time.perf_counter(), 0.0, epochs[0]
            clock.lap()
        asked = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - asked
        kept.append(batch)
        train_step(model, optimizer, batch, cfg, device)
    _sync(device)
    seconds = time.perf_counter() - started
    cpu = clock.lap()
    batches.close()
    # Tasks already running finish after the executor stops: wait until Ray's processes
    # are quiet (< 5 % of a core over 0.5 s, at most 10 s), so the next phase gets the CPUs.
    settle = time.perf_counter()
    while time.perf_counter() - settle < 10:
        time.sleep(0.5)
        if clock.lap()[1] < 0.025:
            break
    return {
        "seconds": seconds,
        "wait_s": wait,
        "warmup_s": started - first,
        "epochs_begun": epochs[0] - epochs_at_start,
        "cpu_s": cpu,
        "kept": kept,
    }


def _memory_phase(kept: list[dict[str, Any]], cfg: Any, device: Any, warmup: int) -> dict[str, Any]:
    """Phase (b): the kept batches, in their order, through the same step."""
    from workflows.loop import train_step

    model, optimizer = _fresh(cfg, device)
    clock = CpuClock()
    started = time.perf_counter()
    for i, batch in enumerate(kept):
        if i == warmup:
            _sync(device)
            started = time.perf_counter()
            clock.lap()
        train_step(model, optimizer, batch, cfg, device)
    _sync(device)
    return {"seconds": time.perf_counter() - started, "cpu_s": clock.lap()}


def bench_loop(loop_config: dict[str, Any]) -> None:
    """The measurement, run by Ray Train (in this process, or in the one worker).

    Round 0 and every even round: ingest, then memory replaying that ingest's batches.
    Odd rounds: memory first (replaying the previous round's batches), then ingest, so a
    load that rises or falls during the run does not always favour the same side.
    """
    import ray.train
    import torch

    from workflows.loop import TrainConfig
    from workflows.train import worker_device

    cfg = TrainConfig.model_validate(loop_config["config"])
    warmup, steps, rounds = loop_config["warmup"], loop_config["steps"], loop_config["rounds"]
    # As the training job's workers: the device, and on CPU as many threads as CPUs reserved.
    device = worker_device(cfg)
    shard = ray.train.get_dataset_shard("train")
    results = []
    kept: list[dict[str, Any]] = []
    for r in range(rounds):
        load = [os.getloadavg()[0]]
        if r % 2 == 1:
            mem = _memory_phase(kept, cfg, device, warmup)
            load.append(os.getloadavg()[0])
        ing = _ingest_phase(shard, cfg, device, warmup, steps, first_epoch=1000 * r)
        kept = ing.pop("kept")
        load.append(os.getloadavg()[0])
        if r % 2 == 0:
            mem = _memory_phase(kept, cfg, device, warmup)
            load.append(os.getloadavg()[0])
        row = {
            "round": r,
            "order": "ingest,memory" if r % 2 == 0 else "memory,ingest",
            "ingest_steps_per_s": steps / ing["seconds"],
            "memory_steps_per_s": steps / mem["seconds"],
            "ratio": mem["seconds"] / ing["seconds"],
            "ingest_s": ing["seconds"],
            "memory_s": mem["seconds"],
            "ingest_wait_s": ing["wait_s"],
            "ingest_warmup_s": ing["warmup_s"],
            "epochs_begun_while_timed": ing["epochs_begun"],
            # CPU seconds per timed step: [loop process, Ray processes]
            "ingest_cpu_per_step": [c / steps for c in ing["cpu_s"]],
            "memory_cpu_per_step": [c / steps for c in mem["cpu_s"]],
            "load_1min": load,
        }
        results.append(row)
        print(
            f"round {r} ({row['order']}): ingest {row['ingest_steps_per_s']:.3f} steps/s "
            f"(waited {ing['wait_s']:.2f} of {ing['seconds']:.1f} s), memory "
            f"{row['memory_steps_per_s']:.3f} steps/s, ratio {row['ratio']:.3f}; CPU s/step "
            f"ingest {sum(row['ingest_cpu_per_step']):.2f} "
            f"(Ray {row['ingest_cpu_per_step'][1]:.2f}), memory "
            f"{sum(row['memory_cpu_per_step']):.2f}; load " + " → ".join(f"{x:.1f}" for x in load),
            flush=True,
        )
    if loop_config.get("stats"):
        print(shard.stats())
    info = {"torch_threads": torch.get_num_threads(), "rounds": results}
    Path(loop_config["out"]).write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="existing preprocess output (else made here)")
    parser.add_argument("--work", type=Path, help="where to make shards (default: a temp dir)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    parser.add_argument("--videos", type=int, default=24, help="synthetic clips to make")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per phase")
    parser.add_argument("--rounds", type=int, default=2, help="ingest/memory pairs")
    parser.add_argument("--num-workers", type=int, default=0, choices=(0, 1))
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--use-audio", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--stats", action="store_true", help="print Ray Data's stats at the end")
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TrainConfig.deterministic (blocks in order; --no-deterministic: as they finish)",
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.train
    import torch
    from ray.train.torch import TorchConfig, TorchTrainer

    from preprocessing.ray_runtime import init_ray
    from workflows.data import check_shards
    from workflows.loop import TrainConfig, dataset_files
    from workflows.train import ingest_config, training_dataset

    with tempfile.TemporaryDirectory(prefix="avrsp-ingest-") as tmp:
        data = args.data or make_shards(args.work or Path(tmp), args.preset, args.videos,
                                        args.seconds)  # fmt: skip
        cfg = TrainConfig(
            preset=args.preset,
            network={"model": {"use_audio": args.use_audio}},
            data=data.resolve(),
            batch_size=args.batch_size,
            use_gpu=args.device == "cuda",
            num_workers=args.num_workers,
            cpus_per_worker=args.cpus_per_worker,
            deterministic=args.deterministic,
            system_metrics=False,
            val_split="test",  # only to satisfy dataset_files; validation is not timed
        )
        train_files, _, train_spec, _ = dataset_files(cfg)
        check_shards(train_files, cfg.network)
        init_ray(None)
        # The dataset exactly as workflows.train.train builds it.
        ds = training_dataset(cfg, train_files, train_spec)
        local = args.num_workers == 0
        out = Path(tmp) / "result.json"
        trainer = TorchTrainer(
            bench_loop,
            train_loop_config={
                "config": cfg.to_dict(),
                "warmup": args.warmup,
                "steps": args.steps,
                "rounds": args.rounds,
                "device": args.device,
                "stats": args.stats,
                "out": str(out),
            },
            torch_config=TorchConfig(backend="nccl" if args.device == "cuda" else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=args.num_workers,
                use_gpu=args.device == "cuda" and not local,
                resources_per_worker=None if local else {"CPU": args.cpus_per_worker},
            ),
            run_config=ray.train.RunConfig(name="ingest-bench", storage_path=str(Path(tmp))),
            datasets={"train": ds},
            dataset_config=ingest_config(cfg),
        )
        print(
            f"{args.preset} preset (T={cfg.network.input.frames}, "
            f"{cfg.network.input.height}×{cfg.network.input.width}, audio "
            f"{'on' if args.use_audio else 'off'}), batch {args.batch_size}, "
            f"{args.warmup} warm-up + {args.steps} timed steps × {args.rounds} rounds, "
            f"device {args.device}, "
            f"{'local mode (in-process)' if local else f'{args.num_workers} Train worker'}; "
            f"{len(train_files)} train shard files; Ray CPUs "
            f"{ray.cluster_resources().get('CPU')}",
            flush=True,
        )
        trainer.fit()
        info = json.loads(out.read_text())
    rounds = info["rounds"]
    ingest = sum(args.steps for _ in rounds) / sum(r["ingest_s"] for r in rounds)
    memory = sum(args.steps for _ in rounds) / sum(r["memory_s"] for r in rounds)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        + (torch.cuda.get_device_name() if args.device == "cuda" else "no GPU used"),
        "torch_threads_in_loop": info["torch_threads"],
        "preset": args.preset,
        "batch_size": args.batch_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "ingest_steps_per_s": ingest,
        "memory_steps_per_s": memory,
        "ratio": ingest / memory,
        "ratio_per_round": [r["ratio"] for r in rounds],
        "min_ratio": float(np.min([r["ratio"] for r in rounds])),
        # Load-independent: CPU seconds per step summed over rounds, loop + Ray processes.
        "ingest_cpu_per_step": float(np.mean([sum(r["ingest_cpu_per_step"]) for r in rounds])),
        "memory_cpu_per_step": float(np.mean([sum(r["memory_cpu_per_step"]) for r in rounds])),
        "rounds": rounds,
    }
    print(
        f"\nall rounds: ingest {ingest:.2f} steps/s, memory {memory:.2f} steps/s, "
        f"ratio {ingest / memory:.3f} (goal ≥ 0.9); per round "
        + ", ".join(f"{r['ratio']:.3f}" for r in rounds)
        + f"; CPU s/step ingest {summary['ingest_cpu_per_step']:.2f}, memory "
        f"{summary['memory_cpu_per_step']:.2f} (ratio "
        f"{summary['memory_cpu_per_step'] / summary['ingest_cpu_per_step']:.3f})"
    )
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
