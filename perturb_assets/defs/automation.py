"""The one refresh rule of every automatically refreshed asset.

Dagster's ``eager`` condition with two changes:

- it reacts to a dependency's **data version changing**, not to any new materialisation or
  observation. Data versions are content hashes (a file's sha256, a table's ``frame_sha256``,
  predictions' ``anndata_sha256``), so re-observing an unchanged file, or a re-run that writes
  the same values, requests nothing downstream. A dependency requested in the same tick counts
  as changed, so a changed file's whole chain is requested at once (one run);
- it waits for every blocking check of the dependencies to pass: a new embedding file that
  fails ``<feature set>_features_usable`` stops the refresh before any model trains on it;
- optional inputs (read only when materialised: foundation-model predictions, the user's
  predictions, a checkpoint's extracted embedding) do not hold it back while missing. Plain
  ``eager`` waits for them forever: metrics would never refresh on a CPU-only deployment.
"""

import dagster as dg

from perturb_assets.core.models import embedding_sets

AC = dg.AutomationCondition

#: The io manager's ALLOW_MISSING inputs, as a selection.
OPTIONAL_INPUTS = (
    dg.AssetSelection.groups("foundation")
    | dg.AssetSelection.assets("user_predictions")
    | dg.AssetSelection.assets(*(s.extracted_by for s in embedding_sets() if s.extracted_by))
)

# A dependency requested in the same tick counts as changed, so one tick requests the whole
# chain below a changed file (features, models, metrics) as one run.
DEPS_CHANGED = AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested()).with_label(
    "any dependency's data version changed (or it is requested in this tick)"
)

REFRESH = (
    (AC.newly_missing() | DEPS_CHANGED).since_last_handled()
    & ~AC.any_deps_missing().ignore(OPTIONAL_INPUTS)
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
    & AC.all_deps_blocking_checks_passed()
).with_label("refresh when an input's content changed and its blocking checks passed")
