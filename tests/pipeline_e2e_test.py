"""LocalDagRunner end to end on the real RetailRocket slices: ML Metadata, caching, metrics.json."""

from __future__ import annotations

import pytest

from modules import evaluation
from pipeline import cli, configs, results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_run(real_run):
    assert cli.main(real_run.argv) == 0
    return results.latest_run(results.open_store(real_run.where["metadata"]), configs.PIPELINE_NAME)


def test_every_component_ran_once(real_run):
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
    assert expected <= set(real_run.nodes)
    assert {n: r.state for n, r in real_run.nodes.items()} == {
        n: "complete" for n in real_run.nodes
    }


def test_second_run_with_unchanged_inputs_is_cached(real_run, second_run):
    assert set(second_run) == set(real_run.nodes)
    assert all(r.state == "cached" for r in second_run.values())
    # The cached run points at the very artifacts the first run wrote.
    uri = lambda runs: runs["Baselines"].outputs["baseline_metrics"][0].uri  # noqa: E731
    assert uri(real_run.nodes) == uri(second_run)


def test_metrics_json_follows_the_contract(real_run):
    metrics = real_run.metrics
    assert set(metrics["protocol"]) >= {"cutoff", "n_train", "n_eval_queries", "n_items"}
    for name in ("most_popular", "recently_viewed", "user_user_cf", "item_item_cf", "svd"):
        assert set(metrics["models"][name]) == set(evaluation.metric_names())
    assert metrics["protocol"]["n_eval_queries"] > 0
    assert metrics["best_baseline"] in metrics["models"]
    assert "Baselines" in metrics["timings_s"]
