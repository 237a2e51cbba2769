"""Differentially expressed genes of every perturbation, identical to GEARS / scanpy.

GEARS (and Csendes et al. 2025 after it) defines the DE genes of a perturbation as the first
``n_genes`` names of::

    sc.tl.rank_genes_groups(adata, groupby="condition", reference="ctrl", rankby_abs=True,
                            use_raw=False, method=method, n_genes=n_genes)
    adata.uns["rank_genes_groups"]["names"][condition]

scanpy computes that one group at a time (it slices the cells of every group out of ``X``, and
for the Wilcoxon test densifies and ranks the group *and all control cells* for every group),
which takes minutes on a Replogle-sized dataset. This module computes the same scores for all
groups at once and then selects the top genes with scanpy's own ``_select_top_n`` logic, so the
ranked lists are identical to scanpy's, tie order included.

How the scores are reproduced exactly
-------------------------------------
*t-test* (scanpy's default ``"t-test"``: Welch's t, unequal variances). Per-group sums and sums
of squares of all groups come from one pass over ``X``: the group-indicator product
``G @ X`` and ``G @ (X * X)`` of :func:`perturb_assets.core.pp.group_sums` (float64
accumulation, ``X`` neither densified nor copied). Means and variances
then follow scanpy's ``_get_mean_var`` formula step by step (``mean = sum / n``,
``var = (sumsq / n - mean**2) * (n / (n - 1))``, with the square of a float32 value rounded to
float32 for CSR and dense ``X`` exactly as scanpy's kernels do), and the statistic follows
``scipy.stats.ttest_ind_from_stats(..., equal_var=False)`` operation by operation, including
scanpy's ``std = sqrt(var)`` that scipy squares again. Scores that are NaN (a gene with zero
variance and equal means in the group and the reference, e.g. never expressed) become ``0``, as
in scanpy; ``inf`` (zero variance on both sides, different means) is kept, as in scanpy. The
float64 sums are computed in a different order than scanpy's, but for float32 data with a
moderate dynamic range, such as log-normalised counts, they are exact in any order (every term
and every square is a multiple of the smallest term's last-place unit, and the totals stay
far below 2**53 such units), so the scores are bit-for-bit those of scanpy (the tests check
this). For data where that does not hold, a score can differ in its last bit, which can only
swap two genes whose scores agree to ~1e-16.

*wilcoxon* (scanpy's default ``tie_correct=False``). scanpy ranks the group together with the
reference cells (average ranks for ties) and sums the group's ranks. The same rank sum is
``R = n(n+1)/2 + sum_i [#(ref < x_i) + #(ref == x_i)/2]`` over the group's values ``x_i``: this
module sorts every gene's reference values once and counts with binary searches, handling all
(implicit) zeros of a group in one step, in numba. ``2R`` is an integer, so ``R`` is exact, and
the z-score ``(R - n(n+m+1)/2) / sqrt(n m (n+m+1) / 12)`` is computed with scanpy's exact
expression, so Wilcoxon scores are bit-for-bit scanpy's.

Ranking uses :func:`select_top_n`, a copy of scanpy's ``_select_top_n`` (``np.argpartition``
then ``np.argsort`` of ``|score|``), so genes with tied scores come out in scanpy's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from perturb_assets.core.gears.format import CONTROL, N_TOP_DE, parse_condition
from perturb_assets.core.pp.de_lists import reference_compat_de_lists
from perturb_assets.core.pp.de_statistics import _welch_t_scores, _wilcoxon_scores
from perturb_assets.core.pp.pseudobulk import group_codes

__all__ = [
    "DEMethod",
    "DE_METHODS",
    "TARGET_POLICIES",
    "de_gene_table",
    "de_scores",
    "de_table_problems",
    "rank_de_genes",
    "select_top_n",
    "top_de_genes",
]

DEMethod = Literal["t-test", "wilcoxon"]
#: The DE tests, scanpy's names.
DE_METHODS: tuple[DEMethod, ...] = ("t-test", "wilcoxon")
#: How target genes are treated in a DE list: kept (``included``), every target removed
#: (``excluded``), or removed as the paper's code does (``reference_compat``).
TARGET_POLICIES: tuple[str, ...] = ("included", "excluded", "reference_compat")
#: Columns of :func:`de_gene_table`.
DE_TABLE_COLUMNS: tuple[str, ...] = ("method", "targets", "condition", "rank", "gene_id")


def select_top_n(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` largest ``scores``, largest first, exactly as scanpy picks them.

    A verbatim copy of ``scanpy.tools._rank_genes_groups._select_top_n`` (scanpy 1.11.5):
    ``np.argpartition`` then a descending ``np.argsort`` of the partition. Neither is stable, so
    genes with equal scores are ordered the way scanpy orders them only if the very same calls
    are made on the very same array, which is why this is copied and not reimplemented.

    Parameters
    ----------
    scores
        One-dimensional scores (``|score|`` when ranking by absolute value).
    n_top
        Number of indices to return, ``1 <= n_top <= scores.size``.

    Returns
    -------
    numpy.ndarray
        Integer indices into ``scores``.
    """
    n_from = scores.shape[0]
    reference_indices = np.arange(n_from, dtype=int)
    partition = np.argpartition(scores, -n_top)[-n_top:]
    partial_indices = np.argsort(scores[partition])[::-1]
    global_indices = reference_indices[partition][partial_indices]
    return global_indices


