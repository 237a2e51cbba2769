"""Versioned, verified storage for asset values and model files, on any fsspec filesystem.

One layout for a local folder, S3 or GCS (``UPath`` URLs such as ``data``, ``s3://bucket/x``)::

    <key>/v-<sha256[:20]>/data.zarr | data.parquet | data.json | <file name>   an immutable version
    <key>/CURRENT.json                                                           the pointer

A write serialises the value into a private staging folder, hashes every file (the version's
*manifest*), moves the folder to its content-addressed name (a local rename, or an upload of
objects nobody references yet), and only then replaces ``CURRENT.json`` (an atomic rename
locally, a single PUT on an object store). A crash at any instant therefore leaves the previous
version readable, and a reader never sees a half-written one. Identical content gets the same
version name, so rewriting an unchanged value is a no-op.

A read checks every file of the version against the manifest in the pointer and fails with the
file's path when one differs (e.g. two swapped zarr chunks); any error while parsing names the
version it came from. Versions the pointer no longer names are pruned once older than
:data:`PRUNE_AFTER_S` (so a concurrent writer's fresh version is never deleted under it);
:func:`collect_garbage` also removes staging folders of dead writers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import pandas as pd
from upath import UPath

from perturb_assets.core.io.hashing import sha256_file

__all__ = [
    "CorruptAssetError",
    "POINTER",
    "PRUNE_AFTER_S",
    "STAGING_PREFIX",
    "StorageReadError",
    "StoredVersion",
    "VersionedStore",
    "collect_garbage",
    "compare_content_hashes",
    "content_hashes",
]

POINTER = "CURRENT.json"
VERSION_PREFIX = "v-"
STAGING_PREFIX = ".staging-"
#: Versions no longer current are deleted once this old (a concurrent writer's grace period).
PRUNE_AFTER_S = 600.0
_CHUNK = 1 << 20

Format = Literal["zarr", "parquet", "json", "file"]


class StorageReadError(OSError):
    """A stored version cannot be read or parsed; the message names it."""


class CorruptAssetError(StorageReadError):
    """A stored file's content differs from the sha256 recorded when it was written."""


@dataclass(frozen=True)
class StoredVersion:
    """What :meth:`VersionedStore.put` wrote (and what ``CURRENT.json`` holds)."""

    version: str
    sha256: str
    format: Format
    files: dict[str, str]
    bytes: int

    def pointer(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "format": self.format,
            "files": self.files,
            "bytes": self.bytes,
        }


# ----------------------------------------------------------------------------- serialisation


