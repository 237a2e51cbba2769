"""scGPT fine-tuning against scGPT's own code: the tutorial's training step and ``pred_perturb``.

The scGPT perturbation tutorial (``Tutorial_Perturbation.ipynb``, ``train()``) is notebook code,
so its step is written out here line by line, calling scGPT's own functions:
``scgpt.loss.masked_mse_loss`` and ``scgpt.utils.map_raw_id_to_vocab_id`` (read from scGPT's
source; ``scgpt.utils`` itself imports IPython). Its test-time prediction is scGPT's own
``TransformerGenerator.pred_perturb`` on a PyG batch in the GEARS layout the tutorial uses
(``x``: expression and perturbation flag per gene; ``y``: the target cell).
"""

import ast
import copy
import dataclasses
import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from perturb_assets.core.gears import simulation_split
from perturb_assets.core.metrics import perturbation_metrics
from perturb_assets.core.models.foundation import (
    FineTuneSettings,
    Trainer,
    build_model,
    pair_cells,
    scgpt_checkpoint,
)
from perturb_assets.core.models.foundation.compat import map_raw_id_to_vocab_id, scgpt_model
from perturb_assets.core.models.foundation.scgpt_checkpoint import (
    gene_vocab_ids,
    load_pretrained,
)
from perturb_assets.core.pp import normalize_expression, pseudobulk
from perturb_assets.core.simulation import simulate_perturbseq

pytest.importorskip("torch_geometric")


def _scgpt_map_raw_id_to_vocab_id():
    """scGPT's own ``map_raw_id_to_vocab_id``, compiled from its source file."""
    scgpt_model()  # registers the bare package: importing ``scgpt`` runs its __init__
    source = (Path(sys.modules["scgpt"].__path__[0]) / "utils" / "util.py").read_text()
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if getattr(n, "name", "") == "map_raw_id_to_vocab_id"]
    namespace = {"np": np, "torch": torch, "Union": __import__("typing").Union}
    exec(compile(ast.Module([node], []), "scgpt/utils/util.py", "exec"), namespace)  # noqa: S102
    return namespace["map_raw_id_to_vocab_id"]


@pytest.fixture(scope="module")
def data():
    sim = simulate_perturbseq(n_cells=1500, n_genes=80, n_perturbations=16, combo_fraction=0.0,
                              seed=3, compute_de=False)  # fmt: skip
    adata = normalize_expression(sim.adata)
    split = simulation_split(adata.obs["condition"].astype(str))
    return sim, adata, split, pseudobulk(adata)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    folder = scgpt_checkpoint.write_checkpoint(
        tmp_path_factory.mktemp("ckpt"), list(data[0].programs.index)
    )
    return scgpt_checkpoint.read_checkpoint(folder)


def _pretrained(checkpoint):
    torch.manual_seed(0)
    model = build_model(checkpoint)
    load_pretrained(model, checkpoint)
    return model


def _conditions(split, which):
    return [c for c in split.index[split["split"] == which] if c != "ctrl"]


