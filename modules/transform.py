"""The Transform step: ``preprocessing_fn`` for TFX Transform (tf.Transform 1.16).

One graph serves three callers, with no training/serving skew:

* the TFX Transform component over the interaction Examples (analysis on the train split);
* the trainer and the serving model, which apply the same graph to raw features through
  ``TFTransformOutput.transform_features_layer()``;
* the item catalogue: every output is computed from either item columns or user columns, never
  both, so the catalogue rows (item columns only) go through the same layer and get exactly the
  item-side outputs (tf.Transform drops the outputs whose raw inputs were not fed). There is no
  second item transform that could drift from the first.

Outputs (names below; 0 is always padding, index ``size - 1`` the out-of-vocabulary bucket):

* item side: ``ITEM_INDEX`` [B] item vocabulary index; ``CATEGORY_INDEX`` [B, 6] the category and
  its 5 root-to-leaf levels through one category vocabulary; ``TEXT_TOKENS`` [B, T] hashed property
  tokens; ``ITEM_NUMERIC`` [B, D] availability flags, log1p + z-scored popularity, signed log1p +
  z-scored numeric properties with a missing flag each.
* user side: ``HISTORY_INDEX`` [B, N] the last N items through the same item vocabulary, most
  recent first; ``VISITOR_INDEX`` [B] (all 0, domain [0, 1), unless ``use_visitor``: see
  `settings`); ``HOUR`` / ``DAY_OF_WEEK`` [B] of the query's timestamp
  (UTC); ``USER_NUMERIC`` [B, 6] log1p + z-scored counters, recency (hours since the visitor's
  previous event) and its missing flag; the long-term profile, [B, P] each, most recently seen
  first: ``PROFILE_INDEX`` (same item vocabulary, 0 padding), ``PROFILE_COUNT`` (events of the
  item), ``PROFILE_EVENT`` (strongest event: 0 view, 1 addtocart, 2 transaction) and
  ``PROFILE_AGE`` (days from the item's last event to the query's timestamp).

The item vocabulary holds every item with a train event. Catalogue items without one (cold items)
map to the out-of-vocabulary bucket: no training example could have taught them an id embedding,
so the model zeroes that bucket and scores them by their content features (category, text,
numbers). Item frequencies for the sampling-bias correction are counted by the trainer over the
very examples it trains on (``modules.training``), which differ from the raw event distribution.

Index and bucket counts travel in the transform output's schema (``num_buckets_for_transformed_
feature``), so no size is hard-coded downstream.

Inputs may arrive in any shape the schema gives them: dense ``[B]`` or ``[B, 1]``, or sparse/ragged
for columns that can be empty in the CSV (text, history, numeric properties); a history column
inferred as int64 (all single ids) is accepted too.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from modules import constants
from modules import features as F

_SUFFIX = "_xf"


def transformed_name(key: str) -> str:
    """Name of the transformed feature derived from raw feature ``key``."""
    return f"{key}{_SUFFIX}"


# ---------------------------------------------------------------- output names
ITEM_INDEX = transformed_name(F.ITEM_ID)
CATEGORY_INDEX = transformed_name(F.CATEGORY)
TEXT_TOKENS = transformed_name(F.ITEM_TEXT)
ITEM_NUMERIC = transformed_name("item_numeric")
HISTORY_INDEX = transformed_name(F.HISTORY)
VISITOR_INDEX = transformed_name(F.VISITOR_ID)
HOUR = transformed_name("hour_of_day")
DAY_OF_WEEK = transformed_name("day_of_week")
USER_NUMERIC = transformed_name("user_numeric")
PROFILE_INDEX = transformed_name(F.PROFILE)
PROFILE_COUNT = transformed_name("profile_count")
PROFILE_EVENT = transformed_name("profile_event")
PROFILE_AGE = transformed_name("profile_age_days")
PROFILE_OUTPUTS = (PROFILE_INDEX, PROFILE_COUNT, PROFILE_EVENT, PROFILE_AGE)

ITEM_OUTPUTS = (ITEM_INDEX, CATEGORY_INDEX, TEXT_TOKENS, ITEM_NUMERIC)
USER_OUTPUTS = (HISTORY_INDEX, VISITOR_INDEX, HOUR, DAY_OF_WEEK, USER_NUMERIC, *PROFILE_OUTPUTS)

# Vocabulary file names inside the transform output.
ITEM_VOCAB = "item"
CATEGORY_VOCAB = "category"
VISITOR_VOCAB = "visitor"
# One token per analysed row, with its frequency: how many rows the analysis read (issue 12).
ROWS_VOCAB = "analysed_rows"
_ROWS_TOKEN = "row"

# Raw columns each side reads (numeric item properties, ``num_*``, are discovered from the inputs).
RAW_ITEM_COLUMNS = (
    F.ITEM_ID,
    F.AVAILABLE,
    F.CATEGORY,
    *F.CATEGORY_LEVEL_FEATURES,
    F.ITEM_TEXT,
    F.ITEM_POP_TRAIN,
    F.ITEM_POP_RECENT,
)
RAW_USER_COLUMNS = (
    F.VISITOR_ID,
    F.HISTORY,
    F.PROFILE,
    *F.USER_COUNTER_FEATURES,
    F.TIMESTAMP,
    F.USER_LAST_TIMESTAMP,
)

_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0
_EPS = 1e-6


def settings(custom_config: dict[str, Any] | None) -> dict[str, Any]:
    """Transform settings: ``custom_config`` over the defaults of ``modules.constants``.

    Keys: ``history_length``, ``profile_length``, ``text_hash_buckets``, ``text_max_tokens``,
    ``visitor_min_count``, ``use_visitor`` (the model's setting of that name, which Transform and
    the Trainer share in their custom_config: the visitor vocabulary is built only for a model
    that reads it. Over RetailRocket's 992,000 train visitors it cost 25-35 s of Transform's
    analysis, docs/benchmarks.md).
    """
    merged = {
        "history_length": constants.MODEL_HISTORY_LENGTH,
        "profile_length": constants.MODEL_PROFILE_LENGTH,
        "text_hash_buckets": constants.TEXT_HASH_BUCKETS,
        "text_max_tokens": constants.TEXT_MAX_TOKENS,
        "visitor_min_count": constants.VISITOR_MIN_COUNT,
        "use_visitor": constants.MODEL_USE_VISITOR,
    }
    for key, value in (custom_config or {}).items():
        if key in merged:
            merged[key] = value
    return merged


def numeric_columns(names) -> list[str]:
    """The numeric property columns (``num_*``) among ``names``, sorted."""
    return sorted(n for n in names if n.startswith(F.NUMERIC_PREFIX))


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any] | None = None):
    """tf.Transform preprocessing of interaction rows (see the module docstring).

    Args:
      inputs: raw features as the schema gives them (dense, sparse or ragged).
      custom_config: optional overrides of `settings` (TFX Transform passes its custom_config).

    Returns:
      Dict of transformed features.
    """
    cfg = settings(custom_config)
    batch = _batch_size(inputs)
    outputs = {}
    # Counted, not used: the Trainer checks it against the rows it reads (analysed_rows).
    tft.vocabulary(
        tf.fill(tf.reshape(batch, [1]), _ROWS_TOKEN),
        vocab_filename=ROWS_VOCAB,
        store_frequency=True,
    )

    # ---- item side
    item_tokens = _as_string(_column(inputs, F.ITEM_ID, batch, tf.int64))
    item_vocab = tft.vocabulary(item_tokens, vocab_filename=ITEM_VOCAB)
    item_size = tft.experimental.get_vocabulary_size_by_name(ITEM_VOCAB) + 2  # pad and OOV
    outputs[ITEM_INDEX] = _indexed(
        tft.apply_vocabulary(item_tokens, item_vocab, num_oov_buckets=1) + 1, item_size
    )

    categories = tf.stack(
        [
            _column(inputs, name, batch, tf.int64, default=F.MISSING_ID)
            for name in (F.CATEGORY, *F.CATEGORY_LEVEL_FEATURES)
        ],
        axis=1,
    )
    known = tf.not_equal(categories, F.MISSING_ID)
    category_tokens = _as_string(categories)
    category_vocab = tft.vocabulary(
        tf.boolean_mask(category_tokens, known), vocab_filename=CATEGORY_VOCAB
    )
    category_size = tft.experimental.get_vocabulary_size_by_name(CATEGORY_VOCAB) + 2
    category_index = tft.apply_vocabulary(category_tokens, category_vocab, num_oov_buckets=1) + 1
    outputs[CATEGORY_INDEX] = _indexed(
        tf.where(known, category_index, tf.zeros_like(category_index)), category_size
    )

    text = _column(inputs, F.ITEM_TEXT, batch, tf.string, default="")
    tokens = tf.strings.split(text)
    hashed = tf.strings.to_hash_bucket_fast(tokens, cfg["text_hash_buckets"]) + 1
    outputs[TEXT_TOKENS] = _indexed(
        hashed.to_tensor(default_value=0, shape=[None, cfg["text_max_tokens"]]),
        tf.constant(cfg["text_hash_buckets"] + 1, tf.int64),
    )

    available = _column(inputs, F.AVAILABLE, batch, tf.int64, default=F.MISSING_ID)
    item_numeric = [
        tf.cast(tf.equal(available, 1), tf.float32),
        tf.cast(tf.equal(available, 0), tf.float32),
        _z_score(_log1p(_column(inputs, F.ITEM_POP_TRAIN, batch, tf.float32, default=0.0))),
        _z_score(_log1p(_column(inputs, F.ITEM_POP_RECENT, batch, tf.float32, default=0.0))),
    ]
    for name in numeric_columns(inputs):
        value = _column(inputs, name, batch, tf.float32, default=float("nan"))
        present = tf.logical_not(tf.math.is_nan(value))
        signed_log = tf.sign(value) * tf.math.log1p(tf.abs(value))
        item_numeric += [
            _z_score(signed_log, present),
            1.0 - tf.cast(present, tf.float32),
        ]
    outputs[ITEM_NUMERIC] = tf.stack(item_numeric, axis=1)

    # ---- user side
    history = tf.strings.split(_as_string(_column(inputs, F.HISTORY, batch, tf.string, default="")))
    history_index = tft.apply_vocabulary(history, item_vocab, num_oov_buckets=1) + 1
    outputs[HISTORY_INDEX] = _indexed(
        history_index.to_tensor(default_value=0, shape=[None, cfg["history_length"]]), item_size
    )

    timestamp = _column(inputs, F.TIMESTAMP, batch, tf.int64)
    outputs.update(
        _profile(
            _column(inputs, F.PROFILE, batch, tf.string, default=""),
            timestamp,
            item_vocab,
            item_size,
            cfg["profile_length"],
        )
    )

    visitors = _column(inputs, F.VISITOR_ID, batch, tf.int64)
    if cfg["use_visitor"]:
        visitor_tokens = _as_string(visitors)
        visitor_vocab = tft.vocabulary(
            visitor_tokens,
            vocab_filename=VISITOR_VOCAB,
            frequency_threshold=cfg["visitor_min_count"],
        )
        visitor_size = tft.experimental.get_vocabulary_size_by_name(VISITOR_VOCAB) + 2
        visitor_index = tft.apply_vocabulary(visitor_tokens, visitor_vocab, num_oov_buckets=1) + 1
    else:  # no model reads it: padding only (still a user-side output), and no vocabulary
        visitor_index, visitor_size = tf.zeros_like(visitors), tf.constant(1, tf.int64)
    outputs[VISITOR_INDEX] = _indexed(visitor_index, visitor_size)

    outputs[HOUR] = _indexed(
        tf.math.floormod(tf.math.floordiv(timestamp, _MS_PER_HOUR), 24), tf.constant(24, tf.int64)
    )
    outputs[DAY_OF_WEEK] = _indexed(
        tf.math.floormod(tf.math.floordiv(timestamp, _MS_PER_DAY) + _EPOCH_WEEKDAY, 7),
        tf.constant(7, tf.int64),
    )
    last = _column(inputs, F.USER_LAST_TIMESTAMP, batch, tf.int64, default=0)
    has_last = tf.greater(last, 0)
    hours = tf.cast(tf.maximum(timestamp - last, 0), tf.float32) / _MS_PER_HOUR
    user_numeric = [
        _z_score(_log1p(_column(inputs, name, batch, tf.float32, default=0.0)))
        for name in F.USER_COUNTER_FEATURES
    ]
    user_numeric += [
        _z_score(tf.math.log1p(hours), has_last),
        1.0 - tf.cast(has_last, tf.float32),
    ]
    outputs[USER_NUMERIC] = tf.stack(user_numeric, axis=1)
    return outputs


def _profile(profile, timestamp, item_vocab, item_size, length: int) -> dict[str, tf.Tensor]:
    """The profile's outputs, [B, length] each, position p = the p-th most recently seen item.

    Tokens "<itemid>:<count>:<event>:<last-seen ms>" (``features.PROFILE``) are parsed on their
    flat values; a malformed field reads as its default (count 1, view, seen at the request), an
    unknown item as the out-of-vocabulary index, which the model ignores like padding.
    """
    tokens = tf.strings.split(profile)[:, :length]
    fields = tf.strings.split(tokens.flat_values, sep=F.PROFILE_SEPARATOR).to_tensor(
        default_value="", shape=[None, 4]
    )
    index = tft.apply_vocabulary(fields[:, 0], item_vocab, num_oov_buckets=1) + 1
    count = tf.maximum(_parsed_int(fields[:, 1], 1), 1)
    event = tf.zeros_like(count)
    for code, name in enumerate(F.EVENT_TYPES):
        event = tf.where(tf.equal(fields[:, 2], name), tf.constant(code, tf.int64), event)
    last = _parsed_int(fields[:, 3], -1)
    row_timestamp = tf.gather(timestamp, tokens.value_rowids())
    age_ms = tf.where(last >= 0, tf.maximum(row_timestamp - last, 0), tf.zeros_like(last))

    def dense(values, default):
        return tokens.with_flat_values(values).to_tensor(
            default_value=default, shape=[None, length]
        )

    return {
        PROFILE_INDEX: _indexed(dense(index, tf.constant(0, tf.int64)), item_size),
        PROFILE_COUNT: dense(tf.cast(count, tf.float32), 0.0),
        PROFILE_EVENT: _indexed(
            dense(event, tf.constant(0, tf.int64)), tf.constant(len(F.EVENT_TYPES), tf.int64)
        ),
        PROFILE_AGE: dense(tf.cast(age_ms, tf.float32) / _MS_PER_DAY, 0.0),
    }


def _parsed_int(values: tf.Tensor, default: int) -> tf.Tensor:
    """int64 of decimal strings; ``default`` where a value is not one."""
    number = tf.strings.regex_full_match(values, "-?[0-9]{1,18}")
    return tf.strings.to_number(tf.where(number, values, str(default)), tf.int64)


# ---------------------------------------------------------------- helpers


def _batch_size(inputs: dict[str, Any]) -> tf.Tensor:
    for name in (F.ITEM_ID, F.VISITOR_ID, *inputs):
        value = inputs.get(name)
        if value is None:
            continue
        if isinstance(value, tf.SparseTensor):
            return value.dense_shape[0]
        if isinstance(value, tf.RaggedTensor):
            return value.nrows()
        return tf.shape(value, out_type=tf.int64)[0]
    raise ValueError("preprocessing_fn got no inputs")


def _column(inputs, name: str, batch, dtype: tf.DType, default=None) -> tf.Tensor:
    """Returns raw column ``name`` as a dense [B] tensor of ``dtype``.

    Sparse and ragged columns (cells that may be empty) take their first value or ``default``; a
    column the schema does not have at all (e.g. always empty) is filled with ``default``.

    Raises:
      ValueError: a required column (``default`` None) is missing.
    """
    value = inputs.get(name)
    if value is None:
        if default is None:
            raise ValueError(
                f"preprocessing_fn: input column {name!r} missing; got {sorted(inputs)}"
            )
        return tf.fill(tf.reshape(batch, [1]), tf.constant(default, dtype))
    present = None
    if isinstance(value, (tf.SparseTensor, tf.RaggedTensor)):
        if isinstance(value, tf.SparseTensor):
            value = tf.RaggedTensor.from_sparse(value)
        present = tf.greater(value.row_lengths(), 0)
        empty = "" if value.dtype == tf.string else 0
        value = value.to_tensor(default_value=tf.constant(empty, value.dtype))
    if value.shape.rank == 2:
        # A padded column of width 0 (every cell empty in the batch) still yields one value per row.
        empty = "" if value.dtype == tf.string else 0
        padding = tf.fill(tf.stack([tf.shape(value)[0], 1]), tf.constant(empty, value.dtype))
        value = tf.concat([value, padding], axis=1)[:, 0]
    value = _cast(value, dtype)
    if present is not None and default is not None:
        value = tf.where(present, value, tf.fill(tf.shape(value), tf.constant(default, dtype)))
    return value


def _cast(value: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    if value.dtype == dtype:
        return value
    if dtype == tf.string:
        return _as_string(value)
    if value.dtype == tf.string:
        value = tf.where(tf.equal(value, ""), "0", value)
        return tf.cast(tf.strings.to_number(value, tf.float64), dtype)
    if dtype.is_integer and value.dtype.is_floating:
        value = tf.round(value)
    return tf.cast(value, dtype)


def analysed_rows(tft_output) -> int:
    """The number of rows Transform's analysis read (the frequency stored in ``ROWS_VOCAB``)."""
    with tf.io.gfile.GFile(tft_output.vocabulary_file_by_name(ROWS_VOCAB)) as fh:
        line = fh.readline().split()
    return int(line[0]) if line else 0


