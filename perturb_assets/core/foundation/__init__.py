"""Foundation models: scGPT fine-tuning, GEARS (and its scFoundation-embedding variant).

Torch, scgpt and cell-gears are imported inside the functions that need them, so importing
this package (and the registry) stays cheap.
"""
