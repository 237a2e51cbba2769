"""The benchmark table: every model's metrics with CIs, paired against Train Mean, beside the
paper's numbers.

Dagster-free: the ``metrics`` and ``benchmark_summary`` assets are thin wrappers over
:func:`evaluate_models` and :func:`attach_paper_values`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.evaluation.calibration import calibrated_score
from perturb_assets.core.evaluation.coverage import GEARS_COVERED, gears_covered_conditions
from perturb_assets.core.gears.format import CONTROL, parse_condition
from perturb_assets.core.metrics.cell_eval import (
    DISCRIMINATION_METRICS,
    discrimination_scores,
    error_metrics,
)
from perturb_assets.core.metrics.de_family import (
    ControlCells,
    DETable,
    de_family_metrics,
    pseudobulk_de_table,
    real_de_table,
)
from perturb_assets.core.metrics.direction import higher_is_better
from perturb_assets.core.metrics.perturbation import BASE_METRICS, evaluate_predictions
from perturb_assets.core.metrics.statistics import (
    bootstrap_ci,
    holm_adjust,
    holm_interval,
    holm_levels,
    paired_comparisons,
)
from perturb_assets.core.models import registry
from perturb_assets.core.models.predictions import (
    prediction_frame,
    prediction_identity,
    prediction_table,
    split_by_model,
    split_by_seed,
)
from perturb_assets.core.pp.de import DEMethod

__all__ = [
    "ALL_SUBGROUPS",
    "CEILING_MODEL",
    "COLUMNS",
    "DE_FAMILY_METHOD",
    "HEADLINE_METRICS",
    "HOLM_ALPHA",
    "HOLM_FAMILY",
    "PAPER_DE_METHOD",
    "PAPER_METRIC_NAMES",
    "attach_paper_values",
    "better_than_train_mean",
    "combine_datasets",
    "de_lists_by_metric",
    "de_method_lists",
    "dynamic_range",
    "evaluate_models",
    "headline_table",
    "headline_with_paper",
    "load_paper_metrics",
    "model_metrics",
    "pearson_delta_by_dataset",
    "per_condition_metrics",
    "score_frames",
    "summarise",
    "target_columns",
    "with_calibrated_scores",
    "with_holm_adjustment",
]

ALL_SUBGROUPS = "all"
# The paper's name for its own target-removal metric, and ours for the same computation.
PAPER_METRIC_NAMES = {"pearson_delta_de_no_knockout": "pearson_delta_de_no_target_reference_compat"}
#: ``de_method`` of cell-eval's DE metric family (pdex's Wilcoxon test, BH FDR).
DE_FAMILY_METHOD = "wilcoxon_bh"
PAPER_DE_METHOD: DEMethod = "t-test"  # GEARS' precomputed ranking is scanpy's default t-test
#: The paper's four metrics, in its order (Supplementary Table 2).
HEADLINE_METRICS = ("pearson", "pearson_delta", "pearson_de_delta", "pearson_delta_de_no_target")
COLUMNS = [
    "dataset", "model", "features", "protocol", "de_method", "subgroup", "metric", "value",
    "ci_low", "ci_high", "n_conditions", "diff_vs_train_mean", "diff_ci_low", "diff_ci_high",
    "win_rate_vs_train_mean", "p_value_vs_train_mean", "p_holm", "diff_ci_low_holm",
    "diff_ci_high_holm", "better_than_train_mean", "calibrated_score", "n_seeds", "seed_sd",
]  # fmt: skip
#: Family-wise error rate of the Holm correction (``p_holm``, ``diff_ci_*_holm``).
HOLM_ALPHA = 0.05
#: One Holm family: every model × metric of a dataset sharing a DE method and a subgroup.
HOLM_FAMILY = ["dataset", "de_method", "subgroup"]
#: The ``model`` of the noise ceiling's rows (:mod:`perturb_assets.core.evaluation.ceiling`).
CEILING_MODEL = "noise_ceiling"
_METRIC_OF_POLICY = {
    "included": "pearson_de_delta",
    "excluded": "pearson_delta_de_no_target",
    "reference_compat": "pearson_delta_de_no_target_reference_compat",
}


def de_lists_by_metric(de_table: pd.DataFrame, method: str) -> dict[str, dict[str, list[str]]]:
    """DE lists of one method, keyed by the metric they feed.

    ``de_table`` is the long table of :func:`perturb_assets.core.pp.de_gene_table` (columns
    ``method``, ``targets``, ``condition``, ``rank``, ``gene_id``); ``targets`` is
    ``included``, ``excluded`` or ``reference_compat``.
    """
    part = de_table[de_table["method"] == method].sort_values(["targets", "condition", "rank"])
    out: dict[str, dict[str, list[str]]] = {}
    for targets, metric in _METRIC_OF_POLICY.items():
        rows = part[part["targets"] == targets]
        out[metric] = {c: g.tolist() for c, g in rows.groupby("condition")["gene_id"]}
    return out


def target_columns(conditions: Iterable[str], genes: pd.Index, gene_names: pd.Series | None):
    """Per condition, the positions in ``genes`` of its target genes (by ``gene_name``)."""
    symbols = pd.Series(np.arange(len(genes)), index=genes)
    if gene_names is not None:
        symbols = symbols.set_axis(gene_names.reindex(genes).astype(str).to_numpy())
    by_symbol = symbols.groupby(level=0).agg(list)
    return [
        np.array([c for g in parse_condition(cond) for c in by_symbol.get(g, [])], dtype=np.int64)
        for cond in conditions
    ]


def model_metrics(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    ctrl_mean: pd.Series,
    lists: dict[str, dict[str, dict[str, list[str]]]],
    subgroups: pd.Series,
    gene_names: pd.Series | None = None,
) -> pd.DataFrame:
    """One model's per-condition metrics on ``truth``'s conditions, as a tidy frame.

    The paper's metrics (:func:`perturb_assets.core.metrics.evaluate_predictions`) for every
    DE method of ``lists`` (method -> metric -> condition -> DE genes), and cell-eval's error
    and discrimination metrics (:mod:`perturb_assets.core.metrics.cell_eval`). Metrics that use
    no DE list have ``de_method`` ``"none"``.
    """
    frames = []
    lists = lists or {"none": {}}  # no DE lists: the all-gene metrics only
    for i, (method, method_lists) in enumerate(lists.items()):
        long = evaluate_predictions(pred, truth, ctrl_mean, method_lists, subgroups)
        base = long["metric"].isin(BASE_METRICS)
        long["de_method"] = np.where(base, "none", method)
        frames.append(long if i == 0 else long[~base])  # base metrics once per model
    frames.append(_cell_eval_metrics(pred, truth, ctrl_mean, subgroups, gene_names))
    return pd.concat(frames, ignore_index=True)


def _cell_eval_metrics(pred, truth, ctrl_mean, subgroups, gene_names) -> pd.DataFrame:
    p = pred.reindex(index=truth.index, columns=truth.columns).to_numpy(np.float64)
    t = truth.to_numpy(np.float64)
    c = ctrl_mean.reindex(truth.columns).to_numpy(np.float64)
    values = error_metrics(p, t, c)
    excluded = target_columns(truth.index, truth.columns, gene_names)
    for metric in DISCRIMINATION_METRICS:
        kind = metric.removeprefix("discrimination_")
        values[metric] = discrimination_scores(p, t, c, excluded, kind=kind)
    wide = pd.DataFrame(values, index=pd.Index(truth.index, name="condition"))
    long = wide.reset_index().melt(id_vars="condition", var_name="metric", value_name="value")
    return long.assign(subgroup=long["condition"].map(subgroups), de_method="none")


def per_condition_metrics(
    tables: Iterable[AnnData | None],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame,
    gene_names: pd.Series | None = None,
    cells: AnnData | None = None,
) -> pd.DataFrame:
    """Every metric of every prediction table on every test condition it predicts.

    Returns a tidy frame with ``model``, ``features``, ``protocol``, ``de_method``,
    ``condition``, ``subgroup``, ``metric`` and ``value`` (:func:`model_metrics`). A table may
    hold several models (a user's prediction files); empty tables and ``None`` (not
    materialised) are skipped; a model that predicts fewer conditions
    (``missing_gene_policy="drop"``) is scored on those. ``gene_names`` (``var['gene_name']``)
    maps target genes to columns for the discrimination score. With ``cells`` (the
    ``expression`` asset: log1p cells, ``obs['condition']``), cell-eval's DE metric family
    (:mod:`perturb_assets.core.metrics.de_family`) is added with ``de_method``
    ``"wilcoxon_bh"``.
    """
    truth_all = pseudobulk.drop(columns=["n_cells"], errors="ignore")
    ctrl_mean = truth_all.loc[CONTROL]
    test = split.index[split["split"] == "test"]
    truth = truth_all.loc[truth_all.index.intersection(test)]
    lists = de_method_lists(de_table)
    de_family = _DEFamily(cells, truth) if cells is not None else None
    frames = []
    parts = [part for t in tables if t is not None for part in split_by_model(t)]
    for table in parts:
        identity = prediction_identity(table)
        for seed, rows in split_by_seed(table):  # a model of several seeds: each scored alone
            pred = prediction_frame(rows)
            scored = truth.loc[truth.index.intersection(pred.index)]
            long = model_metrics(pred, scored, ctrl_mean, lists, split["subgroup"], gene_names)
            if de_family is not None:
                long = pd.concat([long, de_family.metrics(pred, split["subgroup"])],
                                 ignore_index=True)  # fmt: skip
            frames.append(long.assign(**identity, seed=seed))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = pd.array(out["seed"].tolist(), dtype="Int64")
    return out


def score_frames(
    frames: Mapping[str, pd.DataFrame],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame,
    gene_names: pd.Series | None = None,
    cells: AnnData | None = None,
) -> pd.DataFrame:
    """:func:`per_condition_metrics` of named prediction frames (conditions × genes) that are
    not models, e.g. the control mean or a degenerate prediction: ``model`` is the name,
    ``features`` and ``protocol`` ``"none"``."""
    tables = [prediction_table(frame, model=name, features="none", protocol="none")
              for name, frame in frames.items()]  # fmt: skip
    return per_condition_metrics(tables, pseudobulk, split, de_table, gene_names, cells=cells)


class _DEFamily:
    """The real side of cell-eval's DE metrics (computed once), scoring one model at a time."""

    def __init__(
        self, cells: AnnData, truth: pd.DataFrame, control: ControlCells | None = None
    ) -> None:
        genes = truth.columns
        x = cells.X if cells.var_names.equals(genes) else cells[:, genes].X
        labels = cells.obs["condition"].astype(str).to_numpy()
        counts = pd.Series(labels).value_counts()
        self.conditions = [c for c in truth.index if counts.get(c, 0) > 0]
        self.n_cells = counts.reindex(self.conditions)
        self.genes = genes
        # ``control``: the same control cells, prepared once by a caller that scores several
        # halves against them (the noise ceiling).
        self.control = control or ControlCells(x[np.flatnonzero(labels == CONTROL)])
        self.real: DETable = real_de_table(x, labels, CONTROL, genes, self.conditions,
                                           control_cells=self.control)  # fmt: skip

    def metrics(self, pred: pd.DataFrame, subgroups: pd.Series) -> pd.DataFrame:
        """One model's DE-family rows on the conditions it predicts (without NaNs)."""
        pred = pred.reindex(columns=self.genes)
        scored = [c for c in self.conditions if c in pred.index and pred.loc[c].notna().all()]
        if not scored:
            return pd.DataFrame(columns=["condition", "metric", "value", "subgroup", "de_method"])
        profiles = pred.loc[scored]
        table = pseudobulk_de_table(profiles, self.n_cells.reindex(scored), self.control)
        long = de_family_metrics(self.real.select(scored), table)
        return long.assign(subgroup=long["condition"].map(subgroups), de_method=DE_FAMILY_METHOD)


