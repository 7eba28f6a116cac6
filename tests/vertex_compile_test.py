"""The Vertex/Kubeflow v2 spec compiles with no cloud access, carries image and Dataflow args, starts
from the raw files, names no path of the compiling machine, and runs here as Vertex would run it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.utils import import_utils

from components.export import component as export_component
from pipeline import cli, configs, vertex_check
from pipeline import pipeline as P

IMAGE = "europe-west4-docker.pkg.dev/example-project/retailrec/pipeline:1"
FLAGS = [
    "--project=example-project",
    "--region=europe-west4",
    f"--image={IMAGE}",
    "--pipeline-root=gs://example-bucket/root",
    "--export-dir=gs://example-bucket/export",
    "--max-workers=8",
]
# The pipeline exports the raw files itself: no --export-dir.
RAW_FLAGS = [f for f in FLAGS if not f.startswith("--export-dir")] + [
    "--raw-dir=gs://example-bucket/raw"
]
# Tiny data, only the threshold bar: the check's model is blessed and pushed (as tiny_run's).
TINY_FLAGS = ["--epochs=1", "--no-baselines", "--min-recall=0"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    assert cli.main(["compile", "--engine", "vertex", "--out", str(out), *FLAGS]) == 0
    return json.loads(out.read_text())["pipelineSpec"]


def test_every_component_is_a_task(spec):
    from pipeline import local_runner

    tasks = set(spec["root"]["dag"]["tasks"])
    for node in local_runner.build("/tmp/unused").components:
        # A resolver compiles to one task per resolved channel: "<id>-model-resolver", ...
        assert node.id in tasks or any(t.startswith(f"{node.id}-") for t in tasks), node.id


def test_every_executor_runs_the_pipeline_image(spec):
    executors = spec["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    assert images == {IMAGE}


def test_beam_components_run_on_dataflow(spec):
    args = spec["deploymentSpec"]["executors"]["StatisticsGen_executor"]["container"]["args"]
    for expected in (
        "--runner=DataflowRunner",
        "--project=example-project",
        "--region=europe-west4",
        "--temp_location=gs://example-bucket/root/tmp",
        "--max_num_workers=8",
        f"--sdk_container_image={IMAGE}",
    ):
        assert expected in args


def test_missing_or_local_paths_are_refused(tmp_path, capsys):
    out = str(tmp_path / "p.json")
    bad = [f for f in FLAGS if not f.startswith("--project")]
    assert cli.main(["compile", "--out", out, *bad]) == 2
    assert "'project' is required" in capsys.readouterr().err
    local = [f if "export-dir" not in f else "--export-dir=/tmp/export" for f in FLAGS]
    assert cli.main(["compile", "--out", out, *local]) == 2
    assert "must be a gs:// path" in capsys.readouterr().err


def test_settings_from_a_config_file(tmp_path):
    config = tmp_path / "vertex.json"
    config.write_text(
        json.dumps(
            {
                "project": "p2",
                "region": "us-central1",
                "image": IMAGE,
                "pipeline_root": "gs://b2/root",
                "export_dir": "gs://b2/export",
            }
        )
    )
    out = tmp_path / "p.json"
    assert cli.main(["compile", "--config", str(config), "--out", str(out)]) == 0
    text = out.read_text()
    assert "--project=p2" in text and "gs://b2/root" in text


def test_trainer_as_a_vertex_custom_job(tmp_path):
    out = tmp_path / "p.json"
    flags = [
        *FLAGS,
        "--training-machine-type=n1-standard-8",
        "--training-accelerator-type=NVIDIA_TESLA_T4",
        "--training-accelerator-count=1",
    ]
    assert cli.main(["compile", "--out", str(out), *flags]) == 0
    spec = json.loads(out.read_text())["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    trainer = json.dumps(executors["Trainer_executor"])
    assert "google_cloud_ai_platform" in trainer  # the Vertex training executor
    parameters = spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]
    config = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    job = config["ai_platform_training_args"]
    assert job["project"] == "example-project"
    pool = job["job_spec"]["worker_pool_specs"][0]
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
    }
    assert config["ai_platform_vertex_region"] == "europe-west4"


def test_default_trainer_runs_in_the_pipeline_task(spec):
    trainer = json.dumps(spec["deploymentSpec"]["executors"]["Trainer_executor"])
    assert "google_cloud_ai_platform" not in trainer


def test_accelerator_without_count_is_refused(tmp_path, capsys):
    out = str(tmp_path / "p.json")
    flags = [*FLAGS, "--training-machine-type=n1-standard-8", "--training-accelerator-type=T4"]
    assert cli.main(["compile", "--out", out, *flags]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.fixture(scope="module")
def raw_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("vertex_raw") / "pipeline.json"
    assert cli.main(["compile", "--out", str(out), *RAW_FLAGS]) == 0
    return out.read_text()


def _tasks(job_text: str) -> dict:
    return json.loads(job_text)["pipelineSpec"]["root"]["dag"]["tasks"]


def _constant(task: dict, parameter: str):
    return vertex_check._constant(task["inputs"]["parameters"][parameter]["runtimeValue"])


def test_the_export_is_the_first_step(raw_job):
    tasks = _tasks(raw_job)
    executors = json.loads(raw_job)["pipelineSpec"]["deploymentSpec"]["executors"]
    importer = executors[f"{export_component.RAW_IMPORTER_NODE_ID}_executor"]["importer"]
    assert vertex_check._constant(importer["artifactUri"]) == "gs://example-bucket/raw"
    export = tasks[P.EXPORT]
    assert export["inputs"]["artifacts"]["raw"]["taskOutputArtifact"]["producerTask"] == (
        export_component.RAW_IMPORTER_NODE_ID
    )
    export_dir = "gs://example-bucket/root/export"  # default: under the pipeline root
    assert _constant(export, "export_dir") == export_dir
    assert _constant(export, "cutoff") == "2015-08-01"
    assert _constant(tasks["CsvExampleGen"], "input_base") == export_dir
    assert _constant(tasks[P.VALIDATION_GATE], "export_dir") == export_dir
    order = vertex_check.dag_order(tasks)
    for reader in ("CsvExampleGen", P.VALIDATION_GATE):
        assert P.EXPORT in tasks[reader]["dependentTasks"]
        assert order.index(P.EXPORT) < order.index(reader)
    # Raw files replaced under the same URI must be exported again: the Export is never cached
    # (it reuses an identical export itself); the tasks after it are.
    assert "cachingOptions" not in export
    assert tasks["CsvExampleGen"]["cachingOptions"] == {"enableCache": True}


def test_an_uploaded_export_still_works_without_the_export_step(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert P.EXPORT not in tasks and export_component.RAW_IMPORTER_NODE_ID not in tasks
    assert _constant(tasks["CsvExampleGen"], "input_base") == "gs://example-bucket/export"


def test_no_path_of_this_checkout_in_the_spec(spec, raw_job):
    for text in (json.dumps(spec), raw_job):
        assert str(configs.REPO_ROOT) not in text
    # The curated schema is read where the task runs (the image), relative to the project root.
    assert _constant(_tasks(raw_job)[P.CURATED_SCHEMA_IMPORTER], "schema_file") == (
        "schema/schema.pbtxt"
    )


def test_a_schema_path_of_this_checkout_is_refused(tmp_path, capsys):
    schema = str(configs.CURATED_SCHEMA_PATH)
    out = str(tmp_path / "p.json")
    assert cli.main(["compile", "--out", out, *RAW_FLAGS, f"--schema-path={schema}"]) == 2
    assert "is a path of this checkout" in capsys.readouterr().err


def test_raw_or_export_folder_is_required(tmp_path, capsys):
    flags = [f for f in FLAGS if not f.startswith("--export-dir")]
    assert cli.main(["compile", "--out", str(tmp_path / "p.json"), *flags]) == 2
    assert "'raw_dir'" in capsys.readouterr().err
    local = [*flags, "--raw-dir=/tmp/raw"]
    assert cli.main(["compile", "--out", str(tmp_path / "p.json"), *local]) == 2
    assert "'raw_dir' must be a gs:// path" in capsys.readouterr().err


def test_every_artifact_type_resolves_as_the_task_entry_point_does(raw_job):
    # kubeflow_v2_run_executor imports a custom type by its schema title (module.Class): without
    # the `retailrec` module, every task reading or writing RowCounts failed on Vertex.
    titles = set(re.findall(r"title: ([\w.]+)", raw_job))
    assert {"retailrec.RowCounts", "retailrec.RawData", "tfx.Examples"} <= titles
    for title in titles:
        schema = pipeline_spec_pb2.ArtifactTypeSchema(schema_title=title)
        path = kubeflow_v2_entrypoint_utils._retrieve_class_path(schema)
        assert import_utils.import_class_by_path(path).TYPE_NAME in (title, title.split(".")[1])


def test_dag_order_refuses_a_producer_the_spec_does_not_have():
    # TFX 1.16 compiles an upstream output used as a parameter to "<producer>_task", a task
    # that does not exist (why the export folder reaches CsvExampleGen as a constant).
    tasks = {
        "Export": {},
        "CsvExampleGen": {
            "inputs": {
                "parameters": {
                    "input_base": {
                        "taskOutputParameter": {
                            "producerTask": "Export_task",
                            "outputParameterKey": "export",
                        }
                    }
                }
            }
        },
    }
    with pytest.raises(vertex_check.CheckError, match="'Export_task', which the spec does not"):
        vertex_check.dag_order(tasks)
    assert vertex_check.dag_order({"b": {"dependentTasks": ["a"]}, "a": {}}) == ["a", "b"]


def test_the_check_refuses_to_stand_in_for_a_custom_job(tmp_path):
    out = tmp_path / "p.json"
    flags = [*RAW_FLAGS, "--training-machine-type=n1-standard-8"]
    assert cli.main(["compile", "--out", str(out), *flags]) == 0
    with pytest.raises(vertex_check.CheckError, match="Vertex AI custom job"):
        vertex_check.check(out, tmp_path / "work")


def test_check_flag_checks_the_spec_just_written(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_check(spec, work, log):
        calls.append((spec, work))
        return vertex_check.CheckResult(str(work), [], blessed, {"Pusher": "/x/1"}, [])

    monkeypatch.setattr(vertex_check, "check", fake_check)
    out = str(tmp_path / "p.json")
    blessed = True
    argv = ["compile", "--out", out, *RAW_FLAGS, "--check", "--check-dir", str(tmp_path / "w")]
    assert cli.main(argv) == 0
    assert calls == [(out, str(tmp_path / "w"))]
    assert "[check] blessed: yes" in capsys.readouterr().out
    blessed = False  # the gate refused the check's model: nothing pushed, exit status 3
    assert cli.main(["compile", "--out", out, "--check-only"]) == cli.EXIT_NOT_BLESSED
    assert len(calls) == 2


def test_check_result_reads_the_gate_and_the_pushes(tmp_path):
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    reasons = ["FAIL recall@50 0.1 >= best baseline svd 0.4"]
    (evaluation / "metrics.json").write_text(json.dumps({"reasons": reasons}))
    artifact = {"type": {"instanceSchema": "title: tfx.ModelEvaluation\ntype: object\n"}}
    task = vertex_check.TaskRun(
        P.EVALUATOR, "container", 1.0, {"evaluation": [{**artifact, "uri": str(evaluation)}]}
    )
    assert vertex_check._gate_reasons([task]) == reasons
    result = vertex_check.CheckResult("/s", [task], False, {}, ["Pusher"], reasons)
    assert not result.pushed
    assert f"[gate] {reasons[0]}" in result.summary()
    assert "[check] Pusher pushed NOTHING" in result.summary()


def test_the_check_puts_tiny_data_where_the_spec_reads_it(spec, raw_job, tmp_path):
    storage = vertex_check.local_storage(tmp_path)
    lines = []
    # With the Export step: the raw files, where the importer points.
    with_export = json.loads(vertex_check.to_local(raw_job, storage))["pipelineSpec"]
    vertex_check._place_data(with_export, None, tmp_path, lines.append)
    assert (Path(storage) / "example-bucket/raw/events.csv").is_file()
    # Without it: an export, where CsvExampleGen reads it.
    uploaded = json.loads(vertex_check.to_local(json.dumps(spec), storage))
    vertex_check._place_data(uploaded, None, tmp_path, lines.append)
    assert (Path(storage) / "example-bucket/export/export_summary.json").is_file()
    assert "(the spec has no Export step)" in lines[-1]


def test_a_failing_task_stops_the_check_and_names_its_log(raw_job, tmp_path):
    job = json.loads(raw_job)
    schema = job["pipelineSpec"]["root"]["dag"]["tasks"][P.CURATED_SCHEMA_IMPORTER]
    schema["inputs"]["parameters"]["schema_file"]["runtimeValue"]["constantValue"] = {
        "stringValue": "schema/nowhere.pbtxt"
    }
    spec = tmp_path / "broken.json"
    spec.write_text(json.dumps(job))
    # One task at a time: the schema task (first by name among the ready ones) fails, nothing after.
    with pytest.raises(vertex_check.CheckError) as failed:
        vertex_check.check(spec, tmp_path / "work", max_parallel=1, log=lambda line: None)
    message = str(failed.value)
    assert f"task '{P.CURATED_SCHEMA_IMPORTER}' failed (executor, exit status 1)" in message
    assert str(tmp_path / "work" / "logs" / f"{P.CURATED_SCHEMA_IMPORTER}.log") in message
    assert "nowhere.pbtxt: curated schema not found" in message  # the log's last lines
    assert not (tmp_path / "work" / "logs" / f"{P.EXPORT}.log").exists()


# --------------------------------------------------------------------------------------------
# Compiled in one copy of the project, run from another, as Vertex would: the whole DAG.

# What the Dockerfile copies into the image (see .dockerignore), and no caches.
_NOT_IN_THE_IMAGE = shutil.ignore_patterns(
    ".venv", ".git", "output", "generated", "results", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "*.egg-info", "*.partial-*",
)  # fmt: skip


def _retailrec(project: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """``retailrec ARGV`` with the code of ``project`` (cwd and PYTHONPATH), not this checkout."""
    env = {**os.environ, "PYTHONPATH": str(project), "TF_USE_LEGACY_KERAS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("vertex_check")
    build, image = root / "build", root / "image"
    for copy in (build, image):
        shutil.copytree(configs.REPO_ROOT, copy, ignore=_NOT_IN_THE_IMAGE)
    spec = root / "pipeline.json"
    compiled = _retailrec(build, ["compile", "--out", str(spec), *RAW_FLAGS, *TINY_FLAGS])
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    shutil.rmtree(build)  # nothing of the compiling copy may be needed from here on
    work = root / "work"
    argv = ["compile", "--out", str(spec), "--check-only", "--check-dir", str(work)]
    return spec, _retailrec(image, argv), work, build


@pytest.mark.slow
def test_compiled_elsewhere_runs_here_as_vertex_would(checked):
    spec, run, work, build = checked
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    text = spec.read_text()
    assert str(build) not in text and str(configs.REPO_ROOT) not in text
    # One line per task of the spec, each ok.
    tasks = set(_tasks(text))
    ran = re.findall(r"^\[check\] +\d+/(\d+) (\S+) +(\w+) +ok ", run.stdout, flags=re.M)
    assert {name for _, name, _ in ran} == tasks and len(ran) == len(tasks)
    assert {total for total, _, _ in ran} == {str(len(tasks))}
    assert "[check] blessed: yes" in run.stdout
    # The Export wrote the tiny data's export where the spec says (gs:// -> WORK/gcs/).
    storage = Path(vertex_check.local_storage(work))
    summary = json.loads((storage / "example-bucket/root/export/export_summary.json").read_text())
    assert summary["split"]["n_train"] > 0
    # Both models pushed in TF Serving's layout under the (local) pipeline root.
    for name in (P.SERVING_MODEL_NAME, P.SCANN_SERVING_MODEL_NAME):
        (version,) = (storage / "example-bucket/root/serving" / name).iterdir()
        assert (version / "saved_model.pb").is_file()
        assert f"pushed {version}" in run.stdout
