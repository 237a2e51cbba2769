"""``metric_robustness`` (per dataset): degenerate predictions placed among the honest models.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import evaluation
from perturb_assets.core.report import robustness_figure
from perturb_assets.defs.metadata import figure, markdown_table
from perturb_assets.defs.partitions import dataset_partitions

GROUP = "metrics"


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="Metric robustness battery: attacks (control mean, Train Mean, Train Mean + "
    "the true target change, shuffled truth, a top-DE leak, one cell, count scale) and "
    "near-truth anchors (truth ×0.5/×2, truth + noise) scored with every metric; per metric "
    "and DE method, each one's rank among the honest models and `fools_metric` where an "
    "attack beats them all.",
)
def metric_robustness(
    context: dg.AssetExecutionContext,
    pseudobulk: ad.AnnData,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    expression: ad.AnnData,
    metrics: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    profiles = pseudobulk.to_df()
    gene_names = pseudobulk.var.get("gene_name")
    predictions = evaluation.degenerate_predictions(
        profiles, perturbation_split, de_genes, expression, gene_names=gene_names
    )
    table = evaluation.robustness_table(
        predictions, profiles, perturbation_split, de_genes, metrics, gene_names,
        cells=expression,
    )  # fmt: skip
    fooled = table[table["fools_metric"]]
    return dg.Output(
        table,
        metadata={
            "rank_among_honest_models": markdown_table(
                evaluation.robustness_overview(table), max_rows=40
            ),
            "rank_heatmap": figure(robustness_figure(table, context.partition_key), "ranks"),
            "n_fooled": len(fooled),
            "fooled": ", ".join(sorted(set(fooled["prediction"] + " → " + fooled["metric"])))
            or "none",
            "n_rows": len(table),
        },
    )
