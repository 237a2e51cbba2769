"""scGPT checkpoints in the official layout: read, build the model, load weights, embeddings.

A checkpoint is a folder as released by the scGPT authors (e.g. ``scGPT_human``)::

    args.json       architecture: embsize, nheads, d_hid, nlayers, n_layers_cls (and more)
    vocab.json      {token: id}: gene symbols plus special tokens
    best_model.pt   the pre-trained state dict (tensors only)

The platform looks for it at ``<data root>/checkpoints/scgpt_human/`` (:data:`CHECKPOINT_DIR`);
A simulated dataset (``synthetic``) uses a tiny random checkpoint in the same layout, written
into its companion folder on first use (:func:`stand_in_checkpoint`).

Released checkpoints were trained with flash-attn, whose attention layer names its input
projection ``self_attn.Wqkv``; PyTorch's ``nn.MultiheadAttention`` calls the same matrix (same
row layout: Q, K, V blocks) ``self_attn.in_proj_weight`` / ``in_proj_bias``.
:func:`pretrained_weights` renames them and keeps only what the perturbation tutorial loads:
the gene encoder, the value encoder and the transformer (:data:`PRETRAINED_PREFIXES`).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perturb_assets.core.errors import DatasetError

__all__ = [
    "CHECKPOINT_DIR",
    "PRETRAINED_PREFIXES",
    "ScGPTCheckpoint",
    "build_model",
    "find_checkpoint",
    "gene_embedding_table",
    "gene_vocab_ids",
    "load_pretrained",
    "load_weights",
    "pretrained_weights",
    "read_checkpoint",
    "stand_in_checkpoint",
    "write_checkpoint",
]

#: Where a user puts the pre-trained checkpoint, under the data root.
CHECKPOINT_DIR = Path("checkpoints") / "scgpt_human"
#: Folder name of the tiny stand-in checkpoint, inside a simulated dataset's companion folder.
STAND_IN_DIR = "scgpt_checkpoint"
#: The companion folder's scGPT stand-in embedding, whose genes are the stand-in's vocabulary.
STAND_IN_VOCABULARY = Path("embeddings") / "scgpt.parquet"
ARGS_FILE, VOCAB_FILE, WEIGHTS_FILE = "args.json", "vocab.json", "best_model.pt"
#: Architecture fields of ``args.json`` (the tutorial reads exactly these).
ARCHITECTURE_FIELDS = ("embsize", "nheads", "d_hid", "nlayers", "n_layers_cls")
PAD_TOKEN = "<pad>"
SPECIAL_TOKENS = (PAD_TOKEN, "<cls>", "<eoc>")
#: Parts of the pre-trained model the perturbation tutorial loads.
PRETRAINED_PREFIXES = ("encoder.", "value_encoder.", "transformer_encoder.")
#: The tutorial's values for what ``args.json`` does not set.
PERT_PAD_ID = 0
PAD_VALUE = 0


@dataclass(frozen=True)
class ScGPTCheckpoint:
    """A validated checkpoint folder.

    Attributes
    ----------
    folder
        The folder.
    architecture
        ``embsize``, ``nheads``, ``d_hid``, ``nlayers``, ``n_layers_cls`` from ``args.json``.
    vocab
        Token -> id, with the special tokens appended when missing (as the tutorial does).
    """

    folder: Path
    architecture: dict[str, int]
    vocab: dict[str, int]

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_FILE


def find_checkpoint(data_root: str | PathLike) -> Path | None:
    """``<data root>/checkpoints/scgpt_human``, or ``None`` when it holds no checkpoint."""
    folder = Path(data_root) / CHECKPOINT_DIR
    return folder if (folder / ARGS_FILE).exists() else None


def stand_in_checkpoint(companion_dir: str | PathLike) -> Path:
    """The tiny random scGPT checkpoint of a simulated dataset, written on first use.

    It lives in the dataset's companion folder (``<companion>/scgpt_checkpoint``) and its
    vocabulary is the genes of the companion's scGPT stand-in embedding (every gene the simulator
    knows, in its order). :func:`write_checkpoint` is seeded, so every process that writes it
    writes the same bytes; the weights go last, so a folder with weights is complete.
    """
    companion = Path(companion_dir)
    folder = companion / STAND_IN_DIR
    if not (folder / WEIGHTS_FILE).exists():
        genes = pd.read_parquet(companion / STAND_IN_VOCABULARY).index.astype(str)
        write_checkpoint(folder, list(genes))
    return folder


def read_checkpoint(folder: str | PathLike) -> ScGPTCheckpoint:
    """Read and check a checkpoint folder's ``args.json`` and ``vocab.json``.

    Raises
    ------
    DatasetError
        Naming the file and the field: a missing file, unreadable JSON, a missing or
        non-integer architecture field, a vocabulary that is not ``{token: int}``.
    """
    folder = Path(folder)
    for name in (ARGS_FILE, VOCAB_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise DatasetError(
                folder / name, "file", f"missing; a scGPT checkpoint folder holds {ARGS_FILE}, "
                f"{VOCAB_FILE} and {WEIGHTS_FILE} (the official scGPT_human layout)",
            )  # fmt: skip
    args = _read_json(folder / ARGS_FILE)
    architecture = {}
    for name in ARCHITECTURE_FIELDS:
        value = args.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DatasetError(
                folder / ARGS_FILE, name, f"must be a positive integer, got {value!r}"
            )
        architecture[name] = value
    if architecture["embsize"] % architecture["nheads"]:
        raise DatasetError(
            folder / ARGS_FILE, "nheads", f"{architecture['nheads']} does not divide embsize "
            f"{architecture['embsize']}: each attention head gets embsize / nheads dimensions",
        )  # fmt: skip
    vocab = _read_json(folder / VOCAB_FILE)
    if not vocab or not all(isinstance(k, str) and isinstance(v, int) for k, v in vocab.items()):
        raise DatasetError(folder / VOCAB_FILE, "vocabulary", "must be a JSON object {token: id}")
    vocab = dict(vocab)
    for token in SPECIAL_TOKENS:
        vocab.setdefault(token, max(vocab.values()) + 1)
    return ScGPTCheckpoint(folder, architecture, vocab)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(path, "file", f"cannot be read as JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DatasetError(path, "file", "must hold a JSON object")
    return value


def build_model(checkpoint: ScGPTCheckpoint) -> Any:
    """An untrained ``TransformerGenerator`` of the checkpoint's architecture (PyTorch
    attention)."""
    from perturb_assets.core.models.foundation.compat import scgpt_model

    transformer_generator, _ = scgpt_model()
    a = checkpoint.architecture
    return transformer_generator(
        len(checkpoint.vocab), a["embsize"], a["nheads"], a["d_hid"], a["nlayers"],
        nlayers_cls=a["n_layers_cls"], n_cls=1, vocab=checkpoint.vocab, dropout=0.0,
        pad_token=PAD_TOKEN, pad_value=PAD_VALUE, pert_pad_id=PERT_PAD_ID,
        use_fast_transformer=False,
    )  # fmt: skip


def load_weights(path: str | PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, or an error naming the file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, non-tensor objects
        # torch's own text suggests weights_only=False, i.e. running the file's code: never.
        raise DatasetError(
            path, "file", f"cannot be loaded as a plain state dict of tensors "
            f"({_load_failure(exc)}); the platform loads weights only with weights_only=True "
            "and never runs code from a checkpoint: export the state dict of tensors instead",
        ) from None  # fmt: skip
    if not isinstance(state, dict):
        raise DatasetError(path, "file", f"holds a {type(state).__name__}, not a state dict")
    return state


def _load_failure(exc: Exception) -> str:
    """What ``torch.load`` refused, without its advice to load with ``weights_only=False``."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    lines = [ansi.sub("", line).strip() for line in str(exc).splitlines()]
    advice = ("weights_only", "documentation", "Weights only load failed", "can still be loaded")
    useful = [line for line in lines if line and not any(a in line for a in advice)]
    return f"{type(exc).__name__}: {useful[0][:200]}" if useful else type(exc).__name__


