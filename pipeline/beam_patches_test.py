"""The Beam data-plane race (issue 12): shown on its own, fixed, and counted in every Beam mode."""

from __future__ import annotations

import pytest
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.worker import data_plane
from tfx import v1 as tfx
from tfx.orchestration.pipeline import RunOptions

from components import examples_io
from components.export import export
from data import generator
from modules import features as F
from pipeline import beam_patches, configs, local_runner


def _bytes_lost(stream_class) -> int:
    """Writes 600 MB in 200 kB chunks while a flusher runs every millisecond; returns the loss."""
    received: list[bytes] = []
    stream = stream_class(
        close_callback=received.append, flush_callback=received.append, time_flush_threshold_ms=1
    )
    chunk, n = b"x" * 200_000, 3_000
    for _ in range(n):
        stream.write(chunk)
    stream.close()
    return n * len(chunk) - sum(map(len, received))


def test_beams_time_flushed_stream_drops_writes_that_race_its_flusher():
    # The mechanism behind the lost 1% of train rows: what a write adds between the flusher's
    # get() and _clear() is thrown away (millions of bytes here, in any run).
    assert _bytes_lost(data_plane.TimeBasedBufferingClosableOutputStream) > 0


def test_after_the_fix_the_runner_creates_only_size_based_streams():
    beam_patches.apply()
    assert beam_patches.applied()
    stream = data_plane.ClosableOutputStream.create(
        None, None, worker_handlers.DATA_BUFFER_TIME_LIMIT_MS
    )
    assert type(stream) is data_plane.SizeBasedBufferingClosableOutputStream


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam_modes")
    generator.generate(root / "raw", preset="tiny", seed=0)
    summary = export.export(root / "raw", root / "export")
    return root, summary


def _example_gen_counts(root, mode: str, name: str) -> dict[str, int]:
    """Runs the pipeline's ExampleGen in ``mode``; returns the examples per split."""
    out = root / name
    out.mkdir()
    (out / "export").symlink_to(root / "export")
    dag = local_runner.build(out, beam_pipeline_args=local_runner.beam_args(mode, 2))
    tfx.orchestration.LocalDagRunner().run(dag, run_options=RunOptions(to_nodes=["CsvExampleGen"]))
    [examples_uri] = list((out / "pipeline_root" / "CsvExampleGen" / "examples").iterdir())
    return {
        split: examples_io.count_records(str(examples_uri), split)
        for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT)
    }


def _expected(summary: dict) -> dict[str, int]:
    split = summary["split"]
    return {
        F.TRAIN_SPLIT: split["n_train"],
        F.EVAL_SPLIT: split["n_eval_queries"],
        F.ITEMS_SPLIT: split["n_items"],
    }


@pytest.mark.parametrize("mode", [m for m in configs.LOCAL_BEAM_MODES if m != "auto"])
def test_example_gen_writes_every_row_in_every_beam_mode(tiny_export, mode):
    """ExampleGen's splits equal the export's rows in every mode the CLI offers, fixed."""
    root, summary = tiny_export
    beam_patches.apply()
    assert _example_gen_counts(root, mode, mode) == _expected(summary)
