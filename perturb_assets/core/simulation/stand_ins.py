"""The simulator's files beside the GEARS file: its companion folder of stand-ins.

A simulated dataset is written as a GEARS folder (:func:`write_gears_dataset`) whose other files
stand in for what a user supplies for a real dataset: a GO-like annotation GMT, the gene programs
as gene sets, and gene-embedding tables named like the real ones (scGPT, scFoundation, scELMo).
That folder is the dataset's *companion folder*
(:meth:`perturb_assets.core.datasets.RawManifest.companion_dir`). The foundation-model code
adds a tiny random scGPT checkpoint there on first use
(:func:`perturb_assets.core.models.foundation.stand_in_checkpoint`), so the simulator needs no
model code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from perturb_assets.core import gears
from perturb_assets.core.io.atomic import atomic_write
from perturb_assets.core.io.embeddings import EMBEDDINGS_SUBDIR
from perturb_assets.core.simulation.generator import SimulatedDataset

__all__ = [
    "GMT_NAME",
    "PROGRAMS_GMT_NAME",
    "STAND_IN_NOISE",
    "simulated_embeddings",
    "write_gears_dataset",
    "write_gmt",
]

#: The simulator's GO stand-in, written beside the GEARS file.
GMT_NAME = "gene_annotations.gmt"
#: The simulator's ground-truth gene programs as gene sets (for embedding coherence).
PROGRAMS_GMT_NAME = "gene_programs.gmt"
#: Noise SD (relative to the signal SD) of each stand-in gene embedding, named after the
#: embedding feature sets of :data:`perturb_assets.core.models.FEATURE_SETS`; in this order,
#: which fixes the random draws. The stand-ins thus carry different amounts of real signal.
STAND_IN_NOISE: dict[str, float] = {"scgpt": 1.5, "scfoundation": 3.0, "scelmo": 1.0}


def write_gears_dataset(sim: SimulatedDataset, folder: str | os.PathLike[str]) -> Path:
    """Write a simulated dataset as a GEARS dataset folder.

    Writes ``folder/perturb_processed.h5ad``, ``folder/gene_annotations.gmt`` (one line per
    term: ``term_id <TAB> description <TAB> gene symbols...``), the stand-in gene embeddings
    ``folder/embeddings/<name>.parquet`` and the gene programs ``folder/gene_programs.gmt``.
    Each file is written to a temporary
    file in ``folder`` and moved into place with ``os.replace``, so a reader never sees a
    half-written file.

    Parameters
    ----------
    sim
        The simulated dataset.
    folder
        Output folder; created if missing.

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / gears.FILENAME, lambda tmp: sim.adata.write_h5ad(tmp))
    atomic_write(folder / GMT_NAME, lambda tmp: _write_gmt(sim, tmp))
    programs = (sim.programs > 0).astype(np.int8)
    atomic_write(folder / PROGRAMS_GMT_NAME, lambda tmp: write_gmt(programs, tmp))
    (folder / EMBEDDINGS_SUBDIR).mkdir(exist_ok=True)
    for name, table in simulated_embeddings(sim).items():
        atomic_write(folder / EMBEDDINGS_SUBDIR / f"{name}.parquet", table.to_parquet)
    return folder


def simulated_embeddings(
    sim: SimulatedDataset, n_dims: int = 64, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Stand-ins for the scGPT, scFoundation and scELMo gene-embedding tables.

    Each is a random projection of a gene's ground-truth program membership plus Gaussian
    noise (:data:`STAND_IN_NOISE` sets its SD relative to the signal), so each embedding carries
    real but imperfect prior knowledge, like the published ones. They let the whole feature ×
    model grid run on ``synthetic``; for real datasets the user supplies the real files.

    Parameters
    ----------
    sim
        The simulated dataset (its ``programs`` matrix is the signal).
    n_dims
        Embedding width.
    seed
        Seed of the projections and the noise.

    Returns
    -------
    dict of str to pandas.DataFrame
        Name → gene symbol × ``dim0..`` float32 table, covering every annotated gene.
    """
    rng = np.random.default_rng(seed)
    membership = sim.programs.to_numpy(dtype=np.float64)
    out = {}
    for name, noise in STAND_IN_NOISE.items():
        projection = rng.normal(size=(membership.shape[1], n_dims))
        signal = membership @ projection
        scale = float(signal.std()) or 1.0
        values = signal + rng.normal(scale=noise * scale, size=signal.shape)
        out[name] = pd.DataFrame(
            values.astype(np.float32),
            index=pd.Index(sim.programs.index.astype(str), name="gene"),
            columns=[f"dim{i}" for i in range(n_dims)],
        )
    return out


def _write_gmt(sim: SimulatedDataset, path: Path) -> None:
    """Write the annotation matrix as a GMT file."""
    write_gmt(sim.annotations, path, sim.term_descriptions)


def write_gmt(
    matrix: pd.DataFrame, path: str | os.PathLike[str], descriptions: pd.Series | None = None
) -> None:
    """Write a binary gene × set matrix as a GMT file (set, description, member genes)."""
    genes = matrix.index.to_numpy().astype(str)
    values = matrix.to_numpy()
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for j, term in enumerate(matrix.columns):
            description = term if descriptions is None else descriptions.get(term, term)
            description = str(description).replace("\t", " ").replace("\n", " ")
            members = genes[values[:, j] != 0]
            handle.write("\t".join([str(term), description, *members]) + "\n")
