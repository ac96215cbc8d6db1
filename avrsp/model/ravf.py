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
  token, so each visual token gets its own weights over the heads (they sum to one). The
  MLP reads each head's own ``Cat(v2a_h, a2v_h)`` (``2·d_k`` values): LayerNorm → linear
  → GELU, shared by the heads, then a per-head output ``w_h · hidden + b_h``
  (:class:`PerHeadLinear`). A single output shared by all heads would add the same bias
  to every head's logit, which the softmax over heads cancels: a parameter that never
  learns, and no head could have a prior of its own (docs/MODEL.md);
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


class PerHeadLinear(nn.Module):
    """One linear read-out per head: ``[B, H, N, k]`` → ``[B, H, N]``, head h with its own
    weight row ``weight[h]`` and bias ``bias[h]`` (nn.Linear(k, 1)'s initialisation, per head)."""

    def __init__(self, heads: int, features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(features)
        self.weight = nn.Parameter(torch.empty(heads, features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(heads).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bhnk,hk->bhn", x, self.weight) + self.bias[:, None]


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
        # The MLP of eq. (6): a hidden layer shared by the heads (LayerNorm first, because the
        # un-normalised retention sums of eq. (4)/(5) grow with the number of tokens), then
        # one output per head, so that each head's bias is a prior the softmax keeps.
        self.head_mlp = nn.Sequential(
            nn.LayerNorm(2 * self.dk),
            nn.Linear(2 * self.dk, self.dk),
            nn.GELU(),
        )
        self.head_out = PerHeadLinear(heads, self.dk)
        self.out = nn.Linear(width, width)

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: object, **kwargs: object
    ) -> None:
        # Checkpoints written before the per-head output kept one output shared by the heads
        # (``head_mlp.3``); repeated per head it computes the same weights (its bias
        # cancelled in the softmax), so those checkpoints load unchanged in what they predict.
        old_w, old_b = f"{prefix}head_mlp.3.weight", f"{prefix}head_mlp.3.bias"
        if old_w in state_dict and f"{prefix}head_out.weight" not in state_dict:
            state_dict[f"{prefix}head_out.weight"] = state_dict.pop(old_w).expand(self.heads, -1)
            state_dict[f"{prefix}head_out.bias"] = state_dict.pop(old_b).expand(self.heads)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        hidden = self.head_mlp(torch.cat([v2a, a2v_pooled], dim=-1))  # [B, H, Nv, dk]
        logits = self.head_out(hidden)  # [B, H, Nv]
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
