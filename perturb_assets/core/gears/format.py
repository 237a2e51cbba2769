"""The GEARS dataset format, stated once: file names, condition grammar, constants, validation.

cell-gears (``PertData.load``) reads a folder holding ``perturb_processed.h5ad``: an AnnData
whose

* ``obs['condition']`` is ``ctrl`` (control cells), ``A+ctrl`` / ``ctrl+A`` (a single
  perturbation of gene ``A``) or ``A+B`` (a combination); nothing else is valid;
* ``obs['cell_type']`` and ``obs['condition_name']`` (``f"{cell_type}_{condition}_{dose_val}"``,
  see :func:`condition_name`) annotate every cell;
* ``var['gene_name']`` holds the gene symbols the perturbation targets are matched against;
* ``X`` is ``normalize_total(1e4)`` + ``log1p`` expression.

Every module that reads, writes, checks or simulates such data takes the names and rules from
here. Validation *returns* problems (:func:`anndata_problems` and its parts), so loaders turn
the first into an error that names the file and the field, and asset checks report them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from perturb_assets.core.errors import ConditionSyntaxError

__all__ = [
    "CONTROL",
    "FILENAME",
    "HEAVY_UNS_KEYS",
    "LOG1P_MAX",
    "N_TOP_DE",
    "REQUIRED_OBS",
    "TARGET_SUM",
    "UNS_KEY",
    "UNS_DE_KEYS",
    "condition_name",
    "gears_obs",
    "parse_condition",
    "target_genes",
]

#: Key in ``adata.uns`` where this package records what it did to a dataset.
UNS_KEY = "perturb_assets"

#: File name of the AnnData inside a GEARS dataset folder.
FILENAME = "perturb_processed.h5ad"
#: The control condition: the baseline every perturbation is compared with.
CONTROL = "ctrl"
#: Library size GEARS normalises each cell to before ``log1p``.
TARGET_SUM = 1e4
#: Largest value a normalise_total + log1p matrix can plausibly hold: ``log1p(1e6)``. A cell
#: whose counts all fall on one gene gives ``log1p(1e4)`` ~ 9.2; 1e6 leaves headroom for other
#: target sums. The one log-scale rule of the platform (:func:`is_log_scale`).
LOG1P_MAX = float(np.log1p(1e6))
#: Length of the DE-gene lists the metrics use (the reference's ``[:20]``).
N_TOP_DE = 20
#: ``obs`` columns every loaded dataset has (missing ones of user files are filled in).
REQUIRED_OBS: tuple[str, ...] = ("condition", "cell_type", "condition_name")
#: The ``uns`` keys cell-gears' ``get_DE_genes`` + ``get_dropout_non_zero_genes`` write.
UNS_DE_KEYS: tuple[str, ...] = (
    "rank_genes_groups_cov_all",
    "top_non_dropout_de_20",
    "top_non_zero_de_20",
    "non_dropout_gene_idx",
    "non_zeros_gene_idx",
)
#: The ``uns`` fields that hold per-condition index lists (large at Replogle scale).
HEAVY_UNS_KEYS: tuple[str, ...] = (
    "rank_genes_groups_cov_all",
    "non_dropout_gene_idx",
    "non_zeros_gene_idx",
)


# ----------------------------------------------------------------------------- conditions


def parse_condition(condition: str) -> tuple[str, ...]:
    """Return the target genes of a GEARS condition.

    Parameters
    ----------
    condition
        ``"ctrl"``, ``"A+ctrl"``, ``"ctrl+A"`` or ``"A+B"``.

    Returns
    -------
    tuple of str
        ``()`` for control, ``("A",)`` for a single, ``("A", "B")`` for a combination.

    Raises
    ------
    ConditionSyntaxError
        If the condition has more than two parts, an empty gene name, or is ``ctrl+ctrl``.
    """
    if not isinstance(condition, str):
        raise ConditionSyntaxError(f"condition {condition!r} is not a string")
    if condition == CONTROL:
        return ()
    parts = condition.split("+")
    if len(parts) != 2:
        raise ConditionSyntaxError(
            f"condition {condition!r} has {len(parts)} part(s); GEARS allows 'ctrl', "
            "'A+ctrl', 'ctrl+A' or 'A+B' (at most two genes)"
        )
    if any(p.strip() == "" for p in parts):
        raise ConditionSyntaxError(f"condition {condition!r} has an empty gene name")
    if any(p != p.strip() for p in parts):
        raise ConditionSyntaxError(f"condition {condition!r} has whitespace around a gene name")
    genes = tuple(p for p in parts if p != CONTROL)
    if not genes:
        raise ConditionSyntaxError(f"condition {condition!r} perturbs no gene; write 'ctrl'")
    return genes


def target_genes(conditions: Iterable[str]) -> list[str]:
    """Sorted unique target genes of ``conditions`` (control contributes none)."""
    return sorted({g for c in conditions for g in parse_condition(c)})


def condition_name(cell_type: str, condition: str) -> str:
    """GEARS' ``condition_name`` of a cell: ``f"{cell_type}_{condition}_{dose_val}"``.

    Same rule as cell-gears 0.1.2 ``get_DE_genes``, quirk included: ``dose_val`` is ``'1+1'``
    for *every* two-part condition (singles ``A+ctrl`` as well as combinations) and ``'1'``
    only for ``ctrl``.
    """
    dose_val = "1+1" if len(condition.split("+")) == 2 else "1"
    return f"{cell_type}_{condition}_{dose_val}"


def gears_obs(conditions: Sequence[str] | np.ndarray, cell_type: str) -> pd.DataFrame:
    """The GEARS ``obs`` columns for a sequence of per-cell conditions.

    Parameters
    ----------
    conditions
        Condition of every cell.
    cell_type
        Cell type of every cell.

    Returns
    -------
    pandas.DataFrame
        Categorical columns ``condition``, ``cell_type``, ``dose_val`` (``'1+1'`` for every
        two-part condition, ``'1'`` for ``ctrl``), ``control`` (0 / 1) and ``condition_name``
        (:func:`condition_name`), with a default ``RangeIndex`` (set the barcodes afterwards).
    """
    cond = pd.Series(np.asarray(conditions, dtype=object))
    uniq = pd.Index(pd.unique(cond))
    two_part = np.array([len(c.split("+")) == 2 for c in uniq])
    dose_u = np.where(two_part, "1+1", "1")
    control_u = np.where(two_part, 0, 1).astype(np.int64)
    name_u = np.array([condition_name(cell_type, c) for c in uniq])
    codes = uniq.get_indexer(cond)
    return pd.DataFrame(
        {
            "condition": pd.Categorical(cond),
            "cell_type": pd.Categorical([cell_type] * len(cond)),
            "dose_val": pd.Categorical(dose_u[codes]),
            "control": pd.Categorical(control_u[codes]),
            "condition_name": pd.Categorical(name_u[codes]),
        }
    )
