"""RAVF: Relevance-guided Audio-Visual feature Fusion (paper §III-B, eq. 1–7).

Visual tokens come from the lowest-resolution scale X0 (``[B, Nv, d]`` with
``Nv = t·h·w``), audio tokens from SoundNet (``[B, Na, d]``). Per head, with ``d_k = d/H``:

- eq. (1): six bias-free projections give V_q, V_k, V_v, A_q, A_k, A_v;
- eq. (2): Ret_A = V_q A_kᵀ / √d_k  ``[B, H, Nv, Na]`` — no softmax;
- eq. (3): Ret_V = A_q V_kᵀ / √d_k  ``[B, H, Na, Nv]``;
- eq. (4): v2a = Ret_A·A_v + V_v     ``[B, H, Nv, d_k]``;
- eq. (5): a2v = Ret_V·V_v + A_v     ``[B, H, Na, d_k]``;
- eq. (6): head weights = Softmax_heads(MLP(Cat(v2a, a2v))). v2a is per visual token and
  a2v per audio token; a2v is averaged over the audio tokens and paired with every visual
  token, so each visual token gets its own weights over the heads (they sum to one);
- eq. (7): F_av = weights ⊙ v2a, heads concatenated and projected back to ``d``.

Then residual + LayerNorm, FFN, residual + LayerNorm (one RAVF block); N blocks are stacked,
each attending to the same audio tokens.

Documented behaviour with an all-zero audio feature: the projections have no bias, so
A_q = A_k = A_v = 0, hence Ret_A = Ret_V = 0, v2a = V_v and a2v = 0 — the block reduces to
a per-head re-weighting of the visual values, and nothing of the (absent) audio leaks in.
With ``return_attention=True`` each module also returns what it computed (paper Fig. 6):
per block Ret_A ``[B, H, Nv, Na]``, Ret_V ``[B, H, Na, Nv]``, the head weights
``[B, Nv, H]`` and ``audio_share`` ``[B, H]``, the part of v2a (eq. 4) that comes from the
audio: per visual token ``‖Ret_A·A_v‖ / (‖Ret_A·A_v‖ + ‖V_v‖)``, averaged over the tokens
(0: the fused value is the visual value alone; 1: it is all audio). Nothing is kept on the
modules between calls.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RelevanceCrossAttention(nn.Module):
    """Relevance-aware multi-head cross-attention, eq. (1)–(7)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.heads = heads
        self.dk = width // heads
        names = ("v_q", "v_k", "v_v", "a_q", "a_k", "a_v")
        self.proj = nn.ModuleDict({n: nn.Linear(width, width, bias=False) for n in names})
        # The MLP of eq. (6), shared by the heads; LayerNorm first because the un-normalised
        # retention sums of eq. (4)/(5) grow with the number of tokens.
        self.head_mlp = nn.Sequential(
            nn.LayerNorm(2 * self.dk),
            nn.Linear(2 * self.dk, self.dk),
            nn.GELU(),
            nn.Linear(self.dk, 1),
        )
        self.out = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dk).transpose(1, 2)  # [B, H, N, dk]

    def forward(
        self, visual: torch.Tensor, audio: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``visual [B, Nv, d]``, ``audio [B, Na, d]`` → F_av ``[B, Nv, d]`` (and, with
        ``return_attention``, the dict of the module docstring)."""
        vq, vk, vv = (self._split(self.proj[n](visual)) for n in ("v_q", "v_k", "v_v"))
        aq, ak, av = (self._split(self.proj[n](audio)) for n in ("a_q", "a_k", "a_v"))
        scale = 1.0 / math.sqrt(self.dk)
        ret_a = vq @ ak.transpose(-1, -2) * scale  # eq. (2)  [B, H, Nv, Na]
        ret_v = aq @ vk.transpose(-1, -2) * scale  # eq. (3)  [B, H, Na, Nv]
        audio_term = ret_a @ av
        v2a = audio_term + vv  # eq. (4)  [B, H, Nv, dk]
        a2v = ret_v @ vv + av  # eq. (5)  [B, H, Na, dk]
        a2v_pooled = a2v.mean(dim=2, keepdim=True).expand_as(v2a)
        logits = self.head_mlp(torch.cat([v2a, a2v_pooled], dim=-1)).squeeze(-1)  # [B, H, Nv]
        weights = torch.softmax(logits, dim=1)  # eq. (6), over heads
        fused = weights.unsqueeze(-1) * v2a  # eq. (7)
        b, _, nv, _ = fused.shape
        out = self.out(fused.transpose(1, 2).reshape(b, nv, self.heads * self.dk))
        if not return_attention:
            return out
        a_norm, v_norm = audio_term.norm(dim=-1), vv.norm(dim=-1)  # [B, H, Nv]
        share = (a_norm / (a_norm + v_norm).clamp_min(1e-12)).mean(dim=-1)
        return out, {
            "ret_a": ret_a.detach(),
            "ret_v": ret_v.detach(),
            "head_weights": weights.detach().transpose(1, 2),  # [B, Nv, H]
            "audio_share": share.detach(),  # [B, H]
        }


class RAVFBlock(nn.Module):
    """Cross-attention → residual + LayerNorm → FFN → residual + LayerNorm."""

    def __init__(self, width: int, heads: int, ffn_mult: int = 4) -> None:
        super().__init__()
        self.attn = RelevanceCrossAttention(width, heads)
        self.norm1 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, width * ffn_mult), nn.GELU(), nn.Linear(width * ffn_mult, width)
        )
        self.norm2 = nn.LayerNorm(width)

    def forward(
        self, visual: torch.Tensor, audio: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        attended = self.attn(visual, audio, return_attention)
        maps = None
        if return_attention:
            attended, maps = attended
        x = self.norm1(visual + attended)
        x = self.norm2(x + self.ffn(x))
        return (x, maps) if return_attention else x


class RAVF(nn.Module):
    """N stacked RAVF blocks; ``forward(visual [B, Nv, d], audio [B, Na, d]) → [B, Nv, d]``."""

    def __init__(self, width: int, heads: int, blocks: int, ffn_mult: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(RAVFBlock(width, heads, ffn_mult) for _ in range(blocks))

    def forward(
        self, visual: torch.Tensor, audio: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """With ``return_attention``: also one dict per block (module docstring)."""
        maps = []
        for block in self.blocks:
            if return_attention:
                visual, block_maps = block(visual, audio, True)
                maps.append(block_maps)
            else:
                visual = block(visual, audio)
        return (visual, maps) if return_attention else visual
