"""Which way is better for each metric, stated once for every comparison that needs it."""

from __future__ import annotations

from perturb_assets.core.metrics.cell_eval import ERROR_METRICS

__all__ = ["LOWER_IS_BETTER", "WORST_VALUE", "higher_is_better", "worst_value"]

#: Metrics where a lower value is better: the errors. Every other metric is better higher.
LOWER_IS_BETTER: frozenset[str] = frozenset(ERROR_METRICS)

#: The worst value a bounded metric can take, by name prefix: correlations reach -1, scores that
#: are fractions (discrimination, overlaps, precisions, recalls, AUCs, direction agreement) 0.
#: Error metrics are unbounded above, so they have none.
WORST_VALUE: dict[str, float] = {
    "pearson": -1.0,
    "de_spearman": -1.0,
    "discrimination": 0.0,
    "overlap_at": 0.0,
    "precision_at": 0.0,
    "de_direction_match": 0.0,
    "de_sig_genes_recall": 0.0,
    "pr_auc": 0.0,
    "roc_auc": 0.0,
    "top_k_accuracy": 0.0,
}


def higher_is_better(metric: str) -> bool:
    """``False`` for the error metrics (:data:`LOWER_IS_BETTER`), ``True`` for the others."""
    base = metric.removesuffix("_reference_compat")
    return base not in LOWER_IS_BETTER


def worst_value(metric: str) -> float | None:
    """The bounded worst value of ``metric`` (:data:`WORST_VALUE`), ``None`` if unbounded."""
    base = metric.removesuffix("_reference_compat")
    for prefix, value in WORST_VALUE.items():
        if base.startswith(prefix):
            return value
    return None
