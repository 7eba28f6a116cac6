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

from pipeline import beam_patches, configs, pipeline

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


def beam_mode(mode: str, n_train_rows: int) -> str:
    """The DirectRunner mode to run: ``mode`` itself, or for ``auto`` the faster one at this size.

    On 2 cores in_memory won on the default export (173k train rows, 8% faster: the worker processes
    take seconds to start), multi_processing on larger ones (554k rows 20% faster, 1.9M rows 34%);
    the two cross near 230k rows (docs/benchmarks.md).
    """
    if mode not in configs.LOCAL_BEAM_MODES:
        raise ValueError(f"unknown Beam mode {mode!r}; choose one of {configs.LOCAL_BEAM_MODES}")
    if mode != "auto":
        return mode
    if n_train_rows >= configs.LOCAL_BEAM_MULTI_PROCESSING_MIN_TRAIN_ROWS:
        return "multi_processing"
    return "in_memory"


def beam_workers(mode: str, workers: int) -> int:
    """Workers of ``mode``: in_memory always runs one, in the calling process."""
    return 1 if mode == "in_memory" else workers


def beam_args(mode: str = "in_memory", workers: int = configs.LOCAL_BEAM_WORKERS) -> list[str]:
    """DirectRunner arguments of every Beam-powered component (``mode`` resolved by beam_mode).

    The last one is there for TFX, not Beam: with any Beam argument and no dependency flag, every
    Beam component copies TFX's installed package (48 MB) into a new /tmp folder, builds an sdist of
    it and never deletes it. The DirectRunner never stages dependencies (its workers import this very
    environment), so naming the project's own setup file stops that and changes nothing else.
    """
    return [
        f"--direct_running_mode={mode}",
        f"--direct_num_workers={beam_workers(mode, workers)}",
        f"--setup_file={SETUP_FILE}",
    ]


def build(
    output_dir: str | os.PathLike, beam_pipeline_args: list[str] | None = None, **pipeline_kwargs
) -> tfx.dsl.Pipeline:
    """The pipeline with local paths, SQLite metadata and DirectRunner Beam arguments.

    ``beam_pipeline_args`` defaults to ``beam_args()`` (in_memory).
    """
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
        beam_pipeline_args=beam_args() if beam_pipeline_args is None else beam_pipeline_args,
        **pipeline_kwargs,
    )


def run(output_dir: str | os.PathLike, **build_kwargs) -> None:
    """Runs the whole DAG with LocalDagRunner over ``OUTPUT/export`` (arguments: see build).

    Beam's DirectRunner loses rows in multi_processing mode without ``beam_patches`` (issue 12).
    """
    beam_patches.apply()
    tfx.orchestration.LocalDagRunner().run(build(output_dir, **build_kwargs))
