"""The shape of the code: no import cycles, imports down the stages, short modules, one hash.

Every ``import`` statement counts, also those inside functions (a lazy import hides a cycle
from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "perturb_assets"
CORE = PACKAGE / "core"
#: The core's stages in the order data flows (core/__init__.py): a stage imports only from
#: stages before it, or from itself. The plain modules (errors, settings) come first.
STAGES = ("errors", "settings", "gears", "io", "pp", "simulation", "datasets", "features",
          "metrics", "models", "evaluation", "analyses", "report")  # fmt: skip
MAX_LINES = 700
MAX_PLAIN_CORE_MODULES = 4
#: Modules that may import hashlib, and what they hash (a file's sha256 is io/hashing's job).
HASHLIB_USERS = {
    "perturb_assets.core.io.hashing": "the one file-sha256 helper",
    "perturb_assets.core.io.serialisation": "a version's name from its manifest (text)",
    "perturb_assets.core.io.download": "the digest of a download while it streams",
    "perturb_assets.defs.metadata": "content hashes of in-memory tables and arrays",
    "perturb_assets.defs.models.user": "one digest over the prediction files' sha256s",
    "perturb_assets.lineage": "a version from a list of strings",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def _exports(package: str) -> frozenset[str]:
    """Names a package's ``__init__`` binds (a function may shadow a submodule's name)."""
    path = MODULES.get(package)
    if path is None or path.name != "__init__.py":
        return frozenset()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return frozenset(names)


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports, anywhere in its file."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = []
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_submodule = sub in MODULES and alias.name not in _exports(node.module)
                targets.append(sub if is_submodule else node.module)
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != module}
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["perturb_assets", "core"] or len(parts) < 3:
        return None
    return STAGES.index(parts[2])


def test_every_core_module_belongs_to_a_stage():
    for module in MODULES:
        if module.startswith("perturb_assets.core."):
            assert module.split(".")[2] in STAGES, f"{module}: add its stage to STAGES"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _stage(m) is not None))
def test_core_imports_point_down_the_stages(module):
    upward = [t for t in GRAPH[module] if _stage(t) is None or _stage(t) > _stage(module)]
    assert upward == [], f"{module} imports a later stage or outside the core: {upward}"


def test_core_is_dagster_free():
    for module, path in MODULES.items():
        if module.startswith("perturb_assets.core"):
            assert "import dagster" not in path.read_text(), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_700_lines(module):
    n_lines = len(MODULES[module].read_text().splitlines())
    assert n_lines <= MAX_LINES, f"{module}: {n_lines} lines; split it into named parts"


def test_core_holds_stage_packages_and_few_plain_modules():
    plain = sorted(p.name for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert len(plain) <= MAX_PLAIN_CORE_MODULES, plain
    packages = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").exists())
    assert set(packages) == set(STAGES) - {Path(p).stem for p in plain}


def test_a_file_sha256_is_computed_in_one_helper():
    users = {m for m, p in MODULES.items() if "import hashlib" in p.read_text()}
    assert users <= set(HASHLIB_USERS), (
        f"hash files with core.io.sha256_file: {users - set(HASHLIB_USERS)}"
    )
