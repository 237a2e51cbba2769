"""The paper's figures, redrawn from the platform's tables (matplotlib, no display needed).

Each function takes plain tables and returns a ``matplotlib.figure.Figure``;
:func:`png_bytes` renders one. The paper's colours: ``#33C7CC`` (low), ``#FF6666`` (high).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # render to files only, never to a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "calibration_bars",
    "cell_counts",
    "coherence_bars",
    "correlation_distributions",
    "correlation_heatmap",
    "interaction_bars",
    "median_vs_dynamic_range",
    "model_bars",
    "png_bytes",
    "robustness_heatmap",
    "subgroup_bars",
    "sweep_plot",
]

PALETTE = [
    "#FF6666",
    "#33C7CC",
    "#0F0A26",
    "#425266",
    "#abbdd4",
    "#F2B134",
    "#6A4C93",
    "#8AC926",
    "#1982C4",
    "#B5651D",
]
HEATMAP = LinearSegmentedColormap.from_list("paper", ["#33C7CC", "white", "#FF6666"])


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _colour_of(groups: pd.Series) -> list[str]:
    order = list(dict.fromkeys(groups))
    return [PALETTE[order.index(g) % len(PALETTE)] for g in groups]


def model_bars(rows: pd.DataFrame, title: str, metric_label: str = "Pearson Delta") -> Figure:
    """Bars of ``value`` with ``ci_low``/``ci_high`` error bars, one per ``label`` row, sorted
    by value and coloured by ``group``; Train Mean (``group`` "Train Mean") as a dashed
    reference line, the noise ceiling (``group`` "noise ceiling") as a band over its CI instead
    of a bar; black diamonds at ``paper_value`` where present (Fig. 1 B-E)."""
    ceiling = rows[rows["group"] == "noise ceiling"]
    rows = rows[rows["group"] != "noise ceiling"].sort_values("value", ascending=False)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(rows) + 1.5), 3.6))
    x = np.arange(len(rows))
    values = rows["value"].to_numpy(float)
    errors = np.vstack(
        [values - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - values]
    )
    colours = _colour_of(rows["group"])
    ax.bar(x, values, yerr=np.nan_to_num(errors), color=colours, capsize=2)
    for group, colour in dict(zip(rows["group"], colours, strict=True)).items():
        ax.bar([0], [0], color=colour, label=group)  # a legend entry per model group
    if not ceiling.empty:
        top = ceiling.iloc[0]
        ax.axhspan(top["ci_low"], top["ci_high"], color="0.85", zorder=0,
                   label=f"noise ceiling {top['value']:.3f}")  # fmt: skip
    train_mean = rows[rows["group"] == "Train Mean"]
    if not train_mean.empty:
        ax.axhline(train_mean["value"].iloc[0], color="black", linestyle="--", linewidth=1,
                   label=f"Train Mean {train_mean['value'].iloc[0]:.3f}")  # fmt: skip
    if "paper_value" in rows and rows["paper_value"].notna().any():
        ax.scatter(x, rows["paper_value"], marker="D", color="black", zorder=3, s=18, label="paper")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_xticks(x, rows["label"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(metric_label)
    ax.set_title(title)
    low = np.nanmin(np.concatenate([values, [0.0]]))
    ax.set_ylim(min(0.0, low - 0.05), 1.0)
    return fig


def calibration_bars(table: pd.DataFrame, title: str, gate: float) -> Figure:
    """Dynamic range fraction per metric (``label``), the gate as a dashed line; metrics
    flagged ``uninformative`` are grey and hatched."""
    table = table.sort_values("drf", ascending=False)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(table) + 1.5), 3.6))
    x = np.arange(len(table))
    flagged = table["uninformative"].to_numpy(bool)
    ax.bar(x, np.nan_to_num(table["drf"].to_numpy(float)),
           color=np.where(flagged, "0.7", PALETTE[0]), hatch=None)  # fmt: skip
    for i in np.flatnonzero(flagged):
        ax.bar([x[i]], [np.nan_to_num(table["drf"].iloc[i])], color="0.7", hatch="//")
    ax.axhline(gate, color="black", linestyle="--", linewidth=1, label=f"gate {gate}")
    ax.bar([0], [0], color=PALETTE[0], label="informative")
    ax.bar([0], [0], color="0.7", hatch="//", label="uninformative")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_xticks(x, table["label"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("dynamic range fraction")
    ax.set_ylim(min(0.0, np.nanmin(np.append(table["drf"].to_numpy(float), 0)) - 0.05), 1.05)
    ax.set_title(title)
    return fig


def subgroup_bars(rows: pd.DataFrame, title: str) -> Figure:
    """Grouped bars: ``value`` per ``label`` (x) and ``subgroup`` (colour) (Supp. Fig. 1)."""
    wide = rows.pivot_table(index="label", columns="subgroup", values="value", sort=False)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(wide) + 2), 3.6))
    width = 0.8 / max(len(wide.columns), 1)
    for i, subgroup in enumerate(wide.columns):
        ax.bar(
            np.arange(len(wide)) + i * width,
            wide[subgroup],
            width=width,
            color=PALETTE[i % len(PALETTE)],
            label=subgroup,
        )
    ax.set_xticks(
        np.arange(len(wide)) + 0.4 - width / 2, wide.index, rotation=60, ha="right", fontsize=8
    )
    ax.set_ylabel("Pearson Delta")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def cell_counts(overview: pd.DataFrame) -> Figure:
    """log10 number of control and perturbed cells per dataset (Fig. 2A) and the number of
    distinct perturbations (Fig. 2B)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    x = np.arange(len(overview))
    left.bar(x - 0.2, np.log10(overview["n_control_cells"]), 0.4, color=PALETTE[1], label="control")
    left.bar(
        x + 0.2, np.log10(overview["n_perturbed_cells"]), 0.4, color=PALETTE[0], label="perturbed"
    )
    left.set_xticks(x, overview.index, rotation=30, ha="right")
    left.set_ylabel("log10(cells)")
    left.set_title("Single cells")
    left.legend(fontsize=8)
    right.bar(x, overview["n_perturbations"], color=PALETTE[3])
    right.set_xticks(x, overview.index, rotation=30, ha="right")
    right.set_title("Distinct perturbations")
    return fig


