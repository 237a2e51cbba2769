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

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.errors import ConditionSyntaxError

__all__ = [
    "CONTROL",
    "FILENAME",
    "HEAVY_UNS_KEYS",
    "LOG1P_MAX",
    "N_TOP_DE",
    "REQUIRED_OBS",
    "TARGET_SUM",
    "UNS_DE_KEYS",
    "Problem",
    "anndata_problems",
    "condition_name",
    "condition_problems",
    "gears_obs",
    "is_log_scale",
    "parse_condition",
    "scan_values",
    "schema_problems",
    "target_genes",
    "value_problems",
    "var_problems",
]

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

_MAX_EXAMPLES = 5
_DENSE_BLOCK_ELEMENTS = 1 << 22


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


# ----------------------------------------------------------------------------- values


def iter_value_blocks(x: Any) -> Iterator[np.ndarray]:
    """Yield the stored values of ``x`` in blocks, without densifying a sparse matrix."""
    if sp.issparse(x):
        yield np.asarray(x.data)
        return
    arr = np.asarray(x)
    if arr.ndim < 2 or arr.shape[0] == 0:
        yield arr.ravel()
        return
    rows = max(1, _DENSE_BLOCK_ELEMENTS // max(1, arr.shape[1]))
    for start in range(0, arr.shape[0], rows):
        yield arr[start : start + rows].ravel()


def scan_values(x: Any) -> tuple[bool, float]:
    """Return (all values integer, maximum value) over the stored values of ``x``."""
    all_int = True
    vmax = 0.0
    integer_dtype = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.bool_)
    for block in iter_value_blocks(x):
        if block.size == 0:
            continue
        vmax = max(vmax, float(np.max(block)))
        if all_int and not integer_dtype:
            all_int = bool(np.all(np.equal(np.mod(block, 1), 0)))
    return all_int, vmax


def is_log_scale(max_value: float) -> bool:
    """Whether a matrix with this maximum can be normalise_total + log1p data."""
    return max_value <= LOG1P_MAX


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One violation of the GEARS layout: the field that is wrong and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def condition_problems(obs: pd.DataFrame) -> list[Problem]:
    """Problems of ``obs['condition']``: missing, missing values, bad syntax, no control."""
    field = "obs['condition']"
    if "condition" not in obs.columns:
        return [
            Problem(
                field,
                "column is missing; every cell needs a GEARS condition ('ctrl', 'A+ctrl', 'A+B')",
            )
        ]
    cond = obs["condition"]
    n_missing = int(cond.isna().sum())
    if n_missing:
        return [Problem(field, f"{n_missing} cell(s) have no condition (missing value)")]
    counts = cond.astype(str).value_counts()
    bad: list[str] = []
    for value in counts.index:
        try:
            parse_condition(value)
        except ConditionSyntaxError as exc:
            bad.append(f"{exc} [{int(counts[value])} cell(s)]")
    if bad:
        shown = "; ".join(bad[:_MAX_EXAMPLES])
        more = f" (and {len(bad) - _MAX_EXAMPLES} more)" if len(bad) > _MAX_EXAMPLES else ""
        problem = f"{len(bad)} condition(s) do not follow GEARS syntax: {shown}{more}"
        return [Problem(field, problem)]
    if CONTROL not in counts.index:
        examples = ", ".join(repr(v) for v in counts.index[:_MAX_EXAMPLES])
        return [
            Problem(
                field,
                f"no control cells: no cell has condition {CONTROL!r} (conditions include "
                f"{examples}); GEARS needs control cells as the baseline",
            )
        ]
    return []


def value_problems(x: Any, *, log_scale: bool = False) -> list[Problem]:
    """Problems of the expression matrix: not numeric, NaN, infinite, negative values.

    Sparse matrices are checked on their stored values without densifying; dense ones block by
    block. With ``log_scale``, a maximum above :data:`LOG1P_MAX` is a problem too (the check on
    normalised data; raw counts pass without it).
    """
    if x is None:
        return [Problem("X", "the expression matrix is missing")]
    dtype = x.dtype
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        return [Problem("X", f"expression values must be numeric, got dtype {dtype}")]
    if np.issubdtype(dtype, np.complexfloating):
        return [Problem("X", f"expression values must be real, got dtype {dtype}")]
    counts = _bad_value_counts(x, dtype)
    problems = []
    found = [f"{n} {what} value(s)" for what, n in counts.items() if n]
    if found:
        problems.append(
            Problem(
                "X",
                "expression must be finite and non-negative (raw counts or log1p-normalised), "
                f"found {', '.join(found)}",
            )
        )
    if log_scale:
        vmax = _finite_max(x)
        if not is_log_scale(vmax):
            problems.append(
                Problem("X", f"maximum {vmax:.4g} > log1p(1e6) = {LOG1P_MAX:.4g}: not log scale")
            )
    return problems


def _finite_max(x: Any) -> float:
    vmax = 0.0
    for block in iter_value_blocks(x):
        finite = block[np.isfinite(block)] if block.dtype.kind == "f" else block
        if finite.size:
            vmax = max(vmax, float(np.max(finite)))
    return vmax


def _bad_value_counts(x: Any, dtype: np.dtype) -> dict[str, int]:
    counts = {"NaN": 0, "infinite": 0, "negative": 0}
    is_float = np.issubdtype(dtype, np.floating)
    signed = np.issubdtype(dtype, np.signedinteger) or is_float
    for block in iter_value_blocks(x):
        if is_float:
            counts["NaN"] += int(np.count_nonzero(np.isnan(block)))
            counts["infinite"] += int(np.count_nonzero(np.isinf(block)))
        if signed:
            counts["negative"] += int(np.count_nonzero(block < 0))
    return counts


def var_problems(var_names: Iterable[Any]) -> list[Problem]:
    """Problems of the gene identifiers: duplicates."""
    names = pd.Index(var_names)
    if not names.has_duplicates:
        return []
    dup = names[names.duplicated()].unique()
    examples = ", ".join(repr(str(v)) for v in dup[:_MAX_EXAMPLES])
    return [
        Problem(
            "var_names",
            f"{len(dup)} duplicate gene identifier(s), e.g. {examples}; gene identifiers must "
            "be unique (use var_names_make_unique() or aggregate the duplicates)",
        )
    ]


def schema_problems(adata: ad.AnnData) -> list[Problem]:
    """Problems of a *loaded* dataset's annotation: the required obs/var columns."""
    problems = [
        Problem(f"obs['{col}']", "column is missing")
        for col in REQUIRED_OBS
        if col not in adata.obs.columns
    ]
    if "gene_name" not in adata.var.columns:
        problems.append(Problem("var['gene_name']", "column is missing"))
    return problems


def anndata_problems(adata: ad.AnnData, *, loaded: bool = False) -> list[Problem]:
    """Every violation of the GEARS layout, most basic first.

    Checks, in order: cells and genes present; ``obs['condition']`` present, without missing
    values and in GEARS syntax; control cells present; ``X`` numeric, finite and non-negative;
    unique ``var_names``. With ``loaded`` (a dataset after :func:`load_gears_dataset` and
    normalisation) also the filled-in annotation columns and the log scale of ``X``.

    A perturbation target that is not among the measured genes is *not* a problem.
    """
    if adata.n_obs == 0:
        return [Problem("obs", "the dataset has no cells")]
    if adata.n_vars == 0:
        return [Problem("var", "the dataset has no genes")]
    return [
        *condition_problems(adata.obs),
        *value_problems(adata.X, log_scale=loaded),
        *var_problems(adata.var_names),
        *(schema_problems(adata) if loaded else []),
    ]
