"""Versioned, verified storage for asset values and model files, on any fsspec filesystem.

One layout for a local folder, S3 or GCS (``UPath`` URLs such as ``data``, ``s3://bucket/x``)::

    <key>/v-<sha256[:20]>/data.zarr | data.parquet | data.json | <file name>   an immutable version
    <key>/CURRENT.json        the pointer: the current version, its files' sha256, and when
                              each earlier version stopped being current ("retired")

**Writing** (:meth:`VersionedStore.put`) serialises the value into a private staging folder,
hashes every file (the version's *manifest*) and publishes it as a compare-and-swap of the
pointer (:mod:`perturb_assets.core.io.pointers`): content that is already current, or retired
and still intact (re-verified), is reused; otherwise the staged folder becomes the version
(a local rename, or an upload nobody references yet). A crash at any instant leaves the previous
version readable, and two writers of one key leave one whole version current.

**Pruning** happens in the same swap: a version is deleted once it has been *retired* (not
current) for :data:`PRUNE_AFTER_S`, never by its age, and never while ``protect`` names it
(the IO manager passes the version the instance's latest materialisation records).

**Reading** (:meth:`VersionedStore.get`) reads each file of the current version once, checks
its sha256 against the pointer, and parses the value from those verified bytes. A version that
disappears under a slow reader is noticed (a missing file) and the reader retries the version
now current; it never returns data from a version that vanished.

**Keys are names**: every part of a key under the root is checked by :func:`check_key_part`
(no ``..``, no separators), so a partition key cannot reach another asset's folder.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from upath import UPath

from perturb_assets.core.io.hashing import sha256_bytes, sha256_file
from perturb_assets.core.io.pointers import POINTER, PointerConflict, Pointers, is_local
from perturb_assets.core.io.serialisation import (
    Format,
    content_sha,
    deserialise,
    link_or_copy,
    local_files,
    manifest,
    serialise,
)

__all__ = [
    "PRUNE_AFTER_S",
    "STAGING_PREFIX",
    "CorruptAssetError",
    "NotStoredError",
    "StorageReadError",
    "StorageWriteError",
    "StoredVersion",
    "VersionedStore",
    "check_key_part",
]

VERSION_PREFIX = "v-"
STAGING_PREFIX = ".staging-"
#: A version is deleted once it has not been current for this long (a reader's grace period).
PRUNE_AFTER_S = 600.0
#: Scratch folders in the system temp dir carry the writer's pid (``gc`` removes dead ones').
SCRATCH_PREFIX = "perturb_store_"
_SWAP_ATTEMPTS = 20
_READ_ATTEMPTS = 5
_RESERVED_NAMES = frozenset({POINTER})


class NotStoredError(FileNotFoundError):
    """Nothing is stored at a key (never written)."""


class StorageReadError(OSError):
    """A stored version cannot be read or parsed; the message names it."""


class CorruptAssetError(StorageReadError):
    """A stored file's content differs from the sha256 recorded when it was written."""


class StorageWriteError(OSError):
    """A value could not be published (e.g. the pointer kept changing under the writer)."""


class _VersionGone(Exception):
    """A file of the version being read is missing (pruned or never complete)."""


@dataclass(frozen=True)
class StoredVersion:
    """What :meth:`VersionedStore.put` wrote (and what ``CURRENT.json`` names)."""

    version: str
    sha256: str
    format: Format
    files: dict[str, str]
    bytes: int

    def pointer(self, retired: dict[str, float] | None = None) -> dict[str, Any]:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "format": self.format,
            "files": self.files,
            "bytes": self.bytes,
            "retired": dict(sorted((retired or {}).items())),
        }


def check_key_part(part: str, what: str = "key part") -> str:
    """``part`` if it is a plain name, else ``ValueError``: no empty name, ``.``, ``..``, path
    separator, control character, leading dot, or the pointer's file name.

    The one rule for every name that becomes a folder of the store: asset keys, partition keys
    (dataset names), model names.
    """
    problem = None
    if not isinstance(part, str) or not part:
        problem = "is empty"
    elif part in (".", "..") or part.startswith("."):
        problem = "starts with '.'"
    elif "/" in part or "\\" in part:
        problem = "contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in part):
        problem = "contains a control character"
    elif part in _RESERVED_NAMES:
        problem = f"is reserved ({POINTER})"
    if problem:
        raise ValueError(f"{what} {part!r} {problem}: use a plain name, e.g. letters, digits and _")
    return part


