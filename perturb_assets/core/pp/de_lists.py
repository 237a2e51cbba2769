"""The rules that turn DE lists into the lists a metric uses (the paper's "DE genes").

:func:`de_lists_without_targets` drops a condition's own target genes from its top-20 list (the
``..._no_target`` metrics) and then cuts the list; :func:`reference_compat_de_lists` reproduces
the authors' notebook (``_filt_self_from_de``), dataset-dependent bug included, for the labelled
``_reference_compat`` metric kept beside the correct one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from perturb_assets.core.gears.format import N_TOP_DE, parse_condition

__all__ = [
    "de_lists_without_targets",
    "reference_compat_de_lists",
]


# --------------------------------------------------------------------------------------------
# DE-gene lists without target genes
# --------------------------------------------------------------------------------------------


def de_lists_without_targets(
    de_genes: Mapping[str, Sequence[str]],
    gene_names: pd.Series,
    n_top: int = N_TOP_DE,
) -> dict[str, list[str]]:
    """Ranked DE lists with the perturbation's target genes removed, then truncated.

    The correct rule, as ``top_de_genes(..., exclude_targets=True)``: every gene of
    :func:`perturb_assets.core.gears.parse_condition` (both genes of ``A+B``, ``A`` of
    ``A+ctrl``) is removed, mapped to *every* var whose symbol it is. To obtain exactly the
    first ``n_top`` non-target genes, the input lists must be ranked at least ``n_top`` plus
    the number of target vars long (e.g. ``top_de_genes(adata, n_top=n_top + 2)``); shorter
    lists give shorter results.

    Parameters
    ----------
    de_genes
        Condition -> ranked ``var_names``.
    gene_names
        Gene symbol of every var: Series indexed by ``var_names`` (``adata.var["gene_name"]``).
    n_top
        Length of the returned lists.

    Returns
    -------
    dict of str to list of str
        Condition -> the first ``n_top`` ranked genes that are not targets.
    """
    symbols = pd.Series(np.asarray(gene_names, dtype=object), index=gene_names.index)
    symbol_to_vars: dict[Any, set[Any]] = {}
    for var, sym in symbols.items():
        symbol_to_vars.setdefault(sym, set()).add(var)
    out: dict[str, list[str]] = {}
    for cond, ranked in de_genes.items():
        drop: set[Any] = set()
        for gene in parse_condition(cond):
            drop |= symbol_to_vars.get(gene, set())
        out[cond] = [v for v in ranked if v not in drop][:n_top]
    return out


def reference_compat_de_lists(
    de_genes: Mapping[str, Sequence[str]],
    gene_names: pd.Series,
    dataset: str,
    n_top: int = N_TOP_DE,
) -> dict[str, list[str]]:
    """DE lists without target genes exactly as the paper's code builds them (bug included).

    Re-implements ``_filt_self_from_de`` of ``notebooks/bulk_models.ipynb``, which feeds the
    reference's ``pearson_delta_de_no_knockout`` (the paper's "Pearson Delta without target
    genes"). For each condition it strips ``"ctrl+"`` and ``"+ctrl"`` from the condition name
    and then, *depending on the dataset*:

    * **Norman** (``is_norman=True``): it looks the whole remaining string up in a
      symbol -> var dict and removes that var. For a single ``A+ctrl`` this is ``"A"`` and the
      target is removed. For a combination ``A+B`` the string is ``"A+B"``, which is no gene,
      so the lookup gives ``None`` and ``v[v != None]`` removes **nothing**: combinations keep
      *both* targets in their top 20. (The code that splits on ``"+"`` and removes both genes
      sits in the *other* branch, the one for datasets without combinations.)
    * **other datasets**: ``A+B`` is split on ``"+"`` and both genes are removed; a single
      removes its gene. (Adamson and Replogle have singles only.)

    Hence on Norman this differs from :func:`de_lists_without_targets` /
    ``top_de_genes(exclude_targets=True)`` for every combination whose top 20 contains a
    target: there, the reference keeps the (strongly up-regulated, CRISPRa) target genes,
    which are trivial to predict for models that know the perturbed gene.

    Further details reproduced: the symbol -> var dict is ``dict(zip(symbols, var_names))``,
    so for a symbol shared by several vars only the *last* one is removed; a target that is not
    measured removes nothing; every occurrence of the removed var is dropped; the reference
    parses the condition out of a key ``"<cell type>_<condition>_<dose>"`` by
    ``split("_")[1]``, so only the part of the condition before a ``"_"`` counts; and the list
    is cut to ``n_top`` *after* the removal (the reference filters the full ranking of all
    genes, so a removed target is replaced by the 21st gene).

    Parameters
    ----------
    de_genes
        Condition -> ranked ``var_names``, ranked at least ``n_top + 2`` long to reproduce the
        refill (e.g. ``top_de_genes(adata, n_top=n_top + 2)``, or the full ranking).
    gene_names
        Gene symbol of every var: Series indexed by ``var_names`` (``adata.var["gene_name"]``).
    dataset
        Dataset name; names starting with ``"norman"`` (case-insensitive) take the Norman
        branch (``is_norman=True`` in the reference).
    n_top
        Length of the returned lists.

    Returns
    -------
    dict of str to list of str
        Condition -> the first ``n_top`` genes left after the reference's removal.

    Raises
    ------
    ValueError
        For a non-Norman condition with more than two genes (the reference asserts two).
    """
    is_norman = str(dataset).strip().lower().startswith("norman")
    symbol_to_var = dict(zip(np.asarray(gene_names, dtype=object), gene_names.index, strict=True))
    out: dict[str, list[str]] = {}
    for cond, ranked in de_genes.items():
        name = str(cond).split("_")[0].replace("ctrl+", "").replace("+ctrl", "")
        if not is_norman and "+" in name:
            parts = name.split("+")
            if len(parts) != 2:
                raise ValueError(f"condition {cond!r}: the reference expects two genes")
            drop = {symbol_to_var.get(part) for part in parts}
        else:
            drop = {symbol_to_var.get(name)}
        drop.discard(None)
        out[cond] = [v for v in ranked if v not in drop][:n_top]
    return out
