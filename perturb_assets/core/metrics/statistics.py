"""Summaries of per-condition metrics: bootstrap CIs, paired comparisons, subgroup tables.

A benchmark number is a mean over test conditions; :func:`bootstrap_ci` gives its percentile
interval and :func:`paired_comparison` the mean difference of two models over the conditions
both scored (resampling conditions jointly), as the benchmark table reports them against Train
Mean.

Multiple comparisons. Each paired comparison also has a two-sided p-value: the Wilcoxon
signed-rank test of the per-condition differences (:func:`scipy.stats.wilcoxon`; a
nonparametric paired test on the same conditions the bootstrap resamples, and, unlike a
bootstrap p-value, not floored at ``1 / n_boot``, which a Holm correction over hundreds of
hypotheses needs). :func:`holm_adjust` gives Holm's step-down adjusted p-values and
:func:`holm_levels` the per-hypothesis confidence levels ``1 - alpha / (m - rank + 1)`` at
which :func:`holm_interval` cuts the same bootstrap resamples into Bonferroni-Holm style
simultaneous intervals.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "bootstrap_ci",
    "bootstrap_ratio_ci",
    "holm_adjust",
    "holm_interval",
    "holm_levels",
    "paired_comparison",
    "paired_comparisons",
    "paired_differences",
    "wilcoxon_p",
    "wilcoxon_p_batch",
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
    return values[_boot_draws(values.size, n_boot, seed)].mean(axis=1)


@functools.lru_cache(maxsize=16)
def _boot_draws(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The resampled positions of ``n`` values: they depend on the size and the seed only, so
    the benchmark table's thousands of rows of a few sizes draw them a few times (read-only)."""
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    draws.flags.writeable = False
    return draws


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


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped).

    1.0 when no difference is non-zero (nothing to tell the two apart), NaN when ``diff`` is
    empty. The p-value is scipy's ``wilcoxon(diff, zero_method="wilcox")`` with
    ``method="auto"``: the exact null distribution for up to 50 differences without ties or
    zeros, the exact sign-flip distribution for up to 13 differences with ties or zeros, the
    normal approximation otherwise. The second case is computed here by enumerating the
    sign flips at once (:func:`_sign_flip_p`), the same value as scipy's
    ``permutation_test``, which scores one flip at a time and took most of `metrics`' time.
    """
    return float(wilcoxon_p_batch([diff])[0])


def wilcoxon_p_batch(diffs: Iterable[np.ndarray]) -> np.ndarray:
    """:func:`wilcoxon_p` of each array of differences, the same values bitwise.

    Samples that scipy scores with the same method and size go to ``scipy.stats.wilcoxon``
    together (``axis=-1``): one call per (size, method) instead of one per sample, as the
    benchmark table asks for thousands. scipy's ``auto`` rule is applied per sample first
    (:func:`_wilcoxon_method`), because on a stack it would look for ties in all of it.
    """
    from scipy.stats import wilcoxon

    samples = [_finite(d) for d in diffs]
    out = np.full(len(samples), np.nan)
    stacks: dict[tuple[int, str], list[int]] = {}
    for i, d in enumerate(samples):
        method = _wilcoxon_method(d)
        if method == "no_difference":
            out[i] = 1.0
        elif method == "sign_flip":
            out[i] = _sign_flip_p(d)
        elif method != "empty":
            stacks.setdefault((d.size, method), []).append(i)
    for (_, method), rows in stacks.items():
        stacked = np.stack([samples[i] for i in rows])
        result = wilcoxon(stacked, zero_method="wilcox", method=method, axis=-1)
        out[rows] = result.pvalue
    return out


def _finite(diff: np.ndarray) -> np.ndarray:
    d = np.asarray(diff, dtype=np.float64).ravel()
    return d[~np.isnan(d)]


def _wilcoxon_method(d: np.ndarray) -> str:
    """How :func:`wilcoxon_p` scores ``d`` (NaN-free): scipy's ``auto`` choice, made per
    sample, with the two cases it leaves no test to (``empty``, ``no_difference``)."""
    if d.size == 0:
        return "empty"
    nonzero = np.abs(d[d != 0])
    if nonzero.size == 0:
        return "no_difference"
    has_ties_or_zeros = nonzero.size < d.size or np.unique(nonzero).size < nonzero.size
    if has_ties_or_zeros and d.size <= _MAX_SIGN_FLIP_N:
        return "sign_flip"
    if has_ties_or_zeros or d.size > _MAX_EXACT_N:
        return "asymptotic"
    return "exact"


# scipy's "auto" uses the exact null distribution up to this size, without ties or zeros.
_MAX_EXACT_N = 50
# scipy's "auto" enumerates every sign flip up to this size (2**13 < its 9,999 resamples).
_MAX_SIGN_FLIP_N = 13


def _sign_flip_p(d: np.ndarray) -> float:
    """Exact two-sided p-value of the signed-rank sum R+ over all sign flips of ``d``.

    As scipy's ``permutation_test`` for ``wilcoxon``: zeros dropped from the ranks, average
    ranks for ties, ``2 * min(P(R+ <= r), P(R+ >= r))`` with its relative tolerance, capped
    at 1. Flipping a zero changes nothing, so the flips of the non-zero values give the same
    proportions.
    """
    from scipy.stats import rankdata

    nonzero = d[d != 0]
    ranks = rankdata(np.abs(nonzero), method="average")
    observed = float(ranks[nonzero > 0].sum())
    flips = (np.arange(2**nonzero.size)[:, None] >> np.arange(nonzero.size)) & 1
    null = flips @ ranks
    gamma = abs(np.finfo(np.float64).eps * 100 * observed)
    less = np.count_nonzero(null <= observed + gamma) / null.size
    greater = np.count_nonzero(null >= observed - gamma) / null.size
    return float(min(2.0 * min(less, greater), 1.0))


def paired_comparison(
    model_values: pd.Series,
    reference_values: pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    return_resamples: bool = False,
) -> dict[str, float | int | np.ndarray]:
    """Paired comparison of a model with a baseline (e.g. Train Mean) over the same conditions.

    Parameters
    ----------
    model_values, reference_values
        Per-condition values of one metric, indexed by condition. Only conditions in both are
        used, and a condition is dropped when either value is NaN.
    n_boot, seed, ci
        Bootstrap of the mean difference, as in :func:`bootstrap_ci` (conditions resampled as
        pairs).
    return_resamples
        Also return the ``n_boot`` resampled mean differences (key ``resamples``), from which
        :func:`holm_interval` cuts multiplicity-adjusted intervals.

    Returns
    -------
    dict
        ``mean_diff`` (mean of ``model - baseline``), ``ci_low``, ``ci_high`` (its bootstrap
        interval), ``win_rate`` (fraction of conditions where the model is higher, ties
        counting one half), ``p_value`` (:func:`wilcoxon_p` of the differences) and ``n``
        (number of paired conditions). NaN statistics (and empty ``resamples``) when
        ``n == 0``.
    """
    one = paired_comparisons([(model_values, reference_values)], n_boot, seed, ci,
                             return_resamples=return_resamples)  # fmt: skip
    return one[0]


def paired_comparisons(
    pairs: Sequence[tuple[pd.Series, pd.Series]],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    return_resamples: bool = False,
) -> list[dict[str, float | int | np.ndarray]]:
    """:func:`paired_comparison` of each ``(model_values, reference_values)`` pair, the same
    values, with the p-values computed together (:func:`wilcoxon_p_batch`)."""
    _check_boot(n_boot, ci)
    diffs = [paired_differences(model, reference) for model, reference in pairs]
    p_values = wilcoxon_p_batch(diffs)
    return [_paired_summary(diff, p, n_boot, seed, ci, return_resamples)
            for diff, p in zip(diffs, p_values, strict=True)]  # fmt: skip


def paired_differences(model_values: pd.Series, reference_values: pd.Series) -> np.ndarray:
    """``model - reference`` on the conditions both have, in ``model_values``' order, without
    the conditions where either is NaN (:func:`paired_comparison`)."""
    for name, s in (("model_values", model_values), ("reference_values", reference_values)):
        if not isinstance(s, pd.Series):
            raise TypeError(f"{name} must be a pandas Series indexed by condition")
        if s.index.has_duplicates:
            raise ValueError(f"{name} has duplicated conditions")
    where = reference_values.index.get_indexer(model_values.index)
    found = where >= 0
    m = model_values.to_numpy(dtype=np.float64)[found]
    b = reference_values.to_numpy(dtype=np.float64)[where[found]]
    keep = ~(np.isnan(m) | np.isnan(b))
    return m[keep] - b[keep]


def _paired_summary(
    diff: np.ndarray, p_value: float, n_boot: int, seed: int, ci: float, return_resamples: bool
) -> dict[str, float | int | np.ndarray]:
    n = int(diff.size)
    if n == 0:
        out: dict = dict.fromkeys(("mean_diff", "ci_low", "ci_high", "win_rate", "p_value"), np.nan)
        out["n"] = 0
        if return_resamples:
            out["resamples"] = np.empty(0)
        return out
    # The same draws as bootstrap_ci(diff, n_boot, ci, seed), kept for the adjusted intervals.
    means = _boot_means(diff, n_boot, seed)
    low, high = np.quantile(means, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    win_rate = (np.count_nonzero(diff > 0) + 0.5 * np.count_nonzero(diff == 0)) / n
    out = {
        "mean_diff": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "win_rate": float(win_rate),
        "p_value": float(p_value),
        "n": n,
    }
    if return_resamples:
        out["resamples"] = means
    return out


def _holm_order(p: np.ndarray) -> tuple[np.ndarray, int]:
    """Positions of the non-NaN p-values in ascending order (stable), and how many there are."""
    finite = np.flatnonzero(~np.isnan(p))
    return finite[np.argsort(p[finite], kind="stable")], int(finite.size)


def holm_adjust(p_values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), controlling the family-wise error rate.

    With the ``m`` non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted
    value of the ``k``-th is ``max_{j <= k} min(1, (m - j + 1) p_(j))``; a hypothesis is
    rejected at level ``alpha`` exactly when its adjusted p-value is ``<= alpha``. NaN
    p-values stay NaN and do not count in ``m``.

    Parameters
    ----------
    p_values
        Raw p-values of one family of hypotheses.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order, m = _holm_order(p)
    out = np.full(p.shape, np.nan)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def holm_levels(p_values: Iterable[float] | np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Per-hypothesis confidence levels ``1 - alpha / (m - rank + 1)`` of Holm's procedure.

    ``rank`` is the position (from 1) of the hypothesis's p-value in ascending order (ties in
    input order), ``m`` the number of non-NaN p-values; the smallest p-value gets the
    Bonferroni level ``1 - alpha / m``, the largest ``1 - alpha``. NaN p-values get NaN.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    p = np.asarray(p_values, dtype=np.float64).ravel()
    order, m = _holm_order(p)
    out = np.full(p.shape, np.nan)
    out[order] = 1.0 - alpha / (m - np.arange(m))
    return out


def holm_interval(resamples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval at ``level`` of bootstrap ``resamples`` (e.g. a :func:`holm_levels`
    level); NaN without resamples or level. Beyond ``1 - 2 / n_boot`` the percentiles are the
    extreme resamples, so a family of ``m`` hypotheses wants ``n_boot`` well above ``2 m / alpha``.
    """
    r = np.asarray(resamples, dtype=np.float64).ravel()
    if r.size == 0 or not np.isfinite(level):
        return (np.nan, np.nan)
    low, high = np.quantile(r, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return (float(low), float(high))


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
