"""The evaluation (stage 9): every model of a dataset scored, with CIs, against Train Mean.

- ``benchmark``: the metrics table (:func:`evaluate_models`), the headline table and the paper's
  values beside ours;
- ``ceiling``: the split-half noise ceiling;
- ``robustness``: degenerate predictions (attacks and near-truth anchors) scored like the
  models, and whether any beats every honest model;
- ``coverage``: which test conditions each model predicts, and the ``gears_covered`` subgroup."""

from perturb_assets.core.evaluation.benchmark import (
    ALL_SUBGROUPS,
    CEILING_MODEL,
    COLUMNS,
    HEADLINE_METRICS,
    PAPER_DE_METHOD,
    PAPER_METRIC_NAMES,
    attach_paper_values,
    combine_datasets,
    de_lists_by_metric,
    de_method_lists,
    dynamic_range,
    evaluate_models,
    headline_table,
    headline_with_paper,
    load_paper_metrics,
    model_metrics,
    pearson_delta_by_dataset,
    per_condition_metrics,
    summarise,
    target_columns,
    with_fraction_of_ceiling,
)
from perturb_assets.core.evaluation.ceiling import (
    noise_ceiling,
    split_half_means,
)
from perturb_assets.core.evaluation.coverage import (
    GEARS_COVERED,
    GEARS_MODELS,
    gears_covered_conditions,
    prediction_coverage,
)
from perturb_assets.core.evaluation.robustness import (
    ANCHORS,
    ATTACKS,
    NOISE_LEVELS,
    degenerate_predictions,
    higher_is_better,
    prediction_role,
    robustness_overview,
    robustness_table,
)

__all__ = [
    "ALL_SUBGROUPS",
    "ANCHORS",
    "ATTACKS",
    "CEILING_MODEL",
    "COLUMNS",
    "NOISE_LEVELS",
    "GEARS_COVERED",
    "GEARS_MODELS",
    "HEADLINE_METRICS",
    "PAPER_DE_METHOD",
    "PAPER_METRIC_NAMES",
    "attach_paper_values",
    "combine_datasets",
    "de_lists_by_metric",
    "de_method_lists",
    "degenerate_predictions",
    "dynamic_range",
    "evaluate_models",
    "gears_covered_conditions",
    "headline_table",
    "headline_with_paper",
    "higher_is_better",
    "load_paper_metrics",
    "model_metrics",
    "noise_ceiling",
    "pearson_delta_by_dataset",
    "per_condition_metrics",
    "prediction_coverage",
    "prediction_role",
    "robustness_overview",
    "robustness_table",
    "split_half_means",
    "summarise",
    "target_columns",
    "with_fraction_of_ceiling",
]
