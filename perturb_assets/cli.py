"""``perturb-assets``: the command line for things done outside the Dagster UI.

Subcommands
-----------
simulate OUT        write a synthetic GEARS dataset folder (see ``perturb_assets.core.simulate``)
add-dataset SRC     validate a GEARS folder or raw-count .h5ad and add it as a dataset partition
list-datasets       print the dataset partitions (built-in and user)
fetch NAME          download and unpack a built-in GEARS dataset into the data root
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

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "simulate":
        from perturb_assets.core.simulate import main as simulate_main

        return simulate_main(argv[1:])
    args = parser.parse_args(argv)
    handlers = {"add-dataset": _add_dataset, "list-datasets": _list_datasets, "fetch": _fetch}
    try:
        return handlers[args.command](args)
    except ValueError as exc:  # DatasetError and name validation: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