def _tutorial_train_step(model, optimizer, scaler, batch_data, input_gene_ids, gene_ids, amp):
    """One iteration of the tutorial's ``train()`` (include_zero_gene="all"), verbatim apart
    from the gene sample, which is given (the tutorial draws it from torch's global RNG)."""
    _, masked_mse_loss = scgpt_model()
    map_ids = _scgpt_map_raw_id_to_vocab_id()
    batch_size = len(batch_data.y)
    x = batch_data.x
    n_genes = x.shape[0] // batch_size
    ori_gene_values = x[:, 0].view(batch_size, n_genes)
    pert_flags = x[:, 1].long().view(batch_size, n_genes)
    target_gene_values = batch_data.y
    input_values = ori_gene_values[:, input_gene_ids]
    input_pert_flags = pert_flags[:, input_gene_ids]
    target_values = target_gene_values[:, input_gene_ids]
    mapped_input_gene_ids = map_ids(input_gene_ids, gene_ids).repeat(batch_size, 1)
    src_key_padding_mask = torch.zeros_like(input_values, dtype=torch.bool)
    with torch.autocast("cpu", enabled=amp):
        output_dict = model(mapped_input_gene_ids, input_values, input_pert_flags,
                            src_key_padding_mask=src_key_padding_mask, CLS=False, CCE=False,
                            MVC=False, ECS=False)  # fmt: skip
        output_values = output_dict["mlm_output"]
        masked_positions = torch.ones_like(input_values, dtype=torch.bool)
        loss = masked_mse_loss(output_values, target_values, masked_positions)
    model.zero_grad()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(
        model.parameters(), 1.0, error_if_nonfinite=not scaler.is_enabled()
    )
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def _pyg_batch(batch):
    """The GEARS-layout PyG batch the tutorial's loaders yield, for the same cell pairs."""
    from torch_geometric.data import Batch as PygBatch
    from torch_geometric.data import Data

    cells = [
        Data(
            x=torch.tensor(np.stack([v, f], axis=1), dtype=torch.float32),
            y=torch.tensor(t[None, :]),
            pert=str(c),
        )  # fmt: skip
        for v, f, t, c in zip(
            batch.values, batch.flags, batch.targets, batch.conditions, strict=True
        )  # fmt: skip
    ]
    return PygBatch.from_data_list(cells)


def test_scgpts_own_id_mapping_equals_the_compat_modules():
    ids = np.array([5, 3, 9, 0, 1, 2, 4, 6, 7, 8], dtype=np.int64) * 3
    raw = torch.tensor([4, 0, 9, 2])
    np.testing.assert_array_equal(_scgpt_map_raw_id_to_vocab_id()(raw, ids).numpy(),
                                  map_raw_id_to_vocab_id(raw, ids).numpy())  # fmt: skip


