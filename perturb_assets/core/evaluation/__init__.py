"""The evaluation (stage 9): every model of a dataset scored, with CIs, against Train Mean.

- ``benchmark``: the metrics table (:func:`evaluate_models`), the headline table and the paper's
  values beside ours;
- ``ceiling``: the split-half noise ceiling;
- ``cell_eval_export``: a model's predictions as cell-eval's predicted / real AnnData pair;
- ``coverage``: which test conditions each model predicts, and the ``gears_covered`` subgroup;
- ``robustness``: degenerate predictions (attacks and near-truth anchors) scored like the
  models, and whether any beats every honest model;
- ``calibration``: calibrated scores, dynamic range fractions, uninformative metrics;
- ``interactions``: genetic interactions of the test doubles (non-additivity, Norman's classes)
  and how well each model predicts them, against the additive expectation."""

from perturb_assets.core.evaluation.benchmark import (
    ALL_SUBGROUPS,
    CEILING_MODEL,
    COLUMNS,
    DE_FAMILY_METHOD,
    HEADLINE_METRICS,
    HOLM_ALPHA,
    HOLM_FAMILY,
    PAPER_DE_METHOD,
    PAPER_METRIC_NAMES,
    attach_paper_values,
    better_than_train_mean,
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
    score_frames,
    summarise,
    target_columns,
    with_calibrated_scores,
    with_holm_adjustment,
)
from perturb_assets.core.evaluation.calibration import (
    CALIBRATION_COLUMNS,
    CONTROL_MEAN_MODEL,
    DRF_GATE,
    calibrated_score,
    control_mean_predictions,
    dynamic_range_fraction,
    metric_calibration,
)
from perturb_assets.core.evaluation.ceiling import (
    noise_ceiling,
    split_half_means,
)
from perturb_assets.core.evaluation.cell_eval_export import (
    CELL_EVAL_PERT_COL,
    CellEvalPair,
    cell_eval_command,
    cell_eval_pair,
    write_cell_eval_pair,
)
from perturb_assets.core.evaluation.coverage import (
    GEARS_COVERED,
    GEARS_MODELS,
    gears_covered_conditions,
    prediction_coverage,
)
from perturb_assets.core.evaluation.interactions import (
    INTERACTION_CLASSES,
    INTERACTION_COLUMNS,
    INTERACTION_TOLERANCE,
    double_perturbations,
    interaction_class_counts,
    interaction_classes,
    interaction_coefficients,
    interaction_summary,
    interaction_table,
    single_deltas,
)
from perturb_assets.core.evaluation.robustness import (
    ANCHORS,
    ATTACKS,
    NOISE_LEVELS,
    degenerate_predictions,
    prediction_role,
    robustness_overview,
    robustness_table,
)

__all__ = [
    "CELL_EVAL_PERT_COL",
    "CellEvalPair",
    "cell_eval_command",
    "cell_eval_pair",
    "write_cell_eval_pair",
    "ALL_SUBGROUPS",
    "ANCHORS",
    "ATTACKS",
    "CEILING_MODEL",
    "COLUMNS",
    "DE_FAMILY_METHOD",
    "NOISE_LEVELS",
    "GEARS_COVERED",
    "GEARS_MODELS",
    "HEADLINE_METRICS",
    "INTERACTION_CLASSES",
    "INTERACTION_COLUMNS",
    "INTERACTION_TOLERANCE",
    "HOLM_ALPHA",
    "HOLM_FAMILY",
    "PAPER_DE_METHOD",
    "PAPER_METRIC_NAMES",
    "attach_paper_values",
    "better_than_train_mean",
    "combine_datasets",
    "de_lists_by_metric",
    "de_method_lists",
    "double_perturbations",
    "degenerate_predictions",
    "dynamic_range",
    "evaluate_models",
    "gears_covered_conditions",
    "headline_table",
    "headline_with_paper",
    "interaction_class_counts",
    "interaction_classes",
    "interaction_coefficients",
    "interaction_summary",
    "interaction_table",
    "load_paper_metrics",
    "model_metrics",
    "noise_ceiling",
    "pearson_delta_by_dataset",
    "per_condition_metrics",
    "score_frames",
    "prediction_coverage",
    "single_deltas",
    "prediction_role",
    "robustness_overview",
    "robustness_table",
    "split_half_means",
    "summarise",
    "target_columns",
    "with_calibrated_scores",
    "CALIBRATION_COLUMNS",
    "CONTROL_MEAN_MODEL",
    "DRF_GATE",
    "calibrated_score",
    "control_mean_predictions",
    "dynamic_range_fraction",
    "metric_calibration",
    "with_holm_adjustment",
]
