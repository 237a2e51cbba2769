"""Simulator presets: the built-in ``synthetic`` dataset and four shaped like the paper's.

``adamson_like``, ``norman_like``, ``k562_like`` and ``rpe1_like`` have the cells, measured
genes, perturbation conditions, combination share and CRISPR modality of the GEARS datasets, so
the GEARS simulation split gives the split sizes of ``reference/paper_datasets.csv`` (the
conditions are those left after GEARS' GO filter: train - 1 + val + test of that table, one or
two fewer than its distinct perturbations). ``diversity`` is calibrated so that the median
pairwise delta correlation lands near the paper's (0.662, 0.273, 0.117, 0.435); the README
lists the values each preset gives. They make real scale reachable offline: the timings of
``benchmarks/scale.py`` come from ``k562_like``.

Each preset is a built-in, simulated dataset partition (:data:`perturb_assets.core.datasets.
BUILTIN_DATASETS`), and the ``raw_dataset`` config and ``perturb-assets simulate --preset``
select them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from perturb_assets.core.simulation.params import SimulationParams

__all__ = ["PRESETS", "PresetName", "SimulationPreset", "preset_params"]

PresetName = Literal["synthetic", "adamson_like", "norman_like", "k562_like", "rpe1_like"]


@dataclass(frozen=True)
class SimulationPreset:
    """A named set of :class:`~perturb_assets.core.simulation.SimulationParams` values.

    Attributes
    ----------
    name
        The preset and its dataset partition.
    description
        One line for the partition list and the UI.
    paper_dataset
        The row of ``reference/paper_datasets.csv`` it imitates (``None`` for ``synthetic``).
    values
        Keyword arguments of :class:`~perturb_assets.core.simulation.SimulationParams`.
    """

    name: str
    description: str
    paper_dataset: str | None
    values: dict[str, Any]

    def params(self, **overrides: Any) -> SimulationParams:
        """The preset's parameters with ``overrides`` (``None`` values are ignored)."""
        from perturb_assets.core.simulation.params import SimulationParams

        given = {k: v for k, v in overrides.items() if v is not None}
        return SimulationParams(**{**self.values, **given})


def _like(name: str, paper: str, description: str, **values: Any) -> SimulationPreset:
    return SimulationPreset(name, f"Simulated, shaped like {description}", paper, values)


PRESETS: dict[str, SimulationPreset] = {
    preset.name: preset
    for preset in (
        SimulationPreset(
            "synthetic",
            "Synthetic Perturb-seq data generated locally by the simulator",
            None,
            {
                "n_cells": 6000,
                "n_genes": 1000,
                "n_perturbations": 120,
                "combo_fraction": 0.3,
                "diversity": 0.5,
            },
        ),
        _like(
            "adamson_like",
            "adamson",
            "Adamson et al. 2016 (68,603 cells, 86 conditions)",
            n_cells=68603,
            n_genes=5060,
            n_perturbations=86,
            diversity=0.36,
        ),
        _like(
            "norman_like",
            "norman",
            "Norman et al. 2019 (91,205 cells, 283 conditions, CRISPRa)",
            n_cells=91205,
            n_genes=5045,
            n_perturbations=283,
            combo_fraction=0.45,
            diversity=0.865,
            modality="crispra",
        ),
        _like(
            "k562_like",
            "replogle_k562_essential",
            "Replogle et al. 2022 K562 essential (162,751 cells, 1,087 conditions)",
            n_cells=162751,
            n_genes=5000,
            n_perturbations=1087,
            diversity=1.0,
        ),
        _like(
            "rpe1_like",
            "replogle_rpe1_essential",
            "Replogle et al. 2022 RPE1 essential (162,733 cells, 1,543 conditions)",
            n_cells=162733,
            n_genes=5000,
            n_perturbations=1543,
            diversity=0.55,
            cell_type="RPE1",
        ),
    )
}


def preset_params(name: str, **overrides: Any) -> SimulationParams:
    """The :class:`~perturb_assets.core.simulation.SimulationParams` of preset ``name``.

    Raises
    ------
    ValueError
        For an unknown preset (the message lists the known ones) or invalid overrides.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown simulator preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].params(**overrides)
