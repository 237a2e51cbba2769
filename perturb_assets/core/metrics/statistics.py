"""Summaries of per-condition metrics: bootstrap CIs, paired comparisons, subgroup tables.

A benchmark number is a mean over test conditions; :func:`bootstrap_ci` gives its percentile
interval and :func:`paired_comparison` the mean difference of two models over the conditions
both scored (resampling conditions jointly), as the benchmark table reports them against Train
Mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "bootstrap_ci",
    "bootstrap_ratio_ci",
    "paired_comparison",
    "subgroup_summary",
    "summarise_metrics",
]


# --------------------------------------------------------------------------------------------
# Summaries and uncertainty
# --------------------------------------------------------------------------------------------


def _check_boot(n_boot: int, ci: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")


def _boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``, all at once."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(n_boot, values.size))
    return values[draws].mean(axis=1)


def bootstrap_ci(
    values: Iterable[float] | np.ndarray | pd.Series,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap confidence interval.

    Conditions are resampled with replacement ``n_boot`` times (one vectorised draw from
    ``numpy.random.default_rng(seed)``, so the result is deterministic for a seed); the
    interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of the resampled means.

    Parameters
    ----------
    values
        Per-condition values; NaN values are left out.
    n_boot
        Number of bootstrap resamples.
    ci
        Confidence level in ``(0, 1)``.
    seed
        Seed of the resampling.

    Returns
    -------
    tuple of float
        ``(mean, low, high)``; all NaN when no value is left.
    """
    _check_boot(n_boot, ci)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    means = _boot_means(v, n_boot, seed)
    low, high = np.quantile(means, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return (float(v.mean()), float(low), float(high))


def bootstrap_ratio_ci(
    numerator: Iterable[float] | np.ndarray | pd.Series,
    denominator: Iterable[float] | np.ndarray | pd.Series,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of two means over the same conditions and its percentile-bootstrap interval.

    ``mean(numerator) / mean(denominator)``, e.g. a model's mean error over the additive
    model's on the same conditions. Conditions are resampled as pairs (the same draws for both
    means, as :func:`bootstrap_ci` draws them), so the interval reflects the paired design.

    Parameters
    ----------
    numerator, denominator
        Per-condition values of equal length; a condition is dropped when either is NaN.
    n_boot, ci, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    tuple of float
        ``(ratio, low, high)``; all NaN when no pair is left or the denominator's mean is 0.
    """
    _check_boot(n_boot, ci)
    num = np.asarray(numerator, dtype=np.float64).ravel()
    den = np.asarray(denominator, dtype=np.float64).ravel()
    if num.shape != den.shape:
        raise ValueError(f"numerator has {num.size} values, denominator {den.size}")
    keep = ~(np.isnan(num) | np.isnan(den))
    num, den = num[keep], den[keep]
    if num.size == 0 or den.mean() == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num.size, size=(n_boot, num.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = num[draws].mean(axis=1) / den[draws].mean(axis=1)
    low, high = np.nanquantile(ratios, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return (float(num.mean() / den.mean()), float(low), float(high))


def paired_comparison(
    model_values: pd.Series,
    reference_values: pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, float | int]:
    """Paired comparison of a model with a baseline (e.g. Train Mean) over the same conditions.

    Parameters
    ----------
    model_values, reference_values
        Per-condition values of one metric, indexed by condition. Only conditions in both are
        used, and a condition is dropped when either value is NaN.
    n_boot, seed, ci
        Bootstrap of the mean difference, as in :func:`bootstrap_ci` (conditions resampled as
        pairs).

    Returns
    -------
    dict
        ``mean_diff`` (mean of ``model - baseline``), ``ci_low``, ``ci_high`` (its bootstrap
        interval), ``win_rate`` (fraction of conditions where the model is higher, ties
        counting one half) and ``n`` (number of paired conditions). NaN statistics when
        ``n == 0``.
    """
    _check_boot(n_boot, ci)
    for name, s in (("model_values", model_values), ("reference_values", reference_values)):
        if not isinstance(s, pd.Series):
            raise TypeError(f"{name} must be a pandas Series indexed by condition")
        if s.index.has_duplicates:
            raise ValueError(f"{name} has duplicated conditions")
    common = model_values.index.intersection(reference_values.index, sort=False)
    m = model_values.reindex(common).to_numpy(dtype=np.float64)
    b = reference_values.reindex(common).to_numpy(dtype=np.float64)
    keep = ~(np.isnan(m) | np.isnan(b))
    diff = m[keep] - b[keep]
    n = int(diff.size)
    if n == 0:
        return {
            "mean_diff": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "win_rate": np.nan,
            "n": 0,
        }
    mean, low, high = bootstrap_ci(diff, n_boot=n_boot, ci=ci, seed=seed)
    win_rate = (np.count_nonzero(diff > 0) + 0.5 * np.count_nonzero(diff == 0)) / n
    return {"mean_diff": mean, "ci_low": low, "ci_high": high, "win_rate": float(win_rate), "n": n}


def _as_wide(per_condition: pd.DataFrame) -> pd.DataFrame:
    """Wide (condition x metric) view of a wide or tidy (condition, metric, value) table."""
    if not isinstance(per_condition, pd.DataFrame):
        raise TypeError("per_condition must be a pandas DataFrame")
    if {"condition", "metric", "value"}.issubset(per_condition.columns):
        if per_condition.duplicated(["condition", "metric"]).any():
            raise ValueError("per_condition has several values for a (condition, metric)")
        wide = per_condition.pivot(index="condition", columns="metric", values="value")
        order = [m for m in per_condition["metric"].unique()]
        wide = wide[order]
        wide.columns.name = None
        return wide
    numeric = per_condition.select_dtypes(include="number")
    if numeric.shape[1] == 0:
        raise ValueError(
            "per_condition needs metric columns (wide) or condition/metric/value (tidy)"
        )
    return numeric


def summarise_metrics(
    per_condition: pd.DataFrame,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over conditions of every metric, with a bootstrap confidence interval.

    Parameters
    ----------
    per_condition
        Wide table (index condition, one numeric column per metric, as returned by
        :func:`perturbation_metrics`) or tidy table with ``condition``, ``metric``, ``value``
        (as returned by :func:`evaluate_predictions`).
    n_boot, ci, seed
        As in :func:`bootstrap_ci` (the same seed for every metric).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric``, ``value`` (mean over the conditions where it is not NaN),
        ``ci_low``, ``ci_high`` and ``n_conditions`` (number of non-NaN values); one row per
        metric in column / first-appearance order.
    """
    _check_boot(n_boot, ci)
    wide = _as_wide(per_condition)
    rows = []
    for metric in wide.columns:
        values = wide[metric].to_numpy(dtype=np.float64)
        mean, low, high = bootstrap_ci(values, n_boot=n_boot, ci=ci, seed=seed)
        rows.append(
            {
                "metric": str(metric),
                "value": mean,
                "ci_low": low,
                "ci_high": high,
                "n_conditions": int(np.count_nonzero(~np.isnan(values))),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high", "n_conditions"])


def subgroup_summary(
    per_condition: pd.DataFrame,
    subgroups: pd.Series,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of every metric per test subgroup (Norman: combo_seen0/1/2, unseen_single).

    Reproduces the per-subgroup means of the reference's ``norman_drilldown.ipynb`` (mean of the
    per-condition values of the conditions in each GEARS test subgroup), with bootstrap
    intervals.

    Parameters
    ----------
    per_condition
        Wide or tidy per-condition table, as for :func:`summarise_metrics`.
    subgroups
        Series condition -> subgroup, e.g. ``simulation_split(...)["subgroup"]``. Conditions
        without a subgroup (missing or not in the Series) are left out.
    n_boot, ci, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    pandas.DataFrame
        Columns ``subgroup``, ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n_conditions``;
        subgroups in the order ``unseen_single``, ``combo_seen0``, ``combo_seen1``,
        ``combo_seen2`` (as :data:`perturb_assets.core.gears.SUBGROUPS`), then any others
        sorted.
    """
    from perturb_assets.core.gears.split import SUBGROUPS

    if not isinstance(subgroups, pd.Series):
        raise TypeError("subgroups must be a pandas Series indexed by condition")
    wide = _as_wide(per_condition)
    labels = wide.index.map(subgroups)
    present = pd.unique(pd.Series(labels).dropna())
    order = [s for s in SUBGROUPS if s in set(present)]
    order += sorted(str(s) for s in present if s not in SUBGROUPS)
    columns = ["subgroup", "metric", "value", "ci_low", "ci_high", "n_conditions"]
    frames = []
    for group in order:
        part = summarise_metrics(wide[labels == group], n_boot=n_boot, ci=ci, seed=seed)
        part.insert(0, "subgroup", group)
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
