"""Tests of perturb_assets.core.models (baselines, selection, persistence). Small and fast."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from perturb_assets.core.models import (
    AdditiveModel,
    LinearPCAModel,
    ModelFileError,
    TrainMean,
    UntrustedTypeError,
    fit_select_predict,
    load_model,
    registry,
    save_model,
)


def _row_pearson_delta(pred: pd.DataFrame, truth: pd.DataFrame, ctrl: pd.Series) -> np.ndarray:
    a = pred.to_numpy() - ctrl.to_numpy()
    b = truth.loc[pred.index].to_numpy() - ctrl.to_numpy()
    return np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)])


@pytest.fixture
def toy():
    """Random pseudo-bulk, features and split: 20 train singles (+ctrl), 5 val, 15 test."""
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(30)]
    conds = (
        ["ctrl"] + [f"G{i}+ctrl" for i in range(30)] + [f"G{i}+G{i + 1}" for i in range(0, 20, 2)]
    )
    pb = pd.DataFrame(rng.normal(size=(len(conds), len(genes))), index=conds, columns=genes)
    feats = pd.DataFrame(rng.normal(size=(len(conds), 6)), index=conds)
    split = pd.DataFrame(
        {"split": ["train"] * 21 + ["val"] * 5 + ["test"] * 15}, index=pd.Index(conds)
    )
    return pb, feats, split


# --- Train Mean -------------------------------------------------------------------------------


def test_train_mean_predicts_the_mean_of_training_profiles():
    Y = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    model = TrainMean().fit(np.zeros((2, 0)), Y)
    np.testing.assert_array_equal(model.predict(np.zeros((4, 0))), np.tile([2.0, 3.0, 4.0], (4, 1)))


def test_train_mean_excludes_ctrl_and_val_by_default(toy):
    pb, _, split = toy
    res = fit_select_predict("train_mean", None, pb, split)
    train = [c for c in split.index[split["split"] == "train"] if c != "ctrl"]
    expected = pb.loc[train].mean().to_numpy()
    assert res.fit_on == "train"
    assert res.n_conditions == {"train": 20, "val": 5, "test": 15}
    np.testing.assert_allclose(res.predictions.to_numpy(), np.tile(expected, (15, 1)))
    # a protocol that trains on control puts ctrl back among the training rows
    with_ctrl = dataclasses.replace(registry.PUBLISHED_2025, train_on_control=True)
    res_ctrl = fit_select_predict("train_mean", None, pb, split, protocol=with_ctrl)
    np.testing.assert_allclose(
        res_ctrl.predictions.iloc[0].to_numpy(), pb.loc[train + ["ctrl"]].mean().to_numpy()
    )


# --- Grid selection ---------------------------------------------------------------------------


def _clustered():
    """Six well-separated feature clusters, each with its own expression signature.

    One train, one val and one test condition per cluster, so a 1-nearest-neighbour predicts
    the right signature and more neighbours blend in other clusters.
    """
    rng = np.random.default_rng(1)
    n_clusters, n_genes = 6, 40
    centers = rng.normal(scale=50.0, size=(n_clusters, 4))
    signatures = rng.normal(scale=3.0, size=(n_clusters, n_genes))
    ctrl = rng.normal(size=n_genes)
    conds, feats, rows, labels = ["ctrl"], [np.zeros(4)], [ctrl], ["train"]
    for s in ("train", "val", "test"):
        for k in range(n_clusters):
            conds.append(f"{s}{k}+ctrl")
            feats.append(centers[k] + rng.normal(scale=0.1, size=4))
            rows.append(ctrl + signatures[k] + rng.normal(scale=0.05, size=n_genes))
            labels.append(s)
    genes = [f"g{i}" for i in range(n_genes)]
    pb = pd.DataFrame(np.array(rows), index=conds, columns=genes)
    features = pd.DataFrame(np.array(feats), index=conds)
    split = pd.DataFrame({"split": labels}, index=conds)
    return pb, features, split


def test_grid_selection_picks_best_validation_pearson_delta():
    pb, feats, split = _clustered()
    res = fit_select_predict("knn", feats, pb, split)
    scores = res.validation_scores["mean_pearson_delta"]
    assert list(scores.index) == ["n_neighbors=1", "n_neighbors=2", "n_neighbors=5"]
    assert res.best_params == {"n_neighbors": 1}
    assert scores["n_neighbors=1"] > 0.99
    assert scores["n_neighbors=1"] > scores["n_neighbors=2"]
    assert scores["n_neighbors=1"] > scores["n_neighbors=5"]
    assert res.model.n_neighbors == 1
    # The published protocol predicts test with the chosen setting's train-only fit.
    assert res.fit_on == "train" and res.protocol == "published_2025"
    assert res.model.n_samples_fit_ == 6
    # The 2024 preprint protocol refits the chosen setting on train + val.
    preprint = fit_select_predict("knn", feats, pb, split, protocol="preprint_2024")
    assert preprint.best_params == {"n_neighbors": 1}
    assert preprint.fit_on == "train+val" and preprint.model.n_samples_fit_ == 12


def test_validation_score_is_mean_pearson_delta():
    pb, feats, split = _clustered()
    res = fit_select_predict("knn", feats, pb, split, grid={"n_neighbors": [2]})
    val = list(split.index[split["split"] == "val"])
    pred = pd.DataFrame(res.model.predict(feats.loc[val].to_numpy()), index=val, columns=pb.columns)
    expected = _row_pearson_delta(pred, pb, pb.loc["ctrl"]).mean()
    assert res.validation_scores["mean_pearson_delta"].iloc[0] == pytest.approx(expected)
    assert res.fit_on == "train"


def test_predictions_cover_test_conditions_and_all_genes(toy):
    pb, feats, split = toy
    feats = feats.drop(index=["G3+ctrl", "G27+ctrl"])  # a train and a test condition lack features
    feats.loc["G21+ctrl", 0] = np.nan  # a val condition with an incomplete row
    res = fit_select_predict("elastic_net", feats, pb, split)
    test = [c for c in split.index[split["split"] == "test"] if c != "G27+ctrl"]
    assert list(res.predictions.index) == test
    assert list(res.predictions.columns) == list(pb.columns)
    assert res.skipped == {"train": ["G3+ctrl"], "val": ["G21+ctrl"], "test": ["G27+ctrl"]}
    assert res.n_skipped == 3
    assert res.n_conditions == {"train": 19, "val": 4, "test": 14}
    assert np.isfinite(res.predictions.to_numpy()).all()


def test_every_grid_setting_is_fitted_and_scored(toy):
    pb, feats, split = toy
    for spec in registry.MODELS.values():
        if not spec.uses_features:
            continue
        res = fit_select_predict(spec, feats, pb, split)
        settings = spec.settings(registry.PUBLISHED_2025)
        assert len(res.validation_scores) == len(settings)
        assert res.validation_scores["mean_pearson_delta"].notna().all(), spec.name
        assert res.best_params in settings


def test_preprint_protocol_fits_its_fixed_setting_on_train_and_val(toy):
    pb, feats, split = toy
    res = fit_select_predict("elastic_net", feats, pb, split, protocol="preprint_2024")
    assert res.fit_on == "train+val" and res.best_params == {"alpha": 1.0, "l1_ratio": 0.5}
    # One setting refit on train + val anyway: it is neither fitted on train nor scored.
    assert res.validation_scores["mean_pearson_delta"].isna().all()
    train_val = [c for c in split.index[split["split"].isin(["train", "val"])] if c != "ctrl"]
    mean = fit_select_predict("train_mean", None, pb, split, protocol="preprint_2024")
    np.testing.assert_allclose(mean.predictions.iloc[0], pb.loc[train_val].mean())


def test_several_settings_need_validation_conditions(toy):
    pb, feats, split = toy
    no_val = split.replace({"split": {"val": "train"}})
    with pytest.raises(ValueError, match="no usable validation"):
        fit_select_predict("knn", feats, pb, no_val)
    with pytest.raises(ValueError, match="unknown model"):
        fit_select_predict("svm", feats, pb, split)


def test_random_state_makes_random_forest_deterministic(toy):
    pb, feats, split = toy
    grid = {"n_estimators": [5, 8]}
    seed7 = dataclasses.replace(registry.PUBLISHED_2025, random_state=7)
    seed8 = dataclasses.replace(registry.PUBLISHED_2025, random_state=8)
    a = fit_select_predict("random_forest", feats, pb, split, protocol=seed7, grid=grid)
    b = fit_select_predict("random_forest", feats, pb, split, protocol=seed7, grid=grid)
    c = fit_select_predict("random_forest", feats, pb, split, protocol=seed8, grid=grid)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    pd.testing.assert_frame_equal(a.validation_scores, b.validation_scores)
    assert not np.allclose(a.predictions.to_numpy(), c.predictions.to_numpy())


# --- Additive model ---------------------------------------------------------------------------


def _additive_table():
    ctrl = np.array([1.0, 2.0, 3.0, 4.0])
    delta = {
        "A": np.array([1.0, 0.0, -1.0, 0.5]),
        "B": np.array([0.0, 2.0, 0.0, -1.0]),
        "C": np.array([-0.5, 0.5, 0.5, 0.0]),
    }
    rows = {
        "ctrl": ctrl,
        "A+ctrl": ctrl + delta["A"],
        "ctrl+B": ctrl + delta["B"],
        "C+ctrl": ctrl + delta["C"],
        "D+ctrl": ctrl + np.array([3.0, 0.0, 1.0, 2.0]),  # val single, not a training single
        "A+B": ctrl + delta["A"] + delta["B"],
        "B+C": ctrl + delta["B"] + delta["C"] + 0.3,  # non-additive truth
        "A+D": ctrl - 1.0,
        "E+ctrl": ctrl - 2.0,
    }
    split = {
        "ctrl": "train",
        "A+ctrl": "train",
        "ctrl+B": "train",
        "C+ctrl": "train",
        "D+ctrl": "val",
        "A+B": "test",
        "B+C": "test",
        "A+D": "test",
        "E+ctrl": "test",
    }
    genes = ["g0", "g1", "g2", "g3"]
    pb = pd.DataFrame(rows.values(), index=list(rows), columns=genes)
    return pb, pd.DataFrame({"split": pd.Series(split)}), ctrl, delta


def test_additive_model_is_exact_on_additive_combos_and_falls_back():
    pb, split, ctrl, delta = _additive_table()
    res = fit_select_predict("additive", None, pb, split)
    pred = res.predictions
    train_mean = pb.loc[["A+ctrl", "ctrl+B", "C+ctrl"]].mean().to_numpy()
    np.testing.assert_allclose(pred.loc["A+B"], ctrl + delta["A"] + delta["B"])
    np.testing.assert_allclose(pred.loc["B+C"], ctrl + delta["B"] + delta["C"])
    np.testing.assert_allclose(pred.loc["A+D"], train_mean)  # D is not a training single
    np.testing.assert_allclose(pred.loc["E+ctrl"], train_mean)  # unseen single
    assert res.fallback_conditions == ["A+D", "E+ctrl"]
    assert res.n_fallback == 2
    assert res.fit_on == "train"


def test_additive_model_direct_api():
    pb, _, ctrl, delta = _additive_table()
    train = ["ctrl", "A+ctrl", "ctrl+B", "C+ctrl"]
    model = AdditiveModel().fit(train, pb.loc[train].to_numpy())  # ctrl from the ctrl row
    assert model.single_genes_ == ["A", "B", "C"]
    np.testing.assert_allclose(model.predict(["ctrl+A"]), [ctrl + delta["A"]])
    np.testing.assert_allclose(model.predict(["ctrl"]), [ctrl])
    np.testing.assert_array_equal(model.fallback_mask(["A+C", "A+Z", "Z+ctrl"]), [0, 1, 1])


# --- Linear baseline --------------------------------------------------------------------------


def test_linear_pca_matches_closed_form():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(15, 4))
    Y = rng.normal(size=(15, 25))
    model = LinearPCAModel(n_components=3, ridge=0.1).fit(P, Y)
    G, Yg = model.gene_embedding_, Y.T
    b = Yg.mean(axis=1)
    W = (
        np.linalg.inv(G.T @ G + 0.1 * np.eye(3))
        @ G.T
        @ (Yg - b[:, None])
        @ P
        @ np.linalg.inv(P.T @ P + 0.1 * np.eye(4))
    )
    np.testing.assert_allclose(model.coef_, W, atol=1e-10)
    np.testing.assert_allclose(model.intercept_, b)
    np.testing.assert_allclose(model.predict(P[:2]), (G @ W @ P[:2].T).T + b, atol=1e-10)
    assert G.shape == (25, 3)


def test_linear_pca_recovers_planted_low_rank_relation():
    rng = np.random.default_rng(3)
    n_genes, n_perts, n_feat, rank = 200, 90, 12, 5
    A = rng.normal(size=(n_genes, rank))
    B = rng.normal(size=(rank, n_feat))
    b = rng.normal(loc=2.0, size=n_genes)
    P = rng.normal(size=(n_perts, n_feat))
    Y = P @ (A @ B).T + b + rng.normal(scale=0.1, size=(n_perts, n_genes))
    tr, te = slice(0, 60), slice(60, None)
    lin = LinearPCAModel().fit(P[tr], Y[tr])
    mean = TrainMean().fit(P[tr], Y[tr])
    err_lin = np.mean((lin.predict(P[te]) - Y[te]) ** 2)
    err_mean = np.mean((mean.predict(P[te]) - Y[te]) ** 2)
    assert err_lin < 0.05 * err_mean
    # the same through the selection entry point (single setting, fitted on train only)
    conds = [f"G{i}+ctrl" for i in range(n_perts)]
    pb = pd.DataFrame(np.vstack([b, Y]), index=["ctrl"] + conds)
    feats = pd.DataFrame(P, index=conds)
    split = pd.DataFrame(
        {"split": ["train"] * 61 + ["val"] * 10 + ["test"] * 20}, index=["ctrl"] + conds
    )
    res = fit_select_predict("linear_pca", feats, pb, split)
    assert res.fit_on == "train"
    assert res.validation_scores["mean_pearson_delta"].iloc[0] > 0.95


# --- Persistence ------------------------------------------------------------------------------


class _Unlisted:
    """A class that is not on the trusted list."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.mark.parametrize(
    ("name", "grid"),
    [
        ("random_forest", {"n_estimators": [4]}),
        ("elastic_net", {"alpha": [0.1], "l1_ratio": [0.5]}),
        ("knn", {"n_neighbors": [2]}),
        ("linear_pca", None),
        ("train_mean", None),
        ("additive", None),
    ],
)
def test_skops_round_trip_gives_identical_predictions(toy, tmp_path, name, grid):
    pb, feats, split = toy
    res = fit_select_predict(name, feats, pb, split, grid=grid)
    path = save_model(res.model, tmp_path / "sub" / f"{name}.skops")
    loaded = load_model(path)
    assert type(loaded) is type(res.model)
    test = list(res.predictions.index)
    X = np.asarray(test, dtype=object) if name == "additive" else feats.loc[test].to_numpy()
    np.testing.assert_array_equal(loaded.predict(X), res.predictions.to_numpy())


