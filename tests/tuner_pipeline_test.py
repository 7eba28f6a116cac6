"""The Tuner in the DAG: wiring (local and Vertex), flags, metrics.json's ``tuning`` and the report.

``modules/tuner_test.py`` tests the search itself; the slow tests here run ``retailrec run`` on the
session's tiny run (``tests/conftest.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.common import resolver

from data import generator
from modules import constants
from pipeline import cli, configs, local_runner
from pipeline import pipeline as P
from reporting import report, results

VERTEX = [
    "--project=example-project",
    "--region=europe-west4",
    "--image=europe-west4-docker.pkg.dev/example-project/retailrec/pipeline:1",
    "--pipeline-root=gs://example-bucket/root",
    "--export-dir=gs://example-bucket/export",
]


def _nodes(dag) -> dict:
    return {node.id: node for node in dag.components}


def test_the_tuner_feeds_the_trainer_between_transform_and_trainer():
    nodes = _nodes(local_runner.build("/tmp/unused", training_config={"epochs": 3}))
    tuner, trainer = nodes[P.TUNER], nodes[P.TRAINER]
    assert tuner.inputs["transform_graph"].producer_component_id == "Transform"
    assert trainer.inputs["hyperparameters"].producer_component_id == P.TUNER
    # The Tuner gets the Trainer's settings and its number of trials; the Trainer not the latter.
    config = json.loads(tuner.exec_properties["custom_config"])
    assert config == {"epochs": 3, constants.TUNE_TRIALS_KEY: constants.TUNE_TRIALS}
    assert json.loads(trainer.exec_properties["custom_config"]) == {"epochs": 3}
    assert tuner.exec_properties["tuner_fn"] == P.TUNER_FN
    assert P.HYPERPARAMETERS_RESOLVER not in nodes


def test_without_the_tuner_the_trainer_gets_the_latest_hyperparameters():
    nodes = _nodes(local_runner.build("/tmp/unused", tune_trials=0))
    assert P.TUNER not in nodes
    trainer = nodes[P.TRAINER]
    assert trainer.inputs["hyperparameters"].producer_component_id == P.HYPERPARAMETERS_RESOLVER
    # Locally a lenient LatestArtifactStrategy (nothing yet is no failure); Vertex: TFX's own.
    strategy = nodes[P.HYPERPARAMETERS_RESOLVER].exec_properties[resolver.RESOLVER_STRATEGY_CLASS]
    assert strategy is P.LatestOrNothingStrategy
    with pytest.raises(ValueError, match="tune_trials=-1"):
        local_runner.build("/tmp/unused", tune_trials=-1)


def test_tune_flags(tmp_path, capsys):
    args = cli._parser().parse_args(["run", "--raw", "r", "--output", "o", "--tune-trials", "5"])
    assert cli._pipeline_kwargs(args)["tune_trials"] == 5
    args = cli._parser().parse_args(["run", "--raw", "r", "--output", "o", "--no-tune"])
    assert cli._pipeline_kwargs(args)["tune_trials"] == 0
    args = cli._parser().parse_args(["run", "--raw", "r", "--output", "o"])
    assert cli._pipeline_kwargs(args)["tune_trials"] == constants.TUNE_TRIALS
    out = str(tmp_path / "p.json")
    assert cli.main(["compile", "--out", out, *VERTEX, "--tune-trials", "0"]) == cli.EXIT_BAD_INPUT
    assert "--no-tune to skip the Tuner" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one or the other
        cli._parser().parse_args(
            ["run", "--raw", "r", "--output", "o", "--no-tune", "--tune-trials", "3"]
        )


def _compiled(tmp_path, *flags) -> dict:
    out = tmp_path / "p.json"
    assert cli.main(["compile", "--out", str(out), *VERTEX, *flags]) == 0
    return json.loads(out.read_text())["pipelineSpec"]


def _custom_config(spec: dict, task: str) -> dict:
    parameter = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]["custom_config"]
    return json.loads(parameter["runtimeValue"]["constantValue"]["stringValue"])


def test_vertex_spec_has_the_tuner_in_its_task_or_as_a_custom_job(tmp_path):
    spec = _compiled(tmp_path, "--tune-trials", "3")
    tasks, executors = spec["root"]["dag"]["tasks"], spec["deploymentSpec"]["executors"]
    source = tasks[P.TRAINER]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
    assert source == {"producerTask": P.TUNER, "outputArtifactKey": "best_hyperparameters"}
    assert "google_cloud_ai_platform" not in json.dumps(executors[f"{P.TUNER}_executor"])
    assert _custom_config(spec, P.TUNER)[constants.TUNE_TRIALS_KEY] == 3

    # With a training machine, the Tuner is a Vertex AI custom job like the Trainer, same job.
    spec = _compiled(tmp_path, "--training-machine-type=n1-standard-8")
    tuner_executor = json.dumps(spec["deploymentSpec"]["executors"][f"{P.TUNER}_executor"])
    assert "google_cloud_ai_platform.tuner.executor.Executor" in tuner_executor
    tuner, trainer = _custom_config(spec, P.TUNER), _custom_config(spec, P.TRAINER)
    assert tuner["ai_platform_tuning_args"] == trainer["ai_platform_training_args"]
    assert tuner["ai_platform_tuning_args"]["project"] == "example-project"
    assert tuner["ai_platform_vertex_region"] == "europe-west4"
    assert tuner["ai_platform_enable_vertex"] is True


def test_vertex_spec_without_the_tuner_resolves_the_latest_hyperparameters(tmp_path):
    spec = _compiled(tmp_path, "--no-tune")
    tasks = spec["root"]["dag"]["tasks"]
    assert P.TUNER not in tasks
    source = tasks[P.TRAINER]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
    assert source["producerTask"] == P.HYPERPARAMETERS_RESOLVER


# --------------------------------------------------------------------------------------------
# metrics.json and report.html, from ML Metadata's view of a run


def _artifact_at(folder: Path, config: dict) -> metadata_store_pb2.Artifact:
    folder.mkdir(parents=True)
    (folder / "best_hyperparameters.txt").write_text(json.dumps(config))
    return metadata_store_pb2.Artifact(uri=str(folder))


LOG = {
    "objective": "validation-window Recall@50",
    "trials": [
        {
            "trial": 1,
            "hyperparameters": {"learning_rate": 0.003, "embedding_dim": 64},
            "validation_recall@50": 0.41,
            "epochs": 3,
            "seconds": 71.0,
            "status": "COMPLETED",
        },
        {
            "trial": 2,
            "hyperparameters": {"learning_rate": 0.006, "embedding_dim": 32},
            "validation_recall@50": 0.43,
            "epochs": 2,
            "seconds": 52.5,
            "status": "COMPLETED",
        },
    ],
    "best_trial": 2,
    "best": {"learning_rate": 0.006, "embedding_dim": 32},
    "space": {"learning_rate": [0.0015, 0.003, 0.006], "embedding_dim": [32, 64, 128]},
    "defaults": {"learning_rate": 0.003, "embedding_dim": 64},
}
CONFIG = {"space": [], "values": LOG["best"], constants.TUNE_LOG_KEY: LOG}


def test_tuning_in_metrics_and_report_with_the_tuner(tmp_path):
    artifact = _artifact_at(tmp_path / "best", CONFIG)
    nodes = {P.TUNER: results.NodeResult("complete", 124.0, {"best_hyperparameters": [artifact]})}
    tuning = results.collect_tuning(nodes)
    assert tuning["source"] == "tuner" and tuning["objective"] == "validation-window Recall@50"
    assert tuning["trials"] == LOG["trials"] and tuning["best_trial"] == 2
    assert tuning["best"] == tuning["chosen"] == {"learning_rate": 0.006, "embedding_dim": 32}
    lines = results.format_tuning(tuning).splitlines()
    assert len(lines) == 2 and lines[1].endswith("<- chosen")
    assert "validation Recall@50 0.4300 (52 s)" in lines[1]
    page = report.tuning_section(tuning)
    assert "<h2>Tuning</h2>" in page and "0.4300" in page and "chosen" in page
    assert "1 (defaults)" in page and "<b>0.0060</b>" in page  # not the default: bold


def test_tuning_without_the_tuner_says_where_the_settings_came_from(tmp_path):
    artifact = _artifact_at(tmp_path / "earlier", CONFIG)
    earlier = {
        P.HYPERPARAMETERS_RESOLVER: results.NodeResult(
            "complete", 0.0, {"hyperparameters": [artifact]}
        )
    }
    tuning = results.collect_tuning(earlier)
    assert tuning["source"] == "earlier_run" and tuning["artifact"] == str(tmp_path / "earlier")
    assert tuning["chosen"] == LOG["best"] and tuning["earlier_trials"] == LOG["trials"]
    assert "an earlier run's choice: embedding_dim=32" in results.format_tuning(tuning)
    assert "earlier run's Tuner chose" in report.tuning_section(tuning)
    none = {P.HYPERPARAMETERS_RESOLVER: results.NodeResult("complete", 0.0, {})}
    assert results.collect_tuning(none) == {"source": "defaults", "chosen": {}}
    assert "default settings" in report.tuning_section(results.collect_tuning(none))
    assert results.collect_tuning({}) is None


# --------------------------------------------------------------------------------------------
# Whole runs (the session's tiny run: no validation window, so one trial)


@pytest.mark.slow
def test_tiny_run_tuned_once_and_no_tune_reuses_the_choice(tiny_run, tmp_path):
    tuning = tiny_run.metrics["tuning"]
    assert tuning["source"] == "tuner"
    (trial,) = tuning["trials"]  # no validation window on tiny data: the search stops
    assert trial["trial"] == tuning["best_trial"] == 1
    assert trial["validation_recall@50"] is None and trial["hyperparameters"] == tuning["chosen"]
    assert "[tuning] trial 1:" in tiny_run.stdout and "no validation window" in tiny_run.stdout
    assert "<h2>Tuning</h2>" in Path(tiny_run.where["report"]).read_text()

    # --no-tune on a copy (its export folder moved, so nothing after it is cached): the earlier
    # run's choice, resolved from ML Metadata, reaches the Trainer.
    out = tmp_path / "out"
    shutil.copytree(tiny_run.where["output"], out, ignore=shutil.ignore_patterns("*.lock"))
    argv = list(tiny_run.argv)
    argv[argv.index("--output") + 1] = str(out)
    assert cli.main([*argv, "--no-tune"]) == 0
    where = local_runner.paths(out)
    metrics = json.loads(Path(where["metrics"]).read_text())
    assert metrics["tuning"]["source"] == "earlier_run"
    assert metrics["tuning"]["chosen"] == tuning["chosen"]
    assert metrics["tuning"]["artifact"] == tuning["artifact"]
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    assert P.TUNER not in nodes and P.HYPERPARAMETERS_RESOLVER in nodes
    assert nodes[P.TRAINER].state == "complete"
    summary = json.loads(
        (Path(nodes[P.TRAINER].outputs["model_run"][0].uri) / "training_summary.json").read_text()
    )
    assert summary["hyperparameters"] == tuning["chosen"]


@pytest.mark.slow
def test_no_tune_on_a_new_output_trains_the_defaults_and_fails_nothing(tmp_path, capsys):
    # The stock LatestArtifactStrategy fails its resolver node when there is nothing to resolve.
    raw = tmp_path / "raw"
    generator.generate(raw, preset="tiny", seed=0)
    out = tmp_path / "out"
    argv = ["run", "--raw", str(raw), "--output", str(out), "--epochs", "1", "--no-tune"]
    assert cli.main([*argv, "--no-baselines", "--min-recall", "0"]) == 0
    assert "no earlier run's choice: the default settings" in capsys.readouterr().out
    where = local_runner.paths(out)
    nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    assert {r.state for r in nodes.values()} == {"complete"}
    assert nodes[P.HYPERPARAMETERS_RESOLVER].outputs == {}
    metrics = json.loads(Path(where["metrics"]).read_text())
    assert metrics["tuning"] == {"source": "defaults", "chosen": {}}
    summary = json.loads(
        (Path(nodes[P.TRAINER].outputs["model_run"][0].uri) / "training_summary.json").read_text()
    )
    assert summary["hyperparameters"] is None
