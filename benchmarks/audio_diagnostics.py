"""Why does (or doesn't) the AV model use the audio? Diagnostics for the learning check.

The learning check (``benchmarks/learns_audio.py``, docs/RESULTS.md) trains through Ray
Train and takes half an hour on two cores. These diagnostics answer narrower questions in
one process, on segment shards of the synthetic dataset held in memory (``avrsp synth``
then ``avrsp preprocess --preset tiny``), each in minutes:

``ceiling``  CC of hand-made maps against the test targets: a Gaussian blob on every
             object (the best a model that cannot tell which object sounds can aim for)
             and on the sounding object only (what the audio allows).
``probe``    SoundNet-8 from scratch + a linear layer, trained to name the sounding class
             (or "none") from a window's audio buffer: do the audio buffers carry it?
``train``    the network of a preset trained in memory (no Ray; each step is the
             training loop's ``train_step``: AdamW, the loss of eq. 19, gradient
             clipping; random flips), with the CC per condition on the test windows
             every ``--eval-every`` steps; ``--audio 0 1`` trains V and AV side by side
             on the same batches; ``--oracle`` replaces SoundNet's output with the
             sounding class, one-hot, to test the fusion and decoder alone; ``--device
             cuda`` keeps the data on the GPU and runs the model under bf16 autocast
             (``benchmarks/gpu_learning.sh``).

    python benchmarks/audio_diagnostics.py ceiling --data SHARDS --synth SYNTH
    python benchmarks/audio_diagnostics.py probe --data SHARDS --synth SYNTH
    python benchmarks/audio_diagnostics.py train --data SHARDS --synth SYNTH --audio 0 1 \\
        --steps 300 [--oracle] [--set model.output_bias=0] [--device cuda --batch 32]

SHARDS is the ``avrsp preprocess`` output, SYNTH the ``avrsp synth`` folder. CC here is
per window at model resolution, averaged per clip and then over the clips of a condition
(as ``workflows.evaluate.evaluate_windows`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from avrsp.config import AVRSPConfig, preset
from avrsp.metrics import cc
from avrsp.model import build_model
from avrsp.model.soundnet import OUT_CHANNELS, SoundNet8
from preprocessing.synthetic import CLASSES, sounding_at
from workflows.data import decode_rows, split_files
from workflows.loop import TrainConfig, make_optimizer, train_step

CONDITIONS = ("relevant", "irrelevant", "silent")
NAMES = [c.name for c in CLASSES]


def load_split(
    data: Path,
    synth: Path,
    split: str,
    size: tuple[int, int],
    max_clips: int | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Decoded windows of a split with their ground truth: ``frames`` uint8 [N, T, H, W, 3],
    ``audio`` [N, S], ``target`` [N, H, W], ``label`` (sounding class index at the last
    frame, −1 for none), ``cond``, ``video``, ``last_frame``. ``max_clips``: only the
    windows of the first that many clips of the split (by name)."""
    meta = json.loads((synth / "synthetic.json").read_text())
    clips = {c["clip"]: c for c in meta["clips"]}
    keep = sorted(c for c, v in clips.items() if v["split"] == split)[:max_clips]
    keep_set = set(keep)
    files = split_files(data, split)
    if not files:
        raise SystemExit(f"{data}: no {split} windows")
    # Decoded file by file, in ``workers`` processes, into preallocated arrays: a list of
    # per-row arrays first would need twice the memory (10,000 tiny windows are 1.8 GB of
    # frames).
    arrays: dict[str, np.ndarray] = {}
    meta_rows: list[dict[str, Any]] = []
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    n = 0
    task = partial(_decode_file, keep=keep_set, size=size)
    with contextlib.ExitStack() as stack:
        if workers > 1:  # spawned workers import torch: worth it for big splits only
            spawn = multiprocessing.get_context("spawn")
            decoded_files = stack.enter_context(ProcessPoolExecutor(workers, mp_context=spawn)).map(
                task, files
            )
        else:
            decoded_files = map(task, files)
        for rows, decoded in decoded_files:
            for row, d in zip(rows, decoded, strict=True):
                if not arrays:
                    arrays = {
                        k: np.empty((total, *d[k].shape), d[k].dtype)
                        for k in ("frames", "audio", "target")
                    }
                for k in arrays:
                    arrays[k][n] = d[k]
                meta_rows.append({k: row[k] for k in ("video", "last_frame")})
                n += 1
    if not n:
        raise SystemExit(f"{data}: no {split} windows")
    labels = []
    for r in meta_rows:
        clip = clips[r["video"]]
        on = sounding_at(clip["sounding"], r["last_frame"])
        labels.append(-1 if on is None else NAMES.index(clip["objects"][on]["class"]))
    rows = meta_rows
    return {
        "frames": arrays["frames"][:n],
        "audio": arrays["audio"][:n],
        "target": arrays["target"][:n],
        "label": np.array(labels),
        "cond": np.array([clips[r["video"]]["condition"] for r in rows]),
        "video": np.array([r["video"] for r in rows]),
        "last_frame": np.array([r["last_frame"] for r in rows]),
        "clips": clips,
        "native": (int(meta["height"]), int(meta["width"])),
    }


