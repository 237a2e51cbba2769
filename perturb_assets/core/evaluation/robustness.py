"""Metric robustness: degenerate predictions scored like the real models.

A metric is only as good as its resistance to predictions that carry no (or leaked) biology.
:func:`degenerate_predictions` builds, for the test conditions, predictions that are either
**attacks** (they should never beat an honest model) or **sanity anchors** (near-truth
predictions that a sound metric should rank at or near the top):

Attacks
    ``control_mean`` (no change at all), ``train_mean`` (the baseline itself),
    ``train_mean_plus_target`` (Train Mean with only the target gene(s) set to their true
    value: the knock-down is known by design, so it is no prediction), ``shuffled_truth``
    (another condition's truth: real-looking biology for the wrong perturbation),
    ``truth_top_de_only`` (the truth on each condition's top-20 DE genes, Train Mean elsewhere:
    a DE-filter leak of the test data's own DE list), ``one_cell`` (a single real cell of the
    condition: test-set data at single-cell noise) and ``count_scale`` (``expm1`` of the truth:
    a file on count instead of log scale).

Sanity anchors
    ``truth_x0.5`` and ``truth_x2`` (the true delta scaled about the control mean) and
    ``truth_plus_noise_<sd>`` (the truth plus Gaussian noise of that sd on the log scale).

:func:`robustness_table` scores each with the same code as the models
(:func:`~perturb_assets.core.evaluation.model_metrics`) and places it among the honest models
of the ``metrics`` table; ``fools_metric`` marks an attack that beats every honest model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core.evaluation.benchmark import (
    ALL_SUBGROUPS,
    CEILING_MODEL,
    PAPER_DE_METHOD,
    score_frames,
    target_columns,
)
from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.metrics.direction import higher_is_better

__all__ = [
    "ANCHORS",
    "ATTACKS",
    "NOISE_LEVELS",
    "degenerate_predictions",
    "prediction_role",
    "robustness_overview",
    "robustness_table",
]

#: Gaussian noise sds (log scale) of the ``truth_plus_noise_<sd>`` anchors.
NOISE_LEVELS: tuple[float, ...] = (0.05, 0.2, 0.5)
#: How many DE genes per condition ``truth_top_de_only`` leaks (the DE metrics' list length).
N_TOP_DE_LEAK = 20
ATTACKS: tuple[str, ...] = (
    "control_mean",
    "train_mean",
    "train_mean_plus_target",
    "shuffled_truth",
    "truth_top_de_only",
    "one_cell",
    "count_scale",
)
#: The fixed anchors; ``truth_plus_noise_<sd>`` (any sd) is an anchor too.
ANCHORS: tuple[str, ...] = ("truth_x0.5", "truth_x2")
_NOISE_PREFIX = "truth_plus_noise_"
Role = Literal["attack", "anchor"]
_RANK_TOLERANCE = 1e-9  # a tie (e.g. train_mean against Train Mean itself) is not a win


def prediction_role(name: str) -> Role:
    """``"anchor"`` for the near-truth predictions, ``"attack"`` for the rest."""
    return "anchor" if name in ANCHORS or name.startswith(_NOISE_PREFIX) else "attack"


def degenerate_predictions(
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame | None = None,
    expression: AnnData | None = None,
    *,
    gene_names: pd.Series | None = None,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    de_method: str = PAPER_DE_METHOD,
    n_top_de: int = N_TOP_DE_LEAK,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Named degenerate predictions (test conditions × genes, log scale unless named otherwise).

    Parameters
    ----------
    pseudobulk
        Condition means with a ``ctrl`` row (an ``n_cells`` column is ignored).
    split
        The condition split (``split`` column): Train Mean is the mean of the train
        conditions without ``ctrl``, as the model's.
    de_table
        The DE table (:func:`perturb_assets.core.pp.de_gene_table`); ``None`` or no rows of
        ``de_method``: no ``truth_top_de_only``.
    expression
        Log-normalised cells (``obs['condition']``); ``None``: no ``one_cell``.
    gene_names
        ``var['gene_name']``: maps target symbols to columns (``train_mean_plus_target``).
    noise_levels, de_method, n_top_de, seed
        The anchors' noise sds; the DE list leaked (``targets == "included"``) and its length;
        the seed of the noise, the derangement and the cell draw.

    Returns
    -------
    dict of str to pandas.DataFrame
        See the module docstring for each name.
    """
    profiles = pseudobulk.drop(columns=["n_cells"], errors="ignore")
    ctrl = profiles.loc[CONTROL]
    test = profiles.index.intersection(split.index[split["split"] == "test"])
    train = profiles.index.intersection(split.index[split["split"] == "train"]).drop(
        CONTROL, errors="ignore"
    )
    truth = profiles.loc[test]
    train_mean = _constant(profiles.loc[train].mean(axis=0), test)
    delta = truth - ctrl
    rng = np.random.default_rng(seed)
    out = {
        "control_mean": _constant(ctrl, test),
        "train_mean": train_mean,
        "train_mean_plus_target": _with_truth_at(
            train_mean, truth, target_columns(test, truth.columns, gene_names)
        ),
        "shuffled_truth": truth.iloc[_derangement(len(test), rng)].set_axis(test),
        "truth_x0.5": ctrl + 0.5 * delta,
        "truth_x2": ctrl + 2.0 * delta,
        **{
            f"{_NOISE_PREFIX}{sd:g}": truth + rng.normal(0.0, sd, truth.shape)
            for sd in noise_levels
        },
        "count_scale": np.expm1(truth),
    }
    top_de = _top_de_columns(de_table, truth, de_method, n_top_de)
    if top_de is not None:
        out["truth_top_de_only"] = _with_truth_at(train_mean, truth, top_de)
    if expression is not None:
        out["one_cell"] = _one_cell(expression, truth, rng)
    return out


