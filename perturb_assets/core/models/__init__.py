"""The models (stage 8): the registry, the baseline estimators, fitting and prediction tables.

- ``registry``: every model, feature set and benchmark protocol (:data:`MODELS`,
  :data:`FEATURE_SETS`, :data:`PROTOCOLS`), read by the assets, the metrics and the tests;
- ``estimators`` (Train Mean, linear PCA, additive) and ``forest`` (the compressed-target
  random forest); ``fitting``: grid search on validation, test predictions
  (:func:`run_baseline`); ``persistence``: skops model files;
- ``predictions``: the prediction-table layout every model writes, and users' prediction files;
- ``foundation``: scGPT, GEARS and GEARS + scFoundation embeddings."""

from perturb_assets.core.models.estimators import (
    AdditiveModel,
    LinearPCAModel,
    TrainMean,
)
from perturb_assets.core.models.fitting import (
    BaselineRun,
    FitResult,
    fit_select_predict,
    resolve_control,
    run_baseline,
)
from perturb_assets.core.models.forest import (
    CompressedTargetForest,
    compress_targets,
    predict_in_tree_order,
)
from perturb_assets.core.models.persistence import (
    ModelFileError,
    UntrustedTypeError,
    canonical_skops,
    load_model,
    save_model,
)
from perturb_assets.core.models.predictions import (
    IDENTITY_COLUMNS,
    combine_tables,
    prediction_folder_problems,
    prediction_frame,
    prediction_identity,
    prediction_table,
    read_user_predictions,
    seeded_prediction_table,
    split_by_model,
    split_by_seed,
    user_prediction_files,
)
from perturb_assets.core.models.registry import (
    DEFAULT_PROTOCOL,
    FEATURE_SETS,
    GO_FEATURES,
    MODELS,
    PREPRINT_2024,
    PROTOCOLS,
    PUBLISHED_2025,
    RANDOM_FOREST_GO,
    TRAIN_MEAN,
    BenchmarkProtocol,
    FeatureSetSpec,
    ModelSpec,
    Predictor,
    ProtocolName,
    embedding_sets,
    feature_set,
    model,
    predictors,
    protocol,
)

__all__ = [
    "AdditiveModel",
    "BaselineRun",
    "BenchmarkProtocol",
    "CompressedTargetForest",
    "DEFAULT_PROTOCOL",
    "FEATURE_SETS",
    "FeatureSetSpec",
    "FitResult",
    "GO_FEATURES",
    "IDENTITY_COLUMNS",
    "LinearPCAModel",
    "MODELS",
    "ModelFileError",
    "ModelSpec",
    "PREPRINT_2024",
    "PROTOCOLS",
    "PUBLISHED_2025",
    "Predictor",
    "ProtocolName",
    "RANDOM_FOREST_GO",
    "TRAIN_MEAN",
    "TrainMean",
    "UntrustedTypeError",
    "canonical_skops",
    "combine_tables",
    "compress_targets",
    "embedding_sets",
    "feature_set",
    "fit_select_predict",
    "load_model",
    "model",
    "predict_in_tree_order",
    "prediction_folder_problems",
    "prediction_frame",
    "prediction_identity",
    "prediction_table",
    "seeded_prediction_table",
    "predictors",
    "protocol",
    "read_user_predictions",
    "resolve_control",
    "run_baseline",
    "save_model",
    "split_by_model",
    "split_by_seed",
    "user_prediction_files",
]
