"""The benchmark table: every model's metrics with CIs, paired against Train Mean, beside the
paper's numbers.

Dagster-free: the ``metrics`` and ``benchmark_summary`` assets are thin wrappers over
:func:`evaluate_models` and :func:`attach_paper_values`.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

import pandas as pd
from anndata import AnnData

from perturb_assets.core import metrics as M
from perturb_assets.core import registry
from perturb_assets.core.de import DEMethod
from perturb_assets.core.gears import CONTROL
from perturb_assets.core.predictions import prediction_frame, prediction_identity, split_by_model

ALL_SUBGROUPS = "all"
# The paper's name for its own target-removal metric, and ours for the same computation.
PAPER_METRIC_NAMES = {"pearson_delta_de_no_knockout": "pearson_delta_de_no_target_reference_compat"}
PAPER_DE_METHOD: DEMethod = "t-test"  # GEARS' precomputed ranking is scanpy's default t-test
#: The paper's four metrics, in its order (Supplementary Table 2).
HEADLINE_METRICS = ("pearson", "pearson_delta", "pearson_de_delta", "pearson_delta_de_no_target")
COLUMNS = [
    "dataset", "model", "features", "protocol", "de_method", "subgroup", "metric", "value",
    "ci_low", "ci_high", "n_conditions", "diff_vs_train_mean", "diff_ci_low", "diff_ci_high",
    "win_rate_vs_train_mean",
]  # fmt: skip
_METRIC_OF_POLICY = {
    "included": "pearson_de_delta",
    "excluded": "pearson_delta_de_no_target",
    "reference_compat": "pearson_delta_de_no_target_reference_compat",
}


def de_lists_by_metric(de_table: pd.DataFrame, method: str) -> dict[str, dict[str, list[str]]]:
    """DE lists of one method, keyed by the metric they feed.

    ``de_table`` is the long table of :func:`perturb_assets.core.de.de_gene_table` (columns
    ``method``, ``targets``, ``condition``, ``rank``, ``gene_id``); ``targets`` is
    ``included``, ``excluded`` or ``reference_compat``.
    """
    part = de_table[de_table["method"] == method].sort_values(["targets", "condition", "rank"])
    out: dict[str, dict[str, list[str]]] = {}
    for targets, metric in _METRIC_OF_POLICY.items():
        rows = part[part["targets"] == targets]
        out[metric] = {c: g.tolist() for c, g in rows.groupby("condition")["gene_id"]}
    return out


def per_condition_metrics(
    tables: Iterable[AnnData | None],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame,
) -> pd.DataFrame:
    """Every metric of every prediction table on every test condition it predicts.

    Returns a tidy frame with ``model``, ``features``, ``protocol``, ``de_method``,
    ``condition``, ``subgroup``, ``metric`` and ``value``. ``pearson`` and ``pearson_delta``
    do not use DE genes: their ``de_method`` is ``"none"``. A table may hold several models
    (a user's prediction files); empty tables and ``None`` (not materialised) are skipped; a
    model that predicts fewer conditions (``missing_gene_policy="drop"``) is scored on those.
    """
    truth_all = pseudobulk.drop(columns=["n_cells"], errors="ignore")
    ctrl_mean = truth_all.loc[CONTROL]
    test = split.index[split["split"] == "test"]
    truth = truth_all.loc[truth_all.index.intersection(test)]
    methods = sorted(de_table["method"].unique())
    lists = {method: de_lists_by_metric(de_table, method) for method in methods}
    frames = []
    parts = [part for t in tables if t is not None for part in split_by_model(t)]
    for table in parts:
        pred = prediction_frame(table)
        scored = truth.loc[truth.index.intersection(pred.index)]
        for i, method in enumerate(methods):
            long = M.evaluate_predictions(pred, scored, ctrl_mean, lists[method], split["subgroup"])
            base = long["metric"].isin(M.BASE_METRICS)
            long["de_method"] = method
            long.loc[base, "de_method"] = "none"
            long = long if i == 0 else long[~base]  # base metrics once per model
            frames.append(long.assign(**prediction_identity(table)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(
    per_condition: pd.DataFrame, dataset: str, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean over conditions with a bootstrap CI, overall and per subgroup, paired against the
    Train Mean of the same protocol, or of the default protocol for rows of a protocol that
    has none (a user's predictions; see :func:`evaluate_models`)."""
    if per_condition.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = ["model", "features", "protocol", "de_method", "metric"]
    is_base = per_condition["model"] == registry.BASELINE.name
    baseline = {
        key: part.set_index("condition")["value"]
        for key, part in per_condition[is_base].groupby(["protocol", "de_method", "metric"])
    }
    rows = []
    for key, group in per_condition.groupby(keys, sort=False):
        identity = dict(zip(keys, key, strict=True))
        base = _baseline_for(baseline, identity)
        for subgroup, part in [(ALL_SUBGROUPS, group), *group.groupby("subgroup", sort=False)]:
            values = part.set_index("condition")["value"]
            rows.append(
                {
                    "dataset": dataset,
                    **identity,
                    "subgroup": subgroup,
                    **_summary_values(values, base, n_boot, seed),
                }  # fmt: skip
            )
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _baseline_for(baseline: dict, identity: dict[str, str]) -> pd.Series | None:
    if identity["model"] == registry.BASELINE.name:
        return None
    for protocol in (identity["protocol"], registry.DEFAULT_PROTOCOL.name):
        found = baseline.get((protocol, identity["de_method"], identity["metric"]))
        if found is not None:
            return found
    return None


def _summary_values(
    values: pd.Series, baseline: pd.Series | None, n_boot: int, seed: int
) -> dict[str, float]:
    mean, low, high = M.bootstrap_ci(values.to_numpy(float), n_boot=n_boot, seed=seed)
    row = {"value": mean, "ci_low": low, "ci_high": high, "n_conditions": int(values.notna().sum())}
    if baseline is not None:
        paired = M.paired_comparison(values, baseline, n_boot=n_boot, seed=seed)
        row |= {
            "diff_vs_train_mean": paired["mean_diff"],
            "diff_ci_low": paired["ci_low"],
            "diff_ci_high": paired["ci_high"],
            "win_rate_vs_train_mean": paired["win_rate"],
        }
    return row


def evaluate_models(
    tables: Iterable[AnnData | None],
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
    tables
        Prediction tables (:func:`perturb_assets.core.predictions.prediction_table`), one per
        model × feature set. Empty tables (e.g. a feature set whose embedding file is absent)
        are skipped. Train Mean's table of the same protocol is the baseline of the paired
        comparison when present.
    pseudobulk
        Pseudo-bulk means (conditions × genes, ``ctrl`` row).
    split
        Output of :func:`perturb_assets.core.splits.simulation_split`.
    de_table
        Long DE table of :func:`perturb_assets.core.de.de_gene_table`.
    dataset
        Dataset name written into the table.
    n_boot, seed
        Bootstrap resamples over test conditions and their seed.

    Returns
    -------
    summary : pandas.DataFrame
        Tidy: one row per dataset × model × features × protocol × DE method × subgroup ×
        metric, with ``value`` (mean over conditions), its 95% bootstrap CI, and the paired
        difference to Train Mean (mean, CI, share of conditions where the model wins).
    per_condition : pandas.DataFrame
        The per-condition values behind it (:func:`per_condition_metrics`).
    """
    per_condition = per_condition_metrics(tables, pseudobulk, split, de_table)
    return summarise(per_condition, dataset, n_boot=n_boot, seed=seed), per_condition


def headline_table(summary: pd.DataFrame, de_method: str = PAPER_DE_METHOD) -> pd.DataFrame:
    """Model × the paper's metrics (whole test set) for one DE method: Supplementary Table 2's
    layout, with the protocol in the row index."""
    rows = summary[
        (summary["subgroup"] == ALL_SUBGROUPS)
        & summary["de_method"].isin(["none", de_method])
        & summary["metric"].isin(HEADLINE_METRICS)
    ]
    table = rows.pivot_table(
        index=["model", "features", "protocol"], columns="metric", values="value"
    )
    return table.reindex(columns=[m for m in HEADLINE_METRICS if m in table.columns]).round(3)


def combine_datasets(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Several datasets' metric tables in one (empty tables skipped)."""
    frames = [t for t in tables if not t.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def pearson_delta_by_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """Model × dataset Pearson Delta (whole test set), rounded for display."""
    rows = table[(table["metric"] == "pearson_delta") & (table["subgroup"] == ALL_SUBGROUPS)]
    wide = rows.pivot_table(
        index=["model", "features", "protocol"], columns="dataset", values="value"
    )
    return wide.round(3)


def load_paper_metrics() -> pd.DataFrame:
    """The paper's Supplementary Table 2 (shipped in ``perturb_assets/reference``)."""
    with resources.files("perturb_assets").joinpath("reference/paper_metrics.csv").open() as fh:
        paper = pd.read_csv(fh)
    paper["metric"] = paper["metric"].replace(PAPER_METRIC_NAMES)
    paper["features"] = paper["feature"].fillna("none")
    return paper[["dataset", "model", "features", "metric", "value", "source"]]


def attach_paper_values(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add ``paper_value`` (and its ``paper_source``) beside our value where the paper has one.

    Paper numbers are whole-test-set means with the t-test DE lists under the published
    protocol, so they sit beside the ``subgroup == "all"`` rows of protocol
    ``published_2025`` whose ``de_method`` is ``t-test`` (DE metrics) or ``none``.
    """
    paper = load_paper_metrics() if paper is None else paper
    paper = paper.rename(columns={"value": "paper_value", "source": "paper_source"})
    out = summary.merge(paper, on=["dataset", "model", "features", "metric"], how="left")
    comparable = (
        (out["subgroup"] == ALL_SUBGROUPS)
        & out["de_method"].isin(["none", PAPER_DE_METHOD])
        & (out["protocol"] == registry.PUBLISHED_2025.name)
    )
    out.loc[~comparable, ["paper_value", "paper_source"]] = None
    return out
