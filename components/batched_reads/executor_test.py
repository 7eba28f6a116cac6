"""The stock StatisticsGen and Transform executors, reading in batches of READ_BATCH_ROWS."""

import json
import re

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.testing.util import assert_that
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import executor as stock_statistics_gen
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.tfxio import tf_example_record

from components.batched_reads import executor


def _write_examples(path, n: int, offset: int = 0) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in range(offset, offset + n):
            example = tf.train.Example()
            example.features.feature["item"].int64_list.value.append(i % 37)
            example.features.feature["event"].bytes_list.value.append(
                [b"view", b"addtocart", b"transaction"][i % 3]
            )
            example.features.feature["price"].float_list.value.append(i * 0.25)
            writer.write(example.SerializeToString())


def test_the_source_batches_the_given_rows_where_beam_would_stop_at_1000(tmp_path):
    _write_examples(tmp_path / "data.gz", 9000)
    tfxio = tf_example_record.TFExampleRecord(
        file_pattern=str(tmp_path / "data.gz"), telemetry_descriptors=["test"]
    )
    batched = executor.BatchedTFXIO(tfxio, rows=4096)
    assert batched.telemetry_descriptors == tfxio.telemetry_descriptors  # the rest is the TFXIO's

    def check(sizes):
        assert sum(sizes) == 9000
        assert max(sizes) == 4096  # Beam's own batching stops at 1,000 records

    with beam.Pipeline() as pipeline:
        sizes = pipeline | batched.BeamSource() | beam.Map(lambda batch: batch.num_rows)
        assert_that(sizes, check)


def _examples_artifact(tmp_path):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    for split, n in (("train", 2500), ("eval", 700)):
        folder = tmp_path / "examples" / f"Split-{split}"
        folder.mkdir(parents=True)
        _write_examples(folder / "data.gz", n, offset=n)
    return examples


def _statistics(executor_class, examples, out):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(out)
    executor_class().Do(
        {"examples": [examples]},
        {"statistics": [statistics]},
        {"exclude_splits": json.dumps([])},
    )
    return {
        split: tfdv.load_stats_binary(str(out / f"Split-{split}" / "FeatureStats.pb"))
        for split in ("train", "eval")
    }


def _rounded(statistics) -> str:
    """The statistics as text, every number to 12 significant digits."""
    text = text_format.MessageToString(statistics)
    return re.sub(r"-?\d+\.\d+(e[-+]?\d+)?", lambda m: f"{float(m[0]):.12g}", text)


def test_statistics_are_the_stock_executors_and_the_reader_is_restored(tmp_path):
    examples = _examples_artifact(tmp_path)
    ours = _statistics(executor.StatisticsGenExecutor, examples, tmp_path / "ours")
    stock = _statistics(stock_statistics_gen.Executor, examples, tmp_path / "stock")
    for split in ("train", "eval"):
        assert ours[split].datasets[0].num_examples == {"train": 2500, "eval": 700}[split]
        # Equal but for the last bits of sums taken in another order.
        assert _rounded(ours[split]) == _rounded(stock[split])
    assert stock_statistics_gen.tfxio_utils is tfxio_utils


def test_transform_asks_for_the_batch_size_but_keeps_raw_sequence_examples_at_one():
    processor = executor._BatchedTransformProcessor()  # noqa: SLF001
    tf_example = example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
    assert processor._GetDesiredBatchSize(tf_example, None) == executor.READ_BATCH_ROWS  # noqa: SLF001


def _check_source(tfxio, batch_size, n: int, sizes: list[int]) -> None:
    """``tfxio.BeamSource(batch_size)`` gives records 0..n-1 of `_write_examples` in batches of
    ``sizes`` (sorted)."""
    events = [b"view", b"addtocart", b"transaction"]
    expected = sorted((i % 37, events[i % 3], i * 0.25) for i in range(n))

    def check(batches):
        assert sorted(b.num_rows for b in batches) == sizes
        got = sorted(
            (
                b.column("item")[r][0].as_py(),
                b.column("event")[r][0].as_py(),
                b.column("price")[r][0].as_py(),
            )
            for b in batches
            for r in range(b.num_rows)
        )
        assert got == expected

    with beam.Pipeline() as pipeline:
        batches = pipeline | tfxio.BeamSource(batch_size)
        assert_that(batches | beam.combiners.ToList(), lambda lists: check(lists[0]))


def test_the_tf_data_source_gives_the_records_of_tfxio_in_the_batches_asked(tmp_path):
    for name, n, offset in (("a.gz", 5000, 0), ("b.gz", 3000, 5000)):
        _write_examples(tmp_path / name, n, offset)
    schema = text_format.Parse(
        'feature { name: "item" type: INT } feature { name: "event" type: BYTES } '
        'feature { name: "price" type: FLOAT }',
        schema_pb2.Schema(),
    )
    stock = tf_example_record.TFExampleRecord(
        file_pattern=[str(tmp_path / "a.gz"), str(tmp_path / "b*.gz")],
        schema=schema,
        telemetry_descriptors=["test"],
    )
    ours = executor.faster(stock, rows=4096)
    assert ours.ArrowSchema() == stock.ArrowSchema()
    assert isinstance(ours, executor.TFExampleFiles)
    _check_source(stock, 10_000, 8000, [8000])  # what TFXIO's own source gives
    _check_source(ours, None, 8000, [904, 3000, 4096])  # each file in batches of 4,096
    _check_source(ours, 1000, 8000, [1000] * 8)
    # Projected, it still reads through tf.data.
    assert isinstance(ours.Project(["item"]).projected, executor.TFExampleFiles)
    # Other TFXIOs keep TFXIO's own source, in batches of the rows asked for.
    assert isinstance(executor.faster(object()), executor.BatchedTFXIO)
    missing = executor.TFExampleFiles(
        file_pattern=[str(tmp_path / "nothing*.gz")], telemetry_descriptors=["test"]
    )
    with pytest.raises(FileNotFoundError, match="nothing"), beam.Pipeline() as pipeline:
        _ = pipeline | missing.BeamSource()
