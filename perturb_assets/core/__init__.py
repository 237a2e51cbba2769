"""Dagster-free science core: pure functions on AnnData, numpy and pandas."""
