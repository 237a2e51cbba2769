"""GEARS (cell-gears 0.1.2) trained on a dataset partition, offline, and its scFoundation variant.

The GO graph and cell-gears' three GO files come from :mod:`.gears_go` (GEARS' own
``gene2go_all.pkl`` when the user supplies it, else the ``go_annotations`` matrix), so GEARS
never touches the network. As cell-gears' ``filter_pert_in_go``, a condition with a target
outside the graph is neither trained on nor predicted; the report lists them
(``conditions_without_go``) and ``metrics`` scores GEARS on the conditions it predicts.

The run follows cell-gears' own pipeline: ``PertData.new_data_process`` (its DE genes and cell
graphs, each perturbed cell paired with a random control cell), our split as a ``custom``
split (identical to GEARS' simulation split, :mod:`perturb_assets.core.gears.split`), Adam with
StepLR 0.5 per epoch, and predictions of every test cell averaged per condition. The epoch kept
is chosen by :class:`GearsSettings` ``selection_metric``: ``val_mse_de`` is cell-gears' own
``GEARS.train`` (lowest validation top-20-DE MSE); ``val_pearson_delta`` (the paper's
scFoundation fork) and gradient accumulation run :func:`.gears_training.train_epochs`, the same
epoch loop with that selection (cell-gears' ``train`` cannot select by another metric).

**GEARS + scFoundation embeddings (an approximation).** The paper's scFoundation numbers come
from a GEARS fork whose gene embedding layer is replaced by the frozen scFoundation model's
per-cell contextual gene embeddings. scFoundation's model code is not packaged, so
``gene_embeddings`` replaces GEARS' learned ``gene_emb`` table by a frozen table built from
scFoundation *gene embeddings* (a file), projected to the hidden size by PCA: the
context-averaged version of the same idea. It is labelled as this approximation everywhere.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL, target_genes
from perturb_assets.core.gears.split import SPLITS
from perturb_assets.core.models.foundation.base import TrainedModel, resolve_device
from perturb_assets.core.models.foundation.gears_go import (
    conditions_without_go,
    gene2go_from_annotations,
    write_go_files,
)
from perturb_assets.core.settings import check_settings, setting

__all__ = [
    "GEARS_PRESETS",
    "GearsSettings",
    "gears_preset",
    "project_embeddings",
    "train_gears",
    "write_go_files",
]

DATASET_NAME = "dataset"
GearsPreset = Literal["auto", "cell_gears", "paper_scfoundation", "tiny"]
SelectionMetric = Literal["auto", "val_mse_de", "val_pearson_delta"]

_CELL_GEARS = {
    "epochs": 20, "batch_size": 32, "accumulation_steps": 1, "lr": 1e-3, "weight_decay": 5e-4,
    "hidden_size": 64, "selection_metric": "val_mse_de",
}  # fmt: skip
# scFoundation/GEARS train_*.py of turbine-ai/PerturbSeqPredBenchmark (Norman's values where
# a dataset has no script of its own); weight decay is its train()'s default, as cell-gears'.
_PAPER = _CELL_GEARS | {"epochs": 10, "lr": 0.01, "hidden_size": 512,
                        "selection_metric": "val_pearson_delta"}  # fmt: skip
_REPLOGLE = {"batch_size": 16, "accumulation_steps": 2}
#: The paper's scFoundation + GEARS settings per paper dataset.
PAPER_SCFOUNDATION = {
    "adamson": _PAPER | {"lr": 5e-4},
    "norman": _PAPER,
    "replogle_k562_essential": _PAPER | _REPLOGLE,
    "replogle_rpe1_essential": _PAPER | _REPLOGLE,
}
#: A simulated preset follows the dataset it imitates.
_LIKE = {
    "adamson_like": "adamson", "norman_like": "norman",
    "k562_like": "replogle_k562_essential", "rpe1_like": "replogle_rpe1_essential",
}  # fmt: skip
#: ``synthetic`` (the CPU test dataset): small and fast; keeps the variant's selection.
_TINY = {"epochs": 2, "batch_size": 32, "accumulation_steps": 1, "lr": 1e-3,
         "weight_decay": 5e-4, "hidden_size": 16, "max_cells_per_condition": 20}  # fmt: skip
TINY_DATASETS = ("synthetic",)
GEARS_PRESETS = ("cell_gears", "paper_scfoundation", "tiny")


@dataclass(frozen=True)
class GearsSettings:
    """GEARS training; a field left ``None`` (``auto``) takes its value from the preset.

    ``preset="auto"``: plain GEARS gets cell-gears' defaults (``model_initialize``, ``train``,
    ``get_dataloader``), GEARS + scFoundation the paper's settings for the dataset
    (:func:`gears_preset`), and ``synthetic`` tiny ones.
    """

    preset: GearsPreset = setting("auto", doc="auto, cell_gears, paper_scfoundation or tiny")
    epochs: int | None = setting(None, ge=1, doc="training epochs")
    batch_size: int | None = setting(None, ge=1, doc="perturbed cells per step")
    accumulation_steps: int | None = setting(
        None, ge=1, doc="batches per optimiser step (gradients summed, as the paper's fork)"
    )
    lr: float | None = setting(None, gt=0, doc="Adam learning rate")
    weight_decay: float | None = setting(None, ge=0, doc="Adam weight decay")
    hidden_size: int | None = setting(None, ge=1, doc="width of GEARS' embeddings and GNN layers")
    selection_metric: SelectionMetric = setting(
        "auto", doc="the kept epoch: lowest val top-20-DE MSE or highest val Pearson Delta"
    )
    seed: int = setting(1, doc="seed of the weights and the batches")
    max_cells_per_condition: int | None = setting(
        None,
        ge=1,
        doc="use at most this many cells per perturbation (10x as many control cells), a "
        "random subset, before cell-gears builds one graph per cell (None: all, as cell-gears)",
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def resolved(self, dataset: str = "", scfoundation: bool = False) -> GearsSettings:
        """Every ``None``/``auto`` field filled from the preset; also records which one."""
        preset, values = gears_preset(dataset, scfoundation, self.preset)
        chosen = {k: v for k, v in asdict(self).items() if v is not None and v != "auto"}
        return replace(GearsSettings(**(values | chosen)), preset=preset)


def gears_preset(
    dataset: str, scfoundation: bool, preset: str = "auto"
) -> tuple[str, dict[str, Any]]:
    """The preset's name and values for ``dataset`` (see :class:`GearsSettings`)."""
    if preset == "auto":
        if dataset in TINY_DATASETS:
            preset = "tiny"
        else:
            preset = "paper_scfoundation" if scfoundation else "cell_gears"
    if preset == "cell_gears":
        return preset, dict(_CELL_GEARS)
    if preset == "tiny":
        metric = "val_pearson_delta" if scfoundation else "val_mse_de"
        return preset, _TINY | {"selection_metric": metric}
    return preset, dict(PAPER_SCFOUNDATION.get(_LIKE.get(dataset, dataset), _PAPER))