def de_method_lists(de_table: pd.DataFrame) -> dict[str, dict[str, dict[str, list[str]]]]:
    """DE method -> :func:`de_lists_by_metric` of the ``de_genes`` table."""
    return {m: de_lists_by_metric(de_table, m) for m in sorted(de_table["method"].unique())}


def summarise(
    per_condition: pd.DataFrame,
    dataset: str,
    n_boot: int = 1000,
    seed: int = 0,
    extra_subgroups: dict[str, pd.Index] | None = None,
) -> pd.DataFrame:
    """Mean over conditions with a bootstrap CI, overall and per subgroup, paired against the
    Train Mean of the same protocol, or of the default protocol for rows of a protocol that
    has none (a user's predictions; see :func:`evaluate_models`). ``extra_subgroups``: more
    named condition sets summarised as subgroups (e.g. ``gears_covered``)."""
    if per_condition.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = ["model", "features", "protocol", "de_method", "metric"]
    is_base = per_condition["model"] == registry.TRAIN_MEAN.name
    train_mean = {
        key: part.set_index("condition")["value"]
        for key, part in per_condition[is_base].groupby(["protocol", "de_method", "metric"])
    }
    columns = _SummaryColumns(per_condition, extra_subgroups or {})
    rows, pairs = [], []
    groups = per_condition.groupby(keys).indices
    for key, positions in sorted(groups.items(), key=lambda group: group[1][0]):  # as they come
        identity = dict(zip(keys, key, strict=True))
        base = _train_mean_for(train_mean, identity)
        for subgroup, part in columns.subgroup_rows(positions):
            values, spread = columns.over_seeds(part)
            row = _summary_values(values, n_boot, seed)
            rows.append({"dataset": dataset, **identity, "subgroup": subgroup, **row, **spread})
            pairs.append((values, base))
    resamples = _with_train_mean_differences(rows, pairs, n_boot, seed)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return with_holm_adjustment(table, resamples)


