"""Evaluation metrics of Csendes et al. 2025, computed for all conditions at once.

The paper scores every test condition (perturbation) by Pearson correlations between the
predicted and the true pseudobulk profile (mean log-normalised expression over the condition's
cells) and summarises them by the mean over conditions. This module reproduces the authors'
reference code (``turbine-ai/PerturbSeqPredBenchmark``: ``eval`` and ``_filt_self_from_de`` in
``notebooks/bulk_models.ipynb``, whose outputs are the paper's tables, and
``compute_perturbation_metrics`` in ``scgpt/utils/util.py``, used for scGPT) and computes it
without a per-condition ``scipy.stats.pearsonr`` loop.

Metrics (one value per condition)
---------------------------------
``ctrl`` is the mean profile of *all* control cells (the reference takes
``adata.to_df().groupby("condition").mean().loc["ctrl"]``).

``pearson``
    ``pearsonr(pred, truth)`` over all genes.
``pearson_delta``
    ``pearsonr(pred - ctrl, truth - ctrl)`` over all genes.
``pearson_de_delta`` (the reference's ``pearson_delta_de``)
    ``pearsonr`` of the same deltas restricted to the condition's top-20 DE genes:
    ``adata.uns["rank_genes_groups_cov_all"][key][:20]`` in the reference (scanpy t-test
    ranking of *all* genes; here :func:`perturb_assets.core.pp.top_de_genes`).
``pearson_delta_de_no_target``
    As ``pearson_de_delta``, on the top-20 DE genes after removing the CRISPR target gene(s)
    of the condition (both genes of a combination): the lists of
    ``top_de_genes(..., exclude_targets=True)`` or :func:`de_lists_without_targets`.
``pearson_delta_de_no_target_reference_compat``
    The reference's ``pearson_delta_de_no_knockout``: the lists of
    :func:`reference_compat_de_lists`, which keep *both* targets of Norman combinations (see
    there). These are the lists behind the paper's "Pearson Delta without target genes".

How the reference's details are reproduced
------------------------------------------
* **DE-gene lookup.** The reference takes the first 20 names of the ranked list and then the
  positions of the columns that are in that list (``[i for i, g in enumerate(cols) if g in
  de]``). Hence names that are not columns are ignored, duplicate names count once, and the
  genes enter ``pearsonr`` in column order. :func:`perturbation_metrics` does the same; a
  condition with fewer than two of its DE genes among the columns gets NaN.
* **All-zero truth is skipped.** ``compute_perturbation_metrics`` drops conditions whose true
  profile is zero in every gene from ``pearson`` and ``pearson_delta``, and conditions whose
  true profile is zero on all their DE genes from the DE metrics. Here such conditions are
  left out of the result (all genes zero) or get NaN in that DE column (DE genes zero). The
  bulk-model notebook has no such rule, but a real pseudobulk is never all zero, so both
  reference paths agree.
* **Undefined correlations (constant input) are NaN.** ``scipy.stats.pearsonr`` returns NaN
  (with a ``ConstantInputWarning``) when either input is exactly constant, e.g. the delta of a
  prediction equal to the control mean ("no change" baseline), or a constant prediction. The
  same cases give NaN here, detected exactly as scipy does (every value equal to the first),
  and no warning is emitted. (The reference then takes ``np.mean`` of the per-condition values,
  so a single NaN makes its summary NaN; :func:`summarise_metrics`, :func:`subgroup_summary`
  and :func:`paired_comparison` instead leave NaN conditions out and report how many values
  were used.) Any NaN in the inputs gives NaN, as in scipy.
* **Precision.** Everything is computed in float64 (scipy computes float32 inputs in float32).
  Values agree with a ``pearsonr`` loop on float64 data to ~1e-15.

Performance
-----------
``pearson`` and ``pearson_delta`` of all conditions come from one compiled (numba) two-pass
kernel -- row means, then centred sums of squares and cross-products, the textbook stable
formula -- that reads each matrix twice and allocates no temporaries. DE metrics gather the
(at most 20) DE values of every condition into an ``(n_conditions, 20)`` array and use the
vectorised :func:`rowwise_pearson` (centre rows, normalise, dot). See
``python -m perturb_assets.benchmarks.metrics`` for timings against a ``pearsonr`` loop.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from perturb_assets.core.gears.format import N_TOP_DE
from perturb_assets.core.metrics.pearson import _pearson_and_delta, rowwise_pearson

__all__ = [
    "BASE_METRICS",
    "DE_METRICS",
    "METRICS",
    "evaluate_predictions",
    "perturbation_metrics",
]

#: Metrics on all genes, always computed.
BASE_METRICS: tuple[str, ...] = ("pearson", "pearson_delta")
#: Metrics on DE-gene lists; the lists are supplied by the caller under these names.
DE_METRICS: tuple[str, ...] = (
    "pearson_de_delta",
    "pearson_delta_de_no_target",
    "pearson_delta_de_no_target_reference_compat",
)
#: All metric names, in reporting order.
METRICS: tuple[str, ...] = BASE_METRICS + DE_METRICS


# --------------------------------------------------------------------------------------------
# Per-condition metrics
# --------------------------------------------------------------------------------------------


def _preview(labels: Iterable[Any], k: int = 5) -> str:
    labels = list(labels)
    more = f" ... ({len(labels)} in all)" if len(labels) > k else ""
    return f"{labels[:k]}{more}"


def _aligned_arrays(
    pred: pd.DataFrame, truth: pd.DataFrame, ctrl_mean: pd.Series | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 C-contiguous ``pred`` and ``truth`` in ``truth``'s order, and the control mean."""
    for name, frame in (("pred", pred), ("truth", truth)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame (conditions x genes)")
        if frame.index.has_duplicates:
            dup = frame.index[frame.index.duplicated()].unique()
            raise ValueError(f"{name} has duplicated conditions: {_preview(dup)}")
        if frame.columns.has_duplicates:
            dup = frame.columns[frame.columns.duplicated()].unique()
            raise ValueError(f"{name} has duplicated genes: {_preview(dup)}")
    missing_rows = truth.index[~truth.index.isin(pred.index)]
    if len(missing_rows):
        raise ValueError(
            f"pred lacks {len(missing_rows)} condition(s) of truth: {_preview(missing_rows)}"
        )
    missing_cols = truth.columns[~truth.columns.isin(pred.columns)]
    if len(missing_cols):
        raise ValueError(
            f"pred lacks {len(missing_cols)} gene(s) of truth: {_preview(missing_cols)}"
        )
    if not (pred.index.equals(truth.index) and pred.columns.equals(truth.columns)):
        pred = pred.reindex(index=truth.index, columns=truth.columns)
    p = np.ascontiguousarray(pred.to_numpy(dtype=np.float64))
    t = np.ascontiguousarray(truth.to_numpy(dtype=np.float64))
    if isinstance(ctrl_mean, pd.Series):
        absent = truth.columns[~truth.columns.isin(ctrl_mean.index)]
        if len(absent):
            raise ValueError(f"ctrl_mean lacks {len(absent)} gene(s) of truth: {_preview(absent)}")
        if ctrl_mean.index.has_duplicates:
            raise ValueError("ctrl_mean has duplicated genes")
        c = ctrl_mean.reindex(truth.columns).to_numpy(dtype=np.float64)
    else:
        c = np.asarray(ctrl_mean, dtype=np.float64)
        if c.shape != (truth.shape[1],):
            raise ValueError(
                f"ctrl_mean must be a Series over genes or an array of length "
                f"{truth.shape[1]} (truth's columns, in order); got shape {c.shape}"
            )
    return p, t, np.ascontiguousarray(c)


def _de_index(
    de_genes: Mapping[Hashable, Sequence[Hashable]],
    conditions: pd.Index,
    genes: pd.Index,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Column positions of the first ``N_TOP_DE`` DE genes of every condition.

    Returns ``(idx, mask)`` of shape ``(n_conditions, N_TOP_DE)``: each row holds the distinct
    column positions of the condition's DE genes in column order (as the reference), padded
    with 0 where ``mask`` is False. Genes that are not columns are dropped.
    """
    n = len(conditions)
    absent = [c for c in conditions if c not in de_genes]
    if absent:
        raise ValueError(
            f"DE-gene lists {name!r} have no entry for {len(absent)} condition(s): "
            f"{_preview(absent)}"
        )
    lists = [list(de_genes[c][:N_TOP_DE]) for c in conditions]
    lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=n)
    total = int(lengths.sum())
    idx = np.full((n, N_TOP_DE), -1, dtype=np.int64)
    if total:
        position = dict(zip(genes, range(len(genes)), strict=True))
        pos = np.fromiter(
            (position.get(v, -1) for v in chain.from_iterable(lists)), np.int64, count=total
        )
        rows = np.repeat(np.arange(n), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        idx[rows, np.arange(total) - starts] = pos
        idx.sort(axis=1)  # column order, absent genes (-1) first
        idx[:, 1:][idx[:, 1:] == idx[:, :-1]] = -1  # a duplicated name counts once
    mask = idx >= 0
    return np.where(mask, idx, 0), mask


def _metrics_wide(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    ctrl_mean: pd.Series | np.ndarray,
    de_lists: Mapping[str, Mapping[Hashable, Sequence[Hashable]]],
) -> pd.DataFrame:
    """``pearson``, ``pearson_delta`` and one DE metric per entry of ``de_lists``."""
    for key in de_lists:
        if key in BASE_METRICS:
            raise ValueError(f"DE-list name {key!r} collides with a base metric")
    p, t, c = _aligned_arrays(pred, truth, ctrl_mean)
    n = t.shape[0]
    base, zero = _pearson_and_delta(p, t, c)
    columns: dict[str, np.ndarray] = {"pearson": base[:, 0], "pearson_delta": base[:, 1]}
    rows = np.arange(n)[:, None]
    for key, lists in de_lists.items():
        idx, mask = _de_index(lists, truth.index, truth.columns, key)
        t_de = t[rows, idx]
        c_de = c[idx]
        r_de = rowwise_pearson(p[rows, idx] - c_de, t_de - c_de, mask)
        # compute_perturbation_metrics skips conditions whose truth is 0 on all DE genes
        r_de[np.all(~mask | (t_de == 0.0), axis=1)] = np.nan
        columns[key] = r_de
    out = pd.DataFrame(columns, index=truth.index.copy())
    out.index.name = "condition"
    return out.loc[~zero]


def perturbation_metrics(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    ctrl_mean: pd.Series,
    de_genes: Mapping[Hashable, Sequence[Hashable]] | None = None,
) -> pd.DataFrame:
    """Per-condition Pearson metrics of predicted pseudobulk profiles, as the paper computes.

    Parameters
    ----------
    pred
        Predicted mean expression, conditions x genes. Must contain every condition (row) and
        gene (column) of ``truth``; it is aligned to ``truth`` by labels, and extra rows or
        columns are ignored.
    truth
        True mean expression (pseudobulk), conditions x genes; its row order is kept.
    ctrl_mean
        Mean expression of all control cells: a Series indexed by genes (aligned by label), or
        an array in the order of ``truth``'s columns.
    de_genes
        Optional mapping condition -> ranked DE gene names (``var_names``, i.e. column labels),
        e.g. ``top_de_genes(adata)``. The first :data:`N_TOP_DE` (20) names are used; names
        that are not columns are ignored and a repeated name counts once, as in the reference.
        Every condition of ``truth`` needs an entry.

    Returns
    -------
    pandas.DataFrame
        Index ``condition`` (``truth``'s order), columns ``pearson``, ``pearson_delta`` and, when
        ``de_genes`` is given, ``pearson_de_delta``. Conditions whose true profile is zero in
        every gene are left out; ``pearson_de_delta`` is NaN where the true profile is zero on
        all the condition's DE genes (both skipped by the reference). Values are NaN where
        ``scipy.stats.pearsonr`` gives NaN: an exactly constant input (e.g. a delta of a
        prediction equal to ``ctrl_mean``), fewer than two usable DE genes, or NaN input.

    Raises
    ------
    TypeError
        If ``pred`` or ``truth`` is not a DataFrame.
    ValueError
        If ``pred`` lacks a condition or gene of ``truth``, labels are duplicated, ``ctrl_mean``
        does not cover the genes, or ``de_genes`` lacks a condition.
    """
    de_lists = {} if de_genes is None else {"pearson_de_delta": de_genes}
    return _metrics_wide(pred, truth, ctrl_mean, de_lists)


# --------------------------------------------------------------------------------------------
# Tidy evaluation table
# --------------------------------------------------------------------------------------------


def evaluate_predictions(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    ctrl_mean: pd.Series,
    de_lists: Mapping[str, Mapping[Hashable, Sequence[Hashable]]],
    subgroups: pd.Series | None = None,
) -> pd.DataFrame:
    """All metrics of one model as a tidy table.

    Parameters
    ----------
    pred, truth, ctrl_mean
        As in :func:`perturbation_metrics`.
    de_lists
        Metric name -> DE lists (condition -> ranked ``var_names``), e.g.
        ``{"pearson_de_delta": top_de_genes(adata), "pearson_delta_de_no_target":
        top_de_genes(adata, exclude_targets=True), "pearson_delta_de_no_target_reference_compat":
        reference_compat_de_lists(top_de_genes(adata, n_top=22), ...)}``. Each becomes a metric
        computed like ``pearson_de_delta``. Names must differ from ``pearson``/``pearson_delta``.
    subgroups
        Optional Series condition -> subgroup (e.g. ``simulation_split(...)["subgroup"]``);
        conditions it lacks get a missing subgroup.

    Returns
    -------
    pandas.DataFrame
        Columns ``condition``, ``metric``, ``value`` (and ``subgroup`` when given); one row per
        condition and metric, metrics in the order ``pearson``, ``pearson_delta``, then
        ``de_lists``' order. Skipping and NaN rules as in :func:`perturbation_metrics`.
    """
    wide = _metrics_wide(pred, truth, ctrl_mean, de_lists)
    long = wide.reset_index().melt(id_vars="condition", var_name="metric", value_name="value")
    if subgroups is not None:
        long["subgroup"] = long["condition"].map(subgroups)
    return long