def _test_groups(
    adata: AnnData, groupby: str, reference: str
) -> tuple[np.ndarray, pd.Index, int, np.ndarray]:
    """Group codes, labels, the reference's code and group sizes; validates like scanpy."""
    codes, labels = group_codes(adata, groupby)
    if reference not in labels:
        raise ValueError(
            f"reference {reference!r} is not a value of adata.obs[{groupby!r}]; "
            f"values: {list(labels[:10])}{' ...' if len(labels) > 10 else ''}"
        )
    sizes = np.bincount(codes[codes >= 0], minlength=len(labels)).astype(np.int64)
    singletons = [str(g) for g, n in zip(labels, sizes, strict=True) if n < 2]
    if singletons:
        # scanpy raises the same error: a one-cell group has no variance.
        shown = ", ".join(singletons[:10])
        more = f" (and {len(singletons) - 10} more)" if len(singletons) > 10 else ""
        raise ValueError(
            f"Could not calculate statistics for groups {shown}{more} "
            "since they only contain one sample."
        )
    return codes, labels, int(labels.get_loc(reference)), sizes


def de_scores(
    adata: AnnData,
    method: DEMethod = "t-test",
    groupby: str = "condition",
    reference: str = "ctrl",
) -> tuple[np.ndarray, pd.Index]:
    """scanpy's ``rank_genes_groups`` scores of every group against ``reference``.

    Parameters
    ----------
    adata
        Log-normalised data; ``adata.X`` (dense or scipy sparse CSR/CSC) is used, never
        ``adata.raw`` (GEARS passes ``use_raw=False``). Neither ``X`` nor ``obs`` is modified.
    method
        ``"t-test"`` (Welch) or ``"wilcoxon"`` (rank-sum z-score without tie correction).
    groupby
        Column of ``adata.obs`` with the group (condition) of every cell.
    reference
        The group every other group is compared with.

    Returns
    -------
    scores : numpy.ndarray
        ``float64`` array ``(n_groups - 1, n_vars)``: the scores scanpy computes (NaN already
        replaced by 0), one row per non-reference group.
    groups : pandas.Index
        The non-reference group labels (``str``) of the rows, in category order (sorted for a
        non-categorical column), the order scanpy uses.

    Raises
    ------
    ValueError
        If ``groupby`` is missing, ``reference`` is not one of its values, a group has fewer
        than two cells (scanpy raises then too) or ``method`` is unknown.
    """
    if method not in DE_METHODS:
        raise ValueError(f"method must be one of {DE_METHODS}; got {method!r}")
    codes, labels, iref, sizes = _test_groups(adata, groupby, reference)
    x = adata.X
    if x is None:
        raise ValueError("adata.X is empty")
    if sparse.issparse(x) and x.format not in ("csr", "csc"):
        x = sparse.csr_matrix(x)
    keep = np.arange(len(labels)) != iref
    groups = labels[keep]
    if method == "t-test":
        scores = _welch_t_scores(x, codes, sizes, iref)
    else:
        scores = _wilcoxon_scores(x, codes, sizes, iref)
    return scores, groups


