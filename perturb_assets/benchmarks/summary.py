"""Benchmark of the metrics table's summary against scoring it one row at a time, in one run.

Run::

    python -m perturb_assets.benchmarks.summary            # 40 models x 30 metrics x 120 conditions
    python -m perturb_assets.benchmarks.summary --quick    # 10 x 10 x 40, a smoke run

The per-condition table has ``--models`` models (one of them Train Mean) × ``--metrics``
metrics × ``--conditions`` test conditions in four subgroups, with ties, zeros and missing
values as real metrics have them. Both sides give every summary row (overall and per subgroup)
its mean with a bootstrap CI and the paired comparison with Train Mean:

* ours: :func:`perturb_assets.core.evaluation.summarise` (rows computed together: the p-values
  in one scipy call per sample size and method, bootstrap draws shared by size);
* row by row: the same public functions a user would call for one row,
  :func:`perturb_assets.core.metrics.bootstrap_ci` and
  :func:`perturb_assets.core.metrics.paired_comparison`, on a frame slice per row.

It prints both times, the ratio, and whether every value is the same to the last bit.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd

from perturb_assets.core.evaluation import summarise
from perturb_assets.core.metrics import bootstrap_ci, paired_comparison

SUBGROUPS = ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")
COMPARED = ["value", "ci_low", "ci_high", "diff_vs_train_mean", "diff_ci_low", "diff_ci_high",
            "win_rate_vs_train_mean", "p_value_vs_train_mean"]  # fmt: skip


def per_condition_table(n_models: int, n_metrics: int, n_conditions: int, seed: int = 0):
    """A tidy per-condition table shaped like ``metrics_per_condition``."""
    rng = np.random.default_rng(seed)
    conditions = [f"P{i:04d}+ctrl" for i in range(n_conditions)]
    subgroup = np.array(SUBGROUPS)[np.arange(n_conditions) % len(SUBGROUPS)]
    frames = []
    for m in range(n_models):
        model = "train_mean" if m == 0 else f"model_{m:02d}"
        for k in range(n_metrics):
            values = rng.normal(0.3 + 0.01 * m, 0.2, n_conditions)
            if k % 3 == 0:  # coarse metrics: ties and zeros
                values = np.round(values, 1)
            values[rng.random(n_conditions) < 0.03] = np.nan
            frames.append(pd.DataFrame({
                "condition": conditions, "metric": f"metric_{k:02d}", "value": values,
                "subgroup": subgroup, "de_method": "none", "model": model, "features": "none",
                "protocol": "p",
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def row_by_row(per_condition: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Every summary row from a frame slice, with the one-row functions."""
    base = per_condition[per_condition["model"] == "train_mean"]
    rows = []
    for (model, metric), group in per_condition.groupby(["model", "metric"], sort=False):
        reference = base[base["metric"] == metric].set_index("condition")["value"]
        for subgroup, part in [("all", group), *group.groupby("subgroup", sort=False)]:
            values = part.set_index("condition")["value"]
            mean, low, high = bootstrap_ci(values, n_boot=n_boot)
            row = {"model": model, "metric": metric, "subgroup": subgroup, "value": mean,
                   "ci_low": low, "ci_high": high}  # fmt: skip
            if model != "train_mean":
                paired = paired_comparison(values, reference, n_boot=n_boot)
                row |= {"diff_vs_train_mean": paired["mean_diff"],
                        "diff_ci_low": paired["ci_low"], "diff_ci_high": paired["ci_high"],
                        "win_rate_vs_train_mean": paired["win_rate"],
                        "p_value_vs_train_mean": paired["p_value"]}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--conditions", type=int, default=120)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10 x 10 x 40")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.metrics, args.conditions = 10, 10, 40
    table = per_condition_table(args.models, args.metrics, args.conditions)
    print(f"{args.models} models x {args.metrics} metrics x {args.conditions} conditions "
          f"({len(table):,} per-condition values), n_boot {args.n_boot}; "
          f"{platform.machine()}, Python {platform.python_version()}")  # fmt: skip
    start = time.perf_counter()
    ours = summarise(table, "bench", n_boot=args.n_boot)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = row_by_row(table, args.n_boot)
    theirs_s = time.perf_counter() - start
    keys = ["model", "metric", "subgroup"]
    merged = ours.merge(theirs, on=keys, suffixes=("", "_row"), validate="one_to_one")
    identical = len(merged) == len(ours) == len(theirs) and all(
        np.array_equal(merged[c].to_numpy(float), merged[f"{c}_row"].to_numpy(float),
                       equal_nan=True)
        for c in COMPARED
    )  # fmt: skip
    print(f"{'method':<34} {'time (s)':>9} {'speed-up':>9}")
    print(f"{'row by row (bootstrap_ci, paired)':<34} {theirs_s:>9.2f} {1.0:>8.1f}x")
    print(f"{'summarise (rows together)':<34} {ours_s:>9.2f} {theirs_s / ours_s:>8.1f}x")
    print(f"{len(ours):,} summary rows; every value identical to the last bit: {identical}")


if __name__ == "__main__":
    main()
