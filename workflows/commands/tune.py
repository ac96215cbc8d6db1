"""``avrsp tune``: Ray Tune sweeps of the training workflow, and the paper's ablations
(docs/TUNING.md). Parses arguments and calls :func:`tuning.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from avrsp.errors import ConfigError
from workflows.commands import add_set_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune",
        help="Ray Tune sweeps of training, the paper's ablations (Tables III-V), MLflow",
        description="Sweep a search space (--space FILE) or a named ablation (--ablation "
        "table3|table4|table5): each trial is an `avrsp train` run, nested under one MLflow "
        "run per sweep. Re-running the same command resumes the sweep.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="search space file (YAML/JSON)")
    what.add_argument("--ablation", choices=("table3", "table4", "table5"))
    p.add_argument("--data", help="output folder of avrsp preprocess (holds shards/)")
    p.add_argument(
        "--eval-source",
        help="scored at the end: KIND:PATH by the published protocol (e.g. synthetic:DIR, "
        "stavis:DIR); 'windows' (default) the stored windows of --data, 'windows:SYNTH_DIR' "
        "grouped by the synthetic conditions",
    )
    p.add_argument("--eval-split", default="test", help="split scored (test)")
    p.add_argument("--eval-limit", type=int, help="score at most N videos (protocol)")
    p.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--config", help="training config file every trial starts from")
    p.add_argument("--num-samples", type=int, help="draws per grid point (overrides the space)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials at a time (1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs of a trial's workers (1)"
    )
    p.add_argument(
        "--workers-per-trial", type=int, default=1, help="Ray Train workers per trial (1)"
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--dry-run", action="store_true", help="list the trials; start nothing")
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds 0..K-1 per row")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps-per-epoch", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--val-split", help="split folder of the validation rows")
    p.add_argument("--metric", choices=("val_loss", "val_cc"), help="overrides the space's")
    p.add_argument("--scheduler", choices=("asha", "fifo"), help="default: fifo for ablations")
    p.add_argument("--storage", default="runs/tune", help="folder of the sweeps (runs/tune)")
    p.add_argument("--name", help="sweep name (default: the space's); the resume key")
    p.add_argument("--mlflow-uri", help="tracking URI (default MLFLOW_TRACKING_URI or SQLite)")
    add_set_option(p, "a training config value for every trial, e.g. --set flip_prob=0")
    p.set_defaults(func=run)


def build_space(args: argparse.Namespace) -> Any:
    from tuning.ablations import named_space
    from tuning.spaces import SearchSpace

    space = named_space(args.ablation) if args.ablation else SearchSpace.load(args.space)
    update: dict[str, Any] = {}
    if args.num_samples is not None:
        update["num_samples"] = args.num_samples
    if args.metric:
        update["metric"] = args.metric
    if update:
        space = SearchSpace.from_dict({**space.model_dump(mode="json"), **update}, "command line")
    return space


def build_base(args: argparse.Namespace) -> Any:
    """Every trial's starting :class:`TrainConfig` (the space's values go on top)."""
    from workflows.loop import TrainConfig

    overrides: dict[str, Any] = {
        # A sweep would flood the registry, and pt2 export costs seconds per trial.
        "register_as": "",
        "mlflow_model_format": "pickle",
    }
    if args.data:
        overrides["data"] = args.data
    for flag, key in (("epochs", "epochs"), ("max_steps_per_epoch", "max_steps_per_epoch"),
                      ("batch_size", "batch_size"), ("val_split", "val_split"),
                      ("mlflow_uri", "mlflow_uri")):  # fmt: skip
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.config:
        config = TrainConfig.load(args.config, **overrides)
    else:
        config = TrainConfig.from_dict({"preset": args.preset, **overrides}, "command line")
    if args.set:
        config = config.with_overrides(**dict(args.set))
    return config


def parsed(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(space, options, base)`` of the arguments, each checked; no data is read."""
    from preprocessing.storage import is_uri
    from tuning.sweep import SweepOptions

    if args.seeds < 1:
        raise ConfigError(f"--seeds: need >= 1, got {args.seeds}")
    if is_uri(args.storage):
        raise ConfigError(
            f"--storage {args.storage}: a sweep's folder (Ray Tune's state, every trial's run, "
            "the tables) must be a path, local or on a filesystem all nodes share; the "
            "trials' --data may be an object-store URI"
        )
    space = build_space(args)
    options = SweepOptions(
        storage=Path(args.storage),
        name=args.name,
        eval_source=args.eval_source,
        eval_split=args.eval_split,
        eval_limit=args.eval_limit,
        seeds=tuple(range(args.seeds)),
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial,
        address=args.address,
        scheduler=args.scheduler,
        verbose=1 if getattr(args, "verbose", False) else 0,
    )
    return space, options, build_base(args)


def check(args: argparse.Namespace) -> None:
    """The sweep's space, options and every trial's config checked, nothing read but the
    --space and --config files (``avrsp submit``; the data is checked where it is)."""
    from tuning.sweep import check_option_values, plan

    space, options, base = parsed(args)
    check_option_values(options)
    plan(space, base, options)


def run(args: argparse.Namespace) -> int:
    from tuning.spaces import dry_run_lines
    from tuning.sweep import plan, run_sweep

    space, options, base = parsed(args)
    if args.dry_run:
        print("\n".join(dry_run_lines(space, plan(space, base, options))))
        return 0
    if not args.data:
        raise ConfigError("--data: no shards given (the output folder of avrsp preprocess)")
    result = run_sweep(space, base, options)
    print()
    print(result.files["table.md"].read_text())
    print(f"trials: {result.files['trials.md']}")
    if result.best_trial:
        print(f"best: {result.best_trial}; config {result.files['best_config.yaml']}")
    print(f"MLflow parent run {result.parent_run_id} in {result.tracking_uri}")
    bad = [o for o in result.outcomes if o.status not in ("finished", "stopped")]
    return 1 if bad else 0