def rank_de_genes(
    adata: AnnData,
    method: DEMethod = "t-test",
    groupby: str = "condition",
    reference: str = "ctrl",
) -> pd.DataFrame:
    """Full score matrix of :func:`de_scores` as a DataFrame.

    Parameters
    ----------
    adata, method, groupby, reference
        As in :func:`de_scores`.

    Returns
    -------
    pandas.DataFrame
        ``float64`` scores; rows are the non-reference groups, columns ``adata.var_names``.
        A gene's DE rank in a group is its position when sorted by ``|score|``, largest first.
    """
    scores, groups = de_scores(adata, method=method, groupby=groupby, reference=reference)
    return pd.DataFrame(scores, index=groups, columns=adata.var_names.copy())


def top_de_genes(
    adata: AnnData,
    method: DEMethod = "t-test",
    n_top: int = 20,
    exclude_targets: bool = False,
    groupby: str = "condition",
    reference: str = "ctrl",
) -> dict[str, list[str]]:
    """Top differentially expressed genes of every condition, as GEARS computes them.

    With ``exclude_targets=False`` the list of a condition is exactly
    ``adata.uns["rank_genes_groups"]["names"][condition]`` after::

        sc.tl.rank_genes_groups(adata, groupby=groupby, reference=reference, rankby_abs=True,
                                use_raw=False, method=method, n_genes=n_top)

    but computed for all conditions at once, many times faster (see the module docstring).

    Parameters
    ----------
    adata
        Log-normalised data. ``adata.X`` is used; for ``exclude_targets`` also
        ``adata.var["gene_name"]`` (gene symbols; ``var_names`` may be Ensembl-like ids).
    method
        ``"t-test"`` (scanpy's default, Welch) or ``"wilcoxon"`` (no tie correction, scanpy's
        default).
    n_top
        Genes per condition; more than the number of genes means all genes (as in scanpy).
    exclude_targets
        Leave the perturbed genes of a condition out of its list: both genes of a combination
        ``A+B``, gene ``A`` of ``A+ctrl`` / ``ctrl+A`` (parsed with
        :func:`perturb_assets.core.gears.parse_condition`). A target symbol is mapped to
        every var whose ``gene_name`` equals it; a target that is not measured removes nothing.
        Defined as: rank with scanpy's selection for ``n_top + k`` genes, where ``k`` is the
        number of target vars of the condition, drop the targets, keep the first ``n_top``.
        (Up to the order of exactly tied scores this equals the full scanpy ranking with the
        targets removed, truncated to ``n_top``.)
    groupby
        Column of ``adata.obs`` with the condition of every cell.
    reference
        The control condition every other condition is compared with.

    Returns
    -------
    dict of str to list of str
        One entry per non-reference condition (category order; sorted for a non-categorical
        column), mapping to ``var_names`` in rank order (largest ``|score|`` first).

    Raises
    ------
    ValueError
        For an unknown ``method``, ``n_top < 1``, a missing ``groupby`` column, a ``reference``
        that is not a condition, a condition with fewer than two cells (as scanpy), or
        ``exclude_targets`` without ``adata.var["gene_name"]``.
    perturb_assets.core.errors.ConditionSyntaxError
        With ``exclude_targets``, for a condition that is not GEARS syntax.
    """
    if isinstance(n_top, bool) or not isinstance(n_top, int | np.integer) or n_top < 1:
        raise ValueError(f"n_top must be a positive integer; got {n_top!r}")
    if exclude_targets and "gene_name" not in adata.var.columns:
        raise ValueError(
            "exclude_targets=True maps target gene symbols to genes through "
            "adata.var['gene_name'], which is missing"
        )
    scores, groups = de_scores(adata, method=method, groupby=groupby, reference=reference)
    gene_names = adata.var["gene_name"] if exclude_targets else None
    return top_genes_from_scores(
        scores, groups, adata.var_names, n_top, exclude_targets=exclude_targets,
        gene_names=gene_names,
    )  # fmt: skip


