"""Looking after a versioned store: listing its content hashes, and collecting its garbage.

:func:`content_hashes` lists ``{key: sha256}`` of every stored value, so two runs, two data
roots or two versions of the code can be compared byte for byte (``perturb-assets hashes``).
:func:`collect_garbage` removes what killed or finished writers leave behind (``perturb-assets
gc``), taking each key's lock like a writer and never deleting a version the pointer names as
current, that was retired less than ``older_than_s`` ago, or that ``protect`` names (the
versions the instance's latest materialisations record).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from upath import UPath

from perturb_assets.core.io.pointers import POINTER
from perturb_assets.core.io.store import (
    STAGING_PREFIX,
    VERSION_PREFIX,
    VersionedStore,
    _remove,
)

__all__ = ["collect_garbage", "compare_content_hashes", "content_hashes", "pid_alive"]

#: Scratch folders of this platform in the system temp dir: ``perturb_<kind>_<pid>_<random>``.
_SCRATCH = re.compile(r"^perturb_(?:store|model|raw)_(\d+)_")


def content_hashes(store: VersionedStore, *prefixes: str) -> dict[str, str]:
    """``{key: sha256}`` of every value stored under ``prefixes`` (default: everything), the key
    relative to the store's root (e.g. ``assets/metrics/synthetic``).

    Two stores with equal content hashes hold the same bytes in every stored value: compare
    two runs (or two versions of the code) with :func:`compare_content_hashes`.
    """
    hashes = {}
    for pointer in store.root.rglob(POINTER):
        key = pointer.parent
        rel = store.relative_key(key)
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


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def collect_garbage(
    store: VersionedStore,
    older_than_s: float = 3600.0,
    protect: Mapping[str, set[str]] | None = None,
) -> list[str]:
    """Remove leftovers older than ``older_than_s`` anywhere under the store; the paths removed.

    Per key: pointer temporaries (``.CURRENT.json.<pid>-<hex>``, e.g. of a full disk), staging
    folders of dead writers, versions retired longer than ``older_than_s`` ago, and versions
    the pointer does not know (a writer killed between publishing and swapping). ``protect``
    maps a key (relative to the root) to versions to keep whatever their age. Also this
    machine's scratch folders (``perturb_store_<pid>_...`` and the like) whose process is gone.
    """
    protect = protect or {}
    now, removed = time.time(), []
    for folder in _key_folders(store):
        rel = store.relative_key(folder)
        with store._pointers.locked(folder):
            removed += _collect_key(store, folder, protect.get(rel, set()), now, older_than_s)
    return removed + _dead_scratch_folders(now, older_than_s)


def _key_folders(store: VersionedStore) -> list[UPath]:
    """Every folder holding a pointer, a version or a staging folder."""
    folders = {p.parent.path: p.parent for p in store.root.rglob(POINTER)}
    for pattern in (f"{VERSION_PREFIX}*", f"{STAGING_PREFIX}*"):
        for entry in store.root.rglob(pattern):
            if entry.is_dir() and not entry.parent.name.startswith(VERSION_PREFIX):
                folders.setdefault(entry.parent.path, entry.parent)
    return sorted(folders.values(), key=lambda f: f.path)


def _collect_key(
    store: VersionedStore, key: UPath, keep: set[str], now: float, older_than_s: float
) -> list[str]:
    pointer, token = store._pointers.read(key)
    current = (pointer or {}).get("version")
    retired = dict((pointer or {}).get("retired", {}))
    doomed = [v for v, t in retired.items() if now - t > older_than_s and v not in keep]
    if doomed:  # let them go in the pointer first, so no writer reuses them meanwhile
        for version in doomed:
            del retired[version]
        store._pointers.write(key, {**pointer, "retired": retired}, token)
    removed = []
    for entry in key.iterdir():
        name = entry.name
        if name == current or name in retired or name in keep:
            continue
        unknown = name.startswith((VERSION_PREFIX, STAGING_PREFIX, f".{POINTER}."))
        if name in doomed or (unknown and now - _modified(entry) > older_than_s):
            _remove(entry)
            removed.append(str(entry))
    return removed


def _modified(entry: UPath) -> float:
    try:
        if store_is_local(entry):
            return Path(entry.path).stat().st_mtime
        infos = entry.fs.find(entry.path, detail=True, withdirs=False).values()
        stamps = [i.get("LastModified") or i.get("mtime") or i.get("updated") for i in infos]
        stamps = [s.timestamp() if hasattr(s, "timestamp") else float(s) for s in stamps if s]
        return max(stamps) if stamps else time.time()
    except (OSError, ValueError):
        return time.time()  # unknown age: keep it


def store_is_local(entry: UPath) -> bool:
    return getattr(entry, "protocol", "") in ("", "file", "local")


def _dead_scratch_folders(now: float, older_than_s: float) -> list[str]:
    """This machine's scratch folders of processes that are gone (or older than a day)."""
    removed = []
    temp = Path(tempfile.gettempdir())
    for folder in temp.glob("perturb_*"):
        match = _SCRATCH.match(folder.name)
        if not match or not folder.is_dir():
            continue
        age = now - folder.stat().st_mtime
        if (not pid_alive(int(match.group(1))) and age > min(older_than_s, 60)) or age > 86400:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed
