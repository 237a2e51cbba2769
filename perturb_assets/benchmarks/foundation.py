"""Benchmark of scGPT fine-tuning: the tutorial's training loop against ours, side by side.

Run on a GPU machine::

    python -m perturb_assets.benchmarks.foundation              # scGPT_human size, batch 64
    python -m perturb_assets.benchmarks.foundation --tiny       # a small model: a CPU smoke run
    python -m perturb_assets.benchmarks.foundation --precision-only  # float16 vs bfloat16 only

Both loops train the same model from the same initial weights on the same batches: a
``TransformerGenerator`` of scGPT_human's architecture (60,697-token vocabulary, embsize 512,
8 heads, d_hid 512, 12 layers; random weights: throughput does not depend on their values),
batches of 64 (control, perturbed) cell pairs of a Norman-sized simulated dataset (5,045 genes),
1,536 genes sampled per batch, PyTorch attention (no flash-attn). Measured in one process:

* ``reference``: the tutorial's step (all-False padding mask, float16 autocast + GradScaler,
  ``torch.optim.Adam``), batches built in the loop;
* ``fast``: ours (no mask, bfloat16 autocast, fused Adam, pinned batches prefetched by a
  background thread);
* ``fast+compile``: ``fast`` with ``torch.compile``.

Then the numerical cost of the fast loop's bfloat16: the same weights predict the same cells in
float32, float16 autocast (the reference loop) and bfloat16 autocast (the fast loop), and the
mean absolute difference from float32 is printed per cell and after averaging each condition's
cells, beside the mean absolute true delta (the size of what the metrics score). The padding
mask the fast loop drops is all ``False``, so dropping it changes nothing numerically.

Printed per loop: seconds per step (after warm-up steps), cells per second and the speed-up
over the reference, peak GPU memory, inference cells per second (a forward pass over all
genes, as the tutorial predicts), and the validation loss after the fixed number of steps; the
reference is also run with a second seed, so the table shows its seed-to-seed spread, the noise
against which the loops' validation losses are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from typing import Any

import numpy as np

from perturb_assets.core.models.foundation import (
    CellPairs,
    FineTuneSettings,
    ScGPTCheckpoint,
    Trainer,
    build_model,
    pair_cells,
)
from perturb_assets.core.pp import normalize_expression
from perturb_assets.core.simulation import simulate_perturbseq

HUMAN = {"vocab": 60_697, "embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12}
TINY = {"vocab": 600, "embsize": 32, "nheads": 2, "d_hid": 32, "nlayers": 2}


def _data(n_genes: int, n_cells: int) -> tuple[CellPairs, CellPairs]:
    sim = simulate_perturbseq(
        n_cells=n_cells,
        n_genes=n_genes,
        n_perturbations=60,
        combo_fraction=0.3,
        seed=0,
        compute_de=False,
    )
    adata = normalize_expression(sim.adata)
    conditions = sorted(adata.obs["condition"].astype(str).unique())
    train = pair_cells(adata, conditions[: len(conditions) // 2], seed=0)
    val = pair_cells(adata, conditions[len(conditions) // 2 :], seed=1, max_cells_per_condition=8)
    return train, val


def _checkpoint(arch: dict[str, int]) -> ScGPTCheckpoint:
    vocab = {f"G{i}": i for i in range(arch["vocab"] - 3)}
    vocab |= {"<pad>": len(vocab), "<cls>": len(vocab) + 1, "<eoc>": len(vocab) + 2}
    architecture = {k: arch[k] for k in ("embsize", "nheads", "d_hid", "nlayers")}
    return ScGPTCheckpoint(None, {**architecture, "n_layers_cls": 3}, vocab)


def _val_loss(trainer: Trainer, val: CellPairs) -> float:
    torch = trainer.torch
    trainer.model.eval()
    positions = val.batches(trainer.settings.eval_batch_size)
    losses = []
    with torch.no_grad():
        for src, values, flags, targets in trainer.prepared_batches(val, positions, sample=True):
            with trainer.autocast():
                out = trainer.model(src, values, flags, src_key_padding_mask=None)["mlm_output"]
            losses.append(float(torch.nn.functional.mse_loss(out.float(), targets)))
    return float(np.mean(losses))


def _measure(loop: str, compile_: bool, seed: int, args, data, checkpoint, init_state) -> dict:
    import torch

    train, val = data
    settings = FineTuneSettings(
        batch_size=args.batch, max_seq_len=args.genes, loop=loop, compile=compile_, seed=seed
    )
    torch.manual_seed(seed)
    model = build_model(checkpoint)
    model.load_state_dict(init_state)
    device = torch.device(args.device)
    gene_ids = np.arange(train.n_genes) % (len(checkpoint.vocab) - 3)
    trainer = Trainer(model, gene_ids, settings, device)
    rng = np.random.default_rng(seed)
    positions = train.batches(args.batch, rng, drop_last=True)
    n_steps = args.warmup + args.steps
    positions = (positions * (n_steps // max(len(positions), 1) + 1))[:n_steps]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.model.train()
    start = None
    for i, inputs in enumerate(trainer.prepared_batches(train, positions, sample=True)):
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
        trainer.train_step(inputs)
    _sync(device)
    step_s = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {
        "loop": loop + ("+compile" if compile_ else ""),
        "seed": seed,
        "step_s": step_s,
        "cells_per_s": args.batch / step_s,
        "peak_gib": peak,
        "infer_cells_per_s": _inference_rate(trainer, val, device),
        "val_loss": _val_loss(trainer, val),
    }


def _precision_effect(checkpoint, init_state, val: CellPairs, args) -> list[dict]:
    """How far float16 and bfloat16 autocast move predictions from float32, same weights and
    cells: per cell, and after averaging each condition's cells (what the metrics score)."""
    import torch

    device = torch.device(args.device)
    model = build_model(checkpoint)
    model.load_state_dict(init_state)
    model.to(device).eval()
    rows = np.arange(min(len(val), args.precision_cells))
    genes = np.arange(min(val.n_genes, args.genes))
    batch = val.batch(rows)
    gene_ids = genes % (len(checkpoint.vocab) - 3)
    src = torch.as_tensor(np.tile(gene_ids, (len(rows), 1)), device=device)
    values = torch.as_tensor(batch.values[:, genes], device=device)
    flags = torch.as_tensor(batch.flags[:, genes], device=device)
    mask = torch.zeros_like(values, dtype=torch.bool)
    outputs = {}
    # The CPU's nested-tensor fast path of nn.TransformerEncoderLayer refuses half inputs.
    torch.backends.mha.set_fastpath_enabled(device.type == "cuda")
    for name, dtype in (
        ("float32", None),
        ("float16", torch.float16),
        ("bfloat16", torch.bfloat16),
    ):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                             enabled=dtype is not None):  # fmt: skip
            out = model(src, values, flags, src_key_padding_mask=mask)["mlm_output"]
        outputs[name] = out.float().cpu().numpy().astype(np.float64)
    codes = val.condition_codes[rows]
    counts = np.bincount(codes)
    present = counts > 0

    def condition_means(x: np.ndarray) -> np.ndarray:
        sums = np.zeros((len(counts), x.shape[1]))
        np.add.at(sums, codes, x)
        return sums[present] / counts[present, None]

    exact = outputs["float32"]
    true_delta = condition_means(batch.targets[:, genes] - batch.values[:, genes])
    return [
        {
            "precision": name,
            "per_cell_mean_abs": float(np.abs(out - exact).mean()),
            "per_condition_mean_abs": float(
                np.abs(condition_means(out) - condition_means(exact)).mean()
            ),
            "mean_abs_true_delta": float(np.abs(true_delta).mean()),
            "cells_per_condition": float(counts[present].mean()),
        }
        for name, out in outputs.items()
        if name != "float32"
    ]


