"""The scoring rules (stage 7): the paper's metrics and the ones beyond it.

Below the models because model selection scores with them:

- ``perturbation``: Pearson, Pearson Delta, on the top-20 DE genes, without targets
  (:func:`perturbation_metrics`), over the ``pearson`` kernels;
- ``cell_eval``: cell-eval's error and discrimination metrics;
- ``statistics``: bootstrap CIs and paired comparisons of per-condition values, Holm's
  multiplicity adjustment."""

from perturb_assets.core.metrics.cell_eval import (
    DISCRIMINATION_METRICS,
    ERROR_METRICS,
    LOWER_IS_BETTER,
    discrimination_scores,
    error_metrics,
    higher_is_better,
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
    holm_adjust,
    holm_interval,
    holm_levels,
    paired_comparison,
    subgroup_summary,
    summarise_metrics,
    wilcoxon_p,
)

__all__ = [
    "BASE_METRICS",
    "DE_METRICS",
    "DISCRIMINATION_METRICS",
    "ERROR_METRICS",
    "LOWER_IS_BETTER",
    "METRICS",
    "bootstrap_ci",
    "discrimination_scores",
    "error_metrics",
    "evaluate_predictions",
    "higher_is_better",
    "holm_adjust",
    "holm_interval",
    "holm_levels",
    "paired_comparison",
    "perturbation_metrics",
    "rowwise_pearson",
    "subgroup_summary",
    "summarise_metrics",
    "wilcoxon_p",
]
