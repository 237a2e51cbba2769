"""Baseline model assets: one prediction table per (model, feature set) and dataset."""
