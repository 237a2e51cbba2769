"""simulation_split must equal cell-gears' DataSplitter(split_type="simulation") exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.errors import ConditionSyntaxError
from perturb_assets.core.gears import SUBGROUPS, simulation_split, split_summary

anndata = pytest.importorskip("anndata")
gears_data_utils = pytest.importorskip("gears.data_utils")


# --------------------------------------------------------------------------- helpers


def gears_reference(
    conditions: list[str],
    seed: int,
    train_gene_set_size: float = 0.75,
    combo_seen2_train_frac: float = 0.75,
) -> tuple[dict[str, str], dict[str, dict[str, set[str]]]]:
    """Run cell-gears itself on a tiny AnnData: split per condition and subgroup sets."""
    obs = pd.DataFrame(
        {"condition": conditions}, index=[f"cell{i}" for i in range(len(conditions))]
    )
    adata = anndata.AnnData(X=np.zeros((len(conditions), 1), dtype=np.float32), obs=obs)
    # GEARS reseeds numpy's global RNG; restore it so the rest of the suite is unaffected.
    state = np.random.get_state()  # noqa: NPY002
    try:
        adata, groups = gears_data_utils.DataSplitter(adata, split_type="simulation").split_data(
            seed=seed,
            train_gene_set_size=train_gene_set_size,
            combo_seen2_train_frac=combo_seen2_train_frac,
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002
    split = {str(c): s for c, s in zip(adata.obs["condition"], adata.obs["split"], strict=True)}
    assert all(isinstance(s, str) for s in split.values()), "GEARS left a condition unmapped"
    split["ctrl"] = "train"  # GEARS maps ctrl to train even when no control cells are present
    subgroups = {
        key: {name: {str(c) for c in members} for name, members in groups[key].items()}
        for key in ("test_subgroup", "val_subgroup")
    }
    return split, subgroups


def ours(split: pd.DataFrame) -> tuple[dict[str, str], dict[str, dict[str, set[str]]]]:
    """Our frame in the shape of gears_reference's output."""
    subgroups = {
        key: {
            name: set(split.index[(split["split"] == label) & (split["subgroup"] == name)])
            for name in SUBGROUPS
        }
        for key, label in (("test_subgroup", "test"), ("val_subgroup", "val"))
    }
    return split["split"].to_dict(), subgroups


def assert_matches_gears(
    conditions: list[str],
    seed: int,
    train_gene_set_size: float = 0.75,
    combo_seen2_train_frac: float = 0.75,
) -> pd.DataFrame:
    result = simulation_split(conditions, seed, train_gene_set_size, combo_seen2_train_frac)
    expected_split, expected_groups = gears_reference(
        conditions, seed, train_gene_set_size, combo_seen2_train_frac
    )
    got_split, got_groups = ours(result)
    assert got_split == expected_split
    assert got_groups == expected_groups
    return result


def single_only(n: int) -> list[str]:
    """Adamson/Replogle-like: only ``X+ctrl`` singles, plus control cells."""
    return ["ctrl"] * 3 + [f"G{i}+ctrl" for i in range(n)]


def norman_like(n_genes: int, n_combos: int, rng_seed: int = 0) -> list[str]:
    """Norman-like: singles in both orientations, combos of genes seen and unseen as singles."""
    rng = np.random.default_rng(rng_seed)
    genes = [f"GENE{i}" for i in range(n_genes)]
    # About a fifth of the genes occur only inside combinations.
    with_single = rng.choice(genes, size=int(n_genes * 0.8), replace=False)
    conditions = ["ctrl", "ctrl"]
    for g in with_single:
        conditions.append(f"{g}+ctrl" if rng.random() < 0.5 else f"ctrl+{g}")
    combos: set[str] = set()
    while len(combos) < n_combos:
        a, b = rng.choice(genes, size=2, replace=False)
        if f"{b}+{a}" not in combos:
            combos.add(f"{a}+{b}")
    conditions.extend(sorted(combos))
    # Several cells per condition, in a scrambled order, as in a real obs table.
    cells = conditions + list(rng.choice(conditions, size=len(conditions)))
    return [str(c) for c in rng.permutation(cells)]


