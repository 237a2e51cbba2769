"""Matching gene symbols between a dataset and a feature table, outdated HGNC symbols included.

GEARS' datasets use some outdated symbols (AARS, H2AFZ, ...) that today's annotations and
embeddings name differently; ``gene_aliases.csv`` (shipped beside this module) maps them, and
:func:`match_genes` finds each dataset gene's row by symbol, then by alias.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from perturb_assets.core.errors import DatasetError

__all__ = [
    "GENE_ALIASES_FILE",
    "gene_aliases",
    "load_gene_aliases",
    "match_genes",
]


# ---------------------------------------------------------------------------------------------
# Gene symbol aliases
# ---------------------------------------------------------------------------------------------

#: The alias table shipped with the package (``old_symbol,new_symbol,note``).
GENE_ALIASES_FILE = resources.files("perturb_assets.core.features").joinpath("gene_aliases.csv")


def load_gene_aliases(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Read an alias table of outdated → current HGNC symbols.

    Parameters
    ----------
    path
        CSV with the header ``old_symbol,new_symbol`` (further columns, e.g. ``note``, are
        ignored; lines starting with ``#`` are comments). ``None`` reads the table shipped with
        the package, ``perturb_assets/core/features/gene_aliases.csv``.

    Returns
    -------
    dict of str to str
        ``{old_symbol: new_symbol}``.

    Raises
    ------
    DatasetError
        If a column is missing, a symbol is empty, an old symbol repeats, a row maps a symbol to
        itself, or a new symbol is itself listed as old (chains are not allowed).
    """
    source: Any = GENE_ALIASES_FILE if path is None else Path(path)
    where = "perturb_assets/core/features/gene_aliases.csv" if path is None else path
    with source.open("r", encoding="utf-8", newline="") as handle:
        lines = [
            (n, ln) for n, ln in enumerate(handle, start=1) if ln.strip() and not ln.startswith("#")
        ]
    reader = csv.DictReader(ln for _, ln in lines)
    fields = reader.fieldnames or []
    for col in ("old_symbol", "new_symbol"):
        if col not in fields:
            raise DatasetError(where, f"column {col!r}", f"missing; header is {fields}")
    aliases: dict[str, str] = {}
    for (line_no, _), row in zip(lines[1:], reader, strict=True):
        old = (row["old_symbol"] or "").strip()
        new = (row["new_symbol"] or "").strip()
        if not old or not new:
            raise DatasetError(where, f"line {line_no}", "empty old_symbol or new_symbol")
        if old == new:
            raise DatasetError(where, f"line {line_no}", f"{old!r} maps to itself")
        if old in aliases:
            raise DatasetError(where, f"line {line_no}, old_symbol", f"{old!r} repeats")
        aliases[old] = new
    chained = sorted(set(aliases.values()) & set(aliases))
    if chained:
        raise DatasetError(where, "new_symbol", f"symbols listed both as new and as old: {chained}")
    return aliases


@functools.cache
def gene_aliases() -> Mapping[str, str]:
    """Outdated HGNC symbol → current symbol: the shipped ``gene_aliases.csv``, read once."""
    return MappingProxyType(load_gene_aliases())


def match_genes(
    query_symbols: Iterable[str],
    available_symbols: Iterable[str],
    aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Match gene symbols against the symbols of a feature table, through aliases.

    Each query is matched (1) directly; else (2) old → new: the query is an outdated symbol whose
    current symbol is available (``AARS`` → ``AARS1``); else (3) new → old: the query is current
    and the table uses an outdated symbol (``AARS1`` → ``AARS``; if several old symbols map to
    the same new one, the first available in sorted order wins). Only one alias step is taken.
    Matching is case-sensitive.

    Parameters
    ----------
    query_symbols
        Symbols to look up, e.g. the target genes of the GEARS conditions.
    available_symbols
        Symbols present in the feature table (its index).
    aliases
        ``{old_symbol: new_symbol}``; defaults to :func:`gene_aliases`.

    Returns
    -------
    mapping : dict of str to str
        ``{query: available symbol}`` for every matched query.
    report : dict
        ``n_query`` (unique queries), ``n_direct``, ``n_via_alias``, ``n_missing``, ``missing``
        (sorted list) and ``via_alias`` (``{query: available symbol}`` of the alias matches).
    """
    aliases = gene_aliases() if aliases is None else aliases
    available = set(available_symbols)
    reverse: dict[str, list[str]] = {}
    for old, new in aliases.items():
        reverse.setdefault(new, []).append(old)
    queries = list(dict.fromkeys(query_symbols))
    mapping: dict[str, str] = {}
    via_alias: dict[str, str] = {}
    missing: list[str] = []
    n_direct = 0
    for q in queries:
        if q in available:
            mapping[q] = q
            n_direct += 1
            continue
        target = aliases.get(q)
        if target is None or target not in available:
            target = next((o for o in sorted(reverse.get(q, ())) if o in available), None)
        if target is None:
            missing.append(q)
        else:
            mapping[q] = target
            via_alias[q] = target
    report = {
        "n_query": len(queries),
        "n_direct": n_direct,
        "n_via_alias": len(via_alias),
        "n_missing": len(missing),
        "missing": sorted(missing),
        "via_alias": via_alias,
    }
    return mapping, report
