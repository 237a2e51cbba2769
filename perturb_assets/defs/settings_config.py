"""Dagster configs derived from core's settings dataclasses, bounds and defaults included.

A settings dataclass of the science core (e.g.
:class:`~perturb_assets.core.models.foundation.FineTuneSettings`) states every field's default,
range and meaning once (:func:`perturb_assets.core.settings.setting`). :func:`settings_config`
turns it into a ``dg.Config`` with the same fields, so the launchpad shows them and an invalid
value is refused as the run is configured, plus a ``device`` choice; ``config.settings()``
builds the core object, which checks itself again.

No ``from __future__ import annotations``: Dagster reads types at runtime.
"""

from typing import Any, Literal

import dagster as dg
import pydantic
from pydantic import Field

from perturb_assets.core.settings import setting_fields

Device = Literal["auto", "cuda", "cpu"]


def settings_config(settings_class: type, name: str, doc: str) -> type[dg.Config]:
    """A ``dg.Config`` class named ``name`` with every field of ``settings_class`` and
    ``device`` (``auto``: CUDA when present, else the CPU with a warning)."""

    def settings(self: dg.Config) -> Any:
        """The core settings object of this config."""
        return settings_class(**self.model_dump(exclude={"device"}))

    base = type(
        f"_{name}Base",
        (dg.Config,),
        {"__annotations__": {"device": Device}, "device": "auto", "settings": settings},
    )
    fields: dict[str, Any] = {}
    for field_name, kind, default, description, bounds in setting_fields(settings_class):
        limits = {k: v for k, v in vars(bounds).items() if v is not None}
        fields[field_name] = (kind, Field(default, description=description or None, **limits))
    return pydantic.create_model(name, __base__=base, __doc__=doc, **fields)
