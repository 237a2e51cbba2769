"""Metric assets: per-dataset benchmark tables and the cross-dataset summary."""
