"""Beam DirectRunner modes on the pipeline's Beam-powered components (issue 6).

Runs the real DAG up to Transform (CsvExampleGen, StatisticsGen, SchemaGen, the curated schema,
ExampleValidator, ValidationGate, Transform) with LocalDagRunner, once per Beam mode and repeat, each
in a fresh process with a fresh pipeline root and no cache. The figures are each component's wall
time as ML Metadata records it and the whole sub-DAG's wall time; the medians go to
docs/benchmarks.md.

Modes (``--modes``, comma separated):

* ``in_memory``: one in-process worker (``--direct_running_mode=in_memory``); what TFX does with no
  Beam arguments.
* ``multi_processing``: ``--direct_num_workers`` worker processes (default 2, the machine's cores).
* ``multi_threading``: the same number of threads in one process.
* ``in_memory_sdist``: in_memory, letting TFX build its "ephemeral" tfx sdist in every Beam
  component (what any Beam argument without a dependency flag costs; see pipeline/configs.py).

    python benchmarks/bench_beam.py --export OUTPUT/export [--repeats 3] [--modes ...]
    python benchmarks/bench_beam.py --raw data/generated/default   # exports first
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# The Beam-powered part of the DAG and what it needs upstream.
NODES = (
    "CsvExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "CuratedSchemaImporter",
    "CurateSchema",
    "ExampleValidator",
    "ValidationGate",
    "Transform",
)
BEAM_NODES = ("CsvExampleGen", "StatisticsGen", "Transform")
MODES = ("in_memory", "multi_processing", "multi_threading", "in_memory_sdist")


def _one(export_dir: str, work: str, mode: str, workers: int) -> dict:
    """One run of the sub-DAG in this process; returns per-node seconds."""
    from tfx import v1 as tfx
    from tfx.orchestration.pipeline import RunOptions

    from pipeline import beam_patches, configs, local_runner, pipeline
    from reporting import results

    if mode == "in_memory_sdist":
        beam_args = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    else:
        beam_args = local_runner.beam_args(mode, workers)
    metadata = os.path.join(work, "metadata.sqlite")
    dag = pipeline.create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=os.path.join(work, "pipeline_root"),
        export_dir=export_dir,
        schema_path=str(configs.CURATED_SCHEMA_PATH),
        serving_dir=os.path.join(work, "serving"),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata
        ),
        beam_pipeline_args=beam_args,
        enable_cache=False,
    )
    started = time.perf_counter()
    # A partial run: Transform and everything upstream of it (NODES), nothing after.
    beam_patches.apply()  # Beam loses rows in the gRPC modes without it (issue 12)
    tfx.orchestration.LocalDagRunner().run(dag, run_options=RunOptions(to_nodes=["Transform"]))
    total = time.perf_counter() - started
    nodes = results.latest_run(results.open_store(metadata), configs.PIPELINE_NAME)
    failed = [n for n in NODES if n not in nodes or nodes[n].state != "complete"]
    if failed:
        raise RuntimeError(f"{mode}: nodes did not complete: {failed}")
    # This process and its Beam worker processes (multi_processing), each at its own peak.
    peak_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {
        "total": round(total, 1),
        **{n: nodes[n].seconds for n in BEAM_NODES},
        "peak_rss_gib": round(peak_kib / 1024 / 1024, 2),
    }


def _median_table(rows: list[dict]) -> dict:
    table = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        runs = [r for r in rows if r["mode"] == mode]
        table[mode] = {
            key: round(statistics.median(r[key] for r in runs), 1)
            for key in ("total", *BEAM_NODES, "peak_rss_gib")
        }
        table[mode]["repeats"] = len(runs)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", help="an export folder (OUTPUT/export)")
    parser.add_argument("--raw", help="a raw folder to export first (when --export is absent)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="in_memory,multi_processing,multi_threading")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", help="scratch folder (default: a temp dir)")
    parser.add_argument("--json", help="also write the rows and medians here")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        mode, work = args.one
        print(json.dumps(_one(args.export, work, mode, args.workers)))
        return

    work_root = Path(args.work or tempfile.mkdtemp(prefix="bench_beam_"))
    export_dir = args.export
    if not export_dir:
        from components.export import export

        export_dir = str(work_root / "export")
        if not Path(export_dir, "export_summary.json").exists():
            export.export(args.raw, export_dir)
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; known: {MODES}")

    rows = []
    for repeat in range(args.repeats):
        for mode in modes:  # interleaved, so a slow spell of the machine hits every mode
            work = work_root / f"{mode}_{repeat}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            tmp_before = len(list(Path(tempfile.gettempdir()).glob("tmp*/build/tfx")))
            cmd = [sys.executable, __file__, "--export", export_dir, "--workers"]
            cmd += [str(args.workers), "--one", mode, str(work)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            row = {"mode": mode, "repeat": repeat, **json.loads(done.stdout.splitlines()[-1])}
            row["tfx_sdists_left_in_tmp"] = (
                len(list(Path(tempfile.gettempdir()).glob("tmp*/build/tfx"))) - tmp_before
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(work, ignore_errors=True)
    medians = _median_table(rows)
    summary = json.loads(Path(export_dir, "export_summary.json").read_text())["split"]
    report = {
        "export": export_dir,
        "n_train": summary["n_train"],
        "n_eval_queries": summary["n_eval_queries"],
        "n_items": summary["n_items"],
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "medians": medians,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, **report}, indent=2))


if __name__ == "__main__":
    main()
