"""Real scale on one machine: the main job on a Replogle-sized dataset, and the forest.

Run::

    python -m perturb_assets.benchmarks.scale                       # k562_like, ~1 hour on 2 cores
    python -m perturb_assets.benchmarks.scale --preset adamson_like # smaller
    python -m perturb_assets.benchmarks.scale --forest-only --root DIR  # reuse a finished run

1. **The pipeline.** ``perturb-assets run main_job --partition <preset>`` in a fresh data root and
   Dagster instance (``--root``, default a temporary folder), with the configured executor
   (``$PERTURB_ASSETS_EXECUTOR``; in process by default). It prints each step's wall time from
   the run's event log, the run's total, and the peak memory of the whole process tree (all
   step processes together, sampled every 0.2 s).
2. **The forest.** On that run's ``pseudobulk``, ``perturbation_split`` and ``go_pca_features``:
   Random Forest on GO with a fixed number of trees (``--trees``, default 4 per job), fitted on
   train and predicting test exactly as the prediction asset does, once with
   :class:`~perturb_assets.core.models.CompressedTargetForest` and once with scikit-learn's
   ``RandomForestRegressor`` on the raw targets (the reference option), same ``n_jobs``. Then
   the whole grid per feature set: ours as the pipeline measured it (one 300-tree forest gives
   the 100-tree forest too), scikit-learn's extrapolated from its per-tree time (it fits every
   setting: 100 + 300 = 400 trees per feature set; a full run would take hours).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from perturb_assets.config import compute_budget

#: The feature sets Random Forest runs on in the main job.
N_FEATURE_SETS = 4


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        import psutil

        self._root, self._interval, self.peak_bytes = psutil.Process(pid), interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
                total = sum(p.memory_info().rss for p in procs if p.is_running())
            except psutil.Error:  # a step process ended between listing and reading
                continue
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes


def run_pipeline(preset: str, root: Path) -> tuple[float, int]:
    """The main job on ``preset`` in a fresh instance under ``root``; (wall s, peak bytes)."""
    env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "PERTURB_ASSETS_DATA_ROOT": str(root)}
    (root / "home").mkdir(parents=True, exist_ok=True)
    template = Path(__file__).resolve().parents[2] / "deploy" / "local" / "dagster.yaml"
    shutil.copy(template, root / "home" / "dagster.yaml")
    command = [sys.executable, "-m", "perturb_assets.cli", "run", "main_job", "--partition", preset]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    memory = TreeMemory(process.pid)
    code = process.wait()
    wall, peak = time.perf_counter() - start, memory.stop()
    if code:
        raise SystemExit(f"the main job failed (exit {code}); see {root / 'home'}")
    return wall, peak


def step_times(root: Path) -> pd.Series:
    """Wall seconds of every step of the latest run in ``root``'s instance, slowest first."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(root / "home")
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        starts, ends = {}, {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or record.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                starts[record.step_key] = record.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                ends[record.step_key] = record.timestamp
    times = pd.Series({k: ends[k] - starts[k] for k in starts if k in ends}, name="seconds")
    return times.sort_values(ascending=False)


FEATURE_SETS = ("go", "scgpt", "scfoundation", "scelmo")


def _load(root: Path, preset: str):
    from perturb_assets.core.io import VersionedStore

    store = VersionedStore(root)
    profiles = store.read("assets", "pseudobulk", preset)
    split = store.read("assets", "perturbation_split", preset)
    features = {name: store.read("assets", f"{name}_pca_features", preset) for name in FEATURE_SETS}
    return profiles, split, features


def _model_megabytes(model) -> float:
    """Memory of a fitted forest's arrays (node values included)."""
    if hasattr(model, "estimators_"):  # scikit-learn
        trees = [t.tree_ for t in model.estimators_]
        arrays = [a for t in trees for a in (t.value, t.threshold, t.feature)]
    else:
        arrays = [v for v in vars(model).values() if hasattr(v, "nbytes")]
    return sum(a.nbytes for a in arrays) / 1e6


def _time_forest(features, means, split, trees: int, n_jobs: int, reference: bool) -> dict:
    from perturb_assets.core.metrics import perturbation_metrics
    from perturb_assets.core.models import MODELS, fit_select_predict

    start = time.perf_counter()
    fit = fit_select_predict(
        MODELS["random_forest"],
        features,
        means,
        split,
        grid={"n_estimators": [trees]},
        n_jobs=n_jobs,
        reference=reference,
    )
    seconds = time.perf_counter() - start
    truth = means.loc[fit.predictions.index]
    delta = perturbation_metrics(fit.predictions, truth, means.loc["ctrl"])["pearson_delta"]
    return {
        "fit + predict (s)": seconds,
        "per tree (s)": seconds / trees,
        "mean Pearson Delta": float(delta.mean()),
        "model size (MB)": _model_megabytes(fit.model),
    }


def compare_forests(root: Path, preset: str, trees: int, n_jobs: int) -> pd.DataFrame:
    """Random Forest with ``trees`` trees on every feature set: ours and scikit-learn's, on
    the same data with the same ``n_jobs``."""
    from perturb_assets.core.features import perturbation_features

    profiles, split, gene_features = _load(root, preset)
    means = profiles.to_df()
    rows = {}
    for name, table in gene_features.items():
        features, _ = perturbation_features(means.index, table)
        for label, reference in (("ours", False), ("scikit-learn", True)):
            print(f"  [{time.strftime('%H:%M:%S')}] {label} on {name}", flush=True)
            rows[(name, label)] = _time_forest(features, means, split, trees, n_jobs, reference)
    return pd.DataFrame(rows).T.rename_axis(["features", "forest"])


def full_grid(fixed: pd.DataFrame, steps: pd.Series) -> pd.DataFrame:
    """The whole grid {100, 300} per feature set: ours as measured in the pipeline (one
    300-tree forest), scikit-learn's extrapolated from its per-tree time (400 trees)."""
    rows = {}
    for name in FEATURE_SETS:
        ours = steps[f"random_forest_{name}_predictions"] / 60
        theirs = fixed.loc[(name, "scikit-learn"), "per tree (s)"] * 400 / 60
        rows[name] = {"ours, measured (min)": ours, "scikit-learn, extrapolated (min)": theirs}
    table = pd.DataFrame(rows).T
    table.loc["all four"] = table.sum()
    table["speed-up"] = table.iloc[:, 1] / table.iloc[:, 0]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="k562_like")
    parser.add_argument("--root", type=Path, help="data root (default: a temporary folder)")
    parser.add_argument("--trees", type=int, help="trees per forest (default: 2 per core)")
    parser.add_argument("--forest-only", action="store_true", help="reuse the run in --root")
    args = parser.parse_args(argv)
    budget = compute_budget()
    root = args.root or Path(tempfile.mkdtemp(prefix=f"scale_{args.preset}_"))
    print(
        f"{args.preset}; {platform.machine()}, {budget.cores} cores, executor "
        f"{os.environ.get('PERTURB_ASSETS_EXECUTOR', 'in_process')}, "
        f"{budget.concurrent_steps} step(s) at a time x {budget.jobs_per_step} jobs; root {root}",
        flush=True,
    )
    if not args.forest_only:
        wall, peak = run_pipeline(args.preset, root)
    steps = step_times(root)
    print("\n| step | wall (s) |\n|---|---:|")
    for step, seconds in steps.items():
        print(f"| {step} | {seconds:.1f} |")
    if not args.forest_only:
        print(
            f"\nmain job: {wall / 60:.1f} min wall ({len(steps)} steps), peak memory "
            f"{peak / 2**30:.2f} GiB (process tree)",
            flush=True,
        )
    trees = args.trees or 4 * budget.jobs_per_step
    fixed = compare_forests(root, args.preset, trees, budget.jobs_per_step)
    print(f"\nRandom Forest, {trees} trees each, {budget.jobs_per_step} jobs:\n")
    print(fixed.to_markdown(floatfmt=".3g"))
    print("\nThe whole grid {100, 300} per feature set:\n")
    print(full_grid(fixed, steps).to_markdown(floatfmt=".3g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
