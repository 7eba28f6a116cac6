"""Compiles the same ``create_pipeline`` for Kubeflow Pipelines v2 / Vertex AI Pipelines.

Thin on purpose: paths, the container image and the Beam (Dataflow) arguments. Nothing here is a
personal project id: everything comes from flags or a JSON config file (see README, "Run on Vertex AI").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from tfx import v1 as tfx

from components.curated_schema import component as curated_schema
from pipeline import configs, pipeline

EXPORT_SUBDIR = "export"  # the default export folder under the pipeline root


@dataclass
class VertexSettings:
    """Where and how the pipeline runs on Google Cloud."""

    # Required (validate() names what is missing); empty defaults give that readable error.
    project: str = ""
    region: str = ""
    image: str = ""
    pipeline_root: str = ""  # gs://bucket/path: TFX artifacts
    # gs://bucket/path: the uploaded RetailRocket raw files; the pipeline's first step exports them.
    raw_dir: str = ""
    # gs://bucket/path: the export. With raw_dir the pipeline writes it (default:
    # <pipeline_root>/export); without, it must hold the output of `retailrec export`, uploaded.
    export_dir: str = ""
    serving_dir: str = ""  # gs:// base of pushed models; default: <pipeline_root>/serving
    temp_location: str = ""  # gs:// path for Dataflow; default: <pipeline_root>/tmp
    max_workers: int = 4
    machine_type: str = "n1-standard-4"
    # Relative: read under the project root where the task runs (the image); or a gs:// URI.
    schema_path: str = curated_schema.SCHEMA_FILE
    pipeline_name: str = configs.PIPELINE_NAME
    extra_beam_args: list[str] = field(default_factory=list)
    # The Tuner and the Trainer as Vertex AI custom jobs (empty machine type: they run in the
    # pipeline's own tasks).
    training_machine_type: str = ""
    training_accelerator_type: str = ""  # e.g. NVIDIA_TESLA_T4; empty: CPU only
    training_accelerator_count: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the setting that is missing or not a gs:// path."""
        for name in ("project", "region", "image", "pipeline_root"):
            if not getattr(self, name):
                raise ValueError(f"vertex setting '{name}' is required")
        if not self.raw_dir and not self.export_dir:
            raise ValueError(
                "vertex setting 'raw_dir' (the uploaded raw files, exported by the pipeline) or "
                "'export_dir' (an uploaded export) is required"
            )
        for name in ("pipeline_root", "raw_dir", "export_dir", "serving_dir", "temp_location"):
            value = getattr(self, name)
            if value and not value.startswith("gs://"):
                raise ValueError(f"vertex setting '{name}' must be a gs:// path, got {value!r}")
        schema = os.path.abspath(self.schema_path)
        if os.path.isabs(self.schema_path) and schema.startswith(f"{configs.REPO_ROOT}{os.sep}"):
            raise ValueError(
                f"vertex setting 'schema_path' {self.schema_path!r} is a path of this checkout, "
                "which the image does not have; give it relative to the project root "
                f"(e.g. {curated_schema.SCHEMA_FILE!r}) or as a gs:// URI"
            )
        if self.training_accelerator_type and not self.training_machine_type:
            raise ValueError(
                "vertex setting 'training_accelerator_type' needs 'training_machine_type'"
            )
        if bool(self.training_accelerator_type) != (self.training_accelerator_count > 0):
            raise ValueError(
                "vertex settings 'training_accelerator_type' and 'training_accelerator_count' "
                f"go together, got {self.training_accelerator_type!r} and "
                f"{self.training_accelerator_count}"
            )


def dataflow_beam_args(settings: VertexSettings) -> list[str]:
    """Beam arguments that run every Beam-powered component on Dataflow with the pipeline image."""
    temp = settings.temp_location or f"{settings.pipeline_root.rstrip('/')}/tmp"
    return [
        "--runner=DataflowRunner",
        f"--project={settings.project}",
        f"--region={settings.region}",
        f"--temp_location={temp}",
        f"--max_num_workers={settings.max_workers}",
        f"--machine_type={settings.machine_type}",
        # The workers run the same image, so the package and TF_USE_LEGACY_KERAS are there.
        f"--sdk_container_image={settings.image}",
        "--experiments=use_runner_v2",
        *settings.extra_beam_args,
    ]


def vertex_training_args(settings: VertexSettings) -> dict | None:
    """The Vertex AI custom-job settings of the Tuner and the Trainer, or None to tune and train
    inside the pipeline's tasks.

    The jobs run the pipeline image, so tuner_fn, run_fn, TensorFlow and TF_USE_LEGACY_KERAS are
    there. Both components get the same machine: a trial costs about the Trainer's validated fit.
    """
    if not settings.training_machine_type:
        return None
    machine_spec = {"machine_type": settings.training_machine_type}
    if settings.training_accelerator_type:
        machine_spec["accelerator_type"] = settings.training_accelerator_type
        machine_spec["accelerator_count"] = settings.training_accelerator_count
    return {
        "project": settings.project,
        "region": settings.region,
        "job_spec": {
            "worker_pool_specs": [
                {
                    "machine_spec": machine_spec,
                    "replica_count": 1,
                    "container_spec": {"image_uri": settings.image},
                }
            ],
        },
    }


def export_dir(settings: VertexSettings) -> str:
    """The export folder: the setting, or with a raw folder ``<pipeline_root>/export``."""
    return settings.export_dir or f"{settings.pipeline_root.rstrip('/')}/{EXPORT_SUBDIR}"


def build(settings: VertexSettings, **pipeline_kwargs) -> tfx.dsl.Pipeline:
    """The pipeline with Cloud paths and Dataflow arguments.

    Args:
      settings: the Vertex settings (validated here).
      **pipeline_kwargs: more ``create_pipeline`` arguments (``export_config``, ``min_recall``,
        ``training_config``, ...).
    """
    settings.validate()
    return pipeline.create_pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=settings.pipeline_root,
        export_dir=export_dir(settings),
        raw_dir=settings.raw_dir or None,
        schema_path=settings.schema_path,
        serving_dir=settings.serving_dir or f"{settings.pipeline_root.rstrip('/')}/serving",
        beam_pipeline_args=dataflow_beam_args(settings),
        vertex_training_args=vertex_training_args(settings),
        # The KFP v2 compiler knows TFX's own strategy class only (see create_pipeline).
        latest_artifact_strategy=tfx.dsl.experimental.LatestArtifactStrategy,
        **pipeline_kwargs,
    )


def compile_pipeline(settings: VertexSettings, out_file: str, **pipeline_kwargs) -> str:
    """Writes the KFP v2 pipeline spec (JSON) to ``out_file`` and returns its path.

    The Export task is never served from Vertex's cache: its inputs are a folder's URI, not its
    bytes, so a cached Export would miss raw files replaced under the same URI. It re-checks the
    bytes itself (the export's fingerprint) and leaves an identical export untouched, so the
    tasks after it still come from the cache.

    Raises:
      ValueError: the spec names a path of this checkout (the image would not have it).
    """
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=settings.image
        ),
        output_dir=os.path.dirname(os.path.abspath(out_file)),
        output_filename=os.path.basename(out_file),
    )
    runner.run(build(settings, **pipeline_kwargs))
    with open(out_file) as fh:
        job = json.load(fh)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    if pipeline.EXPORT in tasks:
        tasks[pipeline.EXPORT].pop("cachingOptions", None)
    text = json.dumps(job, indent=2, sort_keys=True)
    if str(configs.REPO_ROOT) in text:
        line = next(ln for ln in text.splitlines() if str(configs.REPO_ROOT) in ln)
        os.remove(out_file)  # a spec that would fail on Vertex is not left behind
        raise ValueError(
            f"{out_file}: the spec names a path of this checkout ({configs.REPO_ROOT}), which "
            f"the image does not have: {line.strip()[:200]}"
        )
    with open(out_file, "w") as fh:
        fh.write(text + "\n")
    return out_file
