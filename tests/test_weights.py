"""Weight loading (``avrsp/weights.py``): round trips for every supported file layout.

The real files cannot be downloaded here, so each test builds a state dict with the true
key names and shapes of a layout, fills it with random values, saves it with ``torch.save``
and checks that loading puts every tensor into the right parameter: by value for every key,
and, for the layouts whose names differ from ours, by comparing the forward pass of a small
replica of the original module tree (same attribute names, same shapes) with ours.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from avrsp.errors import WeightsError
from avrsp.model.s3d import S3DEncoder
from avrsp.model.soundnet import SoundNet8
from avrsp.weights import (
    LoadReport,
    MisShaped,
    kylemin_to_torchvision,
    load_pretrained,
    load_s3d,
    load_soundnet,
)

# --------------------------------------------------------------------------- helpers


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    """Give every parameter and buffer a distinct random value of a sensible scale."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                tensor.copy_(torch.randint(1, 1000, tensor.shape, generator=gen))
            elif tensor.dim() >= 2:  # conv weight: He scale keeps 16 blocks finite
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * math.sqrt(2 / fan_in))
            elif name.endswith(("running_var", "weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return module.eval()


def _assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


# --------------------------------------------------------------------------- kylemin replica
# The module tree of kylemin/S3D's model.py, written here from its attribute names and
# shapes (BasicConv3d: conv, bn; SepConv3d: conv_s, bn_s, conv_t, bn_t; Mixed_*: branch0 =
# Sequential(BasicConv3d), branch1/2 = Sequential(BasicConv3d, SepConv3d), branch3 =
# Sequential(MaxPool3d, BasicConv3d); S3D: base = Sequential(16 blocks), fc = Sequential(Conv3d)).


class _BasicConv3d(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class _SepConv3d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int) -> None:
        super().__init__()
        self.conv_s = nn.Conv3d(
            cin, cout, (1, k, k), (1, stride, stride), (0, pad, pad), bias=False
        )
        self.bn_s = nn.BatchNorm3d(cout, eps=1e-3)
        self.relu_s = nn.ReLU()
        self.conv_t = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (pad, 0, 0), bias=False)
        self.bn_t = nn.BatchNorm3d(cout, eps=1e-3)
        self.relu_t = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_s(self.bn_s(self.conv_s(x)))
        return self.relu_t(self.bn_t(self.conv_t(x)))


class _Mixed(nn.Module):
    def __init__(self, cin: int, b0: int, b1m: int, b1: int, b2m: int, b2: int, b3: int) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_BasicConv3d(cin, b0))
        self.branch1 = nn.Sequential(_BasicConv3d(cin, b1m), _SepConv3d(b1m, b1, 3, 1, 1))
        self.branch2 = nn.Sequential(_BasicConv3d(cin, b2m), _SepConv3d(b2m, b2, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), _BasicConv3d(cin, b3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch0, self.branch1, self.branch2, self.branch3)
        return torch.cat([branch(x) for branch in branches], 1)


# Mixed_3b … Mixed_5c: in, branch0, branch1 (mid, out), branch2 (mid, out), branch3.
_MIXED = {
    "3b": (192, 64, 96, 128, 16, 32, 32),
    "3c": (256, 128, 128, 192, 32, 96, 64),
    "4b": (480, 192, 96, 208, 16, 48, 64),
    "4c": (512, 160, 112, 224, 24, 64, 64),
    "4d": (512, 128, 128, 256, 24, 64, 64),
    "4e": (512, 112, 144, 288, 32, 64, 64),
    "4f": (528, 256, 160, 320, 32, 128, 128),
    "5b": (832, 256, 160, 320, 32, 128, 128),
    "5c": (832, 384, 192, 384, 48, 128, 128),
}


class _KyleminS3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        pool_hw = {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)}
        self.base = nn.Sequential(
            _SepConv3d(3, 64, 7, 2, 3),
            nn.MaxPool3d(**pool_hw),
            _BasicConv3d(64, 64),
            _SepConv3d(64, 192, 3, 1, 1),
            nn.MaxPool3d(**pool_hw),
            _Mixed(*_MIXED["3b"]),
            _Mixed(*_MIXED["3c"]),
            nn.MaxPool3d(3, 2, 1),
            *(_Mixed(*_MIXED[name]) for name in ("4b", "4c", "4d", "4e", "4f")),
            nn.MaxPool3d(2, 2, 0),
            _Mixed(*_MIXED["5b"]),
            _Mixed(*_MIXED["5c"]),
        )
        self.fc = nn.Sequential(nn.Conv3d(1024, 400, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)


# --------------------------------------------------------------------------- SoundNet replica
# The published SoundNet-8 (Aytar, Vondrick, Torralba, NIPS 2016), conv1–conv7, as built by
# the original Torch code (cvondrick/soundnet main_train.lua) and its PyTorch ports
# (keunhong/pytorch-soundnet soundnet.py, smallflyingpig/SoundNet_Pytorch pytorch_model.py):
# (in, out, kernel, stride, padding, max-pool after) along time; every conv is followed by
# BatchNorm and ReLU, the pool (kernel = stride) comes after the ReLU.
PUBLISHED_SOUNDNET8 = (
    (1, 16, 64, 2, 32, 8),  # conv1, maxpool1 8
    (16, 32, 32, 2, 16, 8),  # conv2, maxpool2 8
    (32, 64, 16, 2, 8, None),  # conv3
    (64, 128, 8, 2, 4, None),  # conv4
    (128, 256, 4, 2, 2, 4),  # conv5, maxpool5 4
    (256, 512, 4, 2, 2, None),  # conv6
    (512, 1024, 4, 2, 2, None),  # conv7
)


def test_soundnet_layers_are_the_published_table() -> None:
    """The built modules (not ``SOUNDNET8_LAYERS``) against the published layer table."""
    for norm in ("batch", "frozen", "group"):
        net = SoundNet8(norm)
        names = [name for name, _ in net.named_children()]
        assert names == [f"conv{i}" for i in range(1, 8)]  # conv8's heads are not built
        for i, (cin, cout, k, stride, pad, pool) in enumerate(PUBLISHED_SOUNDNET8, start=1):
            layer = getattr(net, f"conv{i}")
            conv, norm_layer, relu, *rest = layer
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None, i
            assert (conv.in_channels, conv.out_channels) == (cin, cout), i
            assert (conv.kernel_size, conv.stride, conv.padding) == ((k, 1), (stride, 1), (pad, 0))
            assert (conv.dilation, conv.groups) == ((1, 1), 1), i
            assert isinstance(norm_layer, (nn.BatchNorm2d, nn.GroupNorm)), i
            assert isinstance(relu, nn.ReLU), i
            if pool is None:
                assert rest == [], i
            else:
                (maxpool,) = rest
                assert isinstance(maxpool, nn.MaxPool2d), i
                assert (maxpool.kernel_size, maxpool.stride) == ((pool, 1), (pool, 1)), i
                assert (maxpool.padding, maxpool.dilation, maxpool.ceil_mode) == (0, 1, False)


class _FlatSoundNet(nn.Module):
    """keunhong/pytorch-soundnet's module tree: convI (Conv2d), batchnormI, conv8_objs,
    conv8_scns — built from the published table, not from our ``SOUNDNET8_LAYERS``."""

    def __init__(self) -> None:
        super().__init__()
        for i, (cin, cout, k, stride, pad, _pool) in enumerate(PUBLISHED_SOUNDNET8, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, (k, 1), (stride, 1), (pad, 0)))
            self.add_module(f"batchnorm{i}", nn.BatchNorm2d(cout))
        self.conv8_objs = nn.Conv2d(1024, 1000, (8, 1), (2, 1))
        self.conv8_scns = nn.Conv2d(1024, 401, (8, 1), (2, 1))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform[:, None, :, None]
        for i, (*_, pool) in enumerate(PUBLISHED_SOUNDNET8, start=1):
            x = torch.relu(getattr(self, f"batchnorm{i}")(getattr(self, f"conv{i}")(x)))
            if pool is not None:
                x = nn.functional.max_pool2d(x, (pool, 1), (pool, 1))
        return x.squeeze(-1)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    """A random S3DEncoder state dict (torchvision's ``features.N.*`` names)."""
    return {k: v.clone() for k, v in _randomize(S3DEncoder(), seed=1).state_dict().items()}


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory: pytest.TempPathFactory, tv_state: dict[str, torch.Tensor]) -> Path:
    """torchvision's s3d file layout: features + the classifier head."""
    path = tmp_path_factory.mktemp("s3d") / "s3d-torchvision.pth"
    head = {
        "classifier.1.weight": torch.randn(400, 1024, 1, 1, 1),
        "classifier.1.bias": torch.randn(400),
    }
    torch.save({**tv_state, **head}, path)
    return path


