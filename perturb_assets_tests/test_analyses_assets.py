"""The analyses as assets on synthetic data, the sweep, and the report in a real browser."""

from pathlib import Path

import dagster as dg
import pytest

from perturb_assets.core.evaluation import CEILING_MODEL
from perturb_assets.core.io import VersionedStore
from perturb_assets.core.models import GO_FEATURES, RANDOM_FOREST_GO, TRAIN_MEAN

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run(synthetic_run):
    """The main job on synthetic, two sweep levels, then the cross-dataset tables and report
    (the session's shared run, conftest.py)."""
    return synthetic_run


def _metadata(instance, key: str, partition: str | None = "synthetic") -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_dataset_diversity_reports_medians_beside_the_papers_and_draws_the_heatmap(run):
    root, instance, _ = run
    meta = _metadata(instance, "dataset_diversity")
    assert 0.2 < meta["median_pairwise_delta_corr"] < 0.9
    assert {"test_train_median_delta_corr", "test_train_median_delta_corr_reference_compat",
            "n_trainval", "n_control_cells"} <= set(meta)  # fmt: skip
    assert meta["heatmap"].startswith("![](data:image/png;base64,")


def test_adequacy_check_records_the_dynamic_range(run):
    key = dg.AssetCheckKey(dg.AssetKey("metrics"), "benchmark_adequacy")
    record = run.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert "dynamic_range" in evaluation.metadata and "best_model" in evaluation.metadata
    assert evaluation.severity == dg.AssetCheckSeverity.WARN


def test_train_mean_discriminates_at_chance_and_random_forest_clearly_better(run):
    root, *_ = run
    table = VersionedStore(root).read("assets", "metrics", "synthetic")
    rows = table[(table["subgroup"] == "all") & (table["metric"] == "discrimination_l1")]
    rows = rows.set_index(["model", "features"])
    train_mean = rows.loc[(TRAIN_MEAN.name, "none")]
    forest = rows.loc[(RANDOM_FOREST_GO.model.name, GO_FEATURES.name)]
    assert abs(train_mean["value"] - 0.5) < 0.06
    assert train_mean["ci_low"] < 0.5 < train_mean["ci_high"]
    assert forest["diff_ci_low"] > 0 and forest["ci_low"] > train_mean["value"]
    ceiling = rows.loc[(CEILING_MODEL, "none")]
    assert ceiling["value"] > forest["value"]
    per_condition = VersionedStore(root).read("assets", "metrics_per_condition", "synthetic")
    assert {"condition", "model", "metric", "value"} <= set(per_condition.columns)


def test_coherence_finds_the_simulated_programs(run):
    root, *_ = run
    per_set = VersionedStore(root).read("assets", "embedding_coherence", "synthetic")
    mean = per_set.groupby("embedding")["delta"].mean()
    # The stand-ins carry program signal through different amounts of noise.
    assert mean["scelmo"] > mean["scfoundation"] > 0
    assert set(per_set["collection"]) == {"simulated_programs"}


def test_sweep_relates_diversity_to_dynamic_range(run):
    root, *_ = run
    sweep = VersionedStore(root).read("assets", "diversity_sweep_summary")
    low, high = sweep.set_index("diversity").loc[[0.0, 1.0], "median_corr"]
    assert low > high  # more diversity, less alike
    ranges = sweep.set_index("diversity")["dynamic_range"]
    assert ranges[1.0] > ranges[0.0]


def test_report_opens_in_a_real_browser_with_every_figure(run):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (deploy/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    root, instance, _ = run
    report = Path(_metadata(instance, "benchmark_report", None)["report"])
    expected = {"fig1_synthetic", "fig2ab", "fig2c_synthetic", "fig2d", "fig2e", "supp_fig2",
                "supp_fig1_synthetic", "sweep", "discrimination_synthetic",
                "calibration_synthetic", "robustness_synthetic",
                "interactions_synthetic"}  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(report.as_uri())
        figures = page.eval_on_selector_all(
            "figure", "els => els.map(f => [f.id, f.querySelector('img').complete, "
            "f.querySelector('img').naturalWidth])",
        )  # fmt: skip
        shot = root / "report.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert expected <= {name for name, _, _ in figures}
    assert all(complete and width > 0 for _, complete, width in figures)  # no broken image
    assert shot.stat().st_size > 10_000


def test_report_opens_with_the_headline_table_and_marks_uninformative_metrics(run):
    root, instance, _ = run
    meta = _metadata(instance, "benchmark_report", None)
    page = Path(meta["report"]).read_text()
    assert page.index("<h2 id='headline'") < page.index("<figure")
    assert {"calibration_synthetic", "robustness_synthetic", "interactions_synthetic"} <= set(meta)
    folder = Path(meta["report"]).parent
    interactions = (folder / "genetic_interactions.csv").read_text()
    assert "error_ratio" in interactions and "random_forest" in interactions
    calibration = (Path(meta["report"]).parent / "metric_calibration.csv").read_text()
    header = calibration.splitlines()[0]
    assert "uninformative" in header and "drf" in header
    rows = [line for line in calibration.splitlines()[1:] if ",pearson_delta," in line]
    assert rows  # Pearson Delta's calibration on synthetic is in the report
