"""Resumable download and safe extraction of the GEARS datasets on Harvard Dataverse.

cell-gears (``gears/pertdata.py`` ``PertData.load`` and ``gears/utils.py``
``zip_data_download_wrapper``) downloads ``https://dataverse.harvard.edu/api/access/datafile/<id>``
in one go and extracts the zip archive, which holds ``<name>/perturb_processed.h5ad``. This module
does the same, but

* resumes an interrupted download with an HTTP ``Range`` request,
* checks the length and the SHA-256 of what it got,
* extracts into a temporary folder, rejecting unsafe members (zip slip), and moves the result
  into place with ``os.replace``, so a crash never leaves a half-extracted dataset.

Dataverse answers 403 at times; a mirror can be configured with the environment variable
``PERTURB_ASSETS_DATAVERSE_URL`` (a URL template with ``{file_id}``). No retry loop lives here:
the asset layer retries with a Dagster ``RetryPolicy``, using :func:`is_retryable` to decide.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from perturb_assets.core import gears
from perturb_assets.core.atomic import atomic_write
from perturb_assets.core.datasets import (
    BUILTIN_DATASETS,
    builtin_dataset_dir,
    load_gears_dataset,
    validate_dataset_name,
)
from perturb_assets.core.errors import DatasetError

__all__ = [
    "DATAVERSE_URL",
    "DATAVERSE_URL_ENV",
    "DOWNLOADS_SUBDIR",
    "PROVENANCE_FILENAME",
    "DownloadError",
    "DownloadResult",
    "archive_path",
    "dataverse_url",
    "download_file",
    "extract_gears_archive",
    "fetch_gears_dataset",
    "is_retryable",
    "sha256_file",
]

logger = logging.getLogger(__name__)

#: Default Dataverse access URL template (as used by cell-gears).
DATAVERSE_URL = "https://dataverse.harvard.edu/api/access/datafile/{file_id}"
#: Environment variable that overrides :data:`DATAVERSE_URL` (a template with ``{file_id}``).
DATAVERSE_URL_ENV = "PERTURB_ASSETS_DATAVERSE_URL"
#: Sub-folder of the data root that holds downloaded archives.
DOWNLOADS_SUBDIR = "downloads"
#: Provenance record written into each fetched dataset folder.
PROVENANCE_FILENAME = "provenance.json"

_RETRYABLE_STATUS = frozenset({403, 408, 425, 429})


class DownloadError(RuntimeError):
    """A download or archive extraction failed.

    Parameters
    ----------
    message
        What went wrong and what to do about it.
    url
        The URL being downloaded, if any.
    status
        The HTTP status code, if the server answered with an error.
    retryable
        Whether trying again may succeed (see :func:`is_retryable`).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class DownloadResult:
    """Outcome of :func:`download_file`.

    Attributes
    ----------
    path
        The downloaded file.
    sha256
        Hex SHA-256 of the whole file.
    n_bytes
        File size in bytes.
    resumed
        Whether the download continued a partial ``.part`` file.
    """

    path: Path
    sha256: str
    n_bytes: int
    resumed: bool


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed download is worth retrying (for a Dagster ``RetryPolicy``).

    Parameters
    ----------
    exc
        The exception raised by :func:`download_file`, :func:`extract_gears_archive` or
        :func:`fetch_gears_dataset`.

    Returns
    -------
    bool
        ``True`` for connection errors, time-outs, interrupted transfers, HTTP 5xx, 429 and 403
        (Dataverse refuses requests intermittently); ``False`` for 404, checksum mismatches,
        bad archives, invalid datasets and anything else.
    """
    if isinstance(exc, DownloadError):
        return exc.retryable
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return _status_retryable(exc.response.status_code)
    return isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | ConnectionError
        | TimeoutError,
    )


def _status_retryable(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUS


def dataverse_url(file_id: int | str, url_template: str | None = None) -> str:
    """URL of a Dataverse file.

    Parameters
    ----------
    file_id
        Dataverse file id.
    url_template
        Template with ``{file_id}``; defaults to ``$PERTURB_ASSETS_DATAVERSE_URL`` if set, else
        :data:`DATAVERSE_URL`.

    Returns
    -------
    str
        The URL.

    Raises
    ------
    ValueError
        If the template has no ``{file_id}`` placeholder.
    """
    template = url_template or os.environ.get(DATAVERSE_URL_ENV) or DATAVERSE_URL
    if "{file_id}" not in template:
        raise ValueError(
            f"URL template {template!r} has no '{{file_id}}' placeholder (check "
            f"{DATAVERSE_URL_ENV} or the url_template argument)"
        )
    return template.format(file_id=file_id)


def sha256_file(path: str | PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _read_sidecar(dest: Path) -> str | None:
    try:
        return _sidecar(dest).read_text().split()[0].lower()
    except (OSError, IndexError):
        return None


def _http_error(url: str, status: int, reason: str) -> DownloadError:
    message = f"download of {url} failed: HTTP {status} {reason}".rstrip()
    if status == 403:
        message += (
            f"; Dataverse refuses requests at times: retry later or point {DATAVERSE_URL_ENV} "
            "at a mirror (a URL template with '{file_id}')"
        )
    elif status == 404:
        message += "; the file does not exist at this URL (check the file id or the mirror URL)"
    return DownloadError(message, url=url, status=status, retryable=_status_retryable(status))


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL`` into (start, total)."""
    if not value or not value.startswith("bytes "):
        return None, None
    spec, _, total = value[6:].partition("/")
    start: int | None = None
    if spec != "*":
        with contextlib.suppress(ValueError):
            start = int(spec.split("-")[0])
    total_int = int(total) if total.strip().isdigit() else None
    return start, total_int


