"""Reference values for ``avrsp.metrics.protocols`` from the benchmarks' own MATLAB scripts.

Runs ViNet's and STAViS' evaluation functions in GNU Octave (with the ``image`` package)
on a small deterministic test case and stores their per-frame and per-video values::

    .venv/bin/python benchmarks/octave_reference.py            # case + reference.json
    .venv/bin/python benchmarks/octave_reference.py --seeds 8  # more seeds for the spread

(a) ``--write-case`` (default when the case folder has no ``case.json``) writes the case
to ``tests/data/protocols/``: two videos of 4 frames, ground truth 45×60 (continuous maps
as 8-bit PNG ``eyeMap_0000k.png``, binary fixation maps ``fixMap_0000k.mat`` holding a
logical ``eyeMap``, as the scripts load them), predictions as 8-bit PNG
``pred_0000k.png`` stored as ``avrsp predict`` stores maps: video ``enlarge`` at 28×37
(resized up), video ``shrink`` at 90×180 (resized down by 1/2 and 1/3: integer factors,
where Octave's ``imresize`` equals MATLAB's, see below). The last frame of ``shrink`` has
no fixations and an all-zero map (NaN handling). Made from a seeded RNG with smooth blobs.

(b) It exports the scripts' ``.m`` files from their git checkouts into a temporary folder
(``git -C REPO show HEAD:path``; never into this repository), writes a small driver of
ours there that calls them the way the scripts' per-frame loop does (``im2double(imread)``,
first channel, STAViS' ``postprocessMap(…, 2)``, ``imresize`` to the ground truth's size,
``createShuffmap1`` and the current frame's fixations removed, ``CC``, ``similarity``,
``NSS``, ``AUC_Judd``, ``AUC_shuffled``; NaN dropped per metric, mean per video, mean over
videos), and runs it once per protocol with every seed (``rand('state', seed)`` before each
random metric). ``reference.json`` gets the values, the spread of the two random metrics
over the seeds, the command, Octave's and the image package's versions and the scripts'
commits.

Where Octave is not MATLAB: the image package's ``imresize`` (2.14) does not renormalise
its antialiasing weights when shrinking, MATLAB does; at integer shrink factors both sums
are exactly 1 and the two agree to 1e-15 (measured), at other factors they differ by up
to 2 % of the map on noise. Hence the ``shrink`` video's integer factors. Octave's random
streams differ from MATLAB's, which only matters through the spread over seeds.

The scripts are found with ``--vinet`` / ``--stavis`` or ``$AVRSP_VINET_SCRIPTS`` /
``$AVRSP_STAVIS_SCRIPTS`` (a git repository or its ``.git`` folder; default: the mirrors
under ``/work/.mirror``). STAViS ships no metric files (its scripts ``addpath`` a
``code_forMetrics`` folder that is not in the repository), so both protocols use ViNet's
``code_for_Metrics`` copy of the MIT benchmark's files.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE_DIR = ROOT / "tests" / "data" / "protocols"
DEFAULT_VINET = "/work/.mirror/samyak0210+ViNet/repo"
DEFAULT_STAVIS = "/work/.mirror/atsiami+STAViS/repo"
PROTOCOLS = ("vinet", "stavis")
GT_SIZE = (45, 60)
#: video name -> prediction size (rows, columns)
VIDEOS = {"enlarge": (28, 37), "shrink": (90, 180)}
FRAMES = 4

#: The files each protocol needs, ``(repo option, path in the repo, folder in the temp dir)``.
SCRIPT_FILES = {
    "metrics": [
        ("vinet", f"code_for_Metrics/{name}.m", "metrics")
        for name in ("CC", "similarity", "NSS", "AUC_Judd", "AUC_shuffled")
    ],
    "vinet": [("vinet", "createShuffmap1.m", "vinet")],
    "stavis": [
        ("stavis", f"eval_code/{name}.m", "stavis")
        for name in ("createShuffmap1", "postprocessMap", "normalizeImage1")
    ],
}

# Our driver (Octave). It only calls the scripts' functions, in the order their per-frame
# loop does, and restates their means (NaN dropped per metric, mean per video).
DRIVER = r"""
function avrsp_protocol_reference(case_dir, list_file, protocol, out_frames, out_videos, seeds)
  pkg load image;
  fid = fopen(list_file, 'r');
  names = {};
  counts = [];
  line = fgetl(fid);
  while ischar(line)
    parts = strsplit(strtrim(line));
    names{end + 1} = parts{1};
    counts(end + 1) = str2double(parts{2});
    line = fgetl(fid);
  end
  fclose(fid);
  nseed = numel(seeds);
  ff = fopen(out_frames, 'w');
  fv = fopen(out_videos, 'w');
  for v = 1:numel(names)
    folder = fullfile(case_dir, names{v});
    n = counts(v);
    fixations = cell(1, n);
    for j = 1:n
      fixations{j} = load(fullfile(folder, sprintf('fixMap_%05d.mat', j)));
    end
    union_map = createShuffmap1(fixations);
    scores = nan(n, 3 + 2 * nseed);
    for j = 1:n
      pred = im2double(imread(fullfile(folder, sprintf('pred_%05d.png', j))));
      pred = pred(:, :, 1);
      gt = im2double(imread(fullfile(folder, sprintf('eyeMap_%05d.png', j))));
      if strcmp(protocol, 'stavis')
        pred = postprocessMap(pred, 2);
      end
      sal = imresize(pred, size(gt));
      fix = double(fixations{j}.eyeMap);
      other = double(union_map);
      other(fix == 1) = 0;
      scores(j, 1) = CC(sal, gt);
      scores(j, 2) = similarity(sal, gt);
      scores(j, 3) = NSS(sal, fix);
      for k = 1:nseed
        rand('state', seeds(k));
        scores(j, 3 + k) = AUC_Judd(sal, fix);
        rand('state', seeds(k));
        scores(j, 3 + nseed + k) = AUC_shuffled(sal, fix, other);
      end
      fprintf(ff, '%s,%d', names{v}, j);
      fprintf(ff, ',%.17g', scores(j, :));
      fprintf(ff, '\n');
    end
    fprintf(fv, '%s,%d', names{v}, n);
    for c = 1:size(scores, 2)
      column = scores(:, c);
      column(isnan(column)) = [];
      fprintf(fv, ',%.17g', mean(column));
    end
    fprintf(fv, '\n');
  end
  fclose(ff);
  fclose(fv);
