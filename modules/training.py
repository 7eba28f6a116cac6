"""Training the two-tower model from raw columns and a tf.Transform output. No TFX imports.

The trainer's ``run_fn`` (TFX) and ``benchmarks/bench_model.py`` (plain CSVs) both call `train`; the
offline evaluation (`recommend`) scores exactly like the serving model (``modules.serving``).

Training examples are built like the evaluation (DESIGN 5), not as (history before an event -> the
event): for every train event a pseudo-cutoff is drawn uniformly in the ``horizon_days`` before it,
the visitor's state is frozen at that cutoff (the history, counters and last timestamp after its last
event at or before the cutoff) and the event is the target. Events of visitors with no event before
their pseudo-cutoff are skipped, as eval drops visitors unseen in train. Repeats then look as they do
after the real cutoff, so the signed repeat term learns the shop's real tendency (positive where people
come back to what they viewed, negative where they do not), and items of one basket are not each
other's history.

Raw columns are plain numpy arrays keyed by the export's column names (``modules.features``): int64
ids, counters and timestamps; str ``event``/``item_text``/``history`` ("" when empty); float numeric
properties (NaN when missing). All raw rows go through the transform output's
``transform_features_layer()``, the graph that serving uses.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from modules import constants
from modules import features as F
from modules import model as M
from modules import transform as T

logger = logging.getLogger(__name__)

_TRANSFORM_BATCH = 8192
_STRING_COLUMNS = (F.EVENT, F.ITEM_TEXT, F.HISTORY)
_MS_PER_DAY = 86_400_000


# ---------------------------------------------------------------- settings


def settings(custom_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Training settings: ``custom_config`` over the defaults of ``pipeline.configs``.

    Keys: ``embedding_dim``, ``encoder`` (mean | position | attention | gru), ``use_visitor``,
    ``use_time``, ``hidden_dim``, ``dropout``, ``epochs``, ``batch_size``, ``learning_rate``,
    ``horizon_days``, ``examples_per_event``, ``negatives`` (history | in_batch),
    ``validation_share``, ``patience``, ``calibrate_repeat``, ``seed``, ``top_k``; unknown keys are ignored (the
    same custom_config may carry the transform's keys).
    """
    merged = {
        "embedding_dim": constants.MODEL_EMBEDDING_DIM,
        "encoder": constants.MODEL_ENCODER,
        "use_visitor": constants.MODEL_USE_VISITOR,
        "use_time": constants.MODEL_USE_TIME,
        "hidden_dim": constants.MODEL_HIDDEN_DIM,
        "dropout": constants.MODEL_DROPOUT,
        "epochs": constants.MODEL_EPOCHS,
        "batch_size": constants.MODEL_BATCH_SIZE,
        "learning_rate": constants.MODEL_LEARNING_RATE,
        "horizon_days": constants.MODEL_HORIZON_DAYS,
        "examples_per_event": constants.MODEL_EXAMPLES_PER_EVENT,
        "negatives": constants.MODEL_NEGATIVES,
        "validation_share": constants.MODEL_VALIDATION_SHARE,
        "patience": constants.MODEL_PATIENCE,
        "calibrate_repeat": constants.MODEL_CALIBRATE_REPEAT,
        "seed": constants.MODEL_SEED,
        "top_k": constants.SERVING_TOP_K,
    }
    for key, value in (custom_config or {}).items():
        if key in merged:
            merged[key] = value
    return merged


def model_config(cfg: dict[str, Any]) -> M.ModelConfig:
    """The architecture part of `settings`."""
    return M.ModelConfig(
        embedding_dim=int(cfg["embedding_dim"]),
        encoder=str(cfg["encoder"]),
        use_visitor=bool(cfg["use_visitor"]),
        use_time=bool(cfg["use_time"]),
        hidden_dim=int(cfg["hidden_dim"]),
        dropout=float(cfg["dropout"]),
        negatives=str(cfg["negatives"]),
        seed=int(cfg["seed"]),
    )


