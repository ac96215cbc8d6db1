"""The benchmarks' own evaluation scripts, unchanged, on real clips: equality and speed.

Where ``benchmarks/octave_reference.py`` calls the scripts' functions on a synthetic case,
this runs the scripts themselves — ViNet's ``eval_diem.m`` and STAViS' ``eval_avad.m`` +
``compute_all_avad.m`` — in GNU Octave (image package) on a STAViS-layout folder made from
real clips with gaze we generate, and ``avrsp evaluate --predictions`` on the same files::

    .venv/bin/python benchmarks/octave_scripts.py --media DIR              # equality
    .venv/bin/python benchmarks/octave_scripts.py --media DIR --speed      # + frames/s
    .venv/bin/python benchmarks/octave_scripts.py --media DIR --write-reference

``DIR`` holds ``chaplin.mp4`` (640×360, 25 fps) and ``realshort.mp4`` (320×240, 30 fps).

The folder (:func:`build`): dataset ``AVAD`` with three videos — two 360×640 stretches of
``chaplin.mp4`` and ``realshort.mp4`` at 240×320 — their frames (``img_%05d.jpg``), their
soundtracks (``.wav``), and per frame a gaze sample of 12 observers (drawn around two points
that move over the clip, plus a few strays): ``fixMap_%05d.mat`` (binary) and
``maps/eyeMap_%05d.jpg`` (the fixations blurred, as datasets ship them). The fold lists
put ``chaplin_a`` in the test lists of folds 1 and 2 (as AVAD's published lists put
V3_Speech3) and give the folds 2, 2 and 1 videos, so the scripts' averaging over
(fold, video) and a mean of fold means differ. Predictions, one folder per fold
(``pred/split<K>_results/avad/<video>/img_%05d.jpg``, STAViS' layout; each fold's maps
differ, as three models' would): the frame-to-frame change of the real frames, blurred,
plus a centre bias, stored as 8-bit JPEG the way ``avrsp predict`` scales maps. Their
size is not the ground truth's: 224×384 for ``chaplin_a`` and ``chaplin_b`` (enlarged
to 360×640 by the scripts' ``imresize``) and 480×640 for ``realshort`` (shrunk by 2:
Octave's ``imresize`` equals MATLAB's at integer shrink factors only, see
``octave_reference.py``).

The scripts come from their git checkouts (``$AVRSP_VINET_SCRIPTS`` /
``$AVRSP_STAVIS_SCRIPTS``, as ``octave_reference.py``), exported into a temporary folder
with STAViS' missing metric folder ``code_forMetrics`` filled by ViNet's
``code_for_Metrics`` copy of the MIT benchmark's files. Only Octave's settings are ours:
``format long`` (so ``disp`` prints more digits; the per-video ``fprintf('%.4f')`` lines
stay at 4 decimals) and ``save_default_options('-7')`` (MAT files Python can read).

``--write-reference`` stores the scripts' values in ``tests/data/protocols/real_clips.json``
with this command and the versions; ``tests/test_protocols.py`` compares ``avrsp evaluate``
with them where the clips are present, and re-runs the scripts where Octave is installed.
``--speed`` times, on one machine in one run, the scripts and ``avrsp evaluate
--predictions`` on the same frames (each a fresh process, as a user runs them).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import octave_reference as ref  # noqa: E402  (script_repos, missing, the scripts' commits)

REFERENCE = ROOT / "tests" / "data" / "protocols" / "real_clips.json"
DATASET = "AVAD"
#: video -> (clip, first frame (0-based), prediction size (rows, columns))
VIDEOS = {
    "chaplin_a": ("chaplin.mp4", 0, (224, 384)),
    "chaplin_b": ("chaplin.mp4", 120, (224, 384)),
    "realshort": ("realshort.mp4", 0, (480, 640)),
}
#: the test lists: fold -> videos (chaplin_a in two folds; uneven sizes). Shorter videos
#: first: ViNet's eval_diem.m keeps ``eyeMap_all`` from one video to the next, so after a
#: longer video of another size it stops ("nonconformant arguments" in createShuffmap1),
#: after a longer one of the same size the other video's later fixations join the
#: shuffled-AUC map. Listed this way every video meets only its own fixations.
TESTS = {1: ["realshort", "chaplin_a"], 2: ["chaplin_b", "chaplin_a"], 3: ["realshort"]}
OBSERVERS = 12
METRICS = ("cc", "sim", "nss", "auc_j", "sauc")
#: ours (videos.csv) -> STAViS' metrics_avg_video field
STAVIS_FIELDS = {
    "cc": "CC",
    "sim": "similarity",
    "nss": "NSS",
    "auc_j": "AUC_Judd",
    "sauc": "AUC_shuffled1",
}
VINET_FILES = [("vinet", "eval_diem.m"), ("vinet", "createShuffmap1.m")]
STAVIS_FILES = [
    ("stavis", f"eval_code/{n}.m")
    for n in (
        "eval_avad",
        "compute_all_avad",
        "createShuffmap1",
        "postprocessMap",
        "normalizeImage1",
    )
]
METRIC_FILES = ("CC", "similarity", "NSS", "AUC_Judd", "AUC_shuffled")


# ---------------------------------------------------------------------------------------
# the folder


def decode(clip: Path, first: int, count: int) -> tuple[list[np.ndarray], np.ndarray, int, float]:
    """``count`` RGB frames from ``first`` on, the clip's mono audio, its rate and fps."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for k, frame in enumerate(container.decode(stream)):
            if k >= first:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    with av.open(str(clip)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [f.to_ndarray().astype(np.float64) for f in container.decode(stream)]
    audio = np.concatenate([c.reshape(c.shape[0], -1) for c in chunks], axis=1).mean(axis=0)
    start, length = int(first / fps * rate), int(count / fps * rate)
    return frames, audio[start : start + length], rate, fps


def gaze(
    rng: np.random.Generator, shape: tuple[int, int], count: int, observers: int = OBSERVERS
) -> list[np.ndarray]:
    """Per frame a boolean fixation map: observers around two moving points, some strays."""
    h, w = shape
    t = np.linspace(0, 1, count)
    paths = [
        np.stack([0.4 + 0.15 * np.sin(2 * np.pi * t), 0.3 + 0.3 * t], axis=1),
        np.stack([0.6 - 0.1 * t, 0.7 - 0.2 * np.cos(np.pi * t)], axis=1),
    ]
    maps = []
    for k in range(count):
        points = [rng.normal(paths[j][k], 0.04, 2) for j in rng.integers(0, 2, observers - 2)]
        points += [rng.uniform(0.05, 0.95, 2) for _ in range(2)]
        fix = np.zeros(shape, dtype=bool)
        for r, c in np.clip(points, 0, 0.999):
            fix[int(r * h), int(c * w)] = True
        maps.append(fix)
    return maps


def prediction(frames: list[np.ndarray], k: int, size: tuple[int, int], fold: int) -> np.ndarray:
    """A model-like map of frame ``k``: blurred frame-to-frame change plus a centre bias,
    at ``size`` (each fold's blur and bias differ, as three models' maps would)."""
    from PIL import Image
    from scipy import ndimage

    grey = [f.astype(np.float64).mean(axis=2) for f in frames[max(k - 1, 0) : k + 1]]
    motion = np.abs(grey[-1] - grey[0])
    motion = np.asarray(
        Image.fromarray(motion.astype(np.float32)).resize(size[::-1], Image.BILINEAR)
    )
    motion = ndimage.gaussian_filter(motion.astype(np.float64), 3.0 + 3.0 * fold)
    rows = np.linspace(-1, 1, size[0])[:, None]
    cols = np.linspace(-1, 1, size[1])[None, :]
    centre = np.exp(-(rows**2 + cols**2) / 0.5)
    return motion / (motion.max() or 1.0) + 0.25 * fold * centre


def build(
    media: Path, folder: Path, frames_per_video: int, seed: int = 0, observers: int = OBSERVERS
) -> dict:
    """Write the STAViS-layout folder and the predictions (module docstring); return the
    description (what the test compares with)."""
    import scipy.io
    from PIL import Image
    from scipy import ndimage

    from avrsp.metrics.protocols import to_8bit

    rng = np.random.default_rng(seed)
    data, pred = folder / "data", folder / "pred"
    counts: dict[str, int] = {}
    rates: dict[str, float] = {}
    for video, (clip, first, size) in VIDEOS.items():
        frames, audio, rate, fps = decode(media / clip, first, frames_per_video)
        counts[video], rates[video] = len(frames), fps
        img = data / "video_frames" / DATASET / video
        ann = data / "annotations" / DATASET / video
        wav = data / "video_audio" / DATASET / video
        for d in (img, ann / "maps", wav):
            d.mkdir(parents=True, exist_ok=True)
        _write_wav(wav / f"{video}.wav", audio, rate)
        shape = frames[0].shape[:2]
        for k, (frame, fix) in enumerate(
            zip(frames, gaze(rng, shape, len(frames), observers), strict=True)
        ):
            name = f"{k + 1:05d}"
            Image.fromarray(frame).save(img / f"img_{name}.jpg", quality=95)
            scipy.io.savemat(ann / f"fixMap_{name}.mat", {"eyeMap": fix}, do_compression=True)
            smooth = ndimage.gaussian_filter(fix.astype(np.float64), 0.03 * shape[1])
            Image.fromarray(to_8bit(smooth), "L").save(ann / "maps" / f"eyeMap_{name}.jpg")
            for fold, videos in TESTS.items():
                if video in videos:
                    out = pred / f"split{fold}_results" / DATASET.lower() / video
                    out.mkdir(parents=True, exist_ok=True)
                    sal = to_8bit(prediction(frames, k, size, fold))
                    Image.fromarray(sal, "L").save(out / f"img_{name}.jpg", quality=95)
    lists = data / "fold_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for fold, videos in TESTS.items():
        for split, names in (("test", videos), ("train", [v for v in VIDEOS if v not in videos])):
            lines = [f"{v} {counts[v]} {rates[v]:.4f}" for v in names]
            (lists / f"{DATASET}_list_{split}_{fold}_fps.txt").write_text("\n".join(lines) + "\n")
    return {
        "frames": counts,
        "tests": {str(k): v for k, v in TESTS.items()},
        "seed": seed,
        "observers": observers,
    }


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import wave

    peak = float(np.abs(samples).max()) or 1.0
    pcm = (samples / peak * 32000).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------------------
# the scripts


def export_scripts(repos: dict[str, str], tmp: Path) -> dict[str, str]:
    """The scripts into ``tmp/vinet`` and ``tmp/stavis`` (each with its metric folder
    under the name its ``addpath`` uses); the repositories' HEAD commits."""

    def show(repo: str, path: str) -> bytes:
        return subprocess.run(
            ["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, check=True
        ).stdout

    for key, files, metric_dir in (
        ("vinet", VINET_FILES, "code_for_Metrics"),
        ("stavis", STAVIS_FILES, "code_forMetrics"),
    ):
        (tmp / key / metric_dir).mkdir(parents=True)
        for repo_key, path in files:
            (tmp / key / Path(path).name).write_bytes(show(repos[repo_key], path))
        for name in METRIC_FILES:
            text = show(repos["vinet"], f"code_for_Metrics/{name}.m")
            (tmp / key / metric_dir / f"{name}.m").write_bytes(text)
    return {
        key: subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for key, repo in repos.items()
    }


def octave(cwd: Path, code: str) -> str:
    """Run ``code`` in a fresh Octave (image package loaded) in ``cwd``; its stdout."""
    done = subprocess.run(
        ["octave", "--no-gui", "--no-window-system", "-q", "--eval",
         f"pkg load image; format long; save_default_options('-7'); {code}"],
        capture_output=True, text=True, cwd=cwd,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"octave failed ({done.returncode}) on {code}:\n{done.stderr[-2000:]}")
    return done.stdout


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def run_vinet(tmp: Path, folder: Path) -> list[dict]:
    """ViNet's ``eval_diem.m`` once per fold (its test list, that fold's predictions); the
    per-video values it prints (4 decimals)."""
    rows = []
    data = folder / "data"
    for fold, videos in TESTS.items():
        out = octave(
            tmp / "vinet",
            f"eval_diem({_q(folder / 'pred' / f'split{fold}_results' / DATASET.lower())}, "
            f"{_q(data / 'annotations' / DATASET)}, "
            f"{_q(data / 'fold_lists' / f'{DATASET}_list_test_{fold}_fps.txt')}, 'false')",
        )
        values = re.findall(r"Metric Value\s*\n\s*(\S+)\s*\n\s*(\S+)\s*\n\s*(\S+)\s*\n"
                            r"\s*(\S+)\s*\n\s*(\S+)", out)  # fmt: skip
        if len(values) != len(videos):
            raise RuntimeError(f"eval_diem printed {len(values)} videos, expected {videos}:\n{out}")
        for video, numbers in zip(videos, values, strict=True):
            rows.append(
                {
                    "fold": fold,
                    "video": video,
                    **dict(zip(METRICS, map(float, numbers), strict=True)),
                }
            )
    return rows


def run_stavis(tmp: Path, folder: Path) -> tuple[list[dict], dict[str, float]]:
    """STAViS' ``eval_avad.m`` once per (fold, video) as its ``create_qsub`` jobs run it,
    then ``compute_all_avad.m``; the per-video values it saved and the final means."""
    import scipy.io

    data, res = folder / "data", folder / "stavis_results"
    rows = []
    for fold, videos in TESTS.items():
        for i, video in enumerate(videos, start=1):
            octave(
                tmp / "stavis",
                f"eval_avad({_q(folder / 'pred')}, {_q(data)}, {_q(res)}, '{i}', '{fold}')",
            )
            saved = scipy.io.loadmat(
                res / f"avad_results_all_split{fold}" / video,
                squeeze_me=True,  # Octave adds no .mat
            )["metrics_avg_video"]
            rows.append(
                {"fold": fold, "video": video}
                | {m: float(saved[f][()]) for m, f in STAVIS_FIELDS.items()}
            )
    octave(tmp / "stavis", f"compute_all_avad({_q(res)}, {_q(data)})")
    text = (res / "final_results_AVAD.txt").read_text()
    labels = {"CC": "cc", "Similarity": "sim", "NSS": "nss", "AUC_Judd": "auc_j",
              "AUC_shuffled": "sauc"}  # fmt: skip
    final = {labels[k]: float(v) for k, v in re.findall(r"^(\w+): (\S+)$", text, re.M)}
    return rows, final


def run_scripts(folder: Path, repos: dict[str, str] | None = None) -> dict:
    """Both protocols' scripts on the folder: ``{"vinet": rows, "stavis": rows,
    "stavis_final": {...}, "commits": {...}, "seconds": {...}}``."""
    repos = repos or ref.script_repos()
    with tempfile.TemporaryDirectory(prefix="avrsp-scripts-") as name:
        tmp = Path(name)
        commits = export_scripts(repos, tmp)
        start = time.perf_counter()
        vinet = run_vinet(tmp, folder)
        middle = time.perf_counter()
        stavis, final = run_stavis(tmp, folder)
        end = time.perf_counter()
    return {
        "vinet": vinet,
        "stavis": stavis,
        "stavis_final": final,
        "commits": commits,
        "seconds": {"vinet": middle - start, "stavis": end - middle},
    }


# ---------------------------------------------------------------------------------------
# ours


def evaluate_command(folder: Path, protocol: str, out: Path, seed: int = 0) -> list[str]:
    """``avrsp evaluate --predictions`` on the folder, one prediction folder per fold."""
    preds = [f"{k}={folder / 'pred' / f'split{k}_results'}" for k in TESTS]
    return [
        sys.executable, "-m", "workflows.cli", "evaluate",
        "--source", f"stavis:{folder / 'data'}", "--predictions", *preds,
        "--protocol", protocol, "--workers", "0", "--no-mlflow", "--no-baseline", "--out", str(out),
        "--overwrite", "--seed", str(seed),
    ]  # fmt: skip


#: videos.csv's column of each metric
CSV_COLUMNS = {"cc": "cc", "sim": "sim", "nss": "nss", "auc_j": "auc_judd", "sauc": "auc_shuffled"}


def run_ours(
    folder: Path, protocol: str, out: Path, seed: int = 0
) -> tuple[list[dict], dict[str, float]]:
    """Our per-(fold, video) values (``videos.csv``'s saved-maps row) and their mean over
    every (fold, video), which the table shows rounded."""
    done = subprocess.run(
        evaluate_command(folder, protocol, out, seed), capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"avrsp evaluate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(out / "videos.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["row"].startswith("saved maps")]
    ours = [
        {"fold": int(r["fold"]), "video": r["video"]}
        | {m: float(r[c]) for m, c in CSV_COLUMNS.items()}
        for r in rows
    ]
    overall = {m: float(np.mean([r[m] for r in ours])) for m in METRICS}
    return ours, overall


def differences(ours: list[dict], scripts: list[dict]) -> dict[str, float]:
    """The largest |ours − script| per metric over (fold, video)."""
    mine = {(r["fold"], r["video"]): r for r in ours}
    if set(mine) != {(r["fold"], r["video"]) for r in scripts}:
        raise AssertionError(f"different videos: {sorted(mine)} vs {scripts}")
    return {m: max(abs(mine[(r["fold"], r["video"])][m] - r[m]) for r in scripts) for m in METRICS}


def _versions() -> dict[str, str]:
    found = ref._versions()
    found["python"] = platform.python_version()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, required=True, help="folder with the clips")
    parser.add_argument("--frames", type=int, default=12, help="frames per video")
    parser.add_argument("--folder", type=Path, help="build here (default: a temporary one)")
    parser.add_argument("--observers", type=int, default=OBSERVERS, help="gaze points per frame")
    parser.add_argument("--speed", action="store_true", help="also time both, frames/s")
    parser.add_argument("--write-reference", action="store_true", help=f"write {REFERENCE}")
    args = parser.parse_args(argv)
    repos = ref.script_repos()
    why = ref.missing(repos)
    if why:
        print(f"cannot run the scripts: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="avrsp-real-") as name:
        folder = args.folder or Path(name)
        case = build(args.media, folder, args.frames, observers=args.observers)
        frames = sum(case["frames"][v] for vs in TESTS.values() for v in vs)
        print(f"built {folder}: {case['frames']} frames, {frames} (fold, video) frames")
        scripts = run_scripts(folder, repos)
        report: dict = {"case": case, "frames_scored": frames}
        for protocol in ("vinet", "stavis"):
            start = time.perf_counter()
            ours, overall = run_ours(folder, protocol, folder / f"ours_{protocol}")
            seconds = time.perf_counter() - start
            diff = differences(ours, scripts[protocol])
            report[protocol] = {"ours": ours, "ours_overall": overall, "max_diff": diff}
            print(f"{protocol}: largest |ours - script| per video: "
                  + ", ".join(f"{m} {v:.2e}" for m, v in diff.items()))  # fmt: skip
            if args.speed:
                octave_s = scripts["seconds"][protocol]
                report[protocol]["speed"] = {
                    "frames": frames,
                    "octave_s": round(octave_s, 2),
                    "ours_s": round(seconds, 2),
                    "octave_fps": round(frames / octave_s, 2),
                    "ours_fps": round(frames / seconds, 2),
                    "ratio": round(octave_s / seconds, 1),
                }
                print(f"{protocol}: {report[protocol]['speed']}")
        print(f"stavis compute_all_avad: {scripts['stavis_final']}; "
              f"ours: {report['stavis']['ours_overall']}")  # fmt: skip
        if args.write_reference:
            # shuffled AUC draws its splits at random: its spread per video, over our seeds
            for protocol in ("vinet", "stavis"):
                draws = [
                    run_ours(folder, protocol, folder / f"seed{s}_{protocol}", seed=s)[0]
                    for s in range(1, 6)
                ]
                for row in scripts[protocol]:
                    key = (row["fold"], row["video"])
                    values = [r["sauc"] for d in draws for r in d if (r["fold"], r["video"]) == key]
                    row["sauc_sd"] = float(np.std(values, ddof=1))
            command = "benchmarks/octave_scripts.py " + " ".join(
                shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
            )
            stored = {
                "command": ".venv/bin/python " + command.strip(),
                **_versions(),
                "scripts": {
                    k: {"repo": repos[k], "commit": c} for k, c in scripts["commits"].items()
                },
                "case": case,
                "vinet": scripts["vinet"],
                "stavis": scripts["stavis"],
                "stavis_final": scripts["stavis_final"],
            }
            REFERENCE.write_text(json.dumps(stored, indent=1) + "\n")
            print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