@pytest.mark.parametrize("max_seq_len", [1536, 48])  # all genes, and a sample of them
def test_one_training_step_equals_the_tutorials_on_the_same_batch(data, checkpoint, max_seq_len):
    _, adata, split, _ = data
    settings = FineTuneSettings(batch_size=12, max_seq_len=max_seq_len)
    assert settings.loop == "reference"
    ours, theirs = _pretrained(checkpoint), None
    theirs = copy.deepcopy(ours)
    gene_ids, _ = gene_vocab_ids(adata.var["gene_name"], checkpoint.vocab)
    trainer = Trainer(ours, gene_ids, settings, torch.device("cpu"))
    pairs = pair_cells(adata, ["ctrl", *_conditions(split, "train")], seed=0)
    rows = pairs.batches(settings.batch_size, np.random.default_rng(0), drop_last=True)[0]
    genes = trainer._sample_genes(pairs.n_genes)
    assert len(genes) == min(max_seq_len, adata.n_vars)
    our_loss = trainer.train_step(trainer._to_device(trainer._host_inputs(pairs.batch(rows),
                                                                           genes)))  # fmt: skip

    optimizer = torch.optim.Adam(theirs.parameters(), lr=settings.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # the tutorial's AMP is CUDA-only
    theirs.train()
    their_loss = _tutorial_train_step(theirs, optimizer, scaler, _pyg_batch(pairs.batch(rows)),
                                      genes, gene_ids, amp=False)  # fmt: skip

    assert our_loss == pytest.approx(their_loss, rel=1e-6)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(),
                                 strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    moved = [n for n, p in ours.named_parameters() if p.requires_grad]
    assert moved  # the step did train something


@pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")
def test_our_prediction_equals_scgpts_pred_perturb_on_the_same_batch(data, checkpoint):
    _, adata, split, _ = data
    model = _pretrained(checkpoint)
    gene_ids, _ = gene_vocab_ids(adata.var["gene_name"], checkpoint.vocab)
    trainer = Trainer(model, gene_ids, FineTuneSettings(eval_batch_size=64), torch.device("cpu"))
    pairs = pair_cells(adata, _conditions(split, "test")[:4], seed=1, max_cells_per_condition=6)
    ours, _ = trainer.evaluate(pairs, adata.var_names)

    with torch.no_grad():  # as the tutorial's eval_perturb calls it
        per_cell = model.pred_perturb(
            _pyg_batch(pairs.batch(np.arange(len(pairs)))),
            include_zero_gene="all",
            gene_ids=gene_ids,
            amp=False,
        )
    theirs = pd.DataFrame(per_cell.numpy(), columns=adata.var_names)
    theirs = theirs.groupby(np.asarray(pairs.conditions)[pairs.condition_codes]).mean()
    pd.testing.assert_frame_equal(ours, theirs.loc[ours.index].rename_axis("condition"),
                                  rtol=1e-5, atol=1e-6, check_dtype=False)  # fmt: skip


def test_pred_perturb_source_is_the_one_compared():
    """The comparison above runs scGPT's installed code, not a copy."""
    generator, _ = scgpt_model()
    assert "scgpt/model/generation_model.py" in inspect.getsourcefile(generator.pred_perturb)


def test_a_short_fine_tune_lowers_the_validation_loss_and_beats_the_untrained_model(
    data, checkpoint
):
    _, adata, split, pb = data
    settings = FineTuneSettings(batch_size=32, lr=1e-3, max_eval_cells=20)
    trainer = Trainer(_pretrained(checkpoint), gene_vocab_ids(adata.var["gene_name"],
                      checkpoint.vocab)[0], settings, torch.device("cpu"))  # fmt: skip
    train = pair_cells(adata, ["ctrl", *_conditions(split, "train")], seed=0)
    val = pair_cells(adata, _conditions(split, "val"), seed=1, max_cells_per_condition=20)
    test = pair_cells(adata, _conditions(split, "test"), seed=2, max_cells_per_condition=20)
    ctrl = pb.loc["ctrl"]

    def pearson_delta(pairs):
        pred = trainer.predict(pairs, adata.var_names)
        return float(perturbation_metrics(pred, pb.loc[pred.index], ctrl)["pearson_delta"].mean())

    _, untrained_loss = trainer.evaluate(val, adata.var_names)
    untrained_delta = pearson_delta(test)
    rng = np.random.default_rng(0)
    for _ in range(3):
        trainer.train_epoch(train, rng)
    _, trained_loss = trainer.evaluate(val, adata.var_names)
    assert trained_loss < 0.8 * untrained_loss
    assert pearson_delta(test) > untrained_delta + 0.1


def test_the_fast_loop_is_opt_in_and_changes_only_how_the_step_runs():
    fast = dataclasses.replace(FineTuneSettings(), loop="fast")
    assert FineTuneSettings().loop == "reference"
    changed = {f.name for f in dataclasses.fields(fast)
               if getattr(fast, f.name) != getattr(FineTuneSettings(), f.name)}  # fmt: skip
    assert changed == {"loop"}


def test_seeds_must_be_distinct_and_replace_the_single_seed():
    assert FineTuneSettings().run_seeds == [42]
    assert FineTuneSettings(seeds=[3, 1]).run_seeds == [3, 1]
    for bad in ([], [1, 1]):
        with pytest.raises(ValueError, match="seeds must be distinct"):
            FineTuneSettings(seeds=bad)


def test_run_scgpt_fine_tunes_once_per_seed(data, checkpoint, monkeypatch, tmp_path):
    from perturb_assets.core.models.foundation import FoundationInputs, runs

    _, adata, split, pb = data
    monkeypatch.setattr(scgpt_checkpoint, "find_checkpoint", lambda root: checkpoint.folder)
    settings = FineTuneSettings(epochs=1, batch_size=32, max_steps_per_epoch=3,
                                max_eval_cells=5, seeds=[1, 2])  # fmt: skip
    inputs = FoundationInputs(expression=adata, split=split, pseudobulk=pb, data_root=tmp_path)
    result = runs.run_scgpt(inputs, settings, "cpu", lambda m: None)
    assert sorted(result.seed_predictions) == [1, 2]
    one, two = result.seed_predictions[1], result.seed_predictions[2]
    assert list(one.index) == list(two.index) and not np.allclose(one, two)
    pd.testing.assert_frame_equal(result.predictions, one)
    assert result.report["seed"] == 1 and result.report["seeds"] == "1,2"
