"""Sphinx configuration of the perturb_assets docs site (MyST pages, numpydoc API reference).

Built with warnings as errors: ``sphinx-build -W -b html docs docs/_build/html``
(``perturb_assets_tests/test_docs.py`` runs exactly that).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

project = "perturb_assets"
author = "perturb_assets developers"
copyright = "2026, perturb_assets developers"

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# The API reference documents each stage package's public names (its ``__all__``).
autodoc_default_options = {"members": True, "imported-members": True}
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
# Dataclass fields, Dagster types and third-party classes are not all resolvable cross-refs.
nitpicky = False
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = "perturb_assets"
html_static_path = ["_static"]


def _skip_library_members(app, what, name, obj, skip, options):
    """Leave out members a class inherits from scikit-learn or Dagster (their docs say them)."""
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] in {"sklearn", "dagster"}:
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_library_members)
