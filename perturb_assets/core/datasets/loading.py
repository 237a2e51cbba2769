"""Loading a GEARS dataset file the way the platform stores it (the ``expression`` asset).

:func:`load_gears_dataset` reads and validates a ``perturb_processed.h5ad`` (or a bare
``.h5ad``), filling GEARS fields a user file may lack; :func:`load_expression` adds the
log-normalisation (:func:`perturb_assets.core.pp.normalize_expression`) and drops heavy ``uns``
lists; :func:`dataset_summary` describes the result.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core import gears
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears.format import UNS_KEY
from perturb_assets.core.gears.validation import _raise_first, validate_gears_anndata
from perturb_assets.core.pp.normalize import is_log_normalized, normalize_expression

__all__ = [
    "dataset_summary",
    "load_expression",
    "load_gears_dataset",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- loading


def _resolve_h5ad(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(
            path,
            "path",
            "does not exist; give a GEARS dataset folder (holding "
            f"{gears.FILENAME}) or an .h5ad file",
        )
    if path.is_dir():
        h5ad = path / gears.FILENAME
        if not h5ad.is_file():
            raise DatasetError(
                h5ad,
                gears.FILENAME,
                f"the folder {path} has no {gears.FILENAME}; a GEARS dataset folder must hold it",
            )
        return h5ad
    return path


def _read_h5ad(h5ad: Path) -> ad.AnnData:
    try:
        return ad.read_h5ad(h5ad)
    except MemoryError:
        raise
    except Exception as exc:  # h5py/OSError/KeyError/ValueError/... from a damaged file
        raise DatasetError(
            h5ad,
            "file",
            "cannot be read: the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc}); re-download or re-export it",
        ) from exc


def _fill_missing_fields(adata: ad.AnnData) -> list[str]:
    filled: list[str] = []
    adata.obs["condition"] = pd.Categorical(adata.obs["condition"].astype(str))
    if "gene_name" not in adata.var.columns:
        adata.var["gene_name"] = adata.var_names.astype(str)
        filled.append("var['gene_name']")
    if "cell_type" not in adata.obs.columns:
        adata.obs["cell_type"] = pd.Categorical(["unknown"] * adata.n_obs)
        filled.append("obs['cell_type']")
    if "condition_name" not in adata.obs.columns:
        names = [
            gears.condition_name(str(ct), str(c))
            for ct, c in zip(adata.obs["cell_type"], adata.obs["condition"], strict=True)
        ]
        adata.obs["condition_name"] = pd.Categorical(names)
        filled.append("obs['condition_name']")
    return filled


def load_gears_dataset(path: str | PathLike) -> ad.AnnData:
    """Load and validate a GEARS dataset.

    Parameters
    ----------
    path
        A GEARS dataset folder holding ``perturb_processed.h5ad``, or an ``.h5ad`` file
        (GEARS-processed or a raw-count user file).

    Returns
    -------
    anndata.AnnData
        The dataset, in memory. ``obs['condition']`` is a str categorical. Missing annotation
        of raw user files is filled in: ``var['gene_name']`` from ``var_names``,
        ``obs['cell_type']`` as ``'unknown'`` and ``obs['condition_name']`` by the GEARS rule
        ``f"{cell_type}_{condition}_{dose_val}"``; the filled fields are listed in
        ``adata.uns['perturb_assets']['filled_fields']``. ``X`` is *not* normalised here; see
        :func:`normalize_expression`.

    Raises
    ------
    DatasetError
        Naming the file and field, if the path is missing, the file is truncated or corrupt, or
        the data violates the GEARS layout (see :func:`validate_gears_anndata`).
    """
    h5ad = _resolve_h5ad(Path(path))
    adata = _read_h5ad(h5ad)
    validate_gears_anndata(adata, h5ad)
    filled = _fill_missing_fields(adata)
    uns = dict(adata.uns.get(UNS_KEY, {}))
    uns["source_path"] = str(h5ad)
    uns["filled_fields"] = filled
    adata.uns[UNS_KEY] = uns
    if filled:
        logger.info("%s: filled in missing field(s) %s", h5ad, ", ".join(filled))
    return adata


# ----------------------------------------------------------------------------- summary


def _measured_gene_names(adata: ad.AnnData) -> set[str]:
    if "gene_name" in adata.var.columns:
        return {str(g) for g in adata.var["gene_name"]}
    return {str(g) for g in adata.var_names}


def dataset_summary(adata: ad.AnnData) -> dict[str, Any]:
    """Summarise a GEARS dataset (JSON-serialisable, for asset metadata and reports).

    Parameters
    ----------
    adata
        A dataset that passes :func:`validate_gears_anndata`.

    Returns
    -------
    dict
        ``n_cells``, ``n_genes``, ``n_conditions`` (including ``ctrl``), ``n_perturbations``
        (excluding ``ctrl``), ``n_single``, ``n_combo``, ``n_control_cells``,
        ``n_perturbed_cells``, ``n_targets`` (distinct target genes), ``n_targets_measured``
        (targets found in ``var['gene_name']``, or in ``var_names`` without that column),
        ``unmeasured_targets`` (sorted list; a target that is not measured is normal, e.g.
        CRISPRi knock-down of a gene filtered out as lowly expressed), ``cell_types``,
        ``is_sparse``, ``x_dtype`` and ``is_log_normalized``.

    Raises
    ------
    DatasetError
        If ``obs['condition']`` is missing or not in GEARS syntax.
    """
    _raise_first(gears.condition_problems(adata.obs), None)
    cond = adata.obs["condition"].astype(str)
    counts = cond.value_counts()
    n_single = n_combo = 0
    targets: set[str] = set()
    for value in counts.index:
        genes = gears.parse_condition(value)
        targets.update(genes)
        if len(genes) == 1:
            n_single += 1
        elif len(genes) == 2:
            n_combo += 1
    measured = _measured_gene_names(adata)
    unmeasured = sorted(targets - measured)
    n_control = int(counts.get(gears.CONTROL, 0))
    cell_types = (
        sorted({str(c) for c in adata.obs["cell_type"]}) if "cell_type" in adata.obs else []
    )
    return {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_conditions": int(len(counts)),
        "n_perturbations": int(n_single + n_combo),
        "n_single": int(n_single),
        "n_combo": int(n_combo),
        "n_control_cells": n_control,
        "n_perturbed_cells": int(adata.n_obs) - n_control,
        "n_targets": len(targets),
        "n_targets_measured": len(targets) - len(unmeasured),
        "unmeasured_targets": unmeasured,
        "cell_types": cell_types,
        "is_sparse": bool(sp.issparse(adata.X)),
        "x_dtype": str(adata.X.dtype),
        "is_log_normalized": is_log_normalized(adata),
    }


def load_expression(path: str | PathLike) -> ad.AnnData:
    """Load a dataset the way the platform stores it: validated, on the GEARS scale, lean.

    :func:`load_gears_dataset` then :func:`normalize_expression`; GEARS' per-condition gene
    lists in ``uns`` (:data:`perturb_assets.core.gears.HEAVY_UNS_KEYS`, conditions × genes
    of indices) are dropped, since DE genes are recomputed downstream; ``uns['perturb_assets']``
    keeps the file's name (``source_file``), not its path.
    """
    adata = normalize_expression(load_gears_dataset(path))
    for key in gears.HEAVY_UNS_KEYS:
        adata.uns.pop(key, None)
    # The stored value names its file, not where the data root is (the same in every root).
    uns = dict(adata.uns[UNS_KEY])
    uns["source_file"] = Path(uns.pop("source_path")).name
    adata.uns[UNS_KEY] = uns
    return adata
