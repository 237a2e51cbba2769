"""Dataset-layer assets, one per dataset partition. Each is a thin wrapper over core.

No ``from __future__ import annotations`` here: Dagster reads config and IO types from the
runtime annotations.
"""

from pathlib import Path

import anndata as ad
import dagster as dg
import pandas as pd

from perturb_assets.core import de, simulate, splits
from perturb_assets.core import pseudobulk as pb
from perturb_assets.core.datasets import (
    BUILTIN_DATASETS,
    builtin_dataset_dir,
    dataset_summary,
    discover_user_datasets,
    load_gears_dataset,
    normalize_expression,
)
from perturb_assets.core.download import (
    DownloadError,
    fetch_gears_dataset,
    is_retryable,
    sha256_file,
)
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.metrics import reference_compat_de_lists
from perturb_assets.defs.metadata import frame_sha256, markdown_table, matrix_sha256
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.resources import DataSources

GROUP = "datasets"
DE_METHODS = ("t-test", "wilcoxon")
N_TOP_DE = 20
# GEARS' own per-gene index lists are huge (conditions x genes); DE is recomputed downstream.
_HEAVY_UNS = ("rank_genes_groups_cov_all", "non_dropout_gene_idx", "non_zeros_gene_idx")

# Dataverse answers 403 and 5xx at times: retry downloads with exponential backoff.
DOWNLOAD_RETRY = dg.RetryPolicy(
    max_retries=4, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class SyntheticConfig(dg.Config):
    """Simulator knobs, used only for the ``synthetic`` partition."""

    n_cells: int = 6000
    n_genes: int = 1000
    n_perturbations: int = 120
    combo_fraction: float = 0.3
    diversity: float = 0.5
    seed: int = 0


def _locate_raw(
    name: str, sources: DataSources, config: SyntheticConfig | None
) -> tuple[Path, str]:
    """Return the dataset's h5ad path and where it came from, fetching or simulating it."""
    if name == "synthetic":
        config = config or SyntheticConfig()
        folder = builtin_dataset_dir("synthetic", sources.root)
        sim = simulate.simulate_perturbseq(
            n_cells=config.n_cells,
            n_genes=config.n_genes,
            n_perturbations=config.n_perturbations,
            combo_fraction=config.combo_fraction,
            diversity=config.diversity,
            seed=config.seed,
        )
        simulate.write_gears_dataset(sim, folder)
        return folder / "perturb_processed.h5ad", "simulator"
    if name in BUILTIN_DATASETS:
        try:
            folder = fetch_gears_dataset(
                name, sources.root, url_template=sources.dataverse_url_template or None
            )
        except (DownloadError, DatasetError) as exc:
            if is_retryable(exc):
                raise  # DOWNLOAD_RETRY backs off and tries again (and the .part resumes)
            # A 404, a checksum mismatch or a bad archive will not heal by waiting.
            raise dg.Failure(str(exc), allow_retries=False) from exc
        return folder / "perturb_processed.h5ad", "dataverse"
    user = discover_user_datasets(sources.root)
    if name not in user:
        raise dg.Failure(f"dataset {name!r} is neither built in nor under {sources.root}/datasets")
    path = Path(user[name])
    if path.is_dir():
        path = path / "perturb_processed.h5ad"
    return path, "user"


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    retry_policy=DOWNLOAD_RETRY,
    kinds={"h5ad"},
    description="The raw GEARS dataset file: downloaded from Dataverse (or a mirror), "
    "simulated for `synthetic`, or a user file. Stored as a manifest with its sha256.",
)
def raw_dataset(
    context: dg.AssetExecutionContext, config: SyntheticConfig, data_sources: DataSources
) -> dg.Output[dict]:
    name = context.partition_key
    path, origin = _locate_raw(name, data_sources, config)
    sha = sha256_file(path)
    manifest = {"dataset": name, "path": str(path), "sha256": sha, "origin": origin}
    if origin == "simulator":
        manifest["annotations"] = str(path.parent / "gene_annotations.gmt")
        manifest["simulator_config"] = config.model_dump()
    context.log.info(f"{name}: {origin} file {path} ({path.stat().st_size:,} bytes)")
    return dg.Output(
        manifest,
        data_version=dg.DataVersion(sha),
        metadata={
            "origin": origin,
            "file": dg.MetadataValue.path(str(path)),
            "sha256": sha,
            "bytes": path.stat().st_size,
        },
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"anndata", "zarr"},
    description="Validated, log-normalised AnnData (GEARS data is already log-normalised; "
    "raw counts get normalise_total(1e4) + log1p).",
)
def expression(context: dg.AssetExecutionContext, raw_dataset: dict) -> dg.Output[ad.AnnData]:
    path = Path(raw_dataset["path"])
    if sha256_file(path) != raw_dataset["sha256"]:
        raise dg.Failure(
            f"{path} changed since raw_dataset was materialised (sha256 differs); "
            "re-materialise raw_dataset for this partition"
        )
    adata = normalize_expression(load_gears_dataset(path))
    for key in _HEAVY_UNS:
        adata.uns.pop(key, None)
    summary = dataset_summary(adata)
    context.log.info(f"{context.partition_key}: {summary}")
    x_sha = matrix_sha256(adata.X)  # one pass over X (1+ GB at Replogle size)
    return dg.Output(
        adata,
        data_version=dg.DataVersion(x_sha),
        metadata={
            **{k: v for k, v in summary.items() if isinstance(v, int | float | str | bool)},
            "X_sha256": x_sha,
        },
    )


