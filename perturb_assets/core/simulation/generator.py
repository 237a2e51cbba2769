"""Simulated Perturb-seq datasets in the exact GEARS ``perturb_processed.h5ad`` layout.

The built-in ``synthetic`` dataset is produced here. It is a single-cell CRISPR screen with
known ground truth, written the way cell-gears' Dataverse files (Norman, Adamson, Replogle) are
laid out, plus a GO-like gene × term annotation matrix whose rows carry real, learnable, but
imperfect information about what perturbing a gene does.

Generative model
----------------
* **Genes.** A universe of ``n_genes`` measured genes plus a few perturbation targets that are
  *not* measured (as in real GEARS datasets, where highly-variable-gene selection drops some
  targets). Baseline expression is log-normal across genes (many lowly expressed genes), counts
  are negative binomial with gene-wise dispersion, so ``X`` is ~80-90 % zeros.
* **Gene programs.** ``K`` latent programs. Every gene has a primary program and, sometimes, a
  secondary one. Each program has a sparse, signed downstream response over the genes.
* **Perturbation effects** (natural-log fold changes of expected expression). Perturbing gene
  ``g`` gives ``scale_g * (a * C + b * P_g + c * N_g)``, where ``C`` is a generic perturbation
  response shared by all perturbations (this is what makes "Train Mean" a strong baseline),
  ``P_g`` is the response of the programs ``g`` belongs to (the part an annotation-based model can
  learn) and ``N_g`` is gene-specific idiosyncratic noise. ``diversity`` in [0, 1] moves weight
  from ``C`` to ``P_g`` and ``N_g``: at 0 all delta profiles are nearly identical (median pairwise
  Pearson correlation of pseudo-bulk deltas ~0.9), at 1 they are diverse (~0.1). The target
  itself is knocked down to 8-30 % of baseline (CRISPRi) or activated 3-12 fold (CRISPRa).
  Combinations add the two single effects in log space plus a mild genetic-interaction term.
* **Cells.** Control cells get 10-15 % of the cells, perturbations roughly equal shares with
  variation (at least 5 cells each). Cells vary in library size and cell-cycle phase, and
  perturbed cells vary in knock-down penetrance (some escape).
* **Annotations** (GO stand-in). Each term belongs to one program (or a mixture of two, or is a
  broad term) and holds a noisy subset of that program's genes plus random genes; ~10 % of genes
  are annotated to a wrong program; every gene has at least three terms.

``obs`` follows cell-gears 0.1.2 ``get_DE_genes`` literally, quirks included: every two-part
condition (singles ``A+ctrl`` as well as combinations) gets ``dose_val='1+1'`` and
``control=0``, only ``ctrl`` gets ``'1'`` / ``1``; e.g. ``condition_name='K562_A+ctrl_1+1'``.

The GEARS ``uns`` fields (``rank_genes_groups_cov_all``, ``top_non_dropout_de_20``,
``top_non_zero_de_20``, ``non_dropout_gene_idx``, ``non_zeros_gene_idx``) are computed exactly as
cell-gears 0.1.2 ``get_DE_genes`` and ``get_dropout_non_zero_genes`` compute them, without
importing GEARS (which needs torch-geometric).

From the command line, to write a dataset folder::

    perturb-assets simulate OUT_FOLDER --cells 6000 --genes 1000 \\
        --perturbations 120 --combo-fraction 0 --diversity 0.5 --seed 0
    perturb-assets simulate OUT_FOLDER --preset k562_like   # see core.simulation.presets
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.core import gears
from perturb_assets.core.gears.format import CONTROL
from perturb_assets.core.pp.deltas import median_pairwise_delta_correlation
from perturb_assets.core.simulation.annotations import _annotations
from perturb_assets.core.simulation.counts import _PENETRANCE_LEVELS, _sample_counts
from perturb_assets.core.simulation.gears_fields import gears_de_fields
from perturb_assets.core.simulation.params import (
    _COMBO_ONLY_FRACTION,
    _CONTROL_SHARE,
    _MIN_CELLS,
    SimulationParams,
)

__all__ = [
    "SimulatedDataset",
    "simulate",
    "simulate_perturbseq",
    "simulated_conditions",
]

# ---------------------------------------------------------------------------------------------
# Model constants (calibrated at the default size; see the module docstring).
# ---------------------------------------------------------------------------------------------
_LOG_MU_MEAN = -2.3  # log mean count of a gene in a cell of average library size
_LOG_MU_SD = 1.7
_THETA_LOG_MEAN = np.log(2.5)  # NB inverse dispersion, log-normal across genes
_THETA_LOG_SD = 0.5
_LIBRARY_LOG_SD = 0.35
_CELLS_PER_CONDITION_LOG_SD = 0.3
_SECONDARY_PROGRAM_PROB = 0.3
_PROGRAM_MEMBER_HIT_PROB = 0.5  # a program's own genes among its downstream genes
_PROGRAM_RANDOM_HIT_PROB = 0.03  # other genes among its downstream genes
_PROGRAM_SIGN_CONSISTENCY = 0.8
_IDIOSYNCRATIC_DENSITY = 0.05
_IDIOSYNCRATIC_SHARE = 0.25  # share of the non-common variance that is idiosyncratic
_EFFECT_SCALE = 0.5  # visible RMS log fold change of an average perturbation
_EFFECT_SCALE_LOG_SD = 0.3
_VISIBILITY_RATE = 3.0  # visibility of a gene with mean count m: 1 - exp(-rate * m)
_MIN_VISIBLE_FRACTION = 0.25
_MAX_LOG_FOLD_CHANGE = 4.0  # downstream effects are clipped to +-4 (about 55-fold)
_GI_STRENGTH = 0.35
_KNOCKDOWN = (0.08, 0.30)  # CRISPRi: fraction of baseline left
_ACTIVATION = (3.0, 12.0)  # CRISPRa: fold change
_PENETRANCE_PROBS = np.array([0.07, 0.18, 0.75])
_PHASE_PROBS = np.array([0.5, 0.3, 0.2])  # G1, S, G2M
_CYCLE_GENE_FRACTION = 0.02
_CTRL_PLUS_SPELLING_FRACTION = 0.3


@dataclass
class SimulatedDataset:
    """A simulated Perturb-seq dataset and its ground truth.

    Attributes
    ----------
    adata
        The dataset in GEARS ``perturb_processed.h5ad`` layout.
    annotations
        Binary (``int8``) gene × term matrix, the GO stand-in. Index: gene symbols (the
        ``var['gene_name']`` of measured genes plus the unmeasured perturbation targets);
        columns: term ids such as ``'GO:SIM0000001'``.
    programs
        Ground-truth program membership weights, gene symbol × program (``float32``).
    effects
        Ground-truth effect of every condition on the expected expression of the measured
        genes (natural-log fold change versus control; the ``ctrl`` row is zero), condition ×
        ``gene_name``. ``None`` when unknown.
    term_descriptions
        Description of every term (the second GMT column), indexed by term id. ``None``: the
        term id is used.
    metadata
        Parameters, sizes and summary statistics of the simulation.
    """

    adata: AnnData
    annotations: pd.DataFrame
    programs: pd.DataFrame
    effects: pd.DataFrame | None = None
    term_descriptions: pd.Series | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Genes:
    """The gene universe and the perturbation design."""

    mu: np.ndarray
    theta: np.ndarray
    expr_rank: np.ndarray
    visibility: np.ndarray
    measured: np.ndarray
    unmeasured: np.ndarray
    symbols: np.ndarray
    ensembl: np.ndarray
    single_genes: np.ndarray
    combo_only_genes: np.ndarray
    combos: list[tuple[int, int]]
    conditions: list[str]

    @property
    def all_targets(self) -> np.ndarray:
        return np.concatenate([self.single_genes, self.combo_only_genes])


@dataclass
class _Biology:
    """Gene programs and the ground-truth effect of every condition."""

    primary: np.ndarray
    membership: np.ndarray
    effects: np.ndarray  # conditions x gene universe


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def simulate_perturbseq(
    n_cells: int = 6000,
    n_genes: int = 1000,
    n_perturbations: int = 120,
    combo_fraction: float = 0.0,
    diversity: float = 0.5,
    n_terms: int = 300,
    modality: str = "crispri",
    cell_type: str = "K562",
    seed: int = 0,
    compute_de: bool = True,
    *,
    n_programs: int | None = None,
    unmeasured_fraction: float = 0.07,
    progress: Callable[[str], None] | None = None,
) -> SimulatedDataset:
    """Simulate a Perturb-seq screen in the GEARS ``perturb_processed.h5ad`` layout.

    Parameters
    ----------
    n_cells
        Total number of cells, control included.
    n_genes
        Number of measured genes (``n_vars``).
    n_perturbations
        Number of perturbation conditions (singles plus combinations; control excluded).
    combo_fraction
        Fraction of the perturbation conditions that are two-gene combinations ``A+B``, in
        ``[0, 1)``. 0 gives an Adamson/Replogle-like single-only screen; with combinations some
        singles are spelled ``ctrl+X`` (as in Norman), each gene consistently one way.
    diversity
        In ``[0, 1]``: 0 makes all perturbations respond alike (median pairwise pseudo-bulk
        delta correlation ~0.9), 1 makes them diverse (~0.1).
    n_terms
        Number of annotation terms.
    modality
        ``"crispri"`` (targets knocked down) or ``"crispra"`` (targets activated).
    cell_type
        Value of ``obs['cell_type']``.
    seed
        Seed of ``numpy.random.default_rng``; the result is a deterministic function of all
        arguments.
    compute_de
        Compute the GEARS DE-gene ``uns`` fields (skip for very large benchmark sizes).
    n_programs
        Number of latent gene programs; default ``clip(round(n_genes / 80), 8, 40)``.
    unmeasured_fraction
        Fraction of perturbation target genes that are not measured (absent from ``var``).
    progress
        Called with a short message after each step (e.g. ``print``).

    Returns
    -------
    SimulatedDataset
        The dataset, its annotations and its ground truth.

    Raises
    ------
    ValueError
        If a parameter is out of range or the cells cannot cover all conditions.
    """
    params = SimulationParams(
        n_cells=n_cells, n_genes=n_genes, n_perturbations=n_perturbations,
        combo_fraction=combo_fraction, diversity=diversity, n_terms=n_terms, modality=modality,
        cell_type=cell_type, seed=seed, compute_de=compute_de, n_programs=n_programs,
        unmeasured_fraction=unmeasured_fraction,
    )  # fmt: skip
    return simulate(params, progress)


def simulate(
    params: SimulationParams, progress: Callable[[str], None] | None = None
) -> SimulatedDataset:
    """Simulate a dataset from validated :class:`SimulationParams` (see
    :func:`simulate_perturbseq`)."""
    t_start = time.perf_counter()

    def report(message: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - t_start:7.1f}s] {message}")

    rng = np.random.default_rng(params.seed)
    # Independent streams: the biology (genes, design, effects), the cells, the annotations.
    # The annotations thus do not depend on n_cells.
    rng_cells, rng_annotations = rng.spawn(2)
    genes = _draw_genes(rng, params)
    report(
        f"design: {params.n_single} singles, {params.n_combo} combinations, "
        f"{params.n_targets} target genes ({params.n_unmeasured} unmeasured), "
        f"{params.n_programs} programs"
    )
    biology = _draw_effects(rng, params, genes)
    report("effects drawn")
    adata, n_control = _draw_cells(rng, rng_cells, params, genes, biology)
    report(f"counts sampled: {params.n_cells} cells x {params.n_genes} genes")
    if params.compute_de:
        adata.uns.update(gears_de_fields(adata))
        report("GEARS DE-gene fields computed")
    annotations, descriptions = _annotations(
        rng_annotations, biology.primary, biology.membership, params.n_terms, genes.symbols
    )
    report(f"annotations: {annotations.shape[1]} terms, {int(annotations.to_numpy().sum())} links")
    sim = _assemble(params, genes, biology, adata, annotations, descriptions, n_control)
    report(
        f"done: zero fraction {sim.metadata['zero_fraction']:.3f}, median pairwise delta "
        f"correlation {sim.metadata['median_pairwise_delta_correlation']:.3f}"
    )
    return sim


def simulated_conditions(params: SimulationParams) -> list[str]:
    """The conditions :func:`simulate` gives ``params`` (``ctrl`` first), without simulating a
    cell: the design is the first thing drawn from the seed."""
    return _draw_genes(np.random.default_rng(params.seed), params).conditions


def _draw_genes(rng: np.random.Generator, params: SimulationParams) -> _Genes:
    """Gene expression levels, dispersions, names, the targets and the conditions."""
    n_universe = params.n_universe
    mu = np.exp(rng.normal(_LOG_MU_MEAN, _LOG_MU_SD, n_universe))
    theta = np.exp(rng.normal(_THETA_LOG_MEAN, _THETA_LOG_SD, n_universe)).clip(0.3, 50.0)
    expr_rank = _percentile_rank(mu)
    # Screens target expressed genes preferentially (CRISPRi needs expression to act).
    target_weight = 0.05 + expr_rank**2
    targets = rng.choice(
        n_universe, size=params.n_targets, replace=False, p=target_weight / target_weight.sum()
    )
    unmeasured = np.sort(rng.choice(targets, size=params.n_unmeasured, replace=False))
    measured_mask = np.ones(n_universe, dtype=bool)
    measured_mask[unmeasured] = False
    width = max(4, len(str(n_universe)))
    symbols = np.array([f"SIM{i + 1:0{width}d}" for i in range(n_universe)], dtype=object)
    ensembl_numbers = np.sort(rng.choice(max(20 * n_universe, 100_000), n_universe, replace=False))
    single_genes = targets[: params.n_single]
    combo_only_genes = targets[params.n_single :]
    combos = _draw_combinations(rng, single_genes, combo_only_genes, params.n_combo)
    conditions = _condition_names(rng, params, symbols, single_genes, combos)
    return _Genes(
        mu=mu,
        theta=theta,
        expr_rank=expr_rank,
        # How visible a log fold change of each gene is in pseudo-bulk log-normalised data
        # (lowly expressed genes are mostly zeros); effect components are normalised to unit
        # visible RMS, so that the diversity knob means the same thing for every seed.
        visibility=measured_mask * -np.expm1(-_VISIBILITY_RATE * mu),
        measured=np.flatnonzero(measured_mask),
        unmeasured=unmeasured,
        symbols=symbols,
        ensembl=np.array([f"ENSG{n + 1:011d}" for n in ensembl_numbers], dtype=object),
        single_genes=single_genes,
        combo_only_genes=combo_only_genes,
        combos=combos,
        conditions=conditions,
    )


def _condition_names(
    rng: np.random.Generator,
    params: SimulationParams,
    symbols: np.ndarray,
    single_genes: np.ndarray,
    combos: list[tuple[int, int]],
) -> list[str]:
    """``ctrl``, the singles (some spelled ``ctrl+X`` when there are combinations), the combos."""
    ctrl_first = np.zeros(len(symbols), dtype=bool)
    if params.n_combo > 0:
        ctrl_first[single_genes] = rng.random(params.n_single) < _CTRL_PLUS_SPELLING_FRACTION
    conditions = [CONTROL]
    for g in single_genes:
        conditions.append(f"{CONTROL}+{symbols[g]}" if ctrl_first[g] else f"{symbols[g]}+{CONTROL}")
    conditions += [f"{symbols[a]}+{symbols[b]}" for a, b in combos]
    return conditions


def _draw_programs(
    rng: np.random.Generator, params: SimulationParams, n_universe: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every gene's primary program and its program membership weights."""
    n_programs = int(params.n_programs)
    primary = rng.integers(0, n_programs, n_universe)
    membership = np.zeros((n_universe, n_programs), dtype=np.float32)
    membership[np.arange(n_universe), primary] = 1.0
    has_secondary = rng.random(n_universe) < _SECONDARY_PROGRAM_PROB
    secondary = (primary + rng.integers(1, max(n_programs, 2), n_universe)) % n_programs
    membership[np.flatnonzero(has_secondary), secondary[has_secondary]] = rng.uniform(
        0.3, 0.7, int(has_secondary.sum())
    )
    return primary, membership


