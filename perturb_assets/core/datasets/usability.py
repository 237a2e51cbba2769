"""Whether a dataset can be benchmarked at all: the rules ``add-dataset`` and ``expression``
share, so that a dataset the platform accepts also runs.

A dataset passes the GEARS validation (:mod:`perturb_assets.core.gears.validation`) and the
normalisation rule (raw counts or log-normalised, :func:`perturb_assets.core.pp.
normalize_expression`), and then needs:

* values that vary: an ``X`` with one value everywhere (e.g. all zeros) has nothing to predict,
  and every metric would score every model perfectly or not at all;
* enough perturbations for cell-gears' simulation split to give the models something to learn
  from and to be scored on: at least :data:`MIN_TRAIN_PERTURBATIONS` training perturbations, and
  at least one validation and one test perturbation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.gears.split import simulation_split

__all__ = ["MIN_TRAIN_PERTURBATIONS", "usability_problems"]

#: Training perturbations a model needs at the least (a grid search on one is meaningless).
MIN_TRAIN_PERTURBATIONS = 2


def usability_problems(adata: AnnData) -> list[tuple[str, str]]:
    """``(field, problem)`` pairs that make a (validated, normalised) dataset unusable."""
    problems = []
    low, high = _value_range(adata.X)
    if low == high:
        problems.append(
            ("X", f"every value is {low:g}: nothing varies, so nothing can be predicted")
        )
    split = simulation_split(adata.obs["condition"].astype(str))
    labels = split.loc[split.index != CONTROL, "split"]
    counts = labels.value_counts().reindex(["train", "val", "test"], fill_value=0)
    if counts["train"] < MIN_TRAIN_PERTURBATIONS or counts["val"] < 1 or counts["test"] < 1:
        problems.append(
            (
                "obs['condition']",
                f"{len(labels)} perturbation(s) split into {counts['train']} train, "
                f"{counts['val']} validation and {counts['test']} test (cell-gears' simulation "
                f"split); the benchmark needs at least {MIN_TRAIN_PERTURBATIONS} train, 1 "
                "validation and 1 test perturbation: add perturbations",
            )
        )
    return problems


def _value_range(x: object) -> tuple[float, float]:
    """The smallest and largest value of ``X`` (a sparse matrix's implicit zeros included)."""
    if not sp.issparse(x):
        values = np.asarray(x)
        return float(values.min()), float(values.max())
    stored = x.data
    has_zeros = x.nnz < x.shape[0] * x.shape[1]
    if not stored.size:
        return 0.0, 0.0
    low, high = float(stored.min()), float(stored.max())
    return (min(low, 0.0), max(high, 0.0)) if has_zeros else (low, high)
