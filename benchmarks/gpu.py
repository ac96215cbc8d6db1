"""What one GPU does with AVRSP at a preset, in a few minutes (docs/PERFORMANCE.md).

    python benchmarks/gpu.py --json gpu.json                          # a GPU, paper preset
    python benchmarks/gpu.py --quick --device cpu --json quick.json   # CPU smoke run, < 60 s
    nice python benchmarks/gpu.py --device cpu --parts flops ingest   # the CPU-side facts

Parts (``--parts``; all by default):

``flops``    FLOPs per sample from ``torch.utils.flop_counter`` on the meta device:
             training (forward, loss, backward; train mode) and inference (forward, eval
             mode), V and AV; the forward FLOPs per component and of the largest layers.
``ingest``   the CPU side: one core decodes training windows at the preset the way Ray
             Data's decode tasks do (``workflows.data.decode_batch``: JPEG frames, audio,
             target PNG, fixation map), set against the training samples/s: CPU cores
             that the ingest needs per GPU.
``train``    ``workflows.loop.train_step`` — the training loop's own step: bf16 autocast on
             a GPU, the loss, backward, clipping, AdamW, the host-to-device copy of the
             uint8 batch — at the largest batch that fits (doubled until out of memory,
             then bisected twice): samples/s, peak memory, MFU.
``infer``    the sliding-window forward (``avrsp.inference``: uint8 windows already on the
             device → model input, bf16 autocast, inference mode) on batches of windows:
             output frames/s (one map per window), MFU; the batch is swept upwards.
``ddp``      a one-process DDP group (NCCL on a GPU, gloo on a CPU) around the same
             ``train_step``, timed against the plain step; the all-reduce volume and the
             expected 8-GPU scaling over NVLink and over 100 Gb/s Ethernet.
``profile``  the slowest eager training configuration at the comparison batch: forward
             time per component (module hooks; CUDA events on a GPU) and the top kernels
             or operators (``torch.profiler``).
``predict``  ``avrsp.inference.predict_video`` end to end on an in-memory video (window
             stacking, audio cutting, the copies) against the model-only rate.
``compile``  train and infer rows under ``torch.compile``, while time allows.

What each change buys is measured at a comparison batch (``--compare-batch``; training,
at most the largest batch; inference, the sweep's batch): the weights and input in three
layouts — ``loop`` (as the code runs today: NCDHW weights, and the input a permuted view
of the stored ``[B, T, H, W, 3]`` frames, i.e. channels-last-3d in memory), ``cl3d`` (the
3-D convolutions' weights and the input channels-last-3d) and ``ncdhw`` (both contiguous)
— cuDNN's autotuner (``cudnn.benchmark``) in the fastest eager layout, and compiling.
``conv_outputs_channels_last`` says in which layout the convolutions really ran.

Order and time. Rows run in the order of what they answer (:func:`stage_specs`): FLOPs
and ingest, training at the largest batch, the inference sweep, the loop and cl3d layouts,
DDP, the profile, predict, the compiled AV rows, then cuDNN's autotuner, ``ncdhw`` and the
other compiled rows. Each row gets ``--warmup`` untimed steps, then timed steps until its
budget has passed (``--budget-s``, ``--infer-budget-s``; at least ``--min-steps``, at most
``--max-steps``); no row starts after ``--deadline-s`` (it says so), and a compiled one
only if the time left covers the compile (estimated, then measured). The JSON is
rewritten after every row, so a run stopped from outside keeps what it measured.

MFU = FLOPs per sample × samples/s ÷ the chip's dense bf16 peak (:data:`PEAKS`, looked up
by ``torch.cuda.get_device_name()``); n/a on a CPU. A measured bf16 matmul rate is given
beside it as the chip's practical ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from model_facts import COMPONENTS, _component_flops  # benchmarks/ is the script's folder
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avrsp.config import AVRSPConfig, preset
from avrsp.errors import ConfigError
from avrsp.inference import autocast, frames_to_input, predict_video, resolve_device
from avrsp.io import write_json
from avrsp.losses import saliency_loss
from avrsp.model import build_model
from workflows.loop import TrainConfig, make_optimizer, train_step

# Dense bf16 tensor-core peaks in TFLOP/s, matched in this order against
# torch.cuda.get_device_name(). Source: NVIDIA's H100 and H200 Tensor Core GPU datasheets,
# whose bf16 figures are quoted "with sparsity" (1,979 SXM, 1,671 NVL, 1,513 H100 PCIe
# TFLOP/s): halved here for dense math. A100: its datasheet's dense 312.
PEAKS: tuple[tuple[str, float, str], ...] = (
    ("H200 NVL", 835.5, "NVIDIA H200 datasheet, H200 NVL, 1,671 sparse / 2"),
    ("H200", 989.5, "NVIDIA H200 datasheet, H200 SXM, 1,979 sparse / 2"),
    ("H100 NVL", 835.5, "NVIDIA H100 datasheet, H100 NVL, 1,671 sparse / 2"),
    ("H100 PCIe", 756.5, "NVIDIA H100 datasheet, H100 PCIe, 1,513 sparse / 2"),
    ("H100", 989.5, "NVIDIA H100 datasheet, H100 SXM, 1,979 sparse / 2"),
    ("A100", 312.0, "NVIDIA A100 datasheet, dense bf16"),
)
# Links for the 8-GPU estimate, one direction: NVLink 4 on H100/H200 SXM boards carries
# 900 GB/s per GPU both ways together (datasheets), so 450 GB/s each way; 100 Gb/s
# Ethernet is 12.5 GB/s each way. --link-efficiency says how much of that a ring
# all-reduce gets (an assumption, printed with the result).
LINKS_GBPS = {"NVLink 4 (one HGX node)": 450.0, "100 Gb/s Ethernet (8 nodes)": 12.5}
SCALE_TO = 8
GOAL_MFU = 0.25  # the training goal of docs/PERFORMANCE.md
LAYOUTS = ("loop", "ncdhw", "cl3d")
PARTS = ("flops", "train", "infer", "predict", "ddp", "profile", "ingest", "compile")
GIB = 2**30


# =========================================================================== machinery


class Clock:
    """The run's deadline: no new configuration starts once it has passed."""

    def __init__(self, seconds: float) -> None:
        self.start = time.perf_counter()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


@dataclasses.dataclass
class Run:
    """Everything the parts share: options, device, peak, results so far."""

    args: argparse.Namespace
    device: torch.device
    peak_tflops: float | None
    clock: Clock
    results: dict[str, Any]
    meta_models: dict[bool, nn.Module] = dataclasses.field(default_factory=dict)
    flop_cache: dict[tuple[bool, bool, int], int] = dataclasses.field(default_factory=dict)
    compile_estimate_s: float = 120.0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def cfg(self, use_audio: bool) -> AVRSPConfig:
        return preset(self.args.preset).with_overrides(**{"model.use_audio": use_audio})

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mfu(self, flops_per_s: float) -> float | None:
        return flops_per_s / (self.peak_tflops * 1e12) if self.peak_tflops else None

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.clock.elapsed(), 1)
        if self.args.json:
            write_json(self.args.json, self.results)


def peak_of(name: str) -> tuple[float | None, str]:
    """(dense bf16 TFLOP/s, source) of a CUDA device name; (None, why) when unknown."""
    for key, tflops, source in PEAKS:
        if key.lower() in name.lower():
            return tflops, source
    return None, f"{name!r} is not in benchmarks/gpu.py PEAKS: MFU n/a"


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


def variant_name(use_audio: bool) -> str:
    return "AV" if use_audio else "V"


