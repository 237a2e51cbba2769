"""Atomic writes: a reader never sees a half-written file or folder."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then move it into place.

    The temporary name keeps ``path``'s suffix (some writers check it). Works for files and
    for folders such as zarr stores. If ``write`` or the move fails, ``path`` keeps its
    previous content and the temporary is removed.

    Parameters
    ----------
    path
        Final file or folder; parent folders are created.
    write
        Writes the content to the path it is given.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = path.parent / f".{path.stem}.{tag}.tmp{path.suffix}"
    try:
        write(tmp)
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot overwrite a non-empty folder: move the old one aside first,
            # and put it back if the swap fails.
            old = path.parent / f".{path.stem}.{tag}.old{path.suffix}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return path
