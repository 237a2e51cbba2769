"""Benchmark of :mod:`perturb_assets.core.metrics.de_family` against cell-eval 0.8.2 itself.

Run::

    python -m perturb_assets.benchmarks.de_family                      # 2,000 x 5,000
    python -m perturb_assets.benchmarks.de_family --conditions 200 --genes 1000
    python -m perturb_assets.benchmarks.de_family --reference-conditions 200  # cell-eval smaller

It builds a Replogle-sized evaluation (default 2,000 test conditions x 5,000 genes, 20 cells
per condition and 500 control cells of Poisson counts, log1p, float32 CSR; one pseudo-bulk
prediction per condition, float32) and times cell-eval's DE metric family both ways:

* ours: :func:`real_de_table` (pdex's Wilcoxon DE of the real cells), :func:`pseudobulk_de_table`
  (the predictions repeated once per real cell, in closed form) and :func:`de_family_metrics`;
* cell-eval: ``MetricsEvaluator`` on the real cells and on the repeated predictions with the
  real control cells (its pdex DE of both, timed apart), then ``compute(profile="de")``.

Both use every CPU (numba threads; ``num_threads=-1``). Every cell-eval metric must equal ours
per condition (the ``_reference_compat`` twin where the definitions differ; ``allclose``,
``atol=1e-6``, NaN equal to NaN); the exit status is 1 otherwise. When cell-eval cannot run
at full size in reasonable time, ``--reference-conditions`` runs it (and ours, for the check)
on the first conditions only, and ours alone at full size.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from typing import Any

import anndata as ad
import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.metrics import de_family_metrics, pseudobulk_de_table, real_de_table


def make_data(
    n_conditions: int, n_genes: int, cells: int = 20, ctrl_cells: int = 500, seed: int = 0
) -> tuple[ad.AnnData, pd.DataFrame, pd.Series]:
    """Real cells (``obs['target']``, ``ctrl``), one predicted profile per condition, sizes.

    Counts are Poisson around a gamma-distributed baseline with effects on ~10% of genes per
    condition; cells are ``log1p`` counts (float32 CSR); a prediction is the true condition
    mean plus noise, clipped at zero (float32).
    """
    rng = np.random.default_rng(seed)
    genes = pd.Index([f"ENSG{i:011d}" for i in range(n_genes)])
    conditions = [f"GENE{i}+ctrl" for i in range(n_conditions)]
    base = np.log1p(rng.gamma(0.6, 1.5, n_genes))
    effects = rng.normal(0, 1.0, (n_conditions, n_genes)) * (
        rng.random((n_conditions, n_genes)) < 0.1
    )
    sizes = pd.Series(cells, index=conditions)
    blocks = [rng.poisson(np.expm1(base), (ctrl_cells, n_genes))]
    for i in range(n_conditions):
        rate = np.expm1(np.clip(base + effects[i], 0, None))
        blocks.append(rng.poisson(rate, (cells, n_genes)))
    x = sp.csr_matrix(np.log1p(np.vstack(blocks)).astype(np.float32))
    labels = np.concatenate([["ctrl"] * ctrl_cells, np.repeat(conditions, cells)])
    obs = pd.DataFrame({"target": labels}, index=[f"c{i}" for i in range(len(labels))])
    real = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=genes))
    means = np.log1p(np.expm1(np.clip(base + effects, 0, None)))
    noise = rng.normal(0, 0.3, means.shape)
    profiles = pd.DataFrame(
        np.clip(means + noise, 0, None).astype(np.float32), index=conditions, columns=genes
    )
    return real, profiles, sizes


def ours(real: ad.AnnData, profiles: pd.DataFrame, sizes: pd.Series) -> tuple[dict, pd.DataFrame]:
    """Our DE tables and metrics; returns the phase times and the wide metric frame."""
    labels = real.obs["target"].to_numpy()
    times = {}
    start = time.perf_counter()
    real_table = real_de_table(real.X, labels, "ctrl", real.var_names, list(profiles.index))
    times["real DE"] = time.perf_counter() - start
    start = time.perf_counter()
    control = real.X[np.flatnonzero(labels == "ctrl")].toarray()
    pred_table = pseudobulk_de_table(profiles, sizes, control)
    times["predicted DE"] = time.perf_counter() - start
    start = time.perf_counter()
    tidy = de_family_metrics(real_table, pred_table)
    times["metrics"] = time.perf_counter() - start
    wide = tidy.pivot(index="condition", columns="metric", values="value")
    return times, wide.loc[profiles.index]


def predicted_cells(real: ad.AnnData, profiles: pd.DataFrame, sizes: pd.Series) -> ad.AnnData:
    """cell-eval's convention for a mean profile: repeated per cell, with the real controls."""
    control = real[real.obs["target"] == "ctrl"].X.toarray()
    x = np.vstack([control, np.repeat(profiles.to_numpy(), sizes.to_numpy(), axis=0)])
    labels = np.concatenate([["ctrl"] * len(control), np.repeat(profiles.index, sizes)])
    obs = pd.DataFrame({"target": labels}, index=[f"p{i}" for i in range(len(labels))])
    return ad.AnnData(x, obs=obs, var=real.var.copy())