def config_name(layout: str, compiled: bool, bench: bool) -> str:
    parts = ["compiled" if compiled else "eager", layout]
    if bench:
        parts.append("cudnn.benchmark")
    return ", ".join(parts)


def time_steps(
    step: Callable[[], object], run: Run, *, budget_s: float | None = None
) -> tuple[list[float], list[float]]:
    """(warm-up seconds, timed seconds) of ``step``, each synchronised."""
    a = run.args
    budget = a.budget_s if budget_s is None else budget_s

    def once() -> float:
        t0 = time.perf_counter()
        step()
        run.sync()
        return time.perf_counter() - t0

    warm = [once() for _ in range(a.warmup)]
    timed: list[float] = []
    start = time.perf_counter()
    while len(timed) < a.max_steps and (
        len(timed) < a.min_steps or time.perf_counter() - start < budget
    ):
        timed.append(once())
    return warm, timed


@contextlib.contextmanager
def cudnn_benchmark(on: bool) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def fresh_model(run: Run, use_audio: bool, layout: str) -> nn.Module:
    """The preset's network, seeded, on the device, weights in ``layout``."""
    torch.manual_seed(run.args.seed)
    model = build_model(run.cfg(use_audio)).to(run.device)
    if layout == "cl3d":  # the 3-D convolutions' weights (SoundNet's are 2-D: left as they are)
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                m.to(memory_format=torch.channels_last_3d)
    return model


class Windows:
    """A pool of random windows on the CPU (uint8 frames ``[P, T, H, W, 3]`` as stored,
    audio in [-1, 1], target maps), tiled to any batch."""

    def __init__(self, cfg: AVRSPConfig, pool: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        inp = cfg.input
        shape = (pool, inp.frames, inp.height, inp.width, 3)
        self.pool = pool
        self.frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        self.audio = torch.rand(pool, inp.audio_samples, generator=g) * 2 - 1
        self.target = torch.rand(pool, inp.height, inp.width, generator=g)

    def batch(self, b: int, layout: str, device: torch.device | None = None) -> dict[str, Any]:
        """``b`` windows as the loop receives them. For ``ncdhw`` the frames are a view of a
        ``[B, 3, T, H, W]``-contiguous tensor, so ``frames_to_input`` gives the model a
        contiguous input; otherwise the stored layout (channels-last-3d after the permute).
        """
        idx = torch.arange(b) % self.pool
        frames = self.frames[idx]
        if layout == "ncdhw":
            frames = frames.permute(0, 4, 1, 2, 3).contiguous().permute(0, 2, 3, 4, 1)
        out = {"frames": frames, "audio": self.audio[idx], "target": self.target[idx]}
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}  # keeps the strides
        return out