# ---------------------------------------------------------------- raw columns


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
            out[name] = np.array([_text(v) for v in values], dtype=object)
        elif kind == "float":
            if values.dtype.kind in "OUS":
                values = np.array([float(v) if str(v) != "" else np.nan for v in values])
            out[name] = values.astype(np.float64)
        else:
            out[name] = values.astype(np.int64)
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
    parts: dict[str, list[np.ndarray]] = {name: [] for name in spec}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_TRANSFORM_BATCH)
    for records in dataset:
        parsed = tf.io.parse_example(records, spec)
        for name, value in parsed.items():
            fill = "" if value.dtype == tf.string else (np.nan if value.dtype.is_floating else 0)
            dense = tf.sparse.to_dense(value, default_value=tf.constant(fill, value.dtype))
            padding = tf.fill(tf.stack([tf.shape(dense)[0], 1]), tf.constant(fill, value.dtype))
            dense = tf.concat([dense, padding], 1)[:, 0]
            parts[name].append(dense.numpy())
    return normalise_columns({name: np.concatenate(chunks) for name, chunks in parts.items()})


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
            tensor = tf.constant(_as_numpy(values, dtype, fill=True))
            tensors[name] = tf.reshape(tensor, [-1, *feature.shape])
        elif isinstance(feature, tf.io.VarLenFeature):
            present = _present(values)
            rows = np.nonzero(present)[0].astype(np.int64)
            tensors[name] = tf.SparseTensor(
                indices=np.stack([rows, np.zeros_like(rows)], axis=1).reshape(-1, 2),
                values=tf.constant(_as_numpy(values[present], dtype, fill=False), dtype=dtype),
                dense_shape=[len(values), 1],
            )
        else:
            raise ValueError(f"raw feature {name!r}: unsupported feature spec {feature}")
    return tensors


def _present(values: np.ndarray) -> np.ndarray:
    if values.dtype == object or values.dtype.kind in "US":
        return np.array([v != "" for v in values], dtype=bool)
    if values.dtype.kind == "f":
        return ~np.isnan(values)
    return np.ones(values.shape, dtype=bool)


def _as_numpy(values: np.ndarray, dtype: tf.DType, fill: bool) -> np.ndarray:
    if dtype == tf.string:
        return np.array([str(v).encode() for v in values], dtype=object)
    if values.dtype == object or values.dtype.kind in "US":
        values = np.array([float(v) if v != "" else np.nan for v in values])
    if dtype.is_floating:
        return values.astype(np.float32)
    if fill and values.dtype.kind == "f":
        values = np.nan_to_num(values)
    return values.astype(np.int64)


