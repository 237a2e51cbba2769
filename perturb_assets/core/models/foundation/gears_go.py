"""GEARS' GO graph, built offline exactly as cell-gears 0.1.2 builds it.

cell-gears reads three files and downloads each one that is not already where it looks:

* ``gene2go_all.pkl``: gene symbol -> set of GO terms. A user may put GEARS' own file at
  ``<data root>/annotations/gene2go_all.pkl`` (:func:`perturb_assets.core.io.user_gene2go_file`);
  else it is derived from the ``go_annotations`` matrix (:func:`gene2go_from_annotations`).
* ``essential_all_data_pert_genes.pkl``: the genes of the perturbation graph; here the measured
  genes plus the perturbed genes, the list cell-gears uses with ``default_pert_graph=False``.
* ``go_essential_all/go_essential_all.csv``: ``source,target,importance`` with the Jaccard
  similarity of two genes' term sets where it exceeds 0.1 (self-loops included), in the row
  order of cell-gears' ``make_GO`` (:func:`go_edges`).

cell-gears then keeps, per target gene, the ``k + 1`` edges of highest importance
(``get_similarity_network``, ``k = num_similar_genes_go_graph = 20``; :func:`top_k_edges`), and
drops every condition with a target outside the graph (``filter_pert_in_go``;
:func:`conditions_without_go`): GEARS neither trains on nor predicts them.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from perturb_assets.core.gears.format import parse_condition

__all__ = [
    "GO_FOLDER",
    "JACCARD_THRESHOLD",
    "NUM_SIMILAR_GENES",
    "conditions_without_go",
    "gene2go_from_annotations",
    "go_edges",
    "top_k_edges",
    "write_go_files",
]

GO_FOLDER = "go_essential_all"
#: ``get_GO_edge_list``: an edge where the Jaccard similarity exceeds this.
JACCARD_THRESHOLD = 0.1
#: ``GEARS.model_initialize(num_similar_genes_go_graph=20)``.
NUM_SIMILAR_GENES = 20


def gene2go_from_annotations(annotations: pd.DataFrame) -> dict[str, set[str]]:
    """Gene symbol -> its terms, from a binary gene × term matrix; unannotated genes are absent
    (as in GEARS' file: a gene without a term is not in the graph)."""
    matrix = sp.csr_matrix(annotations.to_numpy(dtype=np.float32) != 0, dtype=np.float32)
    symbols = annotations.index.astype(str).to_numpy()
    terms = annotations.columns.astype(str).to_numpy()
    return {g: set(terms[matrix[i].indices]) for i, g in enumerate(symbols) if matrix[i].nnz}


def conditions_without_go(conditions: Iterable[str], graph_genes: Iterable[str]) -> list[str]:
    """The conditions cell-gears' ``filter_pert_in_go`` drops: a target outside the graph."""
    genes = set(graph_genes)
    return sorted(
        c
        for c in dict.fromkeys(map(str, conditions))
        if any(g not in genes for g in parse_condition(c))
    )


def go_edges(gene2go: dict[str, set[str]], genes: Iterable[str]) -> pd.DataFrame:
    """cell-gears' ``make_GO`` on ``pert_list`` = the sorted ``genes`` that have terms: every
    ordered pair with Jaccard > 0.1, rows in its order (source, then target, both sorted).

    The same numbers as its pairwise loop, computed as one sparse product.
    """
    names = np.array(sorted({str(g) for g in genes if g in gene2go}), dtype=object)
    terms = sorted({t for g in names for t in gene2go[g]})
    column = {t: j for j, t in enumerate(terms)}
    rows = [(i, column[t]) for i, g in enumerate(names) for t in gene2go[g]]
    r, c = np.array(rows, dtype=np.int64).T if rows else (np.zeros(0, int), np.zeros(0, int))
    b = sp.csr_matrix((np.ones(len(r), np.float64), (r, c)), shape=(len(names), len(terms)))
    shared = (b @ b.T).tocoo()
    sizes = np.asarray(b.sum(axis=1)).ravel()
    jaccard = shared.data / (sizes[shared.row] + sizes[shared.col] - shared.data)
    keep = jaccard > JACCARD_THRESHOLD
    order = np.lexsort((shared.col[keep], shared.row[keep]))  # make_GO's loop order
    return pd.DataFrame({"source": names[shared.row[keep][order]],
                         "target": names[shared.col[keep][order]],
                         "importance": jaccard[keep][order]})  # fmt: skip


def top_k_edges(edges: pd.DataFrame, k: int = NUM_SIMILAR_GENES) -> pd.DataFrame:
    """``get_similarity_network``'s selection: per target, the ``k + 1`` most important edges
    (``nlargest``, ties kept in row order), targets in sorted order."""
    keep = edges.groupby("target", sort=True, group_keys=False)["importance"].nlargest(k + 1)
    index = keep.index.get_level_values(-1)
    return edges.loc[index].reset_index(drop=True)


def write_go_files(
    root: str | Path, gene2go: dict[str, set[str]], measured: list[str], perturbed: list[str]
) -> dict[str, int]:
    """Write cell-gears' three GO files under ``root``; return the graph's size."""
    root = Path(root)
    (root / GO_FOLDER).mkdir(parents=True, exist_ok=True)
    essential = sorted(set(measured) | set(perturbed))
    edges = go_edges(gene2go, essential)
    with open(root / "gene2go_all.pkl", "wb") as handle:
        pickle.dump(gene2go, handle)
    with open(root / "essential_all_data_pert_genes.pkl", "wb") as handle:
        pickle.dump(essential, handle)
    edges.to_csv(root / GO_FOLDER / f"{GO_FOLDER}.csv", index=False)
    return {
        "n_go_genes": int(sum(g in gene2go for g in essential)),
        "n_go_edges": len(edges),
        "n_go_edges_top_k": len(top_k_edges(edges)),
    }
