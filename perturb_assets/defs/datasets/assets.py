"""Dataset-layer assets, one per dataset partition. Each is a thin wrapper over core.

No ``from __future__ import annotations`` here: Dagster reads config and IO types from the
runtime annotations.
"""

import dataclasses
from typing import Literal

import anndata as ad
import dagster as dg
import pandas as pd
from pydantic import model_validator

from perturb_assets.core.datasets import (
    RawManifest,
    UnknownDatasetError,
    dataset_summary,
    load_expression,
    obtain_dataset,
)
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears import (
    SPLITS,
    check_split_parameters,
    simulation_split,
    split_summary,
)
from perturb_assets.core.io import DownloadError, is_retryable, sha256_file
from perturb_assets.core.pp import de_gene_table, pseudobulk_profiles
from perturb_assets.core.simulation import PRESETS, PresetName, SimulationParams, preset_params
from perturb_assets.defs.metadata import frame_sha256, markdown_table, matrix_sha256
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.raw_files import raw_files, store_raw
from perturb_assets.defs.resources import DataSources

GROUP = "datasets"
# Dataverse answers 403 and 5xx at times: transient download errors are retried with
# exponential backoff; everything else fails at once.
DOWNLOAD_RETRIES = 4
DOWNLOAD_BACKOFF_S = 15


class SyntheticConfig(dg.Config):
    """Simulator settings, used only for simulated partitions (``synthetic``, ``adamson_like``,
    ``norman_like``, ``k562_like``, ``rpe1_like``; :data:`perturb_assets.core.simulation.PRESETS`).

    ``preset`` picks the base values (``partition``, the default: the partition's own preset);
    every other field left empty (or ``modality="preset"``) keeps the preset's value. Checked by
    :class:`~perturb_assets.core.simulation.SimulationParams` before anything is simulated.
    """

    preset: Literal["partition", PresetName] = "partition"
    n_cells: int | None = None
    n_genes: int | None = None
    n_perturbations: int | None = None
    combo_fraction: float | None = None
    diversity: float | None = None
    modality: Literal["preset", "crispri", "crispra"] = "preset"
    seed: int | None = None

    @model_validator(mode="after")
    def _valid(self) -> "SyntheticConfig":
        self.params("synthetic")
        return self

    def params(self, partition: str) -> SimulationParams:
        """The simulation of ``partition`` (its preset unless ``preset`` names another)."""
        overrides = self.model_dump(exclude={"preset"})
        if overrides["modality"] == "preset":
            overrides["modality"] = None
        return preset_params(partition if self.preset == "partition" else self.preset, **overrides)


