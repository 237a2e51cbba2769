"""Atomic file writes: a reader never sees a half-written file.

Only files: ``os.replace`` swaps a file in one step, but no call swaps a non-empty folder, and a
two-rename swap leaves nothing behind if the process dies between the renames. Folders (zarr
stores, model folders) go through :class:`perturb_assets.core.io.VersionedStore`, whose
versioned folders and pointer file keep the previous version readable at every instant.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "atomic_write",
]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it into place.

    The temporary name keeps ``path``'s suffix (some writers check it). If ``write`` or the
    rename fails, ``path`` keeps its previous content and the temporary is removed; a process
    killed mid-write leaves a ``.<name>.<tag>.tmp<suffix>`` file that ``perturb-assets gc``
    removes.

    Parameters
    ----------
    path
        Final file; parent folders are created.
    write
        Writes the content to the path it is given (a file).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder or ``write`` made one: use ``VersionedStore`` for folders.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; store folders with core.io.VersionedStore")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    try:
        write(tmp)
        if tmp.is_dir():
            raise IsADirectoryError(
                f"{path}: the writer made a folder; store folders with core.io.VersionedStore"
            )
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return path
