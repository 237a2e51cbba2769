"""``perturb-assets``: the command line for things done outside the Dagster UI.

Subcommands
-----------
simulate OUT        write a synthetic GEARS dataset folder (see ``perturb_assets.core.simulation``)
add-dataset SRC     validate a GEARS folder or raw-count .h5ad and add it as a dataset partition
list-datasets       print the dataset partitions (built-in and user)
fetch NAME          download and unpack a built-in GEARS dataset into the data root
run JOB             run a job of the code location on $DAGSTER_HOME's instance, one line per step,
                    with the executor of $PERTURB_ASSETS_EXECUTOR (see ``perturb_assets.config``)
main [DATASET]      what deploy/main.sh runs, in one process: observe the input files, the main
                    job, the tiny foundation models (synthetic), missing sweep levels, the
                    summary job and the headline table
summary             print a dataset's headline table (ours beside the paper's) and the report path
hashes              print the content sha256 of every stored value, or compare them with a
                    saved list (two runs, two roots or two code versions hold the same bytes)
gc                  remove what killed runs left (staging folders, old versions, temp files)
                    and mark their runs failed; see ``perturb_assets.maintenance``
export-celleval DATASET MODEL
                    write a model's test predictions and the real cells as cell-eval's
                    pred/real .h5ad pair, and print the ``cell-eval run`` command that scores it
lineage ASSET       audit the latest materialisation of ASSET[--partition] on $DAGSTER_HOME's
                    instance back to its input files; exit 1 when an input is stale or missing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perturb_assets.config import data_root


def _simulate(argv: list[str]) -> int:
    """``perturb-assets simulate OUT``: simulate a dataset and write it as a GEARS folder."""
    from perturb_assets.core import gears
    from perturb_assets.core.simulation import (
        GMT_NAME,
        MODALITIES,
        PRESETS,
        SimulationParams,
        preset_params,
        simulate,
        write_gears_dataset,
    )

    parser = argparse.ArgumentParser(
        prog="perturb-assets simulate",
        description="Write a simulated Perturb-seq dataset in GEARS perturb_processed.h5ad layout.",
    )
    parser.add_argument("out_folder", type=Path, help="output folder")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="start from a preset (the other options override it); without one: the "
        "simulator's defaults (6,000 cells, 1,000 genes, 120 single perturbations)",
    )
    parser.add_argument("--cells", type=int, dest="n_cells")
    parser.add_argument("--genes", type=int, dest="n_genes")
    parser.add_argument("--perturbations", type=int, dest="n_perturbations")
    parser.add_argument("--combo-fraction", type=float)
    parser.add_argument("--diversity", type=float)
    parser.add_argument("--terms", type=int, dest="n_terms")
    parser.add_argument("--modality", choices=MODALITIES)
    parser.add_argument("--cell-type")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-de", action="store_true", help="skip the GEARS DE-gene uns fields")
    args = vars(parser.parse_args(argv))
    out_folder, preset = args.pop("out_folder"), args.pop("preset")
    args["compute_de"] = not args.pop("no_de")
    try:
        given = {k: v for k, v in args.items() if v is not None}
        params = preset_params(preset, **given) if preset else SimulationParams(**given)
        sim = simulate(params, progress=lambda message: print(message, flush=True))
    except ValueError as err:
        parser.error(str(err))
    folder = write_gears_dataset(sim, out_folder)
    print(f"wrote {folder / gears.FILENAME} and {folder / GMT_NAME}", flush=True)
    return 0


def _add_dataset(args: argparse.Namespace) -> int:
    from perturb_assets.core.datasets import add_user_dataset

    dest = add_user_dataset(Path(args.source), args.name, data_root(), overwrite=args.overwrite)
    print(
        f"added dataset {args.name!r} at {dest}; the dataset sensor registers its partition and "
        f"runs its main job (or: perturb-assets run main_job --partition {args.name})"
    )
    return 0


def _list_datasets(args: argparse.Namespace) -> int:
    from perturb_assets.core.datasets import BUILTIN_DATASETS, discover_user_datasets

    for name in BUILTIN_DATASETS:
        print(f"{name}\tbuilt-in")
    for name, path in sorted(discover_user_datasets(data_root()).items()):
        print(f"{name}\t{path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from perturb_assets.core.datasets import fetch_gears_dataset

    folder = fetch_gears_dataset(args.name, data_root(), url_template=args.url_template)
    print(folder)
    return 0


def _step_count(job, select: list[str] | None) -> int:
    """Steps a run of ``job`` (or of its ``select``ed assets) executes: one per op."""
    import dagster as dg

    if select:
        job = job.get_subset(asset_selection={dg.AssetKey(key) for key in select})
    return len(job.graph.node_dict)


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


def _run_partitions(args: argparse.Namespace, job, instance) -> list[str | None]:
    partitions = [args.partition] if args.partition else [None]
    if args.all_partitions:
        partitions = job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    if args.missing_only:
        keys = job.asset_layer.executable_asset_keys
        done = set().union(*(instance.get_materialized_partitions(k) for k in keys))
        partitions = [p for p in partitions if p not in done]
    return partitions


def _run(args: argparse.Namespace) -> int:
    select = [k.strip() for k in args.select.split(",")] if args.select else None
    return _run_job(args.job, args.partition, args.all_partitions, args.missing_only,
                    args.config, select)  # fmt: skip


def _run_job(
    job_name: str,
    partition: str | None = None,
    all_partitions: bool = False,
    missing_only: bool = False,
    config_path: str | Path | None = None,
    select: list[str] | None = None,
) -> int:
    """Run one job (per partition, as asked) with one console line per step; 0 on success."""
    import tempfile
    import time

    import dagster as dg
    import yaml

    from perturb_assets.definitions import defs
    from perturb_assets.defs.partitions import register_datasets

    job = defs.resolve_job_def(job_name)
    instance = dg.DagsterInstance.get()
    # Dataset partitions are dynamic: a dataset on disk gets its partition before its first run.
    register_datasets(instance)
    if partition and not job.partitions_def.has_partition_key(
        partition, dynamic_partitions_store=instance
    ):
        print(f"error: {job_name} has no partition {partition!r}", file=sys.stderr)
        return 2
    config = yaml.safe_load(Path(config_path).read_text()) if config_path else {}
    total = _step_count(job, select)
    wanted = argparse.Namespace(partition=partition, all_partitions=all_partitions,
                                missing_only=missing_only)  # fmt: skip
    for key in _run_partitions(wanted, job, instance):
        label = f" {key}" if key else ""
        print(f"[run] {job_name}{label}: {total} steps", file=sys.stderr, flush=True)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="perturb_run_") as scratch:
            # the one-line-per-step console logger, counting steps across step processes
            console = {"total_steps": total, "tally": str(Path(scratch) / "finished_steps")}
            run_config = {**config, "loggers": {"console": {"config": console}}}
            ok = _execute(job_name, key, run_config, select)
        seconds = time.perf_counter() - started
        if not ok:
            print(
                f"error: {job_name}{label} failed after {seconds:.1f} s; the FAIL line above "
                "says why, the run in the UI has the full log",
                file=sys.stderr,
            )
            return 1
        print(f"[run] {job_name}{label}: done in {seconds:.1f} s", file=sys.stderr, flush=True)
    return 0


#: The tiny foundation-model configuration ``main`` uses for ``synthetic``.
TINY_FOUNDATION_CONFIG = Path(__file__).resolve().parents[1] / "deploy/configs/foundation_tiny.yaml"


def _main_pipeline(args: argparse.Namespace) -> int:
    """``perturb-assets main [DATASET]``: what ``deploy/main.sh`` runs, in one process (each
    ``perturb-assets`` start-up costs seconds of imports)."""
    import time

    started = time.perf_counter()
    # Hash the user's files first (embeddings, GO file, checkpoint, predictions), as the
    # hourly schedule does, so the lineage audit shows which file versions the run read.
    steps: list[tuple[str, dict]] = [("observe_input_files", {})]
    if args.dataset == "synthetic":  # on a real dataset the foundation models need a GPU
        # The foundation job rescores every model (metrics and what reads them), so the main
        # job leaves that to it: the same assets, each materialised once.
        steps += [
            ("main_job", {"partition": "synthetic", "select": _main_before_rescore()}),
            ("foundation_job", {"partition": "synthetic", "config_path": args.foundation_config}),
        ]
    else:
        steps.append(("main_job", {"partition": args.dataset}))
    steps += [
        ("diversity_sweep_job", {"all_partitions": True, "missing_only": True}),
        ("benchmark_summary_job", {}),
    ]
    for job_name, options in steps:
        code = _run_job(job_name, **options)
        if code:
            return code
    code = _summary(argparse.Namespace(dataset=args.dataset))
    print(f"[main] all jobs done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return code


def _main_before_rescore() -> list[str]:
    """The main job's asset keys but the metrics and what reads them (``MAIN_BEFORE_RESCORE``)."""
    from perturb_assets.definitions import defs
    from perturb_assets.defs.jobs import MAIN_BEFORE_RESCORE

    keys = MAIN_BEFORE_RESCORE.resolve(defs.resolve_asset_graph())
    return sorted(key.to_user_string() for key in keys)


