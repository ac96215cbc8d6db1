"""Forward+backward time per sample of a preset on this machine (CPU unless --device).

    .venv/bin/python benchmarks/model_speed.py --preset tiny --batch 2 8 [--threads 1]

Prints, per batch size, the median of ``--repeats`` timed steps (after one warm-up) of
``saliency_loss(model(frames, audio), target).backward()`` in train mode, divided by the
batch size. On CUDA the step runs under bf16 autocast, and each line adds the peak GPU
memory, whether the loss and every gradient are finite, and the CC between the bf16 and
the fp32 output maps of the same input (1.0 = identical maps):

    python benchmarks/model_speed.py --preset paper --batch 1 4 --device cuda --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avrsp.config import preset
from avrsp.losses import saliency_loss
from avrsp.metrics import cc
from avrsp.model import build_model


def time_step(
    name: str, batch: int, use_audio: bool, device: str, repeats: int
) -> tuple[float, str]:
    """Seconds per sample of a forward+backward step, and (CUDA) the checks as text."""
    cfg = preset(name).with_overrides(**{"model.use_audio": use_audio})
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    inp = cfg.input
    frames = torch.rand(batch, 3, inp.frames, inp.height, inp.width, device=device)
    audio = torch.rand(batch, inp.audio_samples, device=device) * 2 - 1 if use_audio else None
    target = torch.rand(batch, inp.height, inp.width, device=device)
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    losses = []

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = saliency_loss(model(frames, audio), target, cfg.loss)
        loss.backward()
        losses.append(loss.detach())
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if not cuda:
        return statistics.median(times) / batch, ""
    peak = torch.cuda.max_memory_allocated() / 2**30
    finite = all(bool(torch.isfinite(x).all()) for x in losses) and all(
        bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None
    )
    model.eval()  # batch-norm statistics fixed: the two passes see the same network
    with torch.no_grad():
        with autocast:
            low = model(frames, audio).float()
        full = model(frames, audio).float()
    agree = statistics.mean(
        cc(a.cpu().numpy(), b.cpu().numpy()) for a, b in zip(low, full, strict=True)
    )
    checks = f"; peak {peak:.1f} GiB, finite {finite}, CC(bf16, fp32 maps) {agree:.4f}"
    return statistics.median(times) / batch, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    for use_audio in (False, True):
        for batch in args.batch:
            per_sample, checks = time_step(args.preset, batch, use_audio, args.device, args.repeats)
            variant = "AV" if use_audio else "V"
            print(
                f"{args.preset} {variant:<2} batch {batch:>2}: {per_sample:.3f} s per sample "
                f"(forward+backward){checks}"
            )


if __name__ == "__main__":
    main()
