"""The docs site builds with warnings as errors, and its pages link to each other correctly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_docs_site_builds_with_warnings_as_errors(tmp_path):
    """Sphinx (MyST + numpydoc + autodoc) builds every page and the API reference, -W."""
    pytest.importorskip("sphinx")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + [str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    api = (tmp_path / "html" / "api.html").read_text()
    # The API reference is generated from the docstrings: the core's entry points are in it.
    for name in ("pp.pseudobulk", "io.VersionedStore", "metrics.perturbation_metrics"):
        assert f'id="perturb_assets.core.{name}"' in api, f"{name} is missing from the API page"


def test_every_page_is_in_the_toctree_and_readme_links_resolve():
    """No orphan page, and every relative link of the README points at a file that exists."""
    index = (DOCS / "index.md").read_text()
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md")}
    pages -= {"index"}
    listed = set(re.findall(r"^([\w/-]+)$", index, re.M))
    assert pages <= listed, f"pages missing from docs/index.md's toctree: {pages - listed}"
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(((?!https?://|#)[^)#]+)", readme):
        assert (REPO / target).exists(), f"README.md links to a missing file: {target}"
