"""Prior-knowledge features of perturbed genes for the bulk baseline models.

Csendes et al. (2025, Methods) represent a perturbation by prior knowledge about its target gene:

1. Gene Ontology (GO) terms for all genes are downloaded with decoupler and reformatted as a
   binary gene × GO-term indicator matrix (:func:`go_annotations_from_decoupler`, or from a
   local file with :func:`read_gmt` / :func:`read_gaf`).
2. PCA reduces that ``(n_genes, n_terms)`` matrix to 256 principal components
   (:func:`pca_features`). Gene embeddings from scGPT, scFoundation or scELMo
   (:func:`read_embedding`) get the same preprocessing (:func:`embedding_pca`).
3. Each condition's feature vector is the row of its target gene; for a combination the rows of
   both genes are summed (:func:`perturbation_features`). Gene symbols are matched through an
   explicit table of HGNC renames (:func:`gene_aliases`, :func:`match_genes`), because the
   GEARS datasets use outdated symbols (``AARS`` for ``AARS1``, ``H2AFZ`` for ``H2AZ1``, ...).

Notes on the authors' code (``turbine-ai/PerturbSeqPredBenchmark``,
``notebooks/bulk_models.ipynb``): the GO matrix is reduced with
``PCA(n_components=256, random_state=0)`` (scikit-learn's ``svd_solver="auto"``, which resolves
to the randomized solver for a matrix of that shape). On single-gene datasets a condition's
features are its gene's row. On Norman (the combination dataset) a zero row named ``NULL`` is
appended to the PCA table and every condition is written as a pair ``(first, second)`` with
``second = NULL`` for a single, so a single is ``row + 0`` and therefore identical to its row.
For a combination the published notebook (commit ``e42855d``, whose outputs are the paper's
numbers) computes ``row(first) + row(second)``, as the paper text says ("simply summed"); the
2024 preprint version (commit ``c33d242``) computed ``row(first) - row(second)``.
:func:`perturbation_features` does either (``combine``); the benchmark protocol
(:mod:`perturb_assets.core.models.registry`) chooses. The notebook has no missing-gene policy (a
missing symbol raises ``KeyError``); outdated symbols were fixed by hand with
``notebooks/gene_name_map.json``.

This module is Dagster-free: plain functions on pandas, numpy and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from perturb_assets.core.features.genes import match_genes
from perturb_assets.core.gears.format import parse_condition

__all__ = [
    "feature_table_problems",
    "perturbation_features",
]


def feature_table_problems(features: pd.DataFrame, targets: Iterable[str]) -> list[str]:
    """What makes a gene-feature table unusable for the models; empty when it is fine.

    An empty table is fine: it means "no embedding for this dataset" and the models on it are
    skipped. A non-empty one must have finite values, unique gene symbols, and features for at
    least one perturbation target (through :func:`match_genes`): a file keyed by Ensembl ids
    instead of symbols matches none and would train every model on nothing.

    Parameters
    ----------
    features
        Genes × features, e.g. from :func:`pca_features`.
    targets
        The dataset's perturbation targets (:func:`perturb_assets.core.gears.target_genes`).
    """
    if features.empty:
        return []
    problems = []
    if not np.isfinite(features.to_numpy(dtype=float)).all():
        problems.append("features hold NaN or infinite values")
    if features.index.has_duplicates:
        dup = features.index[features.index.duplicated()].unique()[:5].tolist()
        problems.append(f"gene symbols are duplicated, e.g. {dup}")
    mapping, report = match_genes(targets, features.index)
    if report["n_query"] and not mapping:
        problems.append(
            f"no feature row for any of the {report['n_query']} perturbation targets (e.g. "
            f"{report['missing'][:3]}); index by gene symbol, not by id "
            f"(the table's index starts {features.index[:3].tolist()})"
        )
    return problems


# ---------------------------------------------------------------------------------------------
# Perturbation features
# ---------------------------------------------------------------------------------------------


def perturbation_features(
    conditions: Iterable[str],
    gene_features: pd.DataFrame,
    missing: Literal["zero", "drop", "error"] = "zero",
    combo_dataset: bool | None = None,
    aliases: Mapping[str, str] | None = None,
    combine: Literal["sum", "difference"] = "sum",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Feature vector of every GEARS condition from per-gene features.

    * ``A+ctrl`` / ``ctrl+A`` (single): the row of ``A``.
    * ``A+B`` (combination): ``row(A) + row(B)`` as in the paper and the published notebook
      (:data:`perturb_assets.core.models.PUBLISHED_2025`); ``combine="difference"`` gives
      ``row(A) - row(B)``, what the 2024 preprint notebook computed
      (:data:`~perturb_assets.core.models.PREPRINT_2024`).
    * On a combination dataset a single is treated as a pair with a zero second row (the
      authors' ``NULL`` row), i.e. ``row(A) + 0``, which equals its row under either ``combine``
      rule; the flag is therefore only checked and reported.
    * ``ctrl``: a zero vector (no gene is perturbed), kept in the output so that the rows line
      up with the conditions; drop it if the model should not see it (the authors train on
      perturbed conditions only).

    Genes are looked up with :func:`match_genes` (direct, then through ``aliases``).

    Parameters
    ----------
    conditions
        GEARS conditions (``ctrl``, ``A+ctrl``, ``ctrl+A``, ``A+B``), unique.
    gene_features
        Genes × dimensions, e.g. from :func:`pca_features` or :func:`embedding_pca`.
    missing
        What to do with a target gene absent from ``gene_features`` (after alias matching):
        ``"zero"`` uses a zero vector for that gene (a combination keeps the other gene's row),
        ``"drop"`` drops every condition with a missing gene, ``"error"`` raises
        :class:`KeyError`.
    combo_dataset
        Whether the dataset has combinations (Norman). ``None`` infers it from ``conditions``.
        ``False`` with a combination present raises :class:`ValueError`.
    aliases
        ``{old_symbol: new_symbol}``; defaults to :func:`gene_aliases`.
    combine
        ``"sum"`` (paper, published notebook) or ``"difference"`` (2024 preprint notebook).

    Returns
    -------
    X : pandas.DataFrame
        Conditions (index, name ``condition``, input order, dropped ones left out) × the columns
        of ``gene_features``, ``float64``.
    report : dict
        ``policy``, ``combine``, ``combo_dataset``, ``n_conditions`` (input), ``n_output``,
        ``n_ctrl``, ``n_single``, ``n_combination``, ``n_missing_genes``, ``missing_genes``
        (sorted), ``zero_filled_conditions``, ``dropped_conditions``, and ``gene_matching``
        (the :func:`match_genes` report).

    Raises
    ------
    ValueError
        For a bad ``missing`` / ``combine`` value, repeated conditions, a combination when
        ``combo_dataset=False``, or non-unique / non-numeric ``gene_features``.
    KeyError
        With ``missing="error"``, if a target gene has no features.
    ConditionSyntaxError
        If a condition is not valid GEARS syntax.
    """
    if missing not in ("zero", "drop", "error"):
        raise ValueError(f"missing must be 'zero', 'drop' or 'error', got {missing!r}")
    if combine not in ("sum", "difference"):
        raise ValueError(f"combine must be 'sum' or 'difference', got {combine!r}")
    conditions = _unique_conditions(conditions)
    table = _feature_matrix(gene_features)
    targets = [parse_condition(c) for c in conditions]
    combo_dataset = _combo_dataset_flag(conditions, targets, combo_dataset)
    genes = list(dict.fromkeys(g for t in targets for g in t))
    mapping, match_report = match_genes(genes, gene_features.index, aliases)
    missing_genes = set(match_report["missing"])
    if missing == "error" and missing_genes:
        raise KeyError(
            f"no features for {len(missing_genes)} target gene(s) even through aliases: "
            f"{sorted(missing_genes)[:20]}"
        )
    row_of = {g: table[i] for i, g in enumerate(gene_features.index)}
    gene_rows = {g: row_of[mapping[g]] for g in genes if g not in missing_genes}
    rows, kept, zero_filled, dropped = _condition_rows(
        conditions, targets, gene_rows, table.shape[1], missing, combine
    )
    X = pd.DataFrame(
        np.vstack(rows) if rows else np.zeros((0, table.shape[1])),
        index=pd.Index(kept, name="condition", dtype=object),
        columns=gene_features.columns.copy(),
    )
    n_by_size = [sum(len(t) == n for t in targets) for n in (0, 1, 2)]
    report: dict[str, Any] = {
        "policy": missing,
        "combine": combine,
        "combo_dataset": bool(combo_dataset),
        "n_conditions": len(conditions),
        "n_output": len(kept),
        "n_ctrl": n_by_size[0],
        "n_single": n_by_size[1],
        "n_combination": n_by_size[2],
        "n_missing_genes": len(missing_genes),
        "missing_genes": sorted(missing_genes),
        "zero_filled_conditions": zero_filled,
        "dropped_conditions": dropped,
        "gene_matching": match_report,
    }
    return X, report


