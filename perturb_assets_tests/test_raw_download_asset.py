"""raw_dataset downloads a built-in dataset from a (local) Dataverse mirror through Dagster."""

import functools
import http.server
import threading
import zipfile

import dagster as dg
import pytest

from perturb_assets.core.simulation import simulate_perturbseq
from perturb_assets.defs.datasets import assets as dataset_assets
from perturb_assets.defs.partitions import instance_with_datasets
from perturb_assets.defs.resources import build_resources

ADAMSON_FILE_ID = 6154417


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output readable
        pass


@pytest.fixture()
def mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``<root>/files/<file id>``."""
    root = tmp_path / "mirror"
    (root / "files").mkdir(parents=True)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/files/{{file_id}}"
    server.shutdown()
    server.server_close()


def _materialize(data_root, url_template):
    return dg.materialize(
        [dataset_assets.raw_dataset, dataset_assets.expression],
        partition_key="adamson",
        instance=instance_with_datasets(),
        resources=build_resources(data_root, dataverse_url_template=url_template),
        raise_on_error=False,
    )


def test_builtin_dataset_downloads_from_the_configured_mirror(tmp_path, mirror):
    root, template = mirror
    sim = simulate_perturbseq(n_cells=500, n_genes=50, n_perturbations=6, compute_de=False)
    h5ad = tmp_path / "perturb_processed.h5ad"
    sim.adata.write_h5ad(h5ad)
    with zipfile.ZipFile(root / "files" / str(ADAMSON_FILE_ID), "w") as archive:
        archive.write(h5ad, "adamson/perturb_processed.h5ad")

    data_root = tmp_path / "data"
    result = _materialize(data_root, template)
    assert result.success
    manifest = result.output_for_node("raw_dataset")
    assert manifest["origin"] == "dataverse"
    assert (data_root / "gears" / "adamson" / "provenance.json").exists()


def test_missing_file_fails_once_without_retries(tmp_path, mirror):
    _, template = mirror  # serves nothing: 404
    result = _materialize(tmp_path / "data", template)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1 and "404" in failures[0].step_failure_data.error.message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
