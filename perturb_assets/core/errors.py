"""Error types of the science core.

Every input error names the file and the field that is wrong, so a user knows what to fix.
"""

from __future__ import annotations

from os import PathLike


class DatasetError(ValueError):
    """A dataset file is unreadable or violates the GEARS layout.

    Parameters
    ----------
    path
        The file (or folder) that holds the bad input. ``None`` for in-memory data.
    field
        The field that is wrong, e.g. ``"obs['condition']"`` or ``"X"``.
    problem
        What is wrong and, where possible, what to do about it.
    """

    def __init__(self, path: str | PathLike | None, field: str, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.field = field
        self.problem = problem
        where = self.path if self.path is not None else "<in-memory AnnData>"
        super().__init__(f"{where}: {field}: {problem}")


class ConditionSyntaxError(ValueError):
    """A perturbation condition does not follow GEARS syntax (``ctrl``, ``A+ctrl``, ``A+B``)."""
