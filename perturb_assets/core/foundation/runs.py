"""One entry point per foundation model, with one signature, for the registry and the assets.

Each runner takes the dataset's :class:`FoundationInputs`, its settings dataclass, a device and
a log function, and returns a :class:`FoundationRun`: the test predictions averaged per
condition, the per-epoch history and the best weights. Where its files come from:

* scGPT: the checkpoint at ``<data root>/checkpoints/scgpt_human/`` (official layout), or the
  simulator's tiny stand-in for ``synthetic``;
* GEARS + scFoundation embeddings: the scFoundation gene-embedding file
  (``<data root>/embeddings/scfoundation.*``), or the simulator's stand-in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from anndata import AnnData

from perturb_assets.core import features
from perturb_assets.core.atomic import atomic_write

__all__ = [
    "FoundationInputs",
    "FoundationRun",
    "MissingModelFiles",
    "run_gears",
    "run_gears_with_embeddings",
    "run_scgpt",
    "save_weights",
]


class MissingModelFiles(FileNotFoundError):
    """A model's files (a checkpoint, an embedding table) are not where the platform looks."""


@dataclass
class FoundationInputs:
    """What a foundation model may read about one dataset.

    Attributes
    ----------
    expression
        Log-normalised cells.
    split
        The condition split.
    pseudobulk
        Condition means (conditions × genes, ``ctrl`` row).
    annotations
        Binary gene × GO-term matrix (GEARS' GO graph), when the model needs it.
    data_root
        The data root (checkpoints and embedding files).
    stand_in_dir
        The simulated dataset's folder (its stand-in checkpoint and embeddings), else ``None``.
    """

    expression: AnnData
    split: pd.DataFrame
    pseudobulk: pd.DataFrame | None = None
    annotations: pd.DataFrame | None = None
    data_root: Path = Path("data")
    stand_in_dir: Path | None = None


@dataclass
class FoundationRun:
    """A trained foundation model: test predictions (conditions × genes) and its training."""

    predictions: pd.DataFrame
    history: pd.DataFrame
    state_dict: dict[str, Any]
    device: str
    report: dict[str, Any] = field(default_factory=dict)


Log = Callable[[str], None]


def run_scgpt(inputs: FoundationInputs, settings: Any, device: str, log: Log) -> FoundationRun:
    """Fine-tune scGPT from its pre-trained checkpoint (the scGPT perturbation tutorial)."""
    from perturb_assets.core.foundation import scgpt_checkpoint as ckpt
    from perturb_assets.core.foundation.scgpt_training import fine_tune

    folder = ckpt.find_checkpoint(inputs.data_root, inputs.stand_in_dir)
    if folder is None:
        raise MissingModelFiles(
            f"no scGPT checkpoint: put the scGPT_human folder (args.json, best_model.pt, "
            f"vocab.json) at {Path(inputs.data_root) / ckpt.CHECKPOINT_DIR}"
        )
    checkpoint = ckpt.read_checkpoint(folder)
    result = fine_tune(inputs.expression, inputs.split, inputs.pseudobulk, checkpoint, settings,
                       device=device, log=log)  # fmt: skip
    report = result.report | {"checkpoint": str(folder), "best_epoch": result.best_epoch,
                              "best_score": result.best_score}  # fmt: skip
    return FoundationRun(result.predictions, result.history, result.state_dict, result.device,
                         report)  # fmt: skip


def run_gears(inputs: FoundationInputs, settings: Any, device: str, log: Log) -> FoundationRun:
    """Train GEARS through cell-gears, with GO files built from the annotation matrix."""
    from perturb_assets.core.foundation.gears_model import train_gears

    result = train_gears(inputs.expression, inputs.split, inputs.annotations, settings,
                         device=device, log=log)  # fmt: skip
    return FoundationRun(result.predictions, result.history, result.state_dict, result.device,
                         result.report)  # fmt: skip


def run_gears_with_embeddings(
    inputs: FoundationInputs, settings: Any, device: str, log: Log, *, embedding: str
) -> FoundationRun:
    """GEARS whose gene embedding layer is a frozen gene-embedding table: with scFoundation's,
    the approximation of the paper's scFoundation + GEARS (see ``gears_model``)."""
    from perturb_assets.core.foundation.gears_model import train_gears

    simulated = inputs.stand_in_dir / features.EMBEDDINGS_SUBDIR if inputs.stand_in_dir else None
    path = features.embedding_file(embedding, inputs.data_root, simulated)
    if path is None:
        folder = Path(inputs.data_root) / features.EMBEDDINGS_SUBDIR
        raise MissingModelFiles(
            f"no {embedding} gene-embedding file: put it at {folder}/{embedding}.(parquet|csv)"
        )
    table = features.read_embedding(path, trusted_root=inputs.data_root)
    result = train_gears(inputs.expression, inputs.split, inputs.annotations, settings,
                         gene_embeddings=table, device=device, log=log)  # fmt: skip
    report = result.report | {"embedding_file": str(path)}
    return FoundationRun(result.predictions, result.history, result.state_dict, result.device,
                         report)  # fmt: skip


def save_weights(state_dict: dict[str, Any], path: str | Path) -> str:
    """Write a state dict with ``torch.save`` (atomically); return the file's sha256."""
    import torch

    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(state_dict, tmp))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
