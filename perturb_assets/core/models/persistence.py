"""Storing fitted baseline models with skops, and loading only trusted types back.

A fitted scikit-learn model is written with ``skops.io`` (no pickle); :func:`load_model` refuses
any type outside scikit-learn, numpy and the platform's own estimators
(:class:`UntrustedTypeError`), so a model file cannot run code when it is read.
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from perturb_assets.core.models.estimators import AdditiveModel, LinearPCAModel, TrainMean
from perturb_assets.core.models.forest import CompressedTargetForest

__all__ = [
    "canonical_skops",
    "ModelFileError",
    "UntrustedTypeError",
    "load_model",
    "save_model",
]


# ---------------------------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------------------------


class ModelFileError(ValueError):
    """A model file cannot be read as a skops archive."""


class UntrustedTypeError(ModelFileError):
    """A model file holds a type outside the trusted set; it is not loaded.

    Attributes
    ----------
    types : list of str
        The offending fully qualified type names.
    """

    def __init__(self, path: str, types: list[str]) -> None:
        self.types = types
        super().__init__(
            f"{path}: refusing to load untrusted type(s) {', '.join(types)}; only scikit-learn, "
            "numpy and perturb_assets.core.models.estimators classes are allowed"
        )


#: Our own estimator classes that :func:`load_model` trusts (exact names, no other object of
#: this module).
_OWN_TYPES: frozenset[str] = frozenset(
    f"{cls.__module__}.{cls.__name__}"
    for cls in (TrainMean, LinearPCAModel, AdditiveModel, CompressedTargetForest)
)
_TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.")


def _is_trusted_type(name: str) -> bool:
    return name in _OWN_TYPES or name.startswith(_TRUSTED_PREFIXES)


def save_model(model: BaseEstimator, path: str | os.PathLike[str]) -> Path:
    """Write a fitted model to ``path`` in skops format (no pickle).

    Meant for the platform's own model store only; see :func:`load_model`.

    Parameters
    ----------
    model
        A fitted estimator of :mod:`perturb_assets.core.models.estimators` or of scikit-learn.
    path
        Destination file (conventionally ``*.skops``); parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import skops.io as sio  # lazy: importing skops costs seconds (it scans trusted types)

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(canonical_skops(sio.dumps(_stable_diagnostics(model))))
    return p


#: Fitted attributes that are convergence diagnostics whose last bits are noise: ElasticNet's
#: ``dual_gap_`` is a difference of nearly equal sums (~1e-17 at convergence) that BLAS rounds
#: differently with the arrays' memory alignment, so it changes from process to process while
#: the coefficients do not. Stored rounded to these decimals, so the file is the same bytes.
_NOISY_DIAGNOSTICS: dict[str, int] = {"dual_gap_": 12}


def _stable_diagnostics(model: BaseEstimator) -> BaseEstimator:
    """A shallow copy of ``model`` with its noisy diagnostics rounded (the model is unchanged:
    coefficients, predictions and the in-memory object are untouched)."""
    noisy = {k: d for k, d in _NOISY_DIAGNOSTICS.items() if hasattr(model, k)}
    if not noisy:
        return model
    stored = copy.copy(model)
    for name, decimals in noisy.items():
        setattr(stored, name, np.round(getattr(model, name), decimals))
    return stored


#: A zip member's date and time in a canonical archive (the zip format's earliest).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_skops(archive: bytes) -> bytes:
    """The same skops archive with nothing that changes from run to run.

    skops names array members and memo ids after ``id()`` of the objects (memory addresses)
    and stamps members with the time of writing, so the same model gives other bytes on every
    run. Here every ``__id__`` and member name is replaced by its ordinal in the schema (equal
    ids stay equal, so shared objects stay shared), members are written in that order with a
    fixed date: the same model, the same bytes, in any process and any data root.
    """
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        schema = json.loads(source.read(_SCHEMA))
        ids: dict[int, int] = {}
        names: dict[str, str] = {}
        _renumber(schema, ids, names)
        members = {name: source.read(name) for name in source.namelist() if name != _SCHEMA}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        target.writestr(zipfile.ZipInfo(_SCHEMA, _ZIP_EPOCH), json.dumps(schema, indent=2))
        for old, new in sorted(names.items(), key=lambda item: item[1]):
            target.writestr(zipfile.ZipInfo(new, _ZIP_EPOCH), members.pop(old))
        for name in sorted(members):  # anything the schema does not name, kept as is
            target.writestr(zipfile.ZipInfo(name, _ZIP_EPOCH), members[name])
    return out.getvalue()


_SCHEMA = "schema.json"


def _renumber(node: Any, ids: dict[int, int], names: dict[str, str]) -> None:
    """Replace memo ids and member file names by ordinals, in place, depth first."""
    if isinstance(node, list):
        for item in node:
            _renumber(item, ids, names)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            node[key] = ids.setdefault(value, len(ids))
        elif key == "file" and isinstance(value, str):
            suffix = Path(value).suffix
            node[key] = names.setdefault(value, f"{len(names):06d}{suffix}")
        else:
            _renumber(value, ids, names)


def load_model(path: str | os.PathLike[str]) -> BaseEstimator:
    """Load a model written by :func:`save_model`, trusting only known types.

    The types the file needs beyond skops' defaults are listed with
    :func:`skops.io.get_untrusted_types`; loading proceeds only when every one of them is a
    scikit-learn or numpy type or one of our estimator classes, and exactly that list
    is passed as ``trusted`` (never ``trusted=True``).

    This is for files the platform wrote itself into its own storage. It is *not* a way to
    load user-supplied model files: the allow-list narrows, but does not prove, the safety of
    an archive built by someone else.

    Parameters
    ----------
    path
        A ``.skops`` file.

    Returns
    -------
    sklearn.base.BaseEstimator
        The model.

    Raises
    ------
    UntrustedTypeError
        The file contains a type outside the allow-list.
    ModelFileError
        The file is not a readable skops archive (e.g. a pickle).
    """
    import skops.io as sio  # lazy: importing skops costs seconds (it scans trusted types)

    p = str(path)
    try:
        untrusted = sio.get_untrusted_types(file=p)
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p}: not a skops model file ({exc})") from exc
    bad = sorted(t for t in untrusted if not _is_trusted_type(t))
    if bad:
        raise UntrustedTypeError(p, bad)
    return sio.load(p, trusted=untrusted)
