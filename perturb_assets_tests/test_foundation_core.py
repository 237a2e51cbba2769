"""Foundation models in core: scGPT checkpoints, cell pairing, fine-tuning, GEARS offline."""

import dataclasses
import hashlib
import json
import pickle
import subprocess
import sys
from multiprocessing.pool import ThreadPool

import numpy as np
import pandas as pd
import pytest
import torch

from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears import simulation_split
from perturb_assets.core.models.foundation import (
    FineTuneSettings,
    fine_tune,
    gears_go,
    gears_model,
    pair_cells,
    save_weights,
    scgpt_checkpoint,
)
from perturb_assets.core.pp import normalize_expression, pseudobulk
from perturb_assets.core.simulation import (
    simulate_perturbseq,
    simulated_embeddings,
    write_gears_dataset,
)

TINY = FineTuneSettings(epochs=2, batch_size=16, max_eval_cells=8)


@pytest.fixture(scope="module")
def data():
    sim = simulate_perturbseq(
        n_cells=1200, n_genes=120, n_perturbations=24, combo_fraction=0.3, seed=2,
        compute_de=False,
    )  # fmt: skip
    adata = normalize_expression(sim.adata)
    split = simulation_split(adata.obs["condition"].astype(str))
    return sim, adata, split, pseudobulk(adata)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    sim = data[0]
    folder = scgpt_checkpoint.write_checkpoint(
        tmp_path_factory.mktemp("ckpt"), list(sim.programs.index)
    )
    return scgpt_checkpoint.read_checkpoint(folder)


def test_the_stand_in_checkpoint_is_written_once_into_the_companion_folder(tmp_path, data):
    sim = data[0]
    write_gears_dataset(sim, tmp_path)
    folder = scgpt_checkpoint.stand_in_checkpoint(tmp_path)
    assert folder == tmp_path / scgpt_checkpoint.STAND_IN_DIR
    checkpoint = scgpt_checkpoint.read_checkpoint(folder)
    genes = [g for g in checkpoint.vocab if g not in scgpt_checkpoint.SPECIAL_TOKENS]
    assert genes == list(sim.programs.index.astype(str))  # the stand-in embedding's genes
    written = (folder / scgpt_checkpoint.WEIGHTS_FILE).stat().st_mtime_ns
    assert scgpt_checkpoint.stand_in_checkpoint(tmp_path) == folder
    assert (folder / scgpt_checkpoint.WEIGHTS_FILE).stat().st_mtime_ns == written  # reused


# --- compatibility ----------------------------------------------------------------------------


def test_scgpt_model_code_imports_without_its_stale_dependencies():
    # scgpt.utils is only the compatibility stub (no file): the real one imports IPython
    code = (
        "import sys; from perturb_assets.core.models.foundation.compat import scgpt_model; "
        "model, loss = scgpt_model(); "
        "print(model.__module__, [m for m in ('torchtext', 'IPython', 'datasets') "
        "if m in sys.modules], getattr(sys.modules['scgpt.utils'], '__file__', None))"
    )
    assert _fresh_python(code) == ["scgpt.model.generation_model", "[]", "None"]


# Both ways in: gears_classes (the model) and _quiet_gears, which train_gears enters first (it
# once imported gears directly, and every GEARS step compiled dcor's kernels).
GEARS_DOORS = {
    "gears_classes": "from perturb_assets.core.models.foundation.compat import gears_classes; "
    "gears_classes(); ",
    "_quiet_gears": "from perturb_assets.core.models.foundation.gears_model import _quiet_gears; "
    "cm = _quiet_gears(print); cm.__enter__(); cm.__exit__(None, None, None); ",
}


@pytest.mark.parametrize("door", sorted(GEARS_DOORS))
def test_cell_gears_loads_dcor_only_when_its_distance_correlation_is_called(door):
    code = (
        "import sys, numpy as np; "
        f"{GEARS_DOORS[door]}"
        "from gears import utils; "
        "before = type(sys.modules['dcor']).__name__; "
        "x = np.arange(12.0).reshape(6, 2); y = x ** 2; "
        "value = utils.distance_correlation(x, y); import dcor; "
        "print(before, type(dcor).__name__, value == dcor.distance_correlation(x, y))"
    )
    assert _fresh_python(code) == ["_DeferredDcor", "module", "True"]