def correlation_heatmap(correlations: pd.DataFrame, n_trainval: int, title: str) -> Figure:
    """Pairwise delta correlations, train + val then test, split by black lines (Fig. 2C)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(
        correlations.to_numpy(), cmap=HEATMAP, vmin=-1, vmax=1, interpolation="nearest"
    )
    for line in (ax.axhline, ax.axvline):
        line(n_trainval - 0.5, color="black", linewidth=1.5)
    n = correlations.shape[0]
    ticks = np.linspace(0, n - 1, min(n, 8)).astype(int)
    ax.set_xticks(ticks, correlations.index[ticks], rotation=90, fontsize=6)
    ax.set_yticks(ticks, correlations.index[ticks], fontsize=6)
    ax.set_title(f"{title}\ntrain+val | test")
    fig.colorbar(image, ax=ax, fraction=0.046, label="Pearson r")
    return fig


def correlation_distributions(pairs: Mapping[str, np.ndarray]) -> Figure:
    """Box plots of every pair's delta correlation per dataset (Fig. 2D)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(pairs) + 1), 3.4))
    names = list(pairs)
    data = [np.asarray(pairs[n])[np.isfinite(pairs[n])] for n in names]
    boxes = ax.boxplot(data, showfliers=False, patch_artist=True)
    for patch, colour in zip(boxes["boxes"], PALETTE, strict=False):
        patch.set_facecolor(colour)
    ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("Pearson r of delta profiles")
    ax.set_title("Correlation between all perturbations")
    return fig


def median_vs_dynamic_range(points: pd.DataFrame) -> Figure:
    """Median pairwise correlation (x) vs best model minus Train Mean Pearson Delta (y), one
    point per ``label`` (Fig. 2E); ``source`` distinguishes ours from the paper's."""
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for i, (source, part) in enumerate(points.groupby("source", sort=False)):
        ax.scatter(
            part["median_corr"],
            part["dynamic_range"],
            color=PALETTE[i % len(PALETTE)],
            label=source,
            s=30,
            marker="o" if i == 0 else "s",
        )
        _label_points(ax, part)
    ax.set_xlabel("median pairwise delta correlation")
    ax.set_ylabel("best - Train Mean Pearson Delta")
    ax.legend(fontsize=8)
    ax.set_title("Diversity vs dynamic range")
    return fig


