"""``metrics`` (per dataset) and ``benchmark_summary`` (all datasets), over core.benchmark.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import benchmark as B
from perturb_assets.core import registry
from perturb_assets.core.de import DEMethod
from perturb_assets.defs.io_managers import ALLOW_MISSING
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.partitions import dataset_partitions

GROUP = "metrics"
# Foundation models and the user's files may not be materialised: those inputs are optional.
_OPTIONAL = {ALLOW_MISSING: True}
_PREDICTION_INS = {
    **{p.name: dg.AssetIn(p.name) for p in registry.predictors(foundation=False)},
    **{
        p.name: dg.AssetIn(p.name, metadata=_OPTIONAL) for p in registry.predictors(foundation=True)
    },
    "user_predictions": dg.AssetIn("user_predictions", metadata=_OPTIONAL),
}


class MetricsConfig(dg.Config):
    """Which DE lists the headline table in the metadata uses (the paper's are t-test)."""

    headline_de_method: DEMethod = B.PAPER_DE_METHOD


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"pandas", "parquet"},
    ins={"pseudobulk": dg.AssetIn(), "perturbation_split": dg.AssetIn(), "de_genes": dg.AssetIn(),
         **_PREDICTION_INS},
    automation_condition=dg.AutomationCondition.eager(),
    description="Every model × feature set × DE method × metric on the test conditions, with "
    "bootstrap 95% CIs, the paired difference to Train Mean, per-subgroup rows, the protocol, "
    "and the paper's value beside ours.",
)  # fmt: skip
def metrics(
    context: dg.AssetExecutionContext,
    config: MetricsConfig,
    pseudobulk: ad.AnnData,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    **predictions: ad.AnnData | None,
) -> dg.Output[pd.DataFrame]:
    summary, _ = B.evaluate_models(
        predictions.values(), pseudobulk.to_df(), perturbation_split, de_genes,
        dataset=context.partition_key,
    )  # fmt: skip
    table = B.attach_paper_values(summary)
    skipped = sorted(name for name, t in predictions.items() if t is None or t.n_obs == 0)
    headline = B.headline_table(table, de_method=config.headline_de_method)
    return dg.Output(
        table,
        metadata={
            "pearson_delta_by_model": markdown_table(headline, max_rows=40),
            "n_rows": len(table),
            "skipped_models": ", ".join(skipped) or "none",
        },
    )


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={"metrics": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    description="All datasets' metric tables in one tidy table (materialised partitions only).",
)
def benchmark_summary(metrics: dict[str, pd.DataFrame]) -> dg.Output[pd.DataFrame]:
    table = B.combine_datasets(metrics.values())
    return dg.Output(
        table,
        metadata={
            "datasets": ", ".join(sorted(metrics)),
            "pearson_delta": markdown_table(B.pearson_delta_by_dataset(table), max_rows=40),
        },
    )
