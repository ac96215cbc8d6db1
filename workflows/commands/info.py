"""``avrsp info``: versions, devices, ffmpeg and the model's size per preset."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="print versions, devices, ffmpeg and model sizes")
    parser.set_defaults(func=run)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def onednn_version() -> str:
    """The oneDNN (MKL-DNN) version torch was built with, from its build configuration."""
    import re

    import torch

    if not torch.backends.mkldnn.is_available():
        return "not built in"
    found = re.search(r"MKL-DNN v([\w.]+)", torch.__config__.show())
    return found.group(1) if found else "built in (version not stated)"


def model_sizes() -> list[tuple[str, str, int]]:
    """``(preset, variant, parameters)`` for each preset in V and AV form."""
    import torch

    from avrsp.config import PRESETS
    from avrsp.model import build_model

    rows = []
    with torch.device("meta"):  # sizes only: no memory, no initialisation time
        for name, make in PRESETS.items():
            for variant, use_audio in (("V", False), ("AV", True)):
                cfg = make().with_overrides(**{"model.use_audio": use_audio})
                model = build_model(cfg)
                rows.append((name, variant, sum(p.numel() for p in model.parameters())))
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    print(f"avrsp {_version('avrsp')} on Python {platform.python_version()} ({platform.machine()})")
    for pkg in ("torch", "torchaudio", "torchvision", "ray", "mlflow", "numpy", "pyarrow"):
        print(f"  {pkg:<12} {_version(pkg)}")
    try:
        from preprocessing.media import ffmpeg_exe

        print(f"  {'ffmpeg':<12} {ffmpeg_exe()}")
    except Exception as exc:  # info must always print; report what is wrong instead
        print(f"  {'ffmpeg':<12} unavailable: {exc}")
    print(f"  {'oneDNN':<12} {onednn_version()}")
    print(
        f"devices: cpu ({torch.get_num_threads()} threads, PyTorch dispatches to "
        f"{torch.backends.cpu.get_cpu_capability()})",
        end="",
    )
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(", cuda: " + ", ".join(names))
    else:
        print(", no CUDA device")
    print("model parameters:")
    for preset, variant, count in model_sizes():
        print(f"  {preset:<6} {variant:<3} {count / 1e6:8.2f} M")
    return 0