def _constant(profile: pd.Series, conditions: pd.Index) -> pd.DataFrame:
    values = np.tile(profile.to_numpy(np.float64), (len(conditions), 1))
    return pd.DataFrame(values, index=conditions, columns=profile.index)


def _with_truth_at(
    base: pd.DataFrame, truth: pd.DataFrame, columns: Sequence[np.ndarray]
) -> pd.DataFrame:
    """``base`` with row *i* set to the truth at ``columns[i]``."""
    values, true = base.to_numpy(copy=True), truth.to_numpy()
    for i, cols in enumerate(columns):
        values[i, cols] = true[i, cols]
    return pd.DataFrame(values, index=base.index, columns=base.columns)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation without fixed points: each of a random order takes the next one's row."""
    if n < 2:
        return np.arange(n)
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def _top_de_columns(
    de_table: pd.DataFrame | None, truth: pd.DataFrame, method: str, n_top: int
) -> list[np.ndarray] | None:
    if de_table is None:
        return None
    rows = de_table[
        (de_table["method"] == method)
        & (de_table["targets"] == "included")
        & (de_table["rank"] <= n_top)
    ]
    if rows.empty:
        return None
    genes = rows.groupby("condition")["gene_id"].agg(list)
    position = pd.Index(truth.columns)
    found = [position.get_indexer(genes.get(c, [])) for c in truth.index]
    return [cols[cols >= 0] for cols in found]