def _summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from perturb_assets.config import storage_url
    from perturb_assets.core.evaluation import headline_with_paper
    from perturb_assets.core.io import VersionedStore
    from perturb_assets.core.report import REPORT_FILE

    store = VersionedStore(storage_url())
    try:
        metrics = store.read("assets", "metrics", args.dataset)
    except FileNotFoundError:
        print(
            f"error: no metrics stored for {args.dataset!r} under {store.root}; run the main job "
            "for it",
            file=sys.stderr,
        )
        return 2
    table = headline_with_paper(metrics)
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


def _prediction_asset(model: str, features: str | None) -> str:
    """The stored prediction asset of ``model`` (on ``features`` when it uses a feature set)."""
    from perturb_assets.core.models import registry

    if model not in registry.MODELS:
        return f"{model}_predictions"  # a user's prediction asset, by its name
    spec = registry.MODELS[model]
    if not spec.uses_features:
        return f"{model}_predictions"
    if features is None:
        raise ValueError(
            f"model {model!r} uses a feature set; pass --features "
            f"({', '.join(registry.FEATURE_SETS)})"
        )
    return registry.Predictor(spec, registry.feature_set(features)).name


def _export_celleval(args: argparse.Namespace) -> int:
    from perturb_assets.config import storage_url
    from perturb_assets.core.evaluation import (
        CELL_EVAL_PERT_COL,
        cell_eval_command,
        cell_eval_pair,
        write_cell_eval_pair,
    )
    from perturb_assets.core.gears.format import CONTROL
    from perturb_assets.core.io import VersionedStore

    store = VersionedStore(storage_url())
    asset = _prediction_asset(args.model, args.features)
    try:
        expression = store.read("assets", "expression", args.dataset)
        split = store.read("assets", "perturbation_split", args.dataset)
        predictions = store.read("assets", asset, args.dataset)
    except FileNotFoundError as err:
        print(
            f"error: {err}; materialise expression, perturbation_split and {asset} for "
            f"{args.dataset!r} first",
            file=sys.stderr,
        )
        return 2
    pair = cell_eval_pair(expression, split, predictions)
    out = Path(args.out) if args.out else data_root() / "cell_eval" / args.dataset
    pred, real = write_cell_eval_pair(pair, out, asset.removesuffix("_predictions"))
    print(f"pred: {pred}\nreal: {real}")
    n_control = int((pair.pred.obs[CELL_EVAL_PERT_COL] == CONTROL).sum())
    print(
        f"{len(pair.conditions)} test conditions: {pair.pred.n_obs - n_control} predicted cells "
        f"and {n_control} control cells (the real ones, in both files)"
    )
    if pair.n_clipped:
        print(f"note: {pair.n_clipped} negative predicted values clipped to 0", file=sys.stderr)
    print("score with:\n  " + cell_eval_command(pred, real, out / "results"))
    return 0


