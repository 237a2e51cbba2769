"""Gene features: GO annotations and their PCA, and the published gene embeddings."""
