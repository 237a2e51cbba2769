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
    ranking of *all* genes; here :func:`perturb_assets.core.de.top_de_genes`).
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

import numba
import numpy as np
import pandas as pd

from perturb_assets.core.gears import N_TOP_DE, parse_condition

__all__ = [
    "BASE_METRICS",
    "DE_METRICS",
    "METRICS",
    "bootstrap_ci",
    "de_lists_without_targets",
    "evaluate_predictions",
    "paired_comparison",
    "perturbation_metrics",
    "reference_compat_de_lists",
    "rowwise_pearson",
    "subgroup_summary",
    "summarise_metrics",
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

_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------------------------
# Row-wise Pearson correlation
# --------------------------------------------------------------------------------------------


def rowwise_pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of every row of ``x`` with the same row of ``y``.

    Vectorised equivalent of ``[scipy.stats.pearsonr(x[i], y[i])[0] for i in range(n)]``:
    the rows are centred, and ``r = <xc, yc> / (|xc| |yc|)``, clipped to ``[-1, 1]``.

    Parameters
    ----------
    x, y
        Arrays of shape ``(n, m)``.
    mask
        Optional boolean ``(n, m)`` array: only entries where it is True are used (row ``i`` is
        ``pearsonr(x[i, mask[i]], y[i, mask[i]])``).

    Returns
    -------
    numpy.ndarray
        ``float64`` array of length ``n``. NaN where the correlation is undefined, exactly where
        ``pearsonr`` gives NaN or fails: a row (of ``x`` or ``y``) whose used values are all
        equal, a row with fewer than two used values, or NaN among the used values.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be 2-D of the same shape; got {x.shape} and {y.shape}")
    n, m = x.shape
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise ValueError(f"mask has shape {mask.shape}; expected {x.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if mask is None:
            count = np.full(n, m)
            xc = x - x.mean(axis=1, keepdims=True)
            yc = y - y.mean(axis=1, keepdims=True)
        else:
            count = mask.sum(axis=1)
            xc = np.where(mask, x, 0.0)
            yc = np.where(mask, y, 0.0)
            xc -= (xc.sum(axis=1) / count)[:, None]
            yc -= (yc.sum(axis=1) / count)[:, None]
            xc[~mask] = 0.0
            yc[~mask] = 0.0
        sxx = np.vecdot(xc, xc)
        syy = np.vecdot(yc, yc)
        r = np.vecdot(xc, yc) / (np.sqrt(sxx) * np.sqrt(syy))
    r = np.clip(r, -1.0, 1.0)
    r[_constant_rows(x, mask, sxx) | _constant_rows(y, mask, syy) | (count < 2)] = np.nan
    return r


def _constant_rows(a: np.ndarray, mask: np.ndarray | None, centred_ss: np.ndarray) -> np.ndarray:
    """Rows whose (used) values are all exactly equal, as ``pearsonr`` tests it.

    An exactly constant row centres to values of at most ``m * eps * |value|`` (whatever the
    summation order), so only rows with a centred sum of squares that small are checked.
    """
    n, m = a.shape
    out = np.zeros(n, dtype=bool)
    if n == 0 or m == 0:
        return out
    rows = np.arange(n)
    first = np.zeros(n, dtype=np.int64) if mask is None else mask.argmax(axis=1)
    level = a[rows, first]
    with np.errstate(invalid="ignore", over="ignore"):
        maybe = ~(centred_ss > 4.0 * m * (m * _EPS * level) ** 2)  # NaN counts as "maybe"
    cand = np.flatnonzero(maybe)
    if cand.size:
        equal = a[cand] == level[cand, None]
        if mask is not None:
            equal |= ~mask[cand]
        out[cand] = equal.all(axis=1)
    return out


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_pearson_and_delta(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, i: int, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    """``out[i] = (pearson, pearson_delta)`` of row ``i``; ``zero[i]``: truth row all zero.

    Two passes: means, then centred sums of squares and products (``x - mean``, as
    ``pearsonr``). Rows that may be constant (centred sum of squares at rounding level) are
    checked exactly, as :func:`_constant_rows`.
    """
    g = pred.shape[1]
    eps = 2.220446049250313e-16
    sp = 0.0
    st = 0.0
    sdp = 0.0
    sdt = 0.0
    for j in range(g):
        p = pred[i, j]
        t = truth[i, j]
        c = ctrl[j]
        sp += p
        st += t
        sdp += p - c
        sdt += t - c
    mp = sp / g
    mt = st / g
    mdp = sdp / g
    mdt = sdt / g
    spp = 0.0
    stt = 0.0
    spt = 0.0
    sdpp = 0.0
    sdtt = 0.0
    sdpt = 0.0
    for j in range(g):
        p = pred[i, j]
        t = truth[i, j]
        c = ctrl[j]
        a = p - mp
        b = t - mt
        u = (p - c) - mdp
        v = (t - c) - mdt
        spp += a * a
        stt += b * b
        spt += a * b
        sdpp += u * u
        sdtt += v * v
        sdpt += u * v
    r = spt / (np.sqrt(spp) * np.sqrt(stt))
    rd = sdpt / (np.sqrt(sdpp) * np.sqrt(sdtt))
    # clip to [-1, 1] as pearsonr does; comparisons keep NaN (no min/max on NaN)
    if r > 1.0:
        r = 1.0
    elif r < -1.0:
        r = -1.0
    if rd > 1.0:
        rd = 1.0
    elif rd < -1.0:
        rd = -1.0
    bound = 4.0 * g * (g * eps) ** 2
    const_p = False
    const_t = False
    const_dp = False
    const_dt = False
    if not spp > bound * pred[i, 0] ** 2:
        const_p = True
        for j in range(g):
            if pred[i, j] != pred[i, 0]:
                const_p = False
                break
    if not stt > bound * truth[i, 0] ** 2:
        const_t = True
        for j in range(g):
            if truth[i, j] != truth[i, 0]:
                const_t = False
                break
    d0 = pred[i, 0] - ctrl[0]
    if not sdpp > bound * d0**2:
        const_dp = True
        for j in range(g):
            if pred[i, j] - ctrl[j] != d0:
                const_dp = False
                break
    d0 = truth[i, 0] - ctrl[0]
    if not sdtt > bound * d0**2:
        const_dt = True
        for j in range(g):
            if truth[i, j] - ctrl[j] != d0:
                const_dt = False
                break
    if const_p or const_t:
        r = np.nan
    if const_dp or const_dt:
        rd = np.nan
    out[i, 0] = r
    out[i, 1] = rd
    zero[i] = const_t and truth[i, 0] == 0.0


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _pearson_and_delta_serial(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    for i in range(pred.shape[0]):
        _row_pearson_and_delta(pred, truth, ctrl, i, out, zero)


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _pearson_and_delta_parallel(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    for i in numba.prange(pred.shape[0]):
        _row_pearson_and_delta(pred, truth, ctrl, i, out, zero)


#: Matrices with fewer entries than this use the serial kernel (thread start-up costs more).
_PARALLEL_MIN_ENTRIES = 1 << 22


def _pearson_and_delta(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(pearson, pearson_delta)`` and the all-zero-truth flag (float64 C arrays)."""
    n, g = truth.shape
    out = np.full((n, 2), np.nan)
    zero = np.zeros(n, dtype=bool)
    if n == 0:
        return out, zero
    if g < 2:  # pearsonr needs two values
        zero[:] = (truth == 0.0).all(axis=1)
        return out, zero
    if n * g >= _PARALLEL_MIN_ENTRIES and numba.get_num_threads() > 1:
        _pearson_and_delta_parallel(pred, truth, ctrl, out, zero)
    else:
        _pearson_and_delta_serial(pred, truth, ctrl, out, zero)
    return out, zero


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
# DE-gene lists without target genes
# --------------------------------------------------------------------------------------------


def de_lists_without_targets(
    de_genes: Mapping[str, Sequence[str]],
    gene_names: pd.Series,
    n_top: int = N_TOP_DE,
) -> dict[str, list[str]]:
    """Ranked DE lists with the perturbation's target genes removed, then truncated.

    The correct rule, as ``top_de_genes(..., exclude_targets=True)``: every gene of
    :func:`perturb_assets.core.gears.parse_condition` (both genes of ``A+B``, ``A`` of
    ``A+ctrl``) is removed, mapped to *every* var whose symbol it is. To obtain exactly the
    first ``n_top`` non-target genes, the input lists must be ranked at least ``n_top`` plus
    the number of target vars long (e.g. ``top_de_genes(adata, n_top=n_top + 2)``); shorter
    lists give shorter results.

    Parameters
    ----------
    de_genes
        Condition -> ranked ``var_names``.
    gene_names
        Gene symbol of every var: Series indexed by ``var_names`` (``adata.var["gene_name"]``).
    n_top
        Length of the returned lists.

    Returns
    -------
    dict of str to list of str
        Condition -> the first ``n_top`` ranked genes that are not targets.
    """
    symbols = pd.Series(np.asarray(gene_names, dtype=object), index=gene_names.index)
    symbol_to_vars: dict[Any, set[Any]] = {}
    for var, sym in symbols.items():
        symbol_to_vars.setdefault(sym, set()).add(var)
    out: dict[str, list[str]] = {}
    for cond, ranked in de_genes.items():
        drop: set[Any] = set()
        for gene in parse_condition(cond):
            drop |= symbol_to_vars.get(gene, set())
        out[cond] = [v for v in ranked if v not in drop][:n_top]
    return out


def reference_compat_de_lists(
    de_genes: Mapping[str, Sequence[str]],
    gene_names: pd.Series,
    dataset: str,
    n_top: int = N_TOP_DE,
) -> dict[str, list[str]]:
    """DE lists without target genes exactly as the paper's code builds them (bug included).

    Re-implements ``_filt_self_from_de`` of ``notebooks/bulk_models.ipynb``, which feeds the
    reference's ``pearson_delta_de_no_knockout`` (the paper's "Pearson Delta without target
    genes"). For each condition it strips ``"ctrl+"`` and ``"+ctrl"`` from the condition name
    and then, *depending on the dataset*:

    * **Norman** (``is_norman=True``): it looks the whole remaining string up in a
      symbol -> var dict and removes that var. For a single ``A+ctrl`` this is ``"A"`` and the
      target is removed. For a combination ``A+B`` the string is ``"A+B"``, which is no gene,
      so the lookup gives ``None`` and ``v[v != None]`` removes **nothing**: combinations keep
      *both* targets in their top 20. (The code that splits on ``"+"`` and removes both genes
      sits in the *other* branch, the one for datasets without combinations.)
    * **other datasets**: ``A+B`` is split on ``"+"`` and both genes are removed; a single
      removes its gene. (Adamson and Replogle have singles only.)

    Hence on Norman this differs from :func:`de_lists_without_targets` /
    ``top_de_genes(exclude_targets=True)`` for every combination whose top 20 contains a
    target: there, the reference keeps the (strongly up-regulated, CRISPRa) target genes,
    which are trivial to predict for models that know the perturbed gene.

    Further details reproduced: the symbol -> var dict is ``dict(zip(symbols, var_names))``,
    so for a symbol shared by several vars only the *last* one is removed; a target that is not
    measured removes nothing; every occurrence of the removed var is dropped; the reference
    parses the condition out of a key ``"<cell type>_<condition>_<dose>"`` by
    ``split("_")[1]``, so only the part of the condition before a ``"_"`` counts; and the list
    is cut to ``n_top`` *after* the removal (the reference filters the full ranking of all
    genes, so a removed target is replaced by the 21st gene).

    Parameters
    ----------
    de_genes
        Condition -> ranked ``var_names``, ranked at least ``n_top + 2`` long to reproduce the
        refill (e.g. ``top_de_genes(adata, n_top=n_top + 2)``, or the full ranking).
    gene_names
        Gene symbol of every var: Series indexed by ``var_names`` (``adata.var["gene_name"]``).
    dataset
        Dataset name; names starting with ``"norman"`` (case-insensitive) take the Norman
        branch (``is_norman=True`` in the reference).
    n_top
        Length of the returned lists.

    Returns
    -------
    dict of str to list of str
        Condition -> the first ``n_top`` genes left after the reference's removal.

    Raises
    ------
    ValueError
        For a non-Norman condition with more than two genes (the reference asserts two).
    """
    is_norman = str(dataset).strip().lower().startswith("norman")
    symbol_to_var = dict(zip(np.asarray(gene_names, dtype=object), gene_names.index, strict=True))
    out: dict[str, list[str]] = {}
    for cond, ranked in de_genes.items():
        name = str(cond).split("_")[0].replace("ctrl+", "").replace("+ctrl", "")
        if not is_norman and "+" in name:
            parts = name.split("+")
            if len(parts) != 2:
                raise ValueError(f"condition {cond!r}: the reference expects two genes")
            drop = {symbol_to_var.get(part) for part in parts}
        else:
            drop = {symbol_to_var.get(name)}
        drop.discard(None)
        out[cond] = [v for v in ranked if v not in drop][:n_top]
    return out


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


def paired_comparison(
    model_values: pd.Series,
    baseline_values: pd.Series,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, float | int]:
    """Paired comparison of a model with a baseline (e.g. Train Mean) over the same conditions.

    Parameters
    ----------
    model_values, baseline_values
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
    for name, s in (("model_values", model_values), ("baseline_values", baseline_values)):
        if not isinstance(s, pd.Series):
            raise TypeError(f"{name} must be a pandas Series indexed by condition")
        if s.index.has_duplicates:
            raise ValueError(f"{name} has duplicated conditions")
    common = model_values.index.intersection(baseline_values.index, sort=False)
    m = model_values.reindex(common).to_numpy(dtype=np.float64)
    b = baseline_values.reindex(common).to_numpy(dtype=np.float64)
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
        ``combo_seen2`` (as :data:`perturb_assets.core.splits.SUBGROUPS`), then any others
        sorted.
    """
    from perturb_assets.core.splits import SUBGROUPS

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
