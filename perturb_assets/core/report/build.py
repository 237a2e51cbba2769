"""The benchmark report: the paper's figures and tables, redrawn from the platform's assets.

:func:`build_report` turns the cross-dataset tables into figures (PNG), tables (CSV) and one
self-contained HTML file (figures inline, no external resource) that opens offline:

* first, the headline table: Pearson Delta of every model per dataset, best first;
* Fig. 1 B-E: Pearson Delta of every model per dataset, sorted, with 95% CIs, the paper's
  values as diamonds, Train Mean as a reference line and the noise ceiling as a band;
* Fig. 2 A-B: cells and perturbations per dataset; 2 C: delta-correlation heatmaps (train +
  val | test); 2 D: the correlation distributions; 2 E: median correlation against the dynamic
  range, ours beside the paper's;
* Supplementary Fig. 1: subgroups of a combination dataset; Supplementary Fig. 2: embedding
  coherence per gene-set collection;
* beyond the paper: the diversity sweep, the discrimination score, the ceiling, and each
  metric's calibration (dynamic range fraction, uninformative metrics flagged), the
  metric-robustness battery and the genetic interactions of the doubles;
* Supplementary Tables 1-3 (CSV and HTML).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from perturb_assets.core.evaluation.benchmark import (
    ALL_SUBGROUPS,
    CEILING_MODEL,
    HEADLINE_METRICS,
    PAPER_DE_METHOD,
)
from perturb_assets.core.evaluation.calibration import DRF_GATE
from perturb_assets.core.evaluation.coverage import GEARS_COVERED
from perturb_assets.core.evaluation.interactions import interaction_summary
from perturb_assets.core.io.atomic import atomic_write
from perturb_assets.core.metrics.cell_eval import DISCRIMINATION_METRICS
from perturb_assets.core.models import registry
from perturb_assets.core.report import plots

__all__ = [
    "REPORT_FILE",
    "Report",
    "ReportInputs",
    "add_dataset_figures",
    "build_report",
    "calibration_figure",
    "interaction_figure",
    "interaction_models",
    "robustness_figure",
    "load_paper_datasets",
    "sweep_points",
    "write_report",
]

REPORT_FILE = "benchmark_report.html"
#: The table shown first in the report.
HEADLINE_TABLE = "headline"


@dataclass
class ReportInputs:
    """What the report is drawn from (every table is optional except ``summary``).

    Attributes
    ----------
    summary
        ``benchmark_summary``: every dataset's metrics table.
    overview
        One row per dataset (index): composition and diversity statistics
        (``n_control_cells``, ``n_perturbed_cells``, ``n_perturbations``, ``n_train``,
        ``n_val``, ``n_test``, ``median_pairwise_delta_corr``, ``dynamic_range``, ...).
    correlations
        Dataset -> (pairwise delta correlations, number of train + val rows).
    coherence
        Columns ``collection``, ``embedding``, ``delta``, ``ci_low``, ``ci_high``.
    sweep
        The diversity sweep (``median_corr``, ``dynamic_range``, ``ceiling_minus_train_mean``).
    calibration, robustness, interactions
        Every dataset's ``metric_calibration``, ``metric_robustness`` and
        ``genetic_interactions`` tables, each with a ``dataset`` column.
    """

    summary: pd.DataFrame
    overview: pd.DataFrame = field(default_factory=pd.DataFrame)
    correlations: Mapping[str, tuple[pd.DataFrame, int]] = field(default_factory=dict)
    coherence: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)
    interactions: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Report:
    """Figures (name -> (title, PNG)) and tables (name -> (title, frame))."""

    figures: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    tables: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)


def load_paper_datasets() -> pd.DataFrame:
    """The paper's dataset statistics (``perturb_assets/reference/paper_datasets.csv``)."""
    with resources.files("perturb_assets").joinpath("reference/paper_datasets.csv").open() as fh:
        return pd.read_csv(fh).set_index("dataset")


def _group(model: str) -> str:
    if model == CEILING_MODEL:
        return "noise ceiling"
    spec = registry.MODELS.get(model)
    if spec is None:
        return "user"
    return "foundation" if spec.is_foundation else spec.title


def _model_rows(summary: pd.DataFrame, dataset: str, metric: str = "pearson_delta"):
    rows = summary[
        (summary["dataset"] == dataset)
        & (summary["metric"] == metric)
        & (summary["subgroup"] == ALL_SUBGROUPS)
        & (summary["de_method"] == "none")
    ]
    rows = rows[rows["protocol"].isin([registry.DEFAULT_PROTOCOL.name, "user", "none"])]
    rows = rows.assign(
        label=rows["model"] + "/" + rows["features"], group=rows["model"].map(_group)
    )
    return rows.sort_values(["group", "label"]).reset_index(drop=True)