@pytest.fixture(scope="module")
def soundnet_state() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _randomize(SoundNet8(), seed=2).state_dict().items()}


@pytest.fixture(scope="module")
def soundnet_file(
    tmp_path_factory: pytest.TempPathFactory, soundnet_state: dict[str, torch.Tensor]
) -> Path:
    """smallflyingpig's layout: Sequential-indexed convI.0/convI.1 plus conv8 / conv8_2 heads."""
    path = tmp_path_factory.mktemp("soundnet") / "sound8.pth"
    heads = {
        "conv8.0.weight": torch.randn(1000, 1024, 8, 1),
        "conv8.0.bias": torch.randn(1000),
        "conv8_2.0.weight": torch.randn(401, 1024, 8, 1),
        "conv8_2.0.bias": torch.randn(401),
    }
    torch.save({**soundnet_state, **heads}, path)
    return path


# --------------------------------------------------------------------------- S3D


def test_s3d_torchvision_round_trip(tv_file: Path, tv_state: dict[str, torch.Tensor]) -> None:
    encoder = S3DEncoder()
    report = load_s3d(encoder, tv_file)

    assert report.layout == "torchvision"
    assert report.loaded == len(tv_state)
    assert (report.missing, report.unexpected, report.mis_shaped) == ([], [], [])
    assert sorted(report.unused_heads) == ["classifier.1.bias", "classifier.1.weight"]
    assert report.ok
    _assert_same_tensors(encoder.state_dict(), tv_state)


