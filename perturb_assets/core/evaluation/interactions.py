"""Genetic interactions: how far each double perturbation departs from additivity, and whether
the models predict that departure.

For a test double ``A+B`` whose singles ``A+ctrl`` and ``B+ctrl`` are measured (in any split of
the pseudo-bulk truth), with ``δX = pseudobulk(X) - ctrl``:

* the *additive expectation* is ``ctrl + δA + δB``;
* the *observed non-additivity* is ``truth(A+B) - additive``, a model's *predicted
  non-additivity* its ``prediction(A+B) - additive``; they are compared per double by Pearson
  correlation over genes and by mean squared error (the MSE of the non-additivities equals the
  prediction's MSE to the truth, and the additive expectation's MSE is the observed
  non-additivity's mean square);
* the *interaction class* follows Norman et al. 2019 (Science 365:786): fit
  ``δAB ≈ c1·δA + c2·δB`` over genes, ``magnitude = sqrt(c1² + c2²)``. An exactly additive
  double has ``c1 = c2 = 1``, so magnitude ``√2``; the class is read from the *normalised*
  magnitude ``magnitude / √2`` (1 at additivity): ``synergy`` above ``1 + tolerance``,
  ``suppression`` below ``1 - tolerance``, ``additive`` in between. ``dominance``
  ``|log10(|c1| / |c2|)|`` (Norman's epistasis axis: one gene's effect dominates) is reported but
  not turned into a class.

The fit is ordinary least squares, not Norman's robust Theil–Sen fit: over all measured genes
most have no response to either single, and Theil–Sen's median of slopes over random gene
pairs then collapses to 0 (on 5,000 genes with 10% responding, ``TheilSenRegressor`` gave
``c ≈ 0.0002`` for a true ``c = 1.5``, least squares ``1.50``, in 1.8 s against 1 ms). Least
squares weights genes by their effect size, is closed-form and deterministic, and fits every
double × model in milliseconds. GEARS' Theil–Sen fit works because it first restricts the fit
to a few hundred responding genes.

A model is scored against the additive expectation as in Ahlmann-Eltze et al. 2025 (Nature
Methods): its mean error over the doubles divided by the additive expectation's, with a
paired bootstrap 95% CI; it *beats additive* only when the whole interval lies below 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL, parse_condition
from perturb_assets.core.metrics.pearson import rowwise_pearson
from perturb_assets.core.metrics.statistics import bootstrap_ci, bootstrap_ratio_ci
from perturb_assets.core.models.predictions import (
    prediction_frame,
    prediction_identity,
    split_by_model,
)

__all__ = [
    "INTERACTION_CLASSES",
    "INTERACTION_COLUMNS",
    "INTERACTION_TOLERANCE",
    "double_perturbations",
    "interaction_class_counts",
    "interaction_classes",
    "interaction_coefficients",
    "interaction_summary",
    "interaction_table",
    "single_deltas",
]

INTERACTION_CLASSES = ("synergy", "suppression", "additive")
#: Half-width of the ``additive`` band of the normalised magnitude: 0.2 keeps the regression
#: dilution of noisy single deltas (which pulls c1, c2 towards 0) from reading as suppression.
INTERACTION_TOLERANCE = 0.2
_ROUND_OFF = 1e-9  # log-expression units
_COEF_COLUMNS = ("c1", "c2", "magnitude", "normalised_magnitude", "dominance", "class")
INTERACTION_COLUMNS = [
    "dataset", "model", "features", "protocol", "condition", "gene_a", "gene_b", "subgroup",
    *(f"true_{c}" for c in _COEF_COLUMNS), *(f"pred_{c}" for c in _COEF_COLUMNS),
    "class_correct", "nonadditivity_pearson", "nonadditivity_mse", "additive_mse",
    "error_ratio",
]  # fmt: skip


def single_deltas(truth: pd.DataFrame) -> pd.DataFrame:
    """Gene × genes: each single's ``pseudobulk - ctrl`` (the mean of ``A+ctrl`` and
    ``ctrl+A`` when both are measured)."""
    ctrl = truth.loc[CONTROL]
    rows = {c: parse_condition(c) for c in truth.index}
    singles = [c for c, genes in rows.items() if len(genes) == 1]
    deltas = truth.loc[singles].sub(ctrl, axis=1)
    deltas.index = pd.Index([rows[c][0] for c in singles], name="gene")
    return deltas.groupby(level=0).mean()


def double_perturbations(truth: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """The test doubles of ``split`` measured in ``truth`` with both singles measured too.

    Returns ``condition`` (index), ``gene_a``, ``gene_b`` and ``subgroup``.
    """
    singles = set(single_deltas(truth).index)
    test = split.index[split["split"] == "test"].intersection(truth.index)
    rows = []
    for condition in test:
        genes = parse_condition(condition)
        if len(genes) == 2 and set(genes) <= singles:
            rows.append((condition, *genes, split.loc[condition].get("subgroup")))
    frame = pd.DataFrame(rows, columns=["condition", "gene_a", "gene_b", "subgroup"])
    return frame.set_index("condition")


def interaction_coefficients(
    delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray
) -> np.ndarray:
    """Least-squares ``(c1, c2)`` of ``delta_ab[i] ≈ c1·delta_a[i] + c2·delta_b[i]`` over genes.

    Parameters
    ----------
    delta_a, delta_b, delta_ab
        Arrays of shape ``(n_doubles, n_genes)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_doubles, 2)``; the minimum-norm solution when the singles are collinear.
    """
    out = np.empty((delta_ab.shape[0], 2))
    for i in range(delta_ab.shape[0]):
        design = np.column_stack([delta_a[i], delta_b[i]])
        out[i] = np.linalg.lstsq(design, delta_ab[i], rcond=None)[0]
    return out


def interaction_classes(
    coefficients: np.ndarray, tolerance: float = INTERACTION_TOLERANCE
) -> pd.DataFrame:
    """Norman's magnitude, the normalised magnitude, dominance and the class of each double.

    Columns ``c1``, ``c2``, ``magnitude`` (``sqrt(c1² + c2²)``), ``normalised_magnitude``
    (``magnitude / √2``, 1 when additive), ``dominance`` (``|log10(|c1| / |c2|)|``) and
    ``class`` (:data:`INTERACTION_CLASSES`, from the normalised magnitude and ``tolerance``).
    """
    c1, c2 = coefficients[:, 0], coefficients[:, 1]
    magnitude = np.hypot(c1, c2)
    normalised = magnitude / np.sqrt(2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dominance = np.abs(np.log10(np.abs(c1) / np.abs(c2)))
    label = np.where(
        normalised > 1 + tolerance,
        "synergy",
        np.where(normalised < 1 - tolerance, "suppression", "additive"),
    )
    return pd.DataFrame(
        {
            "c1": c1,
            "c2": c2,
            "magnitude": magnitude,
            "normalised_magnitude": normalised,
            "dominance": dominance,
            "class": label,
        }  # fmt: skip
    )


def _model_rows(pred, truth, doubles, deltas, ctrl, true_classes, tolerance) -> pd.DataFrame:
    """One model's rows: the doubles it predicts, scored against the additive expectation."""
    keep = doubles.index.intersection(pred.index)
    if keep.empty:
        return pd.DataFrame()
    part = doubles.loc[keep]
    delta_a = deltas.loc[part["gene_a"]].to_numpy()
    delta_b = deltas.loc[part["gene_b"]].to_numpy()
    additive = ctrl + delta_a + delta_b
    observed = truth.loc[keep].to_numpy() - additive
    predicted = pred.loc[keep].reindex(columns=truth.columns).to_numpy(np.float64) - additive
    # The additive model's ctrl + δA + δB, summed in another order, differs by round-off only:
    # that is no predicted interaction (and must not get a Pearson correlation).
    predicted[np.abs(predicted) < _ROUND_OFF] = 0.0
    coef = interaction_coefficients(delta_a, delta_b, predicted + delta_a + delta_b)
    pred_classes = interaction_classes(coef, tolerance).add_prefix("pred_")
    mse = np.mean((predicted - observed) ** 2, axis=1)
    additive_mse = np.mean(observed**2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mse / additive_mse
    rows = pd.concat(
        [part.reset_index(), true_classes.loc[keep].reset_index(drop=True), pred_classes],
        axis=1,
    )
    return rows.assign(
        class_correct=rows["pred_class"] == rows["true_class"],
        nonadditivity_pearson=rowwise_pearson(predicted, observed),
        nonadditivity_mse=mse,
        additive_mse=additive_mse,
        error_ratio=ratio,
    )


def interaction_table(
    tables: Iterable[AnnData | None],
    pseudobulk: pd.DataFrame,
    split: pd.DataFrame,
    dataset: str = "",
    tolerance: float = INTERACTION_TOLERANCE,
) -> pd.DataFrame:
    """Every model's predicted genetic interactions on the test doubles, beside the true ones.

    Parameters
    ----------
    tables
        Prediction tables (:func:`perturb_assets.core.models.prediction_table`); ``None`` and
        empty tables are skipped, a table of several models is split, and a model is scored on
        the doubles it predicts.
    pseudobulk
        Pseudo-bulk truth (conditions × genes with a ``ctrl`` row; an ``n_cells`` column is
        ignored). Singles of every split give the single deltas.
    split
        The perturbation split (``split``, ``subgroup`` per condition).
    dataset
        Written into the ``dataset`` column.
    tolerance
        Half-width of the ``additive`` band of the normalised magnitude.

    Returns
    -------
    pandas.DataFrame
        One row per test double × model with :data:`INTERACTION_COLUMNS`: the true and the
        predicted ``c1``, ``c2``, magnitude, normalised magnitude, dominance and class, whether
        the classes agree, the Pearson correlation and MSE of predicted vs observed
        non-additivity, the additive expectation's MSE and their ratio. Empty (with those
        columns) when the dataset has no such double.
    """
    truth = pseudobulk.drop(columns=["n_cells"], errors="ignore").astype(np.float64)
    doubles = double_perturbations(truth, split)
    if doubles.empty:
        return pd.DataFrame(columns=INTERACTION_COLUMNS)
    deltas = single_deltas(truth)
    ctrl = truth.loc[CONTROL].to_numpy()
    delta_a = deltas.loc[doubles["gene_a"]].to_numpy()
    delta_b = deltas.loc[doubles["gene_b"]].to_numpy()
    delta_ab = truth.loc[doubles.index].to_numpy() - ctrl
    true_classes = interaction_classes(
        interaction_coefficients(delta_a, delta_b, delta_ab), tolerance
    ).add_prefix("true_")
    true_classes.index = doubles.index
    frames = []
    for table in (part for t in tables if t is not None for part in split_by_model(t)):
        rows = _model_rows(
            prediction_frame(table), truth, doubles, deltas, ctrl, true_classes, tolerance
        )
        if not rows.empty:
            frames.append(rows.assign(dataset=dataset, **prediction_identity(table)))
    if not frames:
        return pd.DataFrame(columns=INTERACTION_COLUMNS)
    return pd.concat(frames, ignore_index=True).reindex(columns=INTERACTION_COLUMNS)


def interaction_summary(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model: non-additivity correlation, class accuracy and the error ratio to additive.

    Columns ``n_doubles``, ``nonadditivity_pearson`` (mean over doubles, NaN for a model that
    predicts no non-additivity) with its bootstrap CI, ``class_accuracy``, ``error_ratio``
    (mean MSE over the additive expectation's, :func:`bootstrap_ratio_ci`) with its CI, and
    ``beats_additive`` (the CI's upper end below 1), indexed by model, features, protocol.
    """
    keys = ["model", "features", "protocol"]
    rows = []
    for key, part in table.groupby(keys, sort=False):
        r, r_low, r_high = bootstrap_ci(part["nonadditivity_pearson"], n_boot=n_boot, seed=seed)
        ratio, low, high = bootstrap_ratio_ci(
            part["nonadditivity_mse"], part["additive_mse"], n_boot=n_boot, seed=seed
        )
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n_doubles": len(part),
                "nonadditivity_pearson": r,
                "pearson_ci_low": r_low,
                "pearson_ci_high": r_high,
                "class_accuracy": float(part["class_correct"].astype(bool).mean()),
                "error_ratio": ratio,
                "ratio_ci_low": low,
                "ratio_ci_high": high,
                "beats_additive": bool(high < 1),
            }  # fmt: skip
        )
    columns = [*keys, "n_doubles", "nonadditivity_pearson", "pearson_ci_low", "pearson_ci_high",
               "class_accuracy", "error_ratio", "ratio_ci_low", "ratio_ci_high",
               "beats_additive"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).set_index(keys)


def interaction_class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Doubles per class: the truth's (``observed``) and each model's predicted ones."""
    truth = table.drop_duplicates("condition")["true_class"].value_counts()
    counts = {"observed": truth}
    for key, part in table.groupby(["model", "features"], sort=False):
        counts["/".join(key)] = part["pred_class"].value_counts()
    wide = pd.DataFrame(counts).reindex(list(INTERACTION_CLASSES)).fillna(0).astype(int)
    return wide.T