# --------------------------------------------------------------------------- equality with GEARS


@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize("n", [10, 87, 300])
def test_single_only_matches_gears(seed: int, n: int) -> None:
    assert_matches_gears(single_only(n), seed)


@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize(("n_genes", "n_combos"), [(10, 6), (60, 27), (150, 150)])
def test_combination_dataset_matches_gears(seed: int, n_genes: int, n_combos: int) -> None:
    result = assert_matches_gears(norman_like(n_genes, n_combos, rng_seed=seed), seed)
    if n_genes >= 150:
        # Rich enough that every test subgroup occurs, so the comparison is not vacuous.
        test_groups = set(result.loc[result["split"] == "test", "subgroup"])
        assert test_groups == set(SUBGROUPS)


@pytest.mark.parametrize(
    ("train_gene_set_size", "combo_seen2_train_frac"),
    [(0.5, 0.5), (1.0, 1.0), (0.33, 0.9), (0.9, 0.1), (0.05, 0.75), (1.0, 0.2)],
)
@pytest.mark.parametrize("seed", [1, 4])
def test_non_default_fractions_match_gears(
    train_gene_set_size: float, combo_seen2_train_frac: float, seed: int
) -> None:
    conditions = norman_like(80, 60, rng_seed=7)
    assert_matches_gears(conditions, seed, train_gene_set_size, combo_seen2_train_frac)
    assert_matches_gears(single_only(40), seed, train_gene_set_size, combo_seen2_train_frac)


@pytest.mark.parametrize("seed", [0, 1, 2, 123, 2**32 - 1])
def test_other_seeds_match_gears(seed: int) -> None:
    assert_matches_gears(norman_like(40, 30, rng_seed=3), seed)


def test_gears_substring_quirk_is_reproduced() -> None:
    # GEARS treats anything containing 'ctrl' as a single ('A+ctrlB' is a single of A), and a
    # combination of a gene with itself counts that gene twice.
    conditions = norman_like(30, 20, rng_seed=5) + [
        "GENE1+ctrlX",
        "ctrlY+GENE2",
        "NOTctrl+ctrl",
        "ctrl+Zctrl",
        "GENE3+GENE3",
        "GENE29+GENE29",
    ]
    for seed in range(1, 5):
        assert_matches_gears(conditions, seed)


@pytest.mark.parametrize(
    "conditions",
    [
        ["ctrl"],
        ["ctrl", "A+ctrl"],
        ["A+ctrl"],  # no control cells at all
        ["ctrl", "A+B"],  # combos only
        ["ctrl", "A+ctrl", "ctrl+B", "A+B"],
    ],
)
def test_tiny_datasets_match_gears(conditions: list[str]) -> None:
    for seed in (1, 2):
        assert_matches_gears(conditions, seed)


def test_categorical_condition_column_matches_gears() -> None:
    conditions = norman_like(40, 25, rng_seed=11)
    column = pd.Series(conditions, dtype="category")
    expected = assert_matches_gears(conditions, 3)
    pd.testing.assert_frame_equal(simulation_split(column, 3), expected)


# --------------------------------------------------------------------------- properties


def test_result_does_not_depend_on_order_or_duplicates() -> None:
    conditions = norman_like(60, 40, rng_seed=2)
    reference = simulation_split(conditions, seed=2)
    rng = np.random.default_rng(99)
    for _ in range(3):
        shuffled = [str(c) for c in rng.permutation(conditions + conditions[:17])]
        pd.testing.assert_frame_equal(simulation_split(shuffled, seed=2), reference)
    without_ctrl = [c for c in conditions if c != "ctrl"]
    pd.testing.assert_frame_equal(simulation_split(without_ctrl, seed=2), reference)