class SplitConfig(dg.Config):
    """GEARS simulation-split parameters (cell-gears' defaults)."""

    seed: int = 1
    train_gene_set_size: float = 0.75
    combo_seen2_train_frac: float = 0.75


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="GEARS 'simulation' split per condition (train/val/test and test subgroup), "
    "identical to cell-gears' DataSplitter.",
)
def perturbation_split(
    context: dg.AssetExecutionContext, config: SplitConfig, expression: ad.AnnData
) -> dg.Output[pd.DataFrame]:
    split = splits.simulation_split(
        expression.obs["condition"].astype(str),
        seed=config.seed,
        train_gene_set_size=config.train_gene_set_size,
        combo_seen2_train_frac=config.combo_seen2_train_frac,
    )
    summary = splits.split_summary(split)
    return dg.Output(
        split,
        data_version=dg.DataVersion(frame_sha256(split)),
        metadata={
            "summary": markdown_table(summary),
            **{f"n_{s}": int((split["split"] == s).sum()) for s in ("train", "val", "test")},
        },
    )


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="Pseudo-bulk: mean log-expression per condition (rows; `ctrl` is the control "
    "mean) with the number of cells in column `n_cells`, then one column per var_name.",
)
def pseudobulk(
    context: dg.AssetExecutionContext, expression: ad.AnnData
) -> dg.Output[pd.DataFrame]:
    table = pseudobulk_table(expression)
    return dg.Output(
        table,
        data_version=dg.DataVersion(frame_sha256(table)),
        metadata={
            "n_conditions": table.shape[0],
            "n_genes": table.shape[1] - 1,
            "min_cells_per_condition": int(table["n_cells"].min()),
            "preview": markdown_table(table, max_rows=8, max_cols=8),
        },
    )


def pseudobulk_table(adata: ad.AnnData) -> pd.DataFrame:
    """Pseudo-bulk means with an ``n_cells`` column in front (var_names never clash with it)."""
    if "n_cells" in adata.var_names:
        raise ValueError("var_names contain 'n_cells', which the pseudobulk table reserves")
    means = pb.pseudobulk(adata, groupby="condition")
    sizes = pb.group_sizes(adata, groupby="condition").reindex(means.index)
    table = pd.concat([sizes.rename("n_cells").to_frame(), means], axis=1)
    table.index.name = "condition"
    return table


def de_table(adata: ad.AnnData, dataset: str, n_top: int = N_TOP_DE) -> pd.DataFrame:
    """Top DE genes for every method and target policy, as one long table.

    ``targets`` is ``included`` (plain top-n), ``excluded`` (every target gene removed, combos
    included) or ``reference_compat`` (the paper code's removal, see
    :func:`perturb_assets.core.metrics.reference_compat_de_lists`).
    """
    symbol = adata.var["gene_name"].astype(str)
    rows = []
    for method in DE_METHODS:
        scores, groups = de.de_scores(adata, method=method)  # score once, select three ways

        def top(n: int, exclude: bool = False, scores=scores, groups=groups) -> dict:
            return de.top_genes_from_scores(
                scores, groups, adata.var_names, n, exclude_targets=exclude, gene_names=symbol
            )

        policies = {
            "included": top(n_top),
            "excluded": top(n_top, exclude=True),
            # Two spare ranks: the reference refills a removed target from below the top n.
            "reference_compat": reference_compat_de_lists(
                top(n_top + 2), symbol, dataset, n_top=n_top
            ),
        }
        for targets, lists in policies.items():
            for condition, genes in lists.items():
                rows.extend(
                    (method, targets, condition, rank, gene)
                    for rank, gene in enumerate(genes, start=1)
                )
    table = pd.DataFrame(rows, columns=["method", "targets", "condition", "rank", "gene_id"])
    table["gene_name"] = symbol.reindex(table["gene_id"]).to_numpy()
    return table


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"scanpy", "parquet"},
    description="Top-20 DE genes per condition against ctrl (rank_genes_groups, rankby_abs, "
    "use_raw=False), for t-test and Wilcoxon; target genes included, excluded, or removed as "
    "the paper's code does (reference_compat).",
)
def de_genes(context: dg.AssetExecutionContext, expression: ad.AnnData) -> dg.Output[pd.DataFrame]:
    table = de_table(expression, dataset=context.partition_key)
    counts = table.groupby(["method", "targets"])["condition"].nunique().rename("conditions")
    return dg.Output(
        table,
        data_version=dg.DataVersion(frame_sha256(table)),
        metadata={
            "conditions_per_list": markdown_table(counts.to_frame()),
            "preview": markdown_table(table.head(20)),
        },
    )