def pretrained_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The encoder, value-encoder and transformer tensors, with flash-attn names mapped to
    PyTorch's (``self_attn.Wqkv.weight`` -> ``self_attn.in_proj_weight``)."""
    return {
        key.replace("self_attn.Wqkv.", "self_attn.in_proj_"): value
        for key, value in state.items()
        if key.startswith(PRETRAINED_PREFIXES)
    }


def load_pretrained(model: Any, checkpoint: ScGPTCheckpoint) -> dict[str, int]:
    """Copy the checkpoint's pre-trained tensors into ``model``; report what was loaded.

    Raises
    ------
    DatasetError
        If a tensor's shape differs from the model's (a checkpoint of another architecture),
        or the checkpoint holds none of the pre-trained parts.
    """
    weights = pretrained_weights(load_weights(checkpoint.weights_path))
    if not weights:
        raise DatasetError(
            checkpoint.weights_path, "state dict", f"holds no {PRETRAINED_PREFIXES} tensors"
        )
    own = model.state_dict()
    for key, value in weights.items():
        if key not in own or tuple(own[key].shape) != tuple(value.shape):
            expected = tuple(own[key].shape) if key in own else "absent"
            raise DatasetError(
                checkpoint.weights_path, key,
                f"shape {tuple(value.shape)} does not fit the model built from {ARGS_FILE} "
                f"(expected {expected})",
            )  # fmt: skip
    model.load_state_dict(weights, strict=False)
    return {"n_tensors": len(weights), "n_model_tensors": len(own)}