def _inference_rate(trainer: Trainer, val: CellPairs, device) -> float:
    """Cells per second of a prediction over all genes (the tutorial's inference)."""
    positions = val.batches(trainer.settings.eval_batch_size)[:3]
    _sync(device)
    start = time.perf_counter()
    trainer.predict(_subset(val, np.concatenate(positions)), np.arange(val.n_genes))
    _sync(device)
    return sum(len(p) for p in positions) / (time.perf_counter() - start)


def _subset(pairs: CellPairs, keep: np.ndarray) -> CellPairs:
    return dataclasses.replace(
        pairs,
        control_rows=pairs.control_rows[keep],
        target_rows=pairs.target_rows[keep],
        condition_codes=pairs.condition_codes[keep],
    )


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m perturb_assets.benchmarks.foundation", description=__doc__.split("\n")[0]
    )
    p.add_argument("--tiny", action="store_true", help="a small model and dataset (CPU smoke)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per loop (default 30)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--genes", type=int, default=None, help="genes per batch (default 1536)")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--no-compile", action="store_true", help="skip the fast+compile loop")
    p.add_argument(
        "--precision-only", action="store_true", help="only the precision comparison (CPU-able)"
    )
    p.add_argument(
        "--precision-cells", type=int, default=64, help="cells of the precision comparison"
    )
    args = p.parse_args(argv)
    args.steps = args.steps or (3 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    args.genes = args.genes or (64 if args.tiny else 1536)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    import torch

    args = _parse(argv)
    arch = TINY if args.tiny else HUMAN
    data = _data(n_genes=200 if args.tiny else 5045, n_cells=600 if args.tiny else 4000)
    checkpoint = _checkpoint(arch)
    torch.manual_seed(0)
    init_state = {k: v.clone() for k, v in build_model(checkpoint).state_dict().items()}
    if args.precision_only:
        _print_precision(_precision_effect(checkpoint, init_state, data[1], args))
        return 0
    variants = [("reference", False, 42), ("reference", False, 43), ("fast", False, 42)]
    if not args.no_compile and args.device == "cuda":
        variants.append(("fast", True, 42))
    rows = [
        _measure(loop, c, seed, args, data, checkpoint, init_state) for loop, c, seed in variants
    ]
    _print(rows, args, torch)
    _print_precision(_precision_effect(checkpoint, init_state, data[1], args))
    return 0


def _print(rows: list[dict], args: argparse.Namespace, torch: Any) -> None:
    base = rows[0]
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor()
    print(
        f"\nDevice: {device or args.device}; torch {torch.__version__}; batch {args.batch}, "
        f"{args.genes} genes per batch, {args.steps} timed steps after {args.warmup} warm-up."
    )
    spread = abs(rows[1]["val_loss"] - base["val_loss"])
    print(f"Reference seed-to-seed spread of the validation loss: {spread:.4f}\n")
    print(
        "| loop | seed | s/step | cells/s | speed-up | peak GPU GiB | inference cells/s | "
        "inference speed-up | val loss |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['loop']} | {r['seed']} | {r['step_s']:.4f} | {r['cells_per_s']:.0f} | "
            f"{base['step_s'] / r['step_s']:.2f}x | {r['peak_gib']:.1f} | "
            f"{r['infer_cells_per_s']:.0f} | "
            f"{r['infer_cells_per_s'] / base['infer_cells_per_s']:.2f}x | {r['val_loss']:.4f} |"
        )


def _print_precision(rows: list[dict]) -> None:
    print(
        "\nPrediction difference from float32 (same weights, same cells; the reference loop "
        "uses float16, the fast loop bfloat16):\n"
    )
    print("| autocast | mean abs per cell | mean abs per condition mean | mean abs true delta |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['per_cell_mean_abs']:.2e} | "
            f"{r['per_condition_mean_abs']:.2e} | {r['mean_abs_true_delta']:.2e} |"
        )


if __name__ == "__main__":
    sys.exit(main())