def cell_eval(real: ad.AnnData, pred: ad.AnnData, outdir: str) -> tuple[dict, pd.DataFrame]:
    """cell-eval 0.8.2's DE (pdex, both sides) and DE metrics; phase times and results."""
    from cell_eval import MetricsEvaluator

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    start = time.perf_counter()
    evaluator = MetricsEvaluator(
        pred, real, control_pert="ctrl", pert_col="target", num_threads=-1, outdir=outdir
    )
    de = time.perf_counter() - start
    start = time.perf_counter()
    results, _ = evaluator.compute(profile="de", write_csv=False, break_on_error=True)
    metrics = time.perf_counter() - start
    return {"DE (pdex, both sides)": de, "metrics": metrics}, results.to_pandas().set_index(
        "perturbation"
    )


def compare(mine: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """Per metric, the largest |difference| of ours (or the twin) from cell-eval's."""
    theirs = theirs.reindex(mine.index)
    diffs = {}
    for metric in theirs.columns:
        twin = f"{metric}_reference_compat"
        a = mine[twin if twin in mine else metric].to_numpy(np.float64)
        b = theirs[metric].to_numpy(np.float64)
        if not np.allclose(a, b, atol=1e-6, rtol=0, equal_nan=True):
            diffs[metric] = float(np.nanmax(np.abs(a - b)))
        else:
            both = ~(np.isnan(a) | np.isnan(b))
            diffs[metric] = float(np.max(np.abs(a[both] - b[both]), initial=0.0))
    return diffs


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m perturb_assets.benchmarks.de_family",
        description="Benchmark our cell-eval DE metrics against cell-eval 0.8.2.",
    )
    p.add_argument("--conditions", type=int, default=2000, help="conditions (ours)")
    p.add_argument("--genes", type=int, default=5000)
    p.add_argument("--cells", type=int, default=20, help="cells per condition")
    p.add_argument("--control-cells", type=int, default=500)
    p.add_argument(
        "--reference-conditions", type=int, default=None,
        help="conditions for cell-eval (default: all); ours also runs there for the check",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _row(name: str, times: dict[str, Any], reference: float | None) -> str:
    total = sum(times.values())
    ratio = f"{reference / total:.0f}x" if reference else "-"
    phases = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
    return f"| {name} | {total:.2f} | {ratio} | {phases} |"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 when a value differs from cell-eval's)."""
    args = _parse(argv)
    n, g = args.conditions, args.genes
    n_ref = min(args.reference_conditions or n, n)
    print(f"building {n:,} conditions x {g:,} genes, {args.cells} cells each, "
          f"{args.control_cells} control cells (seed {args.seed})", flush=True)  # fmt: skip
    real, profiles, sizes = make_data(n, g, args.cells, args.control_cells, args.seed)
    warm = make_data(3, 20, 4, 10, 1)
    start = time.perf_counter()
    ours(*warm)  # loads (or compiles) the numba kernels
    warmup = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as outdir:  # pdex compiles its kernels on first use
        cell_eval(warm[0], predicted_cells(*warm), outdir)

    keep = real.obs["target"].isin(["ctrl", *profiles.index[:n_ref]]).to_numpy()
    small = (real[keep].copy(), profiles.iloc[:n_ref], sizes.iloc[:n_ref])
    print(f"cell-eval on {n_ref:,} conditions ...", flush=True)
    with tempfile.TemporaryDirectory() as outdir:
        t_ce, theirs = cell_eval(small[0], predicted_cells(*small), outdir)
    print("ours ...", flush=True)
    t_small, mine = ours(*small)
    t_full = ours(real, profiles, sizes)[0] if n_ref < n else t_small
    diffs = compare(mine, theirs)
    ok = all(d <= 1e-6 for d in diffs.values())
    for metric, d in diffs.items():
        if d > 1e-6:
            print(f"MISMATCH: {metric} differs from cell-eval (max |diff| {d:.2e})")

    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, numba threads "
        f"{numba.get_num_threads()}; Python {platform.python_version()}, numpy {np.__version__}."
    )
    print(
        f"Data: {g:,} genes, {args.cells} cells per condition, {args.control_cells} control "
        f"cells (float32 CSR log1p); cell-eval on {n_ref:,} conditions, ours on {n_ref:,} and "
        f"{n:,}. One run each after a warm-up of both (ours: kernel load/compile {warmup:.2f} s)."
    )
    print()
    print("| method | time (s) | speed-up vs cell-eval | phases (s) |")
    print("| --- | ---: | ---: | --- |")
    reference = sum(t_ce.values())
    print(_row(f"cell-eval 0.8.2, {n_ref:,} conditions", t_ce, None))
    print(_row(f"ours, {n_ref:,} conditions", t_small, reference))
    if n_ref < n:
        print(_row(f"ours, {n:,} conditions", t_full, None))
    print()
    print(
        f"{len(diffs)} cell-eval metrics x {n_ref:,} conditions equal to ours "
        f"(allclose, atol 1e-6): {'yes' if ok else 'NO'}; largest |diff| "
        f"{max(diffs.values(), default=0.0):.1e}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
