"""GO annotation files: GMT and GAF readers, and the MSigDB download through decoupler.

Each reader returns a binary gene × term matrix (:func:`long_to_binary` layout: genes in the
index named ``gene_name``, terms in the columns). A user's file lives at
``<data root>/annotations/go.{gmt,gaf}[.gz]`` (:func:`user_annotation_file`).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from perturb_assets.core.errors import DatasetError

__all__ = [
    "ANNOTATIONS_SUBDIR",
    "ANNOTATION_FILES",
    "GENE2GO_FILE",
    "AnnotationDownloadError",
    "go_annotations_from_decoupler",
    "read_gene2go",
    "user_gene2go_file",
    "long_to_binary",
    "read_gaf",
    "read_gmt",
    "user_annotation_file",
]

GENE_INDEX_NAME = "gene_name"
TERM_COLUMNS_NAME = "term_id"

#: Columns of the long table returned by ``decoupler.op.resource("MSigDB")`` (decoupler 2.x).
MSIGDB_GENE_COL = "genesymbol"
MSIGDB_COLLECTION_COL = "collection"
MSIGDB_TERM_COL = "geneset"
_MSIGDB_SOURCE = "decoupler.op.resource('MSigDB')"

_GO_ID = re.compile(r"^GO:\d{7}$")
_GAF_MIN_COLUMNS = 15
_GAF_ASPECTS = ("P", "F", "C")


class AnnotationDownloadError(RuntimeError):
    """Downloading gene annotations from OmniPath through decoupler failed."""


# ---------------------------------------------------------------------------------------------
# GO annotations
# ---------------------------------------------------------------------------------------------


def go_annotations_from_decoupler(
    collection: str = "go_biological_process",
    resource: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Binary gene × GO-term matrix from MSigDB, fetched with decoupler.

    decoupler 2.x exposes OmniPath annotation resources as
    ``decoupler.op.resource(name, organism="human", license="academic")``. For ``"MSigDB"`` it
    returns a long table, one row per (gene, gene set), with the columns ``genesymbol``,
    ``collection`` (e.g. ``go_biological_process``, ``go_molecular_function``, ``hallmark``)
    and ``geneset`` (the gene-set name). The rows of ``collection`` are kept and turned into a
    0/1 matrix with :func:`long_to_binary`.

    Parameters
    ----------
    collection
        MSigDB collection to keep; the paper uses GO Biological Process,
        ``"go_biological_process"``.
    resource
        A pre-fetched long table with the columns above (for tests, or a cached download).
        ``None`` downloads it with ``decoupler.op.resource("MSigDB")``, which needs internet.

    Returns
    -------
    pandas.DataFrame
        ``int8`` 0/1 matrix; index: gene symbols (sorted, name ``gene_name``); columns: gene-set
        names (sorted, name ``term_id``).

    Raises
    ------
    AnnotationDownloadError
        If the download fails (no network, OmniPath down, decoupler API change). The message
        says to supply a GMT file (:func:`read_gmt`) or a GO annotation file (:func:`read_gaf`)
        instead.
    DatasetError
        If the table lacks a required column or has no row of ``collection``.
    """
    if resource is None:
        resource = _download_msigdb()
    if not isinstance(resource, pd.DataFrame):
        raise DatasetError(_MSIGDB_SOURCE, "resource", "expected a pandas DataFrame")
    needed = (MSIGDB_GENE_COL, MSIGDB_COLLECTION_COL, MSIGDB_TERM_COL)
    absent = [c for c in needed if c not in resource.columns]
    if absent:
        raise DatasetError(
            _MSIGDB_SOURCE,
            f"columns {absent}",
            f"missing; expected the columns {list(needed)}, found {list(resource.columns)}",
        )
    rows = resource[resource[MSIGDB_COLLECTION_COL] == collection]
    if rows.empty:
        available = sorted(str(c) for c in resource[MSIGDB_COLLECTION_COL].dropna().unique())
        raise DatasetError(
            _MSIGDB_SOURCE,
            f"{MSIGDB_COLLECTION_COL}",
            f"no rows of collection {collection!r}; available: {available}",
        )
    return long_to_binary(rows, MSIGDB_GENE_COL, MSIGDB_TERM_COL)


