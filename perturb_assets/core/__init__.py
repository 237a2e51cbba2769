"""The science core: pure functions on AnnData, numpy and pandas; no Dagster.

Stage packages, in the order data flows; a stage imports only the stages above it in this list
(``perturb_assets_tests/test_architecture.py`` checks it), and each ``__init__`` re-exports its
public names (``from perturb_assets.core.pp import pseudobulk, top_de_genes``):

1. :mod:`~perturb_assets.core.gears`: the GEARS format, its validation and the split;
2. :mod:`~perturb_assets.core.io`: the versioned store, atomic writes, downloads, input files;
3. :mod:`~perturb_assets.core.pp`: normalisation, pseudo-bulk, delta profiles, DE genes;
4. :mod:`~perturb_assets.core.simulation`: simulated screens in the GEARS layout;
5. :mod:`~perturb_assets.core.datasets`: the dataset catalogue, sources and loading;
6. :mod:`~perturb_assets.core.features`: GO and embedding features of the perturbations;
7. :mod:`~perturb_assets.core.metrics`: the scoring rules (model selection uses them);
8. :mod:`~perturb_assets.core.models`: the registry, baselines, foundation models, predictions;
9. :mod:`~perturb_assets.core.evaluation`: the metrics table, noise ceiling, paper values;
10. :mod:`~perturb_assets.core.analyses`: diversity, embedding coherence, the diversity sweep;
11. :mod:`~perturb_assets.core.report`: figures and the HTML report.

Beside them: :mod:`~perturb_assets.core.errors` (error types) and
:mod:`~perturb_assets.core.settings` (settings that check their own bounds), which any stage
may use.
"""
