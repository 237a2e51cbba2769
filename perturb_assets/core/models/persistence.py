"""Storing fitted baseline models with skops, and loading only trusted types back.

A fitted scikit-learn model is written with ``skops.io`` (no pickle); :func:`load_model` refuses
any type outside scikit-learn, numpy and the platform's own estimators
(:class:`UntrustedTypeError`), so a model file cannot run code when it is read.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from sklearn.base import BaseEstimator

from perturb_assets.core.models.estimators import AdditiveModel, LinearPCAModel, TrainMean
from perturb_assets.core.models.forest import CompressedTargetForest

__all__ = [
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
    sio.dump(model, p)
    return p


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
