"""Which strided temporal convolutions crash oneDNN on this CPU, and does the guard help?

For every ``Conv3d(k×1×1)`` with temporal kernel k, stride s, padding p and temporal input
t in the grid, one forked process runs the forward pass and the weight and input
gradients (``torch.autograd.grad``), plain and through the guard of
:mod:`avrsp.model.onednn` (explicit temporal padding). A process that dies (SIGSEGV,
SIGABRT) or does not finish within ``--timeout`` seconds counts as a crash. The script
prints, per (k, s), a map of padding × input (``X`` crash, ``.`` fine, blank: no output
frame) and the totals: crashes inside and outside :func:`onednn_may_crash`, and crashes
left with the guard. It exits 1 if a crash lies outside the condition or survives the
guard.

    python benchmarks/onednn_shapes.py [--channels 64 64] [--batch 2] [--size 8]

On a CPU without AVX-512 (or with ``ONEDNN_MAX_CPU_ISA=AVX2``) nothing crashes.
Forking after torch has started its thread pool can hang, so the parent process only
builds shapes; every torch operation runs in a child.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from avrsp.model.onednn import TemporalPadConv3d, onednn_may_crash


def _runs(shape: tuple[int, int, int, int], args: argparse.Namespace, guarded: bool) -> bool:
    """Whether forward + both gradients finish in a forked child."""
    kernel, stride, pad, frames = shape
    pid = os.fork()
    if pid == 0:
        code = 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # glibc's heap-corruption messages
        try:
            torch.set_num_threads(args.threads)
            torch.manual_seed(0)
            cin, cout = args.channels
            make = TemporalPadConv3d if guarded else nn.Conv3d
            conv = make(cin, cout, (kernel, 1, 1), stride=(stride, 1, 1), padding=(pad, 0, 0))
            x = torch.randn(args.batch, cin, frames, args.size, args.size, requires_grad=True)
            torch.autograd.grad(F.relu(conv(x)).sum(), [conv.weight, x])
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[2, 3, 4, 5, 6, 7, 8, 9, 11])
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--max-frames", type=int, default=16)
    parser.add_argument("--channels", type=int, nargs=2, default=[64, 64])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=8, help="height = width of the input")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()

    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"channels {args.channels}, batch {args.batch}, {args.size}×{args.size}, "
        f"{args.threads} threads"
    )
    inside = outside = survived = tested = 0
    for kernel in args.kernels:
        for stride in args.strides:
            rows = []
            for pad in range(kernel):
                line = ""
                for frames in range(1, args.max_frames + 1):
                    if (frames + 2 * pad - kernel) // stride + 1 < 1:
                        line += " "
                        continue
                    shape = (kernel, stride, pad, frames)
                    tested += 1
                    if _runs(shape, args, guarded=False):
                        line += "."
                        continue
                    line += "X"
                    if onednn_may_crash(*shape):
                        inside += 1
                    else:
                        outside += 1
                        print(
                            f"  crash OUTSIDE the condition: k={kernel} s={stride} p={pad} "
                            f"t={frames}"
                        )
                    if not _runs(shape, args, guarded=True):
                        survived += 1
                        print(f"  crash WITH the guard: k={kernel} s={stride} p={pad} t={frames}")
                rows.append(f"    p={pad:<2} {line}")
            if any("X" in row for row in rows):
                print(
                    f"  k={kernel} s={stride} (rows: padding; "
                    f"columns: input frames 1–{args.max_frames})"
                )
                print("\n".join(rows))
    print(
        f"{tested} shapes: {inside} crashed inside the condition, {outside} outside; "
        f"{survived} crashed with the guard"
    )
    return 1 if outside or survived else 0


if __name__ == "__main__":
    sys.exit(main())