def project_embeddings(table: pd.DataFrame, genes: list[str], width: int) -> tuple[np.ndarray, int]:
    """Rows of ``table`` for ``genes`` (zeros where absent), reduced to ``width`` columns by
    PCA (zero-padded when the table is narrower); also how many genes were found."""
    from sklearn.decomposition import PCA

    values = table.to_numpy(np.float64)
    k = min(width, values.shape[1], values.shape[0])
    reduced = PCA(n_components=k, random_state=0).fit_transform(values)
    reduced = np.pad(reduced, ((0, 0), (0, width - k)))
    row = {g: i for i, g in enumerate(table.index.astype(str))}
    out = np.zeros((len(genes), width), dtype=np.float32)
    found = [(j, row[g]) for j, g in enumerate(genes) if g in row]
    if found:
        out[[j for j, _ in found]] = reduced[[i for _, i in found]]
    return out, len(found)


def _gears_adata(adata: AnnData) -> AnnData:
    """What ``PertData.new_data_process`` needs: CSR ``X``, condition, cell_type, gene_name."""
    obs = adata.obs[["condition", "cell_type"]].astype(str).copy()
    var = pd.DataFrame({"gene_name": adata.var["gene_name"].astype(str).to_numpy()},
                       index=adata.var_names.astype(str))  # fmt: skip
    return AnnData(X=sp.csr_matrix(adata.X, dtype=np.float32), obs=obs, var=var)


