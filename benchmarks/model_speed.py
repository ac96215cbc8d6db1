"""Forward+backward time per sample of a preset on this machine (CPU unless --device).

    .venv/bin/python benchmarks/model_speed.py --preset tiny --batch 2 8 [--threads 1]

Prints, per batch size, the median of ``--repeats`` timed steps (after one warm-up) of
``saliency_loss(model(frames, audio), target).backward()`` in train mode, divided by the
batch size. On CUDA the step runs under bf16 autocast.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avrsp.config import preset
from avrsp.losses import saliency_loss
from avrsp.model import build_model


def time_step(name: str, batch: int, use_audio: bool, device: str, repeats: int) -> float:
    cfg = preset(name).with_overrides(**{"model.use_audio": use_audio})
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    inp = cfg.input
    frames = torch.rand(batch, 3, inp.frames, inp.height, inp.width, device=device)
    audio = torch.rand(batch, inp.audio_samples, device=device) * 2 - 1 if use_audio else None
    target = torch.rand(batch, inp.height, inp.width, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = saliency_loss(model(frames, audio), target, cfg.loss)
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for use_audio in (False, True):
        for batch in args.batch:
            per_sample = time_step(args.preset, batch, use_audio, args.device, args.repeats)
            variant = "AV" if use_audio else "V"
            print(
                f"{args.preset} {variant:<2} batch {batch:>2}: {per_sample:.3f} s per sample "
                "(forward+backward)"
            )


if __name__ == "__main__":
    main()