class WindowPools(dict):
    """``{use_audio: Windows}``, each made when first asked for (the CPU parts need none)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def __missing__(self, use_audio: bool) -> Windows:
        self[use_audio] = Windows(self.run.cfg(use_audio), pool=8, seed=self.run.args.seed)
        return self[use_audio]


# =========================================================================== FLOPs


def meta_model(run: Run, use_audio: bool) -> nn.Module:
    if use_audio not in run.meta_models:
        with torch.device("meta"):
            run.meta_models[use_audio] = build_model(run.cfg(use_audio))
    return run.meta_models[use_audio]


def count_flops(run: Run, use_audio: bool, train: bool, batch: int) -> int:
    """FLOPs of one batch on the meta device: training = forward, loss and backward in
    train mode (the optimizer's element-wise work is not counted); inference = forward."""
    key = (use_audio, train, batch)
    if key not in run.flop_cache:
        run.flop_cache[key] = _count(run.cfg(use_audio), meta_model(run, use_audio), train, batch)
    return run.flop_cache[key]


def _count(cfg: AVRSPConfig, model: nn.Module, train: bool, batch: int) -> int:
    inp = cfg.input
    with torch.device("meta"):
        frames = torch.zeros(batch, 3, inp.frames, inp.height, inp.width)
        audio = torch.zeros(batch, inp.audio_samples) if cfg.model.use_audio else None
        target = torch.zeros(batch, inp.height, inp.width)
    counter = FlopCounterMode(display=False)
    model.train(train)
    with counter:
        if train:
            loss, _ = saliency_loss(model(frames, audio).float(), target, cfg.loss)
            loss.backward()
        else:
            with torch.no_grad():
                model(frames, audio)
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def forward_split(cfg: AVRSPConfig, model: nn.Module, top: int) -> dict[str, Any]:
    """Forward FLOPs of one window per component and of the ``top`` largest layers (the
    flop counter attributes backward work to modules unreliably: forward only)."""
    inp = cfg.input
    with torch.device("meta"):
        frames = torch.zeros(1, 3, inp.frames, inp.height, inp.width)
        audio = torch.zeros(1, inp.audio_samples) if cfg.model.use_audio else None
    counter = FlopCounterMode(display=False, depth=None)
    model.eval()
    with counter, torch.no_grad():
        model(frames, audio)
    by_module = counter.get_flop_counts()
    total = int(counter.get_total_flops())
    leaves = {
        f"{type(model).__name__}.{name}": mod
        for name, mod in model.named_modules()
        if name and not list(mod.children())
    }
    layers = sorted(
        ((int(sum(by_module[k].values())), k) for k in by_module if k in leaves), reverse=True
    )
    return {
        "total": total,
        "components": _component_flops(by_module),
        "layers": [
            {"layer": k, "module": repr(leaves[k]), "flops": f, "share": f / total}
            for f, k in layers[:top]
        ],
    }


def part_flops(run: Run) -> None:
    out: dict[str, Any] = {}
    for use_audio in run.args.variants:
        model = meta_model(run, use_audio)
        split = forward_split(run.cfg(use_audio), model, top=12)
        run.flop_cache[(use_audio, False, 1)] = split["total"]  # the same count
        out[variant_name(use_audio)] = {
            "params": sum(p.numel() for p in model.parameters()),
            "train_per_sample": count_flops(run, use_audio, True, 2) / 2,
            "infer_per_sample": count_flops(run, use_audio, False, 1),
            "forward_split": split,
        }
    run.results["flops"] = out


# =========================================================================== train and infer


@dataclasses.dataclass(frozen=True)
class Spec:
    """One row to measure. ``layout`` "best": the fastest eager layout measured so far for
    the part and variant; ``batch`` "largest" (training: the search), "compare" (training:
    ``min(--compare-batch, largest)``; inference: the sweep's choice) or a number."""

    part: str
    use_audio: bool
    layout: str
    batch: str | int
    compiled: bool = False
    bench: bool = False


def stage_specs(run: Run, stage: str) -> list[Spec]:
    """The rows of a stage, in the order they run: AV first (the product's model), the
    questions that matter most first, so that the deadline cuts the least useful rows.

    ``headline``: training at the largest batch. ``compare``: the loop's and the
    channels-last-3d layouts at the comparison batch. ``compile``: what compiling buys the
    AV model. ``more``: cuDNN's autotuner and the all-contiguous layout. ``compile-more``:
    the rest of the compiled rows.
    """
    vs = sorted(run.args.variants, reverse=True)
    eager = [p for p in ("train", "infer") if p in run.args.parts]
    compiled = ["train", "infer"] if "compile" in run.args.parts else eager
    if stage == "headline":
        return [Spec("train", v, "loop", "largest") for v in vs] if "train" in eager else []
    if stage == "compare":
        return [Spec(p, v, lay, "compare") for p in eager for v in vs for lay in ("loop", "cl3d")]
    if stage == "compile":
        return [Spec(p, vs[0], "loop", "compare", compiled=True) for p in compiled]
    if stage == "more":
        return [
            spec
            for v in vs
            for p in eager
            for spec in (Spec(p, v, "best", "compare", bench=True), Spec(p, v, "ncdhw", "compare"))
        ]
    specs = [Spec(p, v, lay, "compare", compiled=True)
             for lay in ("loop", "cl3d") for v in vs for p in compiled]  # fmt: skip
    return [s for s in specs if s not in stage_specs(run, "compile")]


def batches_of(run: Run, use_audio: bool) -> dict[str, Any]:
    return run.results.setdefault("batches", {}).setdefault(variant_name(use_audio), {})


def train_batch(run: Run, use_audio: bool, windows: Windows) -> int:
    """The largest training batch (searched once per variant, or ``--train-batch``)."""
    known = batches_of(run, use_audio)
    if "largest" not in known:
        if run.args.train_batch:
            known.update({"largest": run.args.train_batch, "how": "--train-batch"})
        else:
            b, tried = largest_batch(run, use_audio, windows)
            free_memory()
            known.update({"largest": b, "how": "largest that fits", "search": tried})
        run.save()
    return known["largest"]


def resolve(run: Run, spec: Spec, windows: Windows) -> tuple[str, int]:
    layout = best_layout(run, spec.part, spec.use_audio) if spec.layout == "best" else spec.layout
    if isinstance(spec.batch, int):
        return layout, spec.batch
    if spec.part == "infer":
        return layout, infer_batch(run, spec.use_audio, windows)
    largest = train_batch(run, spec.use_audio, windows)
    return layout, largest if spec.batch == "largest" else min(run.args.compare_batch, largest)


def measure(run: Run, spec: Spec, windows: Windows) -> dict[str, Any] | None:
    """Resolve, skip or run one row; append it to its part, print it, save the JSON.
    None when the same row was measured already."""
    why = skip_reason(run, spec)
    layout, batch = (spec.layout, 0) if why else resolve(run, spec, windows)
    row: dict[str, Any] = {
        "part": spec.part,
        "variant": variant_name(spec.use_audio),
        "config": config_name(layout, spec.compiled, spec.bench),
        "layout": layout,
        "compile": spec.compiled,
        "cudnn_benchmark": spec.bench,
        "batch": batch or None,
    }
    rows = run.results.setdefault(spec.part, [])
    same = ("variant", "config", "batch")
    if not why and any(all(r.get(k) == row[k] for k in same) for r in rows):
        return None
    if why:
        row["status"] = why
    else:
        runner = train_once if spec.part == "train" else infer_once
        row.update(with_oom_retry(run, spec, runner, layout, batch, windows))
        if row.get("compile_s") is not None:
            run.compile_estimate_s = max(30.0, 1.2 * (row["compile_s"] + sum(row["step_s"])))
    rows.append(row)
    print(f"  {format_row(row)}", flush=True)
    run.save()
    return row


def skip_reason(run: Run, spec: Spec) -> str | None:
    if spec.compiled and "compile" not in run.args.parts:
        why = "quick mode" if run.args.quick else "--parts without compile"
        return f"skipped: {why} (compiling takes minutes on a CPU)"
    if spec.bench and not run.cuda:
        return "skipped: cudnn.benchmark is for a GPU"
    if run.clock.left() <= 0:
        return f"skipped: --deadline-s {run.args.deadline_s:g} passed"
    if spec.compiled and run.clock.left() < run.compile_estimate_s:
        return (
            f"skipped: {run.clock.left():.0f} s left before --deadline-s, compiling "
            f"takes ~{run.compile_estimate_s:.0f} s"
        )
    return None


def with_oom_retry(
    run: Run, spec: Spec, runner: Callable[..., dict], layout: str, batch: int, windows: Windows
) -> dict[str, Any]:
    """``runner``'s figures; on running out of memory the batch drops by a quarter (twice
    at most) and the row says so."""
    tried = []
    for _ in range(3):
        tried.append(batch)
        try:
            with cudnn_benchmark(spec.bench):
                out = runner(run, spec, layout, batch, windows)
        except Exception as exc:
            if not is_oom(exc):
                traceback.print_exc()
                return {"status": f"failed: {type(exc).__name__}: {exc}"[:400]}
            out = None
        finally:
            if spec.compiled:
                torch._dynamo.reset()
            free_memory()
        if out is not None:
            if len(tried) > 1:
                out["note"] = f"out of memory at batch {tried[:-1]}"
            return out
        batch = max(1, batch * 3 // 4)
    return {"status": f"failed: out of memory at batches {tried}"}


def figures(
    run: Run, spec: Spec, batch: int, warm: list[float], timed: list[float]
) -> dict[str, Any]:
    step_s = statistics.median(timed)
    flops = count_flops(run, spec.use_audio, spec.part == "train", batch)
    out = {
        "batch": batch,
        "warmup_s": [round(t, 4) for t in warm],
        "step_s": [round(t, 4) for t in timed],
        "s_per_step": step_s,
        "samples_per_s": batch / step_s,
        "peak_gib": torch.cuda.max_memory_allocated(run.device) / GIB if run.cuda else None,
        "flops_per_sample": flops / batch,
        "tflops": flops / step_s / 1e12,
        "mfu": run.mfu(flops / step_s),
        "status": "ok",
    }
    if spec.compiled and warm:
        out["compile_s"] = round(warm[0] - step_s, 1)
    return out


def train_once(run: Run, spec: Spec, layout: str, batch: int, windows: Windows) -> dict:
    """``workflows.loop.train_step`` timed on one batch, repeated."""
    model = fresh_model(run, spec.use_audio, layout).train()
    net: Any = torch.compile(model, backend=run.args.compile_backend) if spec.compiled else model
    cfg = train_config(run, spec.use_audio, batch)
    optimizer = make_optimizer(net, cfg)
    data = windows.batch(batch, layout)
    if run.cuda:
        torch.cuda.reset_peak_memory_stats(run.device)
    warm, timed = time_steps(lambda: train_step(net, optimizer, data, cfg, run.device), run)
    return figures(run, spec, batch, warm, timed)


def infer_step(net: Any, clips: torch.Tensor, audio: torch.Tensor | None, device: Any) -> Any:
    """One batch of the sliding-window forward as ``avrsp.inference`` runs it: uint8
    windows ``[B, T, H, W, 3]`` → model input, inference mode, bf16 autocast on a GPU."""
    with torch.inference_mode(), autocast(device):
        return net(frames_to_input(clips, device), audio)


def infer_once(run: Run, spec: Spec, layout: str, batch: int, windows: Windows) -> dict:
    model = fresh_model(run, spec.use_audio, layout).eval()
    net: Any = torch.compile(model, backend=run.args.compile_backend) if spec.compiled else model
    data = windows.batch(batch, layout, run.device)
    audio = data["audio"] if spec.use_audio else None
    if run.cuda:
        torch.cuda.reset_peak_memory_stats(run.device)
    budget = run.args.infer_budget_s
    warm, timed = time_steps(
        lambda: infer_step(net, data["frames"], audio, run.device), run, budget_s=budget
    )
    return figures(run, spec, batch, warm, timed)


def train_config(run: Run, use_audio: bool, batch: int) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "preset": run.args.preset,
            "network": run.cfg(use_audio).to_dict(),
            "batch_size": max(batch, 2),
            "progress_every": 0,
        }
    )


