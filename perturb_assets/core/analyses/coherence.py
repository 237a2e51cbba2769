"""Embedding coherence: do genes of the same pathway get similar embedding vectors?

The authors' ``notebooks/embedding_eval.ipynb`` (the paper's Supplementary Fig. 2) restricts
every embedding to the genes all embeddings share and that belong to some gene set, keeps the
gene sets with at least five such genes, and scores each gene set by the mean Pearson
correlation of its genes' embedding vectors (every pair once) minus the same mean under a null
embedding in which every gene gets another gene's vector (a random derangement). The bar of an
embedding is the mean of that difference over gene sets, with a 95% CI.

Here the within-set mean correlation is computed from row-standardised vectors without the
gene × gene correlation matrix: with unit-norm centred rows :math:`z_i`, the mean over the
:math:`k(k-1)/2` pairs of a set is :math:`(\\lVert\\sum_i z_i\\rVert^2 - k) / (k(k-1))`. Memory is
the float32 embedding itself (20,000 genes × 512 dimensions: 40 MB), time linear in the total
gene-set size. A gene whose vector is constant has no correlation; it is left out of the
common genes (the notebook's ``np.corrcoef`` would give NaN for its pairs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from perturb_assets.core.metrics.statistics import bootstrap_ci

__all__ = [
    "DOWNLOADABLE",
    "GENE_SETS_SUBDIR",
    "MIN_SET_SIZE",
    "coherence_summary",
    "derangement",
    "download_gene_sets",
    "embedding_coherence",
    "gene_set_collections",
    "read_gene_sets",
    "set_mean_correlations",
    "user_gene_set_files",
]

#: Where a user's gene-set collections (GMT files) live under the data root.
GENE_SETS_SUBDIR = "gene_sets"
#: Gene sets with fewer common genes are left out (the notebook's threshold).
MIN_SET_SIZE = 5
SEED = 42  # the notebook's SEED


def read_gene_sets(path: str | PathLike) -> dict[str, list[str]]:
    """A GMT file as ``{set name: genes}`` (via :func:`~perturb_assets.core.io.read_gmt`)."""
    from perturb_assets.core.io.annotations import read_gmt

    matrix = read_gmt(path)
    return {str(term): list(matrix.index[matrix[term].to_numpy() != 0]) for term in matrix.columns}


def user_gene_set_files(data_root: str | PathLike) -> dict[str, Path]:
    """``<root>/gene_sets/<collection>.gmt`` files, by collection name."""
    folder = Path(data_root) / GENE_SETS_SUBDIR
    return {p.stem: p for p in sorted(folder.glob("*.gmt"))} if folder.is_dir() else {}


#: Collections the paper uses that decoupler downloads: name -> (OmniPath resource, MSigDB
#: collection). The paper took Reactome 2022 and KEGG 2021 from Enrichr through gseapy; these
#: are MSigDB's versions of the same databases.
DOWNLOADABLE: dict[str, tuple[str, str | None]] = {
    "reactome": ("MSigDB", "reactome_pathways"),
    "kegg": ("MSigDB", "kegg_pathways"),
    "collectri": ("CollecTRI", None),
}
GeneSetCollection = Literal["reactome", "kegg", "collectri"]


def download_gene_sets(name: GeneSetCollection) -> dict[str, list[str]]:
    """A collection from decoupler (needs the network); CollecTRI's sets are TF -> targets."""
    import decoupler as dc

    resource, collection = DOWNLOADABLE[name]
    if resource == "CollecTRI":
        long = dc.op.collectri(organism="human")
        return {str(tf): list(targets) for tf, targets in long.groupby("source")["target"]}
    long = dc.op.resource(resource)
    long = long[long["collection"] == collection]
    if long.empty:
        raise ValueError(f"decoupler's {resource} resource has no collection {collection!r}")
    return {str(k): list(v) for k, v in long.groupby("geneset")["genesymbol"]}


def write_gene_sets(sets: Mapping[str, Sequence[str]], path: str | PathLike) -> Path:
    """Write ``{set: genes}`` as a GMT file (atomically)."""
    from perturb_assets.core.io.atomic import atomic_write

    lines = "".join("\t".join([name, name, *genes]) + "\n" for name, genes in sets.items())
    return atomic_write(path, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))


