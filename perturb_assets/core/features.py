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
(:mod:`perturb_assets.core.registry`) chooses. The notebook has no missing-gene policy (a
missing symbol raises ``KeyError``); outdated symbols were fixed by hand with
``notebooks/gene_name_map.json``.

This module is Dagster-free: plain functions on pandas, numpy and scikit-learn.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from perturb_assets.core.atomic import atomic_write
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears import parse_condition

__all__ = [
    "GENE_ALIASES_FILE",
    "AnnotationDownloadError",
    "embedding_file",
    "embedding_files",
    "embedding_pca",
    "file_content_hash",
    "gene_aliases",
    "go_annotation_matrix",
    "go_annotations_from_decoupler",
    "load_gene_aliases",
    "long_to_binary",
    "match_genes",
    "pca_features",
    "perturbation_features",
    "read_embedding",
    "read_gaf",
    "read_gmt",
    "user_embedding_file",
]

GENE_INDEX_NAME = "gene_name"
TERM_COLUMNS_NAME = "term_id"
DEFAULT_N_COMPONENTS = 256

#: Columns of the long table returned by ``decoupler.op.resource("MSigDB")`` (decoupler 2.x).
MSIGDB_GENE_COL = "genesymbol"
MSIGDB_COLLECTION_COL = "collection"
MSIGDB_TERM_COL = "geneset"
_MSIGDB_SOURCE = "decoupler.op.resource('MSigDB')"

_GO_ID = re.compile(r"^GO:\d{7}$")
_GAF_MIN_COLUMNS = 15
_GAF_ASPECTS = ("P", "F", "C")
_PICKLE_SUFFIXES = (".pickle", ".pkl")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_EMBEDDING_GENE_COLUMNS = ("gene", "gene_name", "gene_symbol", "genesymbol", "symbol")


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

    Same output layout as :func:`perturb_assets.core.simulate.read_gmt`. ``.gz`` files are
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
EMBEDDINGS_SUBDIR = "embeddings"
#: A user's GO annotation file, in order of preference.
ANNOTATION_FILES: tuple[str, ...] = ("go.gmt", "go.gaf", "go.gaf.gz", "go.gmt.gz")
#: Accepted suffixes of a gene-embedding file, in order of preference.
EMBEDDING_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".tsv", ".pkl", ".pickle")
#: Where to take GO annotations from.
AnnotationSource = Literal["auto", "simulator", "file", "decoupler"]
_MSIGDB_CACHE = "msigdb_go_biological_process.parquet"


def user_annotation_file(data_root: str | os.PathLike[str]) -> Path | None:
    """The user's GO file: the first of :data:`ANNOTATION_FILES` in ``<root>/annotations/``."""
    folder = Path(data_root) / ANNOTATIONS_SUBDIR
    return next((folder / n for n in ANNOTATION_FILES if (folder / n).is_file()), None)


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
        matrix = go_annotations_from_decoupler("go_biological_process")
        atomic_write(cache, matrix.to_parquet)
    return pd.read_parquet(cache), "decoupler MSigDB go_biological_process"


def embedding_file(
    name: str, data_root: str | os.PathLike[str], simulated_dir: str | os.PathLike[str] | None
) -> Path | None:
    """The gene-embedding file of feature set ``name``, or ``None``.

    The simulator's stand-in ``<simulated_dir>/<name>.parquet`` (``synthetic`` only) wins;
    otherwise ``<root>/embeddings/<name>`` with the first of :data:`EMBEDDING_SUFFIXES`.
    """
    if simulated_dir is not None and (Path(simulated_dir) / f"{name}.parquet").exists():
        return Path(simulated_dir) / f"{name}.parquet"
    return user_embedding_file(name, data_root)


def embedding_files(
    data_root: str | os.PathLike[str], simulated_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Every gene-embedding file: the simulator's stand-ins (``synthetic``), then every file in
    ``<root>/embeddings/`` with an accepted suffix (the registered ones and any the user adds),
    by name (the file's stem; a stand-in wins)."""
    found: dict[str, Path] = {}
    for folder in (simulated_dir, Path(data_root) / EMBEDDINGS_SUBDIR):
        if folder is None or not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).iterdir()):
            if path.suffix in EMBEDDING_SUFFIXES and not path.name.startswith("."):
                found.setdefault(path.stem, path)
    return found