def coherence_bars(summary: pd.DataFrame) -> Figure:
    """Mean within-gene-set correlation minus the null per embedding, one panel per
    collection (Supp. Fig. 2)."""
    collections = list(dict.fromkeys(summary["collection"]))
    fig, axes = plt.subplots(
        1, len(collections), figsize=(3.4 * len(collections), 3.4), squeeze=False
    )
    for ax, collection in zip(axes[0], collections, strict=True):
        part = summary[summary["collection"] == collection]
        values = part["delta"].to_numpy(float)
        errors = np.vstack([values - part["ci_low"], part["ci_high"] - values])
        ax.bar(part["embedding"], values, yerr=errors, color=PALETTE[1], capsize=3)
        ax.set_title(collection)
        ax.set_ylabel("pearson_delta (set - null)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def sweep_plot(sweep: pd.DataFrame, presets: pd.DataFrame | None = None) -> Figure:
    """Dynamic range and noise ceiling against the median delta correlation, across the
    simulator's diversity levels; presets as labelled points."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    sweep = sweep.sort_values("median_corr")
    ax.plot(
        sweep["median_corr"],
        sweep["dynamic_range"],
        "o-",
        color=PALETTE[0],
        label="best - Train Mean",
    )
    ax.plot(
        sweep["median_corr"],
        sweep["ceiling_minus_train_mean"],
        "s--",
        color=PALETTE[1],
        label="ceiling - Train Mean",
    )
    if presets is not None and not presets.empty:
        ax.scatter(
            presets["median_corr"],
            presets["dynamic_range"],
            color="black",
            marker="D",
            label="presets",
            zorder=3,
        )
        _label_points(ax, presets)
    ax.set_xlabel("median pairwise delta correlation")
    ax.set_ylabel("Pearson Delta difference")
    ax.legend(fontsize=8)
    ax.set_title("Diversity sweep (simulated)")
    return fig


def _label_points(ax: Axes, points: pd.DataFrame) -> None:
    """Write each row's ``label`` next to its (median_corr, dynamic_range) point."""
    for _, row in points.iterrows():
        ax.annotate(
            row["label"],
            (row["median_corr"], row["dynamic_range"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )


def robustness_heatmap(table: pd.DataFrame, title: str) -> Figure:
    """Metric (rows) × degenerate prediction (columns): the prediction's rank among the honest
    models as a fraction (0: better than all, 1: worse than all); ``F`` where an attack beats
    every honest model (the metric is fooled)."""
    table = table.assign(position=(table["rank"] - 1) / table["n_honest"])
    wide = table.pivot_table(index="label", columns="prediction", values="position",
                             sort=False)  # fmt: skip
    fooled = table.pivot_table(index="label", columns="prediction", values="fools_metric",
                               aggfunc="max", sort=False).reindex_like(wide)  # fmt: skip
    fig, ax = plt.subplots(figsize=(0.5 * wide.shape[1] + 3.5, 0.3 * wide.shape[0] + 1.8))
    image = ax.imshow(wide.to_numpy(float), cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
    for (i, j), flag in np.ndenumerate(fooled.fillna(False).to_numpy(bool)):
        if flag:
            ax.text(j, i, "F", ha="center", va="center", fontsize=7, fontweight="bold")
    ax.set_xticks(np.arange(wide.shape[1]), wide.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(wide.shape[0]), wide.index, fontsize=7)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04, label="rank among honest models (0 best)")
    return fig


def interaction_bars(summary: pd.DataFrame, title: str) -> Figure:
    """Each model's error on the double perturbations relative to the additive expectation
    (``error_ratio`` with its CI), sorted; the additive model's 1 as a dashed line: a model
    beats additive only when its whole interval lies below it."""
    rows = summary.sort_values("error_ratio")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(rows) + 1.5), 3.6))
    x = np.arange(len(rows))
    values = rows["error_ratio"].to_numpy(float)
    errors = np.vstack([values - rows["ratio_ci_low"].to_numpy(float),
                        rows["ratio_ci_high"].to_numpy(float) - values])  # fmt: skip
    colours = np.where(rows["beats_additive"].to_numpy(bool), PALETTE[1], PALETTE[0])
    ax.bar(x, values, yerr=np.nan_to_num(errors), color=colours, capsize=2)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="additive expectation")
    ax.legend(fontsize=7)
    ax.set_xticks(x, rows["label"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("error / additive error")
    ax.set_title(title)
    return fig