def _download_msigdb() -> pd.DataFrame:
    """Fetch the MSigDB long table from OmniPath with decoupler."""
    hint = (
        "supply the GO annotations as a local file instead: a GMT file (read_gmt, e.g. "
        "MSigDB's c5.go.bp.*.symbols.gmt) or a GO Annotation File (read_gaf, e.g. "
        "goa_human.gaf from geneontology.org)"
    )
    try:
        import decoupler as dc

        table = dc.op.resource("MSigDB")
    except Exception as exc:  # network, HTTP, assertion inside decoupler, API change
        raise AnnotationDownloadError(
            f"could not download MSigDB through decoupler ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    if not isinstance(table, pd.DataFrame):
        raise AnnotationDownloadError(
            f"decoupler.op.resource('MSigDB') returned {type(table).__name__}, not a "
            f"DataFrame; {hint}"
        )
    return table


def long_to_binary(long_df: pd.DataFrame, gene_col: str, term_col: str) -> pd.DataFrame:
    """Turn a long (gene, term) table into a binary gene × term matrix.

    Rows whose gene or term is missing or blank are ignored; repeated pairs count once.

    Parameters
    ----------
    long_df
        One row per annotation.
    gene_col, term_col
        Columns that hold the gene symbol and the term name.

    Returns
    -------
    pandas.DataFrame
        ``int8`` 0/1 matrix; index: genes (sorted, name ``gene_name``); columns: terms (sorted,
        name ``term_id``).

    Raises
    ------
    DatasetError
        If a column is missing or no annotation is left.
    """
    for col in (gene_col, term_col):
        if col not in long_df.columns:
            raise DatasetError(None, f"column {col!r}", f"missing; found {list(long_df.columns)}")
    pairs = long_df[[gene_col, term_col]].dropna()
    genes_raw = pairs[gene_col].astype(str).str.strip()
    terms_raw = pairs[term_col].astype(str).str.strip()
    keep = (genes_raw != "") & (terms_raw != "")
    genes_raw, terms_raw = genes_raw[keep], terms_raw[keep]
    if genes_raw.empty:
        raise DatasetError(None, f"{gene_col}/{term_col}", "no (gene, term) annotation left")
    gene_cat = pd.Categorical(genes_raw, categories=sorted(genes_raw.unique()))
    term_cat = pd.Categorical(terms_raw, categories=sorted(terms_raw.unique()))
    matrix = np.zeros((len(gene_cat.categories), len(term_cat.categories)), dtype=np.int8)
    matrix[gene_cat.codes, term_cat.codes] = 1
    return pd.DataFrame(
        matrix,
        index=pd.Index(gene_cat.categories, name=GENE_INDEX_NAME, dtype=object),
        columns=pd.Index(term_cat.categories, name=TERM_COLUMNS_NAME, dtype=object),
    )


def read_gmt(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a GMT gene-set file into a binary gene × term matrix.

    Same output layout as :func:`read_gmt`. ``.gz`` files are
    decompressed.

    Parameters
    ----------
    path
        GMT file: ``term <TAB> description <TAB> gene <TAB> gene ...``, one term per line.
        Blank lines are skipped.

    Returns
    -------
    pandas.DataFrame
        ``int8`` 0/1 matrix; index: gene symbols (sorted, name ``gene_name``); columns: term
        names in file order (name ``term_id``).

    Raises
    ------
    DatasetError
        If a line has fewer than two fields or an empty term name, a term repeats, or the file
        holds no gene.
    """
    terms: list[str] = []
    members: list[list[str]] = []
    first_line: dict[str, int] = {}
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise DatasetError(
                    path,
                    f"line {line_no}",
                    "expected 'term<TAB>description<TAB>gene<TAB>gene...' (tab-separated); "
                    f"got {line[:80]!r}",
                )
            term = parts[0].strip()
            if not term:
                raise DatasetError(path, f"line {line_no}, field 1 (term)", "empty term name")
            if term in first_line:
                raise DatasetError(
                    path,
                    f"line {line_no}, field 1 (term)",
                    f"term {term!r} already defined on line {first_line[term]}",
                )
            first_line[term] = line_no
            terms.append(term)
            members.append([g.strip() for g in parts[2:] if g.strip()])
    genes = sorted({g for m in members for g in m})
    if not genes:
        raise DatasetError(path, "genes", "the file lists no gene (is it empty?)")
    gene_pos = {g: i for i, g in enumerate(genes)}
    matrix = np.zeros((len(genes), len(terms)), dtype=np.int8)
    for j, m in enumerate(members):
        matrix[[gene_pos[g] for g in m], j] = 1
    return pd.DataFrame(
        matrix,
        index=pd.Index(genes, name=GENE_INDEX_NAME, dtype=object),
        columns=pd.Index(terms, name=TERM_COLUMNS_NAME, dtype=object),
    )


def read_gaf(path: str | os.PathLike[str], aspect: str | None = "P") -> pd.DataFrame:
    """Read a GO Annotation File (GAF 2.x) into a binary gene × GO-term matrix.

    GAF is tab-separated with ``!`` comment/header lines and 17 columns (columns 16-17 may be
    absent; at least 15 are required). Used: column 3 (DB Object Symbol), column 4 (Qualifier),
    column 5 (GO ID) and column 9 (Aspect: ``P`` biological process, ``F`` molecular function,
    ``C`` cellular component). Annotations whose qualifier contains ``NOT`` (e.g.
    ``NOT|involved_in``) are skipped; a gene with both a ``NOT`` and a positive annotation to the
    same term keeps the positive one. No propagation along the GO graph is done (the matrix holds
    the direct annotations only). ``.gz`` files are decompressed.

    Parameters
    ----------
    path
        The GAF file, e.g. ``goa_human.gaf``.
    aspect
        ``"P"``, ``"F"`` or ``"C"`` to keep one ontology, ``None`` for all three.

    Returns
    -------
    pandas.DataFrame
        ``int8`` 0/1 matrix; index: gene symbols (sorted, name ``gene_name``); columns: GO IDs
        (sorted, name ``term_id``).

    Raises
    ------
    DatasetError
        Naming the file, line and column, if a data line has fewer than 15 columns, an empty
        symbol, a malformed GO ID or an unknown aspect, or if no annotation is left.
    ValueError
        If ``aspect`` is not ``"P"``, ``"F"``, ``"C"`` or ``None``.
    """
    if aspect is not None and aspect not in _GAF_ASPECTS:
        raise ValueError(f"aspect must be one of {_GAF_ASPECTS} or None, got {aspect!r}")
    genes: list[str] = []
    terms: list[str] = []
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("!"):
                continue
            cols = line.split("\t")
            if len(cols) < _GAF_MIN_COLUMNS:
                raise DatasetError(
                    path,
                    f"line {line_no}",
                    f"GAF 2.x needs at least {_GAF_MIN_COLUMNS} tab-separated columns (17 in "
                    f"full), found {len(cols)}",
                )
            symbol, qualifier, go_id, line_aspect = (
                cols[2].strip(),
                cols[3].strip(),
                cols[4].strip(),
                cols[8].strip(),
            )
            if not symbol:
                raise DatasetError(path, f"line {line_no}, column 3 (DB Object Symbol)", "empty")
            if not _GO_ID.match(go_id):
                raise DatasetError(
                    path,
                    f"line {line_no}, column 5 (GO ID)",
                    f"{go_id!r} is not a GO identifier like 'GO:0008150'",
                )
            if line_aspect not in _GAF_ASPECTS:
                raise DatasetError(
                    path,
                    f"line {line_no}, column 9 (Aspect)",
                    f"{line_aspect!r} is not one of {list(_GAF_ASPECTS)}",
                )
            if "NOT" in (q.strip().upper() for q in qualifier.split("|")):
                continue
            if aspect is not None and line_aspect != aspect:
                continue
            genes.append(symbol)
            terms.append(go_id)
    if not genes:
        wanted = "any aspect" if aspect is None else f"aspect {aspect!r}"
        raise DatasetError(path, "annotations", f"no positive annotation of {wanted}")
    return long_to_binary(pd.DataFrame({"gene": genes, "term": terms}), "gene", "term")


def _open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a text file for reading, decompressing ``.gz``; errors name the file."""
    try:
        if str(path).endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise DatasetError(path, "file", f"cannot be opened: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Where annotations and embeddings come from
# ---------------------------------------------------------------------------------------------

#: Where a user's files live under the data root.
ANNOTATIONS_SUBDIR = "annotations"
#: A user's GO annotation file, in order of preference.
ANNOTATION_FILES: tuple[str, ...] = ("go.gmt", "go.gaf", "go.gaf.gz", "go.gmt.gz")


def user_annotation_file(data_root: str | os.PathLike[str]) -> Path | None:
    """The user's GO file: the first of :data:`ANNOTATION_FILES` in ``<root>/annotations/``."""
    folder = Path(data_root) / ANNOTATIONS_SUBDIR
    return next((folder / n for n in ANNOTATION_FILES if (folder / n).is_file()), None)


#: GEARS' own gene -> GO-terms pickle (``gene2go_all.pkl``), optional, beside the GO file.
GENE2GO_FILE = "gene2go_all.pkl"


def user_gene2go_file(data_root: str | os.PathLike[str]) -> Path | None:
    """``<root>/annotations/gene2go_all.pkl`` when the user put GEARS' file there."""
    path = Path(data_root) / ANNOTATIONS_SUBDIR / GENE2GO_FILE
    return path if path.is_file() else None


class _Gene2GoUnpickler(pickle.Unpickler):
    """Only what a gene -> set-of-terms dict needs: a pickle cannot run code through it."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in {GENE2GO_FILE}")


def read_gene2go(path: str | os.PathLike[str]) -> dict[str, set[str]]:
    """GEARS' ``gene2go_all.pkl``: gene symbol -> set of GO terms.

    Raises
    ------
    DatasetError
        If the file is not a pickled dict of gene symbol -> collection of term strings.
    """
    try:
        with open(path, "rb") as handle:
            value = _Gene2GoUnpickler(handle).load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DatasetError(path, "file", f"not a readable {GENE2GO_FILE}: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(g, str) and isinstance(t, set | frozenset | list) for g, t in value.items()
    ):
        raise DatasetError(path, "gene2go", "expected a dict of gene symbol -> set of GO terms")
    return {g: {str(t) for t in terms} for g, terms in value.items() if len(terms)}
