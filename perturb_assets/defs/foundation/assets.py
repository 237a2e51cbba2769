"""Foundation-model assets: GPU-tagged, one per foundation model of the registry.

Each is a multi-asset with two outputs: ``<model>_predictions`` (the same prediction table as
the baselines, scored by ``metrics``) and ``<model>_weights`` (the trained weights' file, its
sha256 and the training settings). The computation is the model's ``runner`` in
:mod:`perturb_assets.core.models.foundation.runs`. Also here: the pre-trained scGPT checkpoint
(an observable source) and the gene-embedding table extracted from it.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from perturb_assets.core.io import sha256_files
from perturb_assets.core.models import prediction_table, registry, seeded_prediction_table
from perturb_assets.core.models.foundation import (
    FineTuneSettings,
    FoundationInputs,
    GearsSettings,
    MissingModelFiles,
    save_weights,
)
from perturb_assets.core.models.foundation import scgpt_checkpoint as ckpt
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.foundation.k8s import GPU_POOL, gpu_op_tags
from perturb_assets.defs.metadata import markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.raw_files import RawFiles, raw_files
from perturb_assets.defs.resources import DataSources, ModelFile, model_file_metadata
from perturb_assets.defs.settings_config import settings_config

GROUP = "foundation"
# The per-dataset asset behind each field of FoundationInputs a model may require.
INPUT_ASSETS = {
    "expression": "expression",
    "split": "perturbation_split",
    "pseudobulk": "pseudobulk",
    "annotations": "go_annotations",
}


ScGPTConfig = settings_config(
    FineTuneSettings,
    "ScGPTConfig",
    "scGPT fine-tuning (core: FineTuneSettings); defaults are the scGPT perturbation "
    "tutorial's. ``device: auto`` uses CUDA when present, else the CPU (with a warning).",
)
GearsConfig = settings_config(
    GearsSettings,
    "GearsConfig",
    "GEARS training (core: GearsSettings). A field left empty takes the preset's value: "
    "``preset: auto`` gives plain GEARS cell-gears' defaults and GEARS + scFoundation the "
    "paper's settings for the dataset (tiny ones for ``synthetic``); see "
    "docs/guide/foundation-models.md. ``device: auto`` as for scGPT.",
)


CONFIGS = {FineTuneSettings: ScGPTConfig, GearsSettings: GearsConfig}


def _folder_sha256(folder: Path | None) -> str:
    if folder is None:
        return "absent"
    return sha256_files(
        folder / name for name in (ckpt.ARGS_FILE, ckpt.VOCAB_FILE, ckpt.WEIGHTS_FILE)
    )


@dg.observable_source_asset(
    group_name=GROUP,
    description=f"The pre-trained scGPT checkpoint (official layout) in <data root>/"
    f"{ckpt.CHECKPOINT_DIR}, observed by the sha256 of its three files.",
)
def scgpt_checkpoint(data_sources: DataSources) -> dg.DataVersion:
    return dg.DataVersion(_folder_sha256(ckpt.find_checkpoint(data_sources.root)))


@dg.asset(
    group_name="features",
    code_version="1",
    deps=[scgpt_checkpoint],
    kinds={"pytorch", "parquet"},
    automation_condition=REFRESH,
    description="scGPT's gene embeddings (gene symbol × embsize) from the pre-trained "
    "checkpoint's gene encoder; the scGPT features of RF/EN/kNN/linear when no scGPT "
    "embedding file is given. Empty without a checkpoint.",
)
def scgpt_gene_embeddings(
    context: dg.AssetExecutionContext, data_sources: DataSources
) -> dg.Output[pd.DataFrame]:
    folder = ckpt.find_checkpoint(data_sources.root)
    if folder is None:
        context.log.warning(f"no checkpoint at {data_sources.root / ckpt.CHECKPOINT_DIR}")
        return dg.Output(pd.DataFrame(), metadata={"status": "no checkpoint"})
    table = ckpt.gene_embedding_table(ckpt.read_checkpoint(folder))
    return dg.Output(
        table,
        metadata={
            "status": "ok",
            "checkpoint": dg.MetadataValue.path(str(folder)),
            "n_genes": table.shape[0],
            "n_dims": table.shape[1],
        },
    )


def _inputs(
    data_sources: DataSources, files: RawFiles, loaded: dict, dataset: str
) -> FoundationInputs:
    pseudobulk = loaded.get("pseudobulk")
    return FoundationInputs(
        expression=loaded["expression"],
        split=loaded["perturbation_split"],
        pseudobulk=pseudobulk.to_df() if pseudobulk is not None else None,
        annotations=loaded.get("go_annotations"),
        data_root=data_sources.root,
        companion_dir=files.companion_dir,
        dataset=dataset,
    )


def _outputs(
    predictor: registry.Predictor, run, weights: dict, model: ModelFile, var: pd.DataFrame
):
    identity = {"model": predictor.model.name, "features": predictor.features_label,
                "protocol": registry.DEFAULT_PROTOCOL.name, "var": var}  # fmt: skip
    if "seed" in run.report:  # one block per seed, each row saying which
        table = seeded_prediction_table(
            run.seed_predictions or {run.report["seed"]: run.predictions}, **identity
        )
    else:
        table = prediction_table(run.predictions, **identity)
    meta = {
        "status": "ok",
        "device": run.device,
        "history": markdown_table(run.history),
        "n_test_conditions": run.predictions.shape[0],
        "weights_sha256": weights["sha256"],
        **{k: v for k, v in run.report.items() if isinstance(v, int | float | str)},
    }
    yield dg.Output(table, predictor.name, metadata=meta)
    yield dg.Output(
        weights,
        f"{predictor.model.name}_weights",
        data_version=dg.DataVersion(weights["sha256"]),
        metadata={
            **model_file_metadata(model),
            "sha256": weights["sha256"],
            "training_config": dg.MetadataValue.json(weights["settings"]),
        },
    )


def _skipped(predictor: registry.Predictor, reason: str, var: pd.DataFrame):
    empty = pd.DataFrame(columns=var.index, dtype=float)
    table = prediction_table(
        empty,
        model=predictor.model.name,
        features=predictor.features_label,
        protocol=registry.DEFAULT_PROTOCOL.name,
    )
    yield dg.Output(table, predictor.name, metadata={"status": f"skipped: {reason}"})
    yield dg.Output({"status": "skipped", "reason": reason}, f"{predictor.model.name}_weights")


def _foundation_asset(predictor: registry.Predictor) -> dg.AssetsDefinition:
    spec = predictor.model
    config_class = CONFIGS[spec.settings_class]
    ins = {
        name: dg.AssetIn(name) for name in ("raw_dataset", *map(INPUT_ASSETS.get, spec.requires))
    }

    @dg.multi_asset(
        name=f"train_{spec.name}",
        outs={
            predictor.name: dg.AssetOut(
                kinds={*spec.kinds, "anndata"},
                code_version="1",
                description=f"Test-set pseudo-bulk predictions of {spec.title}.",
                metadata={"model": spec.name, "features": predictor.features_label},
            ),
            f"{spec.name}_weights": dg.AssetOut(
                kinds={*spec.kinds},
                code_version="1",
                description=f"The trained {spec.title} weights (torch.save), with sha256 and "
                "training settings.",
            ),
        },
        ins=ins,
        deps=list(spec.files),
        partitions_def=dataset_partitions,
        group_name=GROUP,
        op_tags=gpu_op_tags(),
        pool=GPU_POOL,
    )
    def train(
        context: dg.AssetExecutionContext,
        config: config_class,
        data_sources: DataSources,
        **loaded,
    ):
        var, raw_dataset = loaded["expression"].var, loaded.pop("raw_dataset")
        try:
            with raw_files(raw_dataset, data_sources) as files:
                run = spec.runner(
                    _inputs(data_sources, files, loaded, context.partition_key),
                    config.settings(),
                    config.device,
                    context.log.info,
                )
        except MissingModelFiles as exc:
            context.log.warning(str(exc))
            yield from _skipped(predictor, str(exc), var)
            return
        model = data_sources.put_model_file(
            predictor.name,
            context.partition_key,
            "weights.pt",
            lambda path: save_weights(run.state_dict, path),
        )
        # Names the file by its store key, not its URL: the value is the same in every root.
        weights = {
            "file": f"{model.key}/{model.filename}",
            "sha256": model.sha256,
            "settings": run.report.get("settings", {}),
            "device": run.device,
        }
        yield from _outputs(predictor, run, weights, model, var)

    return train


foundation_assets = [_foundation_asset(p) for p in registry.predictors(foundation=True)]
