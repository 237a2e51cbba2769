"""``metric_calibration`` (per dataset), over core.evaluation.calibration.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import evaluation
from perturb_assets.core.report import calibration_figure
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import figure, markdown_table
from perturb_assets.defs.partitions import dataset_partitions

GROUP = "metrics"


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    automation_condition=REFRESH,
    description="Per metric: the positive control (split-half replicate), the negative "
    "controls (Train Mean, the control mean), each model's calibrated score (u - b) / (r - b), "
    "the dynamic range fraction, whether the metric tells the replicate from Train Mean "
    "across conditions, and whether it is uninformative on this dataset.",
)
def metric_calibration(
    context: dg.AssetExecutionContext,
    metrics: pd.DataFrame,
    metrics_per_condition: pd.DataFrame,
    pseudobulk: ad.AnnData,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    expression: ad.AnnData,
) -> dg.Output[pd.DataFrame]:
    profiles = pseudobulk.to_df()
    test = perturbation_split.index[perturbation_split["split"] == "test"]
    no_change = evaluation.control_mean_predictions(profiles, profiles.index.intersection(test))
    control_mean = evaluation.score_frames(
        {evaluation.CONTROL_MEAN_MODEL: no_change}, profiles, perturbation_split, de_genes,
        pseudobulk.var.get("gene_name"), cells=expression,
    )  # fmt: skip
    table = evaluation.metric_calibration(metrics, metrics_per_condition, control_mean)
    by_metric = table.drop_duplicates(["de_method", "metric"]).set_index(["de_method", "metric"])
    flags = by_metric[["positive_control", "train_mean", "control_mean", "drf",
                       "replicate_win_rate", "p_value", "uninformative"]]  # fmt: skip
    return dg.Output(
        table,
        metadata={
            "calibration": markdown_table(flags.round(3), max_rows=80),
            "uninformative_metrics": ", ".join(
                f"{m} ({d})" for d, m in by_metric.index[by_metric["uninformative"]]
            )
            or "none",
            "drf_plot": figure(calibration_figure(table, context.partition_key), "DRF"),
            "n_rows": len(table),
        },
    )
