"""``avrsp submit COMMAND …`` and ``avrsp jobs list|logs|stop|status``: cluster jobs
(:mod:`workflows.submit`, cluster/README.md)."""

from __future__ import annotations

import argparse
import sys

from avrsp.errors import ConfigError

_ADDRESS = "the Ray dashboard of the cluster, http://HEAD:8265 (default: RAY_ADDRESS)"


def register(subparsers: argparse._SubParsersAction) -> None:
    from workflows.submit import SUBMITTABLE

    p = subparsers.add_parser(
        "submit",
        help="run preprocess, train, tune, evaluate or predict as a job on a Ray cluster",
        description="Submit `avrsp COMMAND ARGS` to a Ray cluster through the Jobs API, with "
        "this project as the job's working_dir, stream its logs and exit with its status "
        "(0 succeeded, the job's exit code when it failed, 3 when stopped). Locations in "
        "ARGS are read on the cluster: use s3://… URIs or paths on a shared filesystem.",
    )
    p.add_argument("--address", help=_ADDRESS)
    p.add_argument("--no-wait", action="store_true", help="print the job id and return")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="an environment variable for the job (KEY alone: its value here); repeatable. "
        "MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL and the AWS region are sent when set",
    )
    p.add_argument("--job-id", help="the job's id (default avrsp-COMMAND-TIME-XXXXXX)")
    p.add_argument(
        "--working-dir", help="the folder shipped as the job's code (default: this project)"
    )
    p.add_argument(
        "job_command", metavar="COMMAND", choices=SUBMITTABLE, help=", ".join(SUBMITTABLE)
    )
    p.add_argument("job_args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")
    p.set_defaults(func=run_submit)

    j = subparsers.add_parser("jobs", help="list, follow or stop the jobs of a Ray cluster")
    j.add_argument("action", choices=("list", "logs", "status", "stop"))
    j.add_argument("job_id", nargs="?", metavar="ID", help="the job (logs, status, stop)")
    j.add_argument("--address", help=_ADDRESS)
    j.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    j.set_defaults(func=run_jobs)


def run_submit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workflows.submit import build_submission, local_path_warnings, parse_env, submit

    job_args = list(args.job_args)
    if job_args[:1] == ["--"]:
        job_args = job_args[1:]
    submission = build_submission(
        args.job_command,
        job_args,
        address=args.address,
        env=parse_env(args.env),
        working_dir=Path(args.working_dir).resolve() if args.working_dir else None,
        job_id=args.job_id,
    )
    for warning in [*submission.warnings, *local_path_warnings(job_args)]:
        print(f"avrsp submit: warning: {warning}", file=sys.stderr)
    return submit(submission, wait=not args.no_wait)


def run_jobs(args: argparse.Namespace) -> int:
    from workflows import submit as jobs

    if args.action != "list" and not args.job_id:
        raise ConfigError(f"avrsp jobs {args.action}: name the job (ID, from avrsp jobs list)")
    if args.action == "list":
        rows = jobs.list_jobs(args.address)
        if not rows:
            print("no jobs")
        for r in rows:
            print(f"{r['id']:<44} {r['status']:<10} {r['started']:<20} {r['entrypoint'][:60]}")
        return 0
    if args.action == "logs":
        if args.follow:
            client = jobs.client(args.address)
            jobs.follow(client, args.job_id, lambda line: print(line, end="", flush=True))
            return jobs.exit_status(client, args.job_id, lambda m: print(m, file=sys.stderr))
        print(jobs.job_logs(args.address, args.job_id), end="")
        return 0
    if args.action == "status":
        client = jobs.client(args.address)
        info = client.get_job_info(args.job_id)
        print(
            f"{args.job_id}: {info.status.value}" + (f" ({info.message})" if info.message else "")
        )
        return 0
    stopped = jobs.stop_job(args.address, args.job_id)
    print(f"{args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0