def _stage(obj: Any, staging: Path) -> StoredVersion:
    """Serialise ``obj`` into ``staging`` and describe the version it makes."""
    fmt = serialise(obj, staging)
    files = manifest(staging)
    sha = content_sha(files)
    size = sum(p.stat().st_size for _, p in local_files(staging))
    return StoredVersion(f"{VERSION_PREFIX}{sha[:20]}", sha, fmt, files, size)


class VersionedStore:
    """Versioned values under ``root`` (a local folder or an fsspec URL).

    Parameters
    ----------
    root
        ``UPath``-compatible location, e.g. ``data`` or ``s3://bucket/prefix``.
    storage_options
        fsspec options for remote stores (credentials come from the environment otherwise).
    """

    def __init__(self, root: str | os.PathLike[str] | UPath, **storage_options: Any) -> None:
        self.root = root if isinstance(root, UPath) else UPath(str(root), **storage_options)
        self.is_local = is_local(self.root)
        self._pointers = Pointers(self.root)

    def key(self, *parts: str) -> UPath:
        """The location of a stored value: ``root/part/part/...`` (each part a plain name)."""
        for part in parts:
            check_key_part(part)
        return self.root.joinpath(*parts)

    def relative_key(self, key: UPath) -> str:
        """``key`` relative to the root (``assets/metrics/synthetic``), every part checked.

        Raises
        ------
        ValueError
            If ``key`` is not under the root or a part is not a plain name.
        """
        root, path = self.root.path.rstrip("/"), key.path.rstrip("/")
        if not path.startswith(root + "/"):
            raise ValueError(f"{key} is not under the store's root {self.root}")
        rel = path[len(root) + 1 :]
        for part in rel.split("/"):
            check_key_part(part)
        return rel

    # ------------------------------------------------------------------------------- write
    def put(self, key: UPath, obj: Any, protect: Collection[str] = ()) -> StoredVersion:
        """Store ``obj`` as the current version at ``key`` (see the module notes).

        ``protect``: versions that must survive this write's pruning (e.g. the one the
        instance's latest materialisation names).
        """
        self.relative_key(key)
        scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}_")
        try:
            staging = self._staging_folder(key, Path(scratch))
            try:
                stored = _stage(obj, staging)
                return self._swap_in(key, staging, stored, set(protect))
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # published versions were moved
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _staging_folder(self, key: UPath, scratch: Path) -> Path:
        # Locally, stage beside the versions (same filesystem: publishing is a rename).
        if not self.is_local:
            (scratch / "staged").mkdir()
            return scratch / "staged"
        folder = Path(key.path) / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        return folder

    def _swap_in(
        self, key: UPath, staging: Path, stored: StoredVersion, protect: set[str]
    ) -> StoredVersion:
        uploaded: str | None = None  # a version this writer uploaded (remote retries reuse it)
        with self._pointers.locked(key):
            for _ in range(_SWAP_ATTEMPTS):
                pointer, token = self._pointers.read(key)
                name = self._place(key, staging, stored, pointer, uploaded)
                if not self.is_local and name != _current(pointer):
                    uploaded = name
                new_pointer, doomed = _next_pointer(pointer, replace(stored, version=name), protect)
                if new_pointer == pointer:
                    return replace(stored, version=name)
                try:
                    self._pointers.write(key, new_pointer, token)
                except PointerConflict:
                    continue
                for version in doomed:
                    _remove(key / version)
                return replace(stored, version=name)
        raise StorageWriteError(f"{key}: the pointer kept changing under {_SWAP_ATTEMPTS} writes")

    def _place(
        self,
        key: UPath,
        staging: Path,
        stored: StoredVersion,
        pointer: dict[str, Any] | None,
        uploaded: str | None,
    ) -> str:
        """The version folder that will hold ``stored``: reused when it is current or retired
        and intact, else published from ``staging``."""
        name = stored.version
        if name == _current(pointer):
            return name
        if uploaded is not None:
            return uploaded
        known = name in (pointer or {}).get("retired", {})
        if known and self._intact(key / name, stored.files):
            return name
        if self.is_local:  # under the key's lock: nobody else touches its versions
            target = Path(key.path) / name
            if target.exists():
                shutil.rmtree(target)  # an orphan or a damaged copy of the same content
            os.rename(staging, target)
            return name
        if (key / name).exists():  # may be a pruned version whose deletion is under way
            name = f"{name}-{uuid.uuid4().hex[:8]}"
        target = key / name
        # One concurrent batch of PUTs (the version is referenced only once all are in).
        files = list(local_files(staging))
        target.fs.put([str(path) for _, path in files], [(target / rel).path for rel, _ in files])
        return name

    def _intact(self, version: UPath, files: dict[str, str]) -> bool:
        """Every file of the version present with its sha256 (re-validating reused content)."""
        try:
            if self.is_local:
                found = dict(local_files(Path(version.path)))
                return set(found) == set(files) and all(
                    sha256_file(found[rel]) == sha for rel, sha in files.items()
                )
            return all((version / rel).exists() for rel in files)
        except OSError:
            return False

    # -------------------------------------------------------------------------------- read
    def current(self, key: UPath) -> dict[str, Any] | None:
        """The pointer at ``key`` (``None`` when nothing is stored there)."""
        try:
            pointer, _ = self._pointers.read(key)
        except (OSError, ValueError) as exc:
            raise StorageReadError(f"{key / POINTER}: unreadable pointer ({exc})") from exc
        return pointer

    def read(self, *parts: str) -> Any:
        """``get(key(*parts))``, e.g. ``read("assets", "metrics", "synthetic")``."""
        return self.get(self.key(*parts))

    def exists(self, key: UPath) -> bool:
        return self.current(key) is not None

    def get(self, key: UPath) -> Any:
        """The current value at ``key``, parsed from bytes verified against its manifest.

        Raises
        ------
        NotStoredError
            Nothing is stored at ``key``.
        CorruptAssetError, StorageReadError
            A file differs from its recorded sha256 or is missing, or the version cannot be
            parsed.
        """
        self.relative_key(key)
        for pointer in self._pointer_attempts(key):
            version = key / pointer["version"]
            if pointer["format"] == "file":
                return self._file_entry(key, version, pointer)
            try:
                data = self._read_verified(version, pointer)
            except _VersionGone:
                continue
            try:
                return deserialise(pointer["format"], data)
            except Exception as exc:
                raise StorageReadError(
                    f"{version}: cannot read {pointer['format']} ({exc})"
                ) from exc
        raise StorageReadError(f"{key}: its version kept changing while being read; try again")

    def _file_entry(self, key: UPath, version: UPath, pointer: dict[str, Any]) -> Path:
        """A stored file or folder, in place (local stores only): valid while its version is
        current or retired less than :data:`PRUNE_AFTER_S` ago; copy it out with
        :meth:`local_folder` to keep it."""
        if not self.is_local:
            raise TypeError(f"{key} holds a file: fetch it with local_folder()")
        folder = Path(version.path)
        for rel, sha in sorted(pointer["files"].items()):
            if sha256_file(folder / rel) != sha:
                raise CorruptAssetError(f"{version / rel}: content differs from its sha256")
        self._check_no_extra_files(version, pointer)
        (entry,) = list(folder.iterdir())
        return entry

    def local_folder(self, key: UPath, into: Path) -> Path:
        """A verified local copy of the current version's files in the empty folder ``into``
        (hard links locally, so a later prune cannot take them away); ``into``."""
        self.relative_key(key)
        into.mkdir(parents=True, exist_ok=True)
        if any(into.iterdir()):
            raise ValueError(f"{into}: local_folder copies into an empty folder")
        for pointer in self._pointer_attempts(key):
            try:
                return self._copy_verified(key / pointer["version"], pointer, into)
            except _VersionGone:
                shutil.rmtree(into, ignore_errors=True)
                into.mkdir(parents=True, exist_ok=True)
        raise StorageReadError(f"{key}: its version kept changing while being read; try again")

    def _pointer_attempts(self, key: UPath) -> Iterator[dict[str, Any]]:
        """The pointer, read again after each failed attempt; a missing file whose pointer did
        not change is a damaged version, not a race."""
        previous = None
        for _ in range(_READ_ATTEMPTS):
            pointer = self.current(key)
            if pointer is None:
                raise NotStoredError(f"nothing stored at {key}")
            if previous is not None and pointer["version"] == previous["version"]:
                raise CorruptAssetError(
                    f"{key / pointer['version']}: files missing from the version"
                )
            yield pointer
            previous = pointer

    def _read_verified(self, version: UPath, pointer: dict[str, Any]) -> dict[str, bytes]:
        data = {}
        blobs = self._read_files(version, sorted(pointer["files"]), pointer.get("bytes"))
        for rel, sha in sorted(pointer["files"].items()):
            blob = blobs[rel]
            if sha256_bytes(blob) != sha:
                raise CorruptAssetError(
                    f"{version / rel}: content differs from the sha256 recorded when it was "
                    "written; re-materialise the asset"
                )
            data[rel] = blob
        self._check_no_extra_files(version, pointer)
        return data

    def _read_files(
        self, version: UPath, rels: list[str], total_bytes: int | None = None
    ) -> dict[str, bytes]:
        """The bytes of ``rels`` in ``version`` (``total_bytes`` in all, when known). From an
        object store, one concurrent batch of GETs (fsspec's ``cat``): a zarr-backed AnnData
        is dozens of small objects, and one request after another cost a step most of its
        time (0.8 s for a 61-file table from S3, against 0.1 s in a batch)."""
        if self.is_local:
            blobs = {}
            for rel in rels:
                try:
                    blobs[rel] = (version / rel).read_bytes()
                except FileNotFoundError:
                    raise _VersionGone(rel) from None
            return blobs
        paths = {(version / rel).path: rel for rel in rels}
        fetched = version.fs.cat(
            list(paths), on_error="return", **_small_object_reads(version.fs, total_bytes)
        )
        blobs = {}
        for path, rel in paths.items():
            blob = fetched.get(path, FileNotFoundError(path))
            if isinstance(blob, FileNotFoundError):
                raise _VersionGone(rel)
            if isinstance(blob, BaseException):
                raise blob
            blobs[rel] = blob
        return blobs

    def _copy_verified(self, version: UPath, pointer: dict[str, Any], into: Path) -> Path:
        files = sorted(pointer["files"].items())
        for rel, _ in files:
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
        if not self.is_local:  # one concurrent batch of GETs, as _read_files
            try:
                version.fs.get([(version / rel).path for rel, _ in files],
                               [str(into / rel) for rel, _ in files])  # fmt: skip
            except FileNotFoundError as exc:
                raise _VersionGone(str(exc)) from None
        for rel, sha in files:
            local = into / rel
            if self.is_local:
                try:
                    link_or_copy(Path(version.path) / rel, local)
                except FileNotFoundError:
                    raise _VersionGone(rel) from None
            if sha256_file(local) != sha:
                raise CorruptAssetError(
                    f"{version / rel}: content differs from the sha256 recorded when it was "
                    "written; re-materialise the asset"
                )
        self._check_no_extra_files(version, pointer)
        return into

    def _check_no_extra_files(self, version: UPath, pointer: dict[str, Any]) -> None:
        if not self.is_local:
            return  # an object store lists no folders; the manifest's files were all verified
        folder = Path(version.path)
        extra = sorted(set(dict(local_files(folder))) - set(pointer["files"]))
        if extra:
            raise CorruptAssetError(f"{version / extra[0]}: not part of the stored version")