def test_load_refuses_untrusted_types(tmp_path):
    path = tmp_path / "evil.skops"
    sio.dump(_Unlisted(), path)
    with pytest.raises(UntrustedTypeError, match="_Unlisted") as info:
        load_model(path)
    assert info.value.types == [f"{__name__}._Unlisted"]
    # also when nested inside an otherwise trusted estimator
    model = TrainMean().fit(np.zeros((2, 0)), np.ones((2, 3)))
    model.extra_ = _Unlisted()
    nested = tmp_path / "nested.skops"
    sio.dump(model, nested)
    with pytest.raises(UntrustedTypeError):
        load_model(nested)


def test_load_refuses_a_pickle(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(TrainMean().fit(np.zeros((2, 0)), np.ones((2, 3)))))
    with pytest.raises(ModelFileError, match="not a skops model file"):
        load_model(path)


def test_undefined_validation_correlation_counts_as_zero(monkeypatch):
    import perturb_assets.core.models.fitting as fitting

    def fake_metrics(pred, truth, ctrl_mean, de_genes=None):
        # perturbation_metrics reports NaN where Pearson is undefined (constant delta)
        values = [1.0, np.nan][: len(truth)]
        return pd.DataFrame({"pearson_delta": values}, index=truth.index)

    monkeypatch.setattr(fitting, "perturbation_metrics", fake_metrics)
    genes = ["a", "b", "c"]
    truth = pd.DataFrame(np.eye(2, 3), index=["A+ctrl", "B+ctrl"], columns=genes)
    ctrl = pd.Series(0.0, index=genes)
    assert fitting._mean_pearson_delta(truth, truth, ctrl) == pytest.approx(0.5)
    assert np.isnan(fitting._mean_pearson_delta(truth.iloc[:0], truth.iloc[:0], ctrl))


