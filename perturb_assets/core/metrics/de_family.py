"""cell-eval's DE metric family (cell-eval 0.8.2, pdex DE), computed by our own code.

cell-eval runs pdex's differential expression twice, on the real cells (each perturbation
against the control cells) and on the predicted cells (against the *predicted* control cells),
and then compares the two DE tables gene by gene. This module does both without pdex:

DE tables (:class:`DETable`)
    :func:`real_de_table` is pdex's ``mode="ref"`` table with cell-eval's settings
    (``is_log1p=True``, ``geometric_mean=True``, ``epsilon=0``): ``target_mean`` and
    ``ref_mean`` are ``expm1`` of the mean log1p expression; ``log2_fold_change`` is
    ``log2(target_mean / ref_mean)`` (``0/0`` is 0, one-sided zeros ``±inf``); ``p_value`` is
    the two-sided asymptotic Mann-Whitney U test with continuity and tie correction (scipy's
    ``mannwhitneyu(method="asymptotic")``, numba_mwu's formula, operation for operation);
    ``statistic`` is U of the perturbation's cells; ``fdr`` is Benjamini-Hochberg per
    perturbation (scipy's ``false_discovery_control``). U and the tie term are computed
    exactly, in integers, for all perturbations at once (numba, gene blocks); the means are
    taken as pdex takes them (in the data's dtype), so the table is pdex's bit for bit.

    :func:`pseudobulk_de_table` is the same table for a pseudo-bulk prediction, treated the way
    cell-eval's ``build_base_mean_adata`` treats a mean profile: the predicted cells of a
    condition are its profile repeated as many times as the condition has real cells. A
    constant group has a closed-form U (``n1 * (#ref < v + #ref == v / 2)``) and tie term, so
    no cell is materialised. The group's mean is the profile, rounded as numpy rounds the mean
    of the repeated cells (float32 data: ulps), so the table is pdex's on those cells.

Metrics (:func:`de_family_metrics`, per condition, under cell-eval's names; "significant" is
float32 ``fdr < 0.05``, genes are ranked by float32 ``|log2_fold_change|``, descending, ties
in gene order; cell-eval casts its DE tables to float32)
    ``overlap_at_N``, ``overlap_at_{50,100,200,500}``: ``k = min(K, n_real)`` with ``K = n_real``
    for ``N``; ``|top-k real ∩ top-k predicted| / k`` over the significant genes.
    ``precision_at_N``, ``precision_at_{50,...}``: cell-eval's definition, ``k = min(K, n_pred)``
    with ``K = n_pred`` for ``N``; ``|top-k real ∩ top-k predicted| / k``.
    ``de_direction_match``: over the real significant genes, the fraction whose fold change
    has the predicted sign (``sign(0)`` is 0).
    ``de_spearman_lfc_sig``: Spearman correlation (average ranks) of real and predicted fold
    changes over the real significant genes.
    ``de_sig_genes_recall``: ``|real sig ∩ predicted sig| / |real sig|``.
    ``de_nsig_counts_real``, ``de_nsig_counts_pred``: the numbers of significant genes.
    ``de_spearman_sig``: Spearman correlation, over conditions, of the real and predicted
    numbers of significant genes; one number for the whole set, repeated on every condition
    (as cell-eval reports it), so its bootstrap CI over conditions is not meaningful.
    ``pr_auc``, ``roc_auc``: real significance as the label, ``-log10`` of the predicted FDR
    (clipped to ``[1e-10, 1]``) as the score; average precision and ROC AUC, as sklearn
    computes them. NaN when all genes have one label.

Where we differ from cell-eval 0.8.2 (the ``<name>_reference_compat`` rows are cell-eval's
numbers, asserted equal to cell-eval's by the tests)
    1. *Control cells* (cell-eval issues #175, #183, #196): cell-eval tests the predicted cells
       against the prediction's own control cells, so a submission can move every DE metric by
       editing its control cells. Here the predicted cells are always tested against the
       *real* control cells. cell-eval given the real control cells as the prediction's
       controls (what ``build_base_mean_adata`` does) scores the same, so no twin is needed.
    2. *Undefined overlaps*: cell-eval scores ``overlap_at_*`` 0.0 for a condition with no real
       significant gene and ``precision_at_*`` 0.0 for one with no predicted significant gene
       (and every condition 0.0 when either side has none at all). There is no list to
       recover, so ours is NaN (left out of means and CIs); ``overlap_at_*_reference_compat``
       and ``precision_at_*_reference_compat`` are cell-eval's zeros.
    3. *Ties*: cell-eval's polars ``rank("ordinal", descending=True)`` does not keep tied
       fold changes in gene order (a prediction equal to the control mean has many tied,
       near-zero ones), so which tied genes make a top-k list is polars' choice. Ours breaks
       ties by gene order; the ``overlap_at_*`` / ``precision_at_*`` twins use polars' rank.
    4. ``de_spearman_sig`` leaves out, in cell-eval, every condition without a real
       significant gene (a left join from the real side), so over-calling DE where there is
       none costs nothing. Ours correlates the counts over all conditions;
       ``de_spearman_sig_reference_compat`` is cell-eval's.
    ``de_direction_match``, ``de_spearman_lfc_sig`` and ``de_sig_genes_recall`` are NaN where
    there is no real significant gene, as in cell-eval (which leaves them out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numba
import numpy as np
import pandas as pd
import polars as pl
from scipy import sparse
from scipy.stats import false_discovery_control, rankdata

from perturb_assets.core.pp.de_statistics import _lower_bound, _sorted_reference, _upper_bound

__all__ = [
    "ControlCells",
    "DE_FAMILY_FDR",
    "DE_FAMILY_METRICS",
    "DE_FAMILY_TOP_K",
    "DETable",
    "de_family_metrics",
    "pseudobulk_de_table",
    "real_de_table",
]

DE_FAMILY_FDR = 0.05
DE_FAMILY_TOP_K: tuple[int, ...] = (50, 100, 200, 500)
_OVERLAPS = tuple(
    f"{kind}_at_{k}" for kind in ("overlap", "precision") for k in ("N", *DE_FAMILY_TOP_K)
)
#: Metric names of :func:`de_family_metrics`, twins included.
DE_FAMILY_METRICS: tuple[str, ...] = (
    *_OVERLAPS,
    *(f"{name}_reference_compat" for name in _OVERLAPS),
    "de_spearman_sig",
    "de_spearman_sig_reference_compat",
    "de_direction_match",
    "de_spearman_lfc_sig",
    "de_sig_genes_recall",
    "de_nsig_counts_real",
    "de_nsig_counts_pred",
    "pr_auc",
    "roc_auc",
)
_ROW_FIELDS = ("conditions", "target_mean", "log2_fold_change", "statistic", "p_value", "fdr")
#: Test-cell values per gene block of the real-side kernel (as float64: ~64 MB).
_BLOCK_VALUES = 1 << 23


@dataclass(frozen=True)
class DETable:
    """A pdex DE table as matrices: one row per condition, one column per gene."""

    conditions: np.ndarray
    genes: pd.Index
    target_mean: np.ndarray
    ref_mean: np.ndarray
    log2_fold_change: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    fdr: np.ndarray

    def select(self, conditions: Sequence[str]) -> DETable:
        """The rows of ``conditions``, in that order (FDRs are per condition, so unchanged)."""
        rows = pd.Index(self.conditions).get_indexer(list(conditions))
        if (rows < 0).any():
            raise KeyError(f"conditions not in the table: {list(np.asarray(conditions)[rows < 0])}")
        take = {k: getattr(self, k)[rows] for k in _ROW_FIELDS}
        return DETable(genes=self.genes, ref_mean=self.ref_mean, **take)

    def to_frame(self) -> pd.DataFrame:
        """Long form with pdex's column names (``target``, ``feature``, ...)."""
        n_cond, n_genes = self.log2_fold_change.shape
        return pd.DataFrame(
            {
                "target": np.repeat(self.conditions, n_genes),
                "feature": np.tile(np.asarray(self.genes), n_cond),
                "target_mean": self.target_mean.ravel(),
                "ref_mean": np.tile(self.ref_mean, n_cond),
                "log2_fold_change": self.log2_fold_change.ravel(),
                "p_value": self.p_value.ravel(),
                "statistic": self.statistic.ravel(),
                "fdr": self.fdr.ravel(),
            }
        )


