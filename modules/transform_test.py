"""``preprocessing_fn`` through tf.Transform on a few hand-made rows, and the catalogue path."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from modules import columns as C
from modules import features as F
from modules import testing
from modules import transform as T

T0 = 1_433_154_600_000  # 2015-06-01 10:30 UTC, a Monday
HOUR_MS = 3_600_000
CONFIG = {
    "history_length": 3,
    "profile_length": 3,
    "text_max_tokens": 4,
    "text_hash_buckets": 64,
    "visitor_min_count": 2,
}
NUM = F.numeric_feature("790")


def _rows() -> dict[str, np.ndarray]:
    """Visitor 1: view 10, view 20, addtocart 10; visitor 2: view 10 (a hand-made history)."""
    item_10 = {"cat": [3, 1, 2, 3, -1, -1], "text": "888:a 888:b", "num": 100.0, "available": 1}
    item_20 = {"cat": [2, 1, 2, -1, -1, -1], "text": "", "num": np.nan, "available": 0}
    rows = [
        # visitor, item, event, timestamp, item features, counters, last timestamp, history
        (1, 10, "view", T0, item_10, (0, 0, 0, 0), 0, ""),
        (1, 20, "view", T0 + HOUR_MS, item_20, (1, 0, 0, 1), T0, "10"),
        (1, 10, "addtocart", T0 + 3 * HOUR_MS, item_10, (2, 0, 0, 2), T0 + HOUR_MS, "20 10"),
        (2, 10, "view", T0 + 25 * HOUR_MS, item_10, (0, 0, 0, 0), 0, "99 20 10 20"),
    ]
    columns: dict[str, list] = {name: [] for name in F.interaction_columns(["790"])}
    for visitor, item, event, ts, feats, counters, last, history in rows:
        columns[F.VISITOR_ID].append(visitor)
        columns[F.ITEM_ID].append(item)
        columns[F.EVENT].append(event)
        columns[F.TIMESTAMP].append(ts)
        columns[F.AVAILABLE].append(feats["available"])
        for name, value in zip((F.CATEGORY, *F.CATEGORY_LEVEL_FEATURES), feats["cat"], strict=True):
            columns[name].append(value)
        columns[F.ITEM_TEXT].append(feats["text"])
        columns[NUM].append(feats["num"])
        columns[F.ITEM_POP_TRAIN].append(3 if item == 10 else 1)
        columns[F.ITEM_POP_RECENT].append(1 if item == 10 else 0)
        for name, value in zip(F.USER_COUNTER_FEATURES, counters, strict=True):
            columns[name].append(value)
        columns[F.USER_LAST_TIMESTAMP].append(last)
        columns[F.HISTORY].append(history)
        columns[F.PROFILE].append(PROFILES[len(columns[F.PROFILE])])
    return C.normalise_columns(columns)


# Train rows have no profile; the last row is a query with one (and a malformed token).
PROFILES = (
    "",
    "",
    "",
    f"20:1:view:{T0 + HOUR_MS} 10:2:addtocart:{T0 + HOUR_MS - 86_400_000} 99:1:view:{T0} 10:x",
)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    rows = _rows()
    out = tmp_path_factory.mktemp("tft")
    tft_output = testing.analyze(rows, str(out), CONFIG)
    layer = tft_output.transform_features_layer()
    transformed = C.transform_columns(layer, rows, tft_output.raw_feature_spec())
    return tft_output, layer, rows, transformed


def test_item_vocabulary_and_history_share_indices(analysed):
    tft_output, _, _, out = analysed
    # Vocabulary by frequency: "10" (3 rows), "20" (1). Index = position + 1; 0 pads; 3 is OOV.
    assert tft_output.vocabulary_by_name(T.ITEM_VOCAB) == [b"10", b"20"]
    assert tft_output.num_buckets_for_transformed_feature(T.ITEM_INDEX) == 4
    np.testing.assert_array_equal(out[T.ITEM_INDEX], [1, 2, 1, 1])
    # Histories, most recent first, cut to history_length=3; "99" was never a train item.
    np.testing.assert_array_equal(
        out[T.HISTORY_INDEX], [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1]]
    )


def test_profile_tokens_are_parsed_and_cut(analysed):
    _, _, _, out = analysed
    # profile_length=3 keeps the 3 most recent tokens; "99" is out of vocabulary (index 3).
    np.testing.assert_array_equal(out[T.PROFILE_INDEX], [[0, 0, 0]] * 3 + [[2, 1, 3]])
    np.testing.assert_array_equal(out[T.PROFILE_COUNT][3], [1.0, 2.0, 1.0])
    np.testing.assert_array_equal(out[T.PROFILE_EVENT][3], [0, 1, 0])
    # Days from the last event to the query (T0 + 25 h): 1 day, 2 days, 25 h.
    np.testing.assert_allclose(out[T.PROFILE_AGE][3], [1.0, 2.0, 25 / 24], rtol=1e-5)
    assert not out[T.PROFILE_COUNT][:3].any() and not out[T.PROFILE_AGE][:3].any()


def test_malformed_profile_fields_read_as_defaults(analysed):
    _, layer, rows, _ = analysed
    query = {name: values[3:] for name, values in rows.items()}
    query[F.PROFILE] = np.array(["10:two:buy:soon 20"], dtype=object)
    out = C.transform_columns(layer, query, analysed[0].raw_feature_spec())
    np.testing.assert_array_equal(out[T.PROFILE_INDEX], [[1, 2, 0]])
    np.testing.assert_array_equal(out[T.PROFILE_COUNT], [[1.0, 1.0, 0.0]])  # count 1
    np.testing.assert_array_equal(out[T.PROFILE_EVENT], [[0, 0, 0]])  # a view
    np.testing.assert_array_equal(out[T.PROFILE_AGE], [[0.0, 0.0, 0.0]])  # seen now


def test_visitor_vocabulary_keeps_repeat_visitors(tmp_path):
    rows = _rows()
    tft_output = testing.analyze(rows, str(tmp_path), {**CONFIG, "use_visitor": True})
    layer = tft_output.transform_features_layer()
    out = C.transform_columns(layer, rows, tft_output.raw_feature_spec())
    # visitor_min_count=2: visitor 1 (3 rows) is in, visitor 2 (1 row) shares the OOV index 2.
    np.testing.assert_array_equal(out[T.VISITOR_INDEX], [1, 1, 1, 2])
    assert tft_output.num_buckets_for_transformed_feature(T.VISITOR_INDEX) == 3


def test_no_visitor_vocabulary_unless_the_model_reads_it(analysed):
    tft_output, _, _, out = analysed
    # The default model has no visitor embedding (use_visitor off): the analysis builds no
    # vocabulary over the visitors, and the output is padding with a one-value domain.
    np.testing.assert_array_equal(out[T.VISITOR_INDEX], [0, 0, 0, 0])
    assert tft_output.num_buckets_for_transformed_feature(T.VISITOR_INDEX) == 1
    assert tft_output.vocabulary_file_by_name(T.VISITOR_VOCAB) is None
    assert tft_output.vocabulary_file_by_name(T.ITEM_VOCAB) is not None


def test_category_and_its_levels_share_one_vocabulary(analysed):
    tft_output, _, _, out = analysed
    # Counts over categoryid + levels (missing -1 excluded): "3": 6, "2": 5, "1": 4.
    assert tft_output.vocabulary_by_name(T.CATEGORY_VOCAB) == [b"3", b"2", b"1"]
    np.testing.assert_array_equal(out[T.CATEGORY_INDEX][0], [1, 3, 2, 1, 0, 0])
    np.testing.assert_array_equal(out[T.CATEGORY_INDEX][1], [2, 3, 2, 0, 0, 0])
    assert tft_output.num_buckets_for_transformed_feature(T.CATEGORY_INDEX) == 5


def test_property_tokens_are_hashed(analysed):
    tft_output, _, _, out = analysed
    tokens = out[T.TEXT_TOKENS]
    assert tokens.shape == (4, 4)
    assert (tokens[0, :2] > 0).all() and (tokens[0, 2:] == 0).all()  # 2 tokens, then padding
    assert (tokens[1] == 0).all()  # item 20 has no text
    np.testing.assert_array_equal(tokens[0], tokens[2])
    assert tokens.max() <= 64
    assert tft_output.num_buckets_for_transformed_feature(T.TEXT_TOKENS) == 65


def test_time_features(analysed):
    _, _, _, out = analysed
    # T0 is Monday 10:30 UTC; +1 h, +3 h, +25 h (Tuesday 11:30).
    np.testing.assert_array_equal(out[T.HOUR], [10, 11, 13, 11])
    np.testing.assert_array_equal(out[T.DAY_OF_WEEK], [0, 0, 0, 1])
    # Recency: log1p(1 h) and log1p(2 h) are the only two present values: z-scores -1 and +1.
    np.testing.assert_allclose(out[T.USER_NUMERIC][:, 4], [0, -1, 1, 0], atol=1e-3)
    np.testing.assert_array_equal(out[T.USER_NUMERIC][:, 5], [1, 0, 0, 1])  # no previous event


def test_numbers_are_normalised(analysed):
    _, _, _, out = analysed
    numeric = out[T.ITEM_NUMERIC]
    # available==1, available==0, popularity x2, num_790 (z-scored), num_790 missing.
    assert numeric.shape == (4, 6)
    np.testing.assert_array_equal(numeric[:, 0], [1, 0, 1, 1])
    np.testing.assert_array_equal(numeric[:, 1], [0, 1, 0, 0])
    np.testing.assert_allclose(numeric[:, 2].mean(), 0, atol=1e-5)  # z-score over the rows
    np.testing.assert_array_equal(numeric[:, 5], [0, 1, 0, 0])  # item 20 has no price
    np.testing.assert_allclose(numeric[:, 4], 0, atol=1e-5)  # one distinct price: z = 0
    np.testing.assert_allclose(out[T.USER_NUMERIC][:, :4].mean(axis=0), 0, atol=1e-5)


def test_catalogue_rows_get_the_same_item_features(analysed):
    tft_output, layer, rows, out = analysed
    items = C.item_columns_of({name: values[[0, 1]] for name, values in rows.items()})
    items[F.ITEM_ID] = np.array([10, 30])  # 30: a catalogue item without train events
    items_out = C.transform_columns(layer, items, tft_output.raw_feature_spec())
    # Item columns alone yield exactly the item-side outputs, computed by the same graph.
    assert set(items_out) == set(T.ITEM_OUTPUTS)
    for name in (T.CATEGORY_INDEX, T.TEXT_TOKENS, T.ITEM_NUMERIC):
        np.testing.assert_allclose(items_out[name], out[name][[0, 1]])
    np.testing.assert_array_equal(items_out[T.ITEM_INDEX], [1, 3])  # 30 -> out of vocabulary


# ---------------------------------------------------------------- input shapes


def _col(value, dtype, default=None, name=F.HISTORY):
    return T._column({name: value}, name, tf.constant(2, tf.int64), dtype, default).numpy()


def test_columns_accept_every_shape_the_schema_may_give():
    dense = tf.constant([[b"1 2"], [b"3"]])
    sparse = tf.SparseTensor([[0, 0]], tf.constant([b"1 2"]), [2, 1])
    ragged = tf.ragged.constant([[b"1 2"], []])
    assert list(_col(dense, tf.string, "")) == [b"1 2", b"3"]
    assert list(_col(sparse, tf.string, "")) == [b"1 2", b""]
    assert list(_col(ragged, tf.string, "")) == [b"1 2", b""]
    # Every cell empty in the batch: a width-0 sparse tensor still gives one value per row.
    empty = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.float32), [2, 0])
    np.testing.assert_array_equal(_col(empty, tf.float32, np.nan), [np.nan, np.nan])
    # A history column inferred as int64 (every history a single id) reads as text.
    assert list(_col(tf.constant([[7], [8]], tf.int64), tf.string, "")) == [b"7", b"8"]
    # An absent optional column is filled; an absent required one names itself.
    np.testing.assert_array_equal(
        T._column({}, F.ITEM_TEXT, tf.constant(2, tf.int64), tf.string, "").numpy(), [b"", b""]
    )
    with pytest.raises(ValueError, match="'itemid' missing"):
        T._column({}, F.ITEM_ID, tf.constant(2, tf.int64), tf.int64)


def test_normalisation_does_not_depend_on_the_order_of_the_rows(tmp_path):
    # Beam adds partial sums in no fixed order; float32 sums of these popularities differ in their
    # last digits between the two orders, and so would every normalised feature.
    base = _rows()
    copies = 1500
    rows = {name: np.concatenate([values] * copies) for name, values in base.items()}
    counts = np.random.default_rng(0).lognormal(3.0, 2.0, size=4 * copies).round()
    rows[F.ITEM_POP_TRAIN] = counts.astype(rows[F.ITEM_POP_TRAIN].dtype)
    reversed_rows = {name: values[::-1].copy() for name, values in rows.items()}
    outputs = []
    for name, analysed_rows in (("forward", rows), ("reversed", reversed_rows)):
        tft_output = testing.analyze(analysed_rows, str(tmp_path / name), CONFIG)
        layer = tft_output.transform_features_layer()
        outputs.append(C.transform_columns(layer, base, tft_output.raw_feature_spec()))
    forward, backward = outputs
    for name in (T.ITEM_NUMERIC, T.USER_NUMERIC):
        np.testing.assert_array_equal(forward[name], backward[name])
