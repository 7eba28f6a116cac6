"""Raw columns: reading the export's rows (CSV or tf.Example), their in-memory kinds, and their
way through the transform graph. No TFX imports.

Raw columns are plain numpy arrays keyed by the export's column names (``modules.features``): int64
ids, counters and timestamps; str ``event``/``item_text``/``history`` ("" when empty); float numeric
properties (NaN when missing). Every raw row the model sees goes through the transform output's
``transform_features_layer()`` (`transform_columns`), the graph that serving uses.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

from modules import features as F
from modules import transform as T

TRANSFORM_BATCH = 8192  # rows per call of the transform layer (and per TFRecord read)
# Files of a split read at once: TF decompresses and parses outside the GIL, so two threads read
# a 4-file train split at RetailRocket scale in about half the time of one.
READ_THREADS = 2
# Batches of rows in the transform layer at once (`transform_chunks`).
TRANSFORM_THREADS = 2
_Result = TypeVar("_Result")
_STRING_COLUMNS = (F.EVENT, F.ITEM_TEXT, F.HISTORY, F.PROFILE)


def column_kind(name: str) -> str:
    """ "string", "float" or "int64": how a raw export column is held in memory."""
    if name in _STRING_COLUMNS:
        return "string"
    if name.startswith(F.NUMERIC_PREFIX):
        return "float"
    return "int64"


def normalise_columns(columns: dict[str, Any]) -> dict[str, np.ndarray]:
    """Casts raw columns to their in-memory kinds (str with "" for empty, float with NaN, int64)."""
    out = {}
    for name, values in columns.items():
        kind = column_kind(name)
        values = np.asarray(values)
        if kind == "string":
            out[name] = _texts(values)
        elif kind == "float":
            if values.dtype.kind in "OUS":
                values = np.array([float(v) if str(v) != "" else np.nan for v in values])
            out[name] = values.astype(np.float64)
        else:
            out[name] = values.astype(np.int64)
    return out


def _texts(values: np.ndarray) -> np.ndarray:
    """str cells of a string column. A column of bytes only (what TensorFlow parses) is decoded
    without a type check per cell: RetailRocket's 1.9M train rows x 4 string columns in 1.9 s
    instead of 4.0 s through `_text`."""
    out = np.empty(len(values), dtype=object)
    try:
        out[:] = [value.decode() for value in values]
    except AttributeError:  # not all bytes: None, NaN or str cells too
        out[:] = [_text(value) for value in values]
    return out


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_csv_columns(path: str) -> dict[str, np.ndarray]:
    """Reads an export CSV (interactions or items) into raw columns.

    Raises:
      ValueError: a column cannot be read as its kind; the message names the file and column.
    """
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns.tolist()
    dtypes = {name: (str if column_kind(name) == "string" else None) for name in header}
    frame = pd.read_csv(
        path,
        dtype={k: v for k, v in dtypes.items() if v is not None},
        keep_default_na=False,
        na_values={n: [""] for n in header if column_kind(n) != "string"},
    )
    columns = {}
    for name in header:
        try:
            columns[name] = normalise_columns({name: frame[name].to_numpy()})[name]
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: column {name!r} is not {column_kind(name)}: {err}") from err
    return columns


def map_files(
    files: list[str], read_file: Callable[[str], _Result], threads: int = READ_THREADS
) -> list[_Result]:
    """``read_file`` of every file, ``threads`` files at a time; the results in the files' order."""
    if len(files) < 2 or threads < 2:
        return [read_file(path) for path in files]
    with concurrent.futures.ThreadPoolExecutor(min(threads, len(files))) as pool:
        return list(pool.map(read_file, files))


