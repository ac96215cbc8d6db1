"""A sweep on Ray Tune: every trial is the training workflow, every trial an MLflow run
nested under the sweep's run, scored by the evaluation protocol at the end.

:func:`run_sweep` expands the space (:func:`tuning.spaces.expand`: no point runs twice),
opens the sweep's parent MLflow run (the space, then the tables and the best config), and
hands Tune one grid point per trial. Each trial (:func:`run_trial`) opens its child run
(tag ``mlflow.parentRunId``) and calls :func:`workflows.train.train` with the trial's
:class:`TrainConfig`, named after the trial (no timestamps), so a restarted trial resumes
its own checkpoints. The epochs reach Tune through ``TuneReportCallback`` in the trainer's
RunConfig (Train V2), from rank 0 of the trial's Ray Train workers (one or more: Ray
Train's in-process local mode runs no controller, hence no callbacks, and its
``ray.train.get_context`` refuses to run inside a Tune trial).

ASHA (grace period one epoch) stops weak trials of a plain space on the validation
metric; the named ablations run every row to the end (FIFO), since every row belongs in
the table.

A trial's outcome is its own file, ``trials/TRIAL/trial_result.json``, written atomically
after its model is exported and its MLflow run finished (by the trial), or when ASHA stops
it (by the driver). It is the one record the ranking, ``best_config.yaml`` and a resume
read. A re-run of the sweep keeps the trials whose file is usable and runs the others in a
fresh Tuner: each resumes its own training checkpoints and MLflow run. Tune's own state
(``NAME/tune/``) is never restored, so a sweep killed at any moment resumes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from avrsp.errors import AVRSPError, ConfigError, InputError, storage_error
from avrsp.io import made_folders_removed_on_error, write_json, write_text
from avrsp.tables import ResultsTable, canonical_metric
from preprocessing import storage
from tuning.spaces import Expansion, SearchSpace, Trial, expand
from tuning.tables import MEASURED, QUOTED, to_markdown, trials_markdown
from workflows.loop import StepHook, TrainConfig, absolute_weights, check_backbones

PLAN_FILE = "trials.json"
EVAL_DIR = "eval"
TRIALS_DIR = "trials"
RESULT_FILE = "trial_result.json"  # in trials/TRIAL/: the trial's outcome, written last
#: How ``--eval-source KIND:PATH`` scores a trial's model: as the scripts behind the quoted
#: rows (``avrsp evaluate --protocol``); part of the cached scores' stamp.
EVAL_PROTOCOL = "vinet"
TUNE_DIR = "tune"  # Ray Tune's state and logs of the latest call
SYNTH_ORDER = ("relevant", "irrelevant", "silent")


@dataclass
class SweepOptions:
    """How a sweep runs (the space says what it tries)."""

    storage: Path = Path("runs/tune")
    name: str | None = None  # default: the space's name
    eval_source: str | None = None  # KIND:PATH (the protocol) or windows[:SYNTH_DIR]
    eval_split: str = "test"
    eval_limit: int | None = None
    seeds: tuple[int, ...] = (0,)
    max_concurrent: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1  # Ray Train workers (>= 1: local mode cannot run under Tune)
    address: str | None = None
    scheduler: Literal["asha", "fifo"] | None = None  # default: fifo for ablations
    verbose: int = 0  # Tune's own status tables and the workers' output (0: one line a trial)


def _trial_lines(
    log: Callable[[str], None], total: int, run_dirs: dict[str, Path], metric: str, mode: str
) -> Any:
    """A Tune callback that logs one line per trial that ends (our progress, instead of
    Tune's status tables), and records the outcome of a trial ASHA stopped (a trial that
    ends by itself wrote its own). Built here so that importing this module does not import
    Tune."""
    from ray.tune import Callback

    def label(trial: Any) -> str:
        return str(trial.config.get("trial", {}).get("name", trial.trial_id))

    class TrialLines(Callback):
        done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            run_dir = run_dirs.get(label(trial))
            known = read_result(run_dir, metric, mode) if run_dir else None
            if run_dir is not None and known is None:  # stopped by the scheduler
                _record_stopped(run_dir, trial.last_result or {})
                known = read_result(run_dir, metric, mode)
            shown = f"{known.status}: {metric} {known.metric:.4f}" if known else "ended"
            log(f"[{self.done}/{total}] trial {label(trial)} {shown}")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            log(
                f"[{self.done}/{total}] trial {label(trial)} FAILED (details in {trial.local_path})"
            )

    return TrialLines()


@dataclass
class TrialOutcome:
    trial: Trial
    status: str  # finished, stopped (ASHA), error, pending
    metric: float | None = None
    epochs: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str = ""
    mlflow_run_id: str = ""


@dataclass
class SweepResult:
    """What a sweep left: its folder, its parent MLflow run, the outcomes, the files."""

    name: str
    folder: Path
    parent_run_id: str
    tracking_uri: str
    outcomes: list[TrialOutcome]
    table: ResultsTable | None
    files: dict[str, Path]
    best_trial: str | None
    ran: list[str]  # the trials that (re)started in this call


# --------------------------------------------------------------------------- planning


def plan(space: SearchSpace, base: TrainConfig, options: SweepOptions) -> Expansion:
    """The trials, with the sweep's storage, resources and tracking filled in."""
    from workflows.tracking import default_tracking_uri

    folder = sweep_folder(space, options)
    resolved: dict[str, Any] = {"data": storage.as_location(base.data)} if base.data else {}
    if base.init_from:
        resolved["init_from"] = Path(base.init_from).resolve()
    workers = options.workers_per_trial
    if workers < 1:
        raise ConfigError(
            f"workers per trial: {workers}; a Tune trial needs Ray Train workers (>= 1): "
            "in-process training (Ray Train's local mode) refuses to run inside Tune"
        )
    # Validated (a model_copy is not): a Path given for a text field such as storage_path
    # becomes text, not a value pydantic's serializer warns about in every dump.
    base = base.with_overrides(
        **resolved,
        network=absolute_weights(base.network),
        storage_path=folder / TRIALS_DIR,
        mlflow_uri=base.mlflow_uri or default_tracking_uri(),
        num_workers=workers,
        use_gpu=options.gpus_per_trial > 0,
        cpus_per_worker=options.cpus_per_trial / workers,
        address=None,
    )
    return expand(space, base, options.seeds)


