"""Configuration (``avrsp/config.py``): presets, file round trips, validation and the BN rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from torch import nn

from avrsp.config import (
    FUSION_METHODS,
    MIN_AUDIO_SAMPLES,
    MIN_FRAMES,
    AVRSPConfig,
    InputConfig,
    ModelConfig,
    paper,
    preset,
    tiny,
)
from avrsp.errors import ConfigError
from avrsp.model.network import AVRSP

# --------------------------------------------------------------------------- presets


def test_paper_preset_is_the_papers_setting() -> None:
    cfg = paper()
    assert (cfg.input.frames, cfg.input.height, cfg.input.width) == (32, 224, 384)
    assert cfg.input.sample_rate == 22050
    assert cfg.input.audio_samples == 33075  # 1.5 s at 22.05 kHz
    m = cfg.model
    assert (m.use_audio, m.fusion, m.ms_mrg_pairs, m.use_ms, m.use_mrg) == (
        True,
        "ravf",
        3,
        True,
        True,
    )
    assert (cfg.loss.a1, cfg.loss.a2) == (-0.1, -0.1)
    assert m.s3d_weights is None and m.effective_bn_momentum() == 0.1


def test_tiny_preset_is_smaller_but_the_same_network() -> None:
    big, small = paper(), tiny()
    assert small.input.frames < big.input.frames
    assert small.input.height * small.input.width < big.input.height * big.input.width
    assert small.model.width < big.model.width
    same = ("use_audio", "fusion", "ms_mrg_pairs", "use_ms", "use_mrg")
    assert {k: getattr(small.model, k) for k in same} == {k: getattr(big.model, k) for k in same}


def test_preset_by_name_gives_fresh_copies() -> None:
    a, b = preset("tiny"), preset("tiny")
    assert a == tiny() and a is not b
    a.model.heads = 2
    assert b.model.heads == tiny().model.heads
    assert preset("paper") == paper()


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*paper, tiny"):
        preset("huge")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["paper", "tiny"])
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_preset_round_trips_through_a_file(name: str, suffix: str, tmp_path: Path) -> None:
    cfg = preset(name).with_overrides(**{"model.s3d_weights": "/weights/s3d.pt"})
    path = cfg.save(tmp_path / f"cfg{suffix}")
    text = path.read_text()
    if suffix == ".json":
        assert json.loads(text)["model"]["fusion"] == "ravf"
    else:
        assert text.lstrip().startswith("input:")  # YAML, not JSON
    loaded = AVRSPConfig.load(path)
    assert loaded == cfg
    assert loaded.model.decoder_widths == cfg.model.decoder_widths  # tuples survive YAML lists
    assert loaded.model.s3d_weights == Path("/weights/s3d.pt")


def test_dict_round_trip_keeps_every_switch() -> None:
    cfg = tiny().with_overrides(
        **{
            "model.use_ms": False,
            "model.use_mrg": False,
            "model.fusion": "mbt",
            "model.ms_mrg_pairs": 4,
            "loss.a1": 0.5,
        }
    )
    again = AVRSPConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert (again.model.use_ms, again.model.use_mrg, again.model.fusion) == (False, False, "mbt")


def test_a_partial_file_takes_defaults(tmp_path: Path) -> None:
    path = tmp_path / "partial.yaml"
    path.write_text("model:\n  fusion: add\n  use_mrg: false\n")
    cfg = AVRSPConfig.load(path)
    assert cfg.model.fusion == "add" and cfg.model.use_mrg is False
    assert cfg.input == InputConfig() and cfg.model.heads == ModelConfig().heads


# --------------------------------------------------------------------------- validation

BAD_VALUES = [
    ("input.height", -64, "input.height"),
    ("input.width", 0, "input.width"),
    ("input.height", 16, "input.height"),
    ("input.frames", 0, "input.frames"),
    ("input.frames", -3, "input.frames"),
    ("input.frames", MIN_FRAMES - 1, "frames"),
    ("input.sample_rate", 0, "input.sample_rate"),
    ("input.audio_window_s", -1.0, "input.audio_window_s"),
    ("model.ms_mrg_pairs", 5, "model.ms_mrg_pairs"),
    ("model.ms_mrg_pairs", -1, "model.ms_mrg_pairs"),
    ("model.fusion", "sum", "model.fusion"),
    ("model.fusion", "RAVF", "model.fusion"),
    ("model.heads", 3, "heads"),  # does not divide width 64
    ("model.heads", 0, "model.heads"),
    ("model.width", -8, "model.width"),
    ("model.ravf_blocks", 0, "model.ravf_blocks"),
    ("model.decoder_widths", [32, 0, 16, 8], "decoder_widths"),
    ("model.decoder_widths", [32, 16, 8], "model.decoder_widths"),
    ("model.aspp_rates", [], "aspp_rates"),
    ("model.aspp_rates", [1, 0], "aspp_rates"),
    ("model.bn_momentum", 0.0, "model.bn_momentum"),
    ("model.bn_momentum", 1.5, "model.bn_momentum"),
    ("model.use_ms", "maybe", "model.use_ms"),
    ("loss.eps", 0.0, "loss.eps"),
    ("loss.a1", 50.0, "loss.a1"),
]


@pytest.mark.parametrize(("key", "value", "named"), BAD_VALUES)
def test_bad_values_are_rejected_naming_the_field(key: str, value: object, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        tiny().with_overrides(**{key: value})
    message = str(info.value)
    assert message.startswith("overrides:")
    assert named in message


def test_error_message_quotes_the_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"model\.fusion: .*\(got 'sum'\)"):
        tiny().with_overrides(**{"model.fusion": "sum"})


def test_min_frames_is_the_boundary() -> None:
    assert tiny().with_overrides(**{"input.frames": MIN_FRAMES}).input.frames == MIN_FRAMES
    with pytest.raises(ConfigError, match=rf"frames: {MIN_FRAMES - 1} < {MIN_FRAMES}"):
        tiny().with_overrides(**{"input.frames": MIN_FRAMES - 1})


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_audio_buffer_shorter_than_soundnet_needs_is_rejected(rate: int) -> None:
    ok = MIN_AUDIO_SAMPLES / rate
    cfg = tiny().with_overrides(**{"input.sample_rate": rate, "input.audio_window_s": ok})
    assert cfg.input.audio_samples == MIN_AUDIO_SAMPLES
    short = (MIN_AUDIO_SAMPLES - 1) / rate
    with pytest.raises(ConfigError, match=r"audio_window_s.*SoundNet-8 needs at least 4574"):
        tiny().with_overrides(**{"input.sample_rate": rate, "input.audio_window_s": short})


def test_assignment_is_validated() -> None:
    cfg = tiny()
    with pytest.raises(ValidationError):
        cfg.model.ms_mrg_pairs = 7
    with pytest.raises(ValidationError):
        cfg.model.fusion = "sum"  # type: ignore[assignment]
    assert cfg.model.ms_mrg_pairs == 3 and cfg.model.fusion == "ravf"


def test_every_fusion_method_is_accepted() -> None:
    for method in FUSION_METHODS:
        assert tiny().with_overrides(**{"model.fusion": method}).model.fusion == method


# --------------------------------------------------------------------------- files


def test_unknown_key_in_a_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  hedas: 8\n")
    with pytest.raises(ConfigError) as info:
        AVRSPConfig.load(path)
    assert str(path) in str(info.value) and "model.hedas" in str(info.value)


def test_unknown_section_in_a_json_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"modle": {"heads": 2}}))
    with pytest.raises(ConfigError, match=r"typo\.json: modle"):
        AVRSPConfig.load(path)


def test_bad_value_in_a_file_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": {"ms_mrg_pairs": 9}}))
    with pytest.raises(ConfigError, match=r"bad\.json: model\.ms_mrg_pairs"):
        AVRSPConfig.load(path)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("broken.yaml", "model: [unclosed\n", "not valid yaml"),
        ("broken.json", '{"model": ', "not valid json"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
        ("empty.yaml", "", "expected a mapping"),
    ],
)
def test_unreadable_files_raise_config_error(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        AVRSPConfig.load(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read config file"):
        AVRSPConfig.load(path)


# --------------------------------------------------------------------------- overrides


def test_with_overrides_returns_a_changed_copy() -> None:
    base = tiny()
    changed = base.with_overrides(
        **{"model.heads": 2, "input.frames": 16, "loss.a2": -0.3, "model.use_audio": False}
    )
    assert (changed.model.heads, changed.input.frames, changed.loss.a2) == (2, 16, -0.3)
    assert changed.model.use_audio is False
    assert base == tiny()  # the original is untouched
    assert changed.model.width == base.model.width


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("heads", "unknown config key 'heads'"),
        ("modle.heads", "unknown config key 'modle.heads'"),
        ("model.", "unknown config key 'model.'"),
        ("model.hedas", "model.hedas"),
    ],
)
def test_with_overrides_rejects_unknown_keys(key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        tiny().with_overrides(**{key: 1})
    assert expected in str(info.value)


# --------------------------------------------------------------------------- BN momentum


@pytest.mark.parametrize(
    ("weights", "momentum", "expected"),
    [
        (None, None, 0.1),  # from scratch
        ("/w/s3d.pt", None, 0.001),  # fine-tuning pretrained S3D
        (None, 0.05, 0.05),  # explicit value wins ...
        ("/w/s3d.pt", 0.3, 0.3),  # ... with weights too
    ],
)
def test_effective_bn_momentum_rule(
    weights: str | None, momentum: float | None, expected: float
) -> None:
    cfg = ModelConfig(s3d_weights=weights, bn_momentum=momentum)
    assert cfg.effective_bn_momentum() == expected


def test_soundnet_weights_do_not_change_the_s3d_momentum() -> None:
    assert ModelConfig(soundnet_weights="/w/sn.pth").effective_bn_momentum() == 0.1


@pytest.mark.parametrize(
    ("weights", "momentum", "expected"),
    [(None, None, 0.1), ("/w/s3d.pt", None, 0.001), ("/w/s3d.pt", 0.2, 0.2)],
)
def test_built_s3d_batchnorms_carry_the_momentum(
    weights: str | None, momentum: float | None, expected: float
) -> None:
    # AVRSP itself loads nothing, so a path that does not exist is fine here.
    cfg = ModelConfig.model_validate(
        {**tiny().model.model_dump(), "use_audio": False, "s3d_weights": weights}
        | {"bn_momentum": momentum}
    )
    model = AVRSP(cfg)
    norms = [m for m in model.visual.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(norms) > 50  # every S3D block, not a handful
    assert {m.momentum for m in norms} == {expected}
    # the heads after the backbone keep PyTorch's default
    head_norms = [m for m in model.stage_heads.modules() if isinstance(m, nn.BatchNorm3d)]
    assert head_norms and {m.momentum for m in head_norms} == {0.1}
