"""The GO annotation matrix of a dataset, from wherever it comes (the ``go_annotations`` asset).

``source="auto"`` takes the simulator's stand-in for a simulated dataset, else the user's file
under ``<data root>/annotations/`` (GMT or GAF), else MSigDB's GO:BP through decoupler (the
paper's source), cached in the data root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pandas as pd

from perturb_assets.core.io.annotations import (
    ANNOTATION_FILES,
    ANNOTATIONS_SUBDIR,
    AnnotationDownloadError,
    go_annotations_from_decoupler,
    read_gaf,
    read_gmt,
    user_annotation_file,
)
from perturb_assets.core.io.atomic import atomic_write

__all__ = [
    "AnnotationSource",
    "go_annotation_matrix",
]
#: Where to take GO annotations from.
AnnotationSource = Literal["auto", "simulator", "file", "decoupler"]
_MSIGDB_CACHE = "msigdb_go_biological_process.parquet"


def go_annotation_matrix(
    source: AnnotationSource,
    data_root: str | os.PathLike[str],
    simulated_gmt: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """The binary gene × GO-term matrix of a dataset, and where it came from.

    ``source``:

    * ``"simulator"``: the simulator's stand-in ``simulated_gmt``;
    * ``"file"``: the first of :data:`ANNOTATION_FILES` in ``<root>/annotations/``;
    * ``"decoupler"``: MSigDB GO Biological Process through decoupler, cached as parquet in
      ``<root>/annotations/`` after the first download;
    * ``"auto"``: the first of those that is available, in that order.

    Raises
    ------
    FileNotFoundError
        If ``source`` is ``"simulator"`` or ``"file"`` and that file does not exist.
    AnnotationDownloadError
        If decoupler's download fails.
    """
    folder = Path(data_root) / ANNOTATIONS_SUBDIR
    if source in ("auto", "simulator") and simulated_gmt is not None:
        return read_gmt(simulated_gmt), f"simulator: {simulated_gmt}"
    if source == "simulator":
        raise FileNotFoundError("source 'simulator' needs the simulator's GMT (synthetic only)")
    if source in ("auto", "file"):
        path = user_annotation_file(data_root)
        if path is not None:
            reader = read_gaf if ".gaf" in path.name else read_gmt
            return reader(path), f"file: {path}"
        if source == "file":
            raise FileNotFoundError(f"no GO file found; put one of {ANNOTATION_FILES} in {folder}")
    cache = folder / _MSIGDB_CACHE
    if not cache.exists():
        try:
            matrix = go_annotations_from_decoupler("go_biological_process")
        except AnnotationDownloadError as exc:  # say where the local file goes
            raise AnnotationDownloadError(
                f"{exc}; put it at {folder / ANNOTATION_FILES[0]} (or {folder / 'go.gaf'})"
            ) from exc
        atomic_write(cache, matrix.to_parquet)
    return pd.read_parquet(cache), "decoupler MSigDB go_biological_process"