def gene_vocab_ids(gene_names: Any, vocab: dict[str, int]) -> tuple[np.ndarray, int]:
    """Vocabulary id of every dataset gene (``<pad>``'s id when absent, as the tutorial), and
    how many matched."""
    names = [str(g) for g in gene_names]
    pad = vocab[PAD_TOKEN]
    ids = np.array([vocab.get(g, pad) for g in names], dtype=np.int64)
    return ids, int(sum(g in vocab for g in names))


def gene_embedding_table(checkpoint: ScGPTCheckpoint) -> pd.DataFrame:
    """scGPT's gene embeddings: gene symbol × ``embsize``, from the pre-trained gene encoder.

    As in scGPT's own gene-embedding tutorial, a gene's vector is the encoder's output for its
    token: the ``encoder.embedding`` row passed through ``encoder.enc_norm`` (LayerNorm).
    Special tokens are left out.
    """
    import torch
    import torch.nn.functional as F

    state = load_weights(checkpoint.weights_path)
    table = state.get("encoder.embedding.weight")
    if table is None:
        raise DatasetError(checkpoint.weights_path, "encoder.embedding.weight", "is missing")
    genes = [(g, i) for g, i in checkpoint.vocab.items() if g not in SPECIAL_TOKENS]
    genes = [(g, i) for g, i in genes if i < table.shape[0]]
    rows = table[torch.tensor([i for _, i in genes])].float()
    weight, bias = state.get("encoder.enc_norm.weight"), state.get("encoder.enc_norm.bias")
    if weight is not None and bias is not None:
        rows = F.layer_norm(rows, (rows.shape[1],), weight.float(), bias.float(), eps=1e-5)
    return pd.DataFrame(
        rows.numpy(),
        index=pd.Index([g for g, _ in genes], name="gene_name"),
        columns=[f"dim{i}" for i in range(rows.shape[1])],
    )


def write_checkpoint(
    folder: str | PathLike,
    genes: list[str],
    *,
    embsize: int = 32,
    nheads: int = 2,
    d_hid: int = 32,
    nlayers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised checkpoint in the official layout (flash-attn names).

    The stand-in for simulated datasets (:func:`stand_in_checkpoint`) and the tests'
    checkpoint: it is loaded by the
    same code as a real one. Its state dict holds, like the released one, tensors that the
    perturbation model does not load (``flag_encoder``, the pre-training ``decoder``).
    """
    import torch

    from perturb_assets.core.io.atomic import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {g: i for i, g in enumerate(dict.fromkeys(genes))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    args = {"embsize": embsize, "nheads": nheads, "d_hid": d_hid, "nlayers": nlayers,
            "n_layers_cls": 3, "pad_token": PAD_TOKEN, "fast_transformer": True}  # fmt: skip
    torch.manual_seed(seed)
    model = build_model(ScGPTCheckpoint(folder, {k: args[k] for k in ARCHITECTURE_FIELDS}, vocab))
    state = {
        key.replace("self_attn.in_proj_", "self_attn.Wqkv."): value
        for key, value in model.state_dict().items()
        if key.startswith(PRETRAINED_PREFIXES)
    }
    state["flag_encoder.weight"] = torch.randn(2, embsize)
    state["decoder.fc.0.weight"] = torch.randn(embsize, embsize)
    atomic_write(folder / ARGS_FILE, lambda tmp: tmp.write_text(json.dumps(args, indent=1)))
    atomic_write(folder / VOCAB_FILE, lambda tmp: tmp.write_text(json.dumps(vocab)))
    buffer = io.BytesIO()  # through memory: torch.save would name its archive after the file
    torch.save(state, buffer)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return folder