def user_embedding_file(name: str, data_root: str | os.PathLike[str]) -> Path | None:
    """``<root>/embeddings/<name>.{parquet,csv,tsv,pkl,pickle}``, the first that exists."""
    for suffix in EMBEDDING_SUFFIXES:
        path = Path(data_root) / EMBEDDINGS_SUBDIR / f"{name}{suffix}"
        if path.exists():
            return path
    return None


# ---------------------------------------------------------------------------------------------
# Gene symbol aliases
# ---------------------------------------------------------------------------------------------

#: The alias table shipped with the package (``old_symbol,new_symbol,note``).
GENE_ALIASES_FILE = resources.files("perturb_assets.core").joinpath("gene_aliases.csv")


def load_gene_aliases(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Read an alias table of outdated → current HGNC symbols.

    Parameters
    ----------
    path
        CSV with the header ``old_symbol,new_symbol`` (further columns, e.g. ``note``, are
        ignored; lines starting with ``#`` are comments). ``None`` reads the table shipped with
        the package, ``perturb_assets/core/gene_aliases.csv``.

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
    where = "perturb_assets/core/gene_aliases.csv" if path is None else path
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


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


def pca_features(
    matrix: pd.DataFrame,
    n_components: int = DEFAULT_N_COMPONENTS,
    random_state: int = 0,
    svd_solver: Literal["randomized", "full", "covariance_eigh", "arpack"] = "randomized",
) -> pd.DataFrame:
    """Reduce a gene × feature matrix to its leading principal components.

    The paper reduces the binary gene × GO-term matrix to 256 components; the authors call
    ``PCA(n_components=256, random_state=0)``, whose ``svd_solver="auto"`` picks the randomized
    solver for the GO matrix (about 17,000 genes × 7,700 terms). Here the solver is named
    explicitly so the result does not depend on scikit-learn's "auto" policy, and the randomized
    solver's settings (``n_oversamples=10``, ``iterated_power="auto"``,
    ``power_iteration_normalizer="auto"``) are pinned. With a fixed ``random_state`` the result
    is reproducible (bit-identical on the same platform and BLAS); scikit-learn's sign
    convention fixes each component's sign. The randomized solver is exact when
    ``n_components + 10`` reaches the matrix rank (small matrices); for large ones it is the
    close approximation the authors used. ``svd_solver="full"`` gives the exact LAPACK SVD,
    which takes tens of minutes on the full GO matrix.

    Parameters
    ----------
    matrix
        Genes × features (GO terms or embedding dimensions), numeric and finite, unique index.
    n_components
        Requested number of components. The number kept is
        ``k = min(n_components, n_genes, n_features)``: PCA cannot return more components than
        the smaller dimension of the matrix (e.g. a GO file with 100 terms gives 100 columns).
    random_state
        Seed of the randomized solver (the authors use 0).
    svd_solver
        scikit-learn PCA solver; ``"arpack"`` needs ``k < min(n_genes, n_features)``.

    Returns
    -------
    pandas.DataFrame
        Genes × ``PC1`` ... ``PCk`` (``float64``), same index as ``matrix``. ``df.attrs``
        records ``explained_variance_ratio`` (list), ``explained_variance`` (list),
        ``n_components_requested``, ``n_components``, ``svd_solver`` and ``random_state``.

    Raises
    ------
    ValueError
        If ``n_components < 1``, the matrix is empty, not numeric, not finite, or its index
        repeats.
    """
    if int(n_components) < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"cannot run PCA on an empty matrix of shape {matrix.shape}")
    if not matrix.index.is_unique:
        dup = matrix.index[matrix.index.duplicated()].unique().tolist()[:10]
        raise ValueError(f"matrix index repeats genes, e.g. {dup}")
    try:
        values = matrix.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"matrix is not numeric: {exc}") from exc
    if not np.isfinite(values).all():
        raise ValueError("matrix holds NaN or infinite values")
    k = int(min(int(n_components), values.shape[0], values.shape[1]))
    options: dict[str, Any] = {}
    if svd_solver == "randomized":
        options = {
            "n_oversamples": 10,
            "iterated_power": "auto",
            "power_iteration_normalizer": "auto",
        }
    pca = PCA(n_components=k, svd_solver=svd_solver, random_state=random_state, **options)
    transformed = pca.fit_transform(values)
    out = pd.DataFrame(
        transformed,
        index=matrix.index.copy(),
        columns=pd.Index([f"PC{i + 1}" for i in range(k)]),
    )
    out.attrs = {
        "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_],
        "explained_variance": [float(v) for v in pca.explained_variance_],
        "n_components_requested": int(n_components),
        "n_components": k,
        "svd_solver": svd_solver,
        "random_state": random_state,
    }
    return out