def largest_batch(run: Run, use_audio: bool, windows: Windows) -> tuple[int, list[dict]]:
    """The largest training batch that fits (eager, loop layout): doubled from 2 until out
    of memory or ``--max-batch``, then bisected twice towards the first failure (multiples
    of 4). One step per try; their times are a rough batch-size curve."""
    tried: list[dict[str, Any]] = []
    model = fresh_model(run, use_audio, "loop").train()
    cfg = train_config(run, use_audio, 2)
    optimizer = make_optimizer(model, cfg)

    def fits(b: int) -> bool:
        ok = True
        t0 = time.perf_counter()
        try:
            train_step(model, optimizer, windows.batch(b, "loop"), cfg, run.device)
            run.sync()
        except Exception as exc:
            if not is_oom(exc):
                raise
            ok = False
        took = time.perf_counter() - t0
        optimizer.zero_grad(set_to_none=True)
        free_memory()
        tried.append({"batch": b, "fits": ok, "step_s": round(took, 3)})
        return ok

    good, bad, b = 0, 0, 2
    while b <= run.args.max_batch and fits(b):
        good, b = b, b * 2
    if b <= run.args.max_batch:
        bad = b
    for _ in range(2 if bad and good else 0):
        mid = (good + bad) // 2 // 4 * 4
        if mid <= good:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    if good == 0:
        raise RuntimeError("a training batch of 2 does not fit on this device")
    return good, tried


def infer_batch(run: Run, use_audio: bool, windows: Windows) -> int:
    """The inference batch: ``--infer-batch``, else a sweep (eager, loop layout) doubling
    from 8 while the rate grows by more than 3 % and the batch fits; its points are rows."""
    known = batches_of(run, use_audio)
    if "infer" in known:
        return known["infer"]
    if run.args.infer_batch:
        known["infer"] = run.args.infer_batch
        return known["infer"]
    best, best_rate, b = 8, 0.0, 8
    known["infer"] = best  # while sweeping
    while b <= run.args.max_infer_batch:
        row = measure(run, Spec("infer", use_audio, "loop", b), windows)
        if row is None or row["status"] != "ok":
            break
        grew = row["samples_per_s"] > 1.03 * best_rate
        if row["samples_per_s"] > best_rate:
            best, best_rate = b, row["samples_per_s"]
        if not grew:
            break
        b *= 2
    known["infer"] = best
    run.save()
    return best


def best_layout(run: Run, part: str, use_audio: bool) -> str:
    rows = [
        r
        for r in run.results.get(part, [])
        if r["variant"] == variant_name(use_audio)
        and r["status"] == "ok"
        and not r["compile"]
        and not r["cudnn_benchmark"]
    ]
    return max(rows, key=lambda r: r["samples_per_s"])["layout"] if rows else "loop"


def conv_layout(run: Run, layout: str, windows: dict[bool, Windows]) -> float:
    """Share of the Conv3d outputs that come out channels-last-3d in one forward (batch 1,
    the first variant) with the weights and input in ``layout``."""
    use_audio = run.args.variants[0]
    model = fresh_model(run, use_audio, layout).eval()
    seen: list[bool] = []

    def hook(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
        seen.append(out.is_contiguous(memory_format=torch.channels_last_3d))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv3d)]
    data = windows[use_audio].batch(1, layout, run.device)
    infer_step(model, data["frames"], data["audio"] if use_audio else None, run.device)
    for h in handles:
        h.remove()
    del model
    free_memory()
    return sum(seen) / max(len(seen), 1)


def part_rows(run: Run, stage: str, windows: dict[bool, Windows]) -> None:
    for spec in stage_specs(run, stage):
        measure(run, spec, windows[spec.use_audio])


def part_infer_sweep(run: Run, windows: dict[bool, Windows]) -> None:
    run.results["conv_outputs_channels_last"] = {
        layout: conv_layout(run, layout, windows) for layout in LAYOUTS
    }
    for v in sorted(run.args.variants, reverse=True):
        b = infer_batch(run, v, windows[v])
        measure(run, Spec("infer", v, "loop", b), windows[v])  # with --infer-batch


# =========================================================================== predict


def part_predict(run: Run, windows: dict[bool, Windows]) -> None:
    """``predict_video`` end to end on an in-memory video (eager, loop layout) at the
    inference batch: what ``avrsp predict`` can reach before decoding and writing."""
    rows = run.results.setdefault("predict", [])
    for use_audio in sorted(run.args.variants, reverse=True):
        name = variant_name(use_audio)
        if run.clock.left() <= 0:
            rows.append(
                {
                    "part": "predict",
                    "variant": name,
                    "config": "predict_video",
                    "status": f"skipped: --deadline-s {run.args.deadline_s:g} passed",
                }
            )
            continue
        b = infer_batch(run, use_audio, windows[use_audio])
        cfg = run.cfg(use_audio)
        inp = cfg.input
        # whole batches (one shape); reversed windows (frames < T−1) and forward ones
        n = -(-max(run.args.predict_batches * b, inp.frames + b) // b) * b
        pool = windows[use_audio]
        frames = [pool.frames[i % pool.pool, i % inp.frames].numpy() for i in range(n)]
        fps = 25.0
        rng = np.random.default_rng(run.args.seed)
        seconds = n / fps + 2 * inp.audio_window_s
        wave = (rng.random(int(seconds * inp.sample_rate)) * 2 - 1).astype(np.float32)
        model = fresh_model(run, use_audio, "loop").eval()
        video = partial(maps_of, model, fps=fps, waveform=wave, config=inp, batch=b, run=run)
        video(frames[:b])  # warm-up
        t0 = time.perf_counter()
        got = video(frames)
        run.sync()
        took = time.perf_counter() - t0
        model_rate = next(
            (
                r["samples_per_s"]
                for r in run.results.get("infer", [])
                if r["variant"] == name
                and r["config"] == "eager, loop"
                and r["batch"] == b
                and r["status"] == "ok"
            ),
            None,
        )
        rows.append(
            {
                "part": "predict",
                "variant": name,
                "config": "predict_video, eager, loop",
                "batch": b,
                "frames": got,
                "seconds": took,
                "samples_per_s": got / took,
                "model_only_per_s": model_rate,
                "status": "ok",
            }
        )
        del model, frames
        free_memory()
        print(f"  {format_row(rows[-1])}", flush=True)
        run.save()


def maps_of(
    model: nn.Module,
    frames: list[np.ndarray],
    *,
    fps: float,
    waveform: np.ndarray,
    config: Any,
    batch: int,
    run: Run,
) -> int:
    """How many maps ``predict_video`` yields for ``frames`` (all of them are computed)."""
    it = predict_video(
        model,
        frames,
        fps=fps,
        waveform=waveform,
        config=config,
        batch_size=batch,
        device=run.device,
    )
    return sum(1 for _ in it)


# =========================================================================== ddp


def part_ddp(run: Run, windows: dict[bool, Windows]) -> None:
    """The loop's ``train_step`` inside a one-process DDP group against the plain step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    use_audio = max(run.args.variants)  # AV where measured: the product's model
    name = variant_name(use_audio)
    b = run.args.ddp_batch or min(
        run.args.compare_batch, train_batch(run, use_audio, windows[use_audio])
    )
    backend = "nccl" if run.cuda else "gloo"
    if run.cuda:  # one process: NCCL's bootstrap needs no more than the loopback interface
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    out: dict[str, Any] = {"variant": name, "batch": b, "backend": backend, "world_size": 1}
    with tempfile.TemporaryDirectory(prefix="avrsp-ddp-") as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            model = fresh_model(run, use_audio, "loop").train()
            cfg = train_config(run, use_audio, b)
            data = windows[use_audio].batch(b, "loop")
            optimizer = make_optimizer(model, cfg)
            _, plain = time_steps(lambda: train_step(model, optimizer, data, cfg, run.device), run)
            ids = [run.device.index or torch.cuda.current_device()] if run.cuda else None
            wrapped = DistributedDataParallel(model, device_ids=ids)
            optimizer = make_optimizer(wrapped, cfg)
            _, ddp = time_steps(lambda: train_step(wrapped, optimizer, data, cfg, run.device), run)
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        finally:
            dist.destroy_process_group()
            model = wrapped = optimizer = data = None
            free_memory()
    out.update(
        {
            "plain_s_per_step": statistics.median(plain),
            "ddp_s_per_step": statistics.median(ddp),
            "plain_step_s": plain,
            "ddp_step_s": ddp,
        }
    )
    out["ddp_over_plain"] = out["ddp_s_per_step"] / out["plain_s_per_step"]
    out["params"] = params
    run.results["ddp"] = out
    run.save()


def final_scaling(run: Run) -> None:
    """The 8-GPU estimate from the fastest training row of the DDP part's variant (at the
    end of the run, when every row is in), else from the DDP part's plain step."""
    d = run.results["ddp"]
    best = best_train(run, d["variant"])
    step_s, batch = (
        (best["s_per_step"], best["batch"]) if best else (d["plain_s_per_step"], d["batch"])
    )
    use_audio = d["variant"] == "AV"
    flops = count_flops(run, use_audio, True, batch) / batch
    run.results["scaling"] = scaling(
        d["params"], step_s, batch, flops, run.peak_tflops, run.args.link_efficiency
    )
    run.results["scaling"]["from_row"] = best["config"] if best else "ddp part (plain step)"


