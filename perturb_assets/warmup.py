"""Compile the project's numba kernels into numba's on-disk cache, once per install.

Every kernel here is ``numba.njit(cache=True)``: its machine code is kept in the
``__pycache__`` folder beside its source and reused by every later process. On a fresh clone
that cache is empty, and the first run compiles each kernel inside the step that first calls
it: about 25 s of the first ``deploy/main.sh`` on 2 cores (the simulator's DE fields 8 s,
scanpy-style DE 5 s, the noise ceiling's DE family 9 s, the metrics' Pearson kernels). Set-up
(``deploy/bootstrap.sh``) calls :func:`warm_jit_caches` right after installing, so a
newcomer's first run starts warm, as ``--compile-bytecode`` does for the Python modules.

It runs the same core functions the assets call, in the same order, on a small simulated
dataset that takes the assets' storage round trip (so every kernel sees the dtypes it sees in a
run, and compiles the signature the run will look up). A source file changed later is simply
compiled again on first use, as numba always does.

Run it as ``python -m perturb_assets.warmup``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

__all__ = ["warm_jit_caches"]

#: Small enough to take seconds once compiled, big enough for every code path (combinations,
#: DE lists of 20 genes, split-half ceilings).
WARMUP_SIZE = {"n_cells": 1500, "n_genes": 200, "n_perturbations": 30, "combo_fraction": 0.3}


def warm_jit_caches(log: Callable[[str], None] = print) -> float:
    """Run the pipeline's kernels once on a small ``synthetic`` dataset; seconds taken."""
    from perturb_assets.core.datasets import load_expression, obtain_dataset
    from perturb_assets.core.evaluation import evaluate_models, noise_ceiling
    from perturb_assets.core.gears.split import simulation_split
    from perturb_assets.core.io import VersionedStore
    from perturb_assets.core.models.fitting import run_baseline
    from perturb_assets.core.models.registry import TRAIN_MEAN
    from perturb_assets.core.pp import de_gene_table, pseudobulk_profiles
    from perturb_assets.core.simulation import SimulationParams

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="perturb_warmup_") as root:
        store = VersionedStore(root)

        def stored(name: str, value):  # the IO manager's round trip, as a step reads it
            store.put(store.key("assets", name, "synthetic"), value)
            return store.read("assets", name, "synthetic")

        raw = obtain_dataset("synthetic", root, simulation=SimulationParams(**WARMUP_SIZE))
        cells = stored("expression", load_expression(raw.path))
        split = stored("perturbation_split", simulation_split(cells.obs["condition"].astype(str)))
        profiles = stored("pseudobulk", pseudobulk_profiles(cells))
        de = stored("de_genes", de_gene_table(cells, dataset="synthetic"))
        means = profiles.to_df()
        ceiling = noise_ceiling(cells, split, de, means)
        train_mean = run_baseline(TRAIN_MEAN, profiles, split).table
        predictions = stored("train_mean_predictions", train_mean)
        evaluate_models([predictions], means, split, de, dataset="synthetic", n_boot=10,
                        ceiling=ceiling, cells=cells)  # fmt: skip
    seconds = time.perf_counter() - started
    log(f"[warmup] numba kernels compiled and cached in {seconds:.1f} s")
    return seconds


if __name__ == "__main__":
    from perturb_assets.known_warnings import ignore_known_warnings

    ignore_known_warnings()  # as the CLI does: the store's zarr v2 notice and the like
    warm_jit_caches()