def _fresh_python(code: str) -> list[str]:
    """The words ``code`` prints in a new interpreter (nothing imported by the tests yet)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_in_official_layout_loads_through_the_flash_attention_rename(checkpoint):
    saved = scgpt_checkpoint.load_weights(checkpoint.weights_path)
    assert any(".self_attn.Wqkv.weight" in k for k in saved)  # written as flash-attn names
    assert "flag_encoder.weight" in saved  # a part the perturbation model does not load
    model = scgpt_checkpoint.build_model(checkpoint)
    report = scgpt_checkpoint.load_pretrained(model, checkpoint)
    state = model.state_dict()
    for key, value in saved.items():
        if key.startswith(scgpt_checkpoint.PRETRAINED_PREFIXES):
            mapped = key.replace("self_attn.Wqkv.", "self_attn.in_proj_")
            assert torch.equal(state[mapped], value), key
    assert report["n_tensors"] == sum(
        k.startswith(scgpt_checkpoint.PRETRAINED_PREFIXES) for k in saved
    )


def test_checkpoint_errors_name_the_file_and_field(tmp_path, checkpoint):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("args.json", "vocab.json", "best_model.pt"):
        (folder / name).write_bytes((checkpoint.folder / name).read_bytes())
    args = json.loads((folder / "args.json").read_text())
    (folder / "args.json").write_text(json.dumps({**args, "nlayers": "two"}))
    with pytest.raises(DatasetError, match=r"args\.json: nlayers: must be a positive integer"):
        scgpt_checkpoint.read_checkpoint(folder)
    (folder / "args.json").write_text(json.dumps({**args, "embsize": 16}))  # another architecture
    other = scgpt_checkpoint.read_checkpoint(folder)
    with pytest.raises(DatasetError, match=r"best_model\.pt: encoder\.embedding\.weight: shape"):
        scgpt_checkpoint.load_pretrained(scgpt_checkpoint.build_model(other), other)
    torch.save({"weights": object()}, folder / "best_model.pt")  # not loadable as weights only
    with pytest.raises(DatasetError, match=r"best_model\.pt: file: cannot be loaded"):
        scgpt_checkpoint.load_weights(folder / "best_model.pt")
    (folder / "vocab.json").unlink()
    with pytest.raises(DatasetError, match=r"vocab\.json: file: missing"):
        scgpt_checkpoint.read_checkpoint(folder)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this checkpoint runs code",))


def test_a_malicious_checkpoint_is_refused_without_advice_to_trust_it(tmp_path):
    torch.save({"w": _RunsCode()}, tmp_path / "best_model.pt")
    with pytest.raises(DatasetError) as info:
        scgpt_checkpoint.load_weights(tmp_path / "best_model.pt")
    message = str(info.value)
    assert "best_model.pt: file: cannot be loaded" in message and "GLOBAL" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_heads_that_do_not_divide_the_width_name_the_field(tmp_path, checkpoint):
    for name in ("args.json", "vocab.json", "best_model.pt"):
        (tmp_path / name).write_bytes((checkpoint.folder / name).read_bytes())
    args = json.loads((tmp_path / "args.json").read_text())
    (tmp_path / "args.json").write_text(json.dumps({**args, "nheads": 3}))  # embsize 32
    with pytest.raises(DatasetError, match=r"args\.json: nheads: 3 does not divide embsize 32"):
        scgpt_checkpoint.read_checkpoint(tmp_path)


def test_genes_are_matched_by_symbol_and_unknown_ones_get_the_pad_token(checkpoint):
    ids, matched = scgpt_checkpoint.gene_vocab_ids(
        ["SIM0001", "NOT_A_GENE", "SIM0003"], checkpoint.vocab
    )
    assert matched == 2
    assert ids[1] == checkpoint.vocab["<pad>"] and ids[0] == checkpoint.vocab["SIM0001"]


def test_gene_embedding_table_is_the_pretrained_encoders_output(checkpoint):
    table = scgpt_checkpoint.gene_embedding_table(checkpoint)
    model = scgpt_checkpoint.build_model(checkpoint)
    scgpt_checkpoint.load_pretrained(model, checkpoint)
    genes = ["SIM0002", "SIM0010"]
    with torch.no_grad():
        expected = model.encoder(torch.tensor([checkpoint.vocab[g] for g in genes]))
    np.testing.assert_allclose(table.loc[genes].to_numpy(), expected.numpy(), atol=1e-6)
    assert "<pad>" not in table.index and table.shape[1] == checkpoint.architecture["embsize"]


# --- training ---------------------------------------------------------------------------------


def test_cells_are_paired_with_random_controls_and_targets_are_flagged(data):
    _, adata, _, _ = data
    condition = next(c for c in adata.obs["condition"].cat.categories if "+" in c)
    pairs = pair_cells(adata, ["ctrl", condition], seed=0)
    cond = adata.obs["condition"].astype(str).to_numpy()
    is_ctrl = pairs.condition_codes == 0
    assert (pairs.control_rows[is_ctrl] == pairs.target_rows[is_ctrl]).all()
    assert (cond[pairs.control_rows] == "ctrl").all()
    assert (cond[pairs.target_rows[~is_ctrl]] == condition).all()
    batch = pairs.batch(np.flatnonzero(~is_ctrl)[:3])
    genes = [g for g in condition.split("+") if g != "ctrl"]
    flagged = adata.var["gene_name"].to_numpy()[batch.flags[0] == 1]
    assert set(flagged) == set(genes) & set(adata.var["gene_name"])
    again = pair_cells(adata, ["ctrl", condition], seed=0)
    np.testing.assert_array_equal(again.control_rows, pairs.control_rows)


def test_fine_tuning_predicts_every_test_condition_and_keeps_the_best_epoch(data, checkpoint):
    _, adata, split, pb = data
    result = fine_tune(adata, split, pb, checkpoint, TINY, device="cpu")
    test = [c for c in split.index[split["split"] == "test"]]
    assert sorted(result.predictions.index) == sorted(test)
    assert list(result.predictions.columns) == list(adata.var_names)
    assert np.isfinite(result.predictions.to_numpy()).all()
    assert list(result.history.index) == [1, 2]
    assert result.best_epoch == int(result.history["val_pearson"].idxmax())
    assert result.report["genes_matched"] == adata.n_vars
    assert result.report["selection_metric"] == "pearson"


def test_fast_and_reference_training_loops_compute_the_same_on_the_cpu(data, checkpoint):
    _, adata, split, pb = data
    settings = FineTuneSettings(epochs=1, batch_size=16, max_eval_cells=8, max_steps_per_epoch=5)
    slow = fine_tune(adata, split, pb, checkpoint, settings, device="cpu")
    assert settings.loop == "reference"
    fast = fine_tune(adata, split, pb, checkpoint, dataclasses.replace(settings, loop="fast"),
                     device="cpu")  # fmt: skip
    pd.testing.assert_frame_equal(fast.predictions, slow.predictions, atol=1e-5, rtol=1e-5)


def test_weights_are_saved_with_their_checksum(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    sha = save_weights(state, tmp_path / "m.pt")
    assert sha == hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest()
    assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=True)["w"], state["w"])


@pytest.mark.gpu
def test_both_training_loops_run_with_amp_on_a_gpu(data, checkpoint):
    _, adata, split, pb = data
    for loop in ("reference", "fast"):
        settings = FineTuneSettings(epochs=1, batch_size=16, loop=loop, max_eval_cells=8)
        result = fine_tune(adata, split, pb, checkpoint, settings, device="cuda")
        assert result.device == "cuda" and np.isfinite(result.predictions.to_numpy()).all()


# --- GEARS ------------------------------------------------------------------------------------


def test_go_files_hold_jaccard_edges_and_no_made_up_terms(tmp_path):
    annotations = pd.DataFrame(
        [[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]],
        index=["A", "B", "C", "D"], columns=["t1", "t2", "t3"],
    )  # fmt: skip
    gene2go = gears_go.gene2go_from_annotations(annotations)
    report = gears_go.write_go_files(
        tmp_path, gene2go, measured=["A", "B", "C"], perturbed=["D", "E"]
    )
    assert report["n_go_genes"] == 4  # E has no term: not in the graph
    edges = pd.read_csv(tmp_path / "go_essential_all" / "go_essential_all.csv")
    weight = {(s, t): w for s, t, w in edges.itertuples(index=False)}
    assert weight[("A", "B")] == pytest.approx(0.5) and weight[("B", "A")] == pytest.approx(0.5)
    assert weight[("A", "D")] == pytest.approx(2 / 3) and ("C", "A") not in weight
    assert "E" not in set(edges["source"]) | set(edges["target"])
    with open(tmp_path / "gene2go_all.pkl", "rb") as handle:
        assert "E" not in pickle.load(handle)
    assert gears_go.conditions_without_go(["A+ctrl", "E+ctrl", "A+E", "ctrl"], gene2go) == [
        "A+E", "E+ctrl"
    ]  # fmt: skip


def _random_gene2go(n_genes: int, n_terms: int, seed: int) -> dict[str, set[str]]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_genes):
        k = int(rng.integers(1, 6))
        out[f"G{i:02d}"] = {f"GO:{t:03d}" for t in rng.choice(n_terms, size=k, replace=False)}
    return out


@pytest.mark.parametrize("k", [1, 3, 20])
def test_go_graph_equals_cell_gears_make_go_and_top_k(tmp_path, monkeypatch, k):
    """Our sparse Jaccard edges = cell-gears' ``make_GO`` (its own pairwise loop), and the
    top-k selection = its ``get_similarity_network``, on the same gene2go dict, offline."""
    from gears import utils

    gene2go = _random_gene2go(40, 12, seed=k)  # 12 terms: many ties, many edges per gene
    with open(tmp_path / "gene2go_all.pkl", "wb") as handle:
        pickle.dump(gene2go, handle)
    pert_list = sorted(gene2go)[:35]  # as PertData.pert_names: sorted, a subset
    monkeypatch.chdir(tmp_path)  # make_GO reads and writes ./data/go_essential_<name>.csv
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(utils, "dataverse_download", _no_download)
    monkeypatch.setattr(utils, "tar_data_download_wrapper", _no_download)
    # make_GO maps its pure edge function over a fork Pool; forking a test process that has
    # threads (pytest-xdist's, zarr's) can deadlock the children, so map it over threads.
    monkeypatch.setattr(utils, "Pool", ThreadPool)
    theirs = utils.make_GO(str(tmp_path), pert_list, "t", num_workers=1, save=False)
    ours = gears_go.go_edges(gene2go, pert_list + ["not_annotated"])
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert len(ours) > 3 * len(pert_list)  # the top-k below has something to cut
    their_top = utils.get_similarity_network(
        "go", None, 0.4, k, str(tmp_path), "t", None, 1, 0.75, None,
        default_pert_graph=False, pert_list=pert_list,
    )  # fmt: skip
    pd.testing.assert_frame_equal(gears_go.top_k_edges(ours, k), their_top, check_dtype=False)


def _no_download(*args, **kwargs):
    raise AssertionError(f"cell-gears tried to download {args[:1]}")


def test_a_user_gene2go_pickle_is_read_without_running_code(tmp_path):
    from perturb_assets.core.io import read_gene2go

    good, bad = tmp_path / "good.pkl", tmp_path / "bad.pkl"
    good.write_bytes(pickle.dumps({"A": {"GO:1"}, "B": ["GO:2"], "C": set()}))
    assert read_gene2go(good) == {"A": {"GO:1"}, "B": {"GO:2"}}
    bad.write_bytes(pickle.dumps({"A": pd.Series([1])}))
    with pytest.raises(DatasetError, match="not allowed"):
        read_gene2go(bad)


def test_gears_presets_follow_the_paper_per_dataset():
    paper = gears_model.GearsSettings().resolved("adamson", scfoundation=True)
    assert (paper.hidden_size, paper.epochs, paper.batch_size, paper.lr) == (512, 10, 32, 5e-4)
    assert paper.selection_metric == "val_pearson_delta" and paper.preset == "paper_scfoundation"
    k562 = gears_model.GearsSettings(lr=0.1).resolved("k562_like", scfoundation=True)
    assert (k562.batch_size, k562.accumulation_steps, k562.lr) == (16, 2, 0.1)
    plain = gears_model.GearsSettings().resolved("norman")
    assert (plain.hidden_size, plain.epochs, plain.lr, plain.selection_metric) == (
        64, 20, 1e-3, "val_mse_de"
    )  # fmt: skip
    assert gears_model.GearsSettings().resolved("synthetic", True).hidden_size == 16


def _no_network(monkeypatch):
    import requests

    monkeypatch.setattr(requests, "get", _no_download)
    monkeypatch.setattr(requests.Session, "request", _no_download)


def test_gears_trains_offline_and_predicts_every_test_condition(data, monkeypatch, capfd):
    """... and quietly: cell-gears' prints and tqdm bars become log lines, nothing reaches the
    console but what ``log`` is given."""
    _no_network(monkeypatch)
    sim, adata, split, _ = data
    settings = gears_model.GearsSettings(epochs=1, hidden_size=8)
    lines: list[str] = []
    capfd.readouterr()
    result = gears_model.train_gears(
        adata, split, sim.annotations, settings, device="cpu", log=lines.append
    )
    printed = capfd.readouterr()
    assert "it/s" not in printed.err and "Found local copy" not in printed.err + printed.out
    n_conditions = adata.obs["condition"].nunique()
    assert f"{gears_model.PROGRESS_PREFIX} {n_conditions} items" in lines
    test = set(split.index[split["split"] == "test"])
    assert set(result.predictions.index) == test
    assert np.isfinite(result.predictions.to_numpy()).all()
    assert list(result.history["epoch"]) == [1] and "val_mse_de" in result.history
    assert result.report["selection_metric"] == "val_mse_de" and result.best_epoch == 1
    assert result.report["n_conditions_without_go"] == 0


def test_gears_neither_trains_on_nor_predicts_conditions_outside_the_go_graph(data, monkeypatch):
    """As cell-gears' ``filter_pert_in_go``: no made-up GO term for an unannotated target."""
    _no_network(monkeypatch)
    sim, adata, split, _ = data
    single_test = [c for c in split.index[split["split"] == "test"] if "ctrl" in c]
    gone = {g for c in single_test[:2] for g in c.split("+") if g != "ctrl"}
    annotations = sim.annotations.drop(index=[g for g in gone if g in sim.annotations.index])
    settings = gears_model.GearsSettings(epochs=1, hidden_size=8)
    result = gears_model.train_gears(adata, split, annotations, settings, device="cpu")
    dropped = result.report["conditions_without_go"].split(", ")
    assert set(single_test[:2]) <= set(dropped)
    assert all(any(g in gone for g in c.split("+")) for c in dropped)
    assert not set(dropped) & set(result.predictions.index)
    expected = set(split.index[split["split"] == "test"]) - set(dropped)
    assert set(result.predictions.index) == expected
    assert result.report["n_test_conditions_without_go"] == len(
        set(dropped) & set(split.index[split["split"] == "test"])
    )