def test_kylemin_key_names() -> None:
    """Hand-checked names, one or more per block type (docstring table of weights.py)."""
    cases = {
        "base.0.conv_s.weight": "features.0.0.0.weight",
        "base.0.bn_t.running_var": "features.0.1.1.running_var",
        "base.2.conv.weight": "features.2.0.weight",
        "base.2.bn.bias": "features.2.1.bias",
        "base.3.conv_t.weight": "features.3.1.0.weight",
        "base.5.branch0.0.conv.weight": "features.5.branch0.0.weight",
        "base.5.branch0.0.bn.running_mean": "features.5.branch0.1.running_mean",
        "base.9.branch1.0.bn.weight": "features.9.branch1.0.1.weight",
        "base.9.branch1.1.conv_s.weight": "features.9.branch1.1.0.0.weight",
        "base.15.branch2.1.bn_s.bias": "features.15.branch2.1.0.1.bias",
        "base.15.branch2.1.bn_t.running_mean": "features.15.branch2.1.1.1.running_mean",
        "base.8.branch1.1.bn_t.num_batches_tracked": "features.8.branch1.1.1.1.num_batches_tracked",
        "base.14.branch3.1.conv.weight": "features.14.branch3.1.0.weight",
        "fc.0.weight": None,
    }
    for kylemin, ours in cases.items():
        assert kylemin_to_torchvision(kylemin) == ours, kylemin


