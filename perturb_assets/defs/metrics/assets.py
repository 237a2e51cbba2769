"""``metrics`` (per dataset) and ``benchmark_summary`` (all datasets), over core.benchmark.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import dagster as dg
import pandas as pd

from perturb_assets.core import benchmark as B
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.models.assets import PREDICTORS, prediction_asset_name
from perturb_assets.defs.partitions import dataset_partitions

GROUP = "metrics"
_PRED_INS = {
    prediction_asset_name(m, fs): dg.AssetIn(prediction_asset_name(m, fs)) for m, fs in PREDICTORS
}
HEADLINE = ["pearson", "pearson_delta", "pearson_de_delta", "pearson_delta_de_no_target"]


def headline_table(summary: pd.DataFrame, de_method: str = "t-test") -> pd.DataFrame:
    """Model × metric means (whole test set) for one DE method: the paper's Table 2 layout."""
    rows = summary[
        (summary["subgroup"] == B.ALL_SUBGROUPS)
        & summary["de_method"].isin(["none", de_method])
        & summary["metric"].isin(HEADLINE)
    ]
    table = rows.pivot_table(index=["model", "features"], columns="metric", values="value")
    return table.reindex(columns=[m for m in HEADLINE if m in table.columns]).round(3)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={"pseudobulk": dg.AssetIn(), "perturbation_split": dg.AssetIn(), "de_genes": dg.AssetIn(),
         **_PRED_INS},
    automation_condition=dg.AutomationCondition.eager(),
    description="Every model × feature set × DE method × metric on the test conditions, with "
    "bootstrap 95% CIs, the paired difference to Train Mean, per-subgroup rows, and the "
    "paper's value beside ours.",
)  # fmt: skip
def metrics(
    context: dg.AssetExecutionContext,
    pseudobulk: pd.DataFrame,
    perturbation_split: pd.DataFrame,
    de_genes: pd.DataFrame,
    **predictions: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    by_model = {
        (m, fs or "none"): predictions[prediction_asset_name(m, fs)] for m, fs in PREDICTORS
    }
    summary, _ = B.evaluate_models(
        by_model, pseudobulk, perturbation_split, de_genes, dataset=context.partition_key
    )
    table = B.attach_paper_values(summary)
    skipped = sorted(f"{m}/{fs}" for (m, fs), p in by_model.items() if p.empty)
    return dg.Output(
        table,
        metadata={
            "pearson_delta_by_model": markdown_table(headline_table(table), max_rows=40),
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
def benchmark_summary(
    context: dg.AssetExecutionContext, metrics: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    frames = [t for t in metrics.values() if not t.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=B.COLUMNS)
    pearson_delta = table[
        (table["metric"] == "pearson_delta") & (table["subgroup"] == B.ALL_SUBGROUPS)
    ].pivot_table(index=["model", "features"], columns="dataset", values="value")
    return dg.Output(
        table,
        metadata={
            "datasets": ", ".join(sorted(metrics)),
            "pearson_delta": markdown_table(pearson_delta.round(3), max_rows=40),
        },
    )
