"""A split that lost rows stops the run with one line and exit status 2; a crash is one line too.

Both tests damage the examples CsvExampleGen wrote, between ExampleGen and the rest of the DAG: a
partial run (up to CsvExampleGen) writes them, the test truncates or corrupts a file, and then
``retailrec run`` over the same export finds ExampleGen's output in its cache and goes on from
there, as a run would after a silent loss inside ExampleGen.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import tensorflow as tf
from tfx import v1 as tfx
from tfx.orchestration.pipeline import RunOptions

from components import examples_io
from components.export import export
from data import generator
from modules import features as F
from pipeline import beam_patches, cli, local_runner


def _examples_after_example_gen(root: Path) -> tuple[Path, Path, dict]:
    """Exports tiny data into OUTPUT/export and runs the DAG up to CsvExampleGen."""
    raw, out = root / "raw", root / "out"
    generator.generate(raw, preset="tiny", seed=0)
    summary = export.export(raw, out / "export")
    beam_patches.apply()
    dag = local_runner.build(out, beam_pipeline_args=local_runner.beam_args("in_memory"))
    tfx.orchestration.LocalDagRunner().run(dag, run_options=RunOptions(to_nodes=["CsvExampleGen"]))
    [examples] = list((out / "pipeline_root" / "CsvExampleGen" / "examples").iterdir())
    return raw, out, {"examples": examples, "summary": summary}


def _run(raw: Path, out: Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["run", "--raw", str(raw), "--output", str(out), "--epochs", "1", "--beam-mode"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main([*argv, "in_memory", "--no-baselines", "--min-recall", "0"])
    return code, stdout.getvalue(), stderr.getvalue()


def test_truncated_train_split_stops_the_run_with_the_count(tmp_path):
    raw, out, found = _examples_after_example_gen(tmp_path)
    path = sorted((found["examples"] / f"Split-{F.TRAIN_SPLIT}").glob("*.gz"))[0]
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records[:-7]:  # 7 rows lost from one shard
            writer.write(record)
    n_train = found["summary"]["split"]["n_train"]
    left = examples_io.count_records(str(found["examples"]), F.TRAIN_SPLIT)
    assert left == n_train - 7

    code, stdout, stderr = _run(raw, out)

    assert code == cli.EXIT_BAD_INPUT == 2
    [line] = [x for x in stderr.splitlines() if x.strip()]
    assert line == (
        f"error: row count mismatch in CsvExampleGen: split 'train' should have {n_train:,} "
        f"examples, found {left:,}; the run stops before anything is pushed"
    )
    assert "Traceback" not in stdout + stderr
    assert "[pipeline] Trainer" not in stdout  # stopped before training
    assert not (out / "serving").exists()
    log = (out / "logs" / "run.log").read_text()
    assert "Traceback" in log and "RowCountMismatch" in log


def test_a_crashing_component_is_one_line_and_the_traceback_goes_to_the_log(tmp_path):
    raw, out, found = _examples_after_example_gen(tmp_path)
    path = sorted((found["examples"] / f"Split-{F.EVAL_SPLIT}").glob("*.gz"))[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a cut gzip stream: unreadable

    code, stdout, stderr = _run(raw, out)

    assert code == cli.EXIT_COMPONENT_FAILED == 1
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 2, stderr
    assert lines[0].startswith("error: StatisticsGen failed: ")
    assert lines[1].strip() == f"traceback: {out / 'logs' / 'run.log'}"
    assert "Traceback" not in stdout + stderr
    assert "Traceback" in (out / "logs" / "run.log").read_text()


def test_metrics_record_the_counts_of_every_boundary(real_run):
    counts = real_run.metrics["counts"]
    components = {c["component"] for c in counts["checks"]}
    assert components >= {
        "CsvExampleGen",
        "StatisticsGen",
        "Transform",
        "Trainer",
        "Baselines",
        "ScannIndex",
        "RetrievalEvaluator",
    }
    assert all(c["expected"] == c["found"] for c in counts["checks"])
    assert counts["all_equal"] is True
    assert counts["export"]["train"] == real_run.metrics["protocol"]["n_train"]
    assert "[counts] train:" in real_run.stdout
