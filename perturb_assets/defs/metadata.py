"""Small helpers that turn core results into Dagster metadata the UI can show."""

from __future__ import annotations

import base64
import hashlib

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp


def markdown_table(df: pd.DataFrame, max_rows: int = 20, max_cols: int = 12) -> dg.MetadataValue:
    """A markdown preview of the first rows and columns of ``df``."""
    preview = df.iloc[:max_rows, :max_cols]
    note = ""
    if df.shape[0] > max_rows or df.shape[1] > max_cols:
        shown = f"{preview.shape[0]} of {df.shape[0]} rows, {preview.shape[1]} of {df.shape[1]}"
        note = f"\n\n_showing {shown} columns_"
    return dg.MetadataValue.md(preview.to_markdown() + note)


def matrix_sha256(x: np.ndarray | sp.spmatrix | sp.sparray) -> str:
    """sha256 of a matrix's contents (sparse structure included), independent of storage."""
    h = hashlib.sha256()
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        if not x.has_sorted_indices:
            x = x.sorted_indices()  # a sorted copy: never reorder the caller's matrix
        for part in (x.indptr, x.indices, x.data):
            h.update(np.ascontiguousarray(part).tobytes())
    else:
        h.update(np.ascontiguousarray(x).tobytes())
    h.update(str(x.shape).encode())
    return h.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """sha256 of a DataFrame's values, index and columns."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(df, index=True).values.tobytes())
    h.update("\x1f".join(map(str, df.columns)).encode())
    return h.hexdigest()


def figure(png: bytes, title: str = "") -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (a markdown image with a data URI)."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def check_result(problems: list[str]) -> dg.AssetCheckResult:
    """An asset check result from a core rule's list of problems (passed when empty)."""
    listed = "\n".join(f"- {p}" for p in problems) or "none"
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": dg.MetadataValue.md(listed)}
    )


def anndata_sha256(adata) -> str:
    """sha256 of an AnnData's X, obs and var: its data version, equal for equal contents."""
    parts = (matrix_sha256(adata.X), frame_sha256(adata.obs), frame_sha256(adata.var))
    return hashlib.sha256("".join(parts).encode()).hexdigest()