def _lineage(args: argparse.Namespace) -> int:
    import json

    import dagster as dg

    from perturb_assets.definitions import defs
    from perturb_assets.lineage import audit, format_report

    with dg.DagsterInstance.get() as instance:
        report = audit(instance, defs.resolve_asset_graph(), args.asset, args.partition)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.verified else 1


def _hashes(args: argparse.Namespace) -> int:
    import json

    from perturb_assets.config import storage_url
    from perturb_assets.core.io import VersionedStore, compare_content_hashes, content_hashes

    hashes = content_hashes(VersionedStore(args.storage or storage_url()), "assets", "models")
    if args.out:
        Path(args.out).write_text(json.dumps(hashes, indent=1) + "\n")
    if not args.compare:
        if not args.out:
            print(json.dumps(hashes, indent=1))
        return 0
    before = json.loads(Path(args.compare).read_text())
    diff = compare_content_hashes(before, hashes)
    for label, keys in diff.items():
        for key in keys:
            print(f"{label}\t{key}")
    same = sum(1 for k in hashes if before.get(k) == hashes[k])
    print(f"{same} of {len(hashes)} stored values identical to {args.compare}", file=sys.stderr)
    return 1 if any(diff.values()) else 0


def _gc(args: argparse.Namespace) -> int:
    import dagster as dg

    from perturb_assets.config import storage_url
    from perturb_assets.core.io import VersionedStore
    from perturb_assets.maintenance import collect

    with dg.DagsterInstance.get() as instance:
        done = collect(VersionedStore(storage_url()), data_root(), instance, args.older_than)
    for label, items in (
        ("store entries", done.store_entries),
        ("temporary files", done.temp_files),
        ("runs marked failed", done.failed_runs),
    ):
        print(f"{label}: {len(items)}")
        for item in items:
            print(f"  {item}")
    return 0


