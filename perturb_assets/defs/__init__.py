"""Dagster layer: thin assets over :mod:`perturb_assets.core`, one folder per stage."""

from perturb_assets.known_warnings import ignore_known_warnings

# Before any asset module is imported: defining assets already raises Dagster's BetaWarnings.
ignore_known_warnings()