def _draw_effects(rng: np.random.Generator, params: SimulationParams, genes: _Genes) -> _Biology:
    """Log fold change of every condition: common + program + idiosyncratic parts, the target."""
    n_universe, n_targets = params.n_universe, params.n_targets
    primary, membership = _draw_programs(rng, params, n_universe)
    responses = _program_responses(
        rng, primary, int(params.n_programs), genes.expr_rank, genes.visibility
    )
    common = _common_response(rng, genes.expr_rank, genes.visibility)
    w_common = np.sqrt(params.common_share)
    w_program = np.sqrt((1.0 - params.common_share) * (1.0 - _IDIOSYNCRATIC_SHARE))
    w_noise = np.sqrt((1.0 - params.common_share) * _IDIOSYNCRATIC_SHARE)
    program_sign = 1.0 if params.modality == "crispri" else -1.0

    all_targets = genes.all_targets
    scale = _EFFECT_SCALE * np.exp(rng.normal(0.0, _EFFECT_SCALE_LOG_SD, n_targets))
    noise = _sparse_unit_rows(rng, n_targets, n_universe, _IDIOSYNCRATIC_DENSITY, genes.visibility)
    program_part = membership[all_targets] @ responses
    gene_effect = scale[:, None] * (
        w_common * common[None, :] + w_program * program_sign * program_part + w_noise * noise
    )
    np.clip(gene_effect, -_MAX_LOG_FOLD_CHANGE, _MAX_LOG_FOLD_CHANGE, out=gene_effect)
    bounds = _KNOCKDOWN if params.modality == "crispri" else _ACTIVATION
    self_effect = np.log(rng.uniform(*bounds, n_targets))
    gene_effect[np.arange(n_targets), all_targets] = self_effect

    effects = np.zeros((len(genes.conditions), n_universe), dtype=np.float32)
    effects[1 : 1 + params.n_single] = gene_effect[: params.n_single]
    row_of = {int(g): i for i, g in enumerate(all_targets)}
    for j, (a, b) in enumerate(genes.combos):
        ia, ib = row_of[int(a)], row_of[int(b)]
        affected = (np.abs(program_part[ia]) + np.abs(program_part[ib])) > 0
        gi = rng.normal(0.0, 1.0, n_universe) * affected
        gi *= (
            _GI_STRENGTH
            * np.sqrt(scale[ia] * scale[ib])
            / float(_visible_norm(gi, genes.visibility))
        )
        combo_effect = np.clip(
            gene_effect[ia] + gene_effect[ib] + gi, -_MAX_LOG_FOLD_CHANGE, _MAX_LOG_FOLD_CHANGE
        )
        combo_effect[a] = self_effect[ia]
        combo_effect[b] = self_effect[ib]
        effects[1 + params.n_single + j] = combo_effect
    return _Biology(primary=primary, membership=membership, effects=effects)


