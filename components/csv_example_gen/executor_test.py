"""The ExampleGen executor's writer: gzipped TFRecord shards any TFRecord reader reads back."""

import glob
import gzip
import os

import apache_beam as beam
import tensorflow as tf

from components.csv_example_gen import executor


def test_shards_hold_every_record_once_as_gzip_tfrecords(tmp_path):
    records = [f"record {i} ".encode() * (i % 7 + 1) for i in range(500)]
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(records) | executor._WriteShards(str(tmp_path))  # noqa: SLF001
    files = sorted(glob.glob(os.path.join(tmp_path, f"{executor.FILE_PREFIX}-*.gz")))
    assert {os.path.basename(f)[: len(executor.FILE_PREFIX) + 3] for f in files} == {
        f"{executor.FILE_PREFIX}-{i:02d}" for i in range(executor.SHARDS)
    }
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == sorted(records)
    for path in files:
        with open(path, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"  # a gzip stream ...
        with gzip.open(path) as f:
            assert f.read()  # ... that Python's gzip reads too
    # Each record's shard follows its bytes only.
    for path in files:
        shard = int(os.path.basename(path).split("-")[1])
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            assert executor._shard(record.numpy(), executor.SHARDS) == shard  # noqa: SLF001