def gene_set_collections(
    data_root: str | PathLike,
    downloads: Sequence[GeneSetCollection] = (),
    extra: Mapping[str, str | PathLike] | None = None,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """Every collection: the user's GMT files, ``extra`` ones (e.g. the simulator's programs)
    and ``downloads`` (fetched once, then cached as ``<root>/gene_sets/<name>.gmt``).

    Returns the collections and, per collection that could not be had, why.
    """
    files = {**user_gene_set_files(data_root), **{k: Path(v) for k, v in (extra or {}).items()}}
    problems = {}
    for name in downloads:
        if name in files:
            continue
        try:
            sets = download_gene_sets(name)
        except Exception as exc:  # offline, service down, API change: skip, say why
            problems[name] = f"download failed ({type(exc).__name__}: {exc}); put a GMT file at "
            problems[name] += str(Path(data_root) / GENE_SETS_SUBDIR / f"{name}.gmt")
            continue
        files[name] = write_gene_sets(sets, Path(data_root) / GENE_SETS_SUBDIR / f"{name}.gmt")
    return {name: read_gene_sets(path) for name, path in files.items()}, problems


def _standardised(values: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (float64 for the sums, float32 storage)."""
    x = values.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x.astype(np.float32)


def set_mean_correlations(z: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """Mean pairwise correlation within each set, from standardised rows ``z``."""
    out = np.empty(len(members))
    for i, rows in enumerate(members):
        k = len(rows)
        total = z[rows].sum(axis=0, dtype=np.float64)
        out[i] = (total @ total - k) / (k * (k - 1))
    return out


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation without fixed points (rejection sampling, as the notebook)."""
    while True:
        perm = rng.permutation(n)
        if n < 2 or not (perm == np.arange(n)).any():
            return perm


def _common_genes(embeddings: Mapping[str, pd.DataFrame]) -> pd.Index:
    common = None
    for table in embeddings.values():
        varying = table.index[table.to_numpy(np.float64).std(axis=1) > 0]
        common = varying if common is None else common.intersection(varying)
    return common if common is not None else pd.Index([])


def embedding_coherence(
    embeddings: Mapping[str, pd.DataFrame],
    gene_sets: Mapping[str, Sequence[str]],
    *,
    min_size: int = MIN_SET_SIZE,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per gene set and embedding: mean within-set correlation, its null, and the difference.

    Parameters
    ----------
    embeddings
        Name -> gene × dimension table (genes in the index).
    gene_sets
        Set name -> genes (one collection, e.g. Reactome).
    min_size
        Minimum number of common genes for a set to count.
    seed
        Seed of the derangements (one per embedding, as the notebook).

    Returns
    -------
    pandas.DataFrame
        Columns ``embedding``, ``gene_set``, ``n_genes``, ``real``, ``null`` and ``delta``
        (``real - null``), over the genes common to every embedding and to some set.
    """
    in_sets = pd.Index(sorted({g for genes in gene_sets.values() for g in genes}))
    genes = _common_genes(embeddings).intersection(in_sets)
    position = pd.Series(np.arange(len(genes)), index=genes)
    members, names = [], []
    for name, set_genes in gene_sets.items():
        rows = position.reindex(pd.Index(set_genes).unique()).dropna().to_numpy(np.int64)
        if len(rows) >= min_size:
            members.append(rows)
            names.append(name)
    rng = np.random.default_rng(seed)
    frames = []
    for embedding, table in embeddings.items():
        z = _standardised(table.loc[genes].to_numpy())
        real = set_mean_correlations(z, members)
        null = set_mean_correlations(z[derangement(len(genes), rng)], members)
        frames.append(
            pd.DataFrame(
                {
                    "embedding": embedding,
                    "gene_set": names,
                    "n_genes": [len(m) for m in members],
                    "real": real,
                    "null": null,
                    "delta": real - null,
                }
            )
        )
    columns = ["embedding", "gene_set", "n_genes", "real", "null", "delta"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def coherence_summary(per_set: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean ``delta`` over gene sets per embedding, with a 95% bootstrap CI."""
    rows = []
    for embedding, part in per_set.groupby("embedding", sort=False):
        mean, low, high = bootstrap_ci(part["delta"].to_numpy(float), n_boot=n_boot, seed=seed)
        rows.append(
            {
                "embedding": embedding,
                "delta": mean,
                "ci_low": low,
                "ci_high": high,
                "n_gene_sets": len(part),
            }
        )
    return pd.DataFrame(rows, columns=["embedding", "delta", "ci_low", "ci_high", "n_gene_sets"])
