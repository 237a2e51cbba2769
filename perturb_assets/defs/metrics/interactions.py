"""``genetic_interactions`` (per dataset), over core.evaluation.interactions.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import evaluation
from perturb_assets.core.report import interaction_figure
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import figure, markdown_table
from perturb_assets.defs.metrics.assets import GROUP, PREDICTION_INS
from perturb_assets.defs.partitions import dataset_partitions


class InteractionsConfig(dg.Config):
    """Half-width of the ``additive`` band of the normalised magnitude (1 = additive)."""

    tolerance: float = evaluation.INTERACTION_TOLERANCE


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    automation_condition=REFRESH,
    ins={"pseudobulk": dg.AssetIn(), "perturbation_split": dg.AssetIn(), **PREDICTION_INS},
    description="Genetic interactions of the test doubles (A+B with both singles measured): "
    "the additive expectation ctrl + δA + δB, observed and each model's predicted "
    "non-additivity (Pearson, MSE), Norman et al. 2019's fit δAB ≈ c1·δA + c2·δB with its "
    "class (synergy / suppression / additive), and each model's error over the additive "
    "expectation's. Empty on a dataset without double perturbations.",
)
def genetic_interactions(
    context: dg.AssetExecutionContext,
    config: InteractionsConfig,
    pseudobulk: ad.AnnData,
    perturbation_split: pd.DataFrame,
    **predictions: ad.AnnData | None,
) -> dg.Output[pd.DataFrame]:
    table = evaluation.interaction_table(
        predictions.values(),
        pseudobulk.to_df(),
        perturbation_split,
        dataset=context.partition_key,
        tolerance=config.tolerance,
    )
    if table.empty:
        note = "no test double perturbation with both singles measured: nothing to score"
        context.log.info(note)
        return dg.Output(table, metadata={"n_rows": 0, "n_doubles": 0, "note": note})
    summary = evaluation.interaction_summary(table).round(3)
    counts = evaluation.interaction_class_counts(table)
    return dg.Output(
        table,
        metadata={
            "summary_by_model": markdown_table(summary, max_rows=40),
            "class_counts": markdown_table(counts, max_rows=40),
            "error_ratio_plot": figure(
                interaction_figure(table, context.partition_key), "error over additive's"
            ),
            "n_rows": len(table),
            "n_doubles": int(table["condition"].nunique()),
            "models_beating_additive": ", ".join(
                "/".join(k[:2]) for k in summary.index[summary["beats_additive"]]
            )
            or "none",
        },
    )
