"""Dagster layer: thin assets over :mod:`perturb_assets.core`, one folder per stage."""
