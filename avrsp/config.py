"""Configuration: pydantic models for the input, the network and the loss, with presets.

This is the one home of every size, rate and switch; other modules read them from here.
Two presets exist:

- ``paper``: the paper's setting (T=32 frames at 224×384, RAVF fusion, three MS&MRG pairs).
- ``tiny``: the same network, narrower and on small inputs (T=8 at 64×112), so that a
  forward+backward pass runs well under a second per sample on two CPU cores. Tests and
  the demo use it.

Every model is strict about unknown keys, so a typo in a config file is an error that
names the field rather than a silently ignored value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avrsp.errors import ConfigError
from avrsp.io import write_text

FusionMethod = Literal["ravf", "add", "mul", "concat", "bilinear", "mbt"]
FUSION_METHODS: tuple[str, ...] = ("ravf", "add", "mul", "concat", "bilinear", "mbt")
AudioAlignment = Literal["span", "centred", "end"]
S3DInput = Literal["auto", "minus_one_one", "kinetics"]
SoundNetNorm = Literal["auto", "batch", "frozen", "group"]
TemporalReadout = Literal["mean", "attention"]

# The ModelConfig fields each fusion method reads (beyond width). A field a method does not
# read builds the same network whatever its value (ModelConfig.identity drops it).
FUSION_FIELDS: dict[str, tuple[str, ...]] = {
    "ravf": ("heads", "ravf_blocks", "ffn_mult"),
    "mbt": ("heads", "ravf_blocks", "ffn_mult", "mbt_bottlenecks"),
    "add": (),
    "mul": (),
    "concat": (),
    "bilinear": (),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class InputConfig(_Strict):
    """What one training/inference window looks like.

    ``frames`` consecutive RGB frames of ``height``×``width`` pixels, and the audio around
    them: mono at ``sample_rate`` Hz, cut into a buffer of ``audio_window_s`` seconds
    (see :func:`avrsp.audio.audio_window`).
    """

    frames: int = Field(32, ge=1, le=512, description="T, frames per window")
    height: int = Field(224, ge=32, le=4096, description="frame height in pixels")
    width: int = Field(384, ge=32, le=4096, description="frame width in pixels")
    sample_rate: int = Field(22050, ge=8000, le=192000, description="audio rate, Hz")
    audio_window_s: float = Field(
        1.5,
        gt=0.0,
        le=30.0,
        description="length of the fixed audio buffer, seconds (at 22,050 Hz: >= 0.21 s "
        "for SoundNet-8 to give one time step, >= 0.58 s for two, which training with "
        "one window per batch needs where SoundNet-8 normalises with batch statistics, "
        "soundnet_norm=batch)",
    )
    audio_alignment: AudioAlignment = Field(
        "span",
        description="where the audio buffer's Hann taper sits (avrsp.audio): 'span' over "
        "the T frames' time (the paper's reading; the predicted last frame gets little "
        "weight), 'centred' a buffer centred on the last frame, 'end' a buffer ending "
        "with the last frame and tapered towards its start only",
    )

    @property
    def audio_samples(self) -> int:
        """Length of the audio buffer in samples."""
        return round(self.audio_window_s * self.sample_rate)

    @model_validator(mode="after")
    def _audio_long_enough(self) -> InputConfig:
        # SoundNet-8 needs enough samples to survive its pools (see avrsp.model.soundnet).
        # S3D's three temporal down-samplings leave no time step below this (s3d.py).
        if self.frames < MIN_FRAMES:
            raise ValueError(f"frames: {self.frames} < {MIN_FRAMES}, the fewest S3D accepts")
        if self.audio_samples < MIN_AUDIO_SAMPLES:
            raise ValueError(
                f"audio_window_s: {self.audio_window_s} s at {self.sample_rate} Hz gives "
                f"{self.audio_samples} samples; SoundNet-8 needs at least {MIN_AUDIO_SAMPLES}"
            )
        return self


# The smallest waveform for which SoundNet-8 conv1..conv7 (with its pools) still yields
# one time step; checked by tests/test_model.py.
MIN_AUDIO_SAMPLES = 4574
# The fewest frames S3D's stride-2 conv and two temporal pools still map to one time step
# (T → ⌈T/2⌉ → … : 5 → 3 → 2 → 1, while 4 → 2 → 1 → 0); checked by tests/test_model.py.
MIN_FRAMES = 5


class ModelConfig(_Strict):
    """The network's switches (docs/MODEL.md) — everything the ablation sweeps change."""

    use_audio: bool = Field(True, description="AV variant when true, V variant when false")
    fusion: FusionMethod = Field("ravf", description="how audio and visual features meet")
    ravf_blocks: int = Field(2, ge=1, le=12, description="N, stacked RAVF blocks")
    heads: int = Field(4, ge=1, le=64, description="attention heads in RAVF/MBT")
    width: int = Field(
        256,
        ge=4,
        le=2048,
        description="channels of X0 (where audio and vision are fused) after ASPP+LIP; "
        "each higher-resolution level has half the channels of the one below (>= 8)",
    )
    ffn_mult: int = Field(4, ge=1, le=8, description="RAVF feed-forward expansion")
    ms_mrg_pairs: int = Field(
        3, ge=0, le=4, description="MS&MRG pairs (Table IV): 0 none … 4 all four scales"
    )
    use_ms: bool = Field(True, description="Table III switch: MS modules at the paired levels")
    use_mrg: bool = Field(True, description="Table III switch: MRG gates at the paired levels")
    decoder_widths: tuple[int, int, int, int] = Field(
        (256, 128, 64, 32), description="channels of the four decoder blocks"
    )
    aspp_rates: tuple[int, ...] = Field(
        (1, 2, 3), description="spatial dilation rates of the ASPP branches"
    )
    mbt_bottlenecks: int = Field(4, ge=1, le=64, description="bottleneck tokens for MBT")
    audio_scale: float = Field(
        256.0,
        gt=0.0,
        description="waveform in [-1, 1] is multiplied by this before SoundNet "
        "(256 = int16 PCM / 128, the original SoundNet scaling)",
    )
    bn_momentum: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="S3D BatchNorm momentum; None = 0.001 with pretrained S3D weights "
        "(torchvision's fine-tuning value), 0.1 when trained from scratch",
    )
    output_bias: float = Field(
        -4.0,
        ge=-20.0,
        le=20.0,
        description="initial bias of the decoder's last convolution, the logit of the "
        "background before training (sigmoid(-4) ≈ 0.018: a sparse-map prior, docs/MODEL.md)",
    )
    s3d_input: S3DInput = Field(
        "auto",
        description="how RGB in [0, 1] is normalised for S3D: 'minus_one_one' (x·2−1, what "
        "kylemin's S3D_kinetics400.pt expects), 'kinetics' (the Kinetics mean/std of "
        "torchvision's s3d weights); 'auto' follows the layout of s3d_weights ([-1, 1] "
        "without weights); build_model records the resolved value",
    )
    soundnet_norm: SoundNetNorm = Field(
        "auto",
        description="SoundNet-8's normalisation: 'frozen' BatchNorm on its running "
        "statistics, 'batch' BatchNorm on batch statistics, 'group' GroupNorm (16 channels "
        "a group, per clip); 'auto' = frozen with soundnet_weights, group without",
    )
    temporal_readout: TemporalReadout = Field(
        "mean",
        description="how the decoder reads the last frame's map from its remaining time "
        "steps: 'mean' (unweighted), 'attention' (a learned per-pixel softmax over time, "
        "starting as the mean)",
    )
    s3d_weights: Path | None = Field(None, description="local Kinetics-400 S3D file")
    soundnet_weights: Path | None = Field(None, description="local SoundNet-8 file")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.width % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide width {self.width}")
        if any(w < 1 for w in self.decoder_widths):
            raise ValueError(f"decoder_widths: all must be >= 1, got {self.decoder_widths}")
        if not self.aspp_rates or any(r < 1 for r in self.aspp_rates):
            raise ValueError(f"aspp_rates: need one or more rates >= 1, got {self.aspp_rates}")
        # Combinations that build another configuration's network (a sweep would run them
        # twice) or leave parameters without gradient.
        if self.ms_mrg_pairs == 4 and self.use_ms and not self.use_mrg:
            raise ValueError(
                "ms_mrg_pairs: 4 with use_mrg=false builds the ms_mrg_pairs=3 network "
                "(X̃^0 only feeds MRG, so level 0 gets no MS module); use 3"
            )
        if self.use_audio and self.fusion in ("ravf", "mbt") and self.heads == 1:
            raise ValueError(
                f"heads: 1 with fusion={self.fusion} makes the softmax over heads identically "
                "1 (eq. 6), so the head-weight MLP gets no gradient; use heads >= 2"
            )
        return self

    def reads(self) -> tuple[str, ...]:
        """The fields that shape this network: every field except those it ignores
        (the fusion fields of another method, or all fusion fields in the V variant)."""
        ignored: set[str] = {f for fields in FUSION_FIELDS.values() for f in fields}
        if self.use_audio:
            ignored -= set(FUSION_FIELDS[self.fusion])
        else:
            ignored |= {"fusion", "soundnet_norm", "soundnet_weights", "audio_scale"}
        if not self.use_ms and not self.use_mrg:
            ignored |= {"ms_mrg_pairs"}  # both switches off: the pairs-0 network
        if self.ms_mrg_pairs == 0:
            ignored |= {"use_ms", "use_mrg"}
        return tuple(f for f in type(self).model_fields if f not in ignored)

    def identity(self) -> dict[str, Any]:
        """The fields that shape the network, with their values: two configs with the same
        identity build the same network (the tuning sweeps skip duplicates by it)."""
        data = self.model_dump(mode="json")
        return {f: data[f] for f in self.reads()}

    def resolved_soundnet_norm(self) -> str:
        """The SoundNet normalisation ``soundnet_norm`` picks (see its description)."""
        if self.soundnet_norm != "auto":
            return self.soundnet_norm
        return "frozen" if self.soundnet_weights is not None else "group"

    def level_widths(self) -> tuple[int, int, int, int]:
        """Channels of X0, X1, X2, X3 after ASPP+LIP: ``width`` halved per level, >= 8."""
        w0, w1, w2, w3 = (max(self.width >> level, min(self.width, 8)) for level in range(4))
        return (w0, w1, w2, w3)

    def effective_bn_momentum(self) -> float:
        """The S3D BatchNorm momentum rule picks (docs/MODEL.md, S3D row)."""
        if self.bn_momentum is not None:
            return self.bn_momentum
        return 0.001 if self.s3d_weights is not None else 0.1