def _draw_cells(
    rng: np.random.Generator,
    rng_cells: np.random.Generator,
    params: SimulationParams,
    genes: _Genes,
    biology: _Biology,
) -> tuple[AnnData, int]:
    """Cells, their conditions and counts, as a GEARS AnnData; also the control-cell count."""
    measured = genes.measured
    phase_multiplier = _phase_multipliers(rng, params.n_universe)[:, measured]
    cells_per_condition = _cells_per_condition(rng_cells, params.n_cells, len(genes.conditions))
    cond_of_cell = rng_cells.permutation(
        np.repeat(np.arange(len(genes.conditions)), cells_per_condition)
    )
    level_of_cell = rng_cells.choice(
        len(_PENETRANCE_LEVELS), size=params.n_cells, p=_PENETRANCE_PROBS
    )
    level_of_cell[cond_of_cell == 0] = len(_PENETRANCE_LEVELS) - 1
    phase_of_cell = rng_cells.choice(len(_PHASE_PROBS), size=params.n_cells, p=_PHASE_PROBS)
    library = np.exp(rng_cells.normal(0.0, _LIBRARY_LOG_SD, params.n_cells)).astype(np.float32)
    counts, x = _sample_counts(
        rng_cells,
        mu=genes.mu[measured].astype(np.float32),
        theta=genes.theta[measured].astype(np.float32),
        effects=np.ascontiguousarray(biology.effects[:, measured]),
        cond_of_cell=cond_of_cell,
        level_of_cell=level_of_cell,
        phase_of_cell=phase_of_cell,
        phase_multiplier=phase_multiplier,
        library=library,
    )
    cond_names = np.array(genes.conditions, dtype=object)[cond_of_cell]
    obs = gears.gears_obs(cond_names, params.cell_type)
    obs.index = pd.Index(_barcodes(rng_cells, params.n_cells), name=None)
    var = pd.DataFrame(
        {"gene_name": pd.Series(genes.symbols[measured], dtype=object).to_numpy()},
        index=pd.Index(genes.ensembl[measured], dtype=object),
    )
    adata = AnnData(X=x, obs=obs, var=var, layers={"counts": counts})
    return adata, int(cells_per_condition[0])