def test_frame_layout_and_invariants() -> None:
    conditions = norman_like(60, 40, rng_seed=4)
    split = simulation_split(conditions, seed=1)

    assert split.index.name == "condition"
    assert list(split.columns) == ["split", "subgroup"]
    assert split.index.is_unique
    assert set(split.index) == set(conditions)
    assert split.loc["ctrl", "split"] == "train"
    assert split.loc["ctrl", "subgroup"] is None
    assert set(split["split"]) == {"train", "val", "test"}
    assert split.loc[split["split"] == "train", "subgroup"].isna().all()
    assert split.loc[split["split"] != "train", "subgroup"].isin(SUBGROUPS).all()

    # No condition in more than one split (the index is unique) and, in particular, no test or
    # val condition shares a name with a train condition.
    train = set(split.index[split["split"] == "train"])
    assert train.isdisjoint(split.index[split["split"] == "test"])
    assert train.isdisjoint(split.index[split["split"] == "val"])

    # Documented order: by split, then subgroup, then condition.
    rank = {s: i for i, s in enumerate(("train", "val", "test"))}
    sub_rank = {s: i for i, s in enumerate(SUBGROUPS)}
    keys = [
        (rank[s], -1 if g is None else sub_rank[g], c)
        for c, s, g in zip(split.index, split["split"], split["subgroup"], strict=True)
    ]
    assert keys == sorted(keys)


def test_unseen_single_genes_never_perturbed_alone_in_train() -> None:
    split = simulation_split(norman_like(80, 50, rng_seed=6), seed=5)
    unseen = split.index[split["subgroup"] == "unseen_single"]
    train_singles = [c for c in split.index[split["split"] == "train"] if "ctrl" in c]
    unseen_genes = {g for c in unseen for g in c.split("+") if g != "ctrl"}
    train_genes = {g for c in train_singles for g in c.split("+") if g != "ctrl"}
    assert unseen_genes.isdisjoint(train_genes)


def test_global_rng_state_is_untouched() -> None:
    # The legacy global API is exactly what must stay untouched, hence the noqa.
    np.random.seed(12345)  # noqa: NPY002
    before = np.random.get_state()  # noqa: NPY002
    simulation_split(norman_like(30, 20), seed=1)
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_split_summary_counts() -> None:
    split = simulation_split(norman_like(60, 40, rng_seed=8), seed=1)
    summary = split_summary(split)
    assert list(summary.columns) == ["split", "subgroup", "n_conditions"]
    assert len(summary) == 1 + 2 * len(SUBGROUPS)
    assert summary["n_conditions"].sum() == len(split)
    train_row = summary.iloc[0]
    assert train_row["split"] == "train" and train_row["subgroup"] is None
    assert train_row["n_conditions"] == (split["split"] == "train").sum()
    for _, row in summary.iloc[1:].iterrows():
        expected = ((split["split"] == row["split"]) & (split["subgroup"] == row["subgroup"])).sum()
        assert row["n_conditions"] == expected


def test_split_summary_keeps_empty_subgroups() -> None:
    summary = split_summary(simulation_split(single_only(20), seed=1))
    combos = summary[summary["subgroup"].fillna("").str.startswith("combo")]
    assert len(combos) == 6
    assert (combos["n_conditions"] == 0).all()


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("bad", ["A+B+C", "A+", "+A", "", "ctrl+ctrl", " A+ctrl", None, 3.0])
def test_bad_condition_raises(bad: object) -> None:
    with pytest.raises(ConditionSyntaxError):
        simulation_split(["ctrl", "A+ctrl", bad], seed=1)  # type: ignore[list-item]


def test_nan_condition_raises() -> None:
    with pytest.raises(ConditionSyntaxError):
        simulation_split(pd.Series(["ctrl", "A+ctrl", np.nan]), seed=1)


def test_single_string_is_rejected() -> None:
    with pytest.raises(TypeError, match="iterable"):
        simulation_split("A+ctrl")


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.5"])
def test_bad_fraction_raises(fraction: object) -> None:
    with pytest.raises(ValueError, match="train_gene_set_size"):
        simulation_split(["A+ctrl"], train_gene_set_size=fraction)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="combo_seen2_train_frac"):
        simulation_split(["A+ctrl"], combo_seen2_train_frac=fraction)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, None, True])
def test_bad_seed_raises(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        simulation_split(["A+ctrl"], seed=seed)  # type: ignore[arg-type]
