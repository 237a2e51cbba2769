"""perturb_assets: a Dagster asset platform for post-perturbation RNA-seq prediction benchmarks.

The science lives in :mod:`perturb_assets.core` (no Dagster imports); the Dagster layer in
:mod:`perturb_assets.defs` wraps it with storage, partitions and metadata.
"""

__version__ = "0.1.0"
