"""A dataset's raw files wherever a step runs: in place, or fetched from the store.

``raw_dataset`` leaves the GEARS file (and, for a simulated dataset, its companion folder of
stand-ins: GO GMT, embeddings, gene programs, scGPT checkpoint) in the local data root. When the
store is remote (``PERTURB_ASSETS_STORAGE_URL=s3://...``, steps in separate pods) it also stores
that folder in the store, versioned, and records where; a step on another machine then gets a
verified copy of it for as long as it needs the files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

from perturb_assets.core.datasets import RawManifest
from perturb_assets.defs.resources import DataSources


@dataclass(frozen=True)
class RawFiles:
    """The GEARS file of a dataset and the folder beside it, valid where the step runs."""

    path: Path
    annotations: Path | None
    simulated: bool

    @property
    def companion_dir(self) -> Path | None:
        """The simulator's companion folder here (see :meth:`RawManifest.companion_dir`)."""
        return self.path.parent if self.simulated else None


def store_raw(name: str, path: Path, data_sources: DataSources) -> str | None:
    """Store the dataset's folder (or bare file) when the store is remote; its location."""
    store = data_sources.store
    if store.is_local:  # every step sees the data root
        return None
    key = store.key("raw", name)
    store.put(key, path.parent if path.parent.name == name else path)
    return str(key)


@contextmanager
def raw_files(raw_dataset: dict | RawManifest, data_sources: DataSources) -> Iterator[RawFiles]:
    """The raw files of a ``raw_dataset`` manifest, valid inside the ``with`` block."""
    manifest = (
        raw_dataset if isinstance(raw_dataset, RawManifest) else RawManifest.from_dict(raw_dataset)
    )
    path = manifest.file(data_sources.root)
    annotations = manifest.annotations_file(data_sources.root)
    if path.exists() or manifest.stored is None:
        yield RawFiles(path, annotations, manifest.is_simulated)
        return
    with tempfile.TemporaryDirectory(prefix=f"perturb_raw_{os.getpid()}_") as scratch:
        folder = data_sources.store.local_folder(UPath(manifest.stored), Path(scratch))
        (entry,) = list(folder.iterdir())
        local = entry / path.name if entry.is_dir() else entry
        yield RawFiles(
            local, local.parent / annotations.name if annotations else None, manifest.is_simulated
        )