def _obtain(context: dg.AssetExecutionContext, sources: DataSources, config: SyntheticConfig):
    """Core's :func:`obtain_dataset`, with Dagster's retry only for transient download errors."""
    name = context.partition_key
    try:
        return obtain_dataset(
            name,
            sources.root,
            url_template=sources.dataverse_url_template,
            simulation=config.params(name) if name in PRESETS else None,
            progress=context.log.info,
        )
    except (DownloadError, DatasetError) as exc:
        if is_retryable(exc):  # the .part file resumes on the next attempt
            wait = DOWNLOAD_BACKOFF_S * 2**context.retry_number
            raise dg.RetryRequested(DOWNLOAD_RETRIES, seconds_to_wait=wait) from exc
        raise dg.Failure(str(exc), allow_retries=False) from exc
    except UnknownDatasetError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"h5ad"},
    description="The raw GEARS dataset file: downloaded from Dataverse (or a mirror), "
    "simulated for the simulator presets (`synthetic`, `k562_like`, ...), or a user file. "
    "Stored as a manifest with its sha256.",
)
def raw_dataset(
    context: dg.AssetExecutionContext, config: SyntheticConfig, data_sources: DataSources
) -> dg.Output[dict]:
    name = context.partition_key
    raw = _obtain(context, data_sources, config)
    sha, size = sha256_file(raw.path), raw.path.stat().st_size
    simulated = raw.annotations is not None
    manifest = RawManifest.of(
        raw,
        name,
        data_sources.root,
        sha,
        simulator_config=dataclasses.asdict(config.params(name)) if simulated else None,
        # steps on other machines fetch the files from a remote store
        stored=store_raw(name, raw.path, data_sources),
    )
    context.log.info(f"{name}: {raw.origin} file {raw.path} ({size:,} bytes)")
    return dg.Output(
        manifest.to_dict(),
        data_version=dg.DataVersion(sha),
        metadata={"origin": raw.origin, "file": dg.MetadataValue.path(str(raw.path)),
                  "sha256": sha, "bytes": size},
    )  # fmt: skip


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"anndata", "zarr"},
    description="Validated, log-normalised AnnData (GEARS data is already log-normalised; "
    "raw counts get normalise_total(1e4) + log1p).",
)
def expression(
    context: dg.AssetExecutionContext, data_sources: DataSources, raw_dataset: dict
) -> dg.Output[ad.AnnData]:
    with raw_files(raw_dataset, data_sources) as files:
        if sha256_file(files.path) != RawManifest.from_dict(raw_dataset).sha256:
            raise dg.Failure(
                f"{files.path} changed since raw_dataset was materialised (sha256 differs); "
                "re-materialise raw_dataset for this partition"
            )
        adata = load_expression(files.path)
    summary = dataset_summary(adata)
    context.log.info(f"{context.partition_key}: {summary}")
    x_sha = matrix_sha256(adata.X)  # one pass over X (1+ GB at Replogle size)
    scalars = {k: v for k, v in summary.items() if isinstance(v, int | float | str | bool)}
    return dg.Output(
        adata,
        data_version=dg.DataVersion(x_sha),
        metadata={**scalars, "X_sha256": x_sha, "file": dg.MetadataValue.path(str(files.path))},
    )


class SplitConfig(dg.Config):
    """GEARS simulation-split parameters (cell-gears' defaults), checked by
    :func:`~perturb_assets.core.gears.check_split_parameters` before the split."""

    seed: int = 1
    train_gene_set_size: float = 0.75
    combo_seen2_train_frac: float = 0.75

    @model_validator(mode="after")
    def _valid(self) -> "SplitConfig":
        check_split_parameters(**self.model_dump())
        return self


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="GEARS 'simulation' split per condition (train/val/test and test subgroup), "
    "identical to cell-gears' DataSplitter.",
)
def perturbation_split(config: SplitConfig, expression: ad.AnnData) -> dg.Output[pd.DataFrame]:
    split = simulation_split(expression.obs["condition"].astype(str), **config.model_dump())
    counts = {f"n_{s}": int((split["split"] == s).sum()) for s in SPLITS}
    return dg.Output(
        split,
        data_version=dg.DataVersion(frame_sha256(split)),
        metadata={"summary": markdown_table(split_summary(split)), **counts},
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"anndata", "zarr"},
    description="Pseudo-bulk: mean log-expression per condition (X; the `ctrl` row is the "
    "control mean), with the number of cells behind each mean in obs['n_cells'].",
)
def pseudobulk(expression: ad.AnnData) -> dg.Output[ad.AnnData]:
    profiles = pseudobulk_profiles(expression)
    means = profiles.to_df()
    return dg.Output(
        profiles,
        data_version=dg.DataVersion(frame_sha256(means)),
        metadata={
            "n_conditions": profiles.n_obs,
            "n_genes": profiles.n_vars,
            "min_cells_per_condition": int(profiles.obs["n_cells"].min()),
            "preview": markdown_table(means, max_rows=8, max_cols=8),
        },
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="2",
    kinds={"scanpy", "parquet"},
    description="Top-20 DE genes per condition against ctrl (rank_genes_groups, rankby_abs, "
    "use_raw=False), for t-test and Wilcoxon; target genes included, excluded, or removed as "
    "the paper's code does (reference_compat).",
)
def de_genes(context: dg.AssetExecutionContext, expression: ad.AnnData) -> dg.Output[pd.DataFrame]:
    table = de_gene_table(expression, dataset=context.partition_key)
    counts = table.groupby(["method", "targets"])["condition"].nunique().rename("conditions")
    return dg.Output(
        table,
        data_version=dg.DataVersion(frame_sha256(table)),
        metadata={
            "conditions_per_list": markdown_table(counts.to_frame()),
            "preview": markdown_table(table.head(20)),
        },
    )
