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

from perturb_assets.core import gears
from perturb_assets.core.datasets.loading import _resolve_h5ad, load_expression
from perturb_assets.core.datasets.usability import usability_problems
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.simulation.presets import PRESETS

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "DATASETS_SUBDIR",
    "GEARS_SUBDIR",
    "add_user_dataset",
    "builtin_dataset_dir",
    "discover_user_datasets",
    "is_valid_dataset_name",
    "user_datasets_dir",
    "validate_dataset_name",
]

logger = logging.getLogger(__name__)

#: Sub-folder of the data root that holds user datasets.
DATASETS_SUBDIR = "datasets"
#: Sub-folder of the data root that holds downloaded built-in GEARS datasets.
GEARS_SUBDIR = "gears"
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


# ----------------------------------------------------------------------------- user datasets


def _stays_inside(entry: Path, root: Path) -> bool:
    """Whether ``entry`` (and, for a folder, its GEARS file) resolves inside ``root``."""
    targets = [entry, entry / gears.FILENAME] if entry.is_dir() else [entry]
    return all(t.resolve().is_relative_to(root) for t in targets)


def discover_user_datasets(root: str | PathLike) -> dict[str, Path]:
    """Find user datasets under ``<root>/datasets``.

    A user dataset is a GEARS folder ``<root>/datasets/<name>/`` holding
    ``perturb_processed.h5ad`` or a file ``<root>/datasets/<name>.h5ad``. Entries whose name
    starts with ``.`` (temporary files of :func:`add_user_dataset`) and files that are not
    ``.h5ad`` are ignored. Entries with an invalid name, a name of a built-in dataset, or a
    folder without ``perturb_processed.h5ad`` are skipped with a warning, and so are symbolic
    links that leave the data root (the data root is the boundary of what the platform reads).
    The files are not
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
    inside = Path(root).resolve()
    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            continue
        if not _stays_inside(entry, inside):
            warnings.warn(
                f"skipping {entry}: it links to {entry.resolve()}, outside the data root "
                f"{inside}; copy the dataset in (perturb-assets add-dataset) instead",
                UserWarning,
                stacklevel=2,
            )
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
    if link and not src_h5ad.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(
            f"{src_h5ad}: a linked dataset must lie inside the data root {root} (links that "
            "leave it are refused); copy it instead (link=False)"
        )
    # The same checks as the expression asset, before anything is written: a dataset that is
    # accepted here also runs.
    adata = load_expression(src_h5ad)
    for field, problem in usability_problems(adata):
        raise DatasetError(src_h5ad, field, problem)

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
