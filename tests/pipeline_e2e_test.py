"""LocalDagRunner end to end on the real RetailRocket slices: ML Metadata, caching, metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data import fixtures
from modules import evaluation
from pipeline import cli, configs, local_runner, results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    raw = fixtures.real_sample_raw(root / "raw")
    out = root / "out"
    argv = ["run", "--raw", str(raw), "--output", str(out)]
    assert cli.main(argv) == 0
    where = local_runner.paths(out)
    first = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    first_metrics = json.loads(Path(where["metrics"]).read_text())
    assert cli.main(argv) == 0
    second = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    return where, first, second, first_metrics


def test_every_component_ran_once(two_runs):
    _, first, _, _ = two_runs
    expected = {
        "CsvExampleGen",
        "ItemsExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "CuratedSchemaImporter",
        "CurateSchema",
        "ExampleValidator",
        "ValidationGate",
        "Baselines",
    }
    assert expected <= set(first)
    assert {node: r.state for node, r in first.items()} == {node: "complete" for node in first}


def test_second_run_with_unchanged_inputs_is_cached(two_runs):
    _, first, second, _ = two_runs
    assert set(second) == set(first)
    assert all(r.state == "cached" for r in second.values())
    # The cached run points at the very artifacts the first run wrote.
    uri = lambda runs: runs["Baselines"].outputs["baseline_metrics"][0].uri  # noqa: E731
    assert uri(first) == uri(second)


def test_metrics_json_follows_the_contract(two_runs):
    where, _, _, metrics = two_runs
    assert set(metrics["protocol"]) >= {"cutoff", "n_train", "n_eval_queries", "n_items"}
    for name in ("most_popular", "recently_viewed", "user_user_cf", "item_item_cf", "svd"):
        assert set(metrics["models"][name]) == set(evaluation.metric_names())
    assert metrics["protocol"]["n_eval_queries"] > 0
    assert metrics["best_baseline"] in metrics["models"]
    assert "Baselines" in metrics["timings_s"]