class _EpochLog:
    """cell-gears reports progress through ``print_sys`` (to stderr): take its lines instead,
    forward the epoch lines to ``log`` and keep their numbers."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.rows = log, []

    def __call__(self, text: object) -> None:
        for line in str(text).splitlines():
            self._read(line.strip())

    def _read(self, line: str) -> None:
        numbers = [float(v) for v in _NUMBER.findall(line)]
        if line.startswith("Epoch") and "Validation Overall MSE" in line and len(numbers) >= 3:
            self.rows.append(
                {"epoch": int(numbers[0]), "train_mse": numbers[1], "val_mse": numbers[2]}
            )
            self.log(line)
        elif line.startswith(PROGRESS_PREFIX):
            self.log(line)
        elif line.startswith("Train Top 20 DE MSE") and self.rows and len(numbers) >= 2:
            # "Train Top 20 DE MSE: a Validation Top 20 DE MSE: b": the 20s are numbers too.
            self.rows[-1] |= {"train_mse_de": numbers[1], "val_mse_de": numbers[-1]}
            self.log(line)


#: How a cell-gears progress bar reaches the log (one line instead of a tqdm bar).
PROGRESS_PREFIX = "cell-gears: processing"
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@contextlib.contextmanager
def _quiet_gears(print_sys: Callable[[object], None]):
    """Route cell-gears' ``print_sys`` to ``print_sys``, silence its plain prints, and turn its
    tqdm bars (one per condition while it builds the cell graphs) into one log line each."""
    from unittest import mock

    from tqdm import tqdm

    from perturb_assets.core.models.foundation.compat import gears_modules

    gears_gears, gears_pertdata, gears_utils = gears_modules()

    def progress(iterable=None, *args, **kwargs):
        if iterable is None:  # a download bar, updated by hand: keep it, hidden
            return tqdm(*args, disable=True, **kwargs)
        items = list(iterable)
        print_sys(f"{PROGRESS_PREFIX} {len(items)} items")
        return items

    with (
        mock.patch.object(gears_gears, "print_sys", print_sys),
        mock.patch.object(gears_pertdata, "print_sys", print_sys),
        mock.patch.object(gears_utils, "print_sys", print_sys),
        mock.patch.object(gears_pertdata, "tqdm", progress),
        mock.patch.object(gears_utils, "tqdm", progress),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        yield


def _seed(seed: int) -> None:
    import torch

    np.random.seed(seed)  # noqa: NPY002 - cell-gears pairs cells with np.random
    torch.manual_seed(seed)


def train_gears(
    adata: AnnData,
    split: pd.DataFrame,
    gene2go: dict[str, set[str]] | pd.DataFrame,
    settings: GearsSettings = GearsSettings(),
    gene_embeddings: pd.DataFrame | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    dataset: str = "",
) -> TrainedModel:
    """Train GEARS on the training conditions and predict the test conditions it can.

    Parameters
    ----------
    adata
        Log-normalised cells (``obs`` condition and cell_type, ``var['gene_name']``).
    split
        The condition split (``split`` column).
    gene2go
        Gene symbol -> GO terms (GEARS' ``gene2go_all.pkl``), or a binary gene × GO-term
        matrix (the ``go_annotations`` asset) it is derived from.
    settings
        Training settings; ``None`` fields come from the preset for ``dataset``.
    gene_embeddings
        A gene-embedding table (gene symbol × dims): GEARS' gene embedding layer becomes this
        table, PCA-projected to ``hidden_size`` and frozen (the scFoundation approximation).
    device
        ``"auto"`` (CUDA when present, else the CPU with a warning), ``"cuda"`` or ``"cpu"``.
    log
        Called with each epoch's line and with warnings.
    dataset
        The dataset's name: chooses the preset (:func:`gears_preset`).
    """
    log = log or (lambda message: None)
    settings = settings.resolved(dataset, scfoundation=gene_embeddings is not None)
    if isinstance(gene2go, pd.DataFrame):
        gene2go = gene2go_from_annotations(gene2go)
    torch_device, warning = resolve_device(device)
    if warning:
        log(f"WARNING: {warning}")
    adata, split, dropped = _drop_conditions_without_go(adata, split, gene2go, log)
    if settings.max_cells_per_condition is not None:
        adata = _subsample_cells(adata, settings.max_cells_per_condition, settings.seed)
    _seed(settings.seed)
    with tempfile.TemporaryDirectory(prefix="gears_") as workdir:
        epoch_log = _EpochLog(log)
        with _quiet_gears(epoch_log):
            model, report = _fit(adata, split, gene2go, settings, gene_embeddings,
                                 str(torch_device), Path(workdir))  # fmt: skip
            fit = _train(model, settings, adata, log)
            predictions = _predict_test(model, adata.var_names, str(torch_device))
    state = {k: v.detach().cpu().clone() for k, v in model.best_model.state_dict().items()}
    history = fit.history if fit.history is not None else pd.DataFrame(epoch_log.rows)
    best_epoch, best_score = fit.best or _best_of(history, settings.selection_metric)
    report |= dropped | {"selection_metric": settings.selection_metric, "preset": settings.preset,
                         "best_epoch": best_epoch, "best_score": best_score,
                         "train_seconds": fit.seconds, "settings": asdict(settings)}  # fmt: skip
    return TrainedModel(predictions, history, state, str(torch_device), report,
                        best_epoch=best_epoch, best_score=best_score)  # fmt: skip


def _drop_conditions_without_go(
    adata: AnnData, split: pd.DataFrame, gene2go: dict[str, set[str]], log: Callable[[str], None]
) -> tuple[AnnData, pd.DataFrame, dict[str, Any]]:
    """cell-gears' ``filter_pert_in_go`` before ``new_data_process`` (whose cell graphs need
    every target in the graph): those conditions' cells and split rows go."""
    essential = set(adata.var["gene_name"].astype(str)) | set(
        target_genes(adata.obs["condition"].astype(str).unique())
    )
    graph = [g for g in essential if g in gene2go]
    missing = conditions_without_go(adata.obs["condition"].astype(str).unique(), graph)
    test = set(split.index[split["split"] == "test"])
    missing_test = [c for c in missing if c in test]
    if missing:
        log(f"GEARS: {len(missing)} condition(s) have a target outside the GO graph and are "
            f"neither trained on nor predicted ({len(missing_test)} test): "
            f"{', '.join(missing[:20])}")  # fmt: skip
    keep = ~adata.obs["condition"].astype(str).isin(missing).to_numpy()
    report = {"n_conditions_without_go": len(missing),
              "n_test_conditions_without_go": len(missing_test),
              "conditions_without_go": ", ".join(missing) or "none"}  # fmt: skip
    return adata[keep].copy(), split.drop(index=missing, errors="ignore"), report


