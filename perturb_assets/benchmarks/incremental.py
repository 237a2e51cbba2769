"""Incremental recomputation, measured: one embedding file changes, what recomputes, how long.

Run::

    python -m perturb_assets.benchmarks.incremental                 # the synthetic preset
    python -m perturb_assets.benchmarks.incremental --preset adamson_like

A lab's user dataset ``lab`` (simulated with ``--preset``; its GO file and gene embeddings are
put where a user puts them: ``<root>/annotations/go.gmt`` and ``<root>/embeddings/``) goes
through the main job once (the **full run**). Then the scGPT embedding file is replaced, the
hourly observation job records its new sha256, and the automation ticks as the daemon would
(:func:`refresh_until_settled`: evaluate the conditions, run what they request, repeat until
nothing is requested). Printed: which assets recomputed (N of the M the full run
materialised) and the refresh's wall time as a share of the full run's, both in one process,
in process (no per-step process start-up on either side).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

DATASET = "lab"
CHANGED = "scgpt"  # the embedding file the benchmark replaces
QUIET = {"loggers": {"console": {}}}  # the code location's one-line-per-step console


@dataclass
class Refresh:
    """What the automation did until it settled."""

    ticks: int = 0
    materialised: list[tuple[str, str | None]] = field(default_factory=list)
    seconds: float = 0.0
    evaluate_seconds: float = 0.0  # of which: evaluating the automation conditions
    failed_runs: int = 0

    @property
    def assets(self) -> set[str]:
        """The asset keys materialised (any partition)."""
        return {key for key, _ in self.materialised}


def code_location(root: Path) -> dg.Definitions:
    """The whole code location, with its data root (and store) at ``root``."""
    import perturb_assets.defs
    from perturb_assets.defs.console import progress_console
    from perturb_assets.defs.resources import build_resources

    return dg.Definitions.merge(
        dg.load_defs(perturb_assets.defs),
        dg.Definitions(resources=build_resources(root), loggers={"console": progress_console}),
    )


def lab_dataset(root: Path, preset: str = "synthetic", **overrides) -> str:
    """Simulate a dataset and install it as a user would: GEARS file, GO file, embeddings."""
    from perturb_assets.core.datasets import add_user_dataset
    from perturb_assets.core.io import ANNOTATIONS_SUBDIR, EMBEDDINGS_SUBDIR
    from perturb_assets.core.simulation import (
        GMT_NAME,
        preset_params,
        simulate,
        write_gears_dataset,
    )

    incoming = write_gears_dataset(simulate(preset_params(preset, **overrides)), root / "incoming")
    (root / ANNOTATIONS_SUBDIR).mkdir(parents=True, exist_ok=True)
    shutil.copy(incoming / GMT_NAME, root / ANNOTATIONS_SUBDIR / "go.gmt")
    shutil.copytree(incoming / EMBEDDINGS_SUBDIR, root / EMBEDDINGS_SUBDIR, dirs_exist_ok=True)
    add_user_dataset(incoming, DATASET, root)
    return DATASET


def observe_files(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """Run the observation job of the hourly schedule (file hashes become data versions)."""
    result = defs.resolve_job_def("observe_input_files").execute_in_process(
        instance=instance, run_config=QUIET
    )
    assert result.success


def refresh_until_settled(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None, max_ticks: int = 20
) -> tuple[Refresh, object]:
    """Tick the automation conditions like the daemon, running each tick's requests.

    Returns the :class:`Refresh` and the cursor to continue from.
    """
    graph, job = defs.resolve_asset_graph(), defs.resolve_implicit_global_asset_job_def()
    refresh, start = Refresh(), time.perf_counter()
    for _ in range(max_ticks):
        tick = time.perf_counter()
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        refresh.evaluate_seconds += time.perf_counter() - tick
        cursor, by_partition = result.cursor, defaultdict(list)
        for key in graph.materializable_asset_keys:
            if result.get_num_requested(key):
                for partition in result.get_requested_partitions(key):
                    by_partition[partition].append(key)
        if not by_partition:
            break
        refresh.ticks += 1
        for partition, keys in by_partition.items():
            run = job.execute_in_process(
                instance=instance,
                partition_key=partition,
                asset_selection=keys,
                run_config=QUIET,
                raise_on_error=False,  # a failed blocking check fails its run: recorded
            )
            refresh.materialised += _materialised_in(instance, run.run_id, partition)
            refresh.failed_runs += 0 if run.success else 1
    refresh.seconds = time.perf_counter() - start
    return refresh, cursor


def replace_embedding(root: Path, name: str = CHANGED, seed: int = 1) -> Path:
    """Give feature set ``name`` a new embedding file (same genes, new values)."""
    from perturb_assets.core.io import EMBEDDINGS_SUBDIR

    path = root / EMBEDDINGS_SUBDIR / f"{name}.parquet"
    old = pd.read_parquet(path)
    rng = np.random.default_rng(seed)
    pd.DataFrame(rng.normal(size=old.shape), index=old.index, columns=old.columns).to_parquet(path)
    return path


def _materialised_in(
    instance: dg.DagsterInstance, run_id: str, partition: str | None = None
) -> list[tuple[str, str | None]]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return [(r.asset_key.to_user_string(), partition) for r in records]


def measure(root: Path, preset: str, **overrides) -> dict:
    """The full run, then the refresh after one embedding file changed."""
    from perturb_assets.defs.partitions import instance_with_datasets

    name = lab_dataset(root, preset, **overrides)
    defs, instance = code_location(root), instance_with_datasets([name])
    observe_files(defs, instance)
    start = time.perf_counter()
    full = defs.resolve_job_def("main_job").execute_in_process(
        instance=instance, partition_key=name, run_config=QUIET
    )
    full_s = time.perf_counter() - start
    assert full.success
    settled, cursor = refresh_until_settled(defs, instance)
    replace_embedding(root)
    observe_files(defs, instance)
    refresh, _ = refresh_until_settled(defs, instance, cursor)
    return {
        "full_assets": [key for key, _ in _materialised_in(instance, full.run_id)],
        "full_s": full_s,
        "after_full_run": settled,
        "refresh": refresh,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="synthetic")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(Path(tmp), args.preset)
    refresh, n_full = out["refresh"], len(out["full_assets"])
    recomputed = sorted(refresh.assets)
    print(f"dataset: {args.preset} preset as user dataset {DATASET!r}")
    print(f"full run (main job): {n_full} assets in {out['full_s']:.1f} s")
    print(f"ticks right after the full run: {out['after_full_run'].ticks} (0 = nothing requested)")
    print(
        f"after replacing embeddings/{CHANGED}.parquet: {len(recomputed)} of {n_full} assets "
        f"recomputed in {refresh.ticks} ticks, {refresh.seconds:.1f} s = "
        f"{100 * refresh.seconds / out['full_s']:.0f}% of the full run"
    )
    runs_s = refresh.seconds - refresh.evaluate_seconds
    print(
        f"  of which the refresh runs: {runs_s:.1f} s = {100 * runs_s / out['full_s']:.0f}% of "
        f"the full run; evaluating the conditions ({refresh.ticks + 1} evaluations, the last "
        f"one finding nothing left): {refresh.evaluate_seconds:.1f} s"
    )
    for key in recomputed:
        print(f"  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