def _parser() -> argparse.ArgumentParser:
    """Every subcommand and its options."""
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
    pipeline = sub.add_parser(
        "main",
        help="what deploy/main.sh runs, in one process: observe the input files, the main job, "
        "the tiny foundation models (synthetic only), the missing sweep levels, the summary "
        "job and the headline table",
    )
    pipeline.add_argument("dataset", nargs="?", default="synthetic")
    pipeline.add_argument(
        "--foundation-config",
        default=str(TINY_FOUNDATION_CONFIG),
        help="run config of the foundation job for synthetic (default: the tiny one)",
    )
    summary = sub.add_parser("summary", help="print a dataset's headline table")
    summary.add_argument("--dataset", default="synthetic")
    gc = sub.add_parser("gc", help="clean up after killed runs")
    gc.add_argument(
        "--older-than",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="leave anything younger alone (default: an hour), so live runs are safe",
    )
    hashes = sub.add_parser(
        "hashes", help="print (or compare) the content sha256 of every stored value"
    )
    hashes.add_argument("--storage", default=None, help="store root (default: the configured one)")
    hashes.add_argument("--out", default=None, help="write the hashes to this JSON file")
    hashes.add_argument(
        "--compare", default=None, metavar="JSON", help="compare with hashes saved earlier"
    )
    export = sub.add_parser(
        "export-celleval", help="write a model's predictions as cell-eval's pred/real pair"
    )
    export.add_argument("dataset", help="dataset partition, e.g. synthetic")
    export.add_argument("model", help="model name, e.g. knn, train_mean")
    export.add_argument("--features", default=None, help="feature set of a feature model (go, ...)")
    export.add_argument(
        "--out", default=None, help="output folder (default: DATA_ROOT/cell_eval/DATASET)"
    )
    lineage = sub.add_parser(
        "lineage", help="audit an asset's latest materialisation back to its input files"
    )
    lineage.add_argument("asset", help="asset key, e.g. metrics")
    lineage.add_argument("--partition", default=None, help="dataset (omit when unpartitioned)")
    lineage.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "simulate":
        return _simulate(argv[1:])
    args = parser.parse_args(argv)
    handlers = {
        "add-dataset": _add_dataset,
        "list-datasets": _list_datasets,
        "fetch": _fetch,
        "run": _run,
        "main": _main_pipeline,
        "summary": _summary,
        "lineage": _lineage,
        "export-celleval": _export_celleval,
        "gc": _gc,
        "hashes": _hashes,
    }
    from perturb_assets.core.io import DownloadError, StorageReadError

    try:
        return handlers[args.command](args)
    # DatasetError (file and field), name validation, an existing dataset, an unsafe archive,
    # a damaged store: one line that says what to fix, not a traceback
    except (ValueError, FileExistsError, DownloadError, StorageReadError) as exc:
        message = " ".join(str(exc).replace("pass overwrite=True", "pass --overwrite").split())
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
