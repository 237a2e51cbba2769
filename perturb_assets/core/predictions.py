"""Prediction tables: every model's test-set predictions in one self-describing layout.

A prediction table is an AnnData with one observation per predicted condition:

* ``X``: predicted pseudo-bulk expression (float64, the genes of the pseudo-bulk table);
* ``obs``: ``model``, ``features`` and ``protocol`` on every row, so each row says where it
  came from, plus optional per-condition flags (e.g. ``fallback``: the additive model used
  Train Mean for it);
* ``var``: the genes (``var_names`` as in the dataset, ``gene_name`` where known).

Baselines, foundation models and predictions a user brings all produce this layout, and
:func:`perturb_assets.core.benchmark.evaluate_models` scores any of them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["IDENTITY_COLUMNS", "prediction_frame", "prediction_identity", "prediction_table"]

#: The ``obs`` columns that say which model, features and protocol made a row.
IDENTITY_COLUMNS: tuple[str, ...] = ("model", "features", "protocol")


def prediction_table(
    predictions: pd.DataFrame,
    *,
    model: str,
    features: str,
    protocol: str,
    var: pd.DataFrame | None = None,
    flags: Mapping[str, Iterable[str]] | None = None,
) -> AnnData:
    """Wrap a conditions × genes frame of predictions as a prediction table.

    Parameters
    ----------
    predictions
        Predicted pseudo-bulk expression; index = conditions, columns = gene ids.
    model, features, protocol
        Written on every row (``features`` is ``"none"`` for a model without features).
    var
        Gene annotation indexed by gene id (e.g. the pseudo-bulk table's ``var``); its rows for
        ``predictions.columns`` become ``var``.
    flags
        Flag name -> conditions for which it is true; each becomes a boolean ``obs`` column.

    Returns
    -------
    anndata.AnnData
        The prediction table.
    """
    obs = pd.DataFrame(index=pd.Index(predictions.index.astype(str), name="condition"))
    for column, value in zip(IDENTITY_COLUMNS, (model, features, protocol), strict=True):
        obs[column] = value
    for flag, conditions in (flags or {}).items():
        obs[flag] = obs.index.isin(list(conditions))
    genes = pd.Index(predictions.columns.astype(str))
    table_var = pd.DataFrame(index=genes) if var is None else var.reindex(genes)
    x = predictions.to_numpy(np.float64).reshape(len(obs), len(genes))
    return AnnData(X=x, obs=obs, var=table_var)


def prediction_frame(table: AnnData) -> pd.DataFrame:
    """The predictions of a table as a conditions × genes frame."""
    frame = table.to_df()
    frame.index.name = "condition"
    return frame


def prediction_identity(table: AnnData) -> dict[str, str]:
    """``model``, ``features`` and ``protocol`` of a non-empty table (one value each)."""
    identity = {}
    for column in IDENTITY_COLUMNS:
        values = table.obs[column].astype(str).unique()
        if len(values) != 1:
            raise ValueError(f"prediction table obs[{column!r}] holds {list(values)}, not one")
        identity[column] = str(values[0])
    return identity
