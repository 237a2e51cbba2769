"""The paper's analyses and the report: diversity, coherence, the sweep, the benchmark report.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from pathlib import Path
from typing import Literal

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from perturb_assets.core import analyses
from perturb_assets.core.evaluation import dynamic_range
from perturb_assets.core.io import embedding_files, read_embedding
from perturb_assets.core.report import (
    Report,
    ReportInputs,
    add_dataset_figures,
    build_report,
    load_paper_datasets,
    plots,
    sweep_points,
    write_report,
)
from perturb_assets.core.simulation import PROGRAMS_GMT_NAME
from perturb_assets.defs.metadata import figure, markdown_table
from perturb_assets.defs.partitions import dataset_partitions
from perturb_assets.defs.raw_files import raw_files
from perturb_assets.defs.resources import ALLOW_MISSING, Compute, DataSources

GROUP = "analyses"
ALL = dg.AllPartitionMapping()
_OPTIONAL = {ALLOW_MISSING: True}
sweep_levels = dg.StaticPartitionsDefinition(list(analyses.SWEEP_LEVELS))


@dg.asset(
    name="dataset_diversity",
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"anndata", "zarr"},
    description="Pairwise Pearson correlations of the perturbations' pseudo-bulk delta profiles, "
    "train + val then test (the paper's Fig. 2C), their medians, the dataset's composition, "
    "and the paper's values beside ours.",
)
def dataset_diversity_asset(
    context: dg.AssetExecutionContext, pseudobulk: ad.AnnData, perturbation_split: pd.DataFrame
) -> dg.Output[ad.AnnData]:
    first_cell = pseudobulk.obs["first_cell"]
    result = analyses.dataset_diversity(pseudobulk.to_df(), perturbation_split, first_cell)
    composition = analyses.dataset_composition(pseudobulk.obs["n_cells"], perturbation_split)
    summary = {**result.summary(), **composition, **_paper(context.partition_key)}
    corr = result.correlations
    obs = pd.DataFrame(
        {"set": np.where(np.arange(len(corr)) < result.n_trainval, "train+val", "test")},
        index=corr.index,
    )
    table = ad.AnnData(X=corr.to_numpy(), obs=obs, var=pd.DataFrame(index=corr.columns))
    table.uns["summary"] = summary
    heatmap = plots.correlation_heatmap(corr, result.n_trainval, context.partition_key)
    return dg.Output(
        table,
        metadata={
            **{k: v for k, v in summary.items() if v == v},
            "heatmap": figure(plots.png_bytes(heatmap)),
        },
    )


def _paper(dataset: str) -> dict[str, float]:
    paper = load_paper_datasets()
    if dataset not in paper.index:
        return {}
    row = paper.loc[dataset]
    return {
        "paper_median_pairwise_delta_corr": float(row["median_pairwise_delta_corr"]),
        "paper_test_train_median_delta_corr": float(row["test_train_median_delta_corr"]),
    }


class CoherenceConfig(dg.Config):
    """Gene-set collections: ``auto`` = the simulator's programs for ``synthetic``, else the
    user's GMT files in <data root>/gene_sets/ plus the downloads (Reactome, KEGG, CollecTRI)."""

    source: Literal["auto", "files", "download"] = "auto"
    reactome: bool = True
    kegg: bool = True
    collectri: bool = True
    min_set_size: int = Field(analyses.MIN_SET_SIZE, ge=2)

    def downloads(self) -> list[str]:
        return [name for name in analyses.DOWNLOADABLE if getattr(self, name)]


@dg.asset(
    partitions_def=dataset_partitions,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={
        "raw_dataset": dg.AssetIn(),
        "go_pca_features": dg.AssetIn(),
        "scgpt_gene_embeddings": dg.AssetIn(metadata=_OPTIONAL),
    },
    description="Mean Pearson correlation of the embedding vectors of genes in the same gene "
    "set minus the same under a deranged null, per embedding (GO-PCA, scGPT, scFoundation, "
    "scELMo and any file in <data root>/embeddings) and gene-set collection (Supp. Fig. 2).",
)
def embedding_coherence(
    context: dg.AssetExecutionContext,
    config: CoherenceConfig,
    data_sources: DataSources,
    raw_dataset: dict,
    go_pca_features: pd.DataFrame,
    scgpt_gene_embeddings: pd.DataFrame | None,
) -> dg.Output[pd.DataFrame]:
    with raw_files(raw_dataset, data_sources) as files:
        companion = files.companion_dir
        embeddings = _embeddings(data_sources, companion, go_pca_features, scgpt_gene_embeddings)
        collections, problems = _collections(config, data_sources, companion)
    frames = [
        analyses.embedding_coherence(embeddings, sets, min_size=config.min_set_size).assign(
            collection=name
        )
        for name, sets in collections.items()
    ]
    per_set = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    summary = _coherence_summary(per_set)
    for name, why in problems.items():
        context.log.warning(f"gene-set collection {name}: {why}")
    meta = {"summary": markdown_table(summary), "skipped_collections": str(problems or "none")}
    if not summary.empty:
        meta["figure"] = figure(plots.png_bytes(plots.coherence_bars(summary)))
    return dg.Output(per_set, metadata=meta)


def _embeddings(data_sources, companion, go_pca, scgpt_extracted) -> dict[str, pd.DataFrame]:
    files = embedding_files(data_sources.root, companion)
    tables = {"go_pca": go_pca}
    for name, path in files.items():
        tables[name] = read_embedding(path, trusted_root=data_sources.root)
    if "scgpt" not in tables and scgpt_extracted is not None and not scgpt_extracted.empty:
        tables["scgpt"] = scgpt_extracted
    return tables


def _collections(config: CoherenceConfig, data_sources: DataSources, companion: Path | None):
    if config.source == "auto" and companion is not None:
        extra = {"simulated_programs": companion / PROGRAMS_GMT_NAME}
        return analyses.gene_set_collections(data_sources.root, (), extra)
    downloads = config.downloads() if config.source in ("auto", "download") else ()
    return analyses.gene_set_collections(data_sources.root, downloads)


def _coherence_summary(per_set: pd.DataFrame) -> pd.DataFrame:
    if per_set.empty:
        return pd.DataFrame()
    parts = [
        analyses.coherence_summary(part).assign(collection=name)
        for name, part in per_set.groupby("collection", sort=False)
    ]
    return pd.concat(parts, ignore_index=True)


class SweepConfig(dg.Config):
    """Size of each simulated dataset of the sweep (defaults: ``core.analyses.SWEEP_SIZE``)."""

    n_cells: int = Field(analyses.SWEEP_SIZE["n_cells"], ge=100)
    n_genes: int = Field(analyses.SWEEP_SIZE["n_genes"], ge=50)
    n_perturbations: int = Field(analyses.SWEEP_SIZE["n_perturbations"], ge=10)
    seed: int = 0


@dg.asset(
    partitions_def=sweep_levels,
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    description="One simulated dataset per diversity level: its median delta correlation, "
    "Train Mean's and RF-GO's Pearson Delta, the dynamic range and the noise ceiling. Adding a "
    "level adds a partition; only it is computed.",
)
def diversity_sweep(
    context: dg.AssetExecutionContext, config: SweepConfig, compute: Compute
) -> pd.DataFrame:
    size = config.model_dump(exclude={"seed"})
    level = float(context.partition_key)
    point = analyses.sweep_point(level, seed=config.seed, n_jobs=compute.jobs_per_step, **size)
    context.add_output_metadata({k: v for k, v in point.items() if isinstance(v, float)})
    return pd.DataFrame([point])


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={
        "diversity_sweep": dg.AssetIn(partition_mapping=ALL),
        "diversity_overview": dg.AssetIn(metadata=_OPTIONAL),
    },
    description="The sweep's levels in one table, plotted: dynamic range and ceiling against "
    "the median delta correlation, with every materialised dataset (the presets included) "
    "placed on it.",
)
def diversity_sweep_summary(
    diversity_sweep: dict[str, pd.DataFrame], diversity_overview: pd.DataFrame | None
) -> dg.Output[pd.DataFrame]:
    sweep = pd.concat(diversity_sweep.values(), ignore_index=True).sort_values("diversity")
    overview = diversity_overview if diversity_overview is not None else pd.DataFrame()
    points = sweep_points(overview)
    png = plots.png_bytes(plots.sweep_plot(sweep, points))
    return dg.Output(
        sweep, metadata={"table": markdown_table(sweep.round(3)), "figure": figure(png)}
    )


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"pandas", "parquet"},
    ins={
        "dataset_diversity": dg.AssetIn(partition_mapping=ALL),
        "metrics": dg.AssetIn(partition_mapping=ALL),
    },
    description="One row per dataset: cells, perturbations, split sizes, median delta "
    "correlations and the dynamic range (best model minus Train Mean, Pearson Delta), with "
    "the paper's values (Fig. 2A, B, D, E).",
)
def diversity_overview(
    dataset_diversity: dict[str, ad.AnnData], metrics: dict[str, pd.DataFrame]
) -> dg.Output[pd.DataFrame]:
    rows = {}
    for dataset, table in dataset_diversity.items():
        best, value = dynamic_range(metrics[dataset]) if dataset in metrics else ("", np.nan)
        rows[dataset] = {**dict(table.uns["summary"]), "best_model": best, "dynamic_range": value}
    overview = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    report = Report()
    add_dataset_figures(report, overview, _correlations(dataset_diversity), heatmaps=False)
    figures = {name: figure(png, title) for name, (title, png) in report.figures.items()}
    return dg.Output(overview, metadata={"overview": markdown_table(overview.round(3)), **figures})


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"html"},
    ins={
        "benchmark_summary": dg.AssetIn(),
        "diversity_overview": dg.AssetIn(metadata=_OPTIONAL),
        "dataset_diversity": dg.AssetIn(partition_mapping=ALL, metadata=_OPTIONAL),
        "embedding_coherence": dg.AssetIn(partition_mapping=ALL, metadata=_OPTIONAL),
        "diversity_sweep_summary": dg.AssetIn(metadata=_OPTIONAL),
        "metric_calibration": dg.AssetIn(partition_mapping=ALL, metadata=_OPTIONAL),
        "metric_robustness": dg.AssetIn(partition_mapping=ALL, metadata=_OPTIONAL),
        "genetic_interactions": dg.AssetIn(partition_mapping=ALL, metadata=_OPTIONAL),
    },
    description="The paper's figures and tables (Fig. 1 B-E, Fig. 2 A-E, Supp. Figs 1-2, Supp. "
    "Tables 1-3) redrawn from the assets, with our extras, as PNGs, CSVs and one "
    "self-contained HTML file under <data root>/reports/.",
)
def benchmark_report(
    data_sources: DataSources,
    benchmark_summary: pd.DataFrame,
    diversity_overview: pd.DataFrame | None,
    dataset_diversity: dict[str, ad.AnnData] | None,
    embedding_coherence: dict[str, pd.DataFrame] | None,
    diversity_sweep_summary: pd.DataFrame | None,
    metric_calibration: dict[str, pd.DataFrame] | None,
    metric_robustness: dict[str, pd.DataFrame] | None,
    genetic_interactions: dict[str, pd.DataFrame] | None,
) -> dg.Output[dict]:
    inputs = ReportInputs(
        summary=benchmark_summary,
        overview=diversity_overview if diversity_overview is not None else pd.DataFrame(),
        correlations=_correlations(dataset_diversity or {}),
        coherence=_first_coherence(embedding_coherence),
        sweep=diversity_sweep_summary if diversity_sweep_summary is not None else pd.DataFrame(),
        calibration=_by_dataset(metric_calibration),
        robustness=_by_dataset(metric_robustness),
        interactions=_by_dataset(genetic_interactions),
    )
    report = build_report(inputs)
    path = write_report(report, data_sources.root / "reports")
    meta = {"report": dg.MetadataValue.path(str(path)), "n_figures": len(report.figures)}
    meta |= {name: figure(png, title) for name, (title, png) in report.figures.items()}
    return dg.Output({"path": str(path), "figures": sorted(report.figures)}, metadata=meta)


def _by_dataset(tables: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Per-dataset tables in one, with a ``dataset`` column (empty without any)."""
    parts = [t.assign(dataset=d) for d, t in sorted((tables or {}).items()) if not t.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _correlations(tables: dict[str, ad.AnnData]) -> dict[str, tuple[pd.DataFrame, int]]:
    return {d: (t.to_df(), int((t.obs["set"] == "train+val").sum())) for d, t in tables.items()}


def _first_coherence(per_dataset: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Coherence summary of the first dataset that has one (embeddings are shared)."""
    for _, per_set in sorted((per_dataset or {}).items()):
        summary = _coherence_summary(per_set)
        if not summary.empty:
            return summary
    return pd.DataFrame()