def sweep_folder(space: SearchSpace, options: SweepOptions) -> Path:
    return (Path(options.storage) / (options.name or space.name)).resolve()


def trial_resources(options: SweepOptions) -> dict[str, float]:
    """The trial is only the driver of its Ray Train run (the workers ask for their own
    CPUs and GPUs), so it holds a quarter CPU."""
    return {"CPU": 0.25}


def _plan_record(expansion: Expansion) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "row": t.row, "labels": list(t.labels), "values": t.values, "seed": t.seed}
        for t in expansion.trials
    ]


# --------------------------------------------------------------------------- the trial


def open_child_run(cfg: TrainConfig, trial: dict[str, Any]) -> str:
    """The trial's MLflow run, nested under the sweep's (``mlflow.parentRunId``); made
    before training so that :func:`workflows.train.train` continues it (it resumes the run
    named in ``RUN_DIR/mlflow_run.json``)."""
    from workflows import tracking

    tags = {
        "mlflow.parentRunId": trial["parent_run_id"],
        "avrsp.sweep": trial["sweep"],
        "avrsp.trial": trial["name"],
        "avrsp.row": str(trial["row"]),
        "avrsp.values": json.dumps(trial["values"]),
    }
    uri = cfg.mlflow_uri or tracking.default_tracking_uri()
    _recover_run_file(uri, cfg, trial)
    run_id, _ = tracking.start_or_resume_run(
        uri,
        cfg.run_dir,
        run_name=cfg.run_name,
        params=tracking.flatten(cfg.to_dict()),
        tags=tags,
        experiment=cfg.experiment,
    )
    return run_id