def _subsample_cells(adata: AnnData, per_condition: int, seed: int) -> AnnData:
    """At most ``per_condition`` random cells of each perturbation and ten times as many
    control cells (the inputs every perturbed cell is paired with), in their original order."""
    rng = np.random.default_rng(seed)
    conditions = adata.obs["condition"].astype(str).to_numpy()
    keep = []
    for condition in pd.unique(conditions):
        rows = np.flatnonzero(conditions == condition)
        cap = per_condition * (10 if condition == CONTROL else 1)
        keep.append(rng.choice(rows, cap, replace=False) if rows.size > cap else rows)
    return adata[np.sort(np.concatenate(keep))].copy()


def _fit(
    adata: AnnData,
    split: pd.DataFrame,
    gene2go: dict[str, set[str]],
    settings: GearsSettings,
    gene_embeddings: pd.DataFrame | None,
    device: str,
    root: Path,
) -> tuple[Any, dict[str, Any]]:
    """cell-gears' data processing, split, data loaders and model, ready to train."""
    from perturb_assets.core.models.foundation.compat import gears_classes

    pert_data_class, gears_class = gears_classes()
    conditions = adata.obs["condition"].astype(str).unique()
    report = write_go_files(root, gene2go, list(adata.var["gene_name"].astype(str)),
                            target_genes(conditions))  # fmt: skip
    pert_data = pert_data_class(str(root))
    pert_data.new_data_process(dataset_name=DATASET_NAME, adata=_gears_adata(adata))
    pert_data.load(data_path=str(root / DATASET_NAME))
    split_file = root / "custom_split.pkl"
    labels = split["split"].astype(str)
    with open(split_file, "wb") as handle:
        pickle.dump({s: [str(c) for c in labels.index[labels == s]] for s in SPLITS}, handle)
    pert_data.prepare_split(split="custom", split_dict_path=str(split_file))
    pert_data.get_dataloader(batch_size=settings.batch_size)
    model = gears_class(pert_data, device=device)
    model.model_initialize(hidden_size=settings.hidden_size)
    if gene_embeddings is not None:
        report |= _freeze_gene_embeddings(model, gene_embeddings, settings.hidden_size)
    return model, report


