"""Reads columns of an ``Examples`` artifact split (gzipped TFRecords of tf.Example) into numpy."""

from __future__ import annotations

import os

import numpy as np

_BATCH = 65_536


def split_files(examples_uri: str, split: str) -> list[str]:
    """Returns the TFRecord files of ``split`` under an Examples artifact URI.

    Raises:
      FileNotFoundError: the split has no files.
    """
    import tensorflow as tf

    pattern = os.path.join(examples_uri, f"Split-{split}", "*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"{pattern}: no files; is '{split}' a split of this Examples artifact?"
        )
    return files


def read_columns(
    examples_uri: str, split: str, columns: dict[str, str], defaults: dict | None = None
) -> dict[str, np.ndarray]:
    """Reads scalar columns of one split.

    Args:
      examples_uri: the Examples artifact URI.
      split: split name, e.g. "train".
      columns: ``{feature name: "int64" | "float32" | "string"}``.
      defaults: value for examples where a feature is absent (required otherwise).

    Returns:
      ``{feature name: 1-D array}`` in file order (the files are read two at a time,
      ``modules.columns.map_files``).
    """
    import tensorflow as tf

    from modules import columns as C  # imports TensorFlow

    defaults = defaults or {}
    dtypes = {"int64": tf.int64, "float32": tf.float32, "string": tf.string}
    spec = {
        name: tf.io.FixedLenFeature([], dtypes[kind], default_value=defaults.get(name))
        for name, kind in columns.items()
    }

    def read_file(path: str) -> dict[str, list[np.ndarray]]:
        dataset = C.without_autotune(
            tf.data.TFRecordDataset(path, compression_type="GZIP")
            .batch(_BATCH)
            .map(lambda records: tf.io.parse_example(records, spec))
        )
        parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
        for batch in dataset.as_numpy_iterator():
            for name in columns:
                parts[name].append(batch[name])
        return parts

    per_file = C.map_files(split_files(examples_uri, split), read_file)
    chunks = {name: [c for part in per_file for c in part[name]] for name in columns}
    return {
        name: (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
        for name, parts in chunks.items()
    }


def count_records(examples_uri: str, split: str) -> int:
    """The number of records (examples) in one split, read from its files."""
    return count_file_records(split_files(examples_uri, split))


def count_file_records(files: list[str]) -> int:
    """The number of records in gzipped TFRecord files (two files at a time: decompressing is
    most of it, and one stream runs on one core)."""
    import tensorflow as tf

    from modules import columns as C  # imports TensorFlow

    def count(path: str) -> int:
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP", buffer_size=1 << 22)
        dataset = C.without_autotune(dataset.batch(_BATCH))
        return int(dataset.reduce(np.int64(0), lambda n, b: n + tf.size(b, tf.int64)))

    return sum(C.map_files(list(files), count))
