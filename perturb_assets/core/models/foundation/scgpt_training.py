"""Fine-tuning scGPT for perturbation prediction, as the scGPT perturbation tutorial does.

The tutorial's settings (the paper ran it unchanged, :class:`FineTuneSettings`): a
``TransformerGenerator`` whose gene encoder, value encoder and transformer come from the
pre-trained checkpoint; Adam (lr 1e-4) with a per-epoch StepLR (gamma 0.9); batches of 64
(control cell, perturbed cell) pairs (:mod:`~perturb_assets.core.models.foundation.cell_pairs`);
each batch sees the same 1,536 randomly sampled genes; the loss is the MSE of the predicted
absolute expression on them; gradients are clipped at norm 1.0; AMP on the GPU; 15 epochs,
early stop after 10 without improvement; the epoch with the best validation ``pearson``
(mean over validation conditions of the Pearson correlation of the mean predicted and the
true profile over all genes: the tutorial's criterion) is kept. Predictions cover all genes
and are averaged per condition.

Two training steps do the same arithmetic (:data:`TRAINING_LOOPS`):

``reference``
    The tutorial's loop: an all-``False`` padding mask, float16 autocast with a
    ``GradScaler``, ``torch.optim.Adam``.
``fast``
    No padding mask (every sampled gene is real, so the mask is a no-op that only blocks
    PyTorch's fused attention path), bfloat16 autocast (no loss scaling needed), fused Adam,
    batches built and pinned by a background thread while the GPU works, and optionally
    ``torch.compile``. Measured against the reference in ``perturb_assets.benchmarks.foundation``.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.metrics.perturbation import perturbation_metrics
from perturb_assets.core.models.foundation.base import TrainedModel, resolve_device
from perturb_assets.core.models.foundation.cell_pairs import Batch, CellPairs, pair_cells
from perturb_assets.core.models.foundation.scgpt_checkpoint import (
    ScGPTCheckpoint,
    build_model,
    gene_vocab_ids,
    load_pretrained,
)
from perturb_assets.core.settings import check_settings, setting

__all__ = ["TRAINING_LOOPS", "FineTuneSettings", "Trainer", "fine_tune"]

TrainingLoop = Literal["fast", "reference"]
TRAINING_LOOPS: tuple[str, ...] = ("fast", "reference")
#: The tutorial's model-selection metric.
SELECTION_METRIC = "pearson"


@dataclass(frozen=True)
class FineTuneSettings:
    """The scGPT perturbation tutorial's settings (defaults) and the run's knobs."""

    epochs: int = setting(15, ge=1, doc="training epochs")
    batch_size: int = setting(64, ge=1, doc="cell pairs per training step")
    eval_batch_size: int = setting(64, ge=1, doc="cell pairs per prediction step")
    lr: float = setting(1e-4, gt=0, doc="Adam learning rate")
    lr_gamma: float = setting(0.9, gt=0, le=1, doc="StepLR decay per epoch")
    early_stop: int = setting(10, ge=1, doc="epochs without improvement before stopping")
    max_seq_len: int = setting(1536, ge=1, doc="genes per cell fed to the transformer")
    grad_clip: float = setting(1.0, gt=0, doc="gradient-norm clip")
    amp: bool = setting(True, doc="mixed precision on CUDA")
    seed: int = setting(42, doc="seed of the pairs, the gene sampling and the weights")
    seeds: list[int] | None = setting(
        None,
        doc="fine-tune once per seed (replaces `seed`); the metrics average the model over "
        "them and report the seed-to-seed spread (None: the one run of `seed`)",
    )
    loop: TrainingLoop = setting(
        "reference",
        doc="training loop: 'reference' (the tutorial's: padding mask, float16 autocast with a "
        "GradScaler on CUDA, float32 on the CPU) or 'fast' (opt-in: no mask, bfloat16, fused "
        "Adam; bfloat16 moves predictions more than float16 does, see the docs)",
    )
    compile: bool = setting(False, doc="torch.compile the model (fast loop only)")
    max_steps_per_epoch: int | None = setting(
        None, ge=1, doc="stop each epoch after this many steps (None: the whole training set)"
    )
    max_eval_cells: int | None = setting(
        None, ge=1, doc="cells per condition for validation and test predictions (None: all)"
    )

    def __post_init__(self) -> None:
        check_settings(self)
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"seeds must be distinct integers, got {self.seeds!r}")

    @property
    def run_seeds(self) -> list[int]:
        """The seeds of the fine-tuning runs: ``seeds``, or ``[seed]``."""
        return list(self.seeds) if self.seeds is not None else [self.seed]


def _seed_everything(seed: int) -> None:
    import random

    import torch

    # The tutorial's set_seed; numpy's global state is seeded for libraries that draw from it.
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


class Trainer:
    """One model, its optimiser and the train / predict steps of a training loop."""

    def __init__(self, model: Any, gene_ids: np.ndarray, settings: FineTuneSettings, device):
        import torch

        self.torch = torch
        self.settings, self.device = settings, device
        self.cuda = device.type == "cuda"
        self.model = model.to(device)
        self.gene_ids = torch.as_tensor(gene_ids, dtype=torch.long)
        fast = settings.loop == "fast"
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, fused=fast and self.cuda
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 1, gamma=settings.lr_gamma)
        amp = settings.amp and self.cuda
        self.amp_dtype = torch.bfloat16 if fast else torch.float16
        self.autocast = lambda: torch.autocast(device.type, dtype=self.amp_dtype, enabled=amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and not fast)
        self.forward = model
        if fast and settings.compile:
            self.forward = torch.compile(model)
        self.generator = torch.Generator().manual_seed(settings.seed)

    def _host_inputs(self, batch: Batch, genes: Any) -> tuple[Any, ...]:
        """CPU tensors of one batch on the sampled genes (pinned for the fast loop on a GPU)."""
        t = self.torch
        pin = self.cuda and self.settings.loop == "fast"
        idx = genes.numpy()
        arrays = (self.gene_ids[genes].repeat(len(batch.values), 1).numpy(),
                  batch.values[:, idx], batch.flags[:, idx], batch.targets[:, idx])  # fmt: skip
        tensors = (t.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        return tuple(x.pin_memory() if pin else x for x in tensors)

    def _to_device(self, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        non_blocking = self.cuda and self.settings.loop == "fast"
        return tuple(x.to(self.device, non_blocking=non_blocking) for x in inputs)

    def _sample_genes(self, n_genes: int) -> Any:
        t = self.torch
        if n_genes <= self.settings.max_seq_len:
            return t.arange(n_genes)
        return t.randperm(n_genes, generator=self.generator)[: self.settings.max_seq_len]

    def _output(self, src: Any, values: Any, flags: Any) -> Any:
        """``mlm_output`` of one batch: with the tutorial's all-``False`` padding mask in the
        reference loop, without a mask (PyTorch's fused attention path) in the fast loop."""
        mask = None
        if self.settings.loop == "reference":
            mask = self.torch.zeros_like(values, dtype=self.torch.bool)
        return self.forward(src, values, flags, src_key_padding_mask=mask)["mlm_output"]

    def train_step(self, inputs: tuple[Any, ...]) -> float:
        src, values, flags, targets = inputs
        t, s = self.torch, self.settings
        if s.loop == "reference":
            with self.autocast():
                out = self._output(src, values, flags)
                loss = t.nn.functional.mse_loss(out, targets)  # masked MSE, every position real
            self.model.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            t.nn.utils.clip_grad_norm_(
                self.model.parameters(),
                s.grad_clip,
                error_if_nonfinite=not self.scaler.is_enabled(),
            )
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            with self.autocast():
                out = self._output(src, values, flags)
                loss = t.nn.functional.mse_loss(out.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
            self.optimizer.step()
        return float(loss.detach())

    def prepared_batches(
        self, pairs: CellPairs, positions: list[np.ndarray], sample: bool
    ) -> Iterator:
        """Inputs of each batch; the fast loop builds the next one in a background thread."""

        def make(p: np.ndarray) -> tuple[Any, ...]:
            genes = (
                self._sample_genes(pairs.n_genes) if sample else self.torch.arange(pairs.n_genes)
            )
            return self._host_inputs(pairs.batch(p), genes)

        if self.settings.loop != "fast":
            yield from (self._to_device(make(p)) for p in positions)
            return
        ready: queue.Queue = queue.Queue(maxsize=2)

        def produce() -> None:
            for p in positions:
                ready.put(make(p))
            ready.put(None)

        threading.Thread(target=produce, daemon=True).start()
        while (item := ready.get()) is not None:
            yield self._to_device(item)

    def train_epoch(self, pairs: CellPairs, rng: np.random.Generator) -> tuple[float, int]:
        self.model.train()
        positions = pairs.batches(self.settings.batch_size, rng, drop_last=True)
        positions = positions[: self.settings.max_steps_per_epoch]
        losses = [
            self.train_step(inputs) for inputs in self.prepared_batches(pairs, positions, True)
        ]
        return (float(np.mean(losses)) if losses else float("nan")), len(losses)

    def predict(self, pairs: CellPairs, gene_index: pd.Index) -> pd.DataFrame:
        """Mean predicted profile (all genes) of every condition of ``pairs``."""
        return self.evaluate(pairs, gene_index)[0]

    def evaluate(self, pairs: CellPairs, gene_index: pd.Index) -> tuple[pd.DataFrame, float]:
        """Mean predicted profile (all genes) of every condition of ``pairs``, and the loss
        (per-cell MSE against the paired target cells, all genes) on them."""
        t = self.torch
        self.model.eval()
        sums = np.zeros((len(pairs.conditions), pairs.n_genes))
        squared_error, n_values = 0.0, 0
        positions = pairs.batches(self.settings.eval_batch_size)
        with t.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nested tensors.*")
            for p, (src, values, flags, targets) in zip(
                positions, self.prepared_batches(pairs, positions, False), strict=True
            ):
                with self.autocast():
                    out = self._output(src, values, flags).float()
                squared_error += float(((out - targets) ** 2).sum())
                n_values += targets.numel()
                np.add.at(sums, pairs.condition_codes[p], out.cpu().numpy())
        counts = np.bincount(pairs.condition_codes, minlength=len(pairs.conditions))
        means = sums / np.maximum(counts, 1)[:, None]
        frame = pd.DataFrame(means, index=pd.Index(pairs.conditions, name="condition"),
                             columns=gene_index)  # fmt: skip
        return frame, squared_error / max(n_values, 1)


def _validation_score(pred: pd.DataFrame, truth: pd.DataFrame, ctrl: pd.Series) -> float:
    scores = perturbation_metrics(pred, truth.loc[pred.index], ctrl)[SELECTION_METRIC]
    return float(np.nanmean(scores)) if len(scores) else float("nan")


def _split_conditions(split: pd.DataFrame) -> dict[str, list[str]]:
    labels = split["split"].astype(str)
    by = {s: [str(c) for c in labels.index[labels == s]] for s in ("train", "val", "test")}
    by["val"] = [c for c in by["val"] if c != CONTROL]
    by["test"] = [c for c in by["test"] if c != CONTROL]
    return by


def fine_tune(
    adata: AnnData,
    split: pd.DataFrame,
    pseudobulk: pd.DataFrame,
    checkpoint: ScGPTCheckpoint,
    settings: FineTuneSettings = FineTuneSettings(),
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Fine-tune scGPT on the training conditions and predict every test condition.

    Parameters
    ----------
    adata
        Log-normalised cells (``obs['condition']``, ``var['gene_name']``).
    split
        The condition split (``split`` column); ``ctrl`` pairs with itself in training.
    pseudobulk
        Condition means (conditions × ``adata.var_names``, ``ctrl`` row): the validation truth.
    checkpoint
        The pre-trained checkpoint (:func:`~.scgpt_checkpoint.read_checkpoint`).
    settings
        Training settings (defaults: the tutorial's).
    device
        ``"auto"`` (CUDA when present, else CPU with a warning), ``"cuda"`` or ``"cpu"``.
    log
        Called with one line per epoch and with warnings.

    Returns
    -------
    TrainedModel
        Test predictions (test conditions × genes), the per-epoch history, the best epoch.
    """
    log = log or (lambda message: None)
    torch_device, warning = resolve_device(device)
    if warning:
        log(f"WARNING: {warning}")
    _seed_everything(settings.seed)
    model = build_model(checkpoint)
    loaded = load_pretrained(model, checkpoint)
    gene_ids, n_matched = gene_vocab_ids(adata.var["gene_name"], checkpoint.vocab)
    log(f"matched {n_matched}/{adata.n_vars} genes in the vocabulary of {len(checkpoint.vocab)}")
    conditions = _split_conditions(split)
    train = pair_cells(adata, conditions["train"], seed=settings.seed)
    val = pair_cells(adata, conditions["val"], settings.seed + 1, settings.max_eval_cells)
    trainer = Trainer(model, gene_ids, settings, torch_device)
    history, best = _train(trainer, train, val, pseudobulk, adata.var_names, log)
    model.load_state_dict(best["state"])
    test = pair_cells(adata, conditions["test"], settings.seed + 2, settings.max_eval_cells)
    predictions = trainer.predict(test, adata.var_names)
    report = {"genes_matched": n_matched, "n_genes": adata.n_vars, **loaded,
              "selection_metric": SELECTION_METRIC, "n_train_pairs": len(train),
              "settings": asdict(settings)}  # fmt: skip
    return TrainedModel(predictions, history, best["state"], str(torch_device), report,
                        best_epoch=best["epoch"], best_score=best["score"])  # fmt: skip


def _train(
    trainer: Trainer,
    train: CellPairs,
    val: CellPairs,
    pseudobulk: pd.DataFrame,
    genes: pd.Index,
    log: Callable[[str], None],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The epoch loop: train, score validation, keep the best epoch, stop early."""
    s = trainer.settings
    rng = np.random.default_rng(s.seed)
    ctrl = pseudobulk.loc[CONTROL]
    best: dict[str, Any] = {"epoch": 0, "score": -np.inf, "state": None}
    rows, patience = [], 0
    for epoch in range(1, s.epochs + 1):
        start = time.perf_counter()
        loss, steps = trainer.train_epoch(train, rng)
        val_pred, val_loss = trainer.evaluate(val, genes)
        score = _validation_score(val_pred, pseudobulk, ctrl)
        seconds = time.perf_counter() - start
        rows.append({"epoch": epoch, "train_loss": loss, "val_loss": val_loss, "steps": steps,
                     f"val_{SELECTION_METRIC}": score, "seconds": seconds})  # fmt: skip
        log(f"epoch {epoch}/{s.epochs}: loss {loss:.4f}, val loss {val_loss:.4f}, "
            f"val {SELECTION_METRIC} {score:.4f}")  # fmt: skip
        if score > best["score"] or best["state"] is None:
            state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
            best, patience = {"epoch": epoch, "score": score, "state": state}, 0
        else:
            patience += 1
            if patience >= s.early_stop:
                log(f"early stop after epoch {epoch}")
                break
        trainer.scheduler.step()
    return pd.DataFrame(rows).set_index("epoch"), best
