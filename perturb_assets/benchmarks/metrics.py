"""Benchmark of :func:`perturb_assets.core.metrics.perturbation_metrics` against a scipy loop.

Run::

    python -m perturb_assets.benchmarks.metrics            # 2,000 conditions x 5,000 genes
    python -m perturb_assets.benchmarks.metrics --quick    # 200 conditions x 1,000 genes

It builds a Replogle-sized evaluation table (default 2,000 test conditions x 5,000 genes of
random log-expression-like data, float64; the control mean; 20 DE genes per condition) and
times computing ``pearson``, ``pearson_delta`` and ``pearson_de_delta`` for every condition:

* ``perturbation_metrics`` (compiled two-pass kernel for the full-profile metrics, vectorised
  ``rowwise_pearson`` for the DE metric), the best of ``--repeats`` runs after one warm-up call
  that loads (or compiles) the numba kernel;
* the same three metrics with plain numpy (:func:`perturb_assets.core.metrics.rowwise_pearson`
  on the full matrices: centre rows, normalise, dot), for comparison;
* the reference's way: a loop over conditions calling ``scipy.stats.pearsonr`` three times per
  condition, with the DE genes taken in column order as in the reference notebook (their
  positions found with ``Index.isin``, i.e. without the notebook's much slower list
  comprehension). Run once.

All results must agree with the loop (``np.allclose``, ``atol=1e-12``, ``rtol=0``); the exit
status is 1 otherwise. The final table is printed in Markdown, with the speed-up ratios
(target: >= 50x for ``perturbation_metrics``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy
from scipy.stats import pearsonr

from perturb_assets.core.gears import N_TOP_DE
from perturb_assets.core.metrics import perturbation_metrics, rowwise_pearson

_COLUMNS = ["pearson", "pearson_delta", "pearson_de_delta"]


def make_data(
    n_conditions: int, n_genes: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, dict[str, list[str]]]:
    """Random prediction, truth, control mean and 20 DE genes per condition.

    Parameters
    ----------
    n_conditions, n_genes
        Table size.
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    tuple
        ``(pred, truth, ctrl_mean, de_genes)`` shaped as :func:`perturbation_metrics` takes them.
    """
    rng = np.random.default_rng(seed)
    genes = pd.Index([f"ENSG{i:011d}" for i in range(n_genes)])
    conditions = pd.Index([f"GENE{i}+ctrl" for i in range(n_conditions)], name="condition")
    ctrl = pd.Series(rng.gamma(0.8, 1.0, n_genes), index=genes)
    effect = rng.normal(0.0, 0.3, (n_conditions, n_genes))
    truth = pd.DataFrame(ctrl.to_numpy() + effect, index=conditions, columns=genes)
    pred = pd.DataFrame(
        ctrl.to_numpy() + 0.5 * effect + rng.normal(0.0, 0.2, (n_conditions, n_genes)),
        index=conditions,
        columns=genes,
    )
    picks = np.argsort(rng.random((n_conditions, n_genes)), axis=1)[:, :N_TOP_DE]
    de_genes = {c: genes[picks[i]].tolist() for i, c in enumerate(conditions)}
    return pred, truth, ctrl, de_genes


def scipy_loop(
    pred: pd.DataFrame, truth: pd.DataFrame, ctrl: pd.Series, de_genes: dict[str, list[str]]
) -> pd.DataFrame:
    """The three metrics with one ``scipy.stats.pearsonr`` call per condition and metric."""
    cols = truth.columns
    c = ctrl.reindex(cols).to_numpy()
    p_all = pred.reindex(index=truth.index, columns=cols).to_numpy()
    t_all = truth.to_numpy()
    rows = []
    for i, cond in enumerate(truth.index):
        p = p_all[i]
        t = t_all[i]
        idx = np.flatnonzero(cols.isin(de_genes[cond][:N_TOP_DE]))
        dp = p - c
        dt = t - c
        rows.append([pearsonr(p, t)[0], pearsonr(dp, dt)[0], pearsonr(dp[idx], dt[idx])[0]])
    return pd.DataFrame(rows, index=truth.index, columns=_COLUMNS)


def numpy_metrics(
    pred: pd.DataFrame, truth: pd.DataFrame, ctrl: pd.Series, de_genes: dict[str, list[str]]
) -> pd.DataFrame:
    """The three metrics with plain numpy (``rowwise_pearson`` on whole matrices)."""
    cols = truth.columns
    c = ctrl.reindex(cols).to_numpy()
    p = pred.reindex(index=truth.index, columns=cols).to_numpy()
    t = truth.to_numpy()
    dp = p - c
    dt = t - c
    position = dict(zip(cols, range(len(cols)), strict=True))
    idx = np.full((len(truth), N_TOP_DE), -1)
    for i, cond in enumerate(truth.index):
        pos = sorted({position[v] for v in de_genes[cond][:N_TOP_DE] if v in position})
        idx[i, : len(pos)] = pos
    mask = idx >= 0
    rows = np.arange(len(truth))[:, None]
    safe = np.where(mask, idx, 0)
    out = np.column_stack(
        [
            rowwise_pearson(p, t),
            rowwise_pearson(dp, dt),
            rowwise_pearson(dp[rows, safe], dt[rows, safe], mask),
        ]
    )
    return pd.DataFrame(out, index=truth.index, columns=_COLUMNS)


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best = np.inf
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m perturb_assets.benchmarks.metrics",
        description="Benchmark perturbation_metrics against a scipy.stats.pearsonr loop.",
    )
    p.add_argument("--quick", action="store_true", help="200 conditions x 1,000 genes")
    p.add_argument("--conditions", type=int, default=None, help="conditions (default 2,000)")
    p.add_argument("--genes", type=int, default=None, help="genes (default 5,000)")
    p.add_argument("--repeats", type=int, default=3, help="runs of the fast methods (best)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 when the results disagree)."""
    args = _parse(argv)
    n = args.conditions or (200 if args.quick else 2000)
    g = args.genes or (1000 if args.quick else 5000)
    print(f"building {n:,} conditions x {g:,} genes, {N_TOP_DE} DE genes each (seed {args.seed})")
    pred, truth, ctrl, de = make_data(n, g, args.seed)

    start = time.perf_counter()
    tiny = make_data(3, 10, 1)
    perturbation_metrics(*tiny)
    warmup = time.perf_counter() - start

    print("scipy loop ...", flush=True)
    t_loop, ref = _best_of(lambda: scipy_loop(pred, truth, ctrl, de), 1)
    print("perturbation_metrics ...", flush=True)
    t_fast, fast = _best_of(lambda: perturbation_metrics(pred, truth, ctrl, de), args.repeats)
    print("numpy rowwise_pearson ...", flush=True)
    t_np, via_numpy = _best_of(lambda: numpy_metrics(pred, truth, ctrl, de), args.repeats)

    ok = True
    diffs = {}
    for name, got in (("perturbation_metrics", fast), ("numpy", via_numpy)):
        got = got[_COLUMNS]
        same = got.index.equals(ref.index) and np.allclose(
            got.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-12, equal_nan=True
        )
        diffs[name] = float(np.nanmax(np.abs(got.to_numpy() - ref.to_numpy())))
        ok &= same
        if not same:
            print(f"MISMATCH: {name} differs from the scipy loop (max |diff| {diffs[name]:.2e})")

    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, numba threads "
        f"{numba.get_num_threads()}; Python {platform.python_version()}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, pandas {pd.__version__}, numba "
        f"{numba.__version__}."
    )
    print(
        f"Data: {n:,} conditions x {g:,} genes (float64), {N_TOP_DE} DE genes per condition; "
        f"metrics pearson, pearson_delta, pearson_de_delta. Fast methods: best of "
        f"{args.repeats}; loop: one run. Kernel load/compile before timing: {warmup:.2f} s."
    )
    print()
    print("| method | time (s) | speed-up vs scipy loop | max abs diff vs loop |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| scipy.stats.pearsonr loop (3 calls / condition) | {t_loop:.3f} | 1.0x | - |")
    print(
        f"| perturbation_metrics | {t_fast:.4f} | {t_loop / t_fast:.0f}x | "
        f"{diffs['perturbation_metrics']:.1e} |"
    )
    print(
        f"| numpy rowwise_pearson (centre, normalise, dot) | {t_np:.4f} | "
        f"{t_loop / t_np:.0f}x | {diffs['numpy']:.1e} |"
    )
    print()
    print(
        f"values equal (allclose, atol 1e-12): {'yes' if ok else 'NO'}; "
        f"target >= 50x: {'met' if t_loop / t_fast >= 50 else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