def download_file(
    url: str,
    dest: str | PathLike,
    *,
    expected_sha256: str | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming a partial download.

    The data is streamed into ``<dest>.part``. If that file exists from an interrupted
    attempt, the request carries ``Range: bytes=N-``: a ``206`` answer is appended, a ``200``
    (server ignores ranges) restarts from zero, and a ``416`` means the part is already complete
    (``Content-Range: bytes */N``) or invalid (restart from zero). A transfer shorter than
    ``Content-Length`` raises :class:`DownloadError` and keeps the ``.part`` for the next
    attempt (data of the chunk in flight when the connection broke may be lost and is fetched
    again). The SHA-256 of the whole file is verified against ``expected_sha256`` (on mismatch
    the ``.part`` is deleted), then the file is moved to ``dest`` with ``os.replace`` and its
    hash written to ``<dest>.sha256`` (``sha256sum`` format).

    If ``dest`` already exists with a matching ``<dest>.sha256`` (and ``expected_sha256``, if
    given) nothing is downloaded.

    Parameters
    ----------
    url
        HTTP(S) URL.
    dest
        Final file path; parent folders are created.
    expected_sha256
        Hex SHA-256 the file must have, if known.
    chunk_size
        Bytes per streamed chunk.
    timeout
        Connect and read time-out in seconds (per socket operation, not for the whole file).
    session
        A ``requests.Session`` to use (e.g. with a mounted adapter); a new one otherwise.

    Returns
    -------
    DownloadResult
        Path, SHA-256, size and whether the download was resumed.

    Raises
    ------
    DownloadError
        On HTTP errors (403 mentions ``PERTURB_ASSETS_DATAVERSE_URL``), connection errors,
        interrupted transfers and checksum mismatches; :func:`is_retryable` tells which are
        worth retrying.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    expected = expected_sha256.lower() if expected_sha256 else None

    if dest.is_file():
        recorded = _read_sidecar(dest)
        if recorded is not None and (expected is None or expected == recorded):
            actual = sha256_file(dest, chunk_size)
            if actual == recorded:
                logger.info("%s: already downloaded (sha256 %s)", dest, actual)
                return DownloadResult(dest, actual, dest.stat().st_size, resumed=False)
        logger.info("%s: existing file unverified, downloading again", dest)

    own_session = session is None
    sess = session if session is not None else requests.Session()
    try:
        digest, n_bytes, resumed = _fetch_to_part(url, part, sess, chunk_size, timeout)
    finally:
        if own_session:
            sess.close()

    sha = digest.hexdigest()
    if expected is not None and sha != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {url} failed the checksum: sha256 {sha} != expected {expected}; "
            "the partial file was deleted",
            url=url,
            retryable=False,
        )
    os.replace(part, dest)
    _write_text_atomic(_sidecar(dest), f"{sha}  {dest.name}\n")
    logger.info("%s: downloaded %d bytes (sha256 %s, resumed=%s)", dest, n_bytes, sha, resumed)
    return DownloadResult(dest, sha, n_bytes, resumed)