def _assemble(
    params: SimulationParams,
    genes: _Genes,
    biology: _Biology,
    adata: AnnData,
    annotations: pd.DataFrame,
    descriptions: pd.Series,
    n_control: int,
) -> SimulatedDataset:
    """The dataset with its ground truth and summary metadata."""
    measured = genes.measured
    programs = pd.DataFrame(
        biology.membership,
        index=pd.Index(genes.symbols, name="gene_name"),
        columns=[f"P{k:02d}" for k in range(int(params.n_programs))],
    )
    effects_df = pd.DataFrame(
        np.ascontiguousarray(biology.effects[:, measured]),
        index=pd.Index(genes.conditions, name="condition"),
        columns=pd.Index(genes.symbols[measured], name="gene_name"),
    )
    counts = adata.layers["counts"]
    metadata: dict[str, Any] = {
        **{k: getattr(params, k) for k in _METADATA_PARAMS},
        "n_singles": params.n_single,
        "n_combinations": params.n_combo,
        "common_share": params.common_share,
        "unmeasured_targets": [str(s) for s in genes.symbols[genes.unmeasured]],
        "n_control_cells": n_control,
        "zero_fraction": float(1.0 - counts.nnz / (params.n_cells * params.n_genes)),
        "median_pairwise_delta_correlation": median_pairwise_delta_correlation(adata),
    }
    return SimulatedDataset(
        adata=adata,
        annotations=annotations,
        programs=programs,
        effects=effects_df,
        term_descriptions=descriptions,
        metadata=metadata,
    )