def _recover_run_file(uri: str, cfg: TrainConfig, trial: dict[str, Any]) -> None:
    """A trial killed after its MLflow run was made but before ``mlflow_run.json`` was
    written (or while it was): point the file at that run, so a resume continues it
    rather than making a second child of the sweep."""
    from workflows import tracking

    marker = cfg.run_dir / tracking.RUN_FILE
    try:
        json.loads(marker.read_text())["run_id"]
        return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    client = tracking.client(uri)
    found = client.search_runs(
        [tracking.experiment_id(uri, cfg.experiment)],
        filter_string=f"tags.mlflow.parentRunId = '{trial['parent_run_id']}' "
        f"and tags.`avrsp.trial` = '{trial['name']}'",
        max_results=1,
    )
    if found:
        write_json(marker, {"run_id": found[0].info.run_id, "tracking_uri": uri}, indent=None)
    else:  # torn before its run was made (older versions wrote it in place): no run to keep
        marker.unlink(missing_ok=True)


def run_trial(config: dict[str, Any], step_hook: StepHook | None = None) -> None:
    """The Tune trial: one training run (:func:`workflows.train.train`), then its outcome
    (``trial_result.json``), written last: a trial without one has not finished."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from workflows.train import train

    trial = config["trial"]
    cfg = TrainConfig.model_validate(trial["train_config"])
    open_child_run(cfg, trial)
    done = train(cfg, callbacks=[TuneReportCallback()], step_hook=step_hook)
    write_result(cfg.run_dir, "finished", done.history, model=done.model_path)
    # Tune's last word on the trial. A trial resumed past its last epoch reports no epoch,
    # and Tune refuses a trial that ends without the metric ("Trial returned a result
    # which did not include the specified metric(s)"), ending the whole sweep.
    best = _best(done.history, trial["metric"], trial["mode"])
    tune.report({trial["metric"]: best[0] if best else math.nan, "epoch": done.best_epoch})


# --------------------------------------------------------------------------- outcomes


def write_result(
    run_dir: Path, status: str, history: list[dict[str, float]], *, model: Path | None = None
) -> Path:
    """``run_dir/trial_result.json``, atomically: the status, the per-epoch metrics and, for
    a finished trial, its model file (size and time: a result is tied to that model)."""
    record: dict[str, Any] = {"status": status, "epochs": len(history), "history": history}
    if model is not None:
        stat = model.stat()
        record["model"] = {"path": str(model), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return write_json(run_dir / RESULT_FILE, record)


def _record_stopped(run_dir: Path, last: dict[str, Any]) -> None:
    """A trial ASHA stopped: its history from its checkpoints (each holds its epoch's
    metrics), or Tune's last result where it has none."""
    from workflows.loop import checkpoint_dirs, read_metrics

    history = []
    for folder in checkpoint_dirs(run_dir):
        try:
            history.append(read_metrics(folder))
        except (OSError, ValueError):
            continue
    if not history and "epoch" in last:
        history = [{k: v for k, v in last.items() if k in ("epoch", "val_loss", "val_cc")}]
    if history:
        write_result(run_dir, "stopped", history)


def _best(history: list[dict[str, Any]], metric: str, mode: str) -> tuple[float, int] | None:
    """The best value of ``metric`` over the epochs, and that epoch; None without one."""
    found = []
    for entry in history:
        value = entry.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            found.append((float(value), int(entry.get("epoch", len(found)))))
    if not found:
        return None
    return min(found) if mode == "min" else max(found, key=lambda f: (f[0], -f[1]))


@dataclass
class TrialRecord:
    status: str  # finished, stopped
    metric: float
    epochs: int


def read_result(run_dir: Path, metric: str, mode: str) -> TrialRecord | None:
    """The trial's usable outcome, or None: no file, an empty or torn one, no epoch, no
    finite ``metric``, or (finished) a model that is not the one it names. A trial without
    a usable outcome runs (again); it is never ranked."""
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text())
        status, history = data["status"], data["history"]
        if status not in ("finished", "stopped") or not isinstance(history, list):
            return None
        if status == "finished":
            model, stat = data["model"], Path(data["model"]["path"]).stat()
            if (stat.st_size, stat.st_mtime_ns) != (model["size"], model["mtime_ns"]):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    best = _best(history, metric, mode)
    if best is None or int(data.get("epochs", 0)) < 1:
        return None
    return TrialRecord(status, best[0], int(data["epochs"]))


