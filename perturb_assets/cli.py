"""``perturb-assets``: the command line for things done outside the Dagster UI.

Subcommands
-----------
simulate OUT        write a synthetic GEARS dataset folder (see ``perturb_assets.core.simulate``)
add-dataset SRC     validate a GEARS folder or raw-count .h5ad and add it as a dataset partition
list-datasets       print the dataset partitions (built-in and user)
fetch NAME          download and unpack a built-in GEARS dataset into the data root
run JOB             run a job of the code location on $DAGSTER_HOME's instance, one line per step,
                    with the executor of $PERTURB_ASSETS_EXECUTOR (see ``perturb_assets.config``)
summary             print a dataset's headline table (ours beside the paper's) and the report path
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perturb_assets.config import data_root


def _add_dataset(args: argparse.Namespace) -> int:
    from perturb_assets.core.datasets import add_user_dataset

    dest = add_user_dataset(Path(args.source), args.name, data_root(), overwrite=args.overwrite)
    print(f"added dataset {args.name!r} at {dest}; reload the code location to see the partition")
    return 0


def _list_datasets(args: argparse.Namespace) -> int:
    from perturb_assets.core.datasets import BUILTIN_DATASETS, discover_user_datasets

    for name in BUILTIN_DATASETS:
        print(f"{name}\tbuilt-in")
    for name, path in sorted(discover_user_datasets(data_root()).items()):
        print(f"{name}\t{path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from perturb_assets.core.download import fetch_gears_dataset

    folder = fetch_gears_dataset(args.name, data_root(), url_template=args.url_template)
    print(folder)
    return 0


def _execute(
    job_name: str, partition: str | None, run_config: dict, select: list[str] | None = None
) -> bool:
    """Run a job of the code location with its executor ($PERTURB_ASSETS_EXECUTOR): in this
    process, or steps side by side in subprocesses, which re-import the code location."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(
        "perturb_assets.definitions", "defs", working_directory=str(Path.cwd())
    )
    tags = {"dagster/partition": partition} if partition else None
    with dg.execute_job(
        repository.get_reconstructable_job(job_name),
        dg.DagsterInstance.get(),
        run_config=run_config,
        tags=tags,
        asset_selection=[dg.AssetKey(key) for key in select] if select else None,
    ) as result:
        return result.success


def _run(args: argparse.Namespace) -> int:
    import dagster as dg
    import yaml

    from perturb_assets.definitions import defs

    job = defs.resolve_job_def(args.job)
    instance = dg.DagsterInstance.get()
    config = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    config = {**config, "loggers": {"console": {}}}  # the one-line-per-step console logger
    partitions = [args.partition] if args.partition else [None]
    if args.all_partitions:
        partitions = job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    if args.missing_only:
        done = set().union(
            *(
                instance.get_materialized_partitions(k)
                for k in job.asset_layer.executable_asset_keys
            )
        )
        partitions = [p for p in partitions if p not in done]
    for partition in partitions:
        label = f" {partition}" if partition else ""
        print(f"[run] {args.job}{label}", file=sys.stderr, flush=True)
        select = [k.strip() for k in args.select.split(",")] if args.select else None
        if not _execute(args.job, partition, config, select):
            print(f"error: {args.job}{label} failed; see the run in the UI", file=sys.stderr)
            return 1
    return 0


def _summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from perturb_assets.core.benchmark import headline_with_paper
    from perturb_assets.core.report import REPORT_FILE

    path = data_root() / "assets" / "metrics" / f"{args.dataset}.parquet"
    if not path.exists():
        print(
            f"error: {path} does not exist; run the main job for {args.dataset!r}", file=sys.stderr
        )
        return 2
    table = headline_with_paper(pd.read_parquet(path))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            f"\n{args.dataset}: Pearson metrics on the test conditions, mean [95% CI] "
            "(paper) -- t-test DE lists\n"
        )
        print(table.to_string())
    report = data_root() / "reports" / REPORT_FILE
    if report.exists():
        print(f"\nReport: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perturb-assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "simulate", help="write a synthetic GEARS dataset (see simulate --help)", add_help=False
    )
    add = sub.add_parser("add-dataset", help="add a user dataset as a partition")
    add.add_argument("source", help="GEARS folder (with perturb_processed.h5ad) or .h5ad file")
    add.add_argument("--name", required=True, help="partition name: [a-z][a-z0-9_]*")
    add.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    sub.add_parser("list-datasets", help="print the dataset partitions")
    fetch = sub.add_parser("fetch", help="download a built-in GEARS dataset")
    fetch.add_argument("name")
    fetch.add_argument(
        "--url-template", default=None, help="mirror URL with a {file_id} placeholder"
    )
    run = sub.add_parser(
        "run",
        help="run a job (main_job, foundation_job, ...) with the configured executor "
        "($PERTURB_ASSETS_EXECUTOR: in this process, or steps side by side)",
    )
    run.add_argument("job")
    run.add_argument(
        "--select", default=None, help="only these assets of the job (comma-separated keys)"
    )
    run.add_argument("--partition", default=None)
    run.add_argument("--all-partitions", action="store_true", help="every partition in turn")
    run.add_argument("--missing-only", action="store_true", help="skip materialised partitions")
    run.add_argument("--config", default=None, help="run config YAML (ops: ...)")
    summary = sub.add_parser("summary", help="print a dataset's headline table")
    summary.add_argument("--dataset", default="synthetic")

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "simulate":
        from perturb_assets.core.simulate import main as simulate_main

        return simulate_main(argv[1:])
    args = parser.parse_args(argv)
    handlers = {
        "add-dataset": _add_dataset,
        "list-datasets": _list_datasets,
        "fetch": _fetch,
        "run": _run,
        "summary": _summary,
    }
    try:
        return handlers[args.command](args)
    except ValueError as exc:  # DatasetError and name validation: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
