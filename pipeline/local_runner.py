"""Runs the pipeline on this machine: LocalDagRunner, a SQLite ML Metadata store, Beam DirectRunner.

Layout of the output folder::

    OUTPUT/export/          the export (CSVs + export_summary.json)
    OUTPUT/pipeline_root/   TFX artifacts
    OUTPUT/metadata.sqlite  ML Metadata (lineage, caching)
    OUTPUT/serving/         pushed models (TF Serving layout)
    OUTPUT/metrics.json     every model's metrics (DESIGN 8)
    OUTPUT/report.html      the run report (plots, gate decision, lineage)
    OUTPUT/logs/run.log     library logs of the run
"""

from __future__ import annotations

import os
from pathlib import Path

from tfx import v1 as tfx

from pipeline import configs, pipeline

EXPORT_SUBDIR = "export"
PIPELINE_ROOT_SUBDIR = "pipeline_root"
METADATA_FILE = "metadata.sqlite"
SERVING_SUBDIR = "serving"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
# Named to Beam as the dependency of the local runs (see beam_args); Beam never reads it locally.
SETUP_FILE = Path(__file__).resolve().parents[1] / "setup.py"


def paths(output_dir: str | os.PathLike) -> dict[str, str]:
    """The fixed locations under an output folder."""
    out = Path(output_dir).resolve()
    return {
        "output": str(out),
        "export": str(out / EXPORT_SUBDIR),
        "pipeline_root": str(out / PIPELINE_ROOT_SUBDIR),
        "metadata": str(out / METADATA_FILE),
        "serving": str(out / SERVING_SUBDIR),
        "metrics": str(out / METRICS_FILE),
        "report": str(out / REPORT_FILE),
    }


def beam_args(
    mode: str = configs.LOCAL_BEAM_MODE, workers: int = configs.LOCAL_BEAM_WORKERS
) -> list[str]:
    """DirectRunner arguments of every Beam-powered component.

    The last one is there for TFX, not Beam: with any Beam argument and no dependency flag, every
    Beam component copies TFX's installed package (48 MB) into a new /tmp folder, builds an sdist of
    it and never deletes it. The DirectRunner never stages dependencies (its workers import this very
    environment), so naming the project's own setup file stops that and changes nothing else.
    """
    workers = 1 if mode == "in_memory" else workers
    return [
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={workers}",
        f"--setup_file={SETUP_FILE}",
    ]


def build(output_dir: str | os.PathLike, **pipeline_kwargs) -> tfx.dsl.Pipeline:
    """The pipeline with local paths, SQLite metadata and DirectRunner Beam arguments."""
    where = paths(output_dir)
    return pipeline.create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=where["pipeline_root"],
        export_dir=where["export"],
        schema_path=str(configs.CURATED_SCHEMA_PATH),
        serving_dir=where["serving"],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            where["metadata"]
        ),
        beam_pipeline_args=beam_args(),
        **pipeline_kwargs,
    )


def run(output_dir: str | os.PathLike, **pipeline_kwargs) -> None:
    """Runs the whole DAG with LocalDagRunner over ``OUTPUT/export``."""
    tfx.orchestration.LocalDagRunner().run(build(output_dir, **pipeline_kwargs))