_SAVE_IN_A_FRESH_PROCESS = """
import sys, numpy as np
from sklearn.linear_model import ElasticNet
from perturb_assets.core.models import CompressedTargetForest, save_model
rng = np.random.default_rng(0)
x = rng.normal(size=(69, 256))  # shaped like GO features of a small dataset
y = x[:, :20] @ rng.normal(size=(20, 300)) * 0.2 + rng.normal(size=(69, 300))
models = {"forest": CompressedTargetForest(n_estimators=3, random_state=0),
          "elastic_net": ElasticNet(alpha=0.1, l1_ratio=0.5, random_state=42),
          "elastic_net_again": ElasticNet(alpha=0.1, l1_ratio=0.5, random_state=42)}
for name, model in models.items():
    save_model(model.fit(x, y), f"{sys.argv[1]}/{name}.skops")
"""


def test_model_files_are_the_same_bytes_in_every_process(tmp_path):
    """skops names members after memory addresses and stamps the time; ElasticNet's dual gap
    rounds with memory alignment: the stored files are canonical all the same."""
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        subprocess.run(
            [sys.executable, "-c", _SAVE_IN_A_FRESH_PROCESS, str(tmp_path / name)], check=True
        )
        runs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert runs[0] == runs[1] and len(runs[0]) == 3
    assert runs[0]["elastic_net.skops"] == runs[0]["elastic_net_again.skops"]
    loaded = load_model(tmp_path / "a" / "elastic_net.skops")
    assert loaded.coef_.shape == (300, 256)  # the model itself is whole
