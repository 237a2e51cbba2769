"""The simulator's GO-like annotation matrix: informative, but noisy and incomplete."""

from __future__ import annotations

import numpy as np
import pandas as pd

_MISANNOTATED_FRACTION = 0.1
_MIN_TERMS_PER_GENE = 3


def _annotations(
    rng: np.random.Generator,
    primary: np.ndarray,
    membership: np.ndarray,
    n_terms: int,
    symbols: np.ndarray,
) -> tuple[pd.DataFrame, pd.Series]:
    """GO-like binary gene × term matrix carrying noisy program membership."""
    n_universe, n_programs = membership.shape
    # A fraction of genes is annotated to a wrong program (imperfect prior knowledge).
    annotated_program = primary.copy()
    wrong = rng.random(n_universe) < _MISANNOTATED_FRACTION
    annotated_program[wrong] = rng.integers(0, n_programs, int(wrong.sum()))
    secondary = np.where(membership > 0, membership, 0.0)
    secondary[np.arange(n_universe), primary] = 0.0

    matrix = np.zeros((n_universe, n_terms), dtype=np.int8)
    descriptions: list[str] = []
    kinds = rng.choice(3, size=n_terms, p=[0.8, 0.1, 0.1])  # program, mixture, broad
    for j in range(n_terms):
        kind = kinds[j]
        if kind == 2:
            size = int(rng.integers(max(5, n_universe // 20), max(6, n_universe // 6)))
            matrix[rng.choice(n_universe, size=size, replace=False), j] = 1
            descriptions.append("simulated broad process")
            continue
        programs = [j % n_programs] if kind == 0 else rng.choice(n_programs, 2, replace=False)
        include = np.zeros(n_universe, dtype=bool)
        for k in programs:
            p_in = rng.uniform(0.25, 0.7)
            own = annotated_program == k
            include |= own & (rng.random(n_universe) < p_in)
            include |= (secondary[:, k] > 0) & (rng.random(n_universe) < 0.5 * p_in)
        n_random = rng.poisson(max(1.0, 0.25 * include.sum()))
        include[rng.choice(n_universe, size=min(n_random, n_universe), replace=False)] = True
        matrix[include, j] = 1
        label = " and ".join(f"program {int(k)}" for k in programs)
        descriptions.append(f"simulated {label}")
    # Every gene gets at least a few terms, preferably of its annotated program.
    term_program = np.array([j % n_programs if kinds[j] == 0 else -1 for j in range(n_terms)])
    n_min = min(_MIN_TERMS_PER_GENE, n_terms)
    for g in np.flatnonzero(matrix.sum(axis=1) < n_min):
        have = np.flatnonzero(matrix[g])
        candidates = np.setdiff1d(np.flatnonzero(term_program == annotated_program[g]), have)
        others = np.setdiff1d(np.arange(n_terms), np.concatenate([have, candidates]))
        need = n_min - len(have)
        chosen = rng.permutation(candidates)[:need]
        if len(chosen) < need:
            chosen = np.concatenate([chosen, rng.choice(others, need - len(chosen), replace=False)])
        matrix[g, chosen] = 1
    term_ids = [f"GO:SIM{j + 1:07d}" for j in range(n_terms)]
    annotations = pd.DataFrame(
        matrix,
        index=pd.Index(symbols.astype(str), name="gene_name"),
        columns=pd.Index(term_ids, name="term_id"),
    )
    return annotations, pd.Series(descriptions, index=pd.Index(term_ids, name="term_id"))