end
"""


# ---------------------------------------------------------------------------------------
# (a) the test case


def _blobs(shape: tuple[int, int], centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Sum of isotropic Gaussians at normalised centres ``[k, 2]`` (row, col), widths ``[k]``."""
    rows = (np.arange(shape[0]) + 0.5) / shape[0]
    cols = (np.arange(shape[1]) + 0.5) / shape[1]
    out = np.zeros(shape)
    for (r, c), w in zip(centres, widths, strict=True):
        out += np.exp(-((rows[:, None] - r) ** 2 + (cols[None, :] - c) ** 2) / (2 * w * w))
    return out


def make_case(folder: Path, seed: int = 0) -> dict:
    """Write the case (module docstring) into ``folder``; return its description."""
    from PIL import Image
    from scipy import io as sio
    from scipy import ndimage

    from avrsp.metrics.protocols import to_8bit

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for name, pred_size in VIDEOS.items():
        sub = folder / name
        sub.mkdir(exist_ok=True)
        centres = rng.uniform(0.2, 0.8, size=(3, 2))
        for j in range(1, FRAMES + 1):
            centres = np.clip(centres + rng.normal(0, 0.04, centres.shape), 0.1, 0.9)
            fix = np.zeros(GT_SIZE, dtype=bool)
            empty = name == "shrink" and j == FRAMES
            if not empty:
                pts = np.concatenate(
                    [rng.normal(c, 0.06, size=(8, 2)) for c in centres]
                    + [rng.uniform(0, 1, size=(3, 2))]
                )
                pts = np.clip(pts, 0, 0.999) * np.array(GT_SIZE)
                fix[pts[:, 0].astype(int), pts[:, 1].astype(int)] = True
            gt = ndimage.gaussian_filter(fix.astype(np.float64), 3.0, mode="constant")
            Image.fromarray(to_8bit(gt), mode="L").save(sub / f"eyeMap_{j:05d}.png")
            sio.savemat(sub / f"fixMap_{j:05d}.mat", {"eyeMap": fix}, do_compression=True)
            guess = np.clip(centres + rng.normal(0, 0.05, centres.shape), 0, 1)
            pred = _blobs(pred_size, guess, rng.uniform(0.06, 0.15, 3))
            pred += 0.3 * _blobs(pred_size, np.array([[0.5, 0.5]]), np.array([0.25]))
            pred += 0.02 * rng.random(pred_size)
            Image.fromarray(to_8bit(pred), mode="L").save(sub / f"pred_{j:05d}.png")
        videos.append({"name": name, "frames": FRAMES, "pred_size": list(pred_size)})
    case = {
        "about": "benchmarks/octave_reference.py --write-case (seeded; see its docstring)",
        "seed": seed,
        "gt_size": list(GT_SIZE),
        "videos": videos,
    }
    (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    return case


def load_case(folder: Path = CASE_DIR) -> dict:
    """The case as arrays: ``{name: {"pred8": [...], "gt": [...], "fix": [N, H, W]}}``."""
    from PIL import Image
    from scipy import io as sio

    case = json.loads((folder / "case.json").read_text())
    out = {}
    for video in case["videos"]:
        sub = folder / video["name"]
        frames = range(1, video["frames"] + 1)
        out[video["name"]] = {
            "pred8": [np.asarray(Image.open(sub / f"pred_{j:05d}.png")) for j in frames],
            "gt": [np.asarray(Image.open(sub / f"eyeMap_{j:05d}.png")) for j in frames],
            "fix": np.stack([sio.loadmat(sub / f"fixMap_{j:05d}.mat")["eyeMap"] for j in frames]),
        }
    return out


# ---------------------------------------------------------------------------------------
# (b) the scripts in Octave


def script_repos(vinet: str | None = None, stavis: str | None = None) -> dict[str, str]:
    """Where the scripts' git repositories are: options, then environment, then defaults."""
    return {
        "vinet": vinet or os.environ.get("AVRSP_VINET_SCRIPTS") or DEFAULT_VINET,
        "stavis": stavis or os.environ.get("AVRSP_STAVIS_SCRIPTS") or DEFAULT_STAVIS,
    }


def missing(repos: dict[str, str]) -> str | None:
    """Why the Octave run cannot happen here, or None."""
    if shutil.which("octave") is None:
        return "octave is not installed"
    for key, repo in repos.items():
        for _, path, _ in SCRIPT_FILES["metrics" if key == "vinet" else key]:
            probe = subprocess.run(
                ["git", "-C", repo, "cat-file", "-e", f"HEAD:{path}"], capture_output=True
            )
            if probe.returncode != 0:
                return f"{key} scripts: {repo} has no {path}"
    probe = subprocess.run(
        ["octave", "--no-gui", "-q", "--eval", "pkg load image"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"octave cannot load the image package: {probe.stderr.strip()[-200:]}"
    return None


def _export(repos: dict[str, str], tmp: Path) -> dict[str, str]:
    """Write the scripts' files into ``tmp/<folder>/``; return each repo's HEAD commit."""
    commits = {}
    for key, repo in repos.items():
        commits[key] = subprocess.run(
            ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    for files in SCRIPT_FILES.values():
        for key, path, sub in files:
            (tmp / sub).mkdir(exist_ok=True)
            text = subprocess.run(
                ["git", "-C", repos[key], "show", f"HEAD:{path}"],
                capture_output=True,
                check=True,
            ).stdout
            (tmp / sub / Path(path).name).write_bytes(text)
    return commits


def _octave(tmp: Path, paths: list[Path], call: str) -> None:
    code = "".join(f"addpath('{p}'); " for p in paths) + call
    done = subprocess.run(
        ["octave", "--no-gui", "--no-window-system", "-q", "--eval", code],
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    if done.returncode != 0:
        raise RuntimeError(f"octave failed ({done.returncode}): {done.stderr[-2000:]}")


def _num(text: str) -> float:
    return float(text)  # Octave writes NaN as "NaN", which float() reads


def run_octave(
    case_dir: Path = CASE_DIR,
    repos: dict[str, str] | None = None,
    seeds: tuple[int, ...] | list[int] = (1, 2, 3),
) -> dict:
    """Run the scripts on the case; per-frame and per-video values per protocol and seed."""
    repos = repos or script_repos()
    case = json.loads((case_dir / "case.json").read_text())
    seeds = list(seeds)
    out: dict = {"frames": [], "videos": []}
    with tempfile.TemporaryDirectory(prefix="avrsp-octave-") as name:
        tmp = Path(name)
        out["commits"] = _export(repos, tmp)
        (tmp / "avrsp_protocol_reference.m").write_text(DRIVER)
        listing = tmp / "videos.txt"
        listing.write_text("".join(f"{v['name']} {v['frames']}\n" for v in case["videos"]))
        seed_list = "[" + " ".join(str(s) for s in seeds) + "]"
        k = len(seeds)
        for protocol in PROTOCOLS:
            frames_csv, videos_csv = tmp / f"{protocol}_frames.csv", tmp / f"{protocol}_videos.csv"
            call = (
                f"avrsp_protocol_reference('{case_dir}', '{listing}', '{protocol}', "
                f"'{frames_csv}', '{videos_csv}', {seed_list});"
            )
            _octave(tmp, [tmp / "metrics", tmp / protocol], call)
            for kind, path in (("frames", frames_csv), ("videos", videos_csv)):
                for row in csv.reader(path.open()):
                    values = [_num(x) for x in row[2:]]
                    entry = {"protocol": protocol, "video": row[0]}
                    entry["frame" if kind == "frames" else "frames"] = int(row[1])
                    entry.update(cc=values[0], sim=values[1], nss=values[2])
                    entry["auc_j_runs"] = values[3 : 3 + k]
                    entry["sauc_runs"] = values[3 + k : 3 + 2 * k]
                    out[kind].append(entry)
    for entry in out["frames"] + out["videos"]:
        for metric in ("auc_j", "sauc"):
            runs = np.array(entry[f"{metric}_runs"], dtype=np.float64)
            entry[metric] = float(runs.mean())
            entry[f"{metric}_sd"] = float(runs.std(ddof=1)) if runs.size > 1 else math.nan
    for protocol in PROTOCOLS:  # mean over videos (one fold: STAViS' fold mean is the same)
        rows = [v for v in out["videos"] if v["protocol"] == protocol]
        overall = {"protocol": protocol}
        for metric in ("cc", "sim", "nss", "auc_j", "sauc"):
            overall[metric] = float(np.mean([v[metric] for v in rows]))
        out.setdefault("overall", []).append(overall)
    return out


def _versions() -> dict[str, str]:
    done = subprocess.run(
        [
            "octave",
            "--no-gui",
            "-q",
            "--eval",
            "disp(version()); pkg load image; p = pkg('list', 'image'); disp(p{1}.version)",
        ],
        capture_output=True,
        text=True,
    )
    octave, image = [*done.stdout.strip().splitlines(), "?", "?"][:2]
    cpu = platform.processor() or platform.machine()
    return {"octave": octave, "image_package": image, "machine": f"{platform.node()} ({cpu})"}


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case-dir", type=Path, default=CASE_DIR)
    parser.add_argument("--write-case", action="store_true", help="(re)write the test case")
    parser.add_argument("--vinet", help="ViNet's repository (default: $AVRSP_VINET_SCRIPTS)")
    parser.add_argument("--stavis", help="STAViS' repository (default: $AVRSP_STAVIS_SCRIPTS)")
    parser.add_argument("--seeds", type=int, default=5, help="Octave seeds per random metric")
    args = parser.parse_args(argv)
    if args.write_case or not (args.case_dir / "case.json").exists():
        make_case(args.case_dir)
    repos = script_repos(args.vinet, args.stavis)
    why = missing(repos)
    if why:
        print(f"cannot run the scripts: {why}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    ref = run_octave(args.case_dir, repos, list(range(1, args.seeds + 1)))
    seconds = time.perf_counter() - start
    command = "benchmarks/octave_reference.py " + " ".join(shlex.quote(a) for a in (argv or []))
    commits = ref.pop("commits")
    ref = {
        "command": (".venv/bin/python " + command.strip()),
        **_versions(),
        "seconds": round(seconds, 1),
        "seeds": list(range(1, args.seeds + 1)),
        "scripts": {k: {"repo": repos[k], "commit": commits[k]} for k in repos},
        **ref,
    }
    path = args.case_dir / "reference.json"
    path.write_text(json.dumps(_json_safe(ref), indent=1) + "\n")
    print(f"wrote {path} ({seconds:.1f} s in Octave)")
    for overall in ref["overall"]:
        print(overall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