def _decode_file(
    path: Path, keep: set[str], size: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[dict[str, np.ndarray]]]:
    """The rows of one shard file whose video is in ``keep``, stored and decoded. The audio
    column goes to NumPy in one piece (a list of Python floats per row is slow)."""
    table = pq.read_table(path)
    table = table.filter(pc.is_in(table.column("video"), pa.array(sorted(keep))))
    if not table.num_rows:
        return [], []
    audio = pc.list_flatten(table.column("audio")).to_numpy().reshape(table.num_rows, -1)
    rows = table.drop_columns(["audio"]).to_pylist()
    for row, wave in zip(rows, audio, strict=True):
        row["audio"] = wave
    return rows, decode_rows(rows, size)


def per_condition(values: np.ndarray, split: dict[str, Any]) -> dict[str, float]:
    """Per-window values → mean per clip → mean over the clips of each condition."""
    out = {}
    for cond in CONDITIONS:
        sel = split["cond"] == cond
        videos = np.unique(split["video"][sel])
        if len(videos):
            means = [values[sel & (split["video"] == v)].mean() for v in videos]
            out[cond] = round(float(np.mean(means)), 4)
    return out


def correlation(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """CC per map (:func:`avrsp.metrics.cc`), ``[N, H, W]`` × ``[N, H, W]`` → ``[N]``."""
    return np.array([cc(p, g) for p, g in zip(pred, target, strict=True)])


def ceiling(args: argparse.Namespace, cfg: AVRSPConfig) -> None:
    size = (cfg.input.height, cfg.input.width)
    test = load_split(args.data, args.synth, "test", size, workers=args.workers)
    h, w = size
    nh, nw = test["native"]
    yy, xx = np.mgrid[0:h, 0:w] + 0.5

    def blob(points: list[list[float]], sigma: float) -> np.ndarray:
        out = np.zeros(size)
        for x, y in points:
            out += np.exp(-((xx - x * w / nw) ** 2 + (yy - y * h / nh) ** 2) / (2 * sigma**2))
        return out

    for sigma in args.sigma:
        every, sounding = [], []
        for video, frame in zip(test["video"], test["last_frame"], strict=True):
            clip = test["clips"][video]
            objects = [o["track"][frame] for o in clip["objects"]]
            on = sounding_at(clip["sounding"], frame)
            every.append(blob(objects, sigma))
            sounding.append(every[-1] if on is None else blob([objects[on]], sigma))
        cc_every = per_condition(correlation(np.stack(every), test["target"]), test)
        cc_sounding = per_condition(correlation(np.stack(sounding), test["target"]), test)
        print(f"sigma {sigma} px: every object {cc_every}; sounding object {cc_sounding}")


def probe(args: argparse.Namespace, cfg: AVRSPConfig) -> None:
    size = (cfg.input.height, cfg.input.width)
    train, test = (
        load_split(args.data, args.synth, s, size, workers=args.workers) for s in ("train", "test")
    )
    rng = np.random.default_rng(args.seed)
    net = SoundNet8()
    head = torch.nn.Linear(OUT_CHANNELS, len(NAMES) + 1)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-5)
    scale = cfg.model.audio_scale

    def logits(audio: np.ndarray) -> torch.Tensor:
        return head(net(torch.from_numpy(audio) * scale).mean(-1))

    pool = np.nonzero(train["cond"] != "silent")[0]
    with_sound = test["cond"] != "silent"
    for step in range(1, args.steps + 1):
        idx = rng.choice(pool, args.batch)
        net.train()
        loss = torch.nn.functional.cross_entropy(
            logits(train["audio"][idx]), torch.from_numpy(train["label"][idx] + 1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0:
            net.eval()
            with torch.no_grad():
                guess = logits(test["audio"][with_sound]).argmax(1).numpy() - 1
            hit = (guess == test["label"][with_sound]).astype(float)
            print(f"step {step}: loss {loss.item():.3f}, test accuracy {hit.mean():.3f} "
                  f"(relevant windows {hit[test['cond'][with_sound] == 'relevant'].mean():.3f})",
                  flush=True)  # fmt: skip


class OracleAudio(torch.nn.Module):
    """Stands in for SoundNet-8: the sounding class one-hot (entries 1–4; entry 0 = sound
    but no class, e.g. music), read from the first samples of the "waveform"."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        feats = torch.zeros(waveform.shape[0], OUT_CHANNELS, 2, device=waveform.device)
        feats[:, : len(NAMES) + 1] = (waveform[:, : len(NAMES) + 1] / self.scale)[:, :, None]
        return feats


def train(args: argparse.Namespace, cfg: AVRSPConfig) -> None:
    """Train one model per ``--audio`` value (V = 0, AV = 1) in lockstep, on the same
    batches and flips, and score them on the same test windows."""
    size = (cfg.input.height, cfg.input.width)
    started = time.perf_counter()
    tr = load_split(args.data, args.synth, "train", size, workers=args.workers)
    te = load_split(args.data, args.synth, "test", size, args.test_clips, args.workers)
    print(f"loaded {len(tr['label'])} train / {len(te['label'])} test windows in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    # On CUDA the whole split lives on the GPU (uint8 frames): batches are gathered there.
    arrays = {
        name: {k: torch.from_numpy(d[k]).to(device) for k in ("frames", "audio", "target")}
        for name, d in (("train", tr), ("test", te))
    }
    variants = {}
    for use_audio in args.audio:
        vcfg = cfg.with_overrides(**{"model.use_audio": bool(use_audio)})
        # The training loop's own step (workflows.loop.train_step) and optimizer.
        run = TrainConfig.model_validate(
            {"preset": args.preset, "network": json.loads(vcfg.to_json()), "lr": args.lr,
             "weight_decay": 1e-5, "clip_grad_norm": 1.0}
        )  # fmt: skip
        torch.manual_seed(args.seed)
        model = build_model(vcfg).to(device).train()
        if args.oracle and use_audio:
            model.audio = OracleAudio(cfg.model.audio_scale)
        variants["AV" if use_audio else "V"] = (model, make_optimizer(model, run), run)
    rng = np.random.default_rng(args.seed)

    def batch(split: str, idx: np.ndarray, flip: np.ndarray | None = None) -> dict[str, Any]:
        """Rows ``idx`` as the training loop receives them: uint8 frames ``[B, T, H, W, 3]``,
        audio, target (``--oracle``: the class one-hot as audio); ``flip``: rows mirrored."""
        d, a = (tr, arrays["train"]) if split == "train" else (te, arrays["test"])
        at = torch.from_numpy(idx).to(device)
        out = {k: a[k][at] for k in ("frames", "audio", "target")}
        if flip is not None and flip.any():
            f = torch.from_numpy(flip).to(device)
            out["frames"][f] = out["frames"][f].flip(-2)
            out["target"][f] = out["target"][f].flip(-1)
        if args.oracle:
            out["audio"].zero_()
            for i, j in enumerate(idx):
                if d["cond"][j] != "silent":
                    out["audio"][i, d["label"][j] + 1] = 1.0
        return out

    def evaluate(model: torch.nn.Module, use_audio: bool) -> dict[str, float]:
        model.eval()
        preds = []
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            for start in range(0, len(te["label"]), args.eval_batch):
                idx = np.arange(start, min(start + args.eval_batch, len(te["label"])))
                rows = batch("test", idx)
                frames = rows["frames"].permute(0, 4, 1, 2, 3).float() / 255.0
                preds.append(
                    model(frames, rows["audio"] if use_audio else None).float().cpu().numpy()
                )
        model.train()
        return per_condition(correlation(np.concatenate(preds), te["target"]), te)

    losses: dict[str, list[float]] = {name: [] for name in variants}
    history = []
    started = time.perf_counter()
    step = 0
    while step < args.steps:
        step += 1
        idx = rng.choice(len(tr["label"]), args.batch)
        flip = rng.random(args.batch) < 0.5
        for name, (model, opt, run) in variants.items():
            loss, _, _ = train_step(model, opt, batch("train", idx, flip), run, device)
            losses[name].append(loss)
        out_of_time = args.max_seconds and time.perf_counter() - started > args.max_seconds
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            took = time.perf_counter() - started
            entry = {"step": step, "seconds": round(took, 1)}
            for name, (model, _, run) in variants.items():
                entry[name] = {
                    "train_loss": round(float(np.mean(losses[name][-args.eval_every :])), 4),
                    "test_cc": evaluate(model, run.network.model.use_audio),
                }
            history.append(entry)
            print(json.dumps(entry), flush=True)
            if out_of_time:
                print(f"stopped at step {step}: --max-seconds {args.max_seconds} reached")
                break
    if args.json_out:
        args.json_out.write_text(json.dumps({"args": vars(args), "history": history}, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("ceiling", "probe", "train"))
    parser.add_argument("--data", type=Path, required=True, help="avrsp preprocess output")
    parser.add_argument("--synth", type=Path, required=True, help="avrsp synth folder")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="config override, e.g. model.output_bias=0")  # fmt: skip
    parser.add_argument("--audio", type=int, choices=(0, 1), nargs="+", default=[1],
                        help="train: AV (1) or V (0); both (0 1) train in lockstep")  # fmt: skip
    parser.add_argument("--oracle", action="store_true", help="train: one-hot class as audio")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--test-clips", type=int, help="train: score the first N held-out clips")
    parser.add_argument("--sigma", type=float, nargs="+", default=[3.0, 4.5, 6.0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding the shards")
    parser.add_argument("--device", default="cpu", help="train: e.g. cuda (bf16 autocast)")
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, help="train: stop (and score) after this")
    parser.add_argument("--json-out", type=Path, help="train: write the score history here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = preset(args.preset).with_overrides(**overrides)
    {"ceiling": ceiling, "probe": probe, "train": train}[args.what](args, cfg)


if __name__ == "__main__":
    main()
