"""``metrics`` (per dataset) and ``benchmark_summary`` (all datasets), over core.evaluation.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import evaluation
from perturb_assets.core.models import registry
from perturb_assets.core.models.predictions import rejected_files
from perturb_assets.core.pp import DEMethod
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.resources import ALLOW_MISSING

GROUP = "metrics"
# Foundation models and the user's files may not be materialised: those inputs are optional.
_OPTIONAL = {ALLOW_MISSING: True}
#: Every prediction asset as an input (also of `genetic_interactions`).
PREDICTION_INS = {
    **{p.name: dg.AssetIn(p.name) for p in registry.predictors(foundation=False)},
    **{
        p.name: dg.AssetIn(p.name, metadata=_OPTIONAL) for p in registry.predictors(foundation=True)
    },
    "user_predictions": dg.AssetIn("user_predictions", metadata=_OPTIONAL),
}


class MetricsConfig(dg.Config):
    """Which DE lists the headline table in the metadata uses (the paper's are t-test)."""

    headline_de_method: DEMethod = evaluation.PAPER_DE_METHOD


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"pandas", "parquet"},
    description="Split-half noise ceiling per test condition and metric: a random half of "
    "the condition's cells scored as a prediction of the other half, averaged over 5 splits; "
    "cell-eval's DE family included (the other half's cells against the controls).",
)
def noise_ceiling(
    expression: ad.AnnData,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    pseudobulk: ad.AnnData,
) -> dg.Output[pd.DataFrame]:
    table = evaluation.noise_ceiling(expression, perturbation_split, de_genes, pseudobulk.to_df())
    means = table[table["de_method"].isin(["none", evaluation.PAPER_DE_METHOD])]
    means = means.groupby("metric")["value"].mean().round(3).to_frame()
    return dg.Output(table, metadata={"ceiling": markdown_table(means), "n_rows": len(table)})


@dg.multi_asset(
    outs={
        "metrics": dg.AssetOut(
            code_version="4",
            kinds={"pandas", "parquet"},
            automation_condition=REFRESH,
            description="Every model × feature set × DE method × metric on the test "
            "conditions, with bootstrap 95% CIs, the paired difference to Train Mean, "
            "per-subgroup rows (also `gears_covered`: the conditions GEARS predicts), the "
            "protocol, the noise ceiling (model `noise_ceiling`), each "
            "model's fraction of the way from Train Mean to it, and the paper's value beside "
            "ours; cell-eval's DE metrics (overlap_at_N, de_direction_match, ..., "
            "DE method `wilcoxon_bh`) against the real control cells of `expression`.",
        ),
        "metrics_per_condition": dg.AssetOut(
            code_version="2",
            kinds={"pandas", "parquet"},
            automation_condition=REFRESH,
            description="The per-condition values behind `metrics`: one row per model, "
            "condition and metric, so any summary row can be traced to its conditions.",
        ),
    },
    partitions_def=dataset_partitions,
    group_name=GROUP,
    ins={
        "expression": dg.AssetIn(),
        "pseudobulk": dg.AssetIn(),
        "perturbation_split": dg.AssetIn(),
        "de_genes": dg.AssetIn(),
        "noise_ceiling": dg.AssetIn(),
        **PREDICTION_INS,
    },
)
def metrics(
    context: dg.AssetExecutionContext,
    config: MetricsConfig,
    expression: ad.AnnData,
    pseudobulk: ad.AnnData,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    noise_ceiling: pd.DataFrame,
    **predictions: ad.AnnData | None,
):
    summary, per_condition = evaluation.evaluate_models(
        predictions.values(),
        pseudobulk.to_df(),
        perturbation_split,
        de_genes,
        dataset=context.partition_key,
        gene_names=pseudobulk.var.get("gene_name"),
        ceiling=noise_ceiling,
        cells=expression,
    )
    table = evaluation.attach_paper_values(summary)
    skipped = sorted(name for name, t in predictions.items() if t is None or t.n_obs == 0)
    rejected = rejected_files(predictions.get("user_predictions"))
    for row in rejected.itertuples():
        context.log.warning(f"prediction file {row.file} not scored: {row.field}: {row.problem}")
    coverage = _log_coverage(context, per_condition, perturbation_split)
    headline = evaluation.headline_table(table, de_method=config.headline_de_method)
    yield dg.Output(
        table,
        "metrics",
        metadata={
            "pearson_delta_by_model": markdown_table(headline, max_rows=40),
            "n_rows": len(table),
            # Holm-adjusted over the dataset's models x metrics (whole test set)
            "better_than_train_mean_on_pearson_delta": ", ".join(
                evaluation.better_than_train_mean(table)
            )
            or "none",
            "skipped_models": ", ".join(skipped) or "none",
            "rejected_prediction_files": ", ".join(rejected["file"]) or "none",
            **coverage,
        },
    )
    yield dg.Output(per_condition, "metrics_per_condition", metadata={"n_rows": len(per_condition)})


def _log_coverage(
    context: dg.AssetExecutionContext, per_condition: pd.DataFrame, split: pd.DataFrame
) -> dict:
    """A model predicting part of the test set is scored on what it predicts: say so."""
    coverage = evaluation.prediction_coverage(
        per_condition, split, exclude=(evaluation.CEILING_MODEL,)
    )
    partial = coverage[coverage["n_missing"] > 0]
    for row in partial.itertuples():
        context.log.warning(
            f"{row.model}/{row.features}: scored on the {row.n_scored} of {row.n_test} test "
            f"conditions it predicts; {row.n_missing} missing ({row.missing})"
        )
    covered = evaluation.gears_covered_conditions(per_condition)
    return {
        # Only the models that miss test conditions (the others predict all of them).
        "prediction_coverage": markdown_table(partial.set_index("model"), max_rows=60),
        "n_models_with_missing_conditions": len(partial),
        "n_gears_covered_conditions": "no GEARS predictions" if covered is None else len(covered),
    }


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={"metrics": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    description="All datasets' metric tables in one tidy table (materialised partitions only).",
)
def benchmark_summary(metrics: dict[str, pd.DataFrame]) -> dg.Output[pd.DataFrame]:
    table = evaluation.combine_datasets(metrics.values())
    return dg.Output(
        table,
        metadata={
            "datasets": ", ".join(sorted(metrics)),
            "pearson_delta": markdown_table(
                evaluation.pearson_delta_by_dataset(table), max_rows=40
            ),
        },
    )
