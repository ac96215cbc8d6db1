"""``avrsp train``: the Ray Train job (docs/TRAINING.md). Parses arguments and calls
:func:`workflows.train.train`."""

from __future__ import annotations

import argparse
from typing import Any

from avrsp.errors import ConfigError
from workflows.commands import add_set_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train AVRSP on segment shards (Ray Train, MLflow)",
        description="Train on the Parquet segments of avrsp preprocess. Re-running the same "
        "command (same --run-name and --storage) resumes from the last checkpoint. The best "
        "model is exported to STORAGE/RUN_NAME/model.pt.",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--config", help="training config file (configs/stage1.yaml)")
    group.add_argument("--preset", choices=("tiny", "paper"), help="model preset (default tiny)")
    p.add_argument(
        "--data", help="output folder of avrsp preprocess (holds shards/): a path or s3://…"
    )
    p.add_argument("--stage", type=int, choices=(1, 2), help="1: visual; 2: from stage 1, AV")
    p.add_argument("--init-from", help="stage 2: the stage-1 model.pt")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train S3D and SoundNet-8 from random weights, loading no pretrained file even "
        "where the config names one (the paper starts from pretrained backbones); the run "
        "records it",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per worker")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps-per-epoch", type=int)
    p.add_argument("--train-split", help="split folder of the training rows (train)")
    p.add_argument("--val-split", help="split folder of the validation rows (val)")
    p.add_argument("--fold", type=int, help="k-fold datasets: validate on cv fold K")
    p.add_argument("--num-workers", type=int, help="Ray Train workers (0: in-process)")
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16")
    p.add_argument(
        "--placement-strategy",
        choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
        help="where Ray places the workers (default PACK; SPREAD: on different nodes)",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--run-name", help="name of the run (resume key)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard the run's checkpoints and model and start it again (default: resume)",
    )
    p.add_argument("--storage", help="folder of the runs: a path or s3://… (default ./runs)")
    p.add_argument("--mlflow-uri", help="tracking URI (default MLFLOW_TRACKING_URI or SQLite)")
    add_set_option(p, "any config value, e.g. --set network.model.width=16 --set flip_prob=0")
    p.set_defaults(func=run)


_FLAGS = {
    "data": "data",
    "stage": "stage",
    "init_from": "init_from",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "max_steps_per_epoch": "max_steps_per_epoch",
    "train_split": "train_split",
    "val_split": "val_split",
    "fold": "fold",
    "num_workers": "num_workers",
    "cpus_per_worker": "cpus_per_worker",
    "placement_strategy": "placement_strategy",
    "address": "address",
    "run_name": "run_name",
    "storage": "storage_path",
    "mlflow_uri": "mlflow_uri",
}


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~workflows.loop.TrainConfig` the arguments describe (no Ray imported)."""
    from workflows.loop import TrainConfig

    overrides: dict[str, Any] = {
        key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None
    }
    if args.gpu:
        overrides["use_gpu"] = True
    if args.from_scratch:
        overrides["from_scratch"] = True
    if args.config:
        config = TrainConfig.load(args.config, **overrides)
    else:
        config = TrainConfig.from_dict(
            {"preset": args.preset or "tiny", **overrides}, source="command line"
        )
    if args.set:
        config = config.with_overrides(**dict(args.set))
    if config.data is None:
        raise ConfigError("--data: no shards given (the output folder of avrsp preprocess)")
    return config


def check(args: argparse.Namespace) -> None:
    """The arguments' config checked, nothing read but a --config file (``avrsp submit``)."""
    build_config(args)


def run(args: argparse.Namespace) -> int:
    from workflows.train import train

    result = train(build_config(args), overwrite=args.overwrite)
    m = result.metrics
    print(
        f"run {result.run_name}: {len(result.history)} epochs, best epoch {result.best_epoch} "
        f"(val loss {result.best_val_loss:.4f}); last: CC {m.get('val_cc', float('nan')):.3f}, "
        f"NSS {m.get('val_nss', float('nan')):.3f}, SIM {m.get('val_sim', float('nan')):.3f}, "
        f"KLD {m.get('val_kld', float('nan')):.3f}, AUC-J {m.get('val_auc_judd', float('nan')):.3f}"
    )
    print(f"model: {result.model_location or result.model_path}")
    print(f"MLflow run {result.mlflow_run_id} in {result.tracking_uri}")
    if result.registered_model:
        print(f"registered model: {result.registered_model} (--model for evaluate / predict)")
    return 0