def transform_columns(
    layer: Any, columns: dict[str, np.ndarray], raw_feature_spec: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Applies the transform layer to raw columns in batches; returns transformed numpy arrays."""
    n = len(next(iter(columns.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, _TRANSFORM_BATCH):
        chunk = {name: values[start : start + _TRANSFORM_BATCH] for name, values in columns.items()}
        out = layer(to_raw_tensors(chunk, raw_feature_spec))
        for name, value in out.items():
            parts.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def analyze(
    columns: dict[str, np.ndarray],
    output_dir: str,
    custom_config: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> Any:
    """Runs ``preprocessing_fn``'s analysis in-process (tf.Transform on Beam's DirectRunner).

    The pipeline runs the same analysis in the TFX Transform component; this path serves tests and
    benchmarks that start from the export's CSVs.

    Args:
      columns: raw columns of the train interactions.
      output_dir: where the transform output is written (a ``TFTransformOutput`` folder).
      custom_config: passed to ``preprocessing_fn``.
      spec: raw feature spec (default: `raw_feature_spec` of the columns).

    Returns:
      The ``TFTransformOutput``.
    """
    import os
    import shutil
    import tempfile

    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.coders import example_coder
    from tfx_bsl.tfxio import tf_example_record

    spec = spec or raw_feature_spec(columns)
    schema = schema_utils.schema_from_feature_spec(spec)
    arrow_types = {tf.string: pa.large_binary(), tf.int64: pa.int64(), tf.float32: pa.float32()}
    fields, arrays = [], []
    for name, feature in spec.items():
        values = np.asarray(columns[name])
        present = _present(values) if isinstance(feature, tf.io.VarLenFeature) else None
        kept = values if present is None else values[present]
        flat = _as_numpy(kept, feature.dtype, fill=True)
        lengths = np.ones(len(values), np.int64) if present is None else present.astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        field_type = pa.large_list(arrow_types[feature.dtype])
        arrays.append(
            pa.LargeListArray.from_arrays(
                pa.array(offsets, pa.int64()),
                pa.array(
                    list(flat) if feature.dtype == tf.string else flat, arrow_types[feature.dtype]
                ),
            )
        )
        fields.append(pa.field(name, field_type))
    record_batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    # Through a TFRecord file, as the TFX Transform component reads Examples: data handed to Beam
    # in memory would be pickled and compressed into the pipeline (minutes for 100k rows).
    temp_dir = tempfile.mkdtemp(prefix="tft-")
    path = os.path.join(temp_dir, "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for start in range(0, record_batch.num_rows, _TRANSFORM_BATCH):
            for record in example_coder.RecordBatchToExamples(
                record_batch.slice(start, _TRANSFORM_BATCH)
            ):
                writer.write(record)
    source = tf_example_record.TFExampleRecord(file_pattern=path, schema=schema)

    def preprocessing(inputs):
        return T.preprocessing_fn(inputs, custom_config)

    options = PipelineOptions(["--direct_running_mode=in_memory"])  # one process, no staging
    context = tft_beam.Context(temp_dir=os.path.join(temp_dir, "tmp"), force_tf_compat_v1=False)
    with beam.Pipeline(options=options) as pipeline, context:
        raw = pipeline | "Read" >> source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(preprocessing)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    shutil.rmtree(temp_dir, ignore_errors=True)
    return tft.TFTransformOutput(output_dir)


# ---------------------------------------------------------------- training examples


def pseudo_cutoff_examples(
    train: dict[str, np.ndarray],
    horizon_days: float,
    examples_per_event: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Builds evaluation-shaped training examples from the train interactions.

    For every event and every draw (``examples_per_event``), a pseudo-cutoff c is drawn uniformly in
    [t - horizon, t) before the event's time t (at least 1 ms before); the visitor's state at c
    (`states_at`) becomes the user side, the event (its item and the item's properties at event
    time) the target. Events whose visitor had no event at or before c are skipped.

    Args:
      train: raw columns of the train interactions.
      horizon_days: the longest distance between a pseudo-cutoff and its target event.
      examples_per_event: draws per event.
      seed: numpy seed of the draws.

    Returns:
      Raw columns in the interaction layout (same keys as ``train``).
    """
    stamps = train[F.TIMESTAMP]
    n = len(stamps)
    rng = np.random.default_rng(seed)
    horizon_ms = horizon_days * _MS_PER_DAY
    parts = []
    for _ in range(examples_per_event):
        cut = stamps - np.maximum(np.floor(rng.uniform(0.0, horizon_ms, n)), 1).astype(np.int64)
        state, found = states_at(train, train[F.VISITOR_ID], cut)
        rows = np.nonzero(found)[0]
        example = {name: values[rows] for name, values in train.items()}
        example.update({name: values[found] for name, values in state.items()})
        parts.append(example)
    return {name: np.concatenate([part[name] for part in parts]) for name in train}


