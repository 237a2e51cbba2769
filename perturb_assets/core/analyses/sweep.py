"""The diversity sweep: how the benchmark's dynamic range follows dataset diversity.

The paper relates the median pairwise delta correlation of its four datasets to their dynamic
range (best model minus Train Mean, Pearson Delta): four points. The simulator's ``diversity``
knob moves that correlation across its whole range; :func:`sweep_point` simulates one dataset
per level and measures the median correlation, Train Mean's and RF-on-GO's Pearson Delta
(published protocol), their difference and the noise ceiling.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from perturb_assets.core.analyses.diversity import dataset_diversity
from perturb_assets.core.evaluation.benchmark import per_condition_metrics
from perturb_assets.core.evaluation.ceiling import noise_ceiling
from perturb_assets.core.features.pca import pca_features
from perturb_assets.core.gears.split import simulation_split
from perturb_assets.core.models.fitting import run_baseline
from perturb_assets.core.models.registry import RANDOM_FOREST_GO, TRAIN_MEAN
from perturb_assets.core.pp.de import DE_TABLE_COLUMNS
from perturb_assets.core.pp.normalize import normalize_expression
from perturb_assets.core.pp.pseudobulk import pseudobulk_profiles
from perturb_assets.core.simulation.generator import simulate
from perturb_assets.core.simulation.params import SimulationParams

__all__ = ["SWEEP_LEVELS", "SWEEP_SIZE", "sweep_point"]

#: Diversity levels of the sweep (partitions of the ``diversity_sweep`` asset).
SWEEP_LEVELS: tuple[str, ...] = ("0.00", "0.25", "0.50", "0.75", "1.00")
#: Dataset size of each level: big enough for stable medians, small enough for a laptop.
SWEEP_SIZE = {"n_cells": 6000, "n_genes": 500, "n_perturbations": 150, "combo_fraction": 0.0}


def sweep_point(
    diversity: float, seed: int = 0, n_jobs: int = 1, **size: int | float
) -> dict[str, float]:
    """Simulate one dataset at ``diversity`` and measure where it lands.

    ``n_jobs`` grows RF-GO's trees in that many threads (the forest is bitwise the same for
    any ``n_jobs``); ``size`` overrides :data:`SWEEP_SIZE`.

    Returns ``diversity``, ``median_corr``, ``train_mean`` and ``random_forest_go`` (their
    Pearson Delta), ``dynamic_range`` (their difference), ``ceiling`` (the split-half
    noise ceiling's Pearson Delta) and ``ceiling_minus_train_mean``.
    """
    params = SimulationParams(
        **{**SWEEP_SIZE, **size, "diversity": diversity, "seed": seed, "compute_de": False}
    )
    sim = simulate(params)
    adata = normalize_expression(sim.adata)
    split = simulation_split(adata.obs["condition"].astype(str))
    profiles = pseudobulk_profiles(adata)
    means = profiles.to_df()
    diversity_stats = dataset_diversity(means, split, profiles.obs["first_cell"])
    go = pca_features(sim.annotations)
    rf = RANDOM_FOREST_GO.model
    tables = [
        run_baseline(TRAIN_MEAN, profiles, split).table,
        run_baseline(
            rf, profiles, split, go, feature_set=RANDOM_FOREST_GO.features_label, n_jobs=n_jobs
        ).table,
    ]
    scores = per_condition_metrics(tables, means, split, pd.DataFrame(columns=DE_TABLE_COLUMNS))
    delta = scores[scores["metric"] == "pearson_delta"].groupby("model")["value"].mean()
    ceiling = noise_ceiling(adata, split, None, means)
    top = float(ceiling.loc[ceiling["metric"] == "pearson_delta", "value"].mean())
    base = float(delta[TRAIN_MEAN.name])
    return {
        "diversity": diversity,
        "median_corr": diversity_stats.median,
        "train_mean": base,
        "random_forest_go": float(delta[rf.name]),
        "dynamic_range": float(delta[rf.name]) - base,
        "ceiling": top,
        "ceiling_minus_train_mean": top - base,
        **{f"sim_{k}": v for k, v in asdict(params).items() if isinstance(v, int | float)},
    }