def test_s3d_kylemin_round_trip(tmp_path: Path) -> None:
    """kylemin's ``S3D_kinetics400.pt`` layout: ``module.base.N.*`` + ``module.fc.0.*``."""
    replica = _randomize(_KyleminS3D(), seed=3)
    source = replica.state_dict()
    path = tmp_path / "S3D_kinetics400.pt"
    torch.save({f"module.{k}": v for k, v in source.items()}, path)  # saved from DataParallel

    encoder = S3DEncoder()
    report = load_s3d(encoder, path)
    ours = encoder.state_dict()

    base_keys = [k for k in source if k.startswith("base.")]
    assert report.layout == "kylemin"
    assert report.loaded == len(base_keys) == len(ours)
    assert (report.missing, report.unexpected, report.mis_shaped) == ([], [], [])
    assert sorted(report.unused_heads) == ["fc.0.bias", "fc.0.weight"]
    # Every kylemin tensor, by value, in the parameter its name maps to (a bijection).
    mapped = {kylemin_to_torchvision(k): k for k in base_keys}
    assert mapped.keys() == ours.keys()
    for key, kylemin_key in mapped.items():
        assert torch.equal(ours[key], source[kylemin_key]), (kylemin_key, key)
    # Hand-picked pairs by value, independent of the mapping function.
    for kylemin_key, key in [
        ("base.0.bn_s.weight", "features.0.0.1.weight"),
        ("base.0.bn_t.weight", "features.0.1.1.weight"),  # same shape as bn_s: order matters
        ("base.6.branch0.0.bn.running_var", "features.6.branch0.1.running_var"),
        ("base.12.branch1.1.conv_t.weight", "features.12.branch1.1.1.0.weight"),
        ("base.15.branch3.1.conv.weight", "features.15.branch3.1.0.weight"),
    ]:
        assert torch.equal(ours[key], source[kylemin_key]), kylemin_key
    # The strongest check: the replica's forward pass equals ours with the loaded weights.
    frames = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = replica(frames)
        got = encoder.eval()(frames)[-1]
    assert want.shape == got.shape == (1, 1024, 1, 2, 2)
    assert want.std() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_s3d_mis_shaped_reported_and_strict_raises(
    tmp_path: Path, tv_state: dict[str, torch.Tensor]
) -> None:
    bad_key = "features.15.branch0.0.weight"  # [384, 832, 1, 1, 1]
    gone_key = "features.3.1.1.running_mean"
    state = dict(tv_state)
    state[bad_key] = torch.randn(384, 800, 1, 1, 1)
    del state[gone_key]
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)  # also: a container is unwrapped

    encoder = S3DEncoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(WeightsError) as caught:
        load_s3d(encoder, path)
    message = str(caught.value)
    assert str(path) in message and bad_key in message and gone_key in message
    assert "[384, 832, 1, 1, 1]" in message and "[384, 800, 1, 1, 1]" in message
    _assert_same_tensors(encoder.state_dict(), before)  # strict failure loads nothing

    report = load_s3d(encoder, path, strict=False)
    assert not report.ok
    assert report.mis_shaped == [
        MisShaped(bad_key, (384, 832, 1, 1, 1), (384, 800, 1, 1, 1), bad_key)
    ]
    assert report.missing == [gone_key]
    assert report.loaded == len(tv_state) - 2
    after = encoder.state_dict()
    for key, value in tv_state.items():
        expected = before[key] if key in (bad_key, gone_key) else value
        assert torch.equal(after[key], expected), key
    assert "mis-shaped: " + bad_key in str(report) and "missing: " + gone_key in str(report)


