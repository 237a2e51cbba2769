"""The report (stage 11): the paper's figures (``plots``) and the HTML report (``build``)."""

from perturb_assets.core.report.build import (
    REPORT_FILE,
    Report,
    ReportInputs,
    add_dataset_figures,
    build_report,
    load_paper_datasets,
    sweep_points,
    write_report,
)
from perturb_assets.core.report.plots import (
    cell_counts,
    coherence_bars,
    correlation_distributions,
    correlation_heatmap,
    median_vs_dynamic_range,
    model_bars,
    png_bytes,
    subgroup_bars,
    sweep_plot,
)

__all__ = [
    "REPORT_FILE",
    "Report",
    "ReportInputs",
    "add_dataset_figures",
    "build_report",
    "cell_counts",
    "coherence_bars",
    "correlation_distributions",
    "correlation_heatmap",
    "load_paper_datasets",
    "median_vs_dynamic_range",
    "model_bars",
    "png_bytes",
    "subgroup_bars",
    "sweep_plot",
    "sweep_points",
    "write_report",
]