# --------------------------------------------------------------------------------------------
# The Mann-Whitney U test (numba kernels)
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _mwu_p_value(u1: float, n1: int, n2: int, tie_term: float) -> float:  # pragma: no cover
    """numba_mwu's ``_mwu_stats_from_rank_sum`` (two-sided, continuity), operation for operation."""
    n = n1 + n2
    u2 = n1 * n2 - u1
    u = max(u1, u2)
    mu = n1 * n2 / 2.0
    denom = n * (n - 1.0)
    var_inner = (n + 1.0) - tie_term / denom
    s_sq = n1 * n2 / 12.0 * var_inner
    if s_sq <= 0.0:
        return 1.0
    z = (u - mu - 0.5) / math.sqrt(s_sq)
    p = 0.5 * math.erfc(z / math.sqrt(2.0)) * 2.0
    return min(max(p, 0.0), 1.0)


@numba.njit(cache=True)
def _ref_position(
    ref_data: np.ndarray, start: int, stop: int, n_zeros: int, v: float
) -> tuple[int, int]:  # pragma: no cover - numba
    """``(#ref < v, #ref == v)`` of one gene, its implicit zeros included."""
    lo = _lower_bound(ref_data, start, stop, v)
    hi = _upper_bound(ref_data, lo, stop, v)
    less = lo - start
    equal = hi - lo
    if v > 0:
        less += n_zeros
    elif v == 0:
        equal += n_zeros
    return less, equal