def states_at(
    train: dict[str, np.ndarray], visitors: np.ndarray, cutoffs: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The user side of each (visitor, cutoff): its state after all its train events <= cutoff.

    This is how the export freezes an eval query's state at the real cutoff: counters of every
    event type and of distinct items, the last event's timestamp, and the history (the items of
    the latest events, most recent first: the last event's item, then that event's history).

    Args:
      train: raw columns of the train interactions.
      visitors: [q] visitor ids.
      cutoffs: [q] times in ms.

    Returns:
      ({user column: [q] values}, [q] bool found: the visitor has a train event <= its cutoff);
      rows not found hold zeros and "".
    """
    ordered = _ordered_states(train)
    v, ts = ordered["visitor"], ordered["ts"]
    distinct = np.unique(v)
    visitors = np.asarray(visitors)
    cutoffs = np.asarray(cutoffs, dtype=np.int64)
    rank = np.searchsorted(distinct, visitors)
    known = (rank < distinct.size) & (distinct[np.minimum(rank, distinct.size - 1)] == visitors)
    t0 = min(int(ts.min()), int(cutoffs.min()) if cutoffs.size else 0)
    span = max(int(ts.max()), int(cutoffs.max()) if cutoffs.size else 0) - t0 + 2
    keys = np.searchsorted(distinct, v).astype(np.int64) * span + (ts - t0)
    query = rank.astype(np.int64) * span + (cutoffs - t0)
    state = np.searchsorted(keys, query, side="right") - 1
    found = known & (state >= 0)
    found[found] &= v[state[found]] == visitors[found]
    picked = np.where(found, state, 0)
    out = {}
    for name, values in ordered["state"].items():
        column = values[picked]
        out[name] = np.where(found, column, "" if values.dtype == object else 0)
        if values.dtype == object:
            out[name] = out[name].astype(object)
    return out, found


def _ordered_states(train: dict[str, np.ndarray]) -> dict[str, Any]:
    """Train rows sorted by (visitor, time, file order) with the state after each row."""
    visitors = train[F.VISITOR_ID]
    stamps = train[F.TIMESTAMP]
    n = len(visitors)
    order = np.lexsort((np.arange(n), stamps, visitors))
    v, ts = visitors[order], stamps[order]
    items = train[F.ITEM_ID][order]
    events = train[F.EVENT][order]
    history = train[F.HISTORY][order]
    new_visitor = np.ones(n, dtype=bool)
    new_visitor[1:] = v[1:] != v[:-1]
    group_start = np.maximum.accumulate(np.where(new_visitor, np.arange(n), 0))
    state = {}
    for name, event_type in zip(
        (F.USER_VIEWS, F.USER_ADDTOCARTS, F.USER_TRANSACTIONS), F.EVENT_TYPES, strict=True
    ):
        state[name] = _cumsum_in_groups((events == event_type).astype(np.int64), group_start)
    _, first_index = np.unique(np.stack([v, items], axis=1), axis=0, return_index=True)
    first_seen = np.zeros(n, dtype=np.int64)
    first_seen[first_index] = 1
    state[F.USER_DISTINCT_ITEMS] = _cumsum_in_groups(first_seen, group_start)
    state[F.USER_LAST_TIMESTAMP] = ts
    state[F.HISTORY] = np.array(
        [f"{i} {h}" if h else str(i) for i, h in zip(items, history, strict=True)], dtype=object
    )
    return {"visitor": v, "ts": ts, "state": state}


def _cumsum_in_groups(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    before = np.concatenate([[0], total])[group_start]
    return total - before


# ---------------------------------------------------------------- training


@dataclasses.dataclass
class Trained:
    """A trained model with its catalogue, ready to score or export.

    Attributes:
      model: the TFRS model.
      catalogue_ids: [M] raw item ids of the catalogue, ascending (the tie rule's order).
      catalogue_vectors: [M, dim + 1] candidate vectors.
      row_of_index: [items] catalogue row of each item-vocabulary index, -1 when not in the
        catalogue (padding, out-of-vocabulary, items missing from the catalogue).
      settings: the training settings used.
      history: per-epoch loss.
      seconds: wall time of the whole `train` call.
      n_examples: training examples built (validation visitors' included).
      validation_recalls: Recall@50 of the held-out visitors' examples after every epoch.
      best_epoch: the epoch whose weights were kept (1-based).
      repeat_boost: the boost added to the repeat weights after training (`calibrate_repeat`).
      boost_recalls: validation Recall@50 of every boost tried.
    """

    model: M.TwoTowerModel
    catalogue_ids: np.ndarray
    catalogue_vectors: np.ndarray
    row_of_index: np.ndarray
    settings: dict[str, Any]
    history: list[float]
    seconds: float
    n_examples: int
    validation_recalls: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = 0
    repeat_boost: float = 0.0
    boost_recalls: dict[float, float] = dataclasses.field(default_factory=dict)


def sizes_from(tft_output: Any) -> M.FeatureSizes:
    """Reads feature domains and widths from a ``TFTransformOutput``."""
    spec = tft_output.transformed_feature_spec()
    buckets = tft_output.num_buckets_for_transformed_feature
    return M.FeatureSizes(
        items=int(buckets(T.ITEM_INDEX)),
        categories=int(buckets(T.CATEGORY_INDEX)),
        text_buckets=int(buckets(T.TEXT_TOKENS)),
        visitors=int(buckets(T.VISITOR_INDEX)),
        item_numeric=int(spec[T.ITEM_NUMERIC].shape[-1]),
        user_numeric=int(spec[T.USER_NUMERIC].shape[-1]),
        category_columns=int(spec[T.CATEGORY_INDEX].shape[-1]),
        history_length=int(spec[T.HISTORY_INDEX].shape[-1]),
    )


def item_columns_of(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The item-side raw columns (what the catalogue file has)."""
    names = set(T.RAW_ITEM_COLUMNS) | set(T.numeric_columns(columns))
    return {name: values for name, values in columns.items() if name in names}


def user_columns_of(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The user-side raw columns (what a serving request has)."""
    return {name: values for name, values in columns.items() if name in T.RAW_USER_COLUMNS}


def train(
    train_columns: dict[str, np.ndarray],
    item_columns: dict[str, np.ndarray],
    tft_output: Any,
    custom_config: dict[str, Any] | None = None,
    log_every_epoch: bool = True,
) -> Trained:
    """Trains the two-tower model.

    Args:
      train_columns: raw columns of the train interactions.
      item_columns: raw columns of the catalogue (``items.csv``).
      tft_output: the ``TFTransformOutput`` of `modules.transform.preprocessing_fn`.
      custom_config: overrides of `settings`.
      log_every_epoch: log the loss of every epoch.

    Returns:
      The trained model and its catalogue.

    Raises:
      ValueError: no training example could be built, or the catalogue is empty.
    """
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:  # seconds of each phase, for the log (what a long run spends)
        phases[name] = round(time.perf_counter() - started - sum(phases.values()), 1)

    cfg = settings(custom_config)
    seed = int(cfg["seed"])
    tf.keras.utils.set_random_seed(seed)
    raw = pseudo_cutoff_examples(
        train_columns, float(cfg["horizon_days"]), int(cfg["examples_per_event"]), seed
    )
    n_examples = len(raw[F.ITEM_ID])
    if n_examples == 0:
        raise ValueError(
            "no training example: no visitor has an event within "
            f"{cfg['horizon_days']} days after an earlier event"
        )
    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    sizes = sizes_from(tft_output)
    needed = set(T.ITEM_OUTPUTS) | set(T.USER_OUTPUTS)
    examples = {k: v for k, v in transform_columns(layer, raw, spec).items() if k in needed}
    examples[T.HISTORY_INDEX] = examples[T.HISTORY_INDEX].astype(np.int32)
    lap("examples")
    counts = np.bincount(examples[T.ITEM_INDEX], minlength=sizes.items).astype(np.float64)
    probability = counts / counts.sum()

    items = prepare_catalogue(layer, item_columns, spec, sizes)
    lap("catalogue")
    held_out = _validation_visitors(raw[F.VISITOR_ID], float(cfg["validation_share"]), seed)
    validation = {name: values[held_out] for name, values in examples.items()}
    examples = {name: values[~held_out] for name, values in examples.items()}
    n_train = int((~held_out).sum())
    config = model_config(cfg)
    model = M.TwoTowerModel(sizes, config, probability, items.table)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=float(cfg["learning_rate"])))
    batch = min(int(cfg["batch_size"]), n_train)
    dataset = (
        tf.data.Dataset.from_tensor_slices(examples)
        .shuffle(n_train, seed=seed, reshuffle_each_iteration=True)
        .batch(batch, drop_remainder=True)
        .prefetch(2)
    )
    stopper = EarlyStopping(model, items, validation, int(cfg["patience"]))
    fit = model.fit(dataset, epochs=int(cfg["epochs"]), verbose=0, callbacks=[stopper])
    stopper.restore_best()
    lap("fit")
    boost = stopper.calibrate_repeat() if cfg["calibrate_repeat"] else 0.0
    lap("calibrate_repeat")
    losses = [float(x) for x in fit.history.get("loss", [])]
    if log_every_epoch:
        logger.info(
            "two-tower training: losses %s, validation recall@%d %s, kept epoch %d",
            losses,
            _VALIDATION_K,
            stopper.recalls,
            stopper.best_epoch + 1,
        )

    vectors = stopper.item_vectors()
    lap("item_vectors")
    logger.info("two-tower training phases (s): %s", phases)
    return Trained(
        model=model,
        catalogue_ids=items.ids,
        catalogue_vectors=vectors,
        row_of_index=items.row_of_index,
        settings=cfg,
        history=losses,
        seconds=time.perf_counter() - started,
        n_examples=n_examples,
        validation_recalls=stopper.recalls,
        best_epoch=stopper.best_epoch + 1,
        repeat_boost=boost,
        boost_recalls=stopper.boost_recalls,
    )


_VALIDATION_K = 50
_VALIDATION_MAX_QUERIES = 5000
_REPEAT_BOOSTS = (0.0, -4.0, -1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def _validation_visitors(visitors: np.ndarray, share: float, seed: int) -> np.ndarray:
    """[n] True for the examples of a random ``share`` of the visitors (held out of training)."""
    distinct = np.unique(visitors)
    if share <= 0 or distinct.size < 2:
        return np.zeros(visitors.shape, dtype=bool)
    rng = np.random.default_rng([seed, 7])
    chosen = rng.choice(distinct, max(1, int(round(share * distinct.size))), replace=False)
    return np.isin(visitors, chosen)


class EarlyStopping(tf.keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation Recall@50.

    The validation queries are the pseudo-cutoff examples of visitors held out of training, scored
    over the whole catalogue with the repeat term, as the evaluation does. With a handful of train
    events per item the id embeddings memorise the train events within a few epochs and Recall@50
    on unseen events falls (0.46 after 2 epochs, 0.41 after 8 on the default data), at an epoch
    count that depends on the data: measuring beats a fixed count. Training stops after
    ``patience`` epochs without improvement.
    """

    def __init__(self, model, items: Catalogue, validation: dict[str, np.ndarray], patience: int):
        super().__init__()
        self._two_tower = model
        self._items = items
        rng = np.random.default_rng(0)
        n = len(validation[T.ITEM_INDEX])
        keep = np.sort(rng.choice(n, min(n, _VALIDATION_MAX_QUERIES), replace=False))
        self._validation = {name: values[keep] for name, values in validation.items()}
        self._targets = items.row_of_index[self._validation[T.ITEM_INDEX]]
        self._patience = patience
        self.recalls: list[float] = []
        self.best_epoch = -1
        self._best_weights = None
        self.boost_recalls: dict[float, float] = {}

    def on_epoch_end(self, epoch, logs=None):
        if self._targets.size == 0:
            return
        recall = self.recall()
        self.recalls.append(round(recall, 4))
        if self.best_epoch < 0 or recall > self.recalls[self.best_epoch]:
            self.best_epoch = epoch
            self._best_weights = self._two_tower.get_weights()
        elif epoch - self.best_epoch >= self._patience:
            self._two_tower.stop_training = True

    def calibrate_repeat(self, boosts=_REPEAT_BOOSTS) -> float:
        """Adds to every repeat bucket weight the boost with the best validation Recall@50.

        The towers learn the item co-occurrences of the train events by heart within a few epochs,
        so on train examples a seen item competes with new items the model is overconfident
        about, and the learned repeat weights come out too small for unseen events. One shared
        boost, chosen on the held-out visitors, corrects that where the data says so (and is 0
        where it does not). Returns the boost.
        """
        if self._targets.size == 0:
            return 0.0
        repeat = self._two_tower.repeat
        base = repeat.bucket_weights.numpy()
        vectors = self.item_vectors()  # the repeat term does not change the item side
        results = []
        for boost in boosts:
            repeat.bucket_weights.assign(base + boost / M.REPEAT_SCALE)
            results.append(self.recall(vectors))
        best = boosts[int(np.argmax(results))]  # the first (smallest) of equal results
        repeat.bucket_weights.assign(base + best / M.REPEAT_SCALE)
        self.boost_recalls = dict(zip(boosts, [round(r, 4) for r in results], strict=True))
        return float(best)

    def item_vectors(self) -> np.ndarray:
        """The catalogue's candidate vectors with the current weights."""
        features = self._items.features
        return np.concatenate(
            [
                self._two_tower.item_vectors(
                    {k: v[s : s + _TRANSFORM_BATCH] for k, v in features.items()}
                ).numpy()
                for s in range(0, self._items.ids.size, _TRANSFORM_BATCH)
            ]
        )

    def recall(self, vectors: np.ndarray | None = None) -> float:
        """Recall@50 of the validation queries with the current weights (or these item vectors)."""
        model, items = self._two_tower, self._items
        if vectors is None:
            vectors = self.item_vectors()
        hits = 0
        for start in range(0, self._targets.size, 1024):
            part = {k: v[start : start + 1024] for k, v in self._validation.items()}
            scores = model.user_vectors(part).numpy() @ vectors.T
            rows = items.row_of_index[part[T.HISTORY_INDEX]]
            bonus = model.repeat.bonus(part[T.HISTORY_INDEX]).numpy()
            q_index = np.repeat(np.arange(len(rows)), rows.shape[1])
            valid = rows.ravel() >= 0
            np.add.at(scores, (q_index[valid], rows.ravel()[valid]), bonus.ravel()[valid])
            target = self._targets[start : start + 1024]
            known = target >= 0
            target_score = scores[np.arange(len(target)), np.maximum(target, 0)]
            rank = (scores > target_score[:, None]).sum(axis=1)
            hits += int((known & (rank < _VALIDATION_K)).sum())
        return hits / self._targets.size

    def restore_best(self) -> None:
        """Puts back the weights of the best epoch."""
        if self._best_weights is not None:
            self._two_tower.set_weights(self._best_weights)


@dataclasses.dataclass
class Catalogue:
    """The catalogue, transformed.

    Attributes:
      ids: [M] raw item ids, ascending (the tie rule's order).
      features: item-side transformed features, row r for ids[r].
      row_of_index: [items] catalogue row of each item-vocabulary index, -1 when none.
      table: item-side transformed features by vocabulary index (row i = index i; zeros for
        indices without a catalogue row), for embedding history items as training candidates.
    """

    ids: np.ndarray
    features: dict[str, np.ndarray]
    row_of_index: np.ndarray
    table: dict[str, np.ndarray]


def prepare_catalogue(
    layer: Any, item_columns: dict[str, np.ndarray], spec: dict[str, Any], sizes: M.FeatureSizes
) -> Catalogue:
    """Transforms the catalogue rows and indexes them by item id and by vocabulary index.

    Raises:
      ValueError: the catalogue is empty or has duplicate item ids.
    """
    item_columns = item_columns_of(item_columns)
    ids = item_columns[F.ITEM_ID]
    if ids.size == 0:
        raise ValueError("the item catalogue is empty")
    order = np.argsort(ids, kind="stable")
    if (np.diff(ids[order]) == 0).any():
        raise ValueError("the item catalogue has duplicate item ids")
    item_columns = {name: values[order] for name, values in item_columns.items()}
    features = transform_columns(layer, item_columns, spec)
    features = {name: features[name] for name in T.ITEM_OUTPUTS}
    row_of_index = np.full(sizes.items, -1, dtype=np.int64)
    index = features[T.ITEM_INDEX]
    known = (index > 0) & (index < sizes.items - 1)
    row_of_index[index[known]] = np.nonzero(known)[0]
    table = {}
    has_row = row_of_index >= 0
    for name, values in features.items():
        column = np.zeros((sizes.items, *values.shape[1:]), dtype=values.dtype)
        column[has_row] = values[row_of_index[has_row]]
        table[name] = column
    table[T.ITEM_INDEX] = np.arange(sizes.items, dtype=np.int64)
    return Catalogue(
        ids=item_columns[F.ITEM_ID], features=features, row_of_index=row_of_index, table=table
    )


# ---------------------------------------------------------------- offline scoring


def query_parts(
    trained: Trained, tft_output: Any, query_columns: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User vectors and repeat bonuses of queries: ([Q, dim + 1], [Q, N] rows, [Q, N] bonus)."""
    spec = tft_output.raw_feature_spec()
    layer = tft_output.transform_features_layer()
    transformed = transform_columns(layer, user_columns_of(query_columns), spec)
    users, bonus = [], []
    n = len(transformed[T.HISTORY_INDEX])
    for start in range(0, n, _TRANSFORM_BATCH):
        chunk = {k: v[start : start + _TRANSFORM_BATCH] for k, v in transformed.items()}
        users.append(trained.model.user_vectors(chunk).numpy())
        bonus.append(trained.model.repeat.bonus(chunk[T.HISTORY_INDEX]).numpy())
    rows = trained.row_of_index[transformed[T.HISTORY_INDEX]]
    return np.concatenate(users), rows, np.concatenate(bonus)


def score_queries(
    trained: Trained, tft_output: Any, query_columns: dict[str, np.ndarray]
) -> np.ndarray:
    """[Q, M] catalogue scores of every query (dot product + repeat term), as serving computes."""
    users, rows, bonus = query_parts(trained, tft_output, query_columns)
    scores = users @ trained.catalogue_vectors.T
    q_index = np.repeat(np.arange(len(users)), rows.shape[1])
    valid = rows.ravel() >= 0
    np.add.at(scores, (q_index[valid], rows.ravel()[valid]), bonus.ravel()[valid])
    return scores


def recommend(
    trained: Trained,
    tft_output: Any,
    query_columns: dict[str, np.ndarray],
    k: int = 50,
    exclude: Any = None,
    chunk: int = 2048,
) -> np.ndarray:
    """Top-k raw item ids per query, with the protocol's tie rule (``modules.evaluation``).

    Args:
      trained: the trained model.
      tft_output: its transform output.
      query_columns: raw user columns of the queries (eval rows).
      k: list length.
      exclude: optional [Q, M] boolean mask (or scipy.sparse) of catalogue items to drop.
      chunk: queries scored at once.
    """
    from modules import ranking

    n = len(query_columns[F.VISITOR_ID])
    lists = []
    for start in range(0, n, chunk):
        part = {name: values[start : start + chunk] for name, values in query_columns.items()}
        scores = score_queries(trained, tft_output, part)
        mask = None if exclude is None else exclude[start : start + chunk]
        lists.append(ranking.top_k_items(scores, trained.catalogue_ids, k, exclude=mask))
    return np.concatenate(lists)