_METADATA_PARAMS = (
    "n_cells", "n_genes", "n_perturbations", "combo_fraction", "diversity", "n_terms",
    "n_programs", "modality", "cell_type", "seed", "compute_de",
)  # fmt: skip


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of every value, scaled to [0, 1]."""
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.float64)
    rank[order] = np.arange(len(values))
    return rank / max(len(values) - 1, 1)


def _rms(values: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray | float:
    """Root mean square of ``values`` along the last axis, optionally of ``values * weight``.

    With ``weight``, the mean runs over the entries with positive weight (measured genes).
    """
    if weight is None:
        return np.sqrt(np.mean(np.square(values, dtype=np.float64), axis=-1))
    n = max(int(np.count_nonzero(weight > 0)), 1)
    return np.sqrt(np.sum(np.square(values * weight, dtype=np.float64), axis=-1) / n)


def _visible_norm(values: np.ndarray, visibility: np.ndarray) -> np.ndarray | float:
    """Normaliser that gives ``values`` unit visible RMS.

    Guarded by a quarter of the plain RMS over the measured genes, so that a vector whose
    entries happen to fall on invisible genes is not blown up.
    """
    plain = _rms(values, (visibility > 0).astype(np.float64))
    return np.maximum(np.maximum(_rms(values, visibility), _MIN_VISIBLE_FRACTION * plain), 1e-12)


def _sparse_unit_rows(
    rng: np.random.Generator, n_rows: int, n_cols: int, density: float, visibility: np.ndarray
) -> np.ndarray:
    """Sparse Gaussian rows, each with unit visible RMS."""
    rows = rng.normal(0.0, 1.0, (n_rows, n_cols)) * (rng.random((n_rows, n_cols)) < density)
    return rows / _visible_norm(rows, visibility)[:, None]


def _program_responses(
    rng: np.random.Generator,
    primary: np.ndarray,
    n_programs: int,
    expr_rank: np.ndarray,
    visibility: np.ndarray,
) -> np.ndarray:
    """Signed sparse downstream response of every program (program × gene, unit RMS rows).

    A program moves part of its own member genes and some other genes, preferably expressed
    ones (downstream effects of real programs are seen mostly in expressed genes).
    """
    n_universe = len(primary)
    own = primary[None, :] == np.arange(n_programs)[:, None]
    random_hit_prob = _PROGRAM_RANDOM_HIT_PROB * 3.0 * expr_rank**2
    hit = (own & (rng.random((n_programs, n_universe)) < _PROGRAM_MEMBER_HIT_PROB)) | (
        rng.random((n_programs, n_universe)) < random_hit_prob[None, :]
    )
    direction = np.where(rng.random(n_programs) < 0.5, -1.0, 1.0)[:, None]
    flip = np.where(rng.random((n_programs, n_universe)) < _PROGRAM_SIGN_CONSISTENCY, 1.0, -1.0)
    magnitude = np.exp(rng.normal(0.0, 0.5, (n_programs, n_universe)))
    responses = direction * flip * magnitude * hit
    return responses / _visible_norm(responses, visibility)[:, None]


def _common_response(
    rng: np.random.Generator, expr_rank: np.ndarray, visibility: np.ndarray
) -> np.ndarray:
    """Generic perturbation response shared by all perturbations (unit visible RMS).

    Biased towards highly expressed genes (stress, ribosome, proliferation genes) and mostly
    negative.
    """
    n_universe = len(expr_rank)
    hit = rng.random(n_universe) < 0.02 + 0.8 * expr_rank**3
    sign = np.where(rng.random(n_universe) < 0.65, -1.0, 1.0)
    values = sign * np.exp(rng.normal(0.0, 0.6, n_universe)) * hit
    return values / float(_visible_norm(values, visibility))


def _phase_multipliers(rng: np.random.Generator, n_universe: int) -> np.ndarray:
    """Expression multipliers of the G1, S and G2M cell-cycle phases (phase × gene, float32)."""
    log_mult = np.zeros((len(_PHASE_PROBS), n_universe))
    n_cycle = max(1, int(round(_CYCLE_GENE_FRACTION * n_universe)))
    genes = rng.choice(n_universe, size=2 * n_cycle, replace=False)
    log_mult[1, genes[:n_cycle]] = rng.normal(1.0, 0.3, n_cycle)
    log_mult[2, genes[n_cycle:]] = rng.normal(1.0, 0.3, n_cycle)
    return np.exp(log_mult).astype(np.float32)


def _cells_per_condition(rng: np.random.Generator, n_cells: int, n_conditions: int) -> np.ndarray:
    """Cells of every condition: control 10-15 %, the rest shared with variation, all >= 5."""
    n_pert = n_conditions - 1
    n_ctrl = max(_MIN_CELLS, int(round(rng.uniform(*_CONTROL_SHARE) * n_cells)))
    n_ctrl = min(n_ctrl, n_cells - _MIN_CELLS * n_pert)
    weights = np.exp(rng.normal(0.0, _CELLS_PER_CONDITION_LOG_SD, n_pert))
    extra = rng.multinomial(n_cells - n_ctrl - _MIN_CELLS * n_pert, weights / weights.sum())
    return np.concatenate([[n_ctrl], _MIN_CELLS + extra]).astype(np.int64)


def _draw_combinations(
    rng: np.random.Generator, singles: np.ndarray, combo_only: np.ndarray, n_combo: int
) -> list[tuple[int, int]]:
    """Distinct unordered gene pairs, mostly of genes that are also perturbed alone."""
    pairs: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    # Every combination-only gene appears at least once, paired with a single gene.
    queue = [int(g) for g in combo_only]
    attempts = 0
    while len(pairs) < n_combo:
        attempts += 1
        if attempts > 1000 * (n_combo + 10):
            raise ValueError(f"could not draw {n_combo} distinct combinations")
        if queue:
            pair = (int(rng.choice(singles)), queue[-1])
        elif len(combo_only) and rng.random() < _COMBO_ONLY_FRACTION:
            pair = (int(rng.choice(singles)), int(rng.choice(combo_only)))
        else:
            a, b = rng.choice(singles, size=2, replace=False)
            pair = (int(a), int(b))
        key = frozenset(pair)
        if key in seen:
            continue
        if queue:
            queue.pop()
        seen.add(key)
        pairs.append(pair if rng.random() < 0.5 else (pair[1], pair[0]))
    return pairs


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unique 10x-style cell barcodes (16 nucleotides + ``-1``)."""
    codes = rng.integers(0, 4**16, size=n, dtype=np.uint64)
    while True:
        _, first = np.unique(codes, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if dup.size == 0:
            break
        codes[dup] = rng.integers(0, 4**16, size=dup.size, dtype=np.uint64)
    shifts = (2 * np.arange(15, -1, -1)).astype(np.uint64)
    digits = ((codes[:, None] >> shifts[None, :]) & np.uint64(3)).astype(np.uint8)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[digits]
    seqs = np.ascontiguousarray(letters).view("S16").ravel().astype(str)
    return np.char.add(seqs, "-1").astype(object)
