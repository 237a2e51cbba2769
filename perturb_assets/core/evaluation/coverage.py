"""Which test conditions each model predicts, and the subset GEARS can predict.

A model that predicts only part of the test set (GEARS without a GO term for a target, a
feature model with ``missing_gene_policy: drop``, a user's file covering some conditions) is
scored on the conditions it predicts. :func:`prediction_coverage` says how many of the common
test set each model misses; :func:`gears_covered_conditions` is the ``gears_covered``
subgroup of the metrics table, so every model can also be compared on GEARS' conditions.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["GEARS_COVERED", "GEARS_MODELS", "gears_covered_conditions", "prediction_coverage"]

#: The subgroup of the test conditions every GEARS model predicts.
GEARS_COVERED = "gears_covered"
#: The models built on GEARS' GO graph (same graph, same covered conditions).
GEARS_MODELS = ("gears", "gears_scfoundation_emb")
_IDENTITY = ["model", "features", "protocol"]


def gears_covered_conditions(per_condition: pd.DataFrame) -> pd.Index | None:
    """Conditions predicted by every GEARS model that has rows; ``None`` without one."""
    if per_condition.empty:
        return None
    rows = per_condition[per_condition["model"].isin(GEARS_MODELS)]
    if rows.empty:
        return None
    sets = [set(part["condition"]) for _, part in rows.groupby("model")]
    return pd.Index(sorted(set.intersection(*sets)), name="condition")


def prediction_coverage(
    per_condition: pd.DataFrame, split: pd.DataFrame, exclude: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Per model × features × protocol: ``n_test`` (the split's test conditions), ``n_scored``,
    ``n_missing`` and the first missing conditions (``missing``)."""
    test = pd.Index(split.index[split["split"] == "test"].astype(str))
    columns = [*_IDENTITY, "n_test", "n_scored", "n_missing", "missing"]
    if per_condition.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    parts = per_condition[~per_condition["model"].isin(exclude)].groupby(_IDENTITY, sort=True)
    for key, part in parts:
        missing = test.difference(pd.Index(part["condition"].astype(str).unique()))
        rows.append(
            {
                **dict(zip(_IDENTITY, key, strict=True)),
                "n_test": len(test),
                "n_scored": len(test) - len(missing),
                "n_missing": len(missing),
                "missing": ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
            }
        )
    return pd.DataFrame(rows, columns=columns)
