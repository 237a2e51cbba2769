"""The one compatibility module: imports of scgpt 0.2.4 and cell-gears 0.1.2 on today's stack.

scgpt 0.2.4
    ``import scgpt`` runs ``scgpt/__init__.py``, which eagerly imports every sub-package:
    ``scgpt.utils`` (anndata, matplotlib, IPython), ``scgpt.tokenizer`` (torchtext, whose last
    release does not load on torch 2.13), ``scgpt.scbank`` (datasets), ``tasks`` and
    ``preprocess``. The perturbation model needs none of them. :func:`scgpt_model` registers a
    bare ``scgpt`` package (its real folder, without running its ``__init__``) with the two
    names ``scgpt.model.generation_model`` imports from it: ``logger`` and
    ``utils.map_raw_id_to_vocab_id``. Then only scgpt's own model code is imported: torch,
    numpy and tqdm. scgpt is installed without its dependencies (``pyproject.toml``,
    ``[nodeps]``); its code is not copied here. Without flash-attn its layers are PyTorch's
    ``nn.TransformerEncoderLayer``.

cell-gears 0.1.2
    ``GEARS.__init__`` indexes a scipy sparse matrix with a pandas boolean Series
    (``X[obs.condition == 'ctrl']``); scipy >= 1.15 calls ``.nonzero()`` on the index, which a
    Series no longer has. The ``GEARS`` subclass of :func:`gears_classes` lends ``pd.Series``
    that method for the duration of ``__init__`` only.

    ``gears.utils`` imports ``dcor`` (for ``distance_correlation`` in its interaction
    analysis, which we do not call), and importing dcor JIT-compiles its numba kernels: about
    5.6 s of every process that trains GEARS, 30 s while numba's cache is cold (a fresh
    install). :func:`gears_modules`, the one door to cell-gears here (:func:`gears_classes`
    goes through it too), registers a stand-in ``dcor`` whose ``distance_correlation``, and
    any other name, imports the real package on first use (and puts it back in
    ``sys.modules``), so nothing changes but when dcor loads.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["gears_classes", "gears_modules", "map_raw_id_to_vocab_id", "scgpt_model"]


def map_raw_id_to_vocab_id(raw_ids: Any, gene_ids: np.ndarray) -> Any:
    """Dataset gene positions -> vocabulary ids (scgpt.utils' function of the same name)."""
    import torch

    if isinstance(raw_ids, torch.Tensor):
        mapped = torch.as_tensor(gene_ids[raw_ids.cpu().numpy()])
        return mapped.to(dtype=raw_ids.dtype, device=raw_ids.device)
    return gene_ids[raw_ids].astype(raw_ids.dtype)


def _register_bare_scgpt() -> None:
    if "scgpt" in sys.modules:
        return
    spec = importlib.util.find_spec("scgpt")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "scgpt is not installed; run the README's set-up (deploy/bootstrap.sh installs "
            "scgpt==0.2.4 without its dependencies)"
        )
    package = types.ModuleType("scgpt")
    package.__path__ = list(spec.submodule_search_locations)
    package.logger = logging.getLogger("scGPT")
    utils = types.ModuleType("scgpt.utils")
    utils.map_raw_id_to_vocab_id = map_raw_id_to_vocab_id
    package.utils = utils
    sys.modules["scgpt"] = package
    sys.modules["scgpt.utils"] = utils


def scgpt_model() -> tuple[type, Any]:
    """scGPT's ``TransformerGenerator`` class and ``masked_mse_loss``, without ``scgpt.utils``."""
    _register_bare_scgpt()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flash_attn is not installed")
        from scgpt.loss import masked_mse_loss
        from scgpt.model.generation_model import TransformerGenerator
    return TransformerGenerator, masked_mse_loss


class _DeferredDcor(types.ModuleType):
    """``dcor`` until a name of it is used: then the real package (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's probes (__path__, __file__, ...)
            raise AttributeError(name)
        return getattr(_real_dcor(), name)


def _real_dcor() -> types.ModuleType:
    if isinstance(sys.modules.get("dcor"), _DeferredDcor):
        del sys.modules["dcor"]
    return importlib.import_module("dcor")


def _defer_dcor_import() -> None:
    if "dcor" in sys.modules or importlib.util.find_spec("dcor") is None:
        return
    stand_in = _DeferredDcor("dcor")

    def distance_correlation(*args: Any, **kwargs: Any) -> Any:
        return _real_dcor().distance_correlation(*args, **kwargs)

    stand_in.distance_correlation = distance_correlation
    sys.modules["dcor"] = stand_in


def gears_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """cell-gears' ``gears.gears``, ``gears.pertdata`` and ``gears.utils`` (dcor deferred)."""
    _defer_dcor_import()
    import gears.gears
    import gears.pertdata
    import gears.utils

    return gears.gears, gears.pertdata, gears.utils


def gears_classes() -> tuple[type, type]:
    """cell-gears' ``PertData`` and a patched ``GEARS`` class (imported on first use: slow)."""
    gears_gears, gears_pertdata, _ = gears_modules()
    GEARS, PertData = gears_gears.GEARS, gears_pertdata.PertData  # noqa: N806 (their names)

    class GEARSCompat(GEARS):
        """``GEARS`` whose ``__init__`` works with scipy >= 1.15 and pandas 2."""

        def __init__(self, pert_data: Any, **kwargs: Any) -> None:
            had = hasattr(pd.Series, "nonzero")
            if not had:
                pd.Series.nonzero = lambda s: s.to_numpy().nonzero()
            try:
                super().__init__(pert_data, **kwargs)
            finally:
                if not had:
                    del pd.Series.nonzero

    return PertData, GEARSCompat
