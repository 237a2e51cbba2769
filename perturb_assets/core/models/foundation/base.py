"""What every foundation model shares: the result of a training run, and the device it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["TrainedModel", "resolve_device"]


@dataclass
class TrainedModel:
    """A trained foundation model: its test predictions, how it trained, and its best weights.

    Attributes
    ----------
    predictions
        Test conditions × genes, each the mean of the model's per-cell predictions.
    history
        One row per epoch (losses and validation scores).
    state_dict
        The weights of the selected epoch.
    device
        Where it trained (``"cuda"``, ``"cpu"``).
    report
        Facts about the run for the asset's metadata: the settings, the selection metric,
        matched genes, files read, ...
    best_epoch, best_score
        The selected epoch and its validation score, where the model selects one itself.
    seed_predictions
        With several seeds: each seed's test predictions (``predictions``, ``history`` and
        ``state_dict`` are the first seed's); ``None`` for a single run.
    """

    predictions: pd.DataFrame
    history: pd.DataFrame
    state_dict: dict[str, Any]
    device: str
    report: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float | None = None
    seed_predictions: dict[int, pd.DataFrame] | None = None


def resolve_device(requested: str = "auto") -> tuple[Any, str | None]:
    """The torch device to use, and a warning when a GPU was wanted but none is present."""
    import torch

    if requested == "cpu":
        return torch.device("cpu"), None
    if torch.cuda.is_available():
        return torch.device("cuda"), None
    return torch.device("cpu"), "no CUDA device: training on the CPU (slow at real scale)"