def best_train(run: Run, name: str) -> dict[str, Any] | None:
    rows = [r for r in run.results.get("train", []) if r["variant"] == name and r["status"] == "ok"]
    return max(rows, key=lambda r: r["samples_per_s"]) if rows else None


def scaling(
    params: int,
    step_s: float,
    batch: int,
    flops_per_sample: float,
    peak_tflops: float | None,
    link_efficiency: float,
    gpus: int = SCALE_TO,
) -> dict[str, Any]:
    """Expected data-parallel scaling to ``gpus`` GPUs from one GPU's step.

    DDP all-reduces every gradient once per step: fp32, 4 bytes per parameter. A ring
    all-reduce sends and receives 2(N−1)/N of that per GPU, so over a link of bus
    bandwidth ``bw`` it takes ``2(N−1)/N · 4P / bw``. Efficiency without any overlap (the
    bound from below; DDP overlaps its buckets with the backward pass) is
    ``t_step / (t_step + t_allreduce)``. The same is given at the step time the training
    goal (MFU 25 %) would give, where communication weighs more.
    """
    grad_bytes = 4 * params
    ring_bytes = 2 * (gpus - 1) / gpus * grad_bytes
    steps = {"measured": step_s}
    if peak_tflops:
        steps["at_goal_mfu"] = batch * flops_per_sample / (GOAL_MFU * peak_tflops * 1e12)
    links = {}
    for link, gbps in LINKS_GBPS.items():
        bw = gbps * 1e9 * link_efficiency
        t_ar = ring_bytes / bw
        links[link] = {
            "one_way_gb_per_s": gbps,
            "allreduce_s": t_ar,
            **{
                f"{k}_efficiency": s / (s + t_ar)
                for k, s in steps.items()  # no overlap: a lower bound
            },
            **{f"{k}_samples_per_s": gpus * batch / (s + t_ar) for k, s in steps.items()},
        }
    return {
        "params": params,
        "grad_bytes": grad_bytes,
        "gpus": gpus,
        "ring_bytes_per_gpu": ring_bytes,
        "link_efficiency": link_efficiency,
        "batch_per_gpu": batch,
        "step_s": steps,
        "one_gpu_samples_per_s": batch / step_s,
        "links": links,
    }


# =========================================================================== profile


class ForwardTimer:
    """Forward time per component (``model_facts.COMPONENTS``; a ModuleList/ModuleDict's
    members), between forward pre- and post-hooks: CUDA events on a GPU, the wall clock on
    a CPU. ``forward`` is the whole model's forward."""

    def __init__(self, model: nn.Module, cuda: bool) -> None:
        self.cuda = cuda
        self.open: dict[str, list[Any]] = {}
        self.pairs: dict[str, list[tuple[Any, Any]]] = {}
        self.handles: list[Any] = []
        units: dict[str, list[nn.Module]] = {"forward": [model]}
        for name, _ in COMPONENTS:
            mod = getattr(model, name, None)
            if mod is None:
                continue
            container = isinstance(mod, nn.ModuleList | nn.ModuleDict)
            units[name] = list(mod.children()) if container else [mod]
        for name, members in units.items():
            for m in members:
                self.handles.append(m.register_forward_pre_hook(partial(self._start, name)))
                self.handles.append(m.register_forward_hook(partial(self._stop, name)))

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _start(self, name: str, _m: nn.Module, _args: Any) -> None:
        self.open.setdefault(name, []).append(self._mark())

    def _stop(self, name: str, _m: nn.Module, _args: Any, _out: Any) -> None:
        self.pairs.setdefault(name, []).append((self.open[name].pop(), self._mark()))

    def take(self) -> dict[str, float]:
        """Seconds per unit since the last call."""
        if self.cuda:
            torch.cuda.synchronize()
        out = {}
        for name, pairs in self.pairs.items():
            if self.cuda:
                out[name] = sum(a.elapsed_time(b) for a, b in pairs) / 1e3
            else:
                out[name] = sum(b - a for a, b in pairs)
        self.pairs = {}
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def part_profile(run: Run, windows: dict[bool, Windows]) -> None:
    """The slowest eager training row: forward split by component, top operators."""
    rows = [r for r in run.results.get("train", []) if r["status"] == "ok" and not r["compile"]]
    if not rows:
        run.results["profile"] = {"status": "skipped: no eager training row measured"}
        return
    small = min(r["batch"] for r in rows)  # the comparison rows' batch
    slow = min((r for r in rows if r["batch"] == small), key=lambda r: r["samples_per_s"])
    use_audio = slow["variant"] == "AV"
    b = min(slow["batch"], run.args.profile_batch)
    layout = slow["layout"]
    out: dict[str, Any] = {
        "of_row": f"{slow['variant']} {slow['config']}",
        "batch": b,
        "candidates": [f"{r['variant']} {r['config']}" for r in rows if r["batch"] == small],
    }
    with cudnn_benchmark(slow["cudnn_benchmark"]):
        model = fresh_model(run, use_audio, layout).train()
        cfg = train_config(run, use_audio, b)
        optimizer = make_optimizer(model, cfg)
        data = windows[use_audio].batch(b, layout)
        timer = ForwardTimer(model, run.cuda)
        steps, splits = [], []
        for i in range(1 + run.args.min_steps):
            t0 = time.perf_counter()
            train_step(model, optimizer, data, cfg, run.device)
            run.sync()
            took = time.perf_counter() - t0
            split = timer.take()
            if i:  # the first is a warm-up
                steps.append(took)
                splits.append(split)
        timer.remove()
        step_s = statistics.median(steps)
        fwd = {k: statistics.median(s[k] for s in splits) for k in splits[0]}
        flops = run.results.get("flops", {}).get(slow["variant"], {}).get("forward_split")
        flops = flops or forward_split(run.cfg(use_audio), meta_model(run, use_audio), top=0)
        components = {}
        for name, label in COMPONENTS:
            if name not in fwd:
                continue
            f = flops["components"][name] * b
            components[name] = {
                "label": label,
                "forward_s": fwd[name],
                "share_of_step": fwd[name] / step_s,
                "forward_tflops": f / fwd[name] / 1e12 if fwd[name] > 0 else None,
                "forward_flop_share": flops["components"][name] / flops["total"],
            }
        glue = fwd["forward"] - sum(c["forward_s"] for c in components.values())
        out.update(
            {
                "step_s": step_s,
                "forward_s": fwd["forward"],
                "forward_outside_components_s": glue,
                "rest_of_step_s": step_s - fwd["forward"],
                "components": components,
                "top_ops": top_operators(run, model, optimizer, data, cfg),
            }
        )
    del model, optimizer, data
    free_memory()
    run.results["profile"] = out
    run.save()