@numba.njit(cache=True)
def _reference_ties(
    ref_data: np.ndarray, ref_indptr: np.ndarray, ref_zeros: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    """``sum(t^3 - t)`` over the tie groups of every gene's control values (exact, int64)."""
    n_genes = ref_indptr.size - 1
    out = np.zeros(n_genes, dtype=np.int64)
    for j in range(n_genes):
        i = ref_indptr[j]
        stop = ref_indptr[j + 1]
        zeros = np.int64(ref_zeros[j])
        total = np.int64(0)
        while i < stop:
            k = i + 1
            while k < stop and ref_data[k] == ref_data[i]:
                k += 1
            t = np.int64(k - i)
            if ref_data[i] == 0:
                t += zeros
                zeros = 0
            total += t * t * t - t
            i = k
        out[j] = total + zeros * zeros * zeros - zeros
    return out


@numba.njit(cache=True, parallel=True)
def _group_tests(
    block: np.ndarray,
    offsets: np.ndarray,
    first_gene: int,
    ref_data: np.ndarray,
    ref_indptr: np.ndarray,
    ref_zeros: np.ndarray,
    ref_ties: np.ndarray,
    statistic: np.ndarray,
    p_value: np.ndarray,
) -> None:  # pragma: no cover - numba
    """U and p of every group (cells ``offsets[g]:offsets[g+1]`` of ``block``'s rows) vs control.

    ``block`` is genes × test cells (float64). Per gene and group the group's values are sorted
    and each distinct value is located among the sorted control values: it adds
    ``a * (2 #less + #equal)`` to 2U and turns the control's tie group of that value (size
    ``e``) into one of size ``a + e``.
    """
    n_groups = offsets.size - 1
    n2 = ref_zeros[0] + ref_indptr[1] - ref_indptr[0]
    for jj in numba.prange(block.shape[0]):
        j = first_gene + jj
        start = ref_indptr[j]
        stop = ref_indptr[j + 1]
        for g in range(n_groups):
            values = np.sort(block[jj, offsets[g] : offsets[g + 1]])
            n1 = values.size
            twice_u = np.int64(0)
            ties = ref_ties[j]
            i = 0
            while i < n1:
                k = i + 1
                while k < n1 and values[k] == values[i]:
                    k += 1
                a = np.int64(k - i)
                less, equal = _ref_position(ref_data, start, stop, ref_zeros[j], values[i])
                twice_u += a * (2 * less + equal)
                t = a + equal
                ties += t * t * t - t - (equal * equal * equal - equal)
                i = k
            u1 = twice_u / 2.0
            statistic[g, j] = u1
            p_value[g, j] = _mwu_p_value(u1, n1, n2, np.float64(ties))


@numba.njit(cache=True, parallel=True)
def _constant_tests(
    profiles: np.ndarray,
    sizes: np.ndarray,
    ref_data: np.ndarray,
    ref_indptr: np.ndarray,
    ref_zeros: np.ndarray,
    ref_ties: np.ndarray,
    statistic: np.ndarray,
    p_value: np.ndarray,
) -> None:  # pragma: no cover - numba
    """U and p of ``sizes[c]`` copies of ``profiles[c, j]`` vs the control values of gene j."""
    n2 = ref_zeros[0] + ref_indptr[1] - ref_indptr[0]
    for c in numba.prange(profiles.shape[0]):
        n1 = np.int64(sizes[c])
        for j in range(profiles.shape[1]):
            less, equal = _ref_position(
                ref_data, ref_indptr[j], ref_indptr[j + 1], ref_zeros[j], profiles[c, j]
            )
            t = n1 + equal
            ties = ref_ties[j] + t * t * t - t - (equal * equal * equal - equal)
            u1 = n1 * (2 * less + equal) / 2.0
            statistic[c, j] = u1
            p_value[c, j] = _mwu_p_value(u1, n1, n2, np.float64(ties))


# --------------------------------------------------------------------------------------------
# DE tables
# --------------------------------------------------------------------------------------------


class ControlCells:
    """The control cells as the tests need them: every gene's values sorted, its tie term and
    pdex's pseudobulk mean. Prepare once, test many predictions against it."""

    def __init__(self, x: Any) -> None:
        data, indptr, zeros = _sorted_reference(x, np.arange(x.shape[0]))
        self.data = np.asarray(data, dtype=np.float64)
        self.indptr = indptr
        self.zeros = np.asarray(zeros, dtype=np.int64)
        self.ties = _reference_ties(self.data, self.indptr, self.zeros)
        self.bulk = _pdex_bulk(x)


def _pdex_bulk(x: Any) -> np.ndarray:
    """pdex's geometric-mean pseudobulk of log1p cells, ``expm1(mean(x))``, computed as pdex
    computes it (the mean and ``expm1`` in ``x``'s dtype), so fold changes match bit for bit."""
    return _expm1(np.asarray(x.mean(axis=0)).ravel()).astype(np.float64)


@numba.njit(cache=True)
def _expm1(x: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """Element-wise ``expm1`` as pdex's numba kernel rounds it (numba's float32 ``expm1``
    and numpy's differ in the last bit)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = np.expm1(x[i])
    return out


@numba.njit(cache=True, parallel=True)
def _lfc_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """pdex's ``log2_fold_change`` (``epsilon=0``) of every row of ``x`` against ``y``, element
    by element with the same scalar ``log2``, so its rounding is pdex's."""
    out = np.empty(x.shape)
    for i in numba.prange(x.shape[0]):
        for j in range(x.shape[1]):
            value = np.log2((x[i, j] + 0.0) / (y[j] + 0.0))
            out[i, j] = 0.0 if np.isnan(value) else value
    return out


def _log2_fold_change(target: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """pdex's ``log2_fold_change`` with ``epsilon=0``: ``0/0`` is 0, one-sided zeros ±inf."""
    return _lfc_matrix(np.ascontiguousarray(target), np.ascontiguousarray(ref))


def _table(
    conditions: Sequence[str],
    genes: pd.Index,
    target_mean: np.ndarray,
    control: ControlCells,
    statistic: np.ndarray,
    p_value: np.ndarray,
) -> DETable:
    fdr = false_discovery_control(p_value, axis=1) if p_value.size else p_value.copy()
    return DETable(
        conditions=np.asarray(conditions, dtype=object),
        genes=pd.Index(genes),
        target_mean=target_mean,
        ref_mean=control.bulk,
        log2_fold_change=_log2_fold_change(target_mean, control.bulk),
        statistic=statistic,
        p_value=p_value,
        fdr=fdr,
    )


def _test_block(x: Any, lo: int, hi: int) -> np.ndarray:
    """Genes ``lo:hi`` of the (group-ordered) test cells, as a genes × cells float64 array."""
    part = x[:, lo:hi]
    part = part.toarray() if sparse.issparse(part) else np.asarray(part)
    return np.ascontiguousarray(part.T, dtype=np.float64)


def real_de_table(
    x: Any,
    labels: Sequence[str] | np.ndarray,
    control: str = "ctrl",
    genes: Sequence[str] | pd.Index | None = None,
    conditions: Sequence[str] | None = None,
    control_cells: ControlCells | None = None,
) -> DETable:
    """pdex's DE table (cell-eval's settings) of every condition against the control cells.

    Parameters
    ----------
    x
        Cells × genes log1p-normalised expression (numpy array or scipy sparse matrix).
    labels
        Condition of every cell.
    control
        Label of the control cells.
    genes
        Gene names (columns of ``x``); default ``0..n-1``.
    conditions
        Conditions to test, in this order; default every non-control label, sorted.
    control_cells
        :class:`ControlCells` of ``x``'s control cells, when already prepared (several tables
        against the same controls share them); default: prepared here.

    Returns
    -------
    DETable
    """
    labels = np.asarray(labels, dtype=object)
    if conditions is None:
        conditions = sorted(set(labels) - {control})
    conditions = list(conditions)
    genes = pd.Index(genes if genes is not None else range(x.shape[1]))
    if sparse.issparse(x) and x.format != "csr":
        x = sparse.csr_matrix(x)
    control_stats = control_cells or ControlCells(x[np.flatnonzero(labels == control)])

    code_of = pd.Series(np.arange(len(conditions)), index=conditions)
    codes = code_of.reindex(labels).fillna(-1).to_numpy(dtype=np.int64)
    rows = np.flatnonzero(codes >= 0)
    rows = rows[np.argsort(codes[rows], kind="stable")]
    sizes = np.bincount(codes[rows], minlength=len(conditions))
    if (sizes == 0).any():
        raise ValueError(f"conditions without cells: {list(np.asarray(conditions)[sizes == 0])}")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    target_mean = np.vstack([_pdex_bulk(x[rows[a:b]]) for a, b in pairwise(offsets)])

    test = x[rows]
    if sparse.issparse(test):
        test = test.tocsc()
    n_genes = x.shape[1]
    statistic = np.empty((len(conditions), n_genes))
    p_value = np.empty((len(conditions), n_genes))
    step = max(1, _BLOCK_VALUES // max(len(rows), 1))
    for lo in range(0, n_genes, step):
        hi = min(lo + step, n_genes)
        block = _test_block(test, lo, hi)
        _group_tests(block, offsets, lo, control_stats.data, control_stats.indptr,
                     control_stats.zeros, control_stats.ties, statistic, p_value)  # fmt: skip
    return _table(conditions, genes, target_mean, control_stats, statistic, p_value)


def pseudobulk_de_table(
    profiles: pd.DataFrame,
    n_cells: pd.Series | Sequence[int] | np.ndarray,
    control_x: Any,
) -> DETable:
    """The DE table of pseudo-bulk predictions, each repeated ``n_cells`` times, vs real controls.

    Parameters
    ----------
    profiles
        Conditions × genes predicted log1p profiles.
    n_cells
        Cells per condition (a Series indexed by condition, or in ``profiles``' row order):
        the size of the condition's real group.
    control_x
        Cells × genes real control cells (numpy or scipy sparse), columns as ``profiles``, or
        :class:`ControlCells` of them (prepared once for several models).

    Returns
    -------
    DETable
    """
    if isinstance(n_cells, pd.Series):
        n_cells = n_cells.reindex(profiles.index)
    sizes = np.asarray(n_cells, dtype=np.int64)
    if (sizes < 1).any():
        raise ValueError("every condition needs at least one cell")
    control = control_x if isinstance(control_x, ControlCells) else ControlCells(control_x)
    raw = profiles.to_numpy()
    raw = np.ascontiguousarray(raw, dtype=raw.dtype if raw.dtype == np.float32 else np.float64)
    target_mean = _expm1(_repeated_mean(raw, sizes).ravel()).reshape(raw.shape)
    values = raw.astype(np.float64)
    statistic = np.empty(values.shape)
    p_value = np.empty(values.shape)
    _constant_tests(values, sizes, control.data, control.indptr, control.zeros, control.ties,
                    statistic, p_value)  # fmt: skip
    return _table(list(profiles.index), profiles.columns, target_mean.astype(np.float64),
                  control, statistic, p_value)  # fmt: skip


@numba.njit(cache=True, parallel=True)
def _repeated_mean(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:  # pragma: no cover
    """numpy's ``mean(axis=0)`` of ``sizes[c]`` copies of row c, rounded as numpy rounds it
    (a sequential sum in the data's dtype, divided in float64), so the predicted fold changes
    are pdex's on the repeated cells bit for bit."""
    out = np.empty_like(values)
    for c in numba.prange(values.shape[0]):
        n = sizes[c]
        for j in range(values.shape[1]):
            total = values[c, j]
            for _ in range(n - 1):
                total = total + values[c, j]
            out[c, j] = np.float64(total) / n
    return out


# --------------------------------------------------------------------------------------------
# The metrics
# --------------------------------------------------------------------------------------------


def _ranked_significant(
    table: DETable, fdr: float
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Float32 significance mask, and per condition its significant genes ranked by float32
    ``|lfc|`` descending: ties in gene order (ours), and in polars' order (cell-eval's
    ``rank("ordinal", descending=True)``, not a stable sort)."""
    sig = table.fdr.astype(np.float32) < fdr
    magnitude = np.abs(table.log2_fold_change.astype(np.float32))
    rows, cols = np.nonzero(sig)  # condition-major, genes in order: cell-eval's row order
    values = magnitude[rows, cols]
    bounds = np.searchsorted(rows, np.arange(sig.shape[0] + 1))
    ours = np.lexsort((cols, -values, rows))
    ranks = (
        pl.DataFrame({"target": rows, "value": values})
        .select(pl.struct("value").rank("ordinal", descending=True).over("target"))
        .to_series()
        .to_numpy()
    )
    theirs = np.lexsort((ranks, rows))
    split = [(a, b) for a, b in pairwise(bounds)]
    return sig, [cols[ours[a:b]] for a, b in split], [cols[theirs[a:b]] for a, b in split]


def _overlap_values(
    real: list[np.ndarray], pred: list[np.ndarray], n_genes: int, kind: str, k: int | str
) -> np.ndarray:
    """``|top-k real ∩ top-k predicted| / k`` per condition; NaN where ``k`` is 0."""
    values = np.full(len(real), np.nan)
    mark = np.zeros(n_genes, dtype=bool)
    for row, (r, p) in enumerate(zip(real, pred, strict=True)):
        size = r.size if kind == "overlap" else p.size
        k_eff = size if k == "N" else min(int(k), size)
        if k_eff:
            mark[r[:k_eff]] = True
            values[row] = mark[p[:k_eff]].sum() / k_eff
            mark[r[:k_eff]] = False
    return values


def _overlaps(real: tuple[list, list], pred: tuple[list, list], n_genes: int) -> dict:
    """``overlap_at_*`` and ``precision_at_*`` (ours: NaN where undefined, ties in gene order)
    and their twins (cell-eval's tie order and zeros)."""
    out: dict[str, np.ndarray] = {}
    nothing = not any(r.size for r in real[0]) or not any(p.size for p in pred[0])
    for kind in ("overlap", "precision"):
        for k in ("N", *DE_FAMILY_TOP_K):
            out[f"{kind}_at_{k}"] = _overlap_values(real[0], pred[0], n_genes, kind, k)
            compat = _overlap_values(real[1], pred[1], n_genes, kind, k)
            # cell-eval: 0.0 where undefined, and everywhere when a side has no DE gene at all
            out[f"{kind}_at_{k}_reference_compat"] = (
                np.zeros_like(compat) if nothing else np.nan_to_num(compat, nan=0.0)
            )
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks (polars' ``corr(method="spearman")``)."""
    if a.size < 2:
        return np.nan
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else np.nan


@numba.njit(cache=True)
def _aucs(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:  # pragma: no cover
    """sklearn's ``average_precision_score`` and ``auc(roc_curve)`` of one condition.

    Thresholds are the distinct scores, descending; AP is ``sum (R_n - R_{n-1}) P_n`` and the
    ROC AUC the trapezoid through every threshold (ties count half)."""
    order = np.argsort(-scores, kind="mergesort")
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    tp = 0.0
    fp = 0.0
    ap = 0.0
    roc = 0.0
    i = 0
    n = order.size
    while i < n:
        k = i
        tp_step = 0.0
        fp_step = 0.0
        while k < n and scores[order[k]] == scores[order[i]]:
            if labels[order[k]]:
                tp_step += 1.0
            else:
                fp_step += 1.0
            k += 1
        roc += fp_step * (tp + tp_step / 2.0)
        tp += tp_step
        fp += fp_step
        ap += tp_step / n_pos * (tp / (tp + fp))
        i = k
    return ap, roc / (n_pos * n_neg)


def _auc_metrics(real_sig: np.ndarray, pred_fdr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pr_auc`` and ``roc_auc`` per condition (NaN with a single label)."""
    q = np.clip(pred_fdr.astype(np.float32), np.float32(1e-10), np.float32(1.0))
    scores = (-np.log10(q)).astype(np.float64)
    pr = np.full(len(q), np.nan)
    roc = np.full(len(q), np.nan)
    for row in range(len(q)):
        n_pos = real_sig[row].sum()
        if 0 < n_pos < real_sig.shape[1]:
            pr[row], roc[row] = _aucs(real_sig[row], scores[row])
    return pr, roc


def _gene_agreement(real: DETable, pred: DETable, real_sig: np.ndarray) -> dict[str, np.ndarray]:
    """Direction match and fold-change Spearman over each condition's real significant genes."""
    real_lfc = real.log2_fold_change.astype(np.float32)
    pred_lfc = pred.log2_fold_change.astype(np.float32)
    direction = np.full(len(real_sig), np.nan)
    spearman = np.full(len(real_sig), np.nan)
    for row in range(len(real_sig)):
        idx = np.flatnonzero(real_sig[row])
        if idx.size:
            a, b = real_lfc[row, idx], pred_lfc[row, idx]
            direction[row] = np.mean(np.sign(a) == np.sign(b))
            spearman[row] = _spearman(a.astype(np.float64), b.astype(np.float64))
    return {"de_direction_match": direction, "de_spearman_lfc_sig": spearman}


def de_family_metrics(real: DETable, pred: DETable, fdr: float = DE_FAMILY_FDR) -> pd.DataFrame:
    """cell-eval's DE metrics of every condition (see the module docstring).

    Parameters
    ----------
    real, pred
        DE tables of the real and the predicted cells (same conditions and genes, same order),
        e.g. from :func:`real_de_table` and :func:`pseudobulk_de_table`.
    fdr
        Significance threshold on the (float32) FDR.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``condition``, ``metric`` (:data:`DE_FAMILY_METRICS`), ``value``.
    """
    if not (np.array_equal(real.conditions, pred.conditions) and real.genes.equals(pred.genes)):
        raise ValueError("real and predicted DE tables must share conditions and genes")
    real_sig, *real_ranked = _ranked_significant(real, fdr)
    pred_sig, *pred_ranked = _ranked_significant(pred, fdr)
    n_real = real_sig.sum(axis=1)
    n_pred = pred_sig.sum(axis=1)
    both = (real_sig & pred_sig).sum(axis=1)
    metrics = _overlaps(real_ranked, pred_ranked, real_sig.shape[1])
    has_real = n_real > 0
    n_cond = len(n_real)
    metrics["de_spearman_sig"] = np.full(n_cond, _spearman(n_real * 1.0, n_pred * 1.0))
    compat = _spearman(n_real[has_real] * 1.0, n_pred[has_real] * 1.0) if has_real.any() else 1.0
    metrics["de_spearman_sig_reference_compat"] = np.full(n_cond, compat)
    metrics.update(_gene_agreement(real, pred, real_sig))
    metrics["de_sig_genes_recall"] = np.where(has_real, both / np.maximum(n_real, 1), np.nan)
    metrics["de_nsig_counts_real"] = n_real.astype(np.float64)
    metrics["de_nsig_counts_pred"] = n_pred.astype(np.float64)
    metrics["pr_auc"], metrics["roc_auc"] = _auc_metrics(real_sig, pred.fdr)
    frame = pd.DataFrame(metrics, index=pd.Index(real.conditions, name="condition"))
    long = frame[list(DE_FAMILY_METRICS)].melt(
        ignore_index=False, var_name="metric", value_name="value"
    )
    return long.reset_index()
