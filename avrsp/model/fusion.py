"""Audio-visual fusion methods compared in the paper's Table V, behind one interface.

Every fusion maps visual tokens ``[B, Nv, d]`` and audio tokens ``[B, Na, d]`` to fused
visual tokens ``[B, Nv, d]``. ``ravf`` is the paper's method (:mod:`avrsp.model.ravf`); the
others are the baselines of Table V:

- ``add`` / ``mul``: element-wise sum / product with the mean audio token;
- ``concat``: the mean audio token concatenated to every visual token, projected to ``d``;
- ``bilinear``: low-rank bilinear pooling (Kim et al. 2017, "MLB") of each visual token
  with the mean audio token, ``P(tanh(U x) ⊙ tanh(V a))``, added residually and normalised
  (a full ``d×d×d`` bilinear tensor would dwarf the network);
- ``mbt``: Multimodal Bottleneck Transformer (Nagrani et al. 2021): per layer, audio
  tokens attend over [audio; bottleneck], then visual tokens over [visual; that updated
  bottleneck], and the bottleneck tokens become the mean of both updates — the only path
  between the modalities. Audio goes first so that it reaches the visual tokens in every
  layer: with both streams reading the same bottleneck (MBT's classification setting, which
  uses both streams' outputs), a one-layer MBT would ignore the audio here, where only the
  visual tokens go on.
"""

from __future__ import annotations

import torch
from torch import nn

from avrsp.model.ravf import RAVF


class _PooledAudio(nn.Module):
    @staticmethod
    def pooled(audio: torch.Tensor) -> torch.Tensor:
        return audio.mean(dim=1, keepdim=True)  # [B, 1, d]


class AddFusion(_PooledAudio):
    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return visual + self.pooled(audio)


class MulFusion(_PooledAudio):
    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return visual * self.pooled(audio)


class ConcatFusion(_PooledAudio):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(2 * width, width)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        a = self.pooled(audio).expand_as(visual)
        return self.project(torch.cat([visual, a], dim=-1))


class BilinearFusion(_PooledAudio):
    def __init__(self, width: int, rank: int | None = None) -> None:
        super().__init__()
        rank = rank or width
        self.u = nn.Linear(width, rank)
        self.v = nn.Linear(width, rank)
        self.p = nn.Linear(rank, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        joint = torch.tanh(self.u(visual)) * torch.tanh(self.v(self.pooled(audio)))
        return self.norm(visual + self.p(joint))


class MBTFusion(nn.Module):
    def __init__(self, width: int, heads: int, layers: int, bottlenecks: int, ffn_mult: int):
        super().__init__()

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                width, heads, width * ffn_mult, dropout=0.0, batch_first=True, norm_first=True
            )

        self.bottleneck = nn.Parameter(torch.randn(1, bottlenecks, width) * 0.02)
        self.visual_layers = nn.ModuleList(layer() for _ in range(layers))
        self.audio_layers = nn.ModuleList(layer() for _ in range(layers))

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        nv, na = visual.shape[1], audio.shape[1]
        z = self.bottleneck.expand(visual.shape[0], -1, -1)
        for v_layer, a_layer in zip(self.visual_layers, self.audio_layers, strict=True):
            az = a_layer(torch.cat([audio, z], dim=1))
            audio, z_audio = az[:, :na], az[:, na:]
            vz = v_layer(torch.cat([visual, z_audio], dim=1))
            visual = vz[:, :nv]
            z = 0.5 * (vz[:, nv:] + z_audio)
        return visual


def build_fusion(
    method: str, width: int, heads: int, blocks: int, ffn_mult: int, bottlenecks: int
) -> nn.Module:
    """The fusion module named by ``ModelConfig.fusion``."""
    if method == "ravf":
        return RAVF(width, heads, blocks, ffn_mult)
    if method == "add":
        return AddFusion()
    if method == "mul":
        return MulFusion()
    if method == "concat":
        return ConcatFusion(width)
    if method == "bilinear":
        return BilinearFusion(width)
    if method == "mbt":
        return MBTFusion(width, heads, blocks, bottlenecks, ffn_mult)
    raise ValueError(f"unknown fusion method {method!r}")
