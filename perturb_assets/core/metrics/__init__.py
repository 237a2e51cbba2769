"""The scoring rules (stage 7): the paper's metrics and the ones beyond it.

Below the models because model selection scores with them:

- ``perturbation``: Pearson, Pearson Delta, on the top-20 DE genes, without targets
  (:func:`perturbation_metrics`), over the ``pearson`` kernels;
- ``cell_eval``: cell-eval's error and discrimination metrics;
- ``de_family``: cell-eval's DE metrics (pdex's Wilcoxon DE of real and predicted cells,
  overlaps, direction, recall, AUCs), computed without cell-eval;
- ``statistics``: bootstrap CIs and paired comparisons of per-condition values, Holm's
  multiplicity adjustment;
- ``direction``: which way is better for each metric, and its worst value."""

from perturb_assets.core.metrics.cell_eval import (
    DISCRIMINATION_METRICS,
    ERROR_METRICS,
    discrimination_scores,
    error_metrics,
)
from perturb_assets.core.metrics.de_family import (
    DE_FAMILY_FDR,
    DE_FAMILY_METRICS,
    DE_FAMILY_TOP_K,
    ControlCells,
    DETable,
    de_family_metrics,
    pseudobulk_de_table,
    real_de_table,
)
from perturb_assets.core.metrics.direction import (
    LOWER_IS_BETTER,
    higher_is_better,
    worst_value,
)
from perturb_assets.core.metrics.pearson import (
    rowwise_pearson,
)
from perturb_assets.core.metrics.perturbation import (
    BASE_METRICS,
    DE_METRICS,
    METRICS,
    evaluate_predictions,
    perturbation_metrics,
)
from perturb_assets.core.metrics.statistics import (
    bootstrap_ci,
    bootstrap_ratio_ci,
    holm_adjust,
    holm_interval,
    holm_levels,
    paired_comparison,
    paired_comparisons,
    paired_differences,
    subgroup_summary,
    summarise_metrics,
    wilcoxon_p,
    wilcoxon_p_batch,
)

__all__ = [
    "BASE_METRICS",
    "ControlCells",
    "DE_FAMILY_FDR",
    "DE_FAMILY_METRICS",
    "DE_FAMILY_TOP_K",
    "DE_METRICS",
    "DETable",
    "DISCRIMINATION_METRICS",
    "ERROR_METRICS",
    "LOWER_IS_BETTER",
    "METRICS",
    "bootstrap_ci",
    "bootstrap_ratio_ci",
    "de_family_metrics",
    "discrimination_scores",
    "error_metrics",
    "evaluate_predictions",
    "higher_is_better",
    "holm_adjust",
    "holm_interval",
    "holm_levels",
    "paired_comparison",
    "paired_comparisons",
    "paired_differences",
    "perturbation_metrics",
    "pseudobulk_de_table",
    "real_de_table",
    "rowwise_pearson",
    "subgroup_summary",
    "summarise_metrics",
    "worst_value",
    "wilcoxon_p",
    "wilcoxon_p_batch",
]