def embedding_pca(
    emb: pd.DataFrame,
    n_components: int = DEFAULT_N_COMPONENTS,
    random_state: int = 0,
) -> pd.DataFrame:
    """Apply the GO preprocessing (PCA to 256 components) to a gene-embedding table.

    The paper applies "the same preprocessing" to scGPT, scFoundation and scELMo embeddings as
    to the GO matrix; this is :func:`pca_features` with the same defaults.

    Parameters
    ----------
    emb
        Genes × embedding dimensions, e.g. from :func:`read_embedding`.
    n_components, random_state
        As in :func:`pca_features`.

    Returns
    -------
    pandas.DataFrame
        Genes × ``PC1`` ... ``PCk`` with the explained variance in ``df.attrs``.
    """
    return pca_features(emb, n_components=n_components, random_state=random_state)


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
# Gene embeddings from user files
# ---------------------------------------------------------------------------------------------


def file_content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB chunks).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    str
        64 lowercase hex characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_embedding(
    path: str | os.PathLike[str],
    trusted_root: str | os.PathLike[str] | None = None,
    dtype: type[np.floating] = np.float64,
) -> pd.DataFrame:
    """Read a gene-embedding table (genes × dimensions) from a user file.

    Accepted formats, chosen by suffix:

    * ``.parquet`` / ``.pq``: genes in a column named ``gene`` (or ``gene_name``,
      ``gene_symbol``, ``genesymbol``, ``symbol``), else in the (string) index; every other
      column is a dimension.
    * ``.csv`` (comma), ``.tsv`` / ``.txt`` (tab): a header row; the first column holds the genes,
      the others the dimensions.
    * ``.pickle`` / ``.pkl``: a pickled ``dict`` ``{gene: vector}`` as scELMo publishes its
      GPT-3.5 gene embeddings (a pickled DataFrame is accepted too); dimensions are named
      ``dim1`` ... ``dimD``.

    **Trust assumption for pickles.** Unpickling runs arbitrary code stored in the file, so a
    pickle is only read when it lies inside ``trusted_root``, the folder that holds the user's
    own data (symlinks are resolved before the check). The caller vouches that everything under
    that folder was put there by the user from a source they trust (e.g. the scELMo download).
    Without ``trusted_root``, or for a pickle outside it, nothing is unpickled and
    :class:`PermissionError` is raised. Prefer converting pickles to parquet once.

    Parameters
    ----------
    path
        The embedding file.
    trusted_root
        Folder whose pickles may be loaded; ignored for parquet and CSV.
    dtype
        Float dtype of the result (``np.float32`` halves the memory of large tables).

    Returns
    -------
    pandas.DataFrame
        Genes (index, name ``gene_name``, unique, non-empty strings) × dimensions (string
        column names), finite floats.

    Raises
    ------
    PermissionError
        For a pickle without ``trusted_root`` or outside it.
    DatasetError
        Naming the file and the field: unknown suffix, unreadable file, no gene, repeated or
        empty gene names, non-numeric or non-finite values, vectors of different lengths.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        _check_trusted(path, trusted_root)
        table = _embedding_from_pickle(path)
    elif suffix in _PARQUET_SUFFIXES:
        table = _embedding_from_parquet(path)
    elif suffix in _CSV_SUFFIXES:
        table = _embedding_from_csv(path, sep="," if suffix == ".csv" else "\t")
    else:
        raise DatasetError(
            path,
            "file suffix",
            f"{suffix!r} is not supported; use .parquet, .csv, .tsv or .pickle/.pkl",
        )
    return _validate_embedding(table, path, dtype)


def _check_trusted(path: Path, trusted_root: str | os.PathLike[str] | None) -> None:
    """Refuse to unpickle a file that is not inside ``trusted_root``."""
    if trusted_root is None:
        raise PermissionError(
            f"{path}: refusing to unpickle without trusted_root (unpickling runs code from the "
            "file); pass the folder of your own data as trusted_root or convert the embedding "
            "to parquet/csv"
        )
    root = Path(trusted_root).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise PermissionError(
            f"{path}: refusing to unpickle a file outside the trusted folder {root} "
            "(unpickling runs code from the file)"
        )


def _embedding_from_pickle(path: Path) -> pd.DataFrame:
    """Unpickle ``{gene: vector}`` (or a DataFrame); the caller checked the trust root."""
    try:
        with open(path, "rb") as handle:
            obj = pickle.load(handle)  # only reached inside the trusted root
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be unpickled: {exc}") from exc
    if isinstance(obj, pd.DataFrame):
        return obj
    if not isinstance(obj, Mapping):
        raise DatasetError(
            path, "pickle", f"expected a dict {{gene: vector}}, got {type(obj).__name__}"
        )
    if not obj:
        raise DatasetError(path, "pickle", "the dict is empty (no gene)")
    rows: list[np.ndarray] = []
    genes: list[Any] = []
    length: int | None = None
    first_gene: Any = None
    for gene, vector in obj.items():
        try:
            arr = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DatasetError(path, f"vector of gene {gene!r}", f"is not numeric: {exc}") from exc
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
        if arr.ndim != 1:
            raise DatasetError(
                path, f"vector of gene {gene!r}", f"is not one-dimensional (shape {arr.shape})"
            )
        if length is None:
            length, first_gene = arr.shape[0], gene
        elif arr.shape[0] != length:
            raise DatasetError(
                path,
                f"vector of gene {gene!r}",
                f"has length {arr.shape[0]}, but gene {first_gene!r} has length {length}",
            )
        genes.append(gene)
        rows.append(arr)
    return pd.DataFrame(
        np.vstack(rows),
        index=pd.Index(genes, dtype=object),
        columns=[f"dim{i + 1}" for i in range(length or 0)],
    )


def _embedding_from_parquet(path: Path) -> pd.DataFrame:
    """Read a parquet embedding; genes from a gene column or the index."""
    try:
        table = pd.read_parquet(path)
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be read as parquet: {exc}") from exc
    gene_cols = [c for c in _EMBEDDING_GENE_COLUMNS if c in table.columns]
    if gene_cols:
        return table.set_index(gene_cols[0])
    if isinstance(table.index, pd.RangeIndex) or not all(isinstance(g, str) for g in table.index):
        raise DatasetError(
            path,
            "gene column",
            f"no column named one of {list(_EMBEDDING_GENE_COLUMNS)} and the index does not "
            "hold gene symbols",
        )
    return table


def _embedding_from_csv(path: Path, sep: str) -> pd.DataFrame:
    """Read a delimited embedding; the first column holds the genes."""
    try:
        table = pd.read_csv(path, sep=sep, index_col=0)
    except Exception as exc:
        raise DatasetError(path, "file", f"cannot be read as delimited text: {exc}") from exc
    return table


def _validate_embedding(table: pd.DataFrame, path: Path, dtype: type[np.floating]) -> pd.DataFrame:
    """Check genes and values of an embedding table and return it as floats."""
    if table.shape[0] == 0:
        raise DatasetError(path, "genes", "the embedding holds no gene")
    if table.shape[1] == 0:
        raise DatasetError(path, "dimensions", "the embedding has no dimension column")
    genes = pd.Index(table.index)
    bad = [g for g in genes if not isinstance(g, str) or not g.strip()]
    if bad:
        raise DatasetError(
            path, "gene names", f"{len(bad)} empty or non-string gene name(s), e.g. {bad[:5]}"
        )
    if not genes.is_unique:
        dup = genes[genes.duplicated()].unique().tolist()
        raise DatasetError(path, "gene names", f"{len(dup)} gene(s) repeat, e.g. {dup[:10]}")
    columns = [str(c) for c in table.columns]
    if len(set(columns)) != len(columns):
        raise DatasetError(path, "dimension columns", "column names repeat")
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise DatasetError(
                path, f"column {col!r}", f"is not numeric (dtype {table[col].dtype})"
            )
    values = table.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        row, col = (int(i[0]) for i in np.nonzero(~finite))
        raise DatasetError(
            path,
            f"gene {genes[row]!r}, column {columns[col]!r}",
            f"value {values[row, col]} is not finite ({int((~finite).sum())} such value(s))",
        )
    return pd.DataFrame(
        values.astype(dtype, copy=False),
        index=pd.Index(genes, name=GENE_INDEX_NAME, dtype=object),
        columns=pd.Index(columns),
    )


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
      (:data:`perturb_assets.core.registry.PUBLISHED_2025`); ``combine="difference"`` gives
      ``row(A) - row(B)``, what the 2024 preprint notebook computed
      (:data:`~perturb_assets.core.registry.PREPRINT_2024`).
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
