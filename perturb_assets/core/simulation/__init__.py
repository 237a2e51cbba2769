"""The simulator (stage 4): Perturb-seq screens with known ground truth, in the GEARS layout.

- ``params`` (:class:`SimulationParams`) and ``presets`` (``synthetic`` and four datasets shaped
  like the paper's);
- ``generator``: the generative model (:func:`simulate`, :func:`simulate_perturbseq`), with count
  sampling in ``counts`` and the GO-like annotations in ``annotations``;
- ``gears_fields``: the DE ``uns`` fields cell-gears writes;
- ``stand_ins``: the GEARS folder and its companion files (:func:`write_gears_dataset`).

It uses the format, the file writers and the pre-processing below it, and no model code."""

from perturb_assets.core.simulation.gears_fields import (
    gears_de_fields,
)
from perturb_assets.core.simulation.generator import (
    SimulatedDataset,
    simulate,
    simulate_perturbseq,
    simulated_conditions,
)
from perturb_assets.core.simulation.params import (
    MODALITIES,
    SimulationParams,
)
from perturb_assets.core.simulation.presets import (
    PRESETS,
    PresetName,
    SimulationPreset,
    preset_params,
)
from perturb_assets.core.simulation.stand_ins import (
    GMT_NAME,
    PROGRAMS_GMT_NAME,
    STAND_IN_NOISE,
    simulated_embeddings,
    write_gears_dataset,
    write_gmt,
)

__all__ = [
    "GMT_NAME",
    "MODALITIES",
    "PRESETS",
    "PROGRAMS_GMT_NAME",
    "PresetName",
    "STAND_IN_NOISE",
    "SimulatedDataset",
    "SimulationParams",
    "SimulationPreset",
    "gears_de_fields",
    "preset_params",
    "simulate",
    "simulate_perturbseq",
    "simulated_conditions",
    "simulated_embeddings",
    "write_gears_dataset",
    "write_gmt",
]
