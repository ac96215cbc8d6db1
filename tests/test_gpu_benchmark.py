"""benchmarks/gpu.py: its CPU smoke run writes every row and figure, and they add up.

The quick run (tiny preset, batch 2, one warm-up and one timed step per row) runs once in a
subprocess; the tests read its JSON and check each figure against what it must equal: the
flop counter's count for that batch, rates from step times, the all-reduce arithmetic from
the parameter count, the ingest cores from the rates. GPU-only figures (MFU, peak memory,
NCCL, cuDNN's autotuner) are n/a on a CPU; the GPU run of the same checks skips without one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from avrsp.config import preset
from avrsp.losses import saliency_loss
from avrsp.model import build_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"
LAYOUTS = ("loop", "ncdhw", "cl3d")
COMPONENTS = ("visual", "stage_heads", "audio", "audio_proj", "fusion", "ms", "mrg", "decoder")

pytestmark = pytest.mark.slow


def run_quick(tmp: Path, device: str) -> dict[str, Any]:
    out = tmp / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", device, "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_quick(tmp_path_factory.mktemp("gpu-bench"), "cpu")


@functools.cache
def meta_model(use_audio: bool) -> torch.nn.Module:
    cfg = preset("tiny").with_overrides(**{"model.use_audio": use_audio})
    with torch.device("meta"):
        return build_model(cfg)


@functools.cache
def flops(use_audio: bool, train: bool, batch: int) -> int:
    """The flop counter's count for one batch of the tiny preset, counted here."""
    cfg = preset("tiny").with_overrides(**{"model.use_audio": use_audio})
    inp = cfg.input
    model = meta_model(use_audio).train(train)
    with torch.device("meta"):
        frames = torch.zeros(batch, 3, inp.frames, inp.height, inp.width)
        audio = torch.zeros(batch, inp.audio_samples) if use_audio else None
        target = torch.zeros(batch, inp.height, inp.width)
    counter = FlopCounterMode(display=False)
    with counter:
        if train:
            loss, _ = saliency_loss(model(frames, audio).float(), target, cfg.loss)
            loss.backward()
        else:
            with torch.no_grad():
                model(frames, audio)
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def positive(x: object) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and x > 0


def rows(result: dict[str, Any], part: str, status: str | None = "ok") -> list[dict]:
    return [r for r in result[part] if status is None or r["status"] == status]


def test_every_eager_row_is_measured_and_adds_up(quick: dict[str, Any]) -> None:
    assert quick["errors"] == {}
    for part in ("train", "infer"):
        measured = {(r["variant"], r["layout"]) for r in rows(quick, part)}
        assert measured == {(v, lay) for v in ("V", "AV") for lay in LAYOUTS}, part
        for r in rows(quick, part):
            assert r["batch"] == 2 and len(r["warmup_s"]) == 1 and len(r["step_s"]) == 1
            assert positive(r["s_per_step"]) and positive(r["samples_per_s"])
            assert r["s_per_step"] == pytest.approx(statistics.median(r["step_s"]), rel=1e-3)
            assert r["samples_per_s"] == pytest.approx(r["batch"] / r["s_per_step"])
            assert r["tflops"] == pytest.approx(
                r["flops_per_sample"] * r["batch"] / r["s_per_step"] / 1e12
            )
            assert r["mfu"] is None and r["peak_gib"] is None  # n/a on a CPU


def test_flops_per_sample_equal_the_flop_counter(quick: dict[str, Any]) -> None:
    for part in ("train", "infer"):
        for r in rows(quick, part):
            counted = flops(r["variant"] == "AV", part == "train", r["batch"])
            assert r["flops_per_sample"] == counted / r["batch"], (part, r["config"])
    for name, f in quick["flops"].items():
        use_audio = name == "AV"
        assert f["train_per_sample"] == flops(use_audio, True, 2) / 2
        assert f["infer_per_sample"] == flops(use_audio, False, 1)
        # backward costs about twice the forward
        assert 2.5 < f["train_per_sample"] / f["infer_per_sample"] < 3.1
        split = f["forward_split"]
        assert split["total"] == f["infer_per_sample"]
        assert sum(split["components"].values()) == split["total"]
        layer_flops = [x["flops"] for x in split["layers"]]
        assert layer_flops == sorted(layer_flops, reverse=True) and layer_flops[0] > 0
        assert split["components"]["audio"] > 0 if use_audio else split["components"]["audio"] == 0


def test_gpu_only_and_compiled_rows_say_why_they_were_skipped(quick: dict[str, Any]) -> None:
    for part in ("train", "infer"):
        bench = [r for r in quick[part] if r["cudnn_benchmark"]]
        assert len(bench) == 2 and all("GPU" in r["status"] for r in bench)
        compiled = [r for r in quick[part] if r["compile"]]
        assert {(r["variant"], r["layout"]) for r in compiled} == {
            (v, lay) for v in ("V", "AV") for lay in ("loop", "cl3d")
        }
        assert all(r["status"].startswith("skipped: quick mode") for r in compiled)
    assert quick["peak_tflops"] is None and quick["peak"].startswith("n/a")