def _small_object_reads(fs: Any, total_bytes: int | None) -> dict[str, Any]:
    """``cat`` options for a version of ``total_bytes``: s3fs asks each object's size (a HEAD
    request) before its GET, to split an object bigger than a block into concurrent ranges;
    in a version smaller than one block no object is, so it is asked not to (half the
    requests: the services test's ``metrics`` step read 2,000 objects). Other filesystems,
    and bigger versions, read as they do by default."""
    block = getattr(fs, "default_block_size", None)
    cat_file = getattr(fs, "_cat_file", None)
    if total_bytes is None or not block or total_bytes > block or cat_file is None:
        return {}
    if "max_concurrency" not in inspect.signature(cat_file).parameters:
        return {}
    return {"max_concurrency": 1}


def _current(pointer: dict[str, Any] | None) -> str | None:
    return pointer["version"] if pointer else None


def _next_pointer(
    pointer: dict[str, Any] | None, stored: StoredVersion, protect: set[str]
) -> tuple[dict[str, Any], list[str]]:
    """The pointer after publishing ``stored``, and the retired versions it lets go.

    The version it replaces is retired now; a retired version is let go once retired for
    longer than :data:`PRUNE_AFTER_S` and not protected.
    """
    now = time.time()
    retired = dict((pointer or {}).get("retired", {}))
    previous = _current(pointer)
    if previous is not None and previous != stored.version:
        retired[previous] = now
    retired.pop(stored.version, None)
    doomed = sorted(v for v, t in retired.items() if now - t > PRUNE_AFTER_S and v not in protect)
    for version in doomed:
        del retired[version]
    new = stored.pointer(retired)
    if pointer is not None and {**pointer, "retired": pointer.get("retired", {})} == new:
        return pointer, []
    return new, doomed


def _remove(entry: UPath) -> None:
    if is_local(entry):
        path = Path(entry.path)
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    elif entry.exists():
        entry.fs.rm(entry.path, recursive=True)