def test_gears_keeps_the_epoch_of_best_validation_pearson_delta(data, monkeypatch):
    _no_network(monkeypatch)
    sim, adata, split, _ = data
    settings = gears_model.GearsSettings(
        epochs=3, hidden_size=8, batch_size=16, accumulation_steps=2,
        selection_metric="val_pearson_delta",
    )  # fmt: skip
    result = gears_model.train_gears(adata, split, sim.annotations, settings, device="cpu")
    history = result.history.set_index("epoch")["val_pearson_delta"]
    assert list(history.index) == [1, 2, 3]
    assert result.best_epoch == int(history.idxmax()) and result.best_score == history.max()
    assert result.report["settings"]["accumulation_steps"] == 2


def test_scfoundation_variant_freezes_the_projected_embedding_table(data):
    sim, adata, split, _ = data
    table = simulated_embeddings(sim)["scfoundation"]
    settings = gears_model.GearsSettings(epochs=1, hidden_size=8)
    result = gears_model.train_gears(adata, split, sim.annotations, settings, gene_embeddings=table)
    expected, found = gears_model.project_embeddings(table, list(adata.var["gene_name"]), 8)
    np.testing.assert_allclose(result.state_dict["gene_emb.weight"].numpy(), expected, atol=1e-6)
    assert found == adata.n_vars == result.report["genes_with_embedding"]


