"""The evaluation (stage 9): every model of a dataset scored, with CIs, against Train Mean.

- ``benchmark``: the metrics table (:func:`evaluate_models`), the headline table and the paper's
  values beside ours;
- ``ceiling``: the split-half noise ceiling;
- ``cell_eval_export``: a model's predictions as cell-eval's predicted / real AnnData pair;
- ``coverage``: which test conditions each model predicts, and the ``gears_covered`` subgroup."""

from perturb_assets.core.evaluation.benchmark import (
    ALL_SUBGROUPS,
    CEILING_MODEL,
    COLUMNS,
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
    summarise,
    target_columns,
    with_fraction_of_ceiling,
    with_holm_adjustment,
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

__all__ = [
    "CELL_EVAL_PERT_COL",
    "CellEvalPair",
    "cell_eval_command",
    "cell_eval_pair",
    "write_cell_eval_pair",
    "ALL_SUBGROUPS",
    "CEILING_MODEL",
    "COLUMNS",
    "GEARS_COVERED",
    "GEARS_MODELS",
    "HEADLINE_METRICS",
    "HOLM_ALPHA",
    "HOLM_FAMILY",
    "PAPER_DE_METHOD",
    "PAPER_METRIC_NAMES",
    "attach_paper_values",
    "better_than_train_mean",
    "combine_datasets",
    "de_lists_by_metric",
    "de_method_lists",
    "dynamic_range",
    "evaluate_models",
    "gears_covered_conditions",
    "headline_table",
    "headline_with_paper",
    "load_paper_metrics",
    "model_metrics",
    "noise_ceiling",
    "pearson_delta_by_dataset",
    "per_condition_metrics",
    "prediction_coverage",
    "split_half_means",
    "summarise",
    "target_columns",
    "with_fraction_of_ceiling",
    "with_holm_adjustment",
]
