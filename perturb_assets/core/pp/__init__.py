"""Preprocessing (stage 3): normalisation, pseudo-bulk profiles, delta profiles, DE genes.

AnnData in, AnnData or DataFrame out, as scanpy's ``pp``/``tl``:

- ``normalize``: ``normalize_total(1e4)`` + ``log1p``, as GEARS' data;
- ``pseudobulk``: per-condition means without densifying ``X`` (:func:`pseudobulk`,
  :func:`pseudobulk_profiles`);
- ``deltas``: delta profiles and their pairwise correlations;
- ``de``: GEARS/scanpy-identical DE genes (:func:`top_de_genes`, the ``de_genes`` table), with
  the test statistics in ``de_statistics`` and the DE-list rules of the metrics in ``de_lists``."""

from perturb_assets.core.pp.de import (
    DE_METHODS,
    TARGET_POLICIES,
    DEMethod,
    de_gene_table,
    de_scores,
    de_table_problems,
    rank_de_genes,
    select_top_n,
    top_de_genes,
)
from perturb_assets.core.pp.de_lists import (
    de_lists_without_targets,
    reference_compat_de_lists,
)
from perturb_assets.core.pp.deltas import (
    delta_profiles,
    median_pairwise_delta_correlation,
    pairwise_correlations,
    pseudobulk_deltas,
)
from perturb_assets.core.pp.normalize import (
    is_log_normalized,
    normalize_expression,
)
from perturb_assets.core.pp.pseudobulk import (
    group_codes,
    group_indicator,
    group_order,
    group_sizes,
    group_sums,
    pseudobulk,
    pseudobulk_problems,
    pseudobulk_profiles,
)

__all__ = [
    "DEMethod",
    "DE_METHODS",
    "TARGET_POLICIES",
    "de_gene_table",
    "de_lists_without_targets",
    "de_scores",
    "de_table_problems",
    "delta_profiles",
    "group_codes",
    "group_indicator",
    "group_order",
    "group_sizes",
    "group_sums",
    "is_log_normalized",
    "median_pairwise_delta_correlation",
    "normalize_expression",
    "pairwise_correlations",
    "pseudobulk",
    "pseudobulk_deltas",
    "pseudobulk_problems",
    "pseudobulk_profiles",
    "rank_de_genes",
    "reference_compat_de_lists",
    "select_top_n",
    "top_de_genes",
]