class LossConfig(_Strict):
    """Loss = KL + a1·CC + a2·SIM (paper eq. 19)."""

    a1: float = Field(-0.1, ge=-10.0, le=10.0, description="weight of CC")
    a2: float = Field(-0.1, ge=-10.0, le=10.0, description="weight of SIM")
    eps: float = Field(1e-10, gt=0.0, lt=1e-2, description="guard against division by zero")


class AVRSPConfig(_Strict):
    """Everything that defines a model run: input, network, loss."""

    input: InputConfig = Field(default_factory=InputConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write JSON or YAML by the file's suffix."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json()
        return write_text(path, text)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> AVRSPConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_validation_error(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> AVRSPConfig:
        """Read a JSON or YAML config file; errors name the file and the field."""
        data = read_config_file(path)
        kind = _other_kind_of_config(data, tuple(cls.model_fields))
        if kind:
            keys = ", ".join(list(data)[:6]) + (", …" if len(data) > 6 else "")
            raise ConfigError(
                f"{path}: not a model config: expected the sections "
                f"{', '.join(cls.model_fields)} (docs/MODEL.md), found the keys {keys}; {kind}"
            )
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, **dotted: Any) -> AVRSPConfig:
        """A copy with ``section.field=value`` overrides, e.g. ``model.heads=2``."""
        data = self.to_dict()
        for key, value in dotted.items():
            section, _, field = key.partition(".")
            if section not in data or not field:
                raise ConfigError(f"unknown config key {key!r} (use section.field)")
            data[section][field] = value
        return AVRSPConfig.from_dict(data, source="overrides")


def _other_kind_of_config(data: dict[str, Any], sections: tuple[str, ...]) -> str:
    """What kind of file a mapping with none of a model config's ``sections`` seems to be
    ("" when it may be a model config with a misspelt section): said once, instead of one
    "Extra inputs" line per key."""
    if set(data) & set(sections) or not data:
        return ""
    if {"network", "preset", "epochs"} & set(data):
        return (
            "it looks like a training config (`avrsp train --config`); give a model config "
            "or a preset"
        )
    if isinstance(data.get("config"), dict):
        return "its 'config' entry may be the model config (as in a manifest.json)"
    if len(data) > len(sections):
        return "it is some other kind of file"
    return ""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → ``{"a.b.c": value}`` (values unchanged)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, mapping by mapping (``over`` wins); new dicts."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a JSON or YAML (by suffix) config file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a text file (a checkpoint such as model.pt?); expected a JSON or "
            "YAML config"
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise their own types
        raise ConfigError(f"{path}: not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        got = (
            f" (got {err['input']!r})"
            if "input" in err and not isinstance(err["input"], dict)
            else ""
        )
        parts.append(f"{loc}: {msg}{got}")
    return "; ".join(parts)


def paper() -> AVRSPConfig:
    """The paper's setting: T=32 frames at 224×384, 1.5 s of 22.05 kHz audio."""
    return AVRSPConfig()


def tiny() -> AVRSPConfig:
    """Small enough for two CPU cores: T=8 at 64×112, width 64, one RAVF block."""
    return AVRSPConfig(
        input=InputConfig(frames=8, height=64, width=112, audio_window_s=0.75),
        model=ModelConfig(
            width=64,
            heads=4,
            ravf_blocks=1,
            ffn_mult=2,
            decoder_widths=(32, 24, 16, 8),
            aspp_rates=(1, 2),
        ),
    )


PRESETS = {"paper": paper, "tiny": tiny}


def preset(name: str) -> AVRSPConfig:
    """A fresh copy of a named preset."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
