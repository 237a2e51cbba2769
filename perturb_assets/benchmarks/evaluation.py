"""Benchmark of the evaluation beyond the paper against cell-eval, measured in one run.

Run::

    python -m perturb_assets.benchmarks.evaluation            # 2,000 conditions x 5,000 genes
    python -m perturb_assets.benchmarks.evaluation --quick    # 300 x 2,000, a smoke run

Both score the same predictions of the same cells (``--cells`` per condition plus control
cells) on the metrics they share: ``pearson_delta``, ``mse``, ``mae``, ``mse_delta``,
``mae_delta`` and the discrimination score with L1, L2 and cosine distances.

* ours: :func:`perturb_assets.core.evaluation.model_metrics` (those metrics, plus ``pearson``)
  from the pseudo-bulk profiles, **plus** the split-half noise ceiling
  (:func:`perturb_assets.core.evaluation.noise_ceiling`, 5 random splits, every metric again) and
  the pseudo-bulk itself;
* cell-eval 0.8.2: ``MetricsEvaluator(...).compute(profile="anndata")`` without its two
  cell-level metrics and without DE (the same metric set), from the same cells.

It prints the time of each, the ratio (target: ours, ceiling included, under a tenth of
cell-eval's time), and the largest difference between the shared per-condition values (the
discrimination score converted to cell-eval's ``1 - rank / n``).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.evaluation import model_metrics, noise_ceiling
from perturb_assets.core.pp import pseudobulk

SHARED = ("pearson_delta", "mse", "mae", "mse_delta", "mae_delta")


def make_cells(n_conditions: int, n_genes: int, cells: int, seed: int = 0):
    """Cells of ``n_conditions`` + control (non-negative, log-scale values) and predictions."""
    rng = np.random.default_rng(seed)
    conditions = [f"P{i:05d}+ctrl" for i in range(n_conditions)]
    means = rng.gamma(1.5, 0.8, size=(n_conditions + 1, n_genes))
    labels = np.repeat(["ctrl", *conditions], [cells * 5] + [cells] * n_conditions)
    rows = np.repeat(np.arange(n_conditions + 1), [cells * 5] + [cells] * n_conditions)
    x = np.clip(means[rows] + rng.normal(0, 0.4, size=(len(rows), n_genes)), 0, None)
    real = ad.AnnData(
        x.astype(np.float64),
        obs=pd.DataFrame({"condition": labels}),
        var=pd.DataFrame(index=[f"ENSG{i:06d}" for i in range(n_genes)]),
    )
    pred = np.clip(means[1:] + rng.normal(0, 0.3, size=(n_conditions, n_genes)), 0, None)
    return real, pd.DataFrame(pred, index=conditions, columns=real.var_names)


def ours(real: ad.AnnData, pred: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    real.obs["condition"] = pd.Categorical(real.obs["condition"])
    truth = pseudobulk(real)
    split = pd.DataFrame(
        {"split": ["train"] + ["test"] * len(pred), "subgroup": None}, index=["ctrl", *pred.index]
    )
    scores = model_metrics(pred, truth.loc[pred.index], truth.loc["ctrl"], {}, split["subgroup"])
    cells = ad.AnnData(sp.csr_matrix(real.X), obs=real.obs, var=real.var)
    noise_ceiling(cells, split, None, truth)
    return scores.pivot_table(index="condition", columns="metric", values="value"), (
        time.perf_counter() - start
    )


def cell_eval(real: ad.AnnData, pred: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    from cell_eval import MetricsEvaluator

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    control = real[real.obs["condition"] == "ctrl"]
    predicted = ad.AnnData(
        np.vstack([control.X, pred.to_numpy()]),
        obs=pd.DataFrame({"target": ["ctrl"] * control.n_obs + list(pred.index)}),
        var=real.var,
    )
    truth = ad.AnnData(
        real.X, obs=pd.DataFrame({"target": real.obs["condition"].astype(str)}), var=real.var
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results, _ = MetricsEvaluator(
            predicted,
            truth,
            control_pert="ctrl",
            pert_col="target",
            skip_de=True,
            num_threads=os.cpu_count() or 1,
            outdir=out,
        ).compute(
            profile="anndata",
            skip_metrics=["pearson_edistance", "clustering_agreement"],
            write_csv=False,
            break_on_error=True,
        )
    return results.to_pandas().set_index("perturbation"), time.perf_counter() - start


def largest_difference(mine: pd.DataFrame, theirs: pd.DataFrame) -> float:
    theirs = theirs.loc[mine.index]
    n = len(mine)
    worst = max(float(np.nanmax(np.abs(mine[m] - theirs[m]))) for m in SHARED)
    for kind in ("l1", "l2", "cosine"):
        converted = 1 - (1 - mine[f"discrimination_{kind}"]) * (n - 1) / n
        worst = max(
            worst, float(np.nanmax(np.abs(converted - theirs[f"discrimination_score_{kind}"])))
        )
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perturb_assets.benchmarks.evaluation")
    p.add_argument("--conditions", type=int, default=None)
    p.add_argument("--genes", type=int, default=None)
    p.add_argument("--cells", type=int, default=5, help="cells per condition (default 5)")
    p.add_argument("--quick", action="store_true", help="300 conditions x 2,000 genes")
    args = p.parse_args(argv)
    n_cond = args.conditions or (300 if args.quick else 2000)
    n_genes = args.genes or (2000 if args.quick else 5000)
    real, pred = make_cells(n_cond, n_genes, args.cells)
    print(
        f"{n_cond:,} conditions x {n_genes:,} genes, {real.n_obs:,} cells; "
        f"{platform.machine()}, {os.cpu_count()} cores",
        flush=True,
    )
    mine, t_ours = ours(real, pred)
    print(f"ours (metrics + ceiling): {t_ours:.1f} s", flush=True)
    theirs, t_theirs = cell_eval(real, pred)
    print(f"cell-eval (same metrics, no ceiling): {t_theirs:.1f} s", flush=True)
    print(
        f"\n| conditions x genes | ours incl. ceiling (s) | cell-eval (s) | speed-up | target | "
        f"max abs difference |\n|---|---|---|---|---|---|\n| {n_cond:,} x {n_genes:,} | "
        f"{t_ours:.1f} | {t_theirs:.1f} | {t_theirs / t_ours:.0f}x | >=10x: "
        f"{'met' if t_theirs >= 10 * t_ours else 'MISSED'} | "
        f"{largest_difference(mine, theirs):.1e} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
