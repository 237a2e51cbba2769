"""Loading, validating and registering GEARS Perturb-seq datasets.

A *GEARS dataset* is a folder holding ``perturb_processed.h5ad`` (the layout that cell-gears'
``PertData.load`` extracts from its Harvard Dataverse zip archives), or a bare ``.h5ad`` file.
The AnnData follows the GEARS conventions:

* ``obs['condition']``: ``ctrl``, ``A+ctrl`` / ``ctrl+A`` (single) or ``A+B`` (combination);
* ``obs['cell_type']`` and ``obs['condition_name']`` (``f"{cell_type}_{condition}_{dose_val}"``);
* ``var['gene_name']``: gene symbols, matched against the perturbation targets;
* ``X``: normalise_total(1e4) + log1p expression, usually a CSR matrix.

Raw-count user files are accepted too: missing annotation fields are filled in (and recorded in
``adata.uns['perturb_assets']['filled_fields']``) and :func:`normalize_expression` turns counts into
the GEARS scale.

Dataset layout under a data root::

    <data_root>/gears/<builtin name>/perturb_processed.h5ad   (downloaded, see ``download.py``)
    <data_root>/datasets/<user name>/perturb_processed.h5ad  (user dataset, GEARS folder)
    <data_root>/datasets/<user name>.h5ad                    (user dataset, bare file)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from perturb_assets.core import gears
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.presets import PRESETS

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS_SUBDIR",
    "GEARS_SUBDIR",
    "UNS_KEY",
    "BuiltinDataset",
    "add_user_dataset",
    "builtin_dataset_dir",
    "dataset_summary",
    "discover_user_datasets",
    "is_log_normalized",
    "is_valid_dataset_name",
    "load_expression",
    "load_gears_dataset",
    "normalize_expression",
    "user_datasets_dir",
    "validate_dataset_name",
    "validate_expression",
    "validate_gears_anndata",
]

logger = logging.getLogger(__name__)

#: Sub-folder of the data root that holds user datasets.
DATASETS_SUBDIR = "datasets"
#: Sub-folder of the data root that holds downloaded built-in GEARS datasets.
GEARS_SUBDIR = "gears"
#: Key in ``adata.uns`` where this package records what it did to a dataset.
UNS_KEY = "perturb_assets"
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset the platform knows how to obtain without user input.

    Parameters
    ----------
    name
        Dataset name (also the folder name of the extracted GEARS archive).
    file_id
        Harvard Dataverse file id of the GEARS zip archive (as in cell-gears'
        ``PertData.load``); ``None`` for datasets generated locally.
    description
        One-line description.
    """

    name: str
    file_id: int | None
    description: str

    @property
    def is_downloadable(self) -> bool:
        """Whether the dataset is fetched from Dataverse (as opposed to generated locally)."""
        return self.file_id is not None


#: Built-in datasets: the four GEARS Dataverse datasets and the simulator's presets.
BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "adamson": BuiltinDataset(
        "adamson", 6154417, "Adamson et al. 2016, K562 CRISPRi, single perturbations"
    ),
    "norman": BuiltinDataset(
        "norman", 6154020, "Norman et al. 2019, K562 CRISPRa, single and double perturbations"
    ),
    "replogle_k562_essential": BuiltinDataset(
        "replogle_k562_essential",
        7458695,
        "Replogle et al. 2022, K562 essential genes (GEARS-filtered subset)",
    ),
    "replogle_rpe1_essential": BuiltinDataset(
        "replogle_rpe1_essential",
        7458694,
        "Replogle et al. 2022, RPE1 essential genes (GEARS-filtered subset)",
    ),
    # Simulated locally, one per simulator preset: synthetic, adamson_like, ... rpe1_like.
    **{name: BuiltinDataset(name, None, preset.description) for name, preset in PRESETS.items()},
}


# ----------------------------------------------------------------------------- names and layout


def is_valid_dataset_name(name: object) -> bool:
    """Whether ``name`` is a valid dataset name (see :func:`validate_dataset_name`)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def validate_dataset_name(name: str) -> str:
    """Check that ``name`` is a safe dataset name and return it.

    A dataset name has 1 to 64 characters out of lowercase ASCII letters, digits and ``_`` and
    starts with a letter. This keeps names usable as folder names, Dagster partition keys and
    asset-key parts, and rules out path traversal (``../x``, ``a/b``).

    Parameters
    ----------
    name
        Candidate name.

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    ValueError
        If ``name`` is not a valid dataset name.
    """
    if not is_valid_dataset_name(name):
        raise ValueError(
            f"invalid dataset name {name!r}: use 1-64 characters out of lowercase letters, "
            "digits and '_', starting with a letter (e.g. 'my_screen_2024')"
        )
    return name


def user_datasets_dir(root: str | PathLike) -> Path:
    """Folder that holds user datasets: ``<root>/datasets``."""
    return Path(root) / DATASETS_SUBDIR


def builtin_dataset_dir(name: str, root: str | PathLike) -> Path:
    """Folder of an extracted built-in GEARS dataset: ``<root>/gears/<name>``.

    Raises
    ------
    ValueError
        If ``name`` is not a valid dataset name.
    """
    return Path(root) / GEARS_SUBDIR / validate_dataset_name(name)


# ----------------------------------------------------------------------------- validation


def _raise_first(problems: list[gears.Problem], path: str | PathLike | None) -> None:
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
    _raise_first(gears.value_problems(adata.X), path)


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
    _raise_first(gears.anndata_problems(adata), path)


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


# ----------------------------------------------------------------------------- normalisation


def is_log_normalized(adata: ad.AnnData) -> bool:
    """Guess whether ``X`` is already normalise_total + log1p transformed (the GEARS scale).

    Heuristic: ``X`` is log-normalised when it holds at least one non-integer value and its
    maximum passes :func:`perturb_assets.core.gears.is_log_scale` (at most ``log1p(1e6)`` ~ 13.8).
    An all-integer ``X`` is taken to be raw counts. A non-integer ``X`` with larger values
    (e.g. normalised but not logged) is neither; :func:`normalize_expression` refuses it.

    Parameters
    ----------
    adata
        The dataset; ``X`` is scanned once (sparse ``.data`` only).

    Returns
    -------
    bool
        ``True`` for log-normalised data.
    """
    all_int, vmax = gears.scan_values(adata.X)
    return (not all_int) and gears.is_log_scale(vmax)


def normalize_expression(adata: ad.AnnData) -> ad.AnnData:
    """Bring ``X`` to the GEARS scale: normalise_total(1e4) followed by log1p.

    Already log-normalised data (see :func:`is_log_normalized`) is returned unchanged (as a
    copy). Raw counts (integer-valued ``X``) are normalised with
    ``sc.pp.normalize_total(target_sum=1e4)`` and ``sc.pp.log1p``; the counts are kept in
    ``layers['counts']``. ``adata.uns['perturb_assets']['normalization']`` records the path
    taken: ``'already_log_normalized'`` or ``'normalize_total_1e4_log1p'``.

    Parameters
    ----------
    adata
        The dataset; not modified.

    Returns
    -------
    anndata.AnnData
        A new AnnData whose ``X`` is a CSR sparse matrix (dense input is converted).

    Raises
    ------
    DatasetError
        If ``X`` is invalid (see :func:`validate_expression`) or neither raw counts nor
        log-normalised (non-integer values above ``gears.LOG1P_MAX``).
    """
    validate_expression(adata, None)
    all_int, vmax = gears.scan_values(adata.X)
    out = adata.copy()
    uns = dict(out.uns.get(UNS_KEY, {}))
    if not all_int and gears.is_log_scale(vmax):
        if not sp.issparse(out.X):
            out.X = sp.csr_matrix(out.X)
        uns["normalization"] = "already_log_normalized"
    elif all_int:
        counts = sp.csr_matrix(out.X)
        out.layers["counts"] = counts.copy()
        out.X = counts.astype(np.float32)
        sc.pp.normalize_total(out, target_sum=gears.TARGET_SUM)
        sc.pp.log1p(out)
        if not sp.issparse(out.X):  # pragma: no cover - scanpy keeps CSR input sparse
            out.X = sp.csr_matrix(out.X)
        uns["normalization"] = "normalize_total_1e4_log1p"
    else:
        raise DatasetError(
            uns.get("source_path"),
            "X",
            f"values are non-integer with maximum {vmax:.4g} > log1p(1e6) = {gears.LOG1P_MAX:.4g}: "
            "neither raw counts nor normalise_total+log1p data; provide raw counts or "
            "log1p-normalised expression",
        )
    out.uns[UNS_KEY] = uns
    return out


def load_expression(path: str | PathLike) -> ad.AnnData:
    """Load a dataset the way the platform stores it: validated, on the GEARS scale, lean.

    :func:`load_gears_dataset` then :func:`normalize_expression`; GEARS' per-condition gene
    lists in ``uns`` (:data:`perturb_assets.core.gears.HEAVY_UNS_KEYS`, conditions × genes
    of indices) are dropped, since DE genes are recomputed downstream.
    """
    adata = normalize_expression(load_gears_dataset(path))
    for key in gears.HEAVY_UNS_KEYS:
        adata.uns.pop(key, None)
    return adata


# ----------------------------------------------------------------------------- user datasets


def discover_user_datasets(root: str | PathLike) -> dict[str, Path]:
    """Find user datasets under ``<root>/datasets``.

    A user dataset is a GEARS folder ``<root>/datasets/<name>/`` holding
    ``perturb_processed.h5ad`` or a file ``<root>/datasets/<name>.h5ad``. Entries whose name
    starts with ``.`` (temporary files of :func:`add_user_dataset`) and files that are not
    ``.h5ad`` are ignored. Entries with an invalid name, a name of a built-in dataset, or a
    folder without ``perturb_processed.h5ad`` are skipped with a warning. The files are not
    opened; :func:`load_gears_dataset` validates them.

    Parameters
    ----------
    root
        The data root.

    Returns
    -------
    dict of str to pathlib.Path
        Dataset name to its folder or ``.h5ad`` file, sorted by name.
    """
    base = user_datasets_dir(root)
    if not base.is_dir():
        return {}
    found: dict[str, Path] = {}
    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            name = entry.name
            if not (entry / gears.FILENAME).is_file():
                warnings.warn(
                    f"skipping {entry}: the folder has no {gears.FILENAME}",
                    UserWarning,
                    stacklevel=2,
                )
                continue
        elif entry.is_file() and entry.suffix == ".h5ad":
            name = entry.stem
        else:
            continue
        if not is_valid_dataset_name(name):
            warnings.warn(
                f"skipping {entry}: {name!r} is not a valid dataset name (1-64 lowercase "
                "letters, digits or '_', starting with a letter)",
                UserWarning,
                stacklevel=2,
            )
            continue
        if name in BUILTIN_DATASETS:
            warnings.warn(
                f"skipping {entry}: {name!r} is the name of a built-in dataset; rename it",
                UserWarning,
                stacklevel=2,
            )
            continue
        if name in found:
            warnings.warn(
                f"skipping {entry}: dataset {name!r} is already provided by {found[name]}",
                UserWarning,
                stacklevel=2,
            )
            continue
        found[name] = entry
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def add_user_dataset(
    source: str | PathLike,
    name: str,
    root: str | PathLike,
    link: bool = False,
    *,
    overwrite: bool = False,
) -> Path:
    """Validate a dataset and register it as user dataset ``name`` under ``<root>/datasets``.

    A GEARS folder becomes ``<root>/datasets/<name>/perturb_processed.h5ad`` (only that file is
    copied); an ``.h5ad`` file becomes ``<root>/datasets/<name>.h5ad``. The copy (or, with
    ``link=True``, a symbolic link to the absolute source path) is first written under a
    temporary ``.``-prefixed name in the same folder and then moved into place with
    ``os.replace``, so a failure never leaves a half-written dataset.

    Parameters
    ----------
    source
        GEARS dataset folder or ``.h5ad`` file.
    name
        Dataset name (see :func:`validate_dataset_name`); must not be a built-in name.
    root
        The data root.
    link
        Symlink to ``source`` instead of copying it (for large files that must stay put).
    overwrite
        Replace an existing user dataset of the same name.

    Returns
    -------
    pathlib.Path
        The registered folder or file.

    Raises
    ------
    ValueError
        If ``name`` is invalid or the name of a built-in dataset.
    FileExistsError
        If a user dataset ``name`` exists and ``overwrite`` is false.
    DatasetError
        If ``source`` does not load or validate (nothing is written then).
    """
    validate_dataset_name(name)
    if name in BUILTIN_DATASETS:
        raise ValueError(f"{name!r} is the name of a built-in dataset; choose another name")
    base = user_datasets_dir(root)
    existing = [p for p in (base / name, base / f"{name}.h5ad") if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"user dataset {name!r} already exists at {existing[0]}; pass overwrite=True to "
            "replace it"
        )

    src = Path(source)
    src_h5ad = _resolve_h5ad(src)
    load_gears_dataset(src_h5ad)  # raises DatasetError before anything is written

    base.mkdir(parents=True, exist_ok=True)
    is_folder = src.is_dir()
    final = base / name if is_folder else base / f"{name}.h5ad"
    tmp = base / f".tmp-{name}-{uuid.uuid4().hex}"
    try:
        if link:
            os.symlink((src if is_folder else src_h5ad).resolve(), tmp)
        elif is_folder:
            tmp.mkdir()
            shutil.copyfile(src_h5ad, tmp / gears.FILENAME)
        else:
            shutil.copyfile(src_h5ad, tmp)
    except BaseException:
        _remove(tmp)
        raise
    # Move the old dataset (either form) out of the way, then put the new one in place; on
    # failure put the old one back.
    trash: list[tuple[Path, Path]] = []
    try:
        for old in existing:
            moved = base / f".trash-{name}-{uuid.uuid4().hex}"
            os.replace(old, moved)
            trash.append((old, moved))
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        for old, moved in trash:
            os.replace(moved, old)
        raise
    for _, moved in trash:
        _remove(moved)
    logger.info("registered user dataset %r at %s", name, final)
    return final