def _trial_name(trial: Any) -> str:
    return str(trial.config["trial"]["name"])


# --------------------------------------------------------------------------- scoring


def score_model(
    model_path: Path, options: SweepOptions, data: Path, out: Path
) -> dict[str, dict[str, float]]:
    """``{dataset: {metric: value}}`` of a trained model: ``KIND:PATH`` sources by the
    published protocol (:func:`workflows.evaluate.evaluate`, in-process); ``windows``
    (default) on the stored windows of ``data``'s eval split, ``windows:SYNTH_DIR`` grouped
    by the synthetic clips' conditions."""
    source = options.eval_source or "windows"
    if source == "windows" or source.startswith("windows:"):
        from workflows.evaluate import evaluate_windows

        groups = None
        if source.startswith("windows:"):
            from preprocessing.synthetic import read_manifest

            manifest = read_manifest(source.removeprefix("windows:"))
            groups = {c["clip"]: c["condition"] for c in manifest["clips"]}
        found = evaluate_windows(model_path, data, split=options.eval_split, groups=groups)
        return {d: {canonical_metric(m): v for m, v in s.scores.items()} for d, s in found.items()}
    from workflows.evaluate import BASELINE_LABEL, EvalOptions, evaluate

    report = evaluate(
        EvalOptions(
            source=source,
            model=str(model_path),
            split=options.eval_split,
            audio=("real",),
            out=out,
            overwrite=True,
            workers=0,
            limit=options.eval_limit,
            tracking=False,
            protocol=EVAL_PROTOCOL,
        ),
        log=lambda message: None,
    )
    rows = [r for r in report.table.rows if r.labels[0] != BASELINE_LABEL]
    return rows[0].values if rows else {}


def _cached_scores(
    outcome: TrialOutcome, options: SweepOptions, folder: Path
) -> tuple[dict[str, dict[str, float]], bool]:
    """Scores of a finished trial, computed once per model file (``eval/TRIAL/scores.json``)."""
    model = outcome.trial.config.run_dir / "model.pt"
    stat = model.stat()
    stamp = {"model": str(model), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size,
             "source": options.eval_source or "windows", "limit": options.eval_limit,
             "protocol": EVAL_PROTOCOL}  # fmt: skip
    cache = folder / EVAL_DIR / outcome.trial.name / "scores.json"
    if cache.is_file():
        known = json.loads(cache.read_text())
        if known.get("stamp") == stamp:
            return known["scores"], False
    assert outcome.trial.config.data is not None
    scores = score_model(model, options, outcome.trial.config.data, cache.parent / "protocol")
    write_json(cache, {"stamp": stamp, "scores": scores})
    return scores, True


# --------------------------------------------------------------------------- tables


def dataset_order(names: set[str]) -> list[str]:
    synth = [d for d in SYNTH_ORDER if d in names]
    return synth + sorted(names - set(synth))