def top_genes_from_scores(
    scores: np.ndarray,
    groups: Sequence[str] | pd.Index,
    var_names: Sequence[str] | pd.Index,
    n_top: int = 20,
    exclude_targets: bool = False,
    gene_names: Sequence[str] | pd.Series | None = None,
) -> dict[str, list[str]]:
    """Top genes per group from a :func:`de_scores` matrix, exactly as :func:`top_de_genes`.

    Lets a caller score once and select several lists (top-n, without targets, longer lists).

    Parameters
    ----------
    scores, groups
        The output of :func:`de_scores`.
    var_names
        Gene ids, in score-column order.
    n_top, exclude_targets
        As in :func:`top_de_genes`.
    gene_names
        Symbols of ``var_names`` (``adata.var["gene_name"]``); required with
        ``exclude_targets``.

    Returns
    -------
    dict of str to list of str
        Group → ranked ``var_names``.
    """
    var_names = np.asarray(var_names, dtype=object)
    n_vars = var_names.size
    n_select = min(int(n_top), n_vars)
    symbol_to_vars: dict[str, np.ndarray] = {}
    if exclude_targets:
        if gene_names is None:
            raise ValueError("exclude_targets=True needs gene_names (adata.var['gene_name'])")
        symbols = pd.Series(np.asarray(gene_names).astype(str))
        symbol_to_vars = {
            str(s): np.asarray(idx, dtype=np.int64)
            for s, idx in symbols.groupby(symbols, sort=False).indices.items()
        }
    result: dict[str, list[str]] = {}
    for row, group in enumerate(groups):
        abs_scores = np.abs(scores[row])
        if not exclude_targets:
            top = select_top_n(abs_scores, n_select)
        else:
            targets = [symbol_to_vars.get(g) for g in parse_condition(group)]
            target_vars = np.unique(
                np.concatenate([t for t in targets if t is not None] or [np.empty(0, np.int64)])
            )
            ranked = select_top_n(abs_scores, min(n_select + target_vars.size, n_vars))
            top = ranked[~np.isin(ranked, target_vars)][:n_select]
        result[group] = var_names[top].tolist()
    return result


def de_gene_table(
    adata: AnnData,
    dataset: str,
    methods: Sequence[DEMethod] = DE_METHODS,
    n_top: int = N_TOP_DE,
) -> pd.DataFrame:
    """Top DE genes for every method and target policy, as one long table.

    Each method scores every condition once (:func:`de_scores`); the three lists of
    :data:`TARGET_POLICIES` are selected from those scores: ``included`` (plain top-n),
    ``excluded`` (every target gene removed, both genes of a combination) and
    ``reference_compat`` (the paper code's removal,
    :func:`perturb_assets.core.pp.reference_compat_de_lists`, which needs the dataset
    name and refills a removed target from below the top n).

    Parameters
    ----------
    adata
        Log-normalised data with ``obs['condition']`` and ``var['gene_name']``.
    dataset
        Dataset name (the reference treats Norman differently).
    methods
        DE tests to run.
    n_top
        Genes per list.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``targets``, ``condition``, ``rank`` (1-based), ``gene_id``
        (``var_names``) and ``gene_name``.
    """
    symbol = adata.var["gene_name"].astype(str)
    rows = []
    for method in methods:
        scores, groups = de_scores(adata, method=method)

        def top(n: int, exclude: bool = False, scores=scores, groups=groups) -> dict:
            return top_genes_from_scores(
                scores, groups, adata.var_names, n, exclude_targets=exclude, gene_names=symbol
            )

        lists = {
            "included": top(n_top),
            "excluded": top(n_top, exclude=True),
            # Two spare ranks: the reference refills a removed target from below the top n.
            "reference_compat": reference_compat_de_lists(
                top(n_top + 2), symbol, dataset, n_top=n_top
            ),
        }
        for targets, by_condition in lists.items():
            for condition, genes in by_condition.items():
                rows.extend(
                    (method, targets, condition, rank, gene)
                    for rank, gene in enumerate(genes, start=1)
                )
    table = pd.DataFrame(rows, columns=list(DE_TABLE_COLUMNS))
    table["gene_name"] = symbol.reindex(table["gene_id"]).to_numpy()
    return table


def de_table_problems(table: pd.DataFrame, adata: AnnData, n_top: int = N_TOP_DE) -> list[str]:
    """Problems of a :func:`de_gene_table`: unknown genes, conditions without a list, long
    lists."""
    problems = []
    if unknown := sorted(set(table["gene_id"]) - set(adata.var_names)):
        problems.append(f"genes not in var_names: {unknown[:5]}")
    expected = set(adata.obs["condition"].astype(str)) - {CONTROL}
    for (method, targets), group in table.groupby(["method", "targets"]):
        if missing := sorted(expected - set(group["condition"])):
            problems.append(f"{method}/{targets}: conditions without DE genes: {missing[:5]}")
        if group.groupby("condition").size().max() > n_top:
            problems.append(f"{method}/{targets}: more than {n_top} genes in a list")
    return problems
