"""Benchmarks of the science core (run as modules, e.g. ``python -m ...dataset_layer``)."""
