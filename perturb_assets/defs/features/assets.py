"""Gene-feature assets: GO annotations → GO-PCA, embedding files → embedding PCA.

One asset per feature set of :data:`perturb_assets.core.models.FEATURE_SETS`, each a gene ×
(up to 256) PCA table, partitioned by dataset. Embedding files are observable source assets
keyed by content hash, so replacing one file makes only its own downstream assets stale (and,
with the automation sensor running, recomputes them).

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from perturb_assets.core.features import (
    DEFAULT_N_COMPONENTS,
    AnnotationSource,
    embedding_pca,
    go_annotation_matrix,
    match_genes,
    pca_features,
)
from perturb_assets.core.gears import target_genes
from perturb_assets.core.io import (
    ANNOTATION_FILES,
    EMBEDDING_SUFFIXES,
    embedding_file,
    read_embedding,
    sha256_file,
    user_annotation_file,
    user_embedding_file,
)
from perturb_assets.core.models import GO_FEATURES, FeatureSetSpec, embedding_sets
from perturb_assets.defs.automation import REFRESH
from perturb_assets.defs.metadata import frame_sha256, markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.raw_files import raw_files
from perturb_assets.defs.resources import ALLOW_MISSING, DataSources

GROUP = "features"
PCA_SEED = 0  # the authors' PCA(random_state=0)


def _file_version(path) -> dg.DataVersion:
    """An observed user file's data version: its sha256, or ``absent``."""
    return dg.DataVersion(sha256_file(path) if path else "absent")


def _observe_embedding_file(spec: FeatureSetSpec) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=f"{spec.name}_embedding_file",
        group_name=GROUP,
        description=f"The user's {spec.title} gene-embedding file in <data root>/embeddings/ "
        f"({', '.join(EMBEDDING_SUFFIXES)}), observed by sha256.",
    )
    def observe(data_sources: DataSources) -> dg.DataVersion:
        return _file_version(user_embedding_file(spec.name, data_sources.root))

    return observe


embedding_files = [_observe_embedding_file(spec) for spec in embedding_sets()]


@dg.observable_source_asset(
    group_name=GROUP,
    description="The user's GO annotation file in <data root>/annotations/ "
    f"({', '.join(ANNOTATION_FILES)}), observed by sha256.",
)
def go_annotation_file(data_sources: DataSources) -> dg.DataVersion:
    return _file_version(user_annotation_file(data_sources.root))


class AnnotationConfig(dg.Config):
    """Where GO annotations come from: ``auto`` = the simulator (synthetic), else a user file in
    ``<data root>/annotations/`` (go.gmt or go.gaf[.gz]), else decoupler's MSigDB GO BP."""

    source: AnnotationSource = "auto"
    n_components: int = Field(default=DEFAULT_N_COMPONENTS, ge=1)


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    deps=[go_annotation_file],
    automation_condition=REFRESH,
    description="Binary gene × GO Biological Process term matrix (decoupler MSigDB, a user "
    "GMT/GAF file, or the simulator's stand-in for `synthetic`).",
)
def go_annotations(
    config: AnnotationConfig,
    data_sources: DataSources,
    raw_dataset: dict,
    perturbation_split: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    try:
        with raw_files(raw_dataset, data_sources) as files:
            matrix, origin = go_annotation_matrix(
                config.source, data_sources.root, files.annotations
            )
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    # Outdated HGNC symbols in GEARS datasets: count how many targets match, and how.
    _, report = match_genes(target_genes(perturbation_split.index), matrix.index)
    return dg.Output(
        matrix,
        data_version=dg.DataVersion(frame_sha256(matrix)),
        metadata={
            "origin": origin,
            "n_genes": matrix.shape[0],
            "n_terms": matrix.shape[1],
            "targets_matched_directly": report["n_direct"],
            "targets_matched_via_alias": report["n_via_alias"],
            "targets_missing": report["n_missing"],
            "missing_targets": ", ".join(report["missing"][:50]) or "none",
        },
    )


def _pca_output(table: pd.DataFrame, extra: dict) -> dg.Output[pd.DataFrame]:
    variance = table.attrs.get("explained_variance_ratio")
    meta = {"n_genes": table.shape[0], "n_components": table.shape[1], **extra}
    if variance is not None:
        meta["explained_variance"] = float(sum(variance))
    table.attrs = {}  # parquet cannot store numpy arrays in attrs
    return dg.Output(table, data_version=dg.DataVersion(frame_sha256(table)), metadata=meta)


@dg.asset(
    name=GO_FEATURES.asset_name,
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"sklearn", "parquet"},
    automation_condition=REFRESH,
    description="PCA of the GO matrix: 256 components (fewer with fewer genes or terms), "
    "random_state=0, as in the paper.",
)
def go_pca_features(
    config: AnnotationConfig, go_annotations: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    table = pca_features(go_annotations, n_components=config.n_components, random_state=PCA_SEED)
    return _pca_output(table, {"preview": markdown_table(table, max_rows=5, max_cols=6)})


def _embedding_pca_asset(spec: FeatureSetSpec) -> dg.AssetsDefinition:
    # An embedding extracted from a checkpoint (scGPT's) is the fallback without a user file.
    extracted = {}
    if spec.extracted_by:
        extracted = {"extracted": dg.AssetIn(spec.extracted_by, metadata={ALLOW_MISSING: True})}

    @dg.asset(
        name=spec.asset_name,
        partitions_def=dataset_partitions,
        group_name=GROUP,
        code_version="1",
        kinds={"sklearn", "parquet"},
        deps=[f"{spec.name}_embedding_file"],
        ins=extracted,
        automation_condition=REFRESH,
        description=f"PCA (256 components) of the {spec.title} gene embeddings. `synthetic` "
        f"uses the simulator's stand-in; other datasets read <data root>/embeddings/{spec.name}"
        ".*" + (f", else {spec.extracted_by}" if spec.extracted_by else "") + ". Without any the "
        "table is empty and the models on it are skipped (see metadata).",
    )
    def embedding_features(
        context: dg.AssetExecutionContext, data_sources: DataSources, raw_dataset: dict, **extracted
    ) -> dg.Output[pd.DataFrame]:
        embedding, origin = _embedding(spec, data_sources, raw_dataset, extracted.get("extracted"))
        if embedding is None:
            context.log.warning(f"no {spec.name} embedding; models on it are skipped")
            return dg.Output(pd.DataFrame(), metadata={"status": "missing embedding file"})
        table = embedding_pca(embedding, random_state=PCA_SEED)
        return _pca_output(table, {"status": "ok", **origin})

    return embedding_features


def _embedding(spec, data_sources: DataSources, raw_dataset: dict, extracted):
    """The embedding table and where it came from: stand-in, user file, or checkpoint."""
    with raw_files(raw_dataset, data_sources) as files:
        companion = files.companion_dir
        path = embedding_file(spec.name, data_sources.root, companion)
        if path is not None:
            # Pickles run code when loaded: only files in the user's data root are trusted.
            stand_in = companion is not None and path.is_relative_to(companion)
            trusted = companion if stand_in else data_sources.root
            embedding = read_embedding(path, trusted_root=trusted)
            return embedding, {
                "file": dg.MetadataValue.path(str(path)),
                "file_sha256": sha256_file(path),
            }
    if extracted is not None and not extracted.empty:
        return extracted, {"file": f"extracted by {spec.extracted_by}"}
    return None, {}


embedding_pca_features = [_embedding_pca_asset(spec) for spec in embedding_sets()]
