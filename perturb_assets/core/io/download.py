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
the ``raw_dataset`` asset asks Dagster for a retry (``RetryRequested``, with backoff) when
:func:`is_retryable` says the error is transient, and fails at once otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import requests

from perturb_assets.core.io.atomic import atomic_write
from perturb_assets.core.io.hashing import sha256_file, update_from_file

__all__ = [
    "DATAVERSE_URL",
    "DATAVERSE_URL_ENV",
    "dataverse_url",
    "DownloadError",
    "DownloadResult",
    "download_file",
    "is_retryable",
]

#: Default Dataverse access URL template (as used by cell-gears).
DATAVERSE_URL = "https://dataverse.harvard.edu/api/access/datafile/{file_id}"
#: Environment variable that overrides :data:`DATAVERSE_URL` (a template with ``{file_id}``).
DATAVERSE_URL_ENV = "PERTURB_ASSETS_DATAVERSE_URL"


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


logger = logging.getLogger(__name__)

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
    """Whether a failed download is worth retrying (the ``raw_dataset`` asset's retry rule).

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
            actual = sha256_file(dest)
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
                    return update_from_file(hashlib.sha256(), part, chunk_size), offset, True
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
                digest = update_from_file(hashlib.sha256(), part, chunk_size)
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
