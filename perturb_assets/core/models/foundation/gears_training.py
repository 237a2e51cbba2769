"""GEARS' epoch loop with the paper's selection: the epoch of highest validation Pearson Delta.

cell-gears' ``GEARS.train`` always keeps the epoch of lowest validation top-20-DE MSE and
steps the optimiser after every batch. The paper's scFoundation fork (turbine-ai/
PerturbSeqPredBenchmark, ``scFoundation/GEARS/gears/gears.py``) keeps the epoch of highest
validation Pearson Delta (scGPT's ``compute_perturbation_metrics``: per condition, the Pearson
correlation of mean predicted and mean observed change from the mean control cell, averaged)
and accumulates gradients over ``accumulation_steps`` batches (summed, not averaged; each
batch's gradient clipped at 1.0 as it is added). :func:`train_epochs` is cell-gears' loop
(same model, loss ``loss_fct``, Adam, StepLR 0.5 per epoch, value clipping) with those two
changes, driven from outside ``GEARS.train`` since that method cannot select another way.
It does not evaluate the training set each epoch (cell-gears does, for its log only).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perturb_assets.core.metrics import rowwise_pearson

__all__ = ["EpochLoopResult", "pearson_delta", "train_epochs"]


@dataclass
class EpochLoopResult:
    """The per-epoch validation scores, the kept epoch and its score, the training time."""

    history: pd.DataFrame | None
    best: tuple[int, float] | None
    seconds: float = 0.0


def pearson_delta(result: dict[str, Any], ctrl_mean: np.ndarray) -> float:
    """Mean over conditions of Pearson(mean prediction − control, mean truth − control).

    The per-condition rule is the metrics' own
    (:func:`~perturb_assets.core.metrics.rowwise_pearson`, NaN where ``pearsonr`` is
    undefined); like the fork's ``np.mean``, one undefined condition makes the mean NaN, and
    such an epoch is never kept.
    """
    conditions = pd.Index(np.asarray(result["pert_cat"]).astype(str))
    if conditions.empty:
        return float("nan")
    pred = pd.DataFrame(np.asarray(result["pred"], np.float64)).groupby(conditions).mean()
    truth = pd.DataFrame(np.asarray(result["truth"], np.float64)).groupby(conditions).mean()
    scores = rowwise_pearson(pred.to_numpy() - ctrl_mean, truth.to_numpy() - ctrl_mean)
    return float(np.mean(scores))


def _improves(score: float, best: tuple[int, float] | None, maximise: bool) -> bool:
    if not np.isfinite(score):
        return False
    return best is None or (score > best[1] if maximise else score < best[1])


def train_epochs(model: Any, settings: Any, log: Callable[[str], None]) -> EpochLoopResult:
    """Train ``model`` (a ``gears.GEARS`` after ``model_initialize``) and set its
    ``best_model`` to the epoch of best ``settings.selection_metric``."""
    from gears.gears import loss_fct
    from gears.inference import compute_metrics, evaluate
    from torch import nn, optim
    from torch.optim.lr_scheduler import StepLR

    net = model.model.to(model.device)
    optimizer = optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.5)
    loader, val_loader = model.dataloader["train_loader"], model.dataloader["val_loader"]
    ctrl_mean = model.ctrl_expression.detach().cpu().numpy().astype(np.float64)
    metric, maximise = settings.selection_metric, settings.selection_metric == "val_pearson_delta"
    rows, best, best_model = [], None, deepcopy(net)
    for epoch in range(1, settings.epochs + 1):
        net.train()
        optimizer.zero_grad()
        for step, batch in enumerate(loader):
            batch.to(model.device)
            loss = loss_fct(net(batch), batch.y, batch.pert, ctrl=model.ctrl_expression,
                            dict_filter=model.dict_filter,
                            direction_lambda=model.config["direction_lambda"])  # fmt: skip
            loss.backward()
            nn.utils.clip_grad_value_(net.parameters(), clip_value=1.0)
            if (step + 1) % settings.accumulation_steps == 0 or step + 1 == len(loader):
                optimizer.step()
                optimizer.zero_grad()
        scheduler.step()
        result = evaluate(val_loader, net, False, model.device)
        scores, _ = compute_metrics(result)
        row = {"epoch": epoch, "val_mse": scores["mse"], "val_mse_de": scores["mse_de"],
               "val_pearson_delta": pearson_delta(result, ctrl_mean)}  # fmt: skip
        rows.append(row)
        log(f"Epoch {epoch}: Validation Overall MSE: {row['val_mse']:.4f} Top 20 DE MSE: "
            f"{row['val_mse_de']:.4f} Pearson Delta: {row['val_pearson_delta']:.4f}")  # fmt: skip
        if _improves(row[metric], best, maximise):
            best, best_model = (epoch, float(row[metric])), deepcopy(net)
    if best is None:  # no finite score: keep the last epoch rather than the untrained one
        log(f"WARNING: no finite {metric} in any epoch; the last epoch is kept")
        best, best_model = (settings.epochs, float("nan")), deepcopy(net)
    model.best_model = best_model
    return EpochLoopResult(pd.DataFrame(rows), best)