def _as_string(value: tf.Tensor) -> tf.Tensor:
    return value if value.dtype == tf.string else tf.strings.as_string(value)


def _indexed(tensor: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Records the index domain [0, size) in the output schema (read back by the model)."""
    tensor = tf.cast(tensor, tf.int64)
    schema_inference.set_tensor_schema_override(
        tensor, tf.constant(0, tf.int64), tf.cast(size, tf.int64) - 1
    )
    return tensor


def _log1p(value: tf.Tensor) -> tf.Tensor:
    return tf.math.log1p(tf.maximum(value, 0.0))


def _z_score(value: tf.Tensor, present: tf.Tensor | None = None) -> tf.Tensor:
    """(value - mean) / std over the present values of the analysed data; 0 where absent.

    Computed from sums so that a column with no present value in the analysed data gives zeros
    instead of NaN. The sums are float64: Beam adds the workers' partial sums in no fixed order,
    and float32 sums of millions of values then differed in their last digits from run to run
    (8 of 93 constants at RetailRocket scale). In float64 the rounding stays far below float32's
    precision, so the mean and deviation, cast back to float32, no longer depend on that order.
    """
    if present is None:
        present = tf.ones_like(value, dtype=tf.bool)
    kept = tf.cast(tf.boolean_mask(value, present), tf.float64)
    count = tf.cast(tft.size(kept), tf.float64)
    total = tft.sum(kept)
    total_sq = tft.sum(tf.square(kept))
    mean = total / tf.maximum(count, 1.0)
    variance = tf.maximum(total_sq / tf.maximum(count, 1.0) - tf.square(mean), 0.0)
    mean32 = tf.cast(mean, tf.float32)
    std32 = tf.cast(tf.sqrt(variance + _EPS), tf.float32)
    scaled = (value - mean32) / std32
    return tf.where(present, scaled, tf.zeros_like(value))
