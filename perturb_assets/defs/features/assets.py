"""Gene-feature assets: GO annotations → GO-PCA, embedding files → embedding PCA.

Every feature asset is a gene × (up to 256) PCA table, partitioned by dataset. Embedding files
are observable source assets keyed by content hash, so replacing one file makes only its own
downstream assets stale (and, with the automation sensor running, recomputes them).

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from perturb_assets.core import features as F
from perturb_assets.core.atomic import atomic_write
from perturb_assets.core.conditions import target_genes
from perturb_assets.core.simulate import EMBEDDINGS_DIR
from perturb_assets.defs.metadata import frame_sha256, markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.resources import DataSources

GROUP = "features"
EMBEDDINGS = ("scgpt", "scfoundation", "scelmo")
FEATURE_SETS = ("go", *EMBEDDINGS)
EMBEDDING_SUFFIXES = (".parquet", ".csv", ".tsv", ".pkl", ".pickle")
ANNOTATION_FILES = ("go.gmt", "go.gaf", "go.gaf.gz", "go.gmt.gz")


def feature_asset_name(feature_set: str) -> str:
    return "go_pca_features" if feature_set == "go" else f"{feature_set}_pca_features"


def user_embedding_file(root: Path, name: str) -> Path | None:
    """``<data root>/embeddings/<name>.{parquet,csv,tsv,pkl,pickle}``, the first that exists."""
    for suffix in EMBEDDING_SUFFIXES:
        path = root / "embeddings" / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def _observe_embedding_file(name: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=f"{name}_embedding_file",
        group_name=GROUP,
        description=f"The user's {name} gene-embedding file in <data root>/embeddings/ "
        f"({', '.join(EMBEDDING_SUFFIXES)}), observed by sha256.",
    )
    def observe(data_sources: DataSources) -> dg.DataVersion:
        path = user_embedding_file(data_sources.root, name)
        return dg.DataVersion(F.file_content_hash(path) if path else "absent")

    return observe


embedding_files = [_observe_embedding_file(name) for name in EMBEDDINGS]


class AnnotationConfig(dg.Config):
    """Where GO annotations come from: ``auto`` = simulator (synthetic), else a user file in
    ``<data root>/annotations/`` (go.gmt or go.gaf[.gz]), else decoupler's MSigDB GO BP."""

    source: str = "auto"
    n_components: int = 256


def _annotation_matrix(manifest: dict, root: Path, source: str) -> tuple[pd.DataFrame, str]:
    if source in ("auto", "simulator") and "annotations" in manifest:
        return F.read_gmt(manifest["annotations"]), f"simulator: {manifest['annotations']}"
    if source in ("auto", "file"):
        for name in ANNOTATION_FILES:
            path = root / "annotations" / name
            if path.exists():
                reader = F.read_gaf if ".gaf" in name else F.read_gmt
                return reader(path), f"file: {path}"
        if source == "file":
            raise dg.Failure(
                f"no GO file found; put one of {ANNOTATION_FILES} in {root}/annotations"
            )
    cache = root / "annotations" / "msigdb_go_biological_process.parquet"
    if not cache.exists():
        matrix = F.go_annotations_from_decoupler("go_biological_process")
        atomic_write(cache, matrix.to_parquet)
    return pd.read_parquet(cache), "decoupler MSigDB go_biological_process"


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="Binary gene × GO Biological Process term matrix (decoupler MSigDB, a user "
    "GMT/GAF file, or the simulator's stand-in for `synthetic`).",
)
def go_annotations(
    context: dg.AssetExecutionContext,
    config: AnnotationConfig,
    data_sources: DataSources,
    raw_dataset: dict,
    perturbation_split: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    matrix, origin = _annotation_matrix(raw_dataset, data_sources.root, config.source)
    # Outdated HGNC symbols in GEARS datasets: count how many targets match, and how.
    _, report = F.match_genes(target_genes(perturbation_split.index), matrix.index)
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
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"sklearn", "parquet"},
    description="PCA of the GO matrix: 256 components (fewer with fewer genes or terms), "
    "random_state=0, as in the paper.",
)
def go_pca_features(
    config: AnnotationConfig, go_annotations: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    table = F.pca_features(go_annotations, n_components=config.n_components, random_state=0)
    return _pca_output(table, {"preview": markdown_table(table, max_rows=5, max_cols=6)})


def _embedding_pca_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=feature_asset_name(name),
        partitions_def=dataset_partitions,
        group_name=GROUP,
        code_version="1",
        kinds={"sklearn", "parquet"},
        deps=[f"{name}_embedding_file"],
        automation_condition=dg.AutomationCondition.eager(),
        description=f"PCA (256 components) of the {name} gene embeddings. `synthetic` uses the "
        f"simulator's stand-in; other datasets read <data root>/embeddings/{name}.*. Without "
        "a file the table is empty and the models on it are skipped (see metadata).",
    )
    def embedding_features(
        context: dg.AssetExecutionContext, data_sources: DataSources, raw_dataset: dict
    ) -> dg.Output[pd.DataFrame]:
        simulated = Path(raw_dataset["path"]).parent / EMBEDDINGS_DIR / f"{name}.parquet"
        path = simulated if simulated.exists() else user_embedding_file(data_sources.root, name)
        if path is None:
            context.log.warning(
                f"no {name} embedding file in {data_sources.root / 'embeddings'}; "
                f"models with {name} features are skipped for {context.partition_key}"
            )
            return dg.Output(pd.DataFrame(), metadata={"status": "missing embedding file"})
        # Pickles run code when loaded: only files inside the user's own data root are trusted.
        embedding = F.read_embedding(path, trusted_root=data_sources.root)
        table = F.embedding_pca(embedding, n_components=256, random_state=0)
        return _pca_output(
            table, {"status": "ok", "file": dg.MetadataValue.path(str(path)),
                    "file_sha256": F.file_content_hash(path)}
        )  # fmt: skip

    return embedding_features


embedding_pca_features = [_embedding_pca_asset(name) for name in EMBEDDINGS]
