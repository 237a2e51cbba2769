"""GEARS "simulation" train/val/test split of perturbation conditions.

Csendes et al. 2025 evaluate every model on the split that cell-gears 0.1.2 produces with
``DataSplitter(adata, split_type="simulation").split_data(seed=...)``. This module recomputes
that split without importing GEARS (which pulls in torch and torch-geometric), so the split can
be an ordinary, cheap, Dagster-free asset and every model — GEARS or not — sees the same
conditions in train, val and test.

The result is identical to cell-gears, condition for condition and subgroup for subgroup. To
get there this module reproduces, on purpose, the following behaviour of
``gears.data_utils.DataSplitter.get_simulation_split``:

* **Global-RNG call sequence.** GEARS calls ``np.random.seed(seed)`` and then
  ``np.random.choice(..., replace=False)`` twice per call of ``get_simulation_split`` (once for
  the training genes, once for the seen-2 training combinations), re-seeding before each draw.
  Each draw is therefore the first draw of a fresh legacy Mersenne-Twister seeded with ``seed``,
  which is exactly ``np.random.RandomState(seed).choice(...)``. We use such private instances,
  so calling this function never changes numpy's global random state.
* **Draw populations are sorted.** The genes are drawn from ``np.unique`` of the genes, and the
  seen-2 combinations from ``np.setdiff1d`` (also sorted and unique), so the split depends on the
  *set* of conditions, never on their order or multiplicity in ``adata.obs``.
* **int() truncation.** The number of drawn items is ``int(n * fraction)`` (rounded down).
* **Validation is carved the same way.** GEARS applies the same procedure to the training
  conditions of the first pass with fixed fractions 0.9 / 0.9 and the *same* seed; what that
  second pass holds out becomes ``val``, with its own subgroups.
* **Singles are recognised by substring.** A condition is a single when the substring ``ctrl``
  occurs anywhere in it (``'ctrl' in p``), and a combination otherwise. A condition such as
  ``"A+ctrlB"`` (a gene whose name contains ``ctrl``) is therefore treated as a single
  perturbation of ``A``, although gene ``ctrlB`` still counts towards the number of genes drawn
  for training. Real gene symbols do not contain ``ctrl``, so this only matters for synthetic data.
* **ctrl is always train.** GEARS removes ``ctrl`` before splitting and adds it back to train:
  control cells are the input of every model, never a prediction target.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np
import pandas as pd

from perturb_assets.core.gears.format import CONTROL, parse_condition

__all__ = [
    "SPLITS",
    "SUBGROUPS",
    "check_split_parameters",
    "simulation_split",
    "split_coverage_problems",
    "split_overlap_problems",
    "split_summary",
]

#: Split labels, in the order rows are sorted.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Subgroup labels GEARS reports for held-out (val and test) conditions, in the order rows are
#: sorted: single perturbations of unseen genes, then combinations by how many of their genes
#: were seen as training genes.
SUBGROUPS: tuple[str, ...] = ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")

# GEARS hard-codes these fractions when it carves validation out of the first-pass train set.
_VAL_TRAIN_GENE_SET_SIZE = 0.9
_VAL_COMBO_SEEN2_TRAIN_FRAC = 0.9


def simulation_split(
    conditions: Iterable[str],
    seed: int = 1,
    train_gene_set_size: float = 0.75,
    combo_seen2_train_frac: float = 0.75,
) -> pd.DataFrame:
    """Assign every condition to train, val or test exactly as cell-gears' simulation split.

    Equivalent to ``DataSplitter(adata, split_type="simulation").split_data(seed=seed,
    train_gene_set_size=train_gene_set_size, combo_seen2_train_frac=combo_seen2_train_frac)``
    of cell-gears 0.1.2, where ``adata.obs["condition"]`` holds ``conditions``: the ``split``
    column is GEARS' ``adata.obs["split"]`` per condition, and the ``subgroup`` column carries
    the returned ``test_subgroup`` (for test rows) and ``val_subgroup`` (for val rows) dicts.

    Parameters
    ----------
    conditions
        GEARS condition strings (``ctrl``, ``A+ctrl``, ``ctrl+A`` or ``A+B``), e.g.
        ``adata.obs["condition"]``. Duplicates and order do not matter; ``ctrl`` may be absent.
    seed
        Seed of the legacy numpy Mersenne-Twister, as in GEARS (an int in ``[0, 2**32)``).
    train_gene_set_size
        Fraction of perturbed genes drawn as training genes, in ``(0, 1]``.
    combo_seen2_train_frac
        Fraction of combinations whose two genes are both training genes that stay in train;
        the rest are test (``combo_seen2``). In ``(0, 1]``.

    Returns
    -------
    pandas.DataFrame
        One row per unique condition, ``ctrl`` included, indexed by ``condition``, with columns

        ``split``
            ``"train"``, ``"val"`` or ``"test"``.
        ``subgroup``
            For val and test rows one of :data:`SUBGROUPS`; ``None`` for train rows.

        Rows are sorted by split (train, val, test), then subgroup (in :data:`SUBGROUPS`
        order), then condition name.

    Raises
    ------
    ConditionSyntaxError
        If a condition is not valid GEARS syntax (see
        :func:`perturb_assets.core.gears.parse_condition`).
    ValueError
        If a fraction is outside ``(0, 1]`` or the seed is not an int in ``[0, 2**32)``.
    TypeError
        If ``conditions`` is a single string rather than an iterable of strings.
    """
    if isinstance(conditions, str):
        raise TypeError(
            "conditions must be an iterable of condition strings, not a single string "
            f"({conditions!r}); wrap it in a list"
        )
    check_split_parameters(seed, train_gene_set_size, combo_seen2_train_frac)

    # Unique conditions in order of first appearance, as pandas' Series.unique() gives GEARS.
    # The order cannot change the result (see module docstring), only the work done.
    unique_conditions = list(dict.fromkeys(conditions))
    for condition in unique_conditions:
        parse_condition(condition)  # raises ConditionSyntaxError with the bad condition
    perts = [c for c in unique_conditions if c != CONTROL]

    # First pass: hold out test conditions.
    train, test_subgroup = _gears_simulation_split(
        perts, train_gene_set_size, combo_seen2_train_frac, seed
    )
    # Second pass on the remaining train conditions, same seed, fixed fractions: its held-out
    # conditions become validation. This mirrors GEARS' DataSplitter.split_data.
    _, val_subgroup = _gears_simulation_split(
        train, _VAL_TRAIN_GENE_SET_SIZE, _VAL_COMBO_SEEN2_TRAIN_FRAC, seed
    )

    split: dict[str, str] = dict.fromkeys(perts, "train")
    subgroup: dict[str, str | None] = dict.fromkeys(perts)
    # Later assignments win, in GEARS' order (train, then val, then test); the sets are disjoint
    # anyway, so this only documents precedence.
    for label, groups in (("val", val_subgroup), ("test", test_subgroup)):
        for name in SUBGROUPS:
            for condition in groups[name]:
                split[condition] = label
                subgroup[condition] = name
    # ctrl is the input of every model, never a prediction target: GEARS puts it in train even
    # when the data hold no control cells.
    split[CONTROL] = "train"
    subgroup[CONTROL] = None

    frame = pd.DataFrame(
        {"split": pd.Series(split, dtype=object), "subgroup": pd.Series(subgroup, dtype=object)}
    )
    frame.index.name = "condition"
    return _sort(frame)


def split_summary(split: pd.DataFrame) -> pd.DataFrame:
    """Count conditions per split and subgroup.

    Parameters
    ----------
    split
        A frame as returned by :func:`simulation_split` (columns ``split`` and ``subgroup``).

    Returns
    -------
    pandas.DataFrame
        Columns ``split``, ``subgroup`` and ``n_conditions``: one ``train`` row (``subgroup``
        ``None``; ``ctrl`` included in its count), then one row per subgroup of :data:`SUBGROUPS`
        for ``val`` and for ``test``, zero counts included, so the shape is the same for every
        dataset and seed. ``n_conditions`` sums to ``len(split)``.
    """
    missing = {"split", "subgroup"} - set(split.columns)
    if missing:
        raise ValueError(f"split frame lacks column(s) {sorted(missing)}")
    rows: list[dict[str, object]] = [
        {"split": "train", "subgroup": None, "n_conditions": int((split["split"] == "train").sum())}
    ]
    for label in ("val", "test"):
        in_split = split["split"] == label
        for name in SUBGROUPS:
            n = int((in_split & (split["subgroup"] == name)).sum())
            rows.append({"split": label, "subgroup": name, "n_conditions": n})
    return pd.DataFrame(rows, columns=["split", "subgroup", "n_conditions"])


def split_overlap_problems(split: pd.DataFrame) -> list[str]:
    """Problems of a split table: repeated conditions, a condition both in train and test."""
    problems = []
    if not split.index.is_unique:
        problems.append(
            f"conditions listed twice: {list(split.index[split.index.duplicated()][:5])}"
        )
    train = set(split.index[split["split"] == "train"])
    test = set(split.index[split["split"] == "test"])
    if both := sorted(train & test):
        problems.append(f"in both train and test: {both[:5]}")
    return problems


def split_coverage_problems(split: pd.DataFrame, conditions: Iterable[str]) -> list[str]:
    """Conditions of the data without a split, and split conditions absent from the data."""
    in_data, in_split = {str(c) for c in conditions}, set(split.index)
    problems = []
    if missing := sorted(in_split - in_data):
        problems.append(f"split conditions absent from the data: {missing[:5]}")
    if unsplit := sorted(in_data - in_split):
        problems.append(f"data conditions without a split: {unsplit[:5]}")
    return problems


def _gears_simulation_split(
    pert_list: list[str],
    train_gene_set_size: float,
    combo_seen2_train_frac: float,
    seed: int,
) -> tuple[list[str], dict[str, list[str]]]:
    """Reimplementation of ``DataSplitter.get_simulation_split`` (no ``test_set_perts``).

    Returns the training conditions and the held-out conditions by subgroup.
    """
    # Genes: every '+'-separated part except the literal 'ctrl', sorted and unique (np.unique,
    # like GEARS' get_genes_from_perts). np.unique([]) is float; force str to keep types simple.
    genes = np.unique(
        np.array([g for p in pert_list for g in p.split("+") if g != CONTROL], dtype=str)
    )
    # np.random.seed(seed); np.random.choice(...) == first draw of a fresh RandomState(seed).
    # A RandomState instance (not np.random.default_rng) is required to get GEARS' draws.
    train_genes = np.random.RandomState(seed).choice(
        genes, int(len(genes) * train_gene_set_size), replace=False
    )
    train_gene_set = set(train_genes.tolist())
    ood_gene_set = set(np.setdiff1d(genes, train_genes).tolist())

    # GEARS' classification: a single is anything that contains the substring 'ctrl'.
    singles = [p for p in pert_list if CONTROL in p and p != CONTROL]
    combos = [p for p in pert_list if CONTROL not in p]

    single_train = [p for p in singles if _gears_single_gene(p) in train_gene_set]
    unseen_single = [p for p in singles if _gears_single_gene(p) in ood_gene_set]

    def n_seen(combo: str) -> int:
        # Counted over both parts, so a combination 'A+A' of a training gene counts 2.
        return sum(part in train_gene_set for part in combo.split("+"))

    combo_any_train = [p for p in combos if any(g in train_gene_set for g in p.split("+"))]
    combo_seen1 = [p for p in combo_any_train if n_seen(p) == 1]
    # Both genes seen: a seeded fraction stays in train, the rest is test. The population is
    # np.setdiff1d's sorted unique array, and the generator is re-seeded as GEARS does.
    seen2_candidates = np.setdiff1d(
        np.array(combo_any_train, dtype=str), np.array(combo_seen1, dtype=str)
    )
    combo_train = np.random.RandomState(seed).choice(
        seen2_candidates, int(len(seen2_candidates) * combo_seen2_train_frac), replace=False
    )
    combo_seen2 = np.setdiff1d(seen2_candidates, combo_train).tolist()

    combo_any_ood = [p for p in combos if any(g in ood_gene_set for g in p.split("+"))]
    combo_seen0 = [p for p in combo_any_ood if n_seen(p) == 0]

    train = single_train + combo_train.tolist()
    held_out = {
        "unseen_single": unseen_single,
        "combo_seen0": combo_seen0,
        "combo_seen1": combo_seen1,
        "combo_seen2": combo_seen2,
    }
    # Same invariant GEARS asserts: every condition lands in exactly one bucket.
    assert len(train) + sum(map(len, held_out.values())) == len(pert_list)
    return train, held_out


def _gears_single_gene(condition: str) -> str:
    """Gene of a GEARS single, as ``gears.utils.parse_single_pert``: first part unless 'ctrl'."""
    first, second = condition.split("+")[:2]
    return second if first == CONTROL else first


def _sort(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by split, subgroup (train rows have none) and condition; see simulation_split."""
    split_rank = frame["split"].map({s: i for i, s in enumerate(SPLITS)})
    subgroup_rank = frame["subgroup"].map({s: i for i, s in enumerate(SUBGROUPS)}).fillna(-1)
    order = sorted(
        range(len(frame)),
        key=lambda i: (split_rank.iloc[i], subgroup_rank.iloc[i], frame.index[i]),
    )
    return frame.iloc[order]


def check_split_parameters(
    seed: int, train_gene_set_size: float, combo_seen2_train_frac: float
) -> None:
    """Raise ``ValueError`` unless the fractions lie in ``(0, 1]`` and the seed is an int in
    ``[0, 2**32)``, as :func:`simulation_split` needs."""
    _check_fraction("train_gene_set_size", train_gene_set_size)
    _check_fraction("combo_seen2_train_frac", combo_seen2_train_frac)
    _check_seed(seed)


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
