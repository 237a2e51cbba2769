"""GEARS (cell-gears 0.1.2) trained on a dataset partition, offline, and its scFoundation variant.

cell-gears downloads three GO files on first use (``gene2go_all.pkl``,
``essential_all_data_pert_genes.pkl``, ``go_essential_all/go_essential_all.csv``) and skips a
download when the file is already where it looks. :func:`write_go_files` builds equivalent
files from the platform's GO annotation matrix, so GEARS never touches the network:

* ``gene2go_all.pkl``: gene symbol -> set of terms. A perturbed gene without any annotation
  gets a term of its own, so GEARS keeps its conditions (cell-gears silently drops conditions
  whose genes are not in its GO gene list) and it has only a self-loop in the GO graph.
* ``essential_all_data_pert_genes.pkl``: the measured genes plus the perturbed genes, the
  gene list cell-gears itself uses with ``default_pert_graph=False``.
* ``go_essential_all.csv``: ``source,target,importance`` with the Jaccard similarity of two
  genes' term sets where it exceeds 0.1 (self-loops included), as cell-gears' ``make_GO``.

The run then follows cell-gears' own pipeline: ``PertData.new_data_process`` (its DE genes
and cell graphs, each perturbed cell paired with a random control cell), our split as a
``custom`` split (identical to GEARS' simulation split, :mod:`perturb_assets.core.gears.split`),
``GEARS.train`` (Adam, StepLR 0.5 per epoch, the epoch with the lowest validation top-20-DE
MSE is kept), and predictions of every test cell averaged per condition.

**GEARS + scFoundation embeddings (an approximation).** The paper's scFoundation numbers come
from a GEARS fork whose gene embedding layer is replaced by the frozen scFoundation model's
per-cell contextual gene embeddings. scFoundation's model code is not packaged, so
:class:`GearsSettings` ``gene_embeddings`` replaces GEARS' learned ``gene_emb`` table by a
frozen table built from scFoundation *gene embeddings* (a file), projected to the hidden size
by PCA: the context-averaged version of the same idea. It is labelled as this approximation
everywhere it appears.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL, target_genes
from perturb_assets.core.gears.split import SPLITS
from perturb_assets.core.models.foundation.base import TrainedModel, resolve_device
from perturb_assets.core.settings import check_settings, setting

__all__ = ["GearsSettings", "project_embeddings", "train_gears", "write_go_files"]

GO_FOLDER = "go_essential_all"
JACCARD_THRESHOLD = 0.1
DATASET_NAME = "dataset"
#: What cell-gears' ``train`` keeps.
SELECTION_METRIC = "val_mse_de"


@dataclass(frozen=True)
class GearsSettings:
    """cell-gears' defaults (``model_initialize``, ``train``, ``get_dataloader``)."""

    epochs: int = setting(20, ge=1, doc="training epochs")
    batch_size: int = setting(32, ge=1, doc="perturbed cells per step")
    lr: float = setting(1e-3, gt=0, doc="Adam learning rate")
    weight_decay: float = setting(5e-4, ge=0, doc="Adam weight decay")
    hidden_size: int = setting(64, ge=1, doc="width of GEARS' embeddings and GNN layers")
    seed: int = setting(1, doc="seed of the weights and the batches")

    def __post_init__(self) -> None:
        check_settings(self)


def write_go_files(
    root: str | Path, annotations: pd.DataFrame, measured: list[str], perturbed: list[str]
) -> dict[str, int]:
    """Write cell-gears' three GO files under ``root`` from a binary gene × term matrix."""
    root = Path(root)
    (root / GO_FOLDER).mkdir(parents=True, exist_ok=True)
    matrix = sp.csr_matrix(annotations.to_numpy(dtype=np.float32) != 0, dtype=np.float32)
    symbols = annotations.index.astype(str).to_numpy()
    terms = annotations.columns.astype(str).to_numpy()
    gene2go = {g: set(terms[matrix[i].indices]) for i, g in enumerate(symbols) if matrix[i].nnz}
    unannotated = [g for g in perturbed if g not in gene2go]
    for gene in unannotated:
        gene2go[gene] = {f"unannotated:{gene}"}
    essential = sorted(set(measured) | set(perturbed))
    pert_names = np.array(sorted(g for g in essential if g in gene2go))
    edges = _jaccard_edges(pert_names, gene2go)
    with open(root / "gene2go_all.pkl", "wb") as handle:
        pickle.dump(gene2go, handle)
    with open(root / "essential_all_data_pert_genes.pkl", "wb") as handle:
        pickle.dump(essential, handle)
    edges.to_csv(root / GO_FOLDER / f"{GO_FOLDER}.csv", index=False)
    return {"n_go_genes": len(pert_names), "n_go_edges": len(edges),
            "n_unannotated_targets": len(unannotated)}  # fmt: skip