def _hash_prefix(part: Path, chunk_size: int) -> Any:
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest


def _fetch_to_part(
    url: str, part: Path, session: requests.Session, chunk_size: int, timeout: float
) -> tuple[Any, int, bool]:
    """Stream ``url`` into ``part``; return (sha256 object, total bytes, resumed)."""
    offset = part.stat().st_size if part.is_file() else 0
    for _attempt in range(2):  # at most one restart from zero (200/416/bad 206)
        headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
        try:
            response = session.get(url, stream=True, timeout=timeout, headers=headers)
        except requests.RequestException as exc:
            raise DownloadError(
                f"download of {url} failed: {type(exc).__name__}: {exc}",
                url=url,
                retryable=is_retryable(exc),
            ) from exc
        with response:
            status = response.status_code
            if offset > 0 and status == 416:
                _, total = _parse_content_range(response.headers.get("Content-Range"))
                if total is not None and total == offset:
                    logger.info("%s: partial download is already complete", part)
                    return _hash_prefix(part, chunk_size), offset, True
                logger.info("%s: server rejected the range (416); restarting", part)
                part.unlink(missing_ok=True)
                offset = 0
                continue
            if status >= 400:
                raise _http_error(url, status, response.reason or "")
            if status == 206 and offset > 0:
                start, _ = _parse_content_range(response.headers.get("Content-Range"))
                if start != offset:
                    logger.info("%s: unexpected Content-Range; restarting from zero", part)
                    part.unlink(missing_ok=True)
                    offset = 0
                    continue
                resumed = True
                digest = _hash_prefix(part, chunk_size)
                mode = "ab"
            else:
                if offset > 0:
                    logger.info("%s: server ignored the range (HTTP %d); restarting", part, status)
                resumed = False
                offset = 0
                digest = hashlib.sha256()
                mode = "wb"
            length = response.headers.get("Content-Length")
            expected_total = offset + int(length) if length and length.isdigit() else None
            written = offset
            try:
                with open(part, mode) as fh:
                    for chunk in response.iter_content(chunk_size=chunk_size):
                        if not chunk:
                            continue
                        fh.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            except requests.RequestException as exc:
                raise DownloadError(
                    f"download of {url} was interrupted after {written} bytes"
                    f"{f' of {expected_total}' if expected_total is not None else ''} "
                    f"({type(exc).__name__}); the partial file {part} is kept and the next "
                    "attempt resumes it",
                    url=url,
                    retryable=True,
                ) from exc
            if expected_total is not None and written < expected_total:
                raise DownloadError(
                    f"download of {url} is short: got {written} of {expected_total} bytes; "
                    f"the partial file {part} is kept and the next attempt resumes it",
                    url=url,
                    retryable=True,
                )
            return digest, written, resumed
    raise DownloadError(  # pragma: no cover - needs a server that misbehaves twice
        f"download of {url} failed: the server did not honour a restart", url=url, retryable=True
    )


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
