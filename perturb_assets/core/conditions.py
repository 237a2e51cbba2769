"""GEARS perturbation-condition syntax.

GEARS writes a condition as ``ctrl`` (control cells), ``A+ctrl`` or ``ctrl+A`` (a single
perturbation of gene ``A``) or ``A+B`` (a combination). Nothing else is valid.
"""

from __future__ import annotations

from collections.abc import Iterable

from perturb_assets.core.errors import ConditionSyntaxError

CONTROL = "ctrl"


def parse_condition(condition: str) -> tuple[str, ...]:
    """Return the target genes of a GEARS condition.

    Parameters
    ----------
    condition
        ``"ctrl"``, ``"A+ctrl"``, ``"ctrl+A"`` or ``"A+B"``.

    Returns
    -------
    tuple of str
        ``()`` for control, ``("A",)`` for a single, ``("A", "B")`` for a combination.

    Raises
    ------
    ConditionSyntaxError
        If the condition has more than two parts, an empty gene name, or is ``ctrl+ctrl``.
    """
    if not isinstance(condition, str):
        raise ConditionSyntaxError(f"condition {condition!r} is not a string")
    if condition == CONTROL:
        return ()
    parts = condition.split("+")
    if len(parts) != 2:
        raise ConditionSyntaxError(
            f"condition {condition!r} has {len(parts)} part(s); GEARS allows 'ctrl', "
            "'A+ctrl', 'ctrl+A' or 'A+B' (at most two genes)"
        )
    if any(p.strip() == "" for p in parts):
        raise ConditionSyntaxError(f"condition {condition!r} has an empty gene name")
    if any(p != p.strip() for p in parts):
        raise ConditionSyntaxError(f"condition {condition!r} has whitespace around a gene name")
    genes = tuple(p for p in parts if p != CONTROL)
    if not genes:
        raise ConditionSyntaxError(f"condition {condition!r} perturbs no gene; write 'ctrl'")
    return genes


def is_combination(condition: str) -> bool:
    """Whether ``condition`` perturbs two genes."""
    return len(parse_condition(condition)) == 2


def target_genes(conditions: Iterable[str]) -> list[str]:
    """Sorted unique target genes of ``conditions`` (control contributes none)."""
    return sorted({g for c in conditions for g in parse_condition(c)})