def ablation_table(
    space: SearchSpace, expansion: Expansion, outcomes: list[TrialOutcome]
) -> tuple[ResultsTable, dict[int, dict[str, dict[str, float]]], list[int]]:
    """The paper-shaped table: per row the mean over its seeds (and the spread, the sample
    standard deviation, with two or more), the paper's quoted row beside it where there is
    one. Returns the table, the spreads by table row and the measured rows' indices."""
    from tuning.published import PUBLISHED, PUBLISHED_DATASETS

    measured = {d for o in outcomes for d in o.scores}
    quoted = PUBLISHED.get(space.ablation, [])
    datasets = dataset_order(measured)
    datasets += [d for d in PUBLISHED_DATASETS.get(space.ablation, ()) if d not in datasets]
    table = ResultsTable(
        datasets=tuple(datasets or ("–",)),
        label_columns=(*expansion.label_columns, "Source"),
        title=(space.title or f"sweep {space.name}")
        + f" — measured: mean over {len(set(t.seed for t in expansion.trials))} seed(s)",
    )
    spreads: dict[int, dict[str, dict[str, float]]] = {}
    measured_rows = []
    by_row: dict[int, list[TrialOutcome]] = {}
    for o in outcomes:
        by_row.setdefault(o.trial.row, []).append(o)
    for row, group in sorted(by_row.items()):
        labels = group[0].trial.labels
        means: dict[str, dict[str, float]] = {}
        spread: dict[str, dict[str, float]] = {}
        for d in datasets:
            for m in table.metrics:
                vals = [o.scores[d][m] for o in group if m in o.scores.get(d, {})]
                vals = [v for v in vals if not math.isnan(v)]
                if vals:
                    means.setdefault(d, {})[m] = statistics.fmean(vals)
                    if len(vals) > 1:
                        spread.setdefault(d, {})[m] = statistics.stdev(vals)
        measured_rows.append(len(table.rows))
        if spread:
            spreads[len(table.rows)] = spread
        table.add((*labels, MEASURED), means)
        if row < len(quoted) and space.rows:
            table.add((*labels, QUOTED), quoted[row])
    return table, spreads, measured_rows


def _best_config_yaml(cfg: TrainConfig) -> str:
    """The best trial's config as ``avrsp train --config FILE`` reads it (run name, storage
    and registry left to that command)."""
    import yaml

    data = cfg.to_dict()
    for key in ("run_name", "storage_path", "register_as", "mlflow_model_format"):
        data.pop(key, None)
    return yaml.safe_dump(data, sort_keys=False)


def _free_table_name(client: Any, run_id: str, name: str) -> str:
    have = {a.path for a in client.list_artifacts(run_id, "tables")}
    k, candidate = 1, name
    while f"tables/{candidate}.json" in have:
        k += 1
        candidate = f"{name}-{k}"
    return candidate


# --------------------------------------------------------------------------- the sweep


def check_option_values(options: SweepOptions) -> None:
    """The options whose values alone can be wrong (no data read: ``avrsp submit`` checks
    them on the user's machine)."""
    for flag, value, low in (("--max-concurrent", options.max_concurrent, 1),
                             ("--eval-limit", options.eval_limit, 1)):  # fmt: skip
        if value is not None and value < low:
            raise ConfigError(f"{flag}: need >= {low}, got {value}")
    if options.cpus_per_trial <= 0 or options.gpus_per_trial < 0:
        raise ConfigError(
            f"--cpus-per-trial {options.cpus_per_trial}, --gpus-per-trial "
            f"{options.gpus_per_trial}: need CPUs > 0 and GPUs >= 0"
        )


def check_options(expansion: Expansion, options: SweepOptions) -> None:
    """Every option that can be checked before a trial starts, checked (``avrsp train``
    checks ``--val-split`` up front too): the resources, the trials' shards and splits,
    ``--eval-source`` and ``--eval-split``, ``--storage``. The error names the option."""
    from preprocessing.sources import parse_source
    from workflows.data import split_files
    from workflows.evaluate import test_records
    from workflows.loop import dataset_files

    check_option_values(options)
    seen = set()
    for trial in expansion.trials:  # the shards every trial trains and validates on
        c = trial.config
        key = (str(c.data), c.train_split, c.val_split, c.fold)
        if key not in seen:
            seen.add(key)
            dataset_files(c)
    data, split = expansion.trials[0].config.data, options.eval_split
    source = options.eval_source or "windows"
    if source == "windows" or source.startswith("windows:"):
        assert data is not None
        try:
            split_files(data, split)
        except AVRSPError as exc:
            raise InputError(f"--eval-split {split}: nothing to score on ({exc})") from None
        if source.startswith("windows:"):
            from preprocessing.synthetic import read_manifest

            try:
                read_manifest(source.removeprefix("windows:"))
            except AVRSPError as exc:
                raise InputError(f"--eval-source {source}: {exc}") from None
    else:
        try:
            parse_source(source)
        except AVRSPError:
            raise InputError(
                f"--eval-source {source}: expected windows, windows:SYNTH_DIR or KIND:PATH "
                "(a source avrsp evaluate reads)"
            ) from None
        try:
            test_records(source, split, None)
        except AVRSPError as exc:
            if "no videos in split" in str(exc):
                raise InputError(f"--eval-split {split}: {exc}") from None
            raise InputError(f"--eval-source {source}: {exc}") from None
    folder = sweep_folder_of(expansion)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / ".writable", "")
        (folder / ".writable").unlink()
    except OSError as exc:
        raise ConfigError(
            f"--storage {options.storage}: cannot write the sweep's folder {folder} "
            f"({exc.strerror or exc})"
        ) from None