def _serialise(obj: Any, folder: Path) -> Format:
    """Write ``obj`` into the empty local ``folder``; its format."""
    if isinstance(obj, ad.AnnData):
        obj.write_zarr(folder / "data.zarr")
        return "zarr"
    if isinstance(obj, pd.DataFrame):
        obj.to_parquet(folder / "data.parquet")
        return "parquet"
    if isinstance(obj, dict | list):
        text = json.dumps(obj, indent=1, sort_keys=True, default=str)
        (folder / "data.json").write_text(text)
        return "json"
    if isinstance(obj, Path):  # a file or folder written elsewhere (model files, raw datasets)
        target = folder / obj.name
        if obj.is_dir():
            shutil.copytree(obj, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(obj, target)
        return "file"
    raise TypeError(
        f"cannot store a {type(obj).__name__}; store AnnData, DataFrame, dict, list or a Path"
    )


def _link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """A hard link where possible (no copy of a multi-GB file), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _stage(obj: Any, staging: Path) -> StoredVersion:
    """Serialise ``obj`` into ``staging`` and describe the version it makes."""
    fmt = _serialise(obj, staging)
    files = _manifest(staging)
    sha = _content_sha(files)
    size = sum(p.stat().st_size for _, p in _local_files(staging))
    return StoredVersion(f"{VERSION_PREFIX}{sha[:20]}", sha, fmt, files, size)


def _deserialise(fmt: Format, folder: Path) -> Any:
    if fmt == "zarr":
        return ad.read_zarr(folder / "data.zarr")
    if fmt == "parquet":
        return pd.read_parquet(folder / "data.parquet")
    if fmt == "json":
        return json.loads((folder / "data.json").read_text())
    (entry,) = list(folder.iterdir())
    return entry


def _local_files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield path.relative_to(folder).as_posix(), path


def _manifest(folder: Path) -> dict[str, str]:
    manifest = {}
    for rel, path in _local_files(folder):
        manifest[rel] = sha256_file(path)
    return manifest


def _content_sha(manifest: dict[str, str]) -> str:
    lines = "".join(f"{rel}\t{sha}\n" for rel, sha in sorted(manifest.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


# ----------------------------------------------------------------------------- the store


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


class VersionedStore:
    """Versioned values under ``root`` (a local folder or an fsspec URL).

    Parameters
    ----------
    root
        ``UPath``-compatible location, e.g. ``data/assets`` or ``s3://bucket/assets``.
    storage_options
        fsspec options for remote stores (credentials come from the environment otherwise).
    """

    def __init__(self, root: str | os.PathLike[str] | UPath, **storage_options: Any) -> None:
        self.root = root if isinstance(root, UPath) else UPath(str(root), **storage_options)
        self.is_local = _is_local(self.root)

    def key(self, *parts: str) -> UPath:
        """The location of a stored value: ``root/part/part/...``."""
        return self.root.joinpath(*parts)

    # -- write
    def put(self, key: UPath, obj: Any) -> StoredVersion:
        """Store ``obj`` as the current version at ``key`` (see the module notes)."""
        with tempfile.TemporaryDirectory(prefix="perturb_store_") as scratch:
            staging = self._staging_folder(key, Path(scratch))
            try:
                stored = _stage(obj, staging)
                self._publish(key, staging, stored)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)  # a killed writer's: collect_garbage
                raise
        self._write_pointer(key, stored)
        self._prune(key, keep=stored.version)
        return stored

    def _staging_folder(self, key: UPath, scratch: Path) -> Path:
        # Locally, stage beside the versions (same filesystem: the final move is a rename).
        if not self.is_local:
            return scratch
        folder = Path(key.path) / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        return folder

    def _publish(self, key: UPath, staging: Path, stored: StoredVersion) -> None:
        target = key / stored.version
        if self.is_local:
            final = Path(target.path)
            try:
                os.rename(staging, final)
            except OSError:
                if not final.exists():
                    raise
                shutil.rmtree(staging)  # the same content is already stored (content-addressed)
            return
        if not target.exists():  # uploaded objects stay invisible until the pointer names them
            for rel, path in _local_files(staging):
                target.fs.put_file(str(path), (target / rel).path)

    def _write_pointer(self, key: UPath, stored: StoredVersion) -> None:
        text = json.dumps(stored.pointer(), indent=1, sort_keys=True)
        if self.is_local:
            folder = Path(key.path)
            tmp = folder / f".{POINTER}.{os.getpid()}-{uuid.uuid4().hex[:12]}"
            tmp.write_text(text)
            os.replace(tmp, folder / POINTER)
        else:
            (key / POINTER).write_text(text)  # one PUT: atomic on object stores

    def _prune(self, key: UPath, keep: str) -> None:
        now = time.time()
        for entry in key.iterdir():
            name = entry.name
            if not name.startswith(VERSION_PREFIX) or name == keep:
                continue
            if now - _modified(entry) > PRUNE_AFTER_S:
                _remove(entry)

    # -- read
    def current(self, key: UPath) -> dict[str, Any] | None:
        """The pointer at ``key`` (``None`` when nothing is stored there)."""
        try:
            return json.loads((key / POINTER).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StorageReadError(f"{key / POINTER}: unreadable pointer ({exc})") from exc

    def read(self, *parts: str) -> Any:
        """``get(key(*parts))``, e.g. ``read("assets", "metrics", "synthetic")``."""
        return self.get(self.key(*parts))

    def exists(self, key: UPath) -> bool:
        return self.current(key) is not None

    def get(self, key: UPath) -> Any:
        """The current value at ``key``, verified against its manifest.

        Raises
        ------
        FileNotFoundError
            Nothing is stored at ``key``.
        CorruptAssetError, StorageReadError
            A file differs from its recorded sha256, or the version cannot be parsed.
        """
        pointer = self._require(key)
        version = key / pointer["version"]
        if self.is_local:
            return self._read(Path(version.path), pointer, version)
        with tempfile.TemporaryDirectory(prefix="perturb_read_") as scratch:
            return self._read(self._download(version, pointer, Path(scratch)), pointer, version)

    def local_folder(self, key: UPath, into: Path) -> Path:
        """A verified local copy of the current version's folder (the folder itself locally)."""
        pointer = self._require(key)
        version = key / pointer["version"]
        folder = Path(version.path) if self.is_local else self._download(version, pointer, into)
        _verify(folder, pointer, version)
        return folder

    def _require(self, key: UPath) -> dict[str, Any]:
        pointer = self.current(key)
        if pointer is None:
            raise FileNotFoundError(f"nothing stored at {key}")
        return pointer

    def _download(self, version: UPath, pointer: dict[str, Any], into: Path) -> Path:
        for rel in pointer["files"]:
            local = into / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                version.fs.get_file((version / rel).path, str(local))
            except FileNotFoundError as exc:
                raise CorruptAssetError(
                    f"{version / rel}: missing from the stored version"
                ) from exc
        return into

    def _read(self, folder: Path, pointer: dict[str, Any], version: UPath) -> Any:
        _verify(folder, pointer, version)
        try:
            return _deserialise(pointer["format"], folder)
        except Exception as exc:
            raise StorageReadError(f"{version}: cannot read {pointer['format']} ({exc})") from exc


def _verify(folder: Path, pointer: dict[str, Any], version: UPath) -> None:
    """Every recorded file present with its recorded sha256, and no other file."""
    expected: dict[str, str] = pointer["files"]
    found = dict(_local_files(folder))
    for rel, sha in sorted(expected.items()):
        if rel not in found:
            raise CorruptAssetError(f"{version / rel}: missing from the stored version")
        if sha256_file(found[rel]) != sha:
            raise CorruptAssetError(
                f"{version / rel}: content differs from the sha256 recorded when it was "
                "written; re-materialise the asset"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CorruptAssetError(f"{version / extra[0]}: not part of the stored version")


def _modified(entry: UPath) -> float:
    try:
        if _is_local(entry):
            return Path(entry.path).stat().st_mtime
        # An object store has no folders: a version's age is that of its newest object.
        infos = entry.fs.find(entry.path, detail=True, withdirs=False).values()
        stamps = [i.get("LastModified") or i.get("mtime") or i.get("updated") for i in infos]
        stamps = [s.timestamp() if hasattr(s, "timestamp") else float(s) for s in stamps if s]
        return max(stamps) if stamps else time.time()
    except (OSError, ValueError):
        return time.time()  # unknown age: keep it


def _remove(entry: UPath) -> None:
    if _is_local(entry):
        path = Path(entry.path)
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    else:
        entry.fs.rm(entry.path, recursive=True)


def content_hashes(store: VersionedStore, *prefixes: str) -> dict[str, str]:
    """``{key: sha256}`` of every value stored under ``prefixes`` (default: everything), the key
    relative to the store's root (e.g. ``assets/metrics/synthetic``).

    Two stores with equal content hashes hold the same bytes in every stored value: compare
    two runs (or two versions of the code) with :func:`compare_content_hashes`.
    """
    root = store.root
    hashes = {}
    for pointer in root.rglob(POINTER):
        key = pointer.parent
        rel = key.relative_to(root).as_posix()
        if prefixes and rel.split("/")[0] not in prefixes:
            continue
        current = store.current(key)
        if current is not None:
            hashes[rel] = current["sha256"]
    return dict(sorted(hashes.items()))


def compare_content_hashes(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """Keys whose content differs, or that only one side stores."""
    return {
        "differ": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
        "only_before": sorted(before.keys() - after.keys()),
        "only_after": sorted(after.keys() - before.keys()),
    }


def collect_garbage(store: VersionedStore, older_than_s: float = 3600.0) -> list[str]:
    """Remove pointer temporaries, superseded versions and staging folders older than
    ``older_than_s`` anywhere under the store; the paths removed."""
    now, removed = time.time(), []
    for pointer in list(store.root.rglob(POINTER)):
        key = pointer.parent
        current = (store.current(key) or {}).get("version")
        for entry in key.iterdir():
            name = entry.name
            stale = name.startswith(f".{POINTER}.") or (
                name.startswith(VERSION_PREFIX) and name != current
            )
            if stale and now - _modified(entry) > older_than_s:
                _remove(entry)
                removed.append(str(entry))
    removed += _orphan_staging(store, now, older_than_s)
    return removed


def _orphan_staging(store: VersionedStore, now: float, older_than_s: float) -> list[str]:
    """Staging folders of dead writers (only local stores have any: a remote store's writer
    stages in a local temporary folder)."""
    if not store.is_local:
        return []
    removed = []
    for folder in Path(store.root.path).rglob(f"{STAGING_PREFIX}*"):
        if folder.exists() and now - folder.stat().st_mtime > older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed
