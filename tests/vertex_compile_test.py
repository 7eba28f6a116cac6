"""The Vertex/Kubeflow v2 spec compiles with no cloud access and carries image and Dataflow args."""

from __future__ import annotations

import json

import pytest

from pipeline import cli

IMAGE = "europe-west4-docker.pkg.dev/example-project/retailrec/pipeline:1"
FLAGS = [
    "--project=example-project",
    "--region=europe-west4",
    f"--image={IMAGE}",
    "--pipeline-root=gs://example-bucket/root",
    "--export-dir=gs://example-bucket/export",
    "--max-workers=8",
]


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
