"""The benchmark table: every model's metrics with CIs, paired against Train Mean, beside the
paper's numbers.

Dagster-free: the ``metrics`` and ``benchmark_summary`` assets are thin wrappers over
:func:`evaluate_models` and :func:`attach_paper_values`.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import pandas as pd

from perturb_assets.core import metrics as M

BASELINE = ("train_mean", "none")
ALL_SUBGROUPS = "all"
# The paper's name for its own target-removal metric, and ours for the same computation.
PAPER_METRIC_NAMES = {"pearson_delta_de_no_knockout": "pearson_delta_de_no_target_reference_compat"}
PAPER_DE_METHOD = "t-test"  # GEARS' precomputed ranking is scanpy's default t-test
COLUMNS = [
    "dataset", "model", "features", "de_method", "subgroup", "metric", "value", "ci_low",
    "ci_high", "n_conditions", "diff_vs_train_mean", "diff_ci_low", "diff_ci_high",
    "win_rate_vs_train_mean",
]  # fmt: skip


def de_lists_by_metric(de_table: pd.DataFrame, method: str) -> dict[str, dict[str, list[str]]]:
    """DE lists of one method, keyed by the metric they feed.

    ``de_table`` is the long table of the ``de_genes`` asset (columns ``method``, ``targets``,
    ``condition``, ``rank``, ``gene_id``); ``targets`` is ``included``, ``excluded`` or
    ``reference_compat``.
    """
    metric_of = {
        "included": "pearson_de_delta",
        "excluded": "pearson_delta_de_no_target",
        "reference_compat": "pearson_delta_de_no_target_reference_compat",
    }
    part = de_table[de_table["method"] == method].sort_values(["targets", "condition", "rank"])
    out: dict[str, dict[str, list[str]]] = {}
    for targets, metric in metric_of.items():
        rows = part[part["targets"] == targets]
        out[metric] = {c: g.tolist() for c, g in rows.groupby("condition")["gene_id"]}
    return out


def evaluate_models(
    predictions: Mapping[tuple[str, str], pd.DataFrame],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame,
    dataset: str,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every model on the test conditions.

    Parameters
    ----------
    predictions
        ``(model, features)`` → predicted pseudo-bulk (test conditions × genes). Empty frames
        (e.g. a feature set whose embedding file is absent) are skipped. ``("train_mean",
        "none")`` is the baseline of the paired comparison when present.
    pseudobulk
        Pseudo-bulk table (conditions × genes, optional ``n_cells`` column, ``ctrl`` row).
    split
        Output of :func:`perturb_assets.core.splits.simulation_split`.
    de_table
        Long DE table of the ``de_genes`` asset.
    dataset
        Dataset name written into the table.
    n_boot, seed
        Bootstrap resamples over test conditions and their seed.

    Returns
    -------
    summary : pandas.DataFrame
        Tidy: one row per dataset × model × features × DE method × subgroup × metric, with
        ``value`` (mean over conditions), its 95% bootstrap CI, and the paired difference to
        Train Mean (mean, CI, share of conditions where the model wins). ``pearson`` and
        ``pearson_delta`` do not use DE genes: their ``de_method`` is ``"none"``.
    per_condition : pandas.DataFrame
        The per-condition values behind it (``model``, ``features``, ``de_method``,
        ``condition``, ``subgroup``, ``metric``, ``value``).
    """
    truth_all = pseudobulk.drop(columns=["n_cells"], errors="ignore")
    ctrl_mean = truth_all.loc["ctrl"]
    test = split.index[split["split"] == "test"]
    truth = truth_all.loc[truth_all.index.intersection(test)]
    subgroups = split["subgroup"]
    methods = sorted(de_table["method"].unique())

    frames = []
    for (model, features), pred in predictions.items():
        if pred.empty:
            continue
        # A model may predict fewer conditions (missing_gene_policy="drop"); it is scored on
        # those, and n_conditions says how many.
        scored = truth.loc[truth.index.intersection(pred.index)]
        for i, method in enumerate(methods):
            long = M.evaluate_predictions(
                pred, scored, ctrl_mean, de_lists_by_metric(de_table, method), subgroups
            )
            base = long["metric"].isin(M.BASE_METRICS)
            long["de_method"] = method
            long.loc[base, "de_method"] = "none"
            long = long if i == 0 else long[~base]  # base metrics once per model
            frames.append(long.assign(model=model, features=features))
    if not frames:
        return pd.DataFrame(columns=COLUMNS), pd.DataFrame()
    per_condition = pd.concat(frames, ignore_index=True)

    rows = []
    keys = ["model", "features", "de_method", "metric"]
    baseline = per_condition[
        (per_condition["model"] == BASELINE[0]) & (per_condition["features"] == BASELINE[1])
    ]
    for (model, features, method, metric), group in per_condition.groupby(keys, sort=False):
        for subgroup, part in [(ALL_SUBGROUPS, group), *group.groupby("subgroup", sort=False)]:
            values = part.set_index("condition")["value"]
            mean, low, high = M.bootstrap_ci(values.to_numpy(float), n_boot=n_boot, seed=seed)
            row = {
                "dataset": dataset, "model": model, "features": features, "de_method": method,
                "subgroup": subgroup, "metric": metric, "value": mean, "ci_low": low,
                "ci_high": high, "n_conditions": int(values.notna().sum()),
            }  # fmt: skip
            base = baseline[(baseline["de_method"] == method) & (baseline["metric"] == metric)]
            if not base.empty and (model, features) != BASELINE:
                paired = M.paired_comparison(
                    values, base.set_index("condition")["value"], n_boot=n_boot, seed=seed
                )
                row |= {
                    "diff_vs_train_mean": paired["mean_diff"],
                    "diff_ci_low": paired["ci_low"],
                    "diff_ci_high": paired["ci_high"],
                    "win_rate_vs_train_mean": paired["win_rate"],
                }
            rows.append(row)
    summary = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return summary, per_condition


def load_paper_metrics() -> pd.DataFrame:
    """The paper's Supplementary Table 2 (shipped in ``perturb_assets/reference``)."""
    with resources.files("perturb_assets").joinpath("reference/paper_metrics.csv").open() as fh:
        paper = pd.read_csv(fh)
    paper["metric"] = paper["metric"].replace(PAPER_METRIC_NAMES)
    paper["features"] = paper["feature"].fillna("none")
    return paper[["dataset", "model", "features", "metric", "value", "source"]]


def attach_paper_values(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add ``paper_value`` (and its ``paper_source``) beside our value where the paper has one.

    Paper numbers are whole-test-set means with the t-test DE lists, so they sit beside the
    ``subgroup == "all"`` rows whose ``de_method`` is ``t-test`` (DE metrics) or ``none``.
    """
    paper = load_paper_metrics() if paper is None else paper
    paper = paper.rename(columns={"value": "paper_value", "source": "paper_source"})
    out = summary.merge(paper, on=["dataset", "model", "features", "metric"], how="left")
    comparable = (out["subgroup"] == ALL_SUBGROUPS) & out["de_method"].isin(
        ["none", PAPER_DE_METHOD]
    )
    out.loc[~comparable, ["paper_value", "paper_source"]] = None
    return out