def _jaccard_edges(genes: np.ndarray, gene2go: dict[str, set[str]]) -> pd.DataFrame:
    """Gene pairs whose term sets overlap with Jaccard > 0.1, both directions, self-loops."""
    terms = sorted({t for g in genes for t in gene2go[g]})
    column = {t: j for j, t in enumerate(terms)}
    rows = [(i, column[t]) for i, g in enumerate(genes) for t in gene2go[g]]
    r, c = np.array(rows, dtype=np.int64).T if rows else (np.zeros(0, int), np.zeros(0, int))
    b = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(genes), len(terms)))
    shared = (b @ b.T).tocoo()
    sizes = np.asarray(b.sum(axis=1)).ravel()
    jaccard = shared.data / (sizes[shared.row] + sizes[shared.col] - shared.data)
    keep = jaccard > JACCARD_THRESHOLD
    return pd.DataFrame({"source": genes[shared.row[keep]], "target": genes[shared.col[keep]],
                         "importance": jaccard[keep]})  # fmt: skip


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
        elif line.startswith("Train Top 20 DE MSE") and self.rows and len(numbers) >= 2:
            # "Train Top 20 DE MSE: a Validation Top 20 DE MSE: b": the 20s are numbers too.
            self.rows[-1] |= {"train_mse_de": numbers[1], "val_mse_de": numbers[-1]}
            self.log(line)


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@contextlib.contextmanager
def _quiet_gears(print_sys: Callable[[object], None]):
    """Route cell-gears' ``print_sys`` to ``print_sys`` and silence its plain prints."""
    from unittest import mock

    import gears.gears
    import gears.pertdata

    with (
        mock.patch.object(gears.gears, "print_sys", print_sys),
        mock.patch.object(gears.pertdata, "print_sys", print_sys),
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
    annotations: pd.DataFrame,
    settings: GearsSettings = GearsSettings(),
    gene_embeddings: pd.DataFrame | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train GEARS on the training conditions and predict every test condition.

    Parameters
    ----------
    adata
        Log-normalised cells (``obs`` condition and cell_type, ``var['gene_name']``).
    split
        The condition split (``split`` column).
    annotations
        Binary gene × GO-term matrix (the ``go_annotations`` asset).
    settings
        Training settings (cell-gears' defaults).
    gene_embeddings
        A gene-embedding table (gene symbol × dims): GEARS' gene embedding layer becomes this
        table, PCA-projected to ``hidden_size`` and frozen (the scFoundation approximation).
    device
        ``"auto"`` (CUDA when present, else the CPU with a warning), ``"cuda"`` or ``"cpu"``.
    log
        Called with each epoch's line and with warnings.
    """
    log = log or (lambda message: None)
    torch_device, warning = resolve_device(device)
    if warning:
        log(f"WARNING: {warning}")
    _seed(settings.seed)
    with tempfile.TemporaryDirectory(prefix="gears_") as workdir:
        epoch_log = _EpochLog(log)
        with _quiet_gears(epoch_log):
            model, report = _fit(adata, split, annotations, settings, gene_embeddings,
                                 str(torch_device), Path(workdir))  # fmt: skip
            predictions = _predict_test(model, adata.var_names, str(torch_device))
    state = {k: v.detach().cpu().clone() for k, v in model.best_model.state_dict().items()}
    history = pd.DataFrame(epoch_log.rows)
    report |= {"selection_metric": SELECTION_METRIC, "settings": asdict(settings)}
    return TrainedModel(predictions, history, state, str(torch_device), report)


def _fit(
    adata: AnnData,
    split: pd.DataFrame,
    annotations: pd.DataFrame,
    settings: GearsSettings,
    gene_embeddings: pd.DataFrame | None,
    device: str,
    root: Path,
) -> tuple[Any, dict[str, Any]]:
    from perturb_assets.core.models.foundation.compat import gears_classes

    pert_data_class, gears_class = gears_classes()
    conditions = adata.obs["condition"].astype(str).unique()
    report = write_go_files(root, annotations, list(adata.var["gene_name"].astype(str)),
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
    start = time.perf_counter()
    model.train(epochs=settings.epochs, lr=settings.lr, weight_decay=settings.weight_decay)
    return model, report | {"train_seconds": time.perf_counter() - start}


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
