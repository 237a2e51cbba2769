"""One entry point per foundation model, with one signature, for the registry and the assets.

Each runner takes the dataset's :class:`FoundationInputs`, its settings dataclass, a device and
a log function, and returns a :class:`TrainedModel`: the test predictions averaged per
condition, the per-epoch history and the best weights. Where its files come from:

* scGPT: the checkpoint at ``<data root>/checkpoints/scgpt_human/`` (official layout), or the
  simulator's tiny stand-in for ``synthetic``;
* GEARS + scFoundation embeddings: the scFoundation gene-embedding file
  (``<data root>/embeddings/scfoundation.*``), or the simulator's stand-in;
* both GEARS models: GEARS' own ``gene2go_all.pkl`` at ``<data root>/annotations/`` when the
  user put it there, else the ``go_annotations`` matrix (:mod:`.gears_go`).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from anndata import AnnData

from perturb_assets.core.io.atomic import atomic_write
from perturb_assets.core.io.embeddings import EMBEDDINGS_SUBDIR, embedding_file, read_embedding
from perturb_assets.core.io.hashing import sha256_file
from perturb_assets.core.models.foundation.base import TrainedModel

__all__ = [
    "FoundationInputs",
    "MissingModelFiles",
    "run_gears",
    "run_gears_with_embeddings",
    "run_scgpt",
    "save_weights",
    "weights_bytes",
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
    companion_dir
        A simulated dataset's companion folder (its stand-in checkpoint and embeddings), else
        ``None``.
    dataset
        The dataset's name (chooses per-dataset defaults, e.g. GEARS' presets).
    """

    expression: AnnData
    split: pd.DataFrame
    pseudobulk: pd.DataFrame | None = None
    annotations: pd.DataFrame | None = None
    data_root: Path = Path("data")
    companion_dir: Path | None = None
    dataset: str = ""


Log = Callable[[str], None]


def run_scgpt(inputs: FoundationInputs, settings: Any, device: str, log: Log) -> TrainedModel:
    """Fine-tune scGPT from its pre-trained checkpoint (the scGPT perturbation tutorial)."""
    from perturb_assets.core.models.foundation.scgpt_checkpoint import (
        CHECKPOINT_DIR,
        find_checkpoint,
        read_checkpoint,
        stand_in_checkpoint,
    )
    from perturb_assets.core.models.foundation.scgpt_training import fine_tune

    if inputs.companion_dir is not None:  # a simulated dataset: the tiny stand-in
        folder = stand_in_checkpoint(inputs.companion_dir)
    else:
        folder = find_checkpoint(inputs.data_root)
    if folder is None:
        raise MissingModelFiles(
            f"no scGPT checkpoint: put the scGPT_human folder (args.json, best_model.pt, "
            f"vocab.json) at {Path(inputs.data_root) / CHECKPOINT_DIR}"
        )
    checkpoint = read_checkpoint(folder)
    runs = {}
    for seed in settings.run_seeds:
        if len(settings.run_seeds) > 1:
            log(f"scGPT: seed {seed}")
        one = dataclasses.replace(settings, seed=seed, seeds=None)
        runs[seed] = fine_tune(inputs.expression, inputs.split, inputs.pseudobulk, checkpoint,
                               one, device=device, log=log)  # fmt: skip
    first_seed = settings.run_seeds[0]
    result = runs[first_seed]
    report = result.report | {"checkpoint": str(folder), "best_epoch": result.best_epoch,
                              "best_score": result.best_score, "seed": first_seed,
                              "seeds": ",".join(map(str, runs)),
                              "settings": dataclasses.asdict(settings)}  # fmt: skip
    per_seed = {seed: run.predictions for seed, run in runs.items()} if len(runs) > 1 else None
    return TrainedModel(result.predictions, result.history, result.state_dict, result.device,
                        report, seed_predictions=per_seed)  # fmt: skip


def _gene2go(inputs: FoundationInputs, log: Log) -> tuple[Any, dict[str, str]]:
    """GEARS' own ``gene2go_all.pkl`` when the user supplied it, else the annotation matrix."""
    from perturb_assets.core.io.annotations import read_gene2go, user_gene2go_file

    path = user_gene2go_file(inputs.data_root)
    if path is None:
        return inputs.annotations, {"go_source": "go_annotations"}
    log(f"GEARS: GO graph from {path}")
    return read_gene2go(path), {"go_source": str(path)}


def run_gears(inputs: FoundationInputs, settings: Any, device: str, log: Log) -> TrainedModel:
    """Train GEARS through cell-gears, its GO graph built offline (:mod:`.gears_go`)."""
    from perturb_assets.core.models.foundation.gears_model import GearsSettings, train_gears

    gene2go, source = _gene2go(inputs, log)
    result = train_gears(inputs.expression, inputs.split, gene2go, settings or GearsSettings(),
                         device=device, log=log, dataset=inputs.dataset)  # fmt: skip
    result.report |= source
    return result


def run_gears_with_embeddings(
    inputs: FoundationInputs, settings: Any, device: str, log: Log, *, embedding: str
) -> TrainedModel:
    """GEARS whose gene embedding layer is a frozen gene-embedding table: with scFoundation's,
    the approximation of the paper's scFoundation + GEARS (see ``gears_model``)."""
    from perturb_assets.core.models.foundation.gears_model import GearsSettings, train_gears

    path = embedding_file(embedding, inputs.data_root, inputs.companion_dir)
    if path is None:
        folder = Path(inputs.data_root) / EMBEDDINGS_SUBDIR
        raise MissingModelFiles(
            f"no {embedding} gene-embedding file: put it at {folder}/{embedding}.(parquet|csv)"
        )
    table = read_embedding(path, trusted_root=inputs.data_root)
    gene2go, source = _gene2go(inputs, log)
    result = train_gears(inputs.expression, inputs.split, gene2go, settings or GearsSettings(),
                         gene_embeddings=table, device=device, log=log,
                         dataset=inputs.dataset)  # fmt: skip
    result.report |= source | {"embedding_file": str(path)}
    return result


def save_weights(state_dict: dict[str, Any], path: str | Path) -> str:
    """Write a state dict with ``torch.save`` (atomically); return the file's sha256.

    Saved through memory: ``torch.save`` names its archive after the file it writes, which
    would put the temporary file's name (pid, random tag) into the bytes; from a buffer the
    archive is always ``archive/``, so equal weights give an equal file.
    """
    path = Path(path)
    data = weights_bytes(state_dict)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return sha256_file(path)


def weights_bytes(state_dict: dict[str, Any]) -> bytes:
    """``torch.save`` of ``state_dict`` into bytes (the same bytes for the same weights)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()