def build_report(inputs: ReportInputs) -> Report:
    """Every figure and table the inputs allow."""
    report = Report()
    for dataset in sorted(inputs.summary["dataset"].unique()):
        rows = _model_rows(inputs.summary, dataset)
        if not rows.empty:
            report.figures[f"fig1_{dataset}"] = (
                f"Fig. 1: Pearson Delta, {dataset}",
                plots.png_bytes(plots.model_bars(rows, dataset)),
            )
        discrimination = _model_rows(inputs.summary, dataset, DISCRIMINATION_METRICS[0])
        if not discrimination.empty:
            report.figures[f"discrimination_{dataset}"] = (
                f"Beyond the paper: discrimination score (L1), {dataset}",
                plots.png_bytes(plots.model_bars(discrimination, dataset, "discrimination (L1)")),
            )
    add_dataset_figures(report, inputs.overview, inputs.correlations)
    _add_subgroups(report, inputs.summary)
    _add_calibration(report, inputs.calibration)
    _add_robustness(report, inputs.robustness)
    _add_interactions(report, inputs.interactions)
    if not inputs.coherence.empty:
        report.figures["supp_fig2"] = (
            "Supplementary Fig. 2: embedding coherence",
            plots.png_bytes(plots.coherence_bars(inputs.coherence)),
        )
    if not inputs.sweep.empty:
        points = sweep_points(inputs.overview)
        report.figures["sweep"] = (
            "Beyond the paper: diversity sweep",
            plots.png_bytes(plots.sweep_plot(inputs.sweep, points)),
        )
    _add_tables(report, inputs)
    return report


def add_dataset_figures(
    report: Report,
    overview: pd.DataFrame,
    correlations: Mapping[str, tuple[pd.DataFrame, int]],
    heatmaps: bool = True,
) -> None:
    """Fig. 2 A-E from the per-dataset overview and correlation matrices."""
    if not overview.empty:
        report.figures["fig2ab"] = (
            "Fig. 2 A-B: cells and perturbations",
            plots.png_bytes(plots.cell_counts(overview)),
        )
    for dataset, (corr, n_trainval) in sorted(correlations.items() if heatmaps else ()):
        report.figures[f"fig2c_{dataset}"] = (
            f"Fig. 2 C: delta correlations, {dataset}",
            plots.png_bytes(plots.correlation_heatmap(corr, n_trainval, dataset)),
        )
    if correlations:
        pairs = {
            d: c.to_numpy()[np.tril_indices(len(c), k=-1)]
            for d, (c, _) in sorted(correlations.items())
        }
        report.figures["fig2d"] = (
            "Fig. 2 D: correlation distributions",
            plots.png_bytes(plots.correlation_distributions(pairs)),
        )
    points = _fig2e_points(overview)
    if not points.empty:
        report.figures["fig2e"] = (
            "Fig. 2 E: median correlation vs dynamic range",
            plots.png_bytes(plots.median_vs_dynamic_range(points)),
        )


def _lower(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.tril_indices(len(matrix), k=-1)]


def _fig2e_points(overview: pd.DataFrame) -> pd.DataFrame:
    """Ours (every dataset with both numbers) and the paper's four datasets."""
    rows = []
    if not overview.empty and {"median_pairwise_delta_corr", "dynamic_range"} <= set(overview):
        for dataset, row in overview.dropna(subset=["dynamic_range"]).iterrows():
            rows.append(
                {
                    "label": dataset,
                    "median_corr": row["median_pairwise_delta_corr"],
                    "dynamic_range": row["dynamic_range"],
                    "source": "this platform",
                }
            )
    paper = load_paper_datasets()
    from perturb_assets.core.evaluation.benchmark import load_paper_metrics

    metrics = load_paper_metrics()
    delta = metrics[metrics["metric"] == "pearson_delta"]
    for dataset, row in paper.iterrows():
        values = delta[delta["dataset"] == dataset]
        base = values[values["model"] == registry.TRAIN_MEAN.name]["value"]
        if base.empty:
            continue
        best = values[values["model"] != registry.TRAIN_MEAN.name]["value"].max()
        rows.append(
            {
                "label": dataset,
                "median_corr": row["median_pairwise_delta_corr"],
                "dynamic_range": best - base.iloc[0],
                "source": "paper",
            }
        )
    return pd.DataFrame(rows)


def sweep_points(overview: pd.DataFrame) -> pd.DataFrame:
    """The datasets' own (median correlation, dynamic range) points, for the sweep plot."""
    points = _fig2e_points(overview)
    return points[points["source"] == "this platform"] if not points.empty else points


