"""What the oneDNN guard (avrsp.model.onednn) costs a CPU training step, in one run.

Times one forward+backward step (train mode, eq. 19 loss) of the ``tiny`` network, AV:

- at ``--frames`` (default 8, where the guard does not engage), with the guard and with
  the same model's guarded convolution put back to a plain ``nn.Conv3d`` (the code
  before the guard), alternating the two each round;
- at ``--short-frames`` (default 5, where it engages), with the guard and with oneDNN
  switched off for the whole step (``torch.backends.mkldnn`` disabled, the blunt
  alternative). The unguarded model is not run there: on an AVX-512 CPU it crashes.

Prints the median seconds per step of each and the ratios.

    .venv/bin/python benchmarks/onednn_guard_speed.py [--batch 8] [--threads 2] [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from avrsp.config import tiny
from avrsp.losses import saliency_loss
from avrsp.model import AVRSP, build_model
from avrsp.model.onednn import TemporalPadConv3d


def unguarded_copy_of_stem(model: AVRSP) -> tuple[nn.Module, nn.Module]:
    """The stem's guarded convolution and a plain ``nn.Conv3d`` sharing its parameters."""
    guarded = model.visual.features[0][1][0]
    assert isinstance(guarded, TemporalPadConv3d)
    plain = nn.Conv3d(
        guarded.in_channels,
        guarded.out_channels,
        guarded.kernel_size,
        guarded.stride,
        guarded.padding,
        bias=guarded.bias is not None,
        device="meta",
    )
    plain.weight, plain.bias = guarded.weight, guarded.bias
    return guarded, plain


def stepper(frames: int, batch: int) -> tuple[AVRSP, Callable[[], None]]:
    cfg = tiny().with_overrides(**{"input.frames": frames})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inp = cfg.input
    gen = torch.Generator().manual_seed(1)
    clip = torch.rand(batch, 3, frames, inp.height, inp.width, generator=gen)
    audio = torch.rand(batch, inp.audio_samples, generator=gen) * 2 - 1
    target = torch.rand(batch, inp.height, inp.width, generator=gen) ** 4

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss, _ = saliency_loss(model(clip, audio), target, cfg.loss)
        loss.backward()

    return model, step


def timed(step: Callable[[], None], context: Callable[[], contextlib.AbstractContextManager]):
    with context():
        start = time.perf_counter()
        step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--short-frames", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN")  # from flags()
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} threads, tiny AV, batch {args.batch}"
    )

    model, step = stepper(args.frames, args.batch)
    guarded, plain = unguarded_copy_of_stem(model)
    stem_parent = model.visual.features[0][1]
    _, short_step = stepper(args.short_frames, args.batch)
    no_onednn = lambda: torch.backends.mkldnn.flags(enabled=False)  # noqa: E731
    keep = contextlib.nullcontext
    times: dict[str, list[float]] = {k: [] for k in ("guard", "plain", "short", "short_off")}
    for _ in range(2):  # warm-up
        step()
        short_step()
    for _ in range(args.rounds):
        stem_parent[0] = plain
        times["plain"].append(timed(step, keep))
        stem_parent[0] = guarded
        times["guard"].append(timed(step, keep))
        times["short"].append(timed(short_step, keep))
        times["short_off"].append(timed(short_step, no_onednn))
    med = {k: statistics.median(v) for k, v in times.items()}
    t, ts = args.frames, args.short_frames
    print(f"T={t}:  before the guard {med['plain']:.3f} s/step, with it {med['guard']:.3f} s/step")
    print(f"        ratio with/before {med['guard'] / med['plain']:.3f}")
    print(
        f"T={ts}:  guard {med['short']:.3f} s/step, oneDNN off for the step "
        f"{med['short_off']:.3f} s/step (ratio off/guard {med['short_off'] / med['short']:.2f})"
    )


if __name__ == "__main__":
    main()
