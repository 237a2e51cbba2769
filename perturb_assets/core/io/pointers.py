"""A stored key's pointer (``CURRENT.json``), read and replaced as a compare-and-swap.

The pointer names a key's current version and when each earlier version stopped being current
(its *retirement*). Every change to it is a compare-and-swap against what the writer read, so
two writers of one key, in any interleaving, leave one whole version current:

* a local folder: the writer holds an exclusive ``flock`` on ``<key>/.lock`` while it reads
  the pointer, publishes its version, writes the pointer (a temporary file and ``os.replace``)
  and prunes; readers take no lock;
* S3 (and S3-compatible servers): the pointer is written with ``If-Match: <ETag read>``, or
  ``If-None-Match: *`` when there was none; a refused write means another writer won, and the
  writer reads again and retries;
* other object stores: the write is unconditional (last writer wins), which is safe with one
  writer per key (the deployment's per-partition run limit).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from upath import UPath

__all__ = ["POINTER", "PointerConflict", "Pointers"]

POINTER = "CURRENT.json"
LOCK = ".lock"


class PointerConflict(Exception):
    """Another writer replaced the pointer since it was read."""


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def _is_s3(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("s3", "s3a")


class Pointers:
    """Read and compare-and-swap the pointers of one store (local or remote)."""

    def __init__(self, root: UPath) -> None:
        self.local = is_local(root)
        self.s3 = _is_s3(root)

    @contextlib.contextmanager
    def locked(self, key: UPath) -> Iterator[None]:
        """Exclusive per-key lock for a local store (no-op remotely: the swap is conditional)."""
        if not self.local:
            yield
            return
        folder = Path(key.path)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, key: UPath) -> tuple[dict[str, Any] | None, Any]:
        """The pointer at ``key`` (``None`` if absent) and the token a swap compares with."""
        if self.s3:
            return self._read_s3(key / POINTER)
        try:
            text = (key / POINTER).read_text()
        except FileNotFoundError:
            return None, None
        return json.loads(text), text

    def write(self, key: UPath, pointer: dict[str, Any], token: Any) -> None:
        """Replace the pointer if it is still the one read with ``token``.

        Raises
        ------
        PointerConflict
            Another writer replaced it in between (remote stores; locally the lock prevents it).
        """
        text = json.dumps(pointer, indent=1, sort_keys=True)
        if self.local:
            self._write_local(Path(key.path), text)
        elif self.s3:
            self._write_s3(key / POINTER, text, token)
        else:
            (key / POINTER).write_text(text)

    # -- local
    @staticmethod
    def _write_local(folder: Path, text: str) -> None:
        tmp = folder / f".{POINTER}.{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            with open(tmp, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / POINTER)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: no 0-byte temporary left behind
            raise

    # -- S3: the object's ETag is the token
    @staticmethod
    def _bucket_key(path: UPath) -> tuple[str, str]:
        bucket, _, key = path.path.partition("/")
        return bucket, key

    def _read_s3(self, path: UPath) -> tuple[dict[str, Any] | None, Any]:
        from fsspec.asyn import sync

        fs = path.fs
        bucket, key = self._bucket_key(path)

        async def get() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                return await body.read(), response["ETag"]
            finally:
                body.close()

        try:
            data, etag = sync(fs.loop, get)
        except FileNotFoundError:
            return None, None
        return json.loads(data), etag

    def _write_s3(self, path: UPath, text: str, etag: str | None) -> None:
        from fsspec.asyn import sync

        fs = path.fs
        bucket, key = self._bucket_key(path)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            sync(fs.loop, fs._call_s3, "put_object", Bucket=bucket, Key=key,
                 Body=text.encode(), **condition)  # fmt: skip
        except Exception as exc:  # s3fs translates botocore errors to OSError subclasses
            if _is_precondition_failure(exc):
                raise PointerConflict(str(path)) from exc
            raise
        fs.invalidate_cache(path.path)


def _is_precondition_failure(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}"
        if any(s in text for s in ("PreconditionFailed", "412", "ConditionalRequestConflict")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
