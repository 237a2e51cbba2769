"""Safe extraction of a GEARS zip or tar archive.

The archive is unpacked into a temporary folder beside the target, every member checked against
path traversal (zip/tar slip) and links, and the one dataset folder moved into place with
``os.replace``, so a crash never leaves a half-extracted dataset.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from os import PathLike
from pathlib import Path, PurePosixPath

from perturb_assets.core import gears
from perturb_assets.core.io.download import DownloadError

__all__ = [
    "extract_gears_archive",
]


# ----------------------------------------------------------------------------- extraction


def _unsafe_member(name: str) -> str | None:
    """Why an archive member name is unsafe, or ``None`` if it is fine."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(normalized).parts:
        return "'..' component"
    return None


def _bad_archive(archive: Path, problem: str) -> DownloadError:
    return DownloadError(
        f"{archive}: {problem}; delete it and download again", url=None, retryable=False
    )


def _extract_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                reason = _unsafe_member(info.filename)
                if reason:
                    raise _bad_archive(archive, f"unsafe member {info.filename!r} ({reason})")
            broken = zf.testzip()
            if broken is not None:
                raise _bad_archive(archive, f"member {broken!r} is corrupt (CRC mismatch)")
            zf.extractall(target)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _bad_archive(
            archive, f"the zip archive is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc


def _extract_tar(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                reason = _unsafe_member(member.name)
                if reason is None and not (member.isfile() or member.isdir()):
                    reason = "links and special files are not allowed"
                if reason:
                    raise _bad_archive(archive, f"unsafe member {member.name!r} ({reason})")
            tf.extractall(target, filter="data")
    except DownloadError:
        raise
    except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _bad_archive(
            archive, f"the tar archive is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc


def _find_dataset_root(extracted: Path) -> Path | None:
    hits = [
        p.parent
        for p in extracted.rglob(gears.FILENAME)
        if p.is_file() and "__MACOSX" not in p.relative_to(extracted).parts
    ]
    if len(hits) > 1:
        return None
    return hits[0] if hits else None


def extract_gears_archive(
    archive: str | PathLike, dest_folder: str | PathLike, *, overwrite: bool = False
) -> Path:
    """Extract a GEARS dataset archive into ``dest_folder``.

    The archive (zip, as served by Dataverse for all GEARS datasets; tar archives are accepted
    too) holds ``<name>/perturb_processed.h5ad`` plus, possibly, other files. It is checked for
    unsafe members (absolute paths, ``..``, links in tar files), tested for corruption and
    extracted into a temporary folder next to ``dest_folder``; the folder holding
    ``perturb_processed.h5ad`` is then moved to ``dest_folder`` with ``os.replace``.

    Parameters
    ----------
    archive
        The archive file.
    dest_folder
        The dataset folder to create.
    overwrite
        Replace an existing ``dest_folder``.

    Returns
    -------
    pathlib.Path
        ``dest_folder``, holding ``perturb_processed.h5ad``.

    Raises
    ------
    DownloadError
        Naming the archive if it is missing, not an archive, corrupt, holds an unsafe member,
        or holds no (or more than one) ``perturb_processed.h5ad``. Nothing is left at
        ``dest_folder`` then.
    FileExistsError
        If ``dest_folder`` exists and ``overwrite`` is false.
    """
    archive = Path(archive)
    dest = Path(dest_folder)
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive does not exist", retryable=False)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    if zipfile.is_zipfile(archive):
        extract = _extract_zip
    else:
        try:
            is_tar = tarfile.is_tarfile(archive)
        except OSError:
            is_tar = False
        if not is_tar:
            raise _bad_archive(
                archive,
                "not a zip or tar archive (truncated, corrupt, or an HTML error page served "
                "instead of the file)",
            )
        extract = _extract_tar

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    trash: Path | None = None
    try:
        extract(archive, tmp)
        root = _find_dataset_root(tmp)
        if root is None:
            raise _bad_archive(
                archive, f"the archive must hold exactly one folder with {gears.FILENAME}"
            )
        if dest.exists() or dest.is_symlink():
            trash = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, trash)
        try:
            os.replace(root, dest)
        except BaseException:
            if trash is not None:
                os.replace(trash, dest)
                trash = None
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash, ignore_errors=True)
            else:
                trash.unlink(missing_ok=True)
    return dest
