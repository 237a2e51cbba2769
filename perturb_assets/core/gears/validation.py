"""Validation of a GEARS dataset: problems as values, and the loaders' raising checks.

Every check returns :class:`Problem` objects (``condition_problems``, ``value_problems``,
``var_problems``, ``schema_problems``, ``anndata_problems``), so an asset check can report them
all; :func:`validate_expression` and :func:`validate_gears_anndata` raise the first as a
:class:`~perturb_assets.core.errors.DatasetError` naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.errors import ConditionSyntaxError, DatasetError
from perturb_assets.core.gears.format import CONTROL, LOG1P_MAX, REQUIRED_OBS, parse_condition

__all__ = [
    "Problem",
    "anndata_problems",
    "condition_problems",
    "is_log_scale",
    "scan_values",
    "schema_problems",
    "validate_expression",
    "validate_gears_anndata",
    "value_problems",
    "var_problems",
]


# ----------------------------------------------------------------------------- validation


def _raise_first(problems: list[Problem], path: str | PathLike | None) -> None:
    if problems:
        raise DatasetError(path, problems[0].field, problems[0].message)


def validate_expression(adata: ad.AnnData, path: str | PathLike | None = None) -> None:
    """Check that the expression matrix ``X`` is numeric, finite and non-negative.

    Sparse matrices are checked on their stored values (``.data``) without densifying; dense
    matrices are checked block by block (:func:`perturb_assets.core.gears.value_problems`).

    Parameters
    ----------
    adata
        The dataset.
    path
        File the dataset came from, named in the error; ``None`` for in-memory data.

    Raises
    ------
    DatasetError
        If ``X`` is missing or not numeric, or holds NaN, infinite or negative values (the error
        gives the number of bad values).
    """
    _raise_first(value_problems(adata.X), path)


def validate_gears_anndata(adata: ad.AnnData, path: str | PathLike | None = None) -> None:
    """Validate an AnnData against the GEARS layout.

    Checks, in order: ``obs['condition']`` present, without missing values and in GEARS syntax
    (at most two genes, no empty gene name); control cells (``ctrl``) present; ``X`` finite and
    non-negative; unique ``var_names`` (:func:`perturb_assets.core.gears.anndata_problems`).

    A perturbation target that is not among the measured genes is *not* an error (see
    :func:`dataset_summary`).

    Parameters
    ----------
    adata
        The dataset.
    path
        File the dataset came from, named in the error; ``None`` for in-memory data.

    Raises
    ------
    DatasetError
        On the first violated rule, naming the file and the field.
    """
    _raise_first(anndata_problems(adata), path)


_MAX_EXAMPLES = 5
_DENSE_BLOCK_ELEMENTS = 1 << 22


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
