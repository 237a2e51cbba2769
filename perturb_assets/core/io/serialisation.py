"""How a value becomes the files of a stored version, and comes back from verified bytes.

:func:`serialise` writes a value into an empty folder (AnnData as zarr, tables as parquet,
dicts and lists as JSON, a file or folder as itself); :func:`manifest` lists its files with
their sha256; :func:`deserialise` parses a version back from the bytes the reader has already
verified against that manifest, so what is parsed is exactly what was checked (a file that
vanished or changed after the check can never come back as zeros).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import pandas as pd

from perturb_assets.core.io.hashing import sha256_file

__all__ = ["Format", "content_sha", "deserialise", "link_or_copy", "local_files", "manifest"]

Format = Literal["zarr", "parquet", "json", "file"]
ZARR_FOLDER = "data.zarr"
ZARR_FORMAT = 2


def serialise(obj: Any, folder: Path) -> Format:
    """Write ``obj`` into the empty local ``folder``; its format."""
    if isinstance(obj, ad.AnnData):
        # Pinned, not anndata's default: the default moves to v3, which would change the bytes
        # (and the content hashes) of every stored AnnData on an upgrade.
        with ad.settings.override(zarr_write_format=ZARR_FORMAT):
            obj.write_zarr(folder / ZARR_FOLDER)
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
            shutil.copytree(obj, target, copy_function=link_or_copy)
        else:
            link_or_copy(obj, target)
        return "file"
    raise TypeError(
        f"cannot store a {type(obj).__name__}; store AnnData, DataFrame, dict, list or a Path"
    )


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """A hard link where possible (no copy of a multi-GB file), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def local_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, path)`` of every file under ``folder``, sorted."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield path.relative_to(folder).as_posix(), path


def manifest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {rel: sha256_file(path) for rel, path in local_files(folder)}


def content_sha(files: Mapping[str, str]) -> str:
    """The sha256 of a version's content: of its sorted ``path<TAB>sha256`` lines."""
    lines = "".join(f"{rel}\t{sha}\n" for rel, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def deserialise(fmt: Format, files: Mapping[str, bytes]) -> Any:
    """The value of a version from its verified file bytes (``{relative path: bytes}``)."""
    if fmt == "zarr":
        return _anndata_from_bytes(files)
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(files["data.parquet"]))
    if fmt == "json":
        return json.loads(files["data.json"])
    raise TypeError("a stored file or folder is read with VersionedStore.local_folder")


def _anndata_from_bytes(files: Mapping[str, bytes]) -> ad.AnnData:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import MemoryStore

    buffer = default_buffer_prototype().buffer
    prefix = f"{ZARR_FOLDER}/"
    store = MemoryStore(
        {rel[len(prefix) :]: buffer.from_bytes(data) for rel, data in files.items()}
    )
    return ad.read_zarr(store)
