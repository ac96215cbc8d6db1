"""AVRSP, the whole network (paper Fig. 2), assembled from the component modules.

Data flow for one window (shapes at the ``paper`` preset, d = ``ModelConfig.width``):

1. ``frames [B, 3, 32, 224, 384]`` in [0, 1] → normalised as the S3D weights expect
   (``ModelConfig.s3d_input``: [-1, 1], or the Kinetics mean/std) → S3D taps X3…X0
   (:mod:`avrsp.model.s3d`) → ASPP+LIP per tap → four scales, X0 with d channels and
   each higher-resolution one with half the channels of the one below
   (``ModelConfig.level_widths``: 256, 128, 64, 32 at the paper preset).
2. ``audio [B, S]`` in [-1, 1] → × ``audio_scale`` → SoundNet-8 conv1–7 ``[B, 1024, L]``
   → linear → audio tokens ``[B, L, d]`` (AV variant only).
3. X0 as tokens ``[B, t·h·w, d]`` fused with the audio tokens (RAVF or a Table V
   baseline) → F_av. The V variant skips this step (F_av = X0).
4. With p = ``ms_mrg_pairs``, the p highest-resolution levels (X3 first, Table IV) get an
   MS module and an MRG gate. The MRG chain runs from level 0 upwards through the levels
   that have a pair: F ← MRG(F, X̃^l). Decoder skips: level 0 gets F_av (or its gated form
   when level 0 has a pair); level l ≥ 1 gets X̃^l + F_gated^l where it has a pair, the
   plain X^l where it has none.

   Table III switches (``use_ms``, ``use_mrg``, both on by default): with ``use_ms=False``
   no MS module is built and the paired levels use the plain X^l wherever X̃^l would be
   used. With ``use_mrg=False`` no MRG gate is built and nothing is gated: level 0 gets
   F_av, a paired level l ≥ 1 gets X̃^l alone. X̃^0 only feeds MRG, so with
   ``use_mrg=False`` level 0 gets no MS module either (it would have no consumer).
5. Decoder → ``[B, 224, 384]`` non-negative map of the last frame.

``forward(..., return_attention=True)`` returns ``(maps, attention)`` with ``attention`` a
dict: ``"ravf"``, one dict per RAVF block (Ret_A, Ret_V, head weights, audio share; see
:mod:`avrsp.model.ravf`; empty for other fusions and the V variant), and ``"gates"``, the
MRG gate of eq. (14) per gated level ``{level: [B, C]}``.
"""

from __future__ import annotations

import torch
from torch import nn

from avrsp.config import MIN_FRAMES, AVRSPConfig, ModelConfig
from avrsp.errors import InputError
from avrsp.model.aspp import StageHead
from avrsp.model.decoder import SaliencyDecoder
from avrsp.model.fusion import build_fusion
from avrsp.model.multiscale import MRG, MS
from avrsp.model.onednn import guard_strided_temporal_convs
from avrsp.model.ravf import RAVF
from avrsp.model.s3d import TAP_CHANNELS, S3DEncoder
from avrsp.model.soundnet import OUT_CHANNELS, SoundNet8

LEVELS = 4
# The Kinetics-400 normalisation of torchvision's S3D weights
# (S3D_Weights.KINETICS400_V1.transforms()).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def paired_levels(pairs: int) -> list[int]:
    """Levels (0 = X0 … 3 = X3) that get an MS&MRG pair: the ``pairs`` highest-resolution ones.

    Table IV: 1 pair → X3; 2 → X3, X2; 3 → X3, X2, X1; 4 → all four.
    """
    return list(range(LEVELS - pairs, LEVELS))


class AVRSP(nn.Module):
    """``forward(frames [B, 3, T, H, W] in [0, 1], audio [B, S] | None) → [B, H, W]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.uses_audio = config.use_audio
        width = config.width
        widths = config.level_widths()  # by level: X0 … X3
        self.visual = S3DEncoder(bn_momentum=config.effective_bn_momentum())
        # stage_heads[i] processes tap i of [X3, X2, X1, X0].
        self.stage_heads = nn.ModuleList(
            StageHead(c, widths[LEVELS - 1 - i], config.aspp_rates)
            for i, c in enumerate(TAP_CHANNELS)
        )
        self.audio: SoundNet8 | None = None
        self.audio_proj: nn.Linear | None = None
        self.fusion: nn.Module | None = None
        if config.use_audio:
            self.audio = SoundNet8(config.resolved_soundnet_norm())
            self.audio_proj = nn.Linear(OUT_CHANNELS, width)
            self.fusion = build_fusion(
                config.fusion,
                width,
                config.heads,
                config.ravf_blocks,
                config.ffn_mult,
                config.mbt_bottlenecks,
            )
        self.levels = paired_levels(config.ms_mrg_pairs)
        ms_levels = [lv for lv in self.levels if config.use_ms and (config.use_mrg or lv > 0)]
        self.ms = nn.ModuleDict(
            {
                str(lv): MS(
                    widths[lv],
                    higher=widths[lv + 1] if lv < LEVELS - 1 else None,
                    lower=widths[lv - 1] if lv > 0 else None,
                )
                for lv in ms_levels
            }
        )
        # The MRG chain: each gate takes F from the previous gated level (or F_av).
        self.mrg = nn.ModuleDict()
        fused_width = widths[0]
        for lv in self.levels if config.use_mrg else []:
            self.mrg[str(lv)] = MRG(fused_width, widths[lv])
            fused_width = widths[lv]
        self.decoder = SaliencyDecoder(
            widths, config.decoder_widths, config.output_bias, config.temporal_readout
        )
        guard_strided_temporal_convs(self)  # avrsp.model.onednn: a CPU crash on short windows
        # S3D's input normalisation ("auto" before weights are loaded: [-1, 1]); buffers so
        # that .to(device) moves them, not saved (they follow the config).
        self.register_buffer("rgb_mean", torch.zeros(3, 1, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.ones(3, 1, 1, 1), persistent=False)
        self.set_s3d_input("minus_one_one" if config.s3d_input == "auto" else config.s3d_input)

    def set_s3d_input(self, norm: str) -> None:
        """Normalise RGB in [0, 1] for S3D as ``norm`` says (``ModelConfig.s3d_input``)."""
        if norm == "kinetics":
            mean, std = KINETICS_MEAN, KINETICS_STD
        elif norm == "minus_one_one":
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 = 2x - 1
        else:
            raise ValueError(f"s3d_input must be kinetics or minus_one_one, got {norm!r}")
        self.rgb_mean.copy_(torch.tensor(mean).reshape(3, 1, 1, 1))
        self.rgb_std.copy_(torch.tensor(std).reshape(3, 1, 1, 1))
        self.config = self.config.model_copy(update={"s3d_input": norm})

    def forward(
        self,
        frames: torch.Tensor,
        audio: torch.Tensor | None = None,
        *,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, object]]:
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise InputError(f"frames must be [B, 3, T, H, W], got {tuple(frames.shape)}")
        if frames.shape[2] < MIN_FRAMES:
            raise InputError(f"frames: T={frames.shape[2]} < {MIN_FRAMES}, the fewest S3D accepts")
        out_size = (frames.shape[-2], frames.shape[-1])
        taps = self.visual((frames - self.rgb_mean) / self.rgb_std)
        # by level: 0 = X0 (lowest resolution) … 3 = X3
        x = {
            LEVELS - 1 - i: head(tap)
            for i, (head, tap) in enumerate(zip(self.stage_heads, taps, strict=True))
        }
        # X̃^l at the paired levels (X^l where MS is switched off)
        enhanced = {
            lv: self.ms[str(lv)](x[lv], higher=x.get(lv + 1), lower=x.get(lv - 1))
            if str(lv) in self.ms
            else x[lv]
            for lv in self.levels
        }
        fused, ravf_maps = self._fuse(x[0], audio, return_attention)
        gates: dict[int, torch.Tensor] = {}
        skips: list[torch.Tensor] = []
        for lv in range(LEVELS):
            if lv in enhanced and str(lv) in self.mrg:
                fused, gate = self.mrg[str(lv)](fused, enhanced[lv], return_gate=True)
                gates[lv] = gate.flatten(1)
                skips.append(fused if lv == 0 else enhanced[lv] + fused)
            elif lv in enhanced:  # MRG off: nothing gated, X̃^l alone
                skips.append(fused if lv == 0 else enhanced[lv])
            else:
                skips.append(fused if lv == 0 else x[lv])
        maps = self.decoder(skips, out_size)
        if return_attention:
            return maps, {"ravf": ravf_maps, "gates": gates}
        return maps

    def _fuse(
        self, x0: torch.Tensor, audio: torch.Tensor | None, return_attention: bool
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """F_av and, for RAVF with ``return_attention``, its per-block maps."""
        if self.fusion is None:
            return x0, []
        if audio is None:
            raise InputError(
                "this is an audio-visual model (use_audio=true): pass the audio window "
                "(zeros for a silent video)"
            )
        if audio.ndim != 2 or audio.shape[0] != x0.shape[0]:
            raise InputError(
                f"audio must be [B, samples] with B={x0.shape[0]}, got {tuple(audio.shape)}"
            )
        b, c, t, h, w = x0.shape
        try:
            feats = self.audio(audio * self.config.audio_scale)  # [B, 1024, L]
        except ValueError as exc:  # BatchNorm with one value per channel
            raise InputError(
                f"audio [B={audio.shape[0]}, {audio.shape[1]} samples] gives SoundNet-8 a single "
                "time step; with soundnet_norm=batch, training then needs batch >= 2 or a longer "
                "audio_window_s (or soundnet_norm frozen or group) "
                f"({exc})"
            ) from None
        audio_tokens = self.audio_proj(feats.transpose(1, 2))  # [B, L, d]
        visual_tokens = x0.flatten(2).transpose(1, 2)  # [B, t·h·w, d]
        maps: list[dict[str, torch.Tensor]] = []
        if return_attention and isinstance(self.fusion, RAVF):
            tokens, maps = self.fusion(visual_tokens, audio_tokens, return_attention=True)
        else:
            tokens = self.fusion(visual_tokens, audio_tokens)
        return tokens.transpose(1, 2).reshape(b, c, t, h, w), maps


def build_model(config: AVRSPConfig | ModelConfig) -> AVRSP:
    """The network for a config (an :class:`AVRSPConfig` or its ``model`` part).

    Pretrained backbone files named in the config (``s3d_weights``, ``soundnet_weights``)
    are loaded strictly; a file that does not fit raises :class:`~avrsp.errors.WeightsError`.
    """
    model_config = config.model if isinstance(config, AVRSPConfig) else config
    model = AVRSP(model_config)
    if model_config.s3d_weights is not None or model_config.soundnet_weights is not None:
        from avrsp.weights import S3D, load_pretrained

        reports = load_pretrained(model, model_config.s3d_weights, model_config.soundnet_weights)
        if model_config.s3d_input == "auto":
            layouts = [r.layout for r in reports if r.network == S3D]
            if layouts == ["torchvision"]:
                model.set_s3d_input("kinetics")
    return model