def test_s3d_without_bn_counters_is_complete(
    tmp_path: Path, tv_state: dict[str, torch.Tensor]
) -> None:
    """Older files lack ``num_batches_tracked``; they are not reported missing."""
    state = {k: v for k, v in tv_state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    report = load_s3d(S3DEncoder(), path)
    assert report.ok and report.missing == [] and report.loaded == len(state) < len(tv_state)


# --------------------------------------------------------------------------- SoundNet


def test_soundnet_sequential_round_trip(
    soundnet_file: Path, soundnet_state: dict[str, torch.Tensor]
) -> None:
    net = SoundNet8()
    report = load_soundnet(net, soundnet_file)
    assert report.layout == "sequential"
    assert report.loaded == len(soundnet_state)
    assert (report.missing, report.unexpected, report.mis_shaped) == ([], [], [])
    assert sorted(report.unused_heads) == [
        "conv8.0.bias",
        "conv8.0.weight",
        "conv8_2.0.bias",
        "conv8_2.0.weight",
    ]
    _assert_same_tensors(net.state_dict(), soundnet_state)


@pytest.mark.parametrize("conv1d", [False, True], ids=["conv2d", "conv1d-shaped"])
def test_soundnet_flat_round_trip(tmp_path: Path, conv1d: bool) -> None:
    """keunhong's ``soundnet8_final.pth`` names; optionally with ``[out, in, k]`` conv weights."""
    replica = _randomize(_FlatSoundNet(), seed=4)
    source = replica.state_dict()
    saved = {
        k: (v.squeeze(-1) if conv1d and v.dim() == 4 else v)
        for k, v in source.items()
        if not k.endswith("num_batches_tracked")  # as in the 2018 file
    }
    path = tmp_path / "soundnet8_final.pth"
    torch.save(saved, path)

    net = SoundNet8()
    report = load_soundnet(net, path)
    ours = net.state_dict()

    assert report.layout == "flat"
    assert (report.missing, report.unexpected, report.mis_shaped) == ([], [], [])
    assert sorted(report.unused_heads) == sorted(k for k in saved if k.startswith("conv8_"))
    assert report.loaded == 7 * 6  # conv weight, bias; bn weight, bias, mean, var
    conv_weights = [f"conv{i}.0.weight" for i in range(1, 8)]
    assert sorted(report.reshaped) == (sorted(conv_weights) if conv1d else [])
    for i in range(1, 8):
        for leaf in ("weight", "bias"):
            assert torch.equal(ours[f"conv{i}.0.{leaf}"], source[f"conv{i}.{leaf}"])
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(ours[f"conv{i}.1.{leaf}"], source[f"batchnorm{i}.{leaf}"])
    waveform = torch.randn(2, 40_000, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        want = replica(waveform)
        got = net.eval()(waveform)
    assert want.std() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_soundnet_mis_shaped(tmp_path: Path, soundnet_state: dict[str, torch.Tensor]) -> None:
    """A wrong size, and a same-size tensor in another layout (no silent reshape)."""
    state = dict(soundnet_state)
    state["conv2.1.running_var"] = torch.ones(31)
    state["conv1.0.weight"] = torch.randn(64, 1, 16, 1)  # 1024 elements, like [16, 1, 64, 1]
    path = tmp_path / "bad_soundnet.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightsError, match=r"conv2\.1\.running_var expects \[32\], file has \[31\]"
    ):
        load_soundnet(SoundNet8(), path)
    report = load_soundnet(SoundNet8(), path, strict=False)
    assert sorted(report.mis_shaped) == [
        MisShaped("conv1.0.weight", (16, 1, 64, 1), (64, 1, 16, 1), "conv1.0.weight"),
        MisShaped("conv2.1.running_var", (32,), (31,), "conv2.1.running_var"),
    ]
    assert report.reshaped == []
    assert report.loaded == len(soundnet_state) - 2


# --------------------------------------------------------------------------- wrong files


def test_wrong_files(tmp_path: Path, soundnet_file: Path, tv_file: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match="not a PyTorch weights file") as caught:
        load_s3d(S3DEncoder(), text)
    assert str(text) in str(caught.value)

    with pytest.raises(WeightsError, match="not found"):
        load_soundnet(SoundNet8(), tmp_path / "absent.pth")

    with pytest.raises(WeightsError, match="looks like SoundNet-8 weights") as caught:
        load_s3d(S3DEncoder(), soundnet_file)
    assert str(soundnet_file) in str(caught.value)

    with pytest.raises(WeightsError, match=r"looks like S3D weights \(torchvision layout"):
        load_soundnet(SoundNet8(), tv_file)

    pickled = tmp_path / "whole_model.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a pickled module, not a state dict
    with pytest.raises(WeightsError, match="weights_only"):
        load_soundnet(SoundNet8(), pickled)

    unrelated = tmp_path / "unrelated.pth"
    torch.save({"model": {"encoder.layer.weight": torch.zeros(3)}}, unrelated)
    with pytest.raises(WeightsError, match=r"not S3D weights .* encoder\.layer\.weight"):
        load_s3d(S3DEncoder(), unrelated)

    no_match = tmp_path / "no_match.pth"
    torch.save({"features.99.foo.weight": torch.zeros(3)}, no_match)
    with pytest.raises(WeightsError, match="no tensor in the file maps"):
        load_s3d(S3DEncoder(), no_match, strict=False)


# --------------------------------------------------------------------------- whole model


class _Network(nn.Module):
    """Stands in for ``AVRSP``: only the backbone attributes matter to the loader."""

    def __init__(self, audio: bool) -> None:
        super().__init__()
        self.visual = S3DEncoder()
        self.audio = SoundNet8() if audio else None


def test_load_pretrained(
    tv_file: Path,
    tv_state: dict[str, torch.Tensor],
    soundnet_file: Path,
    soundnet_state: dict[str, torch.Tensor],
) -> None:
    model = _Network(audio=True)
    reports = load_pretrained(model, s3d_path=tv_file, soundnet_path=soundnet_file)
    assert [(r.network, r.layout) for r in reports] == [
        ("S3D", "torchvision"),
        ("SoundNet-8", "sequential"),
    ]
    assert all(isinstance(r, LoadReport) and r.ok for r in reports)
    _assert_same_tensors(model.visual.state_dict(), tv_state)
    _assert_same_tensors(model.audio.state_dict(), soundnet_state)
    assert load_pretrained(model) == []

    visual_only = _Network(audio=False)
    with pytest.raises(WeightsError, match="no audio backbone"):
        load_pretrained(visual_only, soundnet_path=soundnet_file)
