"""The one file hash: the sha256 of a file's bytes, streamed in 1 MiB blocks.

Every file the platform records (a downloaded dataset, an embedding or GO file, a stored
version's files, a model file, a checkpoint, a user's prediction file) is hashed here. Content
hashes of in-memory tables and arrays (``defs/metadata.py``) are a different thing and keep
their own definition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from os import PathLike
from typing import Any

__all__ = ["sha256_bytes", "sha256_file", "sha256_files", "update_from_file"]

_BLOCK = 1 << 20


def update_from_file(digest: Any, path: str | PathLike[str], block: int = _BLOCK) -> Any:
    """Feed a file's bytes into ``digest`` (a ``hashlib`` object); returns ``digest``."""
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest


def sha256_file(path: str | PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (64 lowercase hex characters)."""
    return update_from_file(hashlib.sha256(), path).hexdigest()


def sha256_files(paths: Iterable[str | PathLike[str]]) -> str:
    """Hex SHA-256 of several files' bytes, one after the other (e.g. a checkpoint folder)."""
    digest = hashlib.sha256()
    for path in paths:
        update_from_file(digest, path)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already read from a file (a store reads each file once)."""
    return hashlib.sha256(data).hexdigest()