def _add_subgroups(report: Report, summary: pd.DataFrame) -> None:
    rows = summary[
        (summary["metric"] == "pearson_delta")
        & ~summary["subgroup"].isin([ALL_SUBGROUPS, GEARS_COVERED])  # the split's subgroups only
        & (summary["protocol"] != registry.PREPRINT_2024.name)
    ]
    for dataset in sorted(rows["dataset"].unique()):
        part = rows[rows["dataset"] == dataset]
        if part["subgroup"].str.startswith("combo").any():
            part = part.assign(label=part["model"] + "/" + part["features"])
            report.figures[f"supp_fig1_{dataset}"] = (
                f"Supplementary Fig. 1: subgroups, {dataset}",
                plots.png_bytes(plots.subgroup_bars(part, dataset)),
            )


def _calibration_by_metric(calibration: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × metric (the all-gene metrics and the t-test DE ones)."""
    rows = calibration[calibration["de_method"].isin(["none", PAPER_DE_METHOD])]
    keys = [k for k in ("dataset", "de_method", "metric") if k in rows]
    rows = rows.drop_duplicates(keys)
    return rows.assign(label=_metric_label(rows))


def _metric_label(rows: pd.DataFrame) -> pd.Series:
    return rows["metric"].where(rows["de_method"] == "none", rows["metric"] + " (t-test)")


def calibration_figure(calibration: pd.DataFrame, dataset: str) -> bytes:
    """PNG: one dataset's ``metric_calibration`` as DRF bars (uninformative ones hatched)."""
    by_metric = _calibration_by_metric(calibration)
    return plots.png_bytes(plots.calibration_bars(by_metric, dataset, DRF_GATE))


def robustness_figure(robustness: pd.DataFrame, dataset: str) -> bytes:
    """PNG: one dataset's ``metric_robustness`` as a metric × prediction rank heatmap."""
    rows = robustness[robustness["de_method"].isin(["none", PAPER_DE_METHOD])]
    return plots.png_bytes(plots.robustness_heatmap(rows.assign(label=_metric_label(rows)),
                                                    dataset))  # fmt: skip


def interaction_models(interactions: pd.DataFrame) -> pd.DataFrame:
    """One dataset's ``genetic_interactions`` summarised per model, with a ``label``."""
    summary = interaction_summary(interactions.drop(columns="dataset", errors="ignore"))
    summary = summary.reset_index()
    return summary.assign(label=summary["model"] + "/" + summary["features"])


def interaction_figure(interactions: pd.DataFrame, dataset: str) -> bytes:
    """PNG: each model's error on the doubles over the additive expectation's, with CIs."""
    return plots.png_bytes(plots.interaction_bars(interaction_models(interactions), dataset))


def _add_calibration(report: Report, calibration: pd.DataFrame) -> None:
    if calibration.empty:
        return
    for dataset, part in calibration.groupby("dataset", sort=True):
        report.figures[f"calibration_{dataset}"] = (
            f"Metric calibration: dynamic range fraction, {dataset} (grey: uninformative)",
            calibration_figure(part, dataset),
        )
    columns = ["dataset", "label", "positive_control", "train_mean", "control_mean", "drf",
               "replicate_win_rate", "p_value", "uninformative"]  # fmt: skip
    report.tables["metric_calibration"] = (
        "Metric calibration: replicate, baselines, DRF; uninformative metrics flagged",
        _calibration_by_metric(calibration).reindex(columns=columns).round(4),
    )


def _add_robustness(report: Report, robustness: pd.DataFrame) -> None:
    if robustness.empty:
        return
    for dataset, part in robustness.groupby("dataset", sort=True):
        report.figures[f"robustness_{dataset}"] = (
            f"Metric robustness: degenerate predictions ranked among the models, {dataset} "
            "(F: an attack beats every honest model)",
            robustness_figure(part, dataset),
        )
    rows = robustness[robustness["de_method"].isin(["none", PAPER_DE_METHOD])]
    fooled = rows[rows["fools_metric"]].assign(label=_metric_label)
    report.tables["metric_robustness"] = (
        "Metric robustness: the attacks that beat every honest model",
        fooled.reindex(columns=["dataset", "label", "prediction", "value", "rank", "n_honest"])
        .round(4)
        .reset_index(drop=True),
    )


def _add_interactions(report: Report, interactions: pd.DataFrame) -> None:
    if interactions.empty:
        return
    tables = []
    for dataset, part in interactions.groupby("dataset", sort=True):
        report.figures[f"interactions_{dataset}"] = (
            f"Genetic interactions: error on the doubles relative to the additive expectation, "
            f"{dataset} (blue: beats additive)",
            interaction_figure(part, dataset),
        )
        summary = interaction_models(part).drop(columns="label")
        tables.append(summary.assign(dataset=dataset))
    report.tables["genetic_interactions"] = (
        "Genetic interactions per model (non-additivity correlation, class accuracy, error "
        "ratio to additive)",
        pd.concat(tables, ignore_index=True).round(4),
    )


def _headline(summary: pd.DataFrame) -> pd.DataFrame:
    """Pearson Delta of every model (whole test set, the default protocol), best first."""
    rows = summary[
        (summary["subgroup"] == ALL_SUBGROUPS)
        & (summary["metric"] == "pearson_delta")
        & summary["protocol"].isin([registry.DEFAULT_PROTOCOL.name, "user", "none"])
    ]
    columns = ["dataset", "model", "features", "value", "ci_low", "ci_high",
               "diff_vs_train_mean", "calibrated_score", "paper_value"]  # fmt: skip
    rows = rows.sort_values(["dataset", "value"], ascending=[True, False])
    return rows.reindex(columns=columns).round(4).reset_index(drop=True)


def _add_tables(report: Report, inputs: ReportInputs) -> None:
    summary = inputs.summary
    report.tables[HEADLINE_TABLE] = ("Headline: Pearson Delta per model", _headline(summary))
    if not inputs.overview.empty:
        paper = load_paper_datasets()
        table1 = inputs.overview.join(paper.add_prefix("paper_"), how="left")
        report.tables["supp_table1"] = ("Supplementary Table 1: datasets and splits", table1)
    headline = summary[
        (summary["subgroup"] == ALL_SUBGROUPS)
        & summary["de_method"].isin(["none", "t-test"])
        & summary["metric"].isin(HEADLINE_METRICS)
    ]
    columns = [
        "dataset",
        "model",
        "features",
        "protocol",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "paper_value",
        "diff_vs_train_mean",
        "diff_ci_low_holm",
        "diff_ci_high_holm",
        "p_holm",
        # The one column that says a model beats Train Mean (Holm-adjusted, metric direction).
        "better_than_train_mean",
        "calibrated_score",
    ]
    report.tables["supp_table2"] = (
        "Supplementary Table 2: metrics (t-test DE lists)",
        headline.reindex(columns=columns).round(4),
    )
    subgroups = summary[
        (summary["subgroup"] != ALL_SUBGROUPS)
        & summary["de_method"].isin(["none", "t-test"])
        & summary["metric"].isin(HEADLINE_METRICS)
    ]
    report.tables["supp_table3"] = (
        "Supplementary Table 3: subgroups",
        subgroups.reindex(columns=["subgroup", *columns]).round(4),
    )
    extras = summary[
        (summary["subgroup"] == ALL_SUBGROUPS)
        & summary["metric"].isin(["pearson_delta", *DISCRIMINATION_METRICS, "mse"])
    ]
    report.tables["beyond_the_paper"] = (
        "Beyond the paper: discrimination, error, ceiling",
        extras.reindex(columns=columns).round(4),
    )
    if not inputs.coherence.empty:
        report.tables["coherence"] = ("Embedding coherence", inputs.coherence.round(4))


def write_report(report: Report, folder: str | Path, title: str = "perturb_assets benchmark"):
    """PNGs, CSVs and the self-contained HTML (figures inline) into ``folder``; the HTML path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (_, png) in report.figures.items():
        atomic_write(folder / f"{name}.png", lambda tmp, png=png: Path(tmp).write_bytes(png))
    for name, (_, table) in report.tables.items():
        atomic_write(folder / f"{name}.csv", lambda tmp, t=table: t.to_csv(tmp))
    page = _html(report, title)
    return atomic_write(folder / REPORT_FILE, lambda tmp: Path(tmp).write_text(page, "utf-8"))


def _html(report: Report, title: str) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    tables = list(report.tables.items())
    first = [(n, t) for n, t in tables if n == HEADLINE_TABLE]  # the headline before the figures
    for name, (caption, table) in first:
        parts.append(f"<h2 id='{name}'>{html.escape(caption)}</h2>{table.to_html(na_rep='')}")
    for name, (caption, png) in report.figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure id='{name}'><img alt='{html.escape(caption)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}"
            "</figcaption></figure>"
        )
    for name, (caption, table) in (t for t in tables if t not in first):
        parts.append(f"<h2 id='{name}'>{html.escape(caption)}</h2>{table.to_html(na_rep='')}")
    parts.append("</body></html>")
    return "\n".join(parts)
