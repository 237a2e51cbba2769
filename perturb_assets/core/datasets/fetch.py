"""Fetching a built-in GEARS dataset: download from Dataverse (or a mirror), verify, unpack.

:func:`fetch_gears_dataset` downloads ``<root>/downloads/<name>.zip`` with
:func:`perturb_assets.core.io.download_file` (resumable, checksummed), unpacks it with
:func:`perturb_assets.core.io.extract_gears_archive` into ``<root>/gears/<name>`` under a lock,
validates the result and records its provenance (``provenance.json``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import requests

from perturb_assets.core import gears
from perturb_assets.core.datasets.catalogue import (
    BUILTIN_DATASETS,
    builtin_dataset_dir,
    validate_dataset_name,
)
from perturb_assets.core.datasets.loading import load_gears_dataset
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.io.archives import extract_gears_archive
from perturb_assets.core.io.download import (
    DownloadError,
    _sidecar,
    _write_text_atomic,
    dataverse_url,
    download_file,
)

__all__ = [
    "DOWNLOADS_SUBDIR",
    "PROVENANCE_FILENAME",
    "archive_path",
    "fetch_gears_dataset",
]

logger = logging.getLogger(__name__)
#: Sub-folder of the data root that holds downloaded archives.
DOWNLOADS_SUBDIR = "downloads"
#: Provenance record written into each fetched dataset folder.
PROVENANCE_FILENAME = "provenance.json"


# ----------------------------------------------------------------------------- fetch


def archive_path(name: str, data_root: str | PathLike) -> Path:
    """Where the downloaded archive of built-in dataset ``name`` is kept."""
    return Path(data_root) / DOWNLOADS_SUBDIR / f"{validate_dataset_name(name)}.zip"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (POSIX); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_valid_folder(folder: Path) -> bool:
    if not (folder / gears.FILENAME).is_file():
        return False
    try:
        load_gears_dataset(folder)
    except DatasetError as exc:
        logger.warning("%s exists but is not a valid dataset (%s); fetching again", folder, exc)
        return False
    return True


def fetch_gears_dataset(
    name: str,
    data_root: str | PathLike,
    *,
    url_template: str | None = None,
    session: requests.Session | None = None,
    timeout: float = 60,
) -> Path:
    """Download and extract built-in GEARS dataset ``name`` into ``<data_root>/gears/<name>``.

    If the folder exists and loads (:func:`~perturb_assets.core.datasets.load_gears_dataset`),
    nothing is downloaded. Otherwise the archive is downloaded (resumably) to
    ``<data_root>/downloads/<name>.zip`` (kept, with its ``.sha256``, so a re-extraction needs no
    download), extracted safely, validated, and ``<folder>/provenance.json`` records the URL,
    SHA-256, size and time. A concurrent fetch of the same dataset waits on a lock file.

    Parameters
    ----------
    name
        A downloadable key of :data:`~perturb_assets.core.datasets.BUILTIN_DATASETS`.
    data_root
        The data root.
    url_template
        URL template with ``{file_id}`` (a mirror); defaults to ``$PERTURB_ASSETS_DATAVERSE_URL``
        or :data:`DATAVERSE_URL`.
    session
        A ``requests.Session`` to use.
    timeout
        Socket time-out in seconds.

    Returns
    -------
    pathlib.Path
        The dataset folder, holding ``perturb_processed.h5ad`` and ``provenance.json``.

    Raises
    ------
    ValueError
        If ``name`` is not a downloadable built-in dataset.
    DownloadError
        If the download or extraction fails (a corrupt archive is deleted so that the next
        attempt downloads it again).
    DatasetError
        If the extracted dataset does not validate.
    """
    validate_dataset_name(name)
    spec = BUILTIN_DATASETS.get(name)
    if spec is None or spec.file_id is None:
        downloadable = sorted(k for k, v in BUILTIN_DATASETS.items() if v.file_id is not None)
        raise ValueError(
            f"{name!r} is not a downloadable built-in dataset; choose one of {downloadable}"
        )
    root = Path(data_root)
    folder = builtin_dataset_dir(name, root)
    archive = archive_path(name, root)
    with _lock(archive.with_name(f".{archive.name}.lock")):
        if folder.exists() and _is_valid_folder(folder):
            if not (folder / PROVENANCE_FILENAME).is_file():
                _write_provenance(folder, {"name": name, "note": "folder found locally"})
            logger.info("%s: dataset %r already present", folder, name)
            return folder

        url = dataverse_url(spec.file_id, url_template)
        result = download_file(url, archive, session=session, timeout=timeout)
        try:
            extract_gears_archive(archive, folder, overwrite=True)
        except DownloadError:
            archive.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                _sidecar(archive).unlink()
            raise
        load_gears_dataset(folder)
        _write_provenance(
            folder,
            {
                "name": name,
                "file_id": spec.file_id,
                "url": url,
                "archive": str(result.path),
                "sha256": result.sha256,
                "bytes": result.n_bytes,
                "resumed": result.resumed,
                "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    return folder


def _write_provenance(folder: Path, record: dict[str, Any]) -> None:
    _write_text_atomic(
        folder / PROVENANCE_FILENAME, json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
