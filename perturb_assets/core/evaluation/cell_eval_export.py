"""A model's predictions as cell-eval's input: a predicted and a real AnnData of cells.

cell-eval (0.8.2, ``cell-eval run``) scores a model from two ``.h5ad`` files of cells with the
same genes in the same order: the real cells and the predicted ones, each with a perturbation
column whose values are the same set in both, the control label among them, and
log-normalised, non-negative values. Our models predict one pseudo-bulk profile per condition,
so, as cell-eval's own mean baseline (``_baseline.py: build_base_mean_adata``) does, the
predicted profile of a condition is repeated once per real cell of it, and the real control
cells are appended to the prediction as its control.

With the same control cells on both sides, cell-eval's ``pearson_delta`` of a condition
(Pearson of predicted minus control mean against real minus control mean, the means taken
over cells) is our per-condition ``pearson_delta`` (pseudo-bulk means are the same cell
means), so the mean over conditions matches the metrics table. Negative predictions (a linear
model can predict them) are clipped to zero, which cell-eval's log-normalisation check needs;
then the numbers agree only where nothing was clipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.io import atomic_write
from perturb_assets.core.models.predictions import prediction_frame

__all__ = [
    "CELL_EVAL_PERT_COL",
    "CellEvalPair",
    "cell_eval_command",
    "cell_eval_pair",
    "write_cell_eval_pair",
]

#: The perturbation column of both files (our ``obs['condition']``; pass ``--pert-col``).
CELL_EVAL_PERT_COL = "condition"


@dataclass(frozen=True)
class CellEvalPair:
    """The two AnnData of :func:`cell_eval_pair` and what building them did."""

    pred: AnnData
    real: AnnData
    #: Test conditions in both files (control excluded).
    conditions: list[str]
    #: Predicted values below zero that were clipped to zero.
    n_clipped: int


def cell_eval_pair(expression: AnnData, split: pd.DataFrame, predictions: AnnData) -> CellEvalPair:
    """cell-eval's predicted and real AnnData for one model's prediction table.

    Parameters
    ----------
    expression
        The dataset's log-normalised cells (the ``expression`` asset), ``obs['condition']``.
    split
        The condition split (the ``perturbation_split`` asset); its test conditions are
        exported.
    predictions
        A one-model prediction table (conditions × genes, :func:`prediction_table`); only the
        test conditions it predicts are exported, as in the metrics table.

    Returns
    -------
    CellEvalPair
        ``real``: the cells of those conditions and the control cells, on the prediction's
        genes; ``pred``: each predicted profile repeated once per real cell of its condition
        (float32, clipped at zero), then the same control cells.
    """
    pred = prediction_frame(predictions)
    genes = pd.Index(pred.columns.astype(str))
    missing = genes.difference(expression.var_names)
    if len(missing):
        raise ValueError(f"{len(missing)} predicted genes are not in expression, e.g. {missing[0]}")
    labels = expression.obs["condition"].astype(str)
    scorable = set(split.index[split["split"] == "test"]) & set(labels.unique())
    conditions = [c for c in pred.index if c in scorable]
    if not conditions:
        raise ValueError("the prediction table holds no test condition of this dataset")
    keep = labels.isin([*conditions, CONTROL]).to_numpy()
    real = _cells(expression[keep], genes, labels[keep])
    values = pred.loc[conditions].to_numpy(np.float64)
    n_clipped = int(np.count_nonzero(values < 0))
    counts = real.obs[CELL_EVAL_PERT_COL].value_counts()
    repeats = counts.reindex(conditions).to_numpy(int)
    control = real[real.obs[CELL_EVAL_PERT_COL] == CONTROL]
    x_pred = np.repeat(np.clip(values, 0.0, None).astype(np.float32), repeats, axis=0)
    x_ctrl = control.X.toarray() if sparse.issparse(control.X) else np.asarray(control.X)
    obs = pd.DataFrame(
        {CELL_EVAL_PERT_COL: np.repeat(conditions, repeats).tolist() + [CONTROL] * control.n_obs}
    )
    obs.index = [f"p.{i}" for i in range(len(obs))]
    pred_cells = AnnData(
        X=np.vstack([x_pred, x_ctrl.astype(np.float32)]), obs=obs, var=real.var.copy()
    )
    return CellEvalPair(pred=pred_cells, real=real, conditions=conditions, n_clipped=n_clipped)


def _cells(adata: AnnData, genes: pd.Index, labels: pd.Series) -> AnnData:
    """``adata`` on ``genes`` (in that order) with the perturbation column only."""
    part = adata[:, genes]
    x = part.X.astype(np.float32) if part.X.dtype != np.float32 else part.X
    obs = pd.DataFrame({CELL_EVAL_PERT_COL: labels.to_numpy()}, index=part.obs_names.astype(str))
    var = part.var.copy()
    var.index = var.index.astype(str)
    return AnnData(X=x.copy(), obs=obs, var=var)


def cell_eval_command(pred: Path, real: Path, outdir: Path, profile: str = "full") -> str:
    """The ``cell-eval run`` command line that scores the written pair."""
    return (
        f"cell-eval run -ap {pred} -ar {real} --control-pert {CONTROL} "
        f"--pert-col {CELL_EVAL_PERT_COL} --profile {profile} -o {outdir}"
    )


def write_cell_eval_pair(pair: CellEvalPair, folder: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``{stem}_pred.h5ad`` and ``{stem}_real.h5ad`` into ``folder``; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / f"{stem}_pred.h5ad", folder / f"{stem}_real.h5ad")
    for path, adata in zip(paths, (pair.pred, pair.real), strict=True):
        atomic_write(path, lambda tmp, a=adata: a.write_h5ad(tmp))
    return paths
