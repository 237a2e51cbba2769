"""The simulator's parameters, checked before anything is simulated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MODALITIES",
    "SimulationParams",
]

_COMBO_ONLY_FRACTION = 0.1


#: Supported CRISPR modalities.
MODALITIES: tuple[str, ...] = ("crispri", "crispra")
_CONTROL_SHARE = (0.10, 0.15)
_MIN_CELLS = 5

# Common-response variance share as a function of diversity (piecewise linear; calibrated so
# that the median pairwise delta correlation falls from ~0.9 at diversity 0 to ~0.1 at 1).
_DIVERSITY_GRID = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COMMON_SHARE_GRID = np.array([1.0, 0.78, 0.53, 0.28, 0.05])


@dataclass(frozen=True)
class SimulationParams:
    """The knobs of :func:`simulate_perturbseq`, validated once when built.

    See :func:`simulate_perturbseq` for the meaning of each field. ``n_programs=None`` becomes
    ``clip(round(n_genes / 80), 8, 40)``.

    Raises
    ------
    ValueError
        If a parameter is out of range or the cells cannot cover all conditions.
    """

    n_cells: int = 6000
    n_genes: int = 1000
    n_perturbations: int = 120
    combo_fraction: float = 0.0
    diversity: float = 0.5
    n_terms: int = 300
    modality: str = "crispri"
    cell_type: str = "K562"
    seed: int = 0
    compute_de: bool = True
    n_programs: int | None = None
    unmeasured_fraction: float = 0.07

    def __post_init__(self) -> None:
        _check_sizes(self)
        _check_fractions(self)
        if self.n_programs is None:
            object.__setattr__(self, "n_programs", int(np.clip(round(self.n_genes / 80), 8, 40)))
        _check_programs(self)
        _check_feasible(self)

    @property
    def n_combo(self) -> int:
        return int(round(self.combo_fraction * self.n_perturbations))

    @property
    def n_single(self) -> int:
        return self.n_perturbations - self.n_combo

    @property
    def n_combo_only(self) -> int:
        """Genes perturbed only in combinations."""
        return int(round(_COMBO_ONLY_FRACTION * self.n_combo))

    @property
    def n_targets(self) -> int:
        return self.n_single + self.n_combo_only

    @property
    def n_unmeasured(self) -> int:
        """Target genes that are not measured (at least one when there are five targets)."""
        n = int(round(self.unmeasured_fraction * self.n_targets))
        if self.unmeasured_fraction > 0 and self.n_targets >= 5:
            n = max(n, 1)
        return n

    @property
    def n_universe(self) -> int:
        """Measured genes plus unmeasured targets."""
        return self.n_genes + self.n_unmeasured

    @property
    def common_share(self) -> float:
        """Variance share of the common perturbation response at this diversity."""
        return float(np.interp(self.diversity, _DIVERSITY_GRID, _COMMON_SHARE_GRID))


# ---------------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------------
def _check_sizes(p: SimulationParams) -> None:
    for name in ("n_cells", "n_genes", "n_perturbations", "n_terms"):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if p.n_genes < 10:
        raise ValueError(f"n_genes must be at least 10, got {p.n_genes}")
    if p.n_perturbations > p.n_genes:
        raise ValueError(
            f"n_perturbations ({p.n_perturbations}) must not exceed n_genes ({p.n_genes}): "
            "perturbation targets are drawn from the genes"
        )


def _check_fractions(p: SimulationParams) -> None:
    if not 0.0 <= p.diversity <= 1.0:
        raise ValueError(f"diversity must lie in [0, 1], got {p.diversity!r}")
    if not 0.0 <= p.combo_fraction < 1.0:
        raise ValueError(f"combo_fraction must lie in [0, 1), got {p.combo_fraction!r}")
    if not 0.0 <= p.unmeasured_fraction < 0.5:
        raise ValueError(f"unmeasured_fraction must lie in [0, 0.5), got {p.unmeasured_fraction!r}")
    if p.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {p.modality!r}")
    if not isinstance(p.cell_type, str) or not p.cell_type or "_" in p.cell_type:
        raise ValueError(f"cell_type must be a non-empty string without '_', got {p.cell_type!r}")


def _check_programs(p: SimulationParams) -> None:
    if isinstance(p.n_programs, bool) or not isinstance(p.n_programs, int | np.integer):
        raise ValueError(f"n_programs must be an integer, got {p.n_programs!r}")
    if not 2 <= p.n_programs <= p.n_genes // 2:
        raise ValueError(f"n_programs must lie in [2, n_genes / 2], got {p.n_programs}")


def _check_feasible(p: SimulationParams) -> None:
    """Enough singles for the combinations and enough cells for every condition."""
    if p.n_combo > 0:
        n_pairs = p.n_single * (p.n_single - 1) // 2 + p.n_single * p.n_combo_only
        if p.n_single < 2 or n_pairs < p.n_combo:
            raise ValueError(
                f"combo_fraction {p.combo_fraction} leaves {p.n_single} single perturbations, "
                f"too few to build {p.n_combo} distinct combinations; lower combo_fraction"
            )
    max_ctrl = max(_MIN_CELLS, int(round(_CONTROL_SHARE[1] * p.n_cells)))
    if p.n_cells - max_ctrl < _MIN_CELLS * p.n_perturbations:
        need = int(np.ceil(_MIN_CELLS * p.n_perturbations / (1.0 - _CONTROL_SHARE[1]))) + 1
        raise ValueError(
            f"n_cells ({p.n_cells}) is too few for {p.n_perturbations} perturbations: every "
            f"condition needs at least {_MIN_CELLS} cells and control "
            f"~{_CONTROL_SHARE[1]:.0%}; use at least {need} cells"
        )