def test_ddp_step_and_scaling_arithmetic(quick: dict[str, Any]) -> None:
    ddp = quick["ddp"]
    assert ddp["backend"] == "gloo" and ddp["world_size"] == 1 and ddp["variant"] == "AV"
    assert positive(ddp["plain_s_per_step"]) and positive(ddp["ddp_s_per_step"])
    assert ddp["ddp_over_plain"] == pytest.approx(ddp["ddp_s_per_step"] / ddp["plain_s_per_step"])
    s = quick["scaling"]
    params = sum(p.numel() for p in meta_model(True).parameters())
    assert s["params"] == params and s["grad_bytes"] == 4 * params
    assert s["ring_bytes_per_gpu"] == pytest.approx(2 * 7 / 8 * 4 * params)
    step = s["step_s"]["measured"]
    best = max(rows(quick, "train"), key=lambda r: r["samples_per_s"] * (r["variant"] == "AV"))
    assert step == best["s_per_step"] and s["from_row"] == best["config"]
    assert "at_goal_mfu" not in s["step_s"]  # no peak on a CPU
    for link in s["links"].values():
        t = s["ring_bytes_per_gpu"] / (link["one_way_gb_per_s"] * 1e9 * s["link_efficiency"])
        assert link["allreduce_s"] == pytest.approx(t)
        assert link["measured_efficiency"] == pytest.approx(step / (step + t))
        assert link["measured_samples_per_s"] == pytest.approx(8 * s["batch_per_gpu"] / (step + t))


def test_profile_splits_the_forward_by_component(quick: dict[str, Any]) -> None:
    p = quick["profile"]
    # the eager training rows measured before the profile: the loop's and cl3d layouts
    named = {f"{r['variant']} {r['config']}": r for r in rows(quick, "train")}
    assert {f"{v} eager, {lay}" for v in ("V", "AV") for lay in ("loop", "cl3d")} <= set(
        p["candidates"]
    )
    slowest = min((named[c] for c in p["candidates"]), key=lambda r: r["samples_per_s"])
    assert p["of_row"] == f"{slowest['variant']} {slowest['config']}"
    parts = p["components"]
    expected = set(COMPONENTS) if slowest["variant"] == "AV" else set(COMPONENTS) - {
        "audio", "audio_proj", "fusion"}  # fmt: skip
    assert set(parts) == expected
    assert all(positive(c["forward_s"]) for c in parts.values())
    assert sum(c["forward_s"] for c in parts.values()) <= p["forward_s"] * 1.001
    assert 0 < p["forward_s"] < p["step_s"]
    assert p["rest_of_step_s"] == pytest.approx(p["step_s"] - p["forward_s"])
    assert sum(c["forward_flop_share"] for c in parts.values()) == pytest.approx(1.0)
    ops = p["top_ops"]
    assert ops["by_self_time"] and all(op["ms"] >= 0 for op in ops["by_self_time"])
    names = [op["name"] for op in ops["aten_by_total_time"]]
    assert "aten::convolution_backward" in names


def test_ingest_decodes_real_windows_and_sizes_the_cores(quick: dict[str, Any]) -> None:
    g = quick["ingest"]
    assert g["decoder"].startswith("workflows.data.decode_batch")
    assert g["jpeg_quality"] == 90
    assert positive(g["cpu_s_per_window"]) and positive(g["wall_s_per_window"])
    # tiny: 8 JPEG frames of 64×112 and 0.75 s of float32 audio per window
    assert 8 * g["jpeg_bytes_per_frame"] + 4 * 16538 < g["bytes_per_window"] < 200_000
    assert g["cores_per_gpu"]
    for entry in g["cores_per_gpu"].values():
        assert entry["cores"] == pytest.approx(entry["samples_per_s"] * g["cpu_s_per_window"])


def test_predict_video_end_to_end(quick: dict[str, Any]) -> None:
    for r in rows(quick, "predict"):
        assert r["frames"] % r["batch"] == 0 and r["frames"] > 8  # reversed and forward windows
        assert r["samples_per_s"] == pytest.approx(r["frames"] / r["seconds"])
        assert positive(r["model_only_per_s"])
    assert {r["variant"] for r in rows(quick, "predict")} == {"V", "AV"}


def test_chip_peaks_and_their_names() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert gpu.peak_of("NVIDIA H200")[0] == 989.5
    assert gpu.peak_of("NVIDIA H200 NVL")[0] == 835.5
    assert gpu.peak_of("NVIDIA H100 80GB HBM3")[0] == 989.5
    assert gpu.peak_of("NVIDIA H100 PCIe")[0] == 756.5
    assert gpu.peak_of("NVIDIA H100 NVL")[0] == 835.5
    assert gpu.peak_of("Tesla T4")[0] is None
    # 36 M parameters, a 1 s step of 64 on 8 GPUs over 12.5 GB/s at 80 %:
    # 2·7/8·144 MB = 252 MB per GPU in 25.2 ms → 97.5 % without overlap
    s = gpu.scaling(36_000_000, 1.0, 64, 1.2e12, 989.5, 0.8)
    eth = s["links"]["100 Gb/s Ethernet (8 nodes)"]
    assert eth["allreduce_s"] == pytest.approx(0.0252)
    assert eth["measured_efficiency"] == pytest.approx(1 / 1.0252)
    assert s["step_s"]["at_goal_mfu"] == pytest.approx(64 * 1.2e12 / (0.25 * 989.5e12))


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: MFU against the chip's peak, peak memory, NCCL, cuDNN's "
    "autotuner (benchmarks/gpu_all.sh runs the full benchmark on one)",
)
def test_gpu_rows(tmp_path: Path) -> None:
    result = run_quick(tmp_path, "cuda")
    assert result["errors"] == {}
    assert result["ddp"]["backend"] == "nccl"
    for r in rows(result, "train") + rows(result, "infer"):
        assert positive(r["peak_gib"])
        assert r["mfu"] is None or 0 < r["mfu"] < 1
    bench = [r for r in result["train"] if r["cudnn_benchmark"]]
    assert bench and all(r["status"] == "ok" for r in bench)