def _unique_conditions(conditions: Iterable[str]) -> list[str]:
    conditions = list(conditions)
    if len(set(conditions)) != len(conditions):
        dup = sorted({c for c in conditions if conditions.count(c) > 1})
        raise ValueError(f"conditions repeat: {dup[:10]}")
    return conditions


def _feature_matrix(gene_features: pd.DataFrame) -> np.ndarray:
    """``gene_features`` as finite float64 values with unique genes."""
    if not gene_features.index.is_unique:
        raise ValueError("gene_features index repeats genes")
    try:
        table = gene_features.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"gene_features is not numeric: {exc}") from exc
    if not np.isfinite(table).all():
        raise ValueError("gene_features holds NaN or infinite values")
    return table


def _combo_dataset_flag(
    conditions: list[str], targets: list[tuple[str, ...]], combo_dataset: bool | None
) -> bool:
    has_combo = any(len(t) == 2 for t in targets)
    if combo_dataset is None:
        return has_combo
    if not combo_dataset and has_combo:
        example = next(c for c, t in zip(conditions, targets, strict=True) if len(t) == 2)
        raise ValueError(f"combo_dataset=False, but condition {example!r} perturbs two genes")
    return combo_dataset


def _condition_rows(
    conditions: list[str],
    targets: list[tuple[str, ...]],
    gene_rows: Mapping[str, np.ndarray],
    width: int,
    missing: str,
    combine: str,
) -> tuple[list[np.ndarray], list[str], list[str], list[str]]:
    """Each condition's vector from its genes' rows (a zero row for a gene without features).

    Returns the rows, the kept conditions, the zero-filled and the dropped ones.
    """
    zeros = np.zeros(width, dtype=np.float64)
    rows: list[np.ndarray] = []
    kept: list[str] = []
    zero_filled: list[str] = []
    dropped: list[str] = []
    for cond, target in zip(conditions, targets, strict=True):
        absent = [g for g in target if g not in gene_rows]
        if absent and missing == "drop":
            dropped.append(cond)
            continue
        if absent:
            zero_filled.append(cond)
        vectors = [gene_rows.get(g, zeros) for g in target]
        if not vectors:  # ctrl
            vec = zeros.copy()
        elif len(vectors) == 1:  # single; on a combination dataset: row + zero row
            vec = vectors[0] + zeros
        elif combine == "sum":
            vec = vectors[0] + vectors[1]
        else:
            vec = vectors[0] - vectors[1]
        kept.append(cond)
        rows.append(vec)
    return rows, kept, zero_filled, dropped