def top_operators(run: Run, model: nn.Module, optimizer: Any, data: dict, cfg: Any) -> dict:
    """One step under ``torch.profiler``. On a GPU: the kernels (and copies) with the most
    device time, their sum being the time the device was busy, and the aten operators by
    the device time of the kernels they launched; on a CPU the same by CPU time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.cuda else [])
    with profile(activities=activities) as prof:
        train_step(model, optimizer, data, cfg, run.device)
        run.sync()
    events = list(prof.key_averages())
    unit = "device" if run.cuda else "cpu"

    def value(e: Any, attr: str) -> float:
        for name in (attr, attr.replace("device", "cuda")):
            if hasattr(e, name):
                return float(getattr(e, name))
        return 0.0

    def on_device(e: Any) -> bool:
        return "CPU" not in str(getattr(e, "device_type", "CPU"))

    self_attr, total_attr = f"self_{unit}_time_total", f"{unit}_time_total"
    leaves = [e for e in events if on_device(e)] if run.cuda else events
    busy = sum(value(e, self_attr) for e in leaves) or 1.0

    def top(pool: list[Any], attr: str) -> list[dict[str, Any]]:
        picked = sorted(pool, key=lambda e: -value(e, attr))[: run.args.top_ops]
        return [
            {
                "name": e.key[:160],
                "calls": e.count,
                "ms": value(e, attr) / 1e3,
                "share": value(e, attr) / busy,
            }
            for e in picked
        ]

    aten = [e for e in events if e.key.startswith("aten::") and not on_device(e)]
    return {
        "time": f"{unit} time",
        "busy_ms": busy / 1e3,
        "by_self_time": top(leaves, self_attr),
        "aten_by_total_time": top(aten, total_attr),
    }


# =========================================================================== ingest


def jpeg_quality() -> tuple[int, str]:
    """The quality ``avrsp preprocess`` writes frames with (SegmentOptions' default)."""
    try:
        from preprocessing.segments import SegmentOptions

        field = next(f for f in dataclasses.fields(SegmentOptions) if f.name == "jpeg_quality")
        return int(field.default), "preprocessing.segments.SegmentOptions"
    except Exception as exc:  # the media stack (PyAV) is absent on some GPU machines
        return 90, f"90, the documented default ({type(exc).__name__} importing segments)"


def natural_frames(t: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [t, h, w, 3]`` frames with the structure of video: smooth colour fields,
    a few soft objects moving across them, sensor noise (random noise alone would make
    JPEGs several times larger than real frames)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(3):
            fy, fx, ph = rng.uniform(0.5, 3) / h, rng.uniform(0.5, 3) / w, rng.uniform(0, 6.3)
            base[..., c] += 30 * np.cos(2 * np.pi * (fy * yy + fx * xx) + ph)
    base += rng.uniform(60, 180, 3).astype(np.float32)
    objects = [
        (
            rng.uniform(0, h),
            rng.uniform(0, w),
            rng.uniform(-2, 2, 2),
            rng.uniform(8, h / 4),
            rng.uniform(0, 255, 3).astype(np.float32),
        )
        for _ in range(4)
    ]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frame = base.copy()
        for y0, x0, (vy, vx), r, colour in objects:
            d = np.hypot(yy - (y0 + vy * i), xx - (x0 + vx * i)) - r
            alpha = (1 / (1 + np.exp(np.clip(d / 2, -30, 30))))[..., None]
            frame = frame * (1 - alpha) + colour * alpha
        frame += rng.normal(0, 2.5, frame.shape).astype(np.float32)
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def part_ingest(run: Run) -> None:
    """CPU seconds per training window for Ray Data's decode step, on one core."""
    cfg = run.cfg(True)
    inp = cfg.input
    rng = np.random.default_rng(run.args.seed)
    quality, quality_from = jpeg_quality()
    n = run.args.ingest_rows
    clips = [natural_frames(inp.frames, inp.height, inp.width, rng) for _ in range(n)]
    out: dict[str, Any] = {
        "preset": run.args.preset,
        "rows_per_batch": n,
        "jpeg_quality": quality,
        "jpeg_quality_from": quality_from,
    }
    try:
        decode, encode_rows, how = _schema_codec(cfg, quality, rng)
    except ImportError as exc:
        decode, encode_rows, how = _pillow_codec(cfg, quality)
        how += f" ({type(exc).__name__}: {exc})"
    out["decoder"] = how
    stored = encode_rows(clips)
    out["bytes_per_window"] = stored["bytes_per_window"]
    out["jpeg_bytes_per_frame"] = stored["jpeg_bytes_per_frame"]
    with one_core() as core:
        out["core"] = core
        decode(stored)  # warm-up
        wall, cpu = [], []
        for _ in range(run.args.ingest_rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            batch = decode(stored)
            wall.append((time.perf_counter() - t0) / n)
            cpu.append((time.process_time() - c0) / n)
    shape = tuple(batch["frames"].shape)
    if shape != (n, inp.frames, inp.height, inp.width, 3):
        raise RuntimeError(f"decoded frames have shape {shape}")
    out.update(
        {
            "wall_s_per_window": statistics.median(wall),
            "cpu_s_per_window": statistics.median(cpu),
            "rounds_wall_s": wall,
            "rounds_cpu_s": cpu,
        }
    )
    run.results["ingest"] = out
    run.save()


def cores_needed(run: Run, cpu_s: float) -> dict[str, Any]:
    """Decode cores that keep a training rate fed: rate × CPU seconds per window."""
    rates: dict[str, float] = {}
    for name in ("V", "AV"):
        best = best_train(run, name)
        if best:
            rates[f"best {name} row ({best['config']}, {run.device.type})"] = best["samples_per_s"]
    flops = run.results.get("flops", {}).get("AV", {}).get("train_per_sample")
    if run.peak_tflops and flops:
        rates["AV at the goal MFU (25 %)"] = GOAL_MFU * run.peak_tflops * 1e12 / flops
    return {k: {"samples_per_s": r, "cores": r * cpu_s} for k, r in rates.items()}


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one CPU (where the OS allows) for the block."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


def _schema_codec(cfg: AVRSPConfig, quality: int, rng: np.random.Generator) -> tuple:
    """Rows written with the segment schema's encoders into an Arrow table; decoded as a
    Ray Data decode task does: the table's columns as numpy, then ``decode_batch``."""
    from preprocessing.schema import (
        SCHEMA,
        SCHEMA_VERSION,
        encode_jpeg,
        encode_map_png,
        rows_to_table,
    )
    from workflows.data import decode_batch

    inp = cfg.input
    size = (inp.height, inp.width)

    def encode_rows(clips: list[np.ndarray]) -> dict[str, Any]:
        rows = []
        for i, clip in enumerate(clips):
            jpegs = [encode_jpeg(f, quality) for f in clip]
            target = clip[-1].astype(np.float32).mean(-1)
            fixations = rng.uniform(0, 1, (8, 2)) * (360, 640)
            values = {
                "schema_version": SCHEMA_VERSION,
                "dataset": "bench",
                "video": f"v{i}",
                "split": "train",
                "fold": 0,
                "last_frame": inp.frames - 1,
                "num_frames": inp.frames,
                "fps": 25.0,
                "native_height": 360,
                "native_width": 640,
                "height": inp.height,
                "width": inp.width,
                "frames_jpeg": jpegs,
                "has_audio": True,
                "sample_rate": inp.sample_rate,
                "audio": (rng.random(inp.audio_samples) * 2 - 1).astype(np.float32),
                "target_png": encode_map_png(target),
                "target_source": "fixations",
                "fixations": fixations[:, ::-1].astype(np.float32).ravel(),
                "fixations_dropped": 0,
            }
            rows.append({f.name: values.get(f.name, _empty(f.type)) for f in SCHEMA})
        table = rows_to_table(rows)
        return {
            "table": table,
            "bytes_per_window": table.nbytes / len(rows),
            "jpeg_bytes_per_frame": float(
                np.mean([len(b) for r in rows for b in r["frames_jpeg"]])
            ),
        }

    def decode(stored: dict[str, Any]) -> dict[str, np.ndarray]:
        table = stored["table"]
        batch = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
        return decode_batch(batch, size=size)

    return decode, encode_rows, "workflows.data.decode_batch on a preprocessing.schema table"


def _empty(kind: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_list(kind):
        return []
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        return ""
    return False if pa.types.is_boolean(kind) else 0


def _pillow_codec(cfg: AVRSPConfig, quality: int) -> tuple:
    """Without PyArrow or the workflows package: Pillow with the schema's settings."""
    import io

    from PIL import Image

    def encode_rows(clips: list[np.ndarray]) -> dict[str, Any]:
        rows = []
        for clip in clips:
            jpegs = []
            for f in clip:
                buf = io.BytesIO()
                Image.fromarray(f).save(buf, format="JPEG", quality=quality)
                jpegs.append(buf.getvalue())
            audio = np.zeros(cfg.input.audio_samples, np.float32).tobytes()
            rows.append({"frames_jpeg": jpegs, "audio": audio})
        size = sum(len(b) for r in rows for b in r["frames_jpeg"]) + sum(
            len(r["audio"]) for r in rows
        )
        return {
            "rows": rows,
            "bytes_per_window": size / len(rows),
            "jpeg_bytes_per_frame": float(
                np.mean([len(b) for r in rows for b in r["frames_jpeg"]])
            ),
        }

    def decode(stored: dict[str, Any]) -> dict[str, np.ndarray]:
        frames = [
            np.stack(
                [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in r["frames_jpeg"]]
            )
            for r in stored["rows"]
        ]
        audio = [np.frombuffer(r["audio"], np.float32) for r in stored["rows"]]
        return {"frames": np.stack(frames), "audio": np.stack(audio)}

    return decode, encode_rows, "Pillow directly (no target PNG or fixation map)"


# =========================================================================== output


def format_row(r: dict[str, Any]) -> str:
    unit = "frames/s" if r["part"] in ("infer", "predict") else "samples/s"
    head = f"{r['part']:<7} {r['variant']:<2} {r.get('config', ''):<33}"
    if r.get("status") != "ok":
        return f"{head} {r.get('status')}"
    peak = f"{r['peak_gib']:6.1f}" if r.get("peak_gib") is not None else "   n/a"
    mfu = f"{100 * r['mfu']:5.1f} %" if r.get("mfu") is not None else "   n/a "
    tfl = f"{r['tflops']:7.3g}" if r.get("tflops") is not None else "    n/a"
    step = f"{r['s_per_step']:7.3f}" if r.get("s_per_step") is not None else "    n/a"
    extra = ""
    if r.get("compile_s") is not None:
        extra += f" compile {r['compile_s']:.0f} s"
    if r.get("model_only_per_s"):
        extra += f" (model alone {r['model_only_per_s']:.1f})"
    if r.get("note"):
        extra += f" {r['note']}"
    return (
        f"{head} {r['batch']:>5} {r['samples_per_s']:9.3g} {unit:<9} {step} {peak} {tfl} "
        f"{mfu}{extra}"
    )


def print_table(run: Run) -> None:
    res = run.results
    print()
    print(f"AVRSP {res['preset']} on {res['machine']['device_name']}; peak {res['peak']}")
    if res.get("matmul_tflops"):
        print(f"measured bf16 matmul (8192³): {res['matmul_tflops']:.0f} TFLOP/s")
    print(
        f"{'part':<7} {'v':<2} {'config':<33} {'batch':>5} {'rate':>9} {'':<9} "
        f"{'s/step':>7} {'GiB':>6} {'TFLOP/s':>7} {'MFU':>7}"
    )
    order = {lay: i for i, lay in enumerate(LAYOUTS)}

    def key(r: dict[str, Any]) -> tuple:
        return (
            r["variant"] != "AV",
            -(r.get("batch") or 0),
            r.get("compile", False),
            r.get("cudnn_benchmark", False),
            order.get(r.get("layout"), 9),
        )

    for part in ("train", "infer", "predict"):
        for r in sorted(res.get(part, []), key=key):
            print(format_row(r))
    for name, f in res.get("flops", {}).items():
        print(
            f"flops {name}: train {f['train_per_sample'] / 1e12:.3f} TFLOP/sample "
            f"(fwd+bwd), inference {f['infer_per_sample'] / 1e9:.1f} GFLOP/window, "
            f"{f['params'] / 1e6:.2f} M parameters"
        )
    if "conv_outputs_channels_last" in res:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in res["conv_outputs_channels_last"].items())
        print(f"Conv3d outputs in channels-last-3d, by layout: {shares}")
    if "ddp" in res:
        d = res["ddp"]
        print(
            f"DDP ({d['backend']}, world 1, {d['variant']} batch {d['batch']}): "
            f"{d['ddp_s_per_step']:.3f} s/step vs plain {d['plain_s_per_step']:.3f} "
            f"(×{d['ddp_over_plain']:.3f})"
        )
    if "scaling" in res:
        s = res["scaling"]
        print(
            f"8-GPU estimate from {s['from_row']} (batch {s['batch_per_gpu']}/GPU, "
            f"{s['one_gpu_samples_per_s']:.1f} samples/s on one): all-reduce "
            f"{s['grad_bytes'] / 1e6:.0f} MB fp32 gradients, {s['ring_bytes_per_gpu'] / 1e6:.0f} "
            f"MB per GPU per step (ring), link efficiency {s['link_efficiency']:.0%}"
        )
        for link, v in s["links"].items():
            goal = ""
            if "at_goal_mfu_efficiency" in v:
                goal = f"; at the goal MFU {v['at_goal_mfu_efficiency']:.1%}"
            print(
                f"  {link}: {1e3 * v['allreduce_s']:.1f} ms per all-reduce, "
                f"efficiency ≥ {v['measured_efficiency']:.1%} "
                f"({v['measured_samples_per_s']:.3g} samples/s on 8){goal}"
            )
    if "profile" in res and "components" in res["profile"]:
        p = res["profile"]
        print(
            f"profile of {p['of_row']} at batch {p['batch']}: step {p['step_s']:.3f} s, "
            f"forward {p['forward_s']:.3f} s, rest (backward, loss, AdamW, copies) "
            f"{p['rest_of_step_s']:.3f} s"
        )
        for c in p["components"].values():
            tf = f", {c['forward_tflops']:.3g} TFLOP/s" if c["forward_tflops"] else ""
            print(
                f"  {c['label']:<24} forward {1e3 * c['forward_s']:8.1f} ms "
                f"({c['share_of_step']:5.1%} of the step{tf}; "
                f"{c['forward_flop_share']:5.1%} of the FLOPs)"
            )
        for op in p["top_ops"]["by_self_time"][:8]:
            print(f"  {op['share']:6.1%} {op['ms']:9.1f} ms {op['calls']:>5}× {op['name'][:70]}")
    if "ingest" in res:
        g = res["ingest"]
        print(
            f"ingest on one core ({g['decoder']}): {1e3 * g['cpu_s_per_window']:.1f} ms CPU "
            f"per window ({g['bytes_per_window'] / 1024:.0f} KiB stored, "
            f"{g['jpeg_bytes_per_frame'] / 1024:.1f} KiB per JPEG frame)"
        )
        for k, v in g["cores_per_gpu"].items():
            print(f"  {k}: {v['samples_per_s']:.1f} samples/s → {v['cores']:.1f} decode cores")
    for part, err in res.get("errors", {}).items():
        print(f"part {part} FAILED: {err}")


def machine_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            {
                "device_name": torch.cuda.get_device_name(device),
                "memory_gib": props.total_memory / GIB,
                "sms": props.multi_processor_count,
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
            }
        )
    else:
        facts["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
        facts["torch_threads"] = torch.get_num_threads()
    return facts


def matmul_tflops(device: torch.device) -> float:
    """bf16 8192³ matrix products on random data: the chip's practical ceiling."""
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    stop.record()
    torch.cuda.synchronize(device)
    return 10 * 2 * n**3 / (start.elapsed_time(stop) / 1e3) / 1e12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cuda:N, cpu")
    p.add_argument("--preset", default=None, help="default paper (tiny with --quick)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CPU smoke run: tiny preset, batch 2, 1 + 2 steps, no compile, < 60 s",
    )
    p.add_argument("--json", type=Path, help="write every figure here (after every row)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None)
    p.add_argument("--variants", nargs="+", choices=("V", "AV"), default=["V", "AV"])
    p.add_argument("--budget-s", type=float, default=3.0, help="timed seconds per train row")
    p.add_argument("--infer-budget-s", type=float, default=1.5, help="timed s per infer row")
    p.add_argument("--deadline-s", type=float, default=330.0, help="start no row after this")
    p.add_argument(
        "--compile-estimate-s",
        type=float,
        default=150.0,
        help="start a compiled row only with this much time left (then: measured)",
    )
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--min-steps", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--max-batch", type=int, default=128, help="cap of the training batch search")
    p.add_argument("--train-batch", type=int, help="skip the search: this training batch")
    p.add_argument(
        "--compare-batch",
        type=int,
        default=16,
        help="training batch of the layout, cuDNN and compile rows (at most the largest)",
    )
    p.add_argument("--infer-batch", type=int, help="skip the sweep: this inference batch")
    p.add_argument("--max-infer-batch", type=int, default=64)
    p.add_argument("--ddp-batch", type=int, help="default: min(training batch, 16)")
    p.add_argument("--profile-batch", type=int, default=32, help="at most this batch")
    p.add_argument("--predict-batches", type=int, default=8, help="video length in batches")
    p.add_argument("--top-ops", type=int, default=15)
    p.add_argument("--ingest-rows", type=int, default=8, help="rows per decode batch")
    p.add_argument("--ingest-rounds", type=int, default=5)
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (eager: tracing only, for a CPU check)",
    )
    p.add_argument(
        "--link-efficiency",
        type=float,
        default=0.8,
        help="share of a link's one-way rate a ring all-reduce reaches (assumed)",
    )
    p.add_argument("--threads", type=int, help="torch intra-op threads (CPU runs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.preset = args.preset or "tiny"
        args.train_batch = args.train_batch or 2
        args.infer_batch = args.infer_batch or 2
        args.ddp_batch = args.ddp_batch or 2
        args.min_steps, args.max_steps = 1, 1  # with the warm-up: 2 steps a row
        args.budget_s = args.infer_budget_s = 0.0
        args.ingest_rounds = min(args.ingest_rounds, 2)
        args.ingest_rows = min(args.ingest_rows, 2)
        args.predict_batches = min(args.predict_batches, 3)
        args.parts = args.parts or [p for p in PARTS if p != "compile"]
        args.deadline_s = max(args.deadline_s, 600.0)
        # One thread: two intra-op threads collapse when anything else wants the cores
        # (docs/MODEL.md, "Speed of the tiny preset on CPU").
        args.threads = args.threads or 1
    args.preset = args.preset or "paper"
    args.parts = args.parts or list(PARTS)
    args.variants = [v == "AV" for v in dict.fromkeys(args.variants)]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = torch.device(resolve_device(args.device))
    except ConfigError as exc:
        raise SystemExit(f"benchmarks/gpu.py: {exc}") from None
    if device.type == "cuda":
        if device.index is None:  # "cuda": the current device, by its number
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_facts(device)
    peak, source = peak_of(machine["device_name"]) if device.type == "cuda" else (None, "CPU")
    results: dict[str, Any] = {
        "preset": args.preset,
        "quick": args.quick,
        "device": str(device),
        "machine": machine,
        "peak_tflops": peak,
        "peak": f"{peak} TFLOP/s dense bf16 ({source})" if peak else f"n/a ({source})",
        "autocast": "bf16" if device.type == "cuda" else "none (float32 on a CPU)",
        "args": {k: str(v) for k, v in vars(args).items()},
        "errors": {},
    }
    run = Run(args, device, peak, Clock(args.deadline_s), results)
    run.compile_estimate_s = args.compile_estimate_s
    print(
        f"benchmarks/gpu.py: {args.preset} on {machine['device_name']}, torch "
        f"{torch.__version__}, parts {' '.join(args.parts)}",
        flush=True,
    )
    if device.type == "cuda":
        results["matmul_tflops"] = matmul_tflops(device)
    windows = WindowPools(run)
    steps: list[tuple[tuple[str, ...], str, Callable[[], None]]] = [
        (("flops",), "flops", lambda: part_flops(run)),
        (("ingest",), "ingest", lambda: part_ingest(run)),
        (("train",), "train at the largest batch", lambda: part_rows(run, "headline", windows)),
        (("infer",), "inference batch sweep", lambda: part_infer_sweep(run, windows)),
        (("train", "infer"), "layouts", lambda: part_rows(run, "compare", windows)),
        (("ddp",), "ddp", lambda: part_ddp(run, windows)),
        (("profile",), "profile", lambda: part_profile(run, windows)),
        (("predict",), "predict", lambda: part_predict(run, windows)),
        (("train", "infer", "compile"), "compiled AV", lambda: part_rows(run, "compile", windows)),
        (("train", "infer"), "more eager rows", lambda: part_rows(run, "more", windows)),
        (
            ("train", "infer", "compile"),
            "more compiled",
            lambda: part_rows(run, "compile-more", windows),
        ),
    ]
    for parts, label, fn in steps:
        if not set(parts) & set(args.parts):
            continue
        print(f"== {label} ({run.clock.elapsed():.0f} s)", flush=True)
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            results["errors"][label] = f"{type(exc).__name__}: {exc}"[:500]
            free_memory()
        run.save()
    if "ddp" in results:
        final_scaling(run)
    if "ingest" in results:
        results["ingest"]["cores_per_gpu"] = cores_needed(
            run, results["ingest"]["cpu_s_per_window"]
        )
    run.save()
    print_table(run)
    print(f"\n{run.clock.elapsed():.0f} s in all" + (f"; JSON: {args.json}" if args.json else ""))


if __name__ == "__main__":
    sys.exit(main())