class _SummaryColumns:
    """The per-condition table as arrays, sliced by row positions: the summary's thousands of
    rows each take a few positions, and a DataFrame slice per row cost most of its time."""

    def __init__(self, per_condition: pd.DataFrame, extra_subgroups: dict[str, pd.Index]):
        self.frame = per_condition
        self.condition = per_condition["condition"].to_numpy()
        self.value = per_condition["value"].to_numpy(np.float64)
        self.subgroup = per_condition["subgroup"].to_numpy()
        has_seed = "seed" in per_condition
        self.seed = (per_condition["seed"].to_numpy(np.float64, na_value=np.nan) if has_seed
                     else np.full(len(per_condition), np.nan))  # fmt: skip
        self.extra = {name: per_condition["condition"].isin(conditions).to_numpy()
                      for name, conditions in extra_subgroups.items()}  # fmt: skip

    def subgroup_rows(self, positions: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``all``, then each subgroup in order of appearance, then each non-empty extra
        subgroup: the rows of one model × metric that each summary row averages."""
        labels = self.subgroup[positions]
        parts = [(ALL_SUBGROUPS, positions)]
        parts += [(label, positions[labels == label]) for label in pd.unique(labels)
                  if not pd.isna(label)]  # fmt: skip
        extra = [(name, positions[inside[positions]]) for name, inside in self.extra.items()]
        return parts + [(name, part) for name, part in extra if part.size]

    def over_seeds(self, positions: np.ndarray) -> tuple[pd.Series, dict[str, float]]:
        """:func:`_over_seeds` of these rows."""
        seeds = self.seed[positions]
        seeds = np.unique(seeds[~np.isnan(seeds)])
        if len(seeds) < 2:
            values = pd.Series(self.value[positions], index=self.condition[positions])
            return values, {"n_seeds": max(len(seeds), 1)}
        return _over_seeds(self.frame.iloc[positions])


def with_holm_adjustment(
    table: pd.DataFrame, resamples: list[np.ndarray | None], alpha: float = HOLM_ALPHA
) -> pd.DataFrame:
    """Holm-adjusted p-values and simultaneous intervals of the differences to Train Mean.

    Within each family (:data:`HOLM_FAMILY`: one dataset, DE method and subgroup; every
    model × features × protocol × metric of it with a p-value, the noise ceiling left out as
    it is a reference, not a contender), ``p_holm`` is :func:`holm_adjust` of
    ``p_value_vs_train_mean`` and ``diff_ci_low_holm`` / ``diff_ci_high_holm`` the interval
    of the row's own bootstrap ``resamples`` at its Holm level ``1 - alpha / (m - rank + 1)``
    (:func:`holm_levels`). ``better_than_train_mean`` is true only when Holm rejects the row's
    hypothesis (``p_holm <= alpha``) and that interval excludes zero on the model's better
    side: above zero for a higher-is-better metric, below zero for an error
    (:func:`perturb_assets.core.metrics.higher_is_better`). Both are asked for because the
    test (a rank test) and the interval (a bootstrap of the mean) can disagree on few
    conditions: with three, every resampled mean of three positive differences is positive,
    while the signed-rank test's smallest two-sided p-value is 0.25.
    """
    table = table.copy()
    tested = table["p_value_vs_train_mean"].notna() & (table["model"] != CEILING_MODEL)
    low, high = np.full(len(table), np.nan), np.full(len(table), np.nan)
    p_holm = np.full(len(table), np.nan)
    for _, idx in table[tested].groupby(HOLM_FAMILY, sort=False).indices.items():
        rows = np.flatnonzero(tested.to_numpy())[idx]
        p = table["p_value_vs_train_mean"].to_numpy(float)[rows]
        p_holm[rows] = holm_adjust(p)
        for row, level in zip(rows, holm_levels(p, alpha), strict=True):
            low[row], high[row] = holm_interval(resamples[row], level)
    higher = table["metric"].map(higher_is_better).to_numpy(bool)
    # NaN compares False: untested rows are never "better"
    better = (p_holm <= alpha) & np.where(higher, low > 0, high < 0)
    return table.assign(
        p_holm=p_holm, diff_ci_low_holm=low, diff_ci_high_holm=high,
        better_than_train_mean=better,
    )  # fmt: skip


def _over_seeds(part: pd.DataFrame) -> tuple[pd.Series, dict[str, float]]:
    """Per-condition values of one summary row: the mean over the model's seeds when it has
    several, with ``n_seeds`` and ``seed_sd``, the SD over seeds of the mean over conditions
    (the paper reports one run; this is how much another seed would move it)."""
    seeds = part["seed"].dropna().unique() if "seed" in part else []
    if len(seeds) < 2:
        return part.set_index("condition")["value"], {"n_seeds": max(len(seeds), 1)}
    values = part.groupby("condition", sort=False)["value"].mean()
    per_seed = part.groupby("seed")["value"].mean()
    return values, {"n_seeds": len(seeds), "seed_sd": float(per_seed.std(ddof=1))}


def _train_mean_for(train_mean: dict, identity: dict[str, str]) -> pd.Series | None:
    if identity["model"] == registry.TRAIN_MEAN.name:
        return None
    for protocol in (identity["protocol"], registry.DEFAULT_PROTOCOL.name):
        found = train_mean.get((protocol, identity["de_method"], identity["metric"]))
        if found is not None:
            return found
    return None


def _summary_values(values: pd.Series, n_boot: int, seed: int) -> dict[str, float]:
    """One row's mean over conditions with its bootstrap CI."""
    v = values.to_numpy(float)
    mean, low, high = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {"value": mean, "ci_low": low, "ci_high": high,
            "n_conditions": int(np.count_nonzero(~np.isnan(v)))}  # fmt: skip


def _with_train_mean_differences(
    rows: list[dict], pairs: list[tuple[pd.Series, pd.Series | None]], n_boot: int, seed: int
) -> list[np.ndarray | None]:
    """Add each row's paired comparison with its Train Mean (in place; all at once, so the
    p-values are computed together), and return the bootstrap resamples of the differences
    (``None`` for a row without Train Mean)."""
    compared = [i for i, (_, base) in enumerate(pairs) if base is not None]
    results = paired_comparisons([pairs[i] for i in compared], n_boot=n_boot, seed=seed,
                                 return_resamples=True)  # fmt: skip
    resamples: list[np.ndarray | None] = [None] * len(rows)
    for i, paired in zip(compared, results, strict=True):
        rows[i] |= {
            "diff_vs_train_mean": paired["mean_diff"],
            "diff_ci_low": paired["ci_low"],
            "diff_ci_high": paired["ci_high"],
            "win_rate_vs_train_mean": paired["win_rate"],
            "p_value_vs_train_mean": paired["p_value"],
        }
        resamples[i] = paired["resamples"]
    return resamples


def evaluate_models(
    tables: Iterable[AnnData | None],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame,
    dataset: str,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    gene_names: pd.Series | None = None,
    ceiling: pd.DataFrame | None = None,
    cells: AnnData | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every model on the test conditions.

    Parameters
    ----------
    tables
        Prediction tables (:func:`perturb_assets.core.models.prediction_table`), one per
        model × feature set. Empty tables (e.g. a feature set whose embedding file is absent)
        are skipped. Train Mean's table of the same protocol is the reference of the paired
        comparison when present.
    pseudobulk
        Pseudo-bulk means (conditions × genes, ``ctrl`` row).
    split
        Output of :func:`perturb_assets.core.gears.simulation_split`.
    de_table
        Long DE table of :func:`perturb_assets.core.pp.de_gene_table`.
    dataset
        Dataset name written into the table.
    n_boot, seed
        Bootstrap resamples over test conditions and their seed.
    gene_names
        ``var['gene_name']``: maps target genes to columns (the discrimination score).
    ceiling
        Per-condition noise ceiling (:func:`perturb_assets.core.evaluation.noise_ceiling`):
        summarised as the model ``noise_ceiling``, and the reference of
        ``calibrated_score``.
    cells
        The ``expression`` asset (log1p cells, ``obs['condition']``, ``ctrl`` control cells):
        adds cell-eval's DE metric family (``de_method`` ``"wilcoxon_bh"``): pdex's Wilcoxon DE
        of the real cells and of each prediction repeated once per real cell, both against the
        real control cells (:mod:`perturb_assets.core.metrics.de_family`).

    Returns
    -------
    summary : pandas.DataFrame
        Tidy: one row per dataset × model × features × protocol × DE method × subgroup ×
        metric (subgroups: ``all``, the split's, and ``gears_covered`` when a GEARS model has
        predictions), with ``value`` (mean over conditions), its 95% bootstrap CI, and the paired
        difference to Train Mean (mean, CI, share of conditions where the model wins).
    per_condition : pandas.DataFrame
        The per-condition values behind it (:func:`per_condition_metrics`).
    """
    per_condition = per_condition_metrics(tables, pseudobulk, split, de_table, gene_names, cells)
    if ceiling is not None and not ceiling.empty:
        per_condition = pd.concat(
            [per_condition, ceiling.drop(columns="sd", errors="ignore")], ignore_index=True
        )
    # Every model also on the conditions GEARS predicts (GEARS drops targets without GO terms).
    covered = gears_covered_conditions(per_condition)
    extra = {GEARS_COVERED: covered} if covered is not None else None
    summary = summarise(per_condition, dataset, n_boot=n_boot, seed=seed, extra_subgroups=extra)
    return with_calibrated_scores(summary), per_condition


def with_calibrated_scores(summary: pd.DataFrame) -> pd.DataFrame:
    """``calibrated_score``: cell-eval2's ``(u - b) / (r - b)``, how far each row is from
    Train Mean ``b`` (0) to the noise ceiling ``r`` (1) on the same metric, DE method and
    subgroup (:func:`~perturb_assets.core.evaluation.calibration.calibrated_score`); NaN
    without a ceiling."""
    keys = ["de_method", "metric", "subgroup"]
    ceiling = summary[summary["model"] == CEILING_MODEL].set_index(keys)["value"]
    base = summary[
        (summary["model"] == registry.TRAIN_MEAN.name)
        & (summary["protocol"] == registry.DEFAULT_PROTOCOL.name)
    ]
    base = base.set_index(keys)["value"]
    index = pd.MultiIndex.from_frame(summary[keys])
    top, bottom = ceiling.reindex(index).to_numpy(), base.reindex(index).to_numpy()
    return summary.assign(calibrated_score=calibrated_score(summary["value"], bottom, top))


def better_than_train_mean(table: pd.DataFrame, metric: str = "pearson_delta") -> list[str]:
    """``model/features/protocol`` of the rows that beat Train Mean on ``metric`` over the whole
    test set after the Holm adjustment (``better_than_train_mean``), in table order."""
    rows = table[
        (table["metric"] == metric)
        & (table["subgroup"] == ALL_SUBGROUPS)
        & table["better_than_train_mean"].eq(True)  # NaN (a table from before the column): no
    ]
    return (rows["model"] + "/" + rows["features"] + "/" + rows["protocol"]).tolist()


def dynamic_range(table: pd.DataFrame, metric: str = "pearson_delta") -> tuple[str, float]:
    """The best model's ``metric`` minus Train Mean's (whole test set, default protocol), and
    which model that is (``model/features``); ``("", nan)`` without both."""
    rows = table[
        (table["metric"] == metric)
        & (table["subgroup"] == ALL_SUBGROUPS)
        & (table["protocol"] == registry.DEFAULT_PROTOCOL.name)
    ]
    base = rows[rows["model"] == registry.TRAIN_MEAN.name]["value"]
    others = rows[~rows["model"].isin([registry.TRAIN_MEAN.name, CEILING_MODEL])].dropna(
        subset=["value"]
    )
    if base.empty or others.empty:
        return "", float("nan")
    best = others.loc[others["value"].idxmax()]
    return f"{best['model']}/{best['features']}", float(best["value"] - base.iloc[0])


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


def headline_with_paper(table: pd.DataFrame) -> pd.DataFrame:
    """Model × the paper's metrics as ``"0.745 [0.701, 0.781] (0.711)"``: our mean, its 95% CI
    and, in parentheses, the paper's value where it has one (t-test DE lists, whole test set)."""
    rows = table[
        (table["subgroup"] == ALL_SUBGROUPS)
        & table["de_method"].isin(["none", PAPER_DE_METHOD])
        & table["metric"].isin(HEADLINE_METRICS)
    ]
    paper = rows["paper_value"] if "paper_value" in rows else pd.Series(np.nan, index=rows.index)
    text = (
        rows["value"].map("{:.3f}".format)
        + " ["
        + rows["ci_low"].map("{:.3f}".format)
        + ", "
        + rows["ci_high"].map("{:.3f}".format)
        + "]"
        + paper.map(lambda v: f" ({v:.3f})" if v == v else "")
    )
    wide = rows.assign(text=text).pivot_table(
        index=["model", "features", "protocol"], columns="metric", values="text", aggfunc="first"
    )
    return wide.reindex(columns=[m for m in HEADLINE_METRICS if m in wide.columns])


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
