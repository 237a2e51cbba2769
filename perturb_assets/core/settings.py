"""Settings that check their own ranges: the one place a setting's bounds are stated.

A settings dataclass declares each bounded field with :func:`setting` and calls
:func:`check_settings` in ``__post_init__``, so an out-of-range value is refused wherever the
settings are built (a notebook, a benchmark, a Dagster config). The Dagster configs are derived
from these dataclasses (``perturb_assets.defs.settings_config``), bounds included, instead of
restating them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["Bounds", "check_settings", "setting", "setting_fields"]


@dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``, ``le``) or exclusive (``gt``, ``lt``) limits of a numeric setting."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is out of range (pydantic's wording), or ``None``."""
        if value is None:
            return None
        for limit, ok, words in (
            (self.ge, lambda v, b: v >= b, "greater than or equal to"),
            (self.gt, lambda v, b: v > b, "greater than"),
            (self.le, lambda v, b: v <= b, "less than or equal to"),
            (self.lt, lambda v, b: v < b, "less than"),
        ):
            if limit is not None and not ok(value, limit):
                return f"{name} must be {words} {limit:g}, got {value!r}"
        return None


def setting(default: Any, *, doc: str = "", **bounds: float) -> Any:
    """A dataclass field with a default, a description and optional bounds (``ge``, ``gt``,
    ``le``, ``lt``)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "bounds": Bounds(**bounds)})


def setting_fields(settings_class: type) -> list[tuple[str, Any, Any, str, Bounds]]:
    """``(name, type, default, description, bounds)`` of every field of a settings class."""
    hints = typing.get_type_hints(settings_class)
    return [
        (
            f.name,
            hints[f.name],
            f.default,
            f.metadata.get("doc", ""),
            f.metadata.get("bounds", Bounds()),
        )
        for f in dataclasses.fields(settings_class)
    ]


def check_settings(settings: Any) -> None:
    """Refuse a settings object with a value of the wrong kind or out of its bounds.

    Raises
    ------
    ValueError
        Naming the field, the allowed values or range, and the value given.
    """
    for name, kind, _, _, bounds in setting_fields(type(settings)):
        value = getattr(settings, name)
        choices = _literal_choices(kind)
        if choices is not None and value not in choices:
            allowed = " or ".join(repr(c) for c in choices)
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
        if (
            _is_number(kind)
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int | float))
        ):
            raise ValueError(f"{name} must be a number, got {value!r}")
        problem = bounds.problem(name, value)
        if problem:
            raise ValueError(problem)


def _literal_choices(kind: Any) -> tuple[Any, ...] | None:
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None


def _is_number(kind: Any) -> bool:
    args = typing.get_args(kind) or (kind,)
    return any(a in (int, float) for a in args)


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
