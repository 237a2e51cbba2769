"""The library warnings this platform knows to be harmless, silenced in one place.

Each entry names the warning's category and the start of its message, and says why it is
harmless here. Anything not listed stays visible: on the console, in the UI's logs and in the
test suite's summary, where a new warning then stands out. :func:`ignore_known_warnings` is
called by the code location (``perturb_assets.definitions``) and by the tests' ``conftest``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

__all__ = ["KNOWN_WARNINGS", "KnownWarning", "ignore_known_warnings", "filterwarnings_lines"]


@dataclass(frozen=True)
class KnownWarning:
    """A warning to ignore: ``category``, a regex matching the start of its ``message``, and
    ``why`` it is harmless."""

    category: str  # "module:Class", imported lazily so this module stays import-light
    message: str
    why: str
    module: str = ""  # regex on the warning's module; empty matches any


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(
        "dagster:BetaWarning",
        r"Parameter `data_version` of initializer `Output\.__init__`",
        "data versions are how unchanged inputs skip re-runs; used on purpose",
    ),
    KnownWarning(
        "dagster:BetaWarning",
        r"Parameter `include_sources` of function `AssetSelection\.all`",
        "the observation job selects the observable source assets; used on purpose",
    ),
    KnownWarning(
        "dagster:BetaWarning",
        "Function `observable_source_asset`",
        "input files are observed source assets (their sha256 is the data version)",
    ),
    KnownWarning(
        "dagster:PreviewWarning",
        "Specifying a partitions_def on an AssetCheckSpec",
        "the checks run per dataset partition, as the assets they check; used on purpose",
    ),
    KnownWarning(
        "builtins:UserWarning",
        "Writing zarr v2 data will no longer be the default",
        "the store pins zarr v2 (core.io.serialisation.ZARR_FORMAT): an upgrade of anndata must "
        "not change the bytes, and so the content hashes, of stored values",
    ),
    KnownWarning(
        "builtins:RuntimeWarning",
        "(divide by zero|invalid value) encountered in divide",
        "cell-gears' own evaluation divides by control means of unexpressed genes; its fold "
        "changes are not used here (metrics come from perturb_assets.core.metrics)",
        module=r"gears\.inference",
    ),
    KnownWarning(
        "builtins:RuntimeWarning",
        "invalid value encountered in divide",
        "cell-gears' co-expression graph correlates genes that are constant in the training "
        "cells (0 / 0); it sets those NaN correlations to 0 itself (gears.utils, "
        "get_coexpression_network_from_train)",
        module=r"gears\.utils",
    ),
    KnownWarning(
        "builtins:FutureWarning",
        "Series.__getitem__ treating keys as positions is deprecated",
        "cell-gears 0.1.2's own indexing in PertData; the positions it means are what it gets",
        module=r"gears\.pertdata",
    ),
    KnownWarning(
        "builtins:FutureWarning",
        "DataFrameGroupBy.apply operated on the grouping columns",
        "cell-gears 0.1.2's top-k of the GO graph (test_foundation_core checks that ours "
        "equals its output)",
        module=r"gears\.utils",
    ),
    KnownWarning(
        "builtins:Warning",
        "DataFrame is highly fragmented",
        "pandas' PerformanceWarning inside scanpy's rank_genes_groups (cell-gears' DE step)",
        module=r"scanpy\.tools\._rank_genes_groups",
    ),
    KnownWarning(
        "anndata:ImplicitModificationWarning",
        "Trying to modify attribute `._uns` of view",
        "cell-gears hands scanpy's rank_genes_groups a view; scanpy makes it a copy, as meant",
        module=r"scanpy\.tools\._rank_genes_groups",
    ),
    KnownWarning(
        "builtins:UserWarning",
        "'data.DataLoader' is deprecated",
        "cell-gears 0.1.2 imports torch_geometric's old alias of the same DataLoader class",
        module=r"gears\.pertdata",
    ),
)


def _category(dotted: str) -> type[Warning]:
    module, _, name = dotted.partition(":")
    return getattr(__import__(module), name)


def ignore_known_warnings() -> None:
    """Install an ``ignore`` filter for each of :data:`KNOWN_WARNINGS` (idempotent)."""
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings(
            "ignore",
            message=known.message,
            category=_category(known.category),
            module=known.module,
        )


def filterwarnings_lines() -> list[str]:
    """:data:`KNOWN_WARNINGS` as pytest ``filterwarnings`` lines. pytest restores the warning
    filters around collection and around each test, so filters installed while ``conftest`` is
    imported would be gone by the time a test runs; these lines apply inside every test."""
    lines = []
    for known in KNOWN_WARNINGS:
        module, _, name = known.category.partition(":")
        lines.append(f"ignore:{known.message}:{module}.{name}:{known.module}")
    return lines