def without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` without tf.data's autotuning thread (every dataset of the pipeline's own code).

    With autotuning on (TensorFlow's default) an iterator starts a thread that re-tunes the
    pipeline at intervals growing to 60 s, and destroying the iterator waits for it: at the end of
    the Tuner's fit and of the RetrievalEvaluator's pass at RetailRocket scale both cores sat idle
    for 42-47 s (gdb: the main thread in ``RootDataset::Iterator::~Iterator`` waiting for the
    thread in ``Model::OptimizeLoop``). Our datasets set their batches, buffers and parallelism
    themselves: there is nothing to tune.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


# One read kept for the next reader of the very same files in this process (`hand_over`). It
# lives here, not in the reader's module: TFX's Trainer and Tuner executors reload the module of
# their run_fn / tuner_fn (``tfx.utils.import_utils.import_func_from_module``), which would empty it.
_HANDED_OVER: dict[str, Any] = {}


def files_source(file_patterns: Iterable[str]) -> tuple:
    """What a read of ``file_patterns`` depends on: every matched file's path, size and time."""
    files = []
    for pattern in file_patterns:
        for path in sorted(tf.io.gfile.glob(pattern)):
            stat = tf.io.gfile.stat(path)
            files.append((path, int(stat.length), int(stat.mtime_nsec)))
    return tuple(files)


def hand_over(source: tuple, value: Any) -> None:
    """Keeps ``value`` (what was read from ``source``) for `take_handed_over`; at most one value
    is kept, and only until the next `take_handed_over`."""
    _HANDED_OVER.clear()
    if source:
        _HANDED_OVER["read"] = (source, value)


def take_handed_over(source: tuple) -> Any:
    """The value handed over for exactly ``source``, or None; nothing is kept afterwards."""
    kept = _HANDED_OVER.pop("read", None)
    return kept[1] if kept is not None and kept[0] == source else None


def read_example_columns(
    file_patterns: Iterable[str],
    raw_feature_spec: dict[str, Any],
    names: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Reads raw columns from gzipped TFRecords of tf.Example (an ExampleGen split).

    Args:
      file_patterns: glob patterns of the split's files.
      raw_feature_spec: the transform output's raw feature spec (only its keys and dtypes are used;
        every column is parsed as possibly empty).
      names: the columns to read (default: every column of the spec).

    Returns:
      Raw columns (see the module docstring).

    Raises:
      FileNotFoundError: no file matches.
    """
    files = sorted({f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"no file matches {list(file_patterns)}")
    names = list(names) if names is not None else list(raw_feature_spec)
    spec = {
        name: tf.io.VarLenFeature(raw_feature_spec[name].dtype)
        for name in names
        if name in raw_feature_spec
    }

    def read_file(path: str) -> dict[str, list[np.ndarray]]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in spec}
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(TRANSFORM_BATCH)
        for records in without_autotune(dataset):
            parsed = tf.io.parse_example(records, spec)
            for name, value in parsed.items():
                fill = (
                    "" if value.dtype == tf.string else (np.nan if value.dtype.is_floating else 0)
                )
                dense = tf.sparse.to_dense(value, default_value=tf.constant(fill, value.dtype))
                pad = tf.fill(tf.stack([tf.shape(dense)[0], 1]), tf.constant(fill, value.dtype))
                parts[name].append(tf.concat([dense, pad], 1)[:, 0].numpy())
        return parts

    per_file = map_files(files, read_file)
    return normalise_columns(
        {name: np.concatenate([c for part in per_file for c in part[name]]) for name in spec}
    )


def raw_feature_spec(columns: Iterable[str]) -> dict[str, Any]:
    """A raw feature spec like SchemaGen infers from the export's CSVs (for tests and benchmarks).

    Ids, counters and timestamps are always present (FixedLen [1]); text, history and numeric
    properties may be empty (VarLen).
    """
    spec = {}
    for name in columns:
        kind = column_kind(name)
        if kind == "string":
            spec[name] = tf.io.VarLenFeature(tf.string)
        elif kind == "float":
            spec[name] = tf.io.VarLenFeature(tf.float32)
        else:
            spec[name] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def to_raw_tensors(
    columns: dict[str, np.ndarray], raw_feature_spec: dict[str, Any]
) -> dict[str, Any]:
    """Builds the tensors `raw_feature_spec` describes from raw columns.

    Columns absent from ``columns`` are left out (the transform layer then returns only the outputs
    that do not depend on them: item columns alone give the item-side outputs).
    """
    tensors = {}
    for name, feature in raw_feature_spec.items():
        if name not in columns:
            continue
        values = np.asarray(columns[name])
        dtype = feature.dtype
        if isinstance(feature, tf.io.FixedLenFeature):
            tensor = tf.constant(as_numpy(values, dtype, fill=True))
            tensors[name] = tf.reshape(tensor, [-1, *feature.shape])
        elif isinstance(feature, tf.io.VarLenFeature):
            present = present_mask(values)
            rows = np.nonzero(present)[0].astype(np.int64)
            tensors[name] = tf.SparseTensor(
                indices=np.stack([rows, np.zeros_like(rows)], axis=1).reshape(-1, 2),
                values=tf.constant(as_numpy(values[present], dtype, fill=False), dtype=dtype),
                dense_shape=[len(values), 1],
            )
        else:
            raise ValueError(f"raw feature {name!r}: unsupported feature spec {feature}")
    return tensors


def present_mask(values: np.ndarray) -> np.ndarray:
    """[n] True where a raw cell holds a value ("" and NaN are empty; ints always hold one)."""
    if values.dtype == object or values.dtype.kind in "US":
        return np.array([v != "" for v in values], dtype=bool)
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    return np.ones(values.shape, dtype=bool)


def as_numpy(values: np.ndarray, dtype: tf.DType, fill: bool) -> np.ndarray:
    """Raw values as the numpy array of a tf dtype (bytes for strings; NaN -> 0 for ints with ``fill``)."""
    if dtype == tf.string:
        return np.array([str(v).encode() for v in values], dtype=object)
    if values.dtype == object or values.dtype.kind in "US":
        values = np.array([float(v) if v != "" else np.nan for v in values])
    if dtype.is_floating:
        return values.astype(np.float32)
    if fill and values.dtype.kind == "f":
        values = np.nan_to_num(values)
    return values.astype(np.int64)


def transform_chunks(
    layer: Any,
    columns: dict[str, np.ndarray],
    raw_feature_spec: dict[str, Any],
    threads: int = TRANSFORM_THREADS,
) -> Iterator[dict[str, np.ndarray]]:
    """Applies the transform layer to raw columns in batches of ``TRANSFORM_BATCH`` rows; yields
    each batch's transformed numpy arrays, in row order.

    ``threads`` batches are transformed at once (at most that many done and not yet taken): the
    layer runs outside the GIL, and one call at a time kept 2 cores about 60% busy (RetailRocket's
    466k training examples: 15.2 s on one thread, 9.3 s on two, the same arrays).
    """
    n = len(next(iter(columns.values())))

    def transform(start: int) -> dict[str, np.ndarray]:
        chunk = {name: values[start : start + TRANSFORM_BATCH] for name, values in columns.items()}
        out = layer(to_raw_tensors(chunk, raw_feature_spec))
        return {name: value.numpy() for name, value in out.items()}

    starts = range(0, n, TRANSFORM_BATCH)
    if threads < 2 or len(starts) < 2:
        yield from map(transform, starts)
        return
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending: collections.deque = collections.deque()
        for start in starts:
            pending.append(pool.submit(transform, start))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def transform_columns(
    layer: Any, columns: dict[str, np.ndarray], raw_feature_spec: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Applies the transform layer to raw columns in batches; returns transformed numpy arrays."""
    parts: dict[str, list[np.ndarray]] = {}
    for out in transform_chunks(layer, columns, raw_feature_spec):
        for name, value in out.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def item_columns_of(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The item-side raw columns (what the catalogue file has)."""
    names = set(T.RAW_ITEM_COLUMNS) | set(T.numeric_columns(columns))
    return {name: values for name, values in columns.items() if name in names}


def user_columns_of(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The user-side raw columns (what a serving request has)."""
    return {name: values for name, values in columns.items() if name in T.RAW_USER_COLUMNS}
