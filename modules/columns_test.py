"""Tests of the raw columns: kinds, and raw columns in and out of TFRecords."""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from modules import columns as C
from modules import features as F


def test_example_columns_round_trip_through_tfrecords(tmp_path):
    columns = C.normalise_columns(
        {
            F.ITEM_ID: [10, 20],
            F.HISTORY: ["1 2", ""],
            F.numeric_feature("790"): [1.5, np.nan],
        }
    )
    spec = C.raw_feature_spec(columns)
    path = str(tmp_path / "part.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(2):
            feature = {
                F.ITEM_ID: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[columns[F.ITEM_ID][i]])
                ),
            }
            if columns[F.HISTORY][i]:
                feature[F.HISTORY] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[columns[F.HISTORY][i].encode()])
                )
            if not np.isnan(columns[F.numeric_feature("790")][i]):
                feature[F.numeric_feature("790")] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=[columns[F.numeric_feature("790")][i]])
                )
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    read = C.read_example_columns([str(tmp_path / "*.gz")], spec)
    assert read[F.ITEM_ID].tolist() == [10, 20]
    assert read[F.HISTORY].tolist() == ["1 2", ""]
    np.testing.assert_array_equal(read[F.numeric_feature("790")], [1.5, np.nan])
    # And into the tensors a transform graph expects: empty cells are absent, not "" or NaN.
    tensors = C.to_raw_tensors(read, spec)
    assert tensors[F.HISTORY].values.numpy().tolist() == [b"1 2"]
    assert tensors[F.ITEM_ID].shape == (2, 1)


def test_files_read_in_parallel_come_back_in_file_order(tmp_path):
    # Five files of different sizes, read two at a time: the rows are those of reading them one
    # after the other, sorted by name (an Examples split's order).
    spec = C.raw_feature_spec(C.normalise_columns({F.ITEM_ID: [0]}))
    expected = []
    for part, size in enumerate((3, 20_000, 1, 9_000, 5)):
        rows = [part * 100_000 + i for i in range(size)]
        expected += rows
        with tf.io.TFRecordWriter(str(tmp_path / f"part-{part}.gz"), options="GZIP") as writer:
            for item in rows:
                feature = {F.ITEM_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[item]))}
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(feature=feature)
                    ).SerializeToString()
                )
    read = C.read_example_columns([str(tmp_path / "*.gz")], spec)
    assert read[F.ITEM_ID].tolist() == expected
    assert C.map_files(["c", "a", "b"], str.upper) == ["C", "A", "B"]


def test_batches_transformed_at_once_come_back_in_row_order():
    # A layer slower on even batches: with two at a time the later batch is often done first.
    columns = C.normalise_columns({F.ITEM_ID: np.arange(5 * C.TRANSFORM_BATCH + 7)})
    spec = C.raw_feature_spec(columns)

    def layer(raw):
        ids = raw[F.ITEM_ID]  # [n, 1]
        if int(ids[0, 0]) // C.TRANSFORM_BATCH % 2 == 0:
            time.sleep(0.05)
        return {"doubled": ids[:, 0] * 2}

    for threads in (1, 2, 3):
        chunks = list(C.transform_chunks(layer, columns, spec, threads=threads))
        assert [len(c["doubled"]) for c in chunks] == [C.TRANSFORM_BATCH] * 5 + [7]
        np.testing.assert_array_equal(
            np.concatenate([c["doubled"] for c in chunks]), columns[F.ITEM_ID] * 2
        )


def test_without_autotune_keeps_the_elements_and_drops_the_tuning_thread():
    # tf.data's autotuning thread made destroying an iterator wait up to its next wake-up (up to
    # 60 s): every dataset of the pipeline's code goes without it, options kept downstream.
    dataset = tf.data.Dataset.range(10).batch(3)
    assert dataset.options().autotune.enabled is not False
    tuned_off = C.without_autotune(dataset).map(lambda x: x * 2).prefetch(2)
    assert tuned_off.options().autotune.enabled is False
    assert [b.tolist() for b in tuned_off.as_numpy_iterator()] == [
        [0, 2, 4],
        [6, 8, 10],
        [12, 14, 16],
        [18],
    ]


def test_a_handed_over_value_is_taken_once_and_only_for_the_same_files(tmp_path):
    shard = tmp_path / "part-0.gz"
    shard.write_bytes(b"rows")
    source = C.files_source([str(tmp_path / "*")])
    assert source == ((str(shard), 4, source[0][2]),)
    C.hand_over(source, "columns")
    assert C.take_handed_over(source) == "columns"
    assert C.take_handed_over(source) is None  # taken once
    C.hand_over(source, "columns")
    shard.write_bytes(b"other rows")  # another size and time: another source
    assert C.take_handed_over(C.files_source([str(tmp_path / "*")])) is None
    assert C.take_handed_over(source) is None  # a miss drops what was kept
