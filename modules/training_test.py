"""Tests of the training data path: evaluation-shaped examples, raw columns in and out of TFRecords."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.export import export as E  # noqa: E402
from data.generator import generate  # noqa: E402
from modules import features as F  # noqa: E402
from modules import training  # noqa: E402

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_433_154_600_000


def _train() -> dict[str, np.ndarray]:
    """Visitor 1: view 10 (T0), view 20 (+1 h), addtocart 10 (+2 h), view 30 (+30 days).

    Visitor 2: one view of 10 (+5 h). Columns hold what the export writes (history = items
    before the event, most recent first; counters before the event). Rows are not in time order.
    """
    rows = [
        # visitor, item, event, timestamp, history
        (1, 20, "view", T0 + HOUR, "10"),
        (1, 10, "view", T0, ""),
        (2, 10, "view", T0 + 5 * HOUR, ""),
        (1, 10, "addtocart", T0 + 2 * HOUR, "20 10"),
        (1, 30, "view", T0 + 30 * DAY, "10 20 10"),
    ]
    columns = {
        F.VISITOR_ID: [r[0] for r in rows],
        F.ITEM_ID: [r[1] for r in rows],
        F.EVENT: [r[2] for r in rows],
        F.TIMESTAMP: [r[3] for r in rows],
        F.HISTORY: [r[4] for r in rows],
        F.CATEGORY: [7, 8, 8, 8, 9],  # an item column: must travel with its event
    }
    for name in (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP):
        columns[name] = [-1] * len(rows)  # overwritten by the state at the pseudo-cutoff
    return training.normalise_columns(columns)


def _by_target(examples):
    keys = zip(examples[F.VISITOR_ID].tolist(), examples[F.TIMESTAMP].tolist(), strict=True)
    return {key: i for i, key in enumerate(keys)}


def test_next_event_limit_by_hand():
    # A horizon of 1 ms puts every pseudo-cutoff 1 ms before its event: the state is the visitor's
    # previous event. The first event of each visitor has no state and is skipped.
    examples = training.pseudo_cutoff_examples(_train(), horizon_days=1 / DAY)
    index = _by_target(examples)
    assert sorted(index) == [(1, T0 + HOUR), (1, T0 + 2 * HOUR), (1, T0 + 30 * DAY)]
    cart = index[(1, T0 + 2 * HOUR)]  # state after view 10, view 20
    assert examples[F.ITEM_ID][cart] == 10 and examples[F.EVENT][cart] == "addtocart"
    assert examples[F.CATEGORY][cart] == 8  # the target's own item columns
    assert examples[F.HISTORY][cart] == "20 10"
    assert (examples[F.USER_VIEWS][cart], examples[F.USER_ADDTOCARTS][cart]) == (2, 0)
    assert examples[F.USER_DISTINCT_ITEMS][cart] == 2
    assert examples[F.USER_LAST_TIMESTAMP][cart] == T0 + HOUR
    late = index[(1, T0 + 30 * DAY)]  # state after all three earlier events
    assert examples[F.HISTORY][late] == "10 20 10"
    assert (examples[F.USER_VIEWS][late], examples[F.USER_ADDTOCARTS][late]) == (2, 1)
    assert examples[F.USER_DISTINCT_ITEMS][late] == 2
    assert examples[F.USER_LAST_TIMESTAMP][late] == T0 + 2 * HOUR


def test_pseudo_cutoffs_never_look_ahead():
    train = _train()
    examples = training.pseudo_cutoff_examples(train, horizon_days=60, examples_per_event=20)
    assert len(examples[F.ITEM_ID]) > 0
    # The state always precedes its target, and a target is never part of its own state.
    assert (examples[F.USER_LAST_TIMESTAMP] < examples[F.TIMESTAMP]).all()
    late = examples[F.TIMESTAMP] == T0 + 30 * DAY
    # The +30 days view: a cutoff within 60 days may fall before or after the first three events.
    assert set(examples[F.HISTORY][late]) <= {"10", "20 10", "10 20 10"}


def test_states_at_reproduce_the_exports_eval_queries(tmp_path):
    generate(tmp_path / "raw", preset="tiny", seed=0)
    summary = E.export(tmp_path / "raw", tmp_path / "out", history_length=5)
    train = training.read_csv_columns(str(tmp_path / "out" / F.TRAIN_SPLIT / F.INTERACTIONS_FILE))
    queries = training.read_csv_columns(str(tmp_path / "out" / F.EVAL_SPLIT / F.INTERACTIONS_FILE))
    cutoff = np.full(len(queries[F.VISITOR_ID]), summary["split"]["cutoff_ms"])
    state, found = training.states_at(train, queries[F.VISITOR_ID], cutoff)
    assert found.all()
    for name in (*F.USER_COUNTER_FEATURES, F.USER_LAST_TIMESTAMP):
        np.testing.assert_array_equal(state[name], queries[name], err_msg=name)
    cut = [" ".join(h.split()[:5]) for h in state[F.HISTORY]]  # the export keeps 5
    assert cut == list(queries[F.HISTORY])


def test_unknown_visitors_have_no_state():
    state, found = training.states_at(_train(), np.array([1, 3]), np.array([T0 - 1, T0 + DAY]))
    assert found.tolist() == [False, False]  # visitor 1 before its first event; 3 never seen
    assert state[F.HISTORY].tolist() == ["", ""]


def test_example_columns_round_trip_through_tfrecords(tmp_path):
    columns = training.normalise_columns(
        {
            F.ITEM_ID: [10, 20],
            F.HISTORY: ["1 2", ""],
            F.numeric_feature("790"): [1.5, np.nan],
        }
    )
    spec = training.raw_feature_spec(columns)
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
    read = training.read_example_columns([str(tmp_path / "*.gz")], spec)
    assert read[F.ITEM_ID].tolist() == [10, 20]
    assert read[F.HISTORY].tolist() == ["1 2", ""]
    np.testing.assert_array_equal(read[F.numeric_feature("790")], [1.5, np.nan])
    # And into the tensors a transform graph expects: empty cells are absent, not "" or NaN.
    tensors = training.to_raw_tensors(read, spec)
    assert tensors[F.HISTORY].values.numpy().tolist() == [b"1 2"]
    assert tensors[F.ITEM_ID].shape == (2, 1)


def test_no_examples_is_an_error(tmp_path):
    train = {name: values[:1] for name, values in _train().items()}
    with pytest.raises(ValueError, match="no training example"):
        training.train(train, train, tft_output=_NoTransform(), custom_config={})


class _NoTransform:
    """Stands in for a TFTransformOutput: `train` must fail before it reads one."""