def _one_cell(expression: AnnData, truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One random cell per condition (conditions without cells are left out)."""
    labels = expression.obs["condition"].astype(str).to_numpy()
    picked, conditions = [], []
    for condition in truth.index:
        cells = np.flatnonzero(labels == condition)
        if cells.size:
            picked.append(rng.choice(cells))
            conditions.append(condition)
    x = expression.X[np.asarray(picked, dtype=np.int64)]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    frame = pd.DataFrame(x, index=pd.Index(conditions), columns=expression.var_names)
    return frame.reindex(columns=truth.columns).astype(np.float64)


def robustness_table(
    predictions: Mapping[str, pd.DataFrame],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    de_table: pd.DataFrame | None,
    honest: pd.DataFrame,
    gene_names: pd.Series | None = None,
    cells: AnnData | None = None,
) -> pd.DataFrame:
    """Each degenerate prediction's score, and its rank among the honest models, per metric.

    Parameters
    ----------
    predictions
        Output of :func:`degenerate_predictions`.
    pseudobulk, split, de_table, gene_names, cells
        As for :func:`perturb_assets.core.evaluation.per_condition_metrics` (with ``cells``,
        cell-eval's DE family is scored too, as for the models).
    honest
        The ``metrics`` summary table: its whole-test-set rows of every model but the noise
        ceiling are the honest models.

    Returns
    -------
    pandas.DataFrame
        One row per metric × DE method × prediction: ``role``, ``value`` (mean over test
        conditions), ``rank`` (1 + the honest models strictly better; NaN for a NaN value),
        ``n_honest``, the best honest model and value, ``beats_best_honest`` and
        ``fools_metric`` (an attack that beats the best honest model).
    """
    de_table = de_table if de_table is not None else pd.DataFrame(columns=["method"])
    scores = score_frames(predictions, pseudobulk, split, de_table, gene_names, cells=cells)
    keys = ["metric", "de_method", "prediction"]
    scores = scores.rename(columns={"model": "prediction"})
    table = scores.groupby(keys, sort=False)["value"].mean().reset_index()
    reference = _honest_values(honest)
    rows = [_placed(row, reference.get((row.metric, row.de_method))) for row in table.itertuples()]
    return pd.DataFrame(rows)


def _honest_values(summary: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """(metric, DE method) -> honest values indexed by ``model/features``."""
    rows = summary[(summary["subgroup"] == ALL_SUBGROUPS) & (summary["model"] != CEILING_MODEL)]
    rows = rows.dropna(subset=["value"])
    label = rows["model"] + "/" + rows["features"]
    values = rows.assign(label=label).set_index("label")
    return {key: part["value"] for key, part in values.groupby(["metric", "de_method"])}


def _placed(row, honest: pd.Series | None) -> dict:
    sign = 1.0 if higher_is_better(row.metric) else -1.0
    honest = honest if honest is not None else pd.Series(dtype=np.float64)
    oriented = sign * honest
    best = oriented.idxmax() if len(honest) else None
    value = sign * row.value
    known = bool(np.isfinite(value))
    beats = known and best is not None and value > oriented[best] + _RANK_TOLERANCE
    role = prediction_role(row.prediction)
    return {
        "metric": row.metric,
        "de_method": row.de_method,
        "prediction": row.prediction,
        "role": role,
        "higher_is_better": sign > 0,
        "value": row.value,
        "rank": 1 + int((oriented > value + _RANK_TOLERANCE).sum()) if known else np.nan,
        "n_honest": len(honest),
        "best_honest_model": best,
        "best_honest_value": honest[best] if best is not None else np.nan,
        "beats_best_honest": beats,
        "fools_metric": beats and role == "attack",
    }


def robustness_overview(
    table: pd.DataFrame, de_methods: Sequence[str] = ("none", PAPER_DE_METHOD)
) -> pd.DataFrame:
    """Metric (DE method) × prediction, for display: ``"3/19"`` is the prediction's rank among
    itself and the 18 honest models (``"nan/19"``: no value), ``"FOOLS (1/19)"`` an attack
    that beats them all."""
    rows = table[table["de_method"].isin(de_methods)]
    rank = rows["rank"].map(lambda r: "nan" if r != r else f"{int(r)}")
    text = rank + "/" + (rows["n_honest"] + 1).astype(str)
    text = text.where(~rows["fools_metric"], "FOOLS (" + text + ")")
    metric = rows["metric"].where(
        rows["de_method"] == "none", rows["metric"] + " [" + rows["de_method"] + "]"
    )
    wide = rows.assign(text=text, row=metric).pivot_table(
        index="row", columns="prediction", values="text", aggfunc="first", sort=False
    )
    order = [p for p in table["prediction"].drop_duplicates() if p in wide.columns]
    wide = wide.reindex(columns=order)
    wide.index.name = "metric"
    wide.columns.name = None
    return wide
