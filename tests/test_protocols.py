"""avrsp.metrics.protocols against the benchmarks' own scripts, run in Octave.

``tests/data/protocols/`` holds a small case (two videos, predictions resized up and
down) and ``reference.json``, the scripts' values on it (ViNet's and STAViS' functions in
Octave, ``benchmarks/octave_reference.py``). CC, SIM and NSS are deterministic and agree
to 1e-14 (tested to 1e-6: a tolerance of 1e-3 would not notice Pillow's bicubic resize);
AUC-Judd's jitter moves it by ~1e-6 (tested to 1e-3); shuffled AUC draws its splits at
random, so ours must lie within 4 standard deviations of the scripts' own spread over
seeds. The mutation tests show that each step of the reading matters: without it the
comparison fails.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from avrsp.errors import InputError
from avrsp.metrics import protocols as P

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "data" / "protocols"
DETERMINISTIC_TOL = 1e-6  # CC, SIM, NSS (measured: 1e-14)
JUDD_TOL = 1e-3  # AUC-Judd: the scripts' jitter (measured spread over seeds: 3e-6)
SIGMAS = 4.0  # shuffled AUC: ours within 4 sd of the scripts' spread over seeds


def _load_benchmark(name: str):
    """A script of ``benchmarks/`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref_script = _load_benchmark("octave_reference")


@cache
def reference() -> dict:
    return json.loads((CASE / "reference.json").read_text())


@cache
def case() -> dict:
    return ref_script.load_case(CASE)


def _num(x) -> float:
    return math.nan if x is None else float(x)


def our_rows(protocol: str) -> list[dict]:
    """Our per-frame scores of the case, one row per frame (frame 1-based, as the scripts)."""
    rows = []
    for name, video in case().items():
        for row in P.score_video(protocol, video["pred8"], video["gt"], video["fix"], seed=0):
            rows.append({**row, "video": name, "frame": row["frame"] + 1})
    return rows


def mismatches(protocol: str, rows: list[dict] | None = None) -> dict[str, float]:
    """Per metric the worst |ours − scripts| in units of its tolerance (> 1 fails)."""
    rows = our_rows(protocol) if rows is None else rows
    ours = {(r["video"], r["frame"]): r for r in rows}
    worst = dict.fromkeys(P.PROTOCOL_METRICS, 0.0)
    k = len(reference()["seeds"])
    for ref in reference()["frames"]:
        if ref["protocol"] != protocol:
            continue
        mine = ours[(ref["video"], ref["frame"])]
        for m in P.PROTOCOL_METRICS:
            want, got = _num(ref[m]), mine[m]
            if math.isnan(want) or math.isnan(got):
                worst[m] = max(worst[m], 0.0 if math.isnan(want) == math.isnan(got) else math.inf)
                continue
            if m == "sauc":
                tol = SIGMAS * _num(ref["sauc_sd"]) * math.sqrt(1 + 1 / k)
            elif m == "auc_j":
                tol = JUDD_TOL
            else:
                tol = DETERMINISTIC_TOL
            worst[m] = max(worst[m], abs(got - want) / tol)
    return worst


# ---------------------------------------------------------------------------------------
# (a) the committed reference


def test_case_is_small_and_complete():
    total = sum(p.stat().st_size for p in CASE.rglob("*") if p.is_file())
    assert total < 200_000
    ref = reference()
    assert len(ref["frames"]) == 2 * 8 and len(ref["videos"]) == 2 * 2
    assert ref["octave"] and ref["image_package"] and ref["command"]
    assert len(ref["seeds"]) >= 3


@pytest.mark.parametrize("protocol", P.PROTOCOLS)
def test_frames_equal_the_scripts(protocol):
    worst = mismatches(protocol)
    assert all(v <= 1.0 for v in worst.values()), worst


@pytest.mark.parametrize("protocol", P.PROTOCOLS)
def test_means_equal_the_scripts(protocol):
    """Per video (NaN dropped per metric) and over videos; STAViS as one fold."""
    rows = our_rows(protocol)
    if protocol == "stavis":
        rows = [{**r, "fold": 1} for r in rows]
    agg = P.aggregate(rows)
    k = len(reference()["seeds"])
    for ref in reference()["videos"]:
        if ref["protocol"] != protocol:
            continue
        key = f"1/{ref['video']}" if protocol == "stavis" else ref["video"]
        mine = agg["videos"][key]
        assert mine["frames"] == ref["frames"]
        for m in ("cc", "sim", "nss"):
            assert mine[m] == pytest.approx(ref[m], abs=DETERMINISTIC_TOL), m
        assert mine["auc_j"] == pytest.approx(ref["auc_j"], abs=JUDD_TOL)
        sauc_tol = SIGMAS * ref["sauc_sd"] * math.sqrt(1 + 1 / k)
        assert mine["sauc"] == pytest.approx(ref["sauc"], abs=sauc_tol)
    (overall,) = [o for o in reference()["overall"] if o["protocol"] == protocol]
    for m in ("cc", "sim", "nss"):
        assert agg["overall"][m] == pytest.approx(overall[m], abs=DETERMINISTIC_TOL)
    assert agg["overall"]["auc_j"] == pytest.approx(overall["auc_j"], abs=JUDD_TOL)
    assert agg["overall"]["sauc"] == pytest.approx(overall["sauc"], abs=0.01)


# ---------------------------------------------------------------------------------------
# A wrong reading goes red


def _pil_resize(method):
    def resize(x, shape):
        img = Image.fromarray(np.asarray(x, np.float32), mode="F")
        return np.asarray(img.resize((shape[1], shape[0]), method), dtype=np.float64)

    return resize


@pytest.mark.parametrize(
    "protocol, method", [(p, m) for p in P.PROTOCOLS for m in ("bilinear", "bicubic")]
)
def test_pillow_resize_goes_red(monkeypatch, protocol, method):
    """Pillow's resize for MATLAB's: bilinear moves NSS by ~1e-2, bicubic CC by ~1e-5."""
    pil = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[method]
    monkeypatch.setattr(P, "imresize", _pil_resize(pil))
    worst = mismatches(protocol)
    assert max(worst["cc"], worst["sim"], worst["nss"]) > 1.0, worst


def _blur(size: int = 13, mode: str = "reflect"):
    def post(map8, sigma=2.0):
        x = P.normalize_image(P.im2double(map8))
        return ndimage.convolve(x, P.gaussian_kernel(size, sigma), mode=mode)

    return post


@pytest.mark.parametrize(
    "mutation",
    ["no post-processing", "zero-padded blur", "7x7 kernel", "blur after resizing"],
)
def test_stavis_post_processing_mutations_go_red(monkeypatch, mutation):
    if mutation == "no post-processing":
        monkeypatch.setattr(P, "postprocess_stavis", lambda m, sigma=2.0: P.im2double(m))
    elif mutation == "zero-padded blur":
        monkeypatch.setattr(P, "postprocess_stavis", _blur(mode="constant"))
    elif mutation == "7x7 kernel":
        monkeypatch.setattr(P, "postprocess_stavis", _blur(size=7))
    else:
        post, resize = P.postprocess_stavis, P.imresize
        monkeypatch.setattr(
            P, "prepare", lambda protocol, m, shape: post(resize(P.im2double(m), shape))
        )
    worst = mismatches("stavis")
    assert worst["cc"] > 1.0 and worst["nss"] > 1.0, worst


@pytest.mark.parametrize("mutation", ["keeps the frame's fixations", "other frames only"])
def test_other_map_mutations_go_red(monkeypatch, mutation):
    if mutation == "keeps the frame's fixations":
        monkeypatch.setattr(P, "shuffle_map", lambda maps, i: np.asarray(maps).sum(0) > 0)
    else:
        monkeypatch.setattr(
            P, "shuffle_map", lambda maps, i: np.delete(np.asarray(maps), i, 0).sum(0) > 0
        )
    for protocol in P.PROTOCOLS:
        assert mismatches(protocol)["sauc"] > 1.0


# ---------------------------------------------------------------------------------------
# The pieces


def test_to_8bit_is_how_predict_writes_maps():
    from workflows.predict_outputs import map_to_uint8

    rng = np.random.default_rng(3)
    for x in (rng.random((7, 9)) * 3.7, np.zeros((4, 5)), -rng.random((3, 3)), np.eye(4)):
        assert np.array_equal(P.to_8bit(x), map_to_uint8(x))


def test_to_8bit_rules():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert P.to_8bit(x).tolist() == [[51, 102], [153, 255]]  # /max, rounded
    assert P.to_8bit(x, "stavis").tolist() == [[0, 63], [127, 255]]  # min-max, truncated
    assert P.to_8bit(x, "vinet").tolist() == [[0, 64], [128, 255]]  # round(x·255 + 0.5)
    with pytest.raises(InputError):
        P.to_8bit(x, "jpeg")


def test_fspecial_and_symmetric_imfilter():
    h = P.gaussian_kernel(13, 2.0)
    assert h.shape == (13, 13) and h.sum() == pytest.approx(1.0, abs=1e-15)
    assert h[6, 6] == pytest.approx(1 / np.exp(-(np.arange(-6, 7) ** 2) / 8).sum() ** 2)
    img = np.arange(20.0).reshape(4, 5) ** 1.5
    k = np.arange(9.0).reshape(3, 3)  # not symmetric: 'conv' flips it
    padded = np.pad(img, 1, mode="symmetric")
    want = np.array(
        [[(padded[i : i + 3, j : j + 3] * k[::-1, ::-1]).sum() for j in range(5)] for i in range(4)]
    )
    assert np.allclose(P.imfilter_symmetric(img, k), want, atol=1e-12)


def test_postprocess_constant_and_zero_maps():
    flat = P.postprocess_stavis(np.full((5, 6), 77, np.uint8))
    assert np.allclose(flat, 0.5)  # normalizeImage1 of a constant map, blurred
    assert np.isnan(P.postprocess_stavis(np.zeros((5, 6), np.uint8))).all()  # 0/0
    scores = P.score_frame(
        "stavis", np.zeros((5, 6), np.uint8), np.ones((5, 6)), np.eye(5, 6), np.eye(5, 6)
    )
    assert all(math.isnan(v) for v in scores.values())


def test_shuffle_map():
    maps = np.zeros((3, 2, 3), dtype=bool)
    maps[0, 0, 0] = maps[1, 0, 0] = maps[1, 1, 1] = maps[2, 1, 2] = True
    assert P.shuffle_map(maps, 0).tolist() == [[False, False, False], [False, True, True]]
    assert P.shuffle_map(maps, 2).tolist() == [[True, False, False], [False, True, False]]
    with pytest.raises(InputError):
        P.shuffle_map(maps, 3)


def test_aggregate_rules():
    nan = math.nan
    rows = [
        {"video": "a", "cc": 0.2, "sim": 0.1, "nss": 1.0, "auc_j": 0.9, "sauc": nan},
        {"video": "a", "cc": 0.4, "sim": 0.3, "nss": nan, "auc_j": 0.7, "sauc": nan},
        {"video": "b", "cc": nan, "sim": 0.5, "nss": 2.0, "auc_j": 0.5, "sauc": 0.6},
    ]
    agg = P.aggregate(rows)
    assert agg["videos"]["a"]["cc"] == pytest.approx(0.3)
    assert agg["videos"]["a"]["nss"] == 1.0  # NaN frames dropped per metric
    assert math.isnan(agg["videos"]["a"]["sauc"])  # nothing left: mean([]) = NaN
    assert math.isnan(agg["overall"]["sauc"])  # a NaN video mean is not dropped
    assert agg["overall"]["sim"] == pytest.approx((0.2 + 0.5) / 2)
    pooled = P.aggregate(rows, per_frame=True)["overall"]
    assert pooled["sim"] == pytest.approx(0.9 / 2)  # divided by the frames with a CC
    folds = P.aggregate([{**r, "fold": i % 2} for i, r in enumerate(rows)])
    assert set(folds["folds"]) == {0, 1}
    # compute_all_*.m: one list of (split, video) means, whatever the folds' sizes
    uneven = [
        {"fold": 1, "video": "a", "cc": 0.2},
        {"fold": 1, "video": "b", "cc": 0.4},
        {"fold": 2, "video": "c", "cc": 0.9},
        {"fold": 2, "video": "a", "cc": 0.5},  # a video in two folds' test lists counts twice
        {"fold": 3, "video": "d", "cc": 0.1},
    ]
    agg = P.aggregate(uneven, metrics=("cc",))
    assert agg["overall"]["cc"] == pytest.approx((0.2 + 0.4 + 0.9 + 0.5 + 0.1) / 5)
    assert agg["folds"][2]["cc"] == pytest.approx(0.7)


def test_script_metrics_equal_the_five_single_map_functions():
    """``fast.script_metrics`` shares one prepared map: the same values, bit for bit, as
    ``cc``, ``sim``, ``nss``, ``auc_judd`` and ``auc_shuffled`` (constant, zero, no
    fixations and an empty "other" map included)."""
    from avrsp.metrics import fast

    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = rng.integers(5, 40, 2)
        pred = rng.random(tuple(rng.integers(3, 50, 2)))
        pred = np.full_like(pred, 0.3) if trial % 7 == 0 else pred
        gt = np.where(rng.random((h, w)) < 0.5, 0.0, rng.random((h, w))) * (trial % 13 != 0)
        fix = (rng.random((h, w)) < 0.05) & (trial % 17 != 0)
        other = (rng.random((h, w)) < 0.1) & (trial % 19 != 0)
        seed = int(rng.integers(0, 1000))
        got = fast.script_metrics(pred, gt, fix, other, seed=seed)
        want = {
            "cc": fast.cc(pred, gt),
            "sim": fast.sim(pred, gt),
            "nss": fast.nss(pred, fix),
            "auc_j": fast.auc_judd(pred, fix, seed=seed),
            "sauc": fast.auc_shuffled(pred, fix, other, seed=seed),
        }
        assert got == pytest.approx(want, abs=0, rel=0, nan_ok=True), trial


def test_score_frame_refuses_unknown_protocol():
    with pytest.raises(InputError, match="protocol"):
        P.score_frame("dhf1k", np.ones((3, 3)), np.ones((3, 3)), np.eye(3), np.eye(3))


# ---------------------------------------------------------------------------------------
# (b) the scripts again, where Octave and their checkouts are here


@pytest.mark.slow
def test_octave_rerun_reproduces_the_reference():
    repos = ref_script.script_repos()
    why = ref_script.missing(repos)
    if why:
        pytest.skip(f"cannot run the benchmarks' scripts: {why}")
    start = time.perf_counter()
    fresh = ref_script.run_octave(CASE, repos, seeds=[1, 2])
    assert time.perf_counter() - start < 60
    stored = {(r["protocol"], r["video"], r["frame"]): r for r in reference()["frames"]}
    for row in fresh["frames"]:
        old = stored[(row["protocol"], row["video"], row["frame"])]
        for m in ("cc", "sim", "nss"):
            assert row[m] == pytest.approx(_num(old[m]), abs=1e-12, nan_ok=True)
        for m in ("auc_j_runs", "sauc_runs"):  # rand('state', seed): the same draws
            assert row[m] == pytest.approx([_num(x) for x in old[m][:2]], abs=1e-12, nan_ok=True)
    ours = {(p, r["video"], r["frame"]): r for p in P.PROTOCOLS for r in our_rows(p)}
    for row in fresh["frames"]:
        mine = ours[(row["protocol"], row["video"], row["frame"])]
        for m in ("cc", "sim", "nss"):
            assert mine[m] == pytest.approx(row[m], abs=DETERMINISTIC_TOL, nan_ok=True)


# ---------------------------------------------------------------------------------------
# (c) the scripts themselves on real clips: ``avrsp evaluate --predictions`` against them

REAL = CASE / "real_clips.json"
REAL_TOL = 1e-3  # ViNet's eval_diem.m prints 4 decimals; STAViS' saved values agree to 1e-13


@pytest.fixture(scope="module")
def real_clips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The STAViS-layout folder of ``benchmarks/octave_scripts.py`` rebuilt from the real
    clips (the same seed and sizes as the stored reference), its module and the reference."""
    scripts = _load_benchmark("octave_scripts")
    stored = json.loads(REAL.read_text())
    folder = tmp_path_factory.mktemp("real_clips")
    case_ = stored["case"]
    built = scripts.build(
        shared_data / "media",
        folder,
        max(case_["frames"].values()),
        seed=case_["seed"],
        observers=case_["observers"],
    )
    assert built == case_
    return scripts, folder, stored


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["vinet", "stavis"])
def test_evaluate_predictions_equals_the_scripts_on_real_clips(real_clips, protocol):
    """Per (fold, video): CC, SIM, NSS, AUC-J within 1e-3 of the scripts' own output, sAUC
    within 4 sd of its random splits; and STAViS' ``compute_all_avad.m`` mean (over every
    (fold, video), a video in two folds' test lists counted twice) from ours."""
    scripts, folder, stored = real_clips
    ours, _ = scripts.run_ours(folder, protocol, folder / f"ours_{protocol}")
    mine = {(r["fold"], r["video"]): r for r in ours}
    assert set(mine) == {(r["fold"], r["video"]) for r in stored[protocol]}
    for row in stored[protocol]:
        got = mine[(row["fold"], row["video"])]
        for m in ("cc", "sim", "nss", "auc_j"):
            assert got[m] == pytest.approx(row[m], abs=REAL_TOL), (row["video"], m)
        # two independent draws: the difference has sqrt(2) times their spread
        assert abs(got["sauc"] - row["sauc"]) <= SIGMAS * math.sqrt(2) * row["sauc_sd"], row[
            "video"
        ]
    if protocol == "stavis":  # the table's AVAD number, as compute_all_avad.m's
        from workflows.evaluate import EvalOptions, evaluate

        opts = EvalOptions(
            source=f"stavis:{folder / 'data'}",
            predictions={k: folder / "pred" / f"split{k}_results" for k in (1, 2, 3)},
            protocol="stavis", baseline=False, workers=0, tracking=False, out=folder / "table",
        )  # fmt: skip
        (row,) = evaluate(opts, log=lambda m: None).table.rows
        final = stored["stavis_final"]  # written with %0.4f
        for m, column in (("cc", "cc"), ("sim", "sim"), ("nss", "nss"), ("auc_j", "auc_j")):
            assert row.get("AVAD", column) == pytest.approx(final[m], abs=REAL_TOL), m


@pytest.mark.slow
def test_the_scripts_rerun_on_real_clips(real_clips):
    """ViNet's ``eval_diem.m`` and STAViS' ``eval_avad.m`` + ``compute_all_avad.m``,
    unchanged, in Octave: the stored reference again (deterministic metrics)."""
    scripts, folder, stored = real_clips
    why = ref_script.missing(ref_script.script_repos())
    if why:
        pytest.skip(f"cannot run the benchmarks' scripts: {why}")
    fresh = scripts.run_scripts(folder)
    for protocol in ("vinet", "stavis"):
        old = {(r["fold"], r["video"]): r for r in stored[protocol]}
        for row in fresh[protocol]:
            for m in ("cc", "sim", "nss"):
                assert row[m] == pytest.approx(old[(row["fold"], row["video"])][m], abs=1e-9)
            assert row["auc_j"] == pytest.approx(
                old[(row["fold"], row["video"])]["auc_j"], abs=1e-4
            )