def test_embedding_projection_pads_narrow_tables_and_zeroes_missing_genes():
    table = pd.DataFrame(np.random.default_rng(0).normal(size=(5, 3)), index=list("ABCDE"))
    projected, found = gears_model.project_embeddings(table, ["A", "Z", "C"], width=4)
    assert projected.shape == (3, 4) and found == 2
    assert (projected[1] == 0).all() and (projected[:, 3] == 0).all()


def test_foundation_benchmark_runs_both_loops_from_the_same_weights(capsys):
    from perturb_assets.benchmarks import foundation

    assert foundation.main(["--tiny", "--steps", "1", "--warmup", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ")]
    loops = [r for r in rows if r[0].strip() in ("reference", "fast")]
    assert [r[0].strip() for r in loops] == ["reference", "reference", "fast"]
    losses = [float(r[-1]) for r in loops]
    assert losses[0] == pytest.approx(losses[2], rel=1e-5)  # same arithmetic on the CPU
    # float16 (the reference loop's autocast) stays closer to float32 than bfloat16 (fast's).
    precision = {r[0].strip(): float(r[1]) for r in rows if r[0].strip() in ("float16", "bfloat16")}
    assert 0 < precision["float16"] < precision["bfloat16"]


def test_saved_weights_are_the_same_bytes_wherever_they_are_written(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    first = save_weights(state, tmp_path / "a" / "weights.pt")
    second = save_weights(state, tmp_path / "elsewhere" / "w.pt")
    assert first == second
    assert (tmp_path / "a" / "weights.pt").read_bytes() == (
        tmp_path / "elsewhere" / "w.pt"
    ).read_bytes()


def test_scgpt_default_loop_is_the_tutorials_and_the_dagster_config_follows():
    """The tutorial's loop (mask, float16 + GradScaler on CUDA) is the default; fast is opt-in."""
    from perturb_assets.defs.foundation.assets import ScGPTConfig

    assert FineTuneSettings().loop == "reference"
    assert ScGPTConfig().loop == "reference"


def test_gears_selection_pearson_delta_equals_scipy_per_condition():
    """The epoch-selection score is the mean of scipy's pearsonr per condition (the fork's
    rule), and one undefined condition makes it NaN (that epoch is never kept)."""
    from scipy.stats import pearsonr

    from perturb_assets.core.models.foundation.gears_training import pearson_delta

    rng = np.random.default_rng(0)
    conditions = np.repeat(["A+ctrl", "B+ctrl", "A+B"], 4)
    pred, truth = rng.normal(size=(12, 30)), rng.normal(size=(12, 30))
    ctrl = rng.normal(size=30)
    result = {"pert_cat": conditions, "pred": pred, "truth": truth}
    expected = np.mean(
        [
            pearsonr(pred[conditions == c].mean(0) - ctrl, truth[conditions == c].mean(0) - ctrl)[0]
            for c in np.unique(conditions)
        ]
    )
    assert pearson_delta(result, ctrl) == pytest.approx(expected, rel=1e-12)
    pred[conditions == "A+B"] = ctrl  # a constant predicted change: pearsonr is undefined
    assert np.isnan(pearson_delta(result, ctrl))


def test_tiny_gears_uses_a_capped_random_subset_of_each_conditions_cells(data):
    _, adata, _, _ = data
    capped = gears_model._subsample_cells(adata, 5, seed=0)
    counts = capped.obs["condition"].astype(str).value_counts()
    full = adata.obs["condition"].astype(str).value_counts()
    assert set(counts.index) == set(full.index)  # no condition lost
    assert counts.drop("ctrl").max() <= 5 and counts["ctrl"] == min(50, full["ctrl"])
    assert capped.obs_names.isin(adata.obs_names).all()
    assert list(capped.obs_names) == [n for n in adata.obs_names if n in set(capped.obs_names)]
    tiny = gears_model.GearsSettings().resolved("synthetic")
    assert tiny.preset == "tiny" and tiny.max_cells_per_condition == 20
    assert gears_model.GearsSettings().resolved("norman").max_cells_per_condition is None
