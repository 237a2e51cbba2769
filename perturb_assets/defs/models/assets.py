"""Prediction assets, one per registered model × feature set: ``<model>_<features>_predictions``.

The factory reads :func:`perturb_assets.core.models.predictors`; each asset runs
:func:`perturb_assets.core.models.run_baseline` (features, grid search on validation, test
predictions) under the configured benchmark protocol, stores the prediction table, and keeps
the fitted model with skops in the platform's own storage (never loaded from a user path).

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from typing import Literal

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core.models import (
    DEFAULT_PROTOCOL,
    BaselineRun,
    Predictor,
    ProtocolName,
    prediction_table,
    predictors,
    run_baseline,
    save_model,
)
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import anndata_sha256, markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.resources import Compute, DataSources, ModelFile, model_file_metadata

GROUP = "models"


class PredictionConfig(dg.Config):
    """The benchmark protocol (:data:`perturb_assets.core.models.PROTOCOLS`)."""

    protocol: ProtocolName = DEFAULT_PROTOCOL.name


class FeaturePredictionConfig(PredictionConfig):
    """Also: a condition whose target gene has no features gets a zero vector (``zero``, the
    default) or is left out of training and prediction (``drop``); and ``implementation``:
    ``reference`` fits the model's reference implementation where it has a faster equivalent
    (scikit-learn's ``RandomForestRegressor`` on the raw targets instead of
    :class:`~perturb_assets.core.models.CompressedTargetForest`, each grid setting on its own).
    """

    missing_gene_policy: Literal["zero", "drop"] = "zero"
    implementation: Literal["fast", "reference"] = "fast"


def _skipped(predictor: Predictor, profiles: ad.AnnData, protocol: str):
    empty = pd.DataFrame(columns=profiles.var_names, dtype=float)
    table = prediction_table(
        empty, model=predictor.model.name, features=predictor.features_label, protocol=protocol
    )
    return dg.Output(table, metadata={"status": "skipped: no features", "protocol": protocol})


def _run_metadata(run: BaselineRun, model: ModelFile) -> dict:
    fit, report = run.fit, run.feature_report or {}
    meta = {
        "status": "ok",
        "protocol": fit.protocol,
        "fit_on": fit.fit_on,
        "best_params": str(fit.best_params),
        "validation_scores": markdown_table(fit.validation_scores),
        **{f"n_{s}": fit.n_conditions.get(s, 0) for s in ("train", "val", "test")},
        "n_skipped_conditions": fit.n_skipped,
        "n_fallback_predictions": fit.n_fallback,
        **model_file_metadata(model),
    }
    if report:
        meta |= {
            "missing_gene_policy": report["policy"],
            "n_missing_genes": report["n_missing_genes"],
            "missing_genes": ", ".join(map(str, report["missing_genes"][:50])) or "none",
        }
    return meta


def _predict(
    context: dg.AssetExecutionContext,
    predictor: Predictor,
    resources: tuple[DataSources, Compute],
    inputs: tuple[ad.AnnData, pd.DataFrame, pd.DataFrame | None],
    protocol: str,
    config: FeaturePredictionConfig | None = None,
) -> dg.Output[ad.AnnData]:
    (data_sources, compute), (profiles, split, gene_features) = resources, inputs
    if predictor.features is not None and gene_features.empty:
        context.log.warning(f"{predictor.name}: no {predictor.features.name} features; skipped")
        return _skipped(predictor, profiles, protocol)
    context.log.info(f"{predictor.name}: fitting on {context.partition_key} ({protocol})")
    reference = config is not None and config.implementation == "reference"
    run = run_baseline(
        predictor.model, profiles, split, gene_features, feature_set=predictor.features_label,
        protocol=protocol, n_jobs=compute.jobs_per_step, reference=reference,
        missing_gene_policy=config.missing_gene_policy if config else "zero",
    )  # fmt: skip
    model = data_sources.put_model_file(
        predictor.name,
        context.partition_key,
        "model.skops",
        lambda path: save_model(run.fit.model, path),
    )
    metadata = _run_metadata(run, model) | {"n_jobs": compute.jobs_per_step}
    if run.fit.not_converged:  # one line, not one warning per output gene
        counts = ", ".join(f"{k}: {v}" for k, v in run.fit.not_converged.items())
        context.log.info(f"{predictor.name}: fits stopped at max_iter unconverged ({counts})")
        metadata["not_converged"] = counts
    if predictor.model.reference_build is not None:
        metadata["implementation"] = "reference" if reference else "fast"
    # Content-addressed: a refit that predicts the same values leaves metrics untouched.
    return dg.Output(
        run.table, data_version=dg.DataVersion(anndata_sha256(run.table)), metadata=metadata
    )


def _asset_options(predictor: Predictor) -> dict:
    spec = predictor.model
    return dict(
        name=predictor.name,
        partitions_def=dataset_partitions,
        group_name=GROUP,
        code_version="2",
        kinds={*spec.kinds, "anndata"},
        op_tags={"device": spec.device},
        # Recompute when features or pseudo-bulk change (e.g. a new embedding file).
        automation_condition=REFRESH,
        metadata={"model": spec.name, "features": predictor.features_label},
        description=f"Test-set pseudo-bulk predictions of {spec.title}"
        + (f" on {predictor.features.title} features." if predictor.features else "."),
    )


def _prediction_asset(predictor: Predictor) -> dg.AssetsDefinition:
    if predictor.features is None:

        @dg.asset(**_asset_options(predictor))
        def predictions(
            context: dg.AssetExecutionContext,
            config: PredictionConfig,
            data_sources: DataSources,
            compute: Compute,
            pseudobulk: ad.AnnData,
            perturbation_split: pd.DataFrame,
        ) -> dg.Output[ad.AnnData]:
            inputs = (pseudobulk, perturbation_split, None)
            resources = (data_sources, compute)
            return _predict(context, predictor, resources, inputs, config.protocol)

        return predictions

    features_in = {"gene_features": dg.AssetIn(predictor.features.asset_name)}

    @dg.asset(**_asset_options(predictor), ins=features_in)
    def predictions_on_features(
        context: dg.AssetExecutionContext,
        config: FeaturePredictionConfig,
        data_sources: DataSources,
        compute: Compute,
        pseudobulk: ad.AnnData,
        perturbation_split: pd.DataFrame,
        gene_features: pd.DataFrame,
    ) -> dg.Output[ad.AnnData]:
        inputs = (pseudobulk, perturbation_split, gene_features)
        resources = (data_sources, compute)
        return _predict(context, predictor, resources, inputs, config.protocol, config)

    return predictions_on_features


prediction_assets = [_prediction_asset(p) for p in predictors(foundation=False)]