def sweep_folder_of(expansion: Expansion) -> Path:
    """The sweep's folder, from where :func:`plan` put the trials' runs."""
    return Path(expansion.trials[0].config.storage_path).parent


def run_sweep(
    space: SearchSpace,
    base: TrainConfig,
    options: SweepOptions,
    *,
    step_hook: StepHook | None = None,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or resume) the sweep of ``space`` on ``base``; returns its outcomes and files.

    Every option is checked before anything starts (:func:`check_options`). A resume keeps
    the trials with a usable ``trial_result.json`` and runs the others (module docstring).
    ``step_hook(epoch, step, rank)`` goes into every trial's training (the tests inject a
    fault with it).
    """
    from workflows import tracking

    expansion = plan(space, base, options)
    if not expansion.trials:
        raise ConfigError(f"space {space.name!r}: no trial left ({len(expansion.dropped)} dropped)")
    for trial in expansion.trials:  # a missing weight file stops the sweep, not each trial
        check_backbones(trial.config)
    folder = sweep_folder(space, options)
    name = folder.name
    uri = expansion.trials[0].config.mlflow_uri or tracking.default_tracking_uri()
    record = _plan_record(expansion)
    plan_file = folder / PLAN_FILE
    if plan_file.is_file() and json.loads(plan_file.read_text()) != record:
        raise ConfigError(
            f"{folder}: sweep {name!r} was started with other trials (see {plan_file}); "
            "resume it with the same space, seeds and settings, or use another --name"
        )
    with made_folders_removed_on_error(folder):  # refused, or a full disk: no empty folder
        check_options(expansion, options)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(plan_file, record)
    if expansion.dropped:
        log(f"sweep {name}: {len(expansion.dropped)} points dropped (see --dry-run)")

    space_json = space.model_dump_json(indent=2)
    parent_id, resumed = tracking.start_or_resume_run(
        uri,
        folder,
        run_name=name,
        params={"space": space_json[:6000], "metric": space.metric, "trials": str(len(record)),
                "seeds": json.dumps(list(options.seeds)), "ablation": space.ablation or "none"},
        tags={"avrsp.command": "tune", "avrsp.sweep": name, "avrsp.kind": "sweep",
              "git_commit": tracking.git_commit()},
        experiment=base.experiment,
    )  # fmt: skip
    client = tracking.client(uri)
    if not resumed:
        client.log_text(parent_id, space_json, "space.json")

    def known(trial: Trial) -> TrialRecord | None:
        return read_result(trial.config.run_dir, space.metric, space.mode)

    todo = [t for t in expansion.trials if known(t) is None]
    errors: dict[str, str] = {}
    if todo:
        if len(todo) < len(expansion.trials):
            log(f"sweep {name}: resuming: {len(expansion.trials) - len(todo)} trials done, "
                f"{len(todo)} to run")  # fmt: skip
        for t in todo:  # an empty or torn outcome of a killed call
            (t.config.run_dir / RESULT_FILE).unlink(missing_ok=True)
        try:
            errors = _fit(space, expansion, options, todo, parent_id, name, folder, step_hook, log)
        except Exception as exc:
            tracking.finish_run(uri, parent_id, status="FAILED")
            if (full := storage_error(exc, where=folder)) is not None:
                raise full from exc  # Tune's state on a full disk: one line, the file
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            last = (lines or [type(exc).__name__])[-1][:300]  # a traceback's last line
            raise AVRSPError(
                f"sweep {name}: Ray Tune stopped ({type(exc).__name__}: {last}); run the "
                "same command again: the trials with a result are kept, the others run again "
                "and resume their own checkpoints"
            ) from exc

    outcomes, ran = [], []
    todo_names = {t.name for t in todo}
    for trial in expansion.trials:
        marker = trial.config.run_dir / tracking.RUN_FILE
        try:
            run_id = json.loads(marker.read_text())["run_id"]
        except (OSError, ValueError, KeyError):
            run_id = ""
        found = known(trial)
        if found is not None:
            outcome = TrialOutcome(trial, found.status, found.metric, found.epochs,
                                   mlflow_run_id=run_id)  # fmt: skip
        elif trial.name in errors:
            outcome = TrialOutcome(trial, "error", error=errors[trial.name], mlflow_run_id=run_id)
        else:
            outcome = TrialOutcome(trial, "pending", mlflow_run_id=run_id)
        if trial.name in todo_names and outcome.status != "pending":
            ran.append(trial.name)
        outcomes.append(outcome)
    for o in outcomes:
        if o.status == "finished":
            try:
                o.scores, fresh = _cached_scores(o, options, folder)
            except AVRSPError as exc:
                o.status, o.error = "eval-failed", str(exc)
                continue
            if fresh and o.mlflow_run_id:
                for d, ms in o.scores.items():
                    for m, v in ms.items():
                        if not math.isnan(v):
                            client.log_metric(o.mlflow_run_id, f"eval.{d}.{m}", v)
        elif o.status == "stopped" and o.mlflow_run_id:
            client.set_terminated(o.mlflow_run_id, status="KILLED")
    return _finish(space, expansion, options, folder, uri, parent_id, outcomes, ran, log)


def _fit(
    space: SearchSpace,
    expansion: Expansion,
    options: SweepOptions,
    todo: list[Trial],
    parent_id: str,
    name: str,
    folder: Path,
    step_hook: StepHook | None,
    log: Callable[[str], None],
) -> dict[str, str]:
    """The trials ``todo`` in a fresh Tuner (its state in ``NAME/tune/``, replaced each
    call); returns the errors of those that failed, by trial name."""
    from ray import tune

    from preprocessing.ray_runtime import init_ray

    init_ray(
        options.address,
        packages=("avrsp", "preprocessing", "workflows", "tuning"),
        worker_lines=options.verbose > 0,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, step_hook=step_hook), trial_resources(options)
    )
    index = {t.name: i for i, t in enumerate(expansion.trials)}
    record = _plan_record(expansion)
    trial_dicts = [
        {**record[index[t.name]], "train_config": t.config.to_dict(), "parent_run_id": parent_id,
         "sweep": name, "metric": space.metric, "mode": space.mode}
        for t in todo
    ]  # fmt: skip
    asha = (options.scheduler or ("fifo" if space.rows else "asha")) == "asha"
    scheduler = None
    if asha:
        # max_t one past the last epoch: ASHA stops a trial that reaches max_t at
        # once, which would kill it before it exports its model.
        epochs = expansion.trials[0].config.epochs
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="training_iteration", max_t=epochs + 1, grace_period=1
        )
    shutil.rmtree(folder / TUNE_DIR, ignore_errors=True)  # never restored (module docstring)
    run_dirs = {t.name: t.config.run_dir for t in todo}
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trial_dicts)},
        tune_config=tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            scheduler=scheduler,
            num_samples=1,
            max_concurrent_trials=options.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(folder),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=options.verbose,
            callbacks=[_trial_lines(log, len(todo), run_dirs, space.metric, space.mode)],
        ),
    )
    with _tune_output(options.verbose):
        grid = tuner.fit()
    return {  # a trial's full disk in words (the file, the cause), else the traceback's end
        str(r.config["trial"]["name"]): str(
            storage_error(r.error) or str(r.error).strip().splitlines()[-1][:300]
        )
        for r in grid
        if r.config and r.error is not None
    }


@contextlib.contextmanager
def _tune_output(verbose: int) -> Iterator[None]:
    """Tune's own terminal output at ``verbose=0``: none. Its newer output engine prints
    an experiment box and a TensorBoard hint whatever the verbosity; the older one, chosen
    by ``RAY_AIR_NEW_OUTPUT=0`` for the call, prints nothing at 0 (the sweep's own lines
    say what happens). A user's own setting of the variable wins."""
    if verbose or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def _finish(
    space: SearchSpace,
    expansion: Expansion,
    options: SweepOptions,
    folder: Path,
    uri: str,
    parent_id: str,
    outcomes: list[TrialOutcome],
    ran: list[str],
    log: Callable[[str], None],
) -> SweepResult:
    from workflows import tracking

    client = tracking.client(uri)
    sign = 1 if space.mode == "min" else -1
    ranked = sorted(outcomes, key=lambda o: (o.metric is None, sign * (o.metric or 0.0)))
    rows = [
        {
            "trial": o.trial.name,
            "status": o.status,
            "values": o.trial.describe(),
            space.metric: o.metric,
            "epochs": o.epochs,
            "eval": _eval_text(o.scores),
            "error": o.error,
        }
        for o in ranked
    ]
    files = {
        "trials.md": write_text(folder / "trials.md", trials_markdown(rows, space.metric)),
        "trials.json": write_json(folder / "trials_results.json", rows),
    }
    table, spreads, measured = ablation_table(space, expansion, outcomes)
    marked = to_markdown(table, spread=spreads, measured=measured)
    files["table.md"] = write_text(folder / "table.md", marked)
    files["table.csv"] = table.save(folder / "table.csv")
    if spreads:
        spread_table = ResultsTable(table.datasets, table.metrics, table.label_columns)
        for i, row in enumerate(table.rows):
            spread_table.add(row.labels, spreads.get(i, {}))
        files["table_spread.csv"] = spread_table.save(folder / "table_spread.csv")
    best = next((o for o in ranked if o.status == "finished" and o.metric is not None), None)
    if best is not None:
        files["best_config.yaml"] = write_text(
            folder / "best_config.yaml", _best_config_yaml(best.trial.config)
        )
    # The parent run: the tables (each call adds its own copy), the best config.
    table_name = _free_table_name(client, parent_id, space.ablation or "results")
    tracking.log_table(client, parent_id, table, table_name)
    client.log_text(parent_id, marked, f"tables/{table_name}.marked.md")
    client.log_text(parent_id, files["trials.md"].read_text(), f"tables/{table_name}.trials.md")
    tags = {"avrsp.trials": str(len(outcomes)),
            "avrsp.finished": str(sum(o.status == "finished" for o in outcomes))}  # fmt: skip
    if best is not None:
        client.log_artifact(parent_id, str(files["best_config.yaml"]))
        client.log_metric(parent_id, f"best_{space.metric}", float(best.metric or 0.0))
        tags["avrsp.best_trial"] = best.trial.name
        tags["avrsp.best_values"] = best.trial.describe()[:5000]
    bad = [o for o in outcomes if o.status in ("error", "eval-failed", "pending")]
    status = "FAILED" if bad else "FINISHED"
    tracking.finish_run(uri, parent_id, status=status, tags=tags)
    for o in bad:
        log(f"sweep {folder.name}: trial {o.trial.name} {o.status}: {o.error}")
    log(f"sweep {folder.name}: {len(outcomes) - len(bad)}/{len(outcomes)} trials done; {folder}")
    return SweepResult(
        folder.name, folder, parent_id, uri, outcomes, table, files,
        best.trial.name if best else None, ran,
    )  # fmt: skip


def _eval_text(scores: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{d} CC {s['cc']:.3f}" for d, s in scores.items() if not math.isnan(s.get("cc", math.nan))
    )
