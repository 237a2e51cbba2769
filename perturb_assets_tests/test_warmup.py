"""Set-up's numba warm-up reaches every cached kernel of the pipeline."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# In a new interpreter (nothing compiled or loaded yet): the warm-up, then the number of
# compiled signatures of every project kernel with cache=True (inline="always" helpers aside).
_KERNELS = """
import importlib, pkgutil
import perturb_assets.core as core
from numba.core.registry import CPUDispatcher
from perturb_assets.warmup import warm_jit_caches
warm_jit_caches(log=lambda line: print(line.split()[0]))
for info in pkgutil.walk_packages(core.__path__, "perturb_assets.core."):
    module = importlib.import_module(info.name)
    for name, value in vars(module).items():
        if (isinstance(value, CPUDispatcher) and value.__module__ == info.name
                and value._cache.__class__.__name__ == "FunctionCache"
                and value.targetoptions.get("inline") != "always"):
            print(f"{info.name}.{name}", len(value.signatures))
"""


#: Each stage's kernel that the steps call from Python (helpers called only from other kernels,
#: such as ``_mwu_p_value``, and variants for other layouts or sizes, such as dense or CSC
#: sums, have no signature of their own to check).
ENTRY_KERNELS = [
    "perturb_assets.core.pp.pseudobulk._sums_rows_sparse",  # pseudobulk
    "perturb_assets.core.pp.de_statistics._twice_u_columns",  # de_genes (Wilcoxon)
    "perturb_assets.core.metrics.pearson._pearson_and_delta_serial",  # metrics
    "perturb_assets.core.metrics.cell_eval._l1_matrix",  # metrics (cell-eval's family)
    "perturb_assets.core.metrics.de_family._group_tests",  # noise_ceiling, metrics (DE family)
    "perturb_assets.core.metrics.de_family._lfc_matrix",
]


def test_warmup_reaches_every_stages_kernels():
    done = subprocess.run([sys.executable, "-c", _KERNELS], capture_output=True, text=True,
                          check=True, cwd=REPO)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0] == "[warmup]"
    signatures = dict(line.split() for line in lines[1:])
    assert len(signatures) >= 15
    assert {name: signatures[name] for name in ENTRY_KERNELS} == dict.fromkeys(ENTRY_KERNELS, "1")


def test_set_up_runs_the_warmup_after_installing():
    script = (REPO / "deploy/bootstrap.sh").read_text()
    install, stamp = script.index("uv pip install"), script.index('> "$STAMP"')
    assert install < script.index("python -m perturb_assets.warmup") < stamp
