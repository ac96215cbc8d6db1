"""Parameter counts per component and forward FLOPs of AVRSP, for docs/MODEL.md.

Runs on the ``meta`` device (shapes only), so the paper preset costs no memory or time:

    .venv/bin/python benchmarks/model_facts.py            # Markdown tables on stdout

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts
as two FLOPs; convolutions, matrix products and attention are counted, element-wise ops
are not) for one window (batch 1).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from avrsp.config import PRESETS
from avrsp.model import build_model

COMPONENTS = (
    ("visual", "S3D backbone"),
    ("stage_heads", "ASPP + LIP (4 stages)"),
    ("audio", "SoundNet-8 conv1–7"),
    ("audio_proj", "audio projection"),
    ("fusion", "fusion (RAVF)"),
    ("ms", "MS modules"),
    ("mrg", "MRG gates"),
    ("decoder", "decoder"),
)


def _component_flops(by_module: dict[str, dict]) -> dict[str, int]:
    """FLOPs per component: a container module (ModuleList/Dict) is never called itself,
    so sum its shallowest called descendants."""
    out = {}
    for name, _ in COMPONENTS:
        prefix = f"AVRSP.{name}"
        keys = [k for k in by_module if k == prefix or k.startswith(prefix + ".")]
        if not keys:
            out[name] = 0
            continue
        depth = min(k.count(".") for k in keys)
        out[name] = int(sum(sum(by_module[k].values()) for k in keys if k.count(".") == depth))
    return out


def facts(preset: str, use_audio: bool) -> tuple[dict[str, int], dict[str, int], int, int]:
    cfg = PRESETS[preset]().with_overrides(**{"model.use_audio": use_audio})
    with torch.device("meta"):
        model = build_model(cfg).eval()
        frames = torch.zeros(1, 3, cfg.input.frames, cfg.input.height, cfg.input.width)
        audio = torch.zeros(1, cfg.input.audio_samples) if use_audio else None
    params = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        if getattr(model, name, None) is not None
        else 0
        for name, _ in COMPONENTS
    }
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        model(frames, audio)
    flops = _component_flops(counter.get_flop_counts())
    total_params = sum(p.numel() for p in model.parameters())
    return params, flops, total_params, int(counter.get_total_flops())


def main() -> None:
    variants = [(p, v) for p in PRESETS for v in (False, True)]
    results = {(p, v): facts(p, v) for p, v in variants}
    head = " | ".join(f"{p} {'AV' if v else 'V'}" for p, v in variants)
    print(f"| component | {head} |")
    print("|---|" + "---:|" * len(variants))
    for name, label in COMPONENTS:
        cells = []
        for key in variants:
            params, flops, _, _ = results[key]
            cells.append(f"{params[name] / 1e6:.2f} M / {flops[name] / 1e9:.1f} G")
        print(f"| {label} | " + " | ".join(cells) + " |")
    totals = [f"**{results[k][2] / 1e6:.2f} M / {results[k][3] / 1e9:.1f} G**" for k in variants]
    print("| **total** | " + " | ".join(totals) + " |")
    for p in PRESETS:
        cfg = PRESETS[p]()
        print(
            f"\n{p}: input {cfg.input.frames}×{cfg.input.height}×{cfg.input.width}, "
            f"audio {cfg.input.audio_samples} samples, width {cfg.model.width}, "
            f"heads {cfg.model.heads}, RAVF blocks {cfg.model.ravf_blocks}, "
            f"MS&MRG pairs {cfg.model.ms_mrg_pairs}"
        )


if __name__ == "__main__":
    main()
