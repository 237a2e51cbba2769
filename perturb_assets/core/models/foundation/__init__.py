"""Foundation models (part of stage 8): scGPT fine-tuning, GEARS and its scFoundation variant.

Torch, scgpt and cell-gears are imported inside the functions that need them, so importing
this package (and the registry) stays cheap."""

from perturb_assets.core.models.foundation.base import (
    TrainedModel,
    resolve_device,
)
from perturb_assets.core.models.foundation.cell_pairs import (
    Batch,
    CellPairs,
    pair_cells,
)
from perturb_assets.core.models.foundation.compat import (
    gears_classes,
    map_raw_id_to_vocab_id,
    scgpt_model,
)
from perturb_assets.core.models.foundation.gears_go import (
    conditions_without_go,
    gene2go_from_annotations,
    go_edges,
    top_k_edges,
)
from perturb_assets.core.models.foundation.gears_model import (
    GEARS_PRESETS,
    GearsSettings,
    gears_preset,
    project_embeddings,
    train_gears,
    write_go_files,
)
from perturb_assets.core.models.foundation.runs import (
    FoundationInputs,
    MissingModelFiles,
    run_gears,
    run_gears_with_embeddings,
    run_scgpt,
    save_weights,
    weights_bytes,
)
from perturb_assets.core.models.foundation.scgpt_checkpoint import (
    CHECKPOINT_DIR,
    PRETRAINED_PREFIXES,
    ScGPTCheckpoint,
    build_model,
    find_checkpoint,
    gene_embedding_table,
    gene_vocab_ids,
    load_pretrained,
    load_weights,
    pretrained_weights,
    read_checkpoint,
    stand_in_checkpoint,
    write_checkpoint,
)
from perturb_assets.core.models.foundation.scgpt_training import (
    TRAINING_LOOPS,
    FineTuneSettings,
    Trainer,
    fine_tune,
)

__all__ = [
    "Batch",
    "CHECKPOINT_DIR",
    "CellPairs",
    "FineTuneSettings",
    "FoundationInputs",
    "GEARS_PRESETS",
    "GearsSettings",
    "MissingModelFiles",
    "PRETRAINED_PREFIXES",
    "ScGPTCheckpoint",
    "TRAINING_LOOPS",
    "TrainedModel",
    "Trainer",
    "build_model",
    "conditions_without_go",
    "find_checkpoint",
    "fine_tune",
    "gears_classes",
    "gears_preset",
    "gene2go_from_annotations",
    "gene_embedding_table",
    "gene_vocab_ids",
    "go_edges",
    "load_pretrained",
    "load_weights",
    "map_raw_id_to_vocab_id",
    "pair_cells",
    "pretrained_weights",
    "project_embeddings",
    "read_checkpoint",
    "resolve_device",
    "run_gears",
    "run_gears_with_embeddings",
    "run_scgpt",
    "save_weights",
    "scgpt_model",
    "stand_in_checkpoint",
    "top_k_edges",
    "train_gears",
    "weights_bytes",
    "write_checkpoint",
    "write_go_files",
]
