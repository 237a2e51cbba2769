"""Non-blocking check: can this dataset tell good models from Train Mean at all?"""

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core.analyses import adequacy_problems
from perturb_assets.core.evaluation import dynamic_range
from perturb_assets.defs.partitions import dataset_partitions


@dg.asset_check(
    asset="metrics",
    blocking=False,
    partitions_def=dataset_partitions,
    additional_ins={"dataset_diversity": dg.AssetIn("dataset_diversity")},
    description="Warns when the perturbations respond so alike (high median delta correlation) "
    "or the best model is so close to Train Mean (small dynamic range) that the dataset cannot "
    "separate good models from trivial ones.",
)
def benchmark_adequacy(metrics: pd.DataFrame, dataset_diversity: ad.AnnData) -> dg.AssetCheckResult:
    median = float(dataset_diversity.uns["summary"]["median_pairwise_delta_corr"])
    best, value = dynamic_range(metrics)
    problems = adequacy_problems(median, value)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "median_pairwise_delta_corr": median,
            "dynamic_range": value,
            "best_model": best,
            "problems": "; ".join(problems) or "none",
        },
    )
