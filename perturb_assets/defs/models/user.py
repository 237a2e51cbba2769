"""Predictions a user brings: files under ``<data root>/predictions/<dataset>/``.

Each file is a model (named after the file) of the ``user_predictions`` table of its dataset,
scored by ``metrics`` like every other model. The folder is read when the asset runs, so a new
file needs no code reload: the hourly observation of ``user_prediction_files`` records a new
data version and the automation sensor recomputes ``user_predictions`` and ``metrics``.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import hashlib

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core.io import sha256_file
from perturb_assets.core.models import predictions
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.partitions import dataset_names, dataset_partitions
from perturb_assets.defs.resources import DataSources


@dg.observable_source_asset(
    group_name="models",
    description="The user's prediction files in <data root>/predictions/<dataset>/<model>."
    "{parquet,csv,h5ad}, observed by their sha256. A folder of an unknown dataset fails the "
    "observation, naming it.",
)
def user_prediction_files(data_sources: DataSources) -> dg.DataVersion:
    problems = predictions.prediction_folder_problems(data_sources.root, dataset_names())
    if problems:
        raise dg.Failure("; ".join(problems), allow_retries=False)
    digest = hashlib.sha256()
    for dataset in dataset_names():
        for path in predictions.user_prediction_files(data_sources.root, dataset):
            digest.update(f"{dataset}/{path.name}".encode())
            digest.update(bytes.fromhex(sha256_file(path)))
    return dg.DataVersion(digest.hexdigest())


@dg.asset(
    partitions_def=dataset_partitions,
    group_name="models",
    code_version="1",
    deps=[user_prediction_files],
    kinds={"anndata"},
    automation_condition=REFRESH,
    description="Every prediction file the user put in <data root>/predictions/<dataset>/, "
    "checked against the dataset (conditions, genes, log scale, NaN) and gathered into one "
    "prediction table; each file is a model named after it.",
)
def user_predictions(
    context: dg.AssetExecutionContext, data_sources: DataSources, pseudobulk: ad.AnnData
) -> dg.Output[ad.AnnData]:
    combined, rejected = predictions.read_prediction_folder(
        data_sources.root, context.partition_key, pseudobulk
    )
    for row in rejected.itertuples():
        context.log.warning(f"{row.file}: {row.field}: {row.problem}; not scored")
    models = combined.obs.groupby("model", observed=True).size().rename("conditions")
    return dg.Output(
        combined,
        metadata={
            "n_models": len(models),
            "models": markdown_table(models.to_frame() if len(models) else pd.DataFrame()),
            "n_rejected_files": len(rejected),
            "rejected_files": markdown_table(rejected),
        },
    )


@dg.asset_check(
    asset=user_predictions,
    partitions_def=dataset_partitions,
    description="Every file in the dataset's prediction folder was accepted (a refused file "
    "is left out of metrics; the others are scored).",
)
def user_predictions_files_accepted(user_predictions: ad.AnnData) -> dg.AssetCheckResult:
    rejected = predictions.rejected_files(user_predictions)
    return dg.AssetCheckResult(
        passed=rejected.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description="all files accepted"
        if rejected.empty
        else "refused: "
        + "; ".join(f"{r.file} ({r.field}: {r.problem})" for r in rejected.itertuples()),
        metadata={"rejected_files": markdown_table(rejected)},
    )
