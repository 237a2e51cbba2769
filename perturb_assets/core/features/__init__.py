"""Perturbation features (stage 6): prior knowledge about the target genes.

- ``annotations``: the GO annotation matrix (simulator stand-in, user file or MSigDB);
- ``pca``: GO-PCA and embedding-PCA gene features (≤ 256 components);
- ``genes``: symbol matching with outdated HGNC aliases;
- ``perturbation``: a condition's feature vector (the sum of its targets' rows), and the checks
  a feature table must pass."""

from perturb_assets.core.features.annotations import (
    AnnotationSource,
    go_annotation_matrix,
)
from perturb_assets.core.features.genes import (
    GENE_ALIASES_FILE,
    gene_aliases,
    load_gene_aliases,
    match_genes,
)
from perturb_assets.core.features.pca import (
    DEFAULT_N_COMPONENTS,
    embedding_pca,
    pca_features,
)
from perturb_assets.core.features.perturbation import (
    feature_table_problems,
    perturbation_features,
)

__all__ = [
    "AnnotationSource",
    "DEFAULT_N_COMPONENTS",
    "GENE_ALIASES_FILE",
    "embedding_pca",
    "feature_table_problems",
    "gene_aliases",
    "go_annotation_matrix",
    "load_gene_aliases",
    "match_genes",
    "pca_features",
    "perturbation_features",
]
