"""Analyses beyond the benchmark table (stage 10): dataset diversity, embedding coherence, the
diversity sweep."""

from perturb_assets.core.analyses.coherence import (
    DOWNLOADABLE,
    GENE_SETS_SUBDIR,
    MIN_SET_SIZE,
    coherence_summary,
    derangement,
    download_gene_sets,
    embedding_coherence,
    gene_set_collections,
    read_gene_sets,
    set_mean_correlations,
    user_gene_set_files,
)
from perturb_assets.core.analyses.diversity import (
    HIGH_MEDIAN_CORRELATION,
    LOW_DYNAMIC_RANGE,
    Diversity,
    adequacy_problems,
    dataset_composition,
    dataset_diversity,
    gears_condition_order,
)
from perturb_assets.core.analyses.sweep import (
    SWEEP_LEVELS,
    SWEEP_SIZE,
    sweep_point,
)

__all__ = [
    "DOWNLOADABLE",
    "Diversity",
    "GENE_SETS_SUBDIR",
    "HIGH_MEDIAN_CORRELATION",
    "LOW_DYNAMIC_RANGE",
    "MIN_SET_SIZE",
    "SWEEP_LEVELS",
    "SWEEP_SIZE",
    "adequacy_problems",
    "coherence_summary",
    "dataset_composition",
    "dataset_diversity",
    "derangement",
    "download_gene_sets",
    "embedding_coherence",
    "gears_condition_order",
    "gene_set_collections",
    "read_gene_sets",
    "set_mean_correlations",
    "sweep_point",
    "user_gene_set_files",
]