def _train(model: Any, settings: GearsSettings, adata: AnnData, log: Callable[[str], None]):
    """cell-gears' own ``train`` where it does what the settings ask, else our epoch loop."""
    from perturb_assets.core.models.foundation.gears_training import EpochLoopResult, train_epochs

    start = time.perf_counter()
    if settings.selection_metric == "val_mse_de" and settings.accumulation_steps == 1:
        model.train(epochs=settings.epochs, lr=settings.lr, weight_decay=settings.weight_decay)
        return EpochLoopResult(None, None, time.perf_counter() - start)
    result = train_epochs(model, settings, log)
    return replace(result, seconds=time.perf_counter() - start)


def _best_of(history: pd.DataFrame, metric: str) -> tuple[int | None, float | None]:
    """The epoch cell-gears kept: the first with the lowest validation top-20-DE MSE."""
    if history.empty or metric not in history:
        return None, None
    row = history.loc[history[metric].idxmin()]
    return int(row["epoch"]), float(row[metric])


def _freeze_gene_embeddings(model: Any, table: pd.DataFrame, width: int) -> dict[str, int]:
    import torch

    weights, found = project_embeddings(table, list(model.gene_list), width)
    frozen = torch.nn.Embedding.from_pretrained(torch.from_numpy(weights), freeze=True)
    model.model.gene_emb = frozen.to(model.device)
    return {"genes_with_embedding": found, "n_genes": len(model.gene_list)}


def _predict_test(model: Any, var_names: pd.Index, device: str) -> pd.DataFrame:
    """Every test cell's prediction (its paired control cell as input), averaged per condition."""
    from gears.inference import evaluate

    result = evaluate(model.dataloader["test_loader"], model.best_model, False, device)
    frame = pd.DataFrame(np.asarray(result["pred"]), columns=var_names)
    frame["condition"] = np.asarray(result["pert_cat"]).astype(str)
    means = frame.groupby("condition", sort=True).mean()
    return means.drop(index=CONTROL, errors="ignore")
