"""Tests of the two-tower model: tower shapes, the shared item table, the repeat term, the loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from modules import model as M
from modules import transform as T

ROOT = Path(__file__).resolve().parents[1]
# 10 item rows: 0 padding, 1..8 vocabulary, 9 out-of-vocabulary.
SIZES = M.FeatureSizes(
    items=10,
    categories=6,
    text_buckets=17,
    visitors=5,
    item_numeric=3,
    user_numeric=6,
    category_columns=6,
    history_length=4,
    profile_length=5,
)


def _features(batch: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        T.ITEM_INDEX: (np.arange(batch) % 8 + 1).astype(np.int64),
        T.CATEGORY_INDEX: rng.integers(0, SIZES.categories, (batch, 6)),
        T.TEXT_TOKENS: rng.integers(0, SIZES.text_buckets, (batch, 5)),
        T.ITEM_NUMERIC: rng.normal(size=(batch, SIZES.item_numeric)).astype(np.float32),
        T.HISTORY_INDEX: rng.integers(0, 9, (batch, SIZES.history_length)),
        T.VISITOR_INDEX: rng.integers(0, SIZES.visitors, batch),
        T.HOUR: rng.integers(0, 24, batch),
        T.DAY_OF_WEEK: rng.integers(0, 7, batch),
        T.USER_NUMERIC: rng.normal(size=(batch, SIZES.user_numeric)).astype(np.float32),
        # Distinct items (a permutation of 1..8, then padding), as the transform gives them.
        T.PROFILE_INDEX: np.stack(
            [np.concatenate([rng.permutation(8)[:3] + 1, [0, 0]]) for _ in range(batch)]
        ),
        T.PROFILE_COUNT: np.tile(np.array([3.0, 1.0, 2.0, 0.0, 0.0], np.float32), (batch, 1)),
        T.PROFILE_EVENT: np.tile(np.array([2, 0, 1, 0, 0]), (batch, 1)),
        T.PROFILE_AGE: np.tile(np.array([0.5, 3.0, 40.0, 0.0, 0.0], np.float32), (batch, 1)),
    }


def _model(**config) -> M.TwoTowerModel:
    tf.keras.utils.set_random_seed(0)
    probability = np.full(SIZES.items, 1.0 / SIZES.items)
    return M.TwoTowerModel(
        SIZES, M.ModelConfig(embedding_dim=8, hidden_dim=16, **config), probability
    )


@pytest.mark.parametrize("encoder", M.ENCODERS)
def test_tower_shapes_for_every_encoder(encoder):
    model = _model(encoder=encoder)
    features = _features()
    users = model.user_vectors(features).numpy()
    items = model.item_vectors(features).numpy()
    # [u, 1] and [v, b]: embedding_dim + 1 columns; the user's last column is the constant 1.
    assert users.shape == (6, 9) and items.shape == (6, 9)
    np.testing.assert_array_equal(users[:, -1], 1.0)


def test_visitor_embedding_is_optional_and_off_by_default():
    assert M.ModelConfig().use_visitor is False
    names = {}
    for use_visitor in (False, True):
        model = _model(use_visitor=use_visitor)
        model.user_vectors(_features())  # builds the layers
        names[use_visitor] = {v.name for v in model.user_tower.trainable_variables}
    without, with_visitor = names[False], names[True]
    assert not any("visitor" in name for name in without)
    assert any("visitor" in name for name in with_visitor)


def test_history_encoder_shares_the_item_tables_embedding():
    model = _model(encoder="mean")
    features = _features(batch=1)
    features[T.HISTORY_INDEX] = np.array([[3, 0, 0, 0]])
    features[T.ITEM_INDEX] = np.array([3])
    user_before = model.user_vectors(features).numpy()
    item_before = model.item_vectors(features).numpy()
    assert model.user_tower.item_embedding is model.item_tower.item_embedding
    tables = [v for v in model.trainable_variables if "item_embedding" in v.name]
    assert len(tables) == 1  # one table, not a copy per tower
    table = model.item_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_add(table, [[3]], tf.ones([1, 8])))
    # Moving row 3 moves both the user (history = [3]) and item 3, by the same vector (mean of
    # one history item; the item vector is the id embedding plus content).
    user_delta = model.user_vectors(features).numpy() - user_before
    item_delta = model.item_vectors(features).numpy() - item_before
    np.testing.assert_allclose(item_delta[0, :8], 1.0, atol=1e-5)
    assert np.abs(user_delta[0, :8]).sum() > 1.0


def test_out_of_vocabulary_items_have_no_id_embedding():
    model = _model()
    features = _features(batch=2)
    features[T.ITEM_INDEX] = np.array([9, 9])  # the OOV row (cold items)
    before = model.item_vectors(features).numpy()
    table = model.item_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_add(table, [[9]], tf.ones([1, 8])))
    np.testing.assert_allclose(model.item_vectors(features).numpy(), before, atol=1e-6)


def test_repeat_term_by_hand():
    repeat = M.RepeatTerm(width=4, buckets=3, age_buckets=3, item_rows=SIZES.items)
    # Rank buckets: 0 -> 0, 1-2 -> 1, 3 -> 2; age buckets: < 1 day 0, 1-3 days 1, more 2.
    scale = M.REPEAT_SCALE  # stored weights are the learned ones divided by this
    repeat.bucket_weights.assign(np.array([1.0, -2.0, 4.0]) / scale)
    repeat.count_weight.assign(0.5 / scale)
    repeat.event_weights.assign(np.array([0.0, 0.25, 1.5]) / scale)
    repeat.age_weights.assign(np.array([0.0, -0.1, -0.3]) / scale)
    # Item 5 (bought twice, today), item 3 (viewed once, 2 days ago), item 9 (out of vocabulary).
    features = {
        T.PROFILE_INDEX: tf.constant([[5, 3, 9, 0, 0]]),
        T.PROFILE_COUNT: tf.constant([[2.0, 1.0, 1.0, 0.0, 0.0]]),
        T.PROFILE_EVENT: tf.constant([[2, 0, 0, 0, 0]]),
        T.PROFILE_AGE: tf.constant([[0.2, 2.0, 90.0, 0.0, 0.0]]),
    }
    five = 1.0 + 0.5 * np.log(2) + 1.5 + 0.0
    three = -2.0 + 0.0 + 0.0 - 0.1
    # Only the first 4 positions are read (width 4); padding and OOV carry no bonus.
    np.testing.assert_allclose(repeat.bonus(features).numpy(), [[five, three, 0, 0]], rtol=1e-6)
    matrix = repeat.matrix(features, tf.constant([5, 3, 7, 9])).numpy()
    np.testing.assert_allclose(matrix, [[five, three, 0.0, 0.0]], rtol=1e-6)


def _item_table(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        T.ITEM_INDEX: np.arange(SIZES.items, dtype=np.int64),
        T.CATEGORY_INDEX: rng.integers(0, SIZES.categories, (SIZES.items, 6)),
        T.TEXT_TOKENS: rng.integers(0, SIZES.text_buckets, (SIZES.items, 5)),
        T.ITEM_NUMERIC: rng.normal(size=(SIZES.items, SIZES.item_numeric)).astype(np.float32),
    }


def test_history_content_encoder_reads_the_item_towers_vectors():
    tf.keras.utils.set_random_seed(0)
    table = _item_table()
    config = M.ModelConfig(embedding_dim=8, hidden_dim=16, encoder="mean", history_content=True)
    model = M.TwoTowerModel(SIZES, config, np.full(SIZES.items, 0.1), table)
    history = tf.constant([[3, 5, 3, 0], [9, 0, 0, 0]])  # 9: out of vocabulary, 0: padding
    vectors = model.item_vectors({name: values[[3, 5]] for name, values in table.items()})
    pooled = model.user_tower.encode_history(history, tf.zeros([2, 1])).numpy()
    expected = (2 * vectors[0, :8] + vectors[1, :8]) / 3
    np.testing.assert_allclose(pooled[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pooled[1], np.zeros(8))  # nothing known to read
    # Content reaches the user side: another category path changes the user vector.
    before = model.user_vectors(_features(batch=2)).numpy()
    model._item_table[T.CATEGORY_INDEX].assign(np.roll(table[T.CATEGORY_INDEX], 1, axis=0))
    assert not np.allclose(model.user_vectors(_features(batch=2)).numpy(), before)
    with pytest.raises(ValueError, match="history_content needs"):
        M.TwoTowerModel(SIZES, config, np.full(SIZES.items, 0.1))


def test_history_negatives_loss_by_hand():
    # negatives="history": each row's softmax holds the batch's positives (log-Q corrected, the
    # repeat term added) and the row's own profile items scored exactly (tower vector + bonus).
    tf.keras.utils.set_random_seed(0)
    table = _item_table()
    config = M.ModelConfig(embedding_dim=8, hidden_dim=16, negatives="history")
    probability = np.linspace(0.05, 0.15, SIZES.items)
    model = M.TwoTowerModel(SIZES, config, probability, table)
    # Small repeat weights: the profile part weighs about as much as the batch part.
    model.repeat.bucket_weights.assign(np.linspace(-0.02, 0.05, config.repeat_buckets))
    features = _features(batch=4)
    # Row 0's target is its own profile item (taken out of its profile part); row 1's target is
    # in row 2's profile (taken out of row 2's batch part); rows 2 and 3 share a target (each
    # takes the other's copy out).
    features[T.ITEM_INDEX] = np.array([5, 7, 3, 3])
    features[T.PROFILE_INDEX] = np.array(
        [[5, 2, 0, 0, 0], [1, 4, 6, 0, 0], [7, 2, 9, 0, 0], [8, 0, 0, 0, 0]]
    )
    for name in (T.CATEGORY_INDEX, T.TEXT_TOKENS, T.ITEM_NUMERIC):
        features[name] = table[name][features[T.ITEM_INDEX]]
    tensors = {k: tf.constant(v) for k, v in features.items()}
    loss = float(model.compute_loss(tensors))

    users = model.user_vectors(tensors).numpy()
    targets = features[T.ITEM_INDEX]
    items = model.item_vectors({k: v[targets] for k, v in table.items()}).numpy()
    repeat = model.repeat.matrix(tensors, tf.constant(targets, tf.int32)).numpy()
    p = np.minimum(probability[targets] * 4, 1.0)
    scores = users @ items.T + repeat - np.log(p)[None, :]
    history = features[T.PROFILE_INDEX]
    bonus = model.repeat.bonus(tensors).numpy()
    everything = model.item_vectors(table).numpy()
    expected = 0.0
    for row in range(4):
        known = [(n, i) for n, i in enumerate(history[row]) if 0 < i < SIZES.items - 1]
        batch_part = [
            scores[row, j]
            for j in range(4)
            if j == row or (targets[j] != targets[row] and targets[j] not in history[row])
        ]
        own_part = [
            users[row] @ everything[i] + bonus[row, n] for n, i in known if i != targets[row]
        ]
        logits = np.array(batch_part + own_part, np.float64)
        expected += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - scores[row, row]
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_encoder_reads_events_or_distinct_items():
    features = _features(batch=2)
    outputs = {}
    for sequence in M.SEQUENCES:
        model = _model(encoder="mean", sequence=sequence, history_items=2)
        assert M.sequence_width(SIZES, model.config) == 2
        outputs[sequence] = model.user_vectors(features).numpy()
        changed = dict(features)
        name = T.HISTORY_INDEX if sequence == "events" else T.PROFILE_INDEX
        changed[name] = features[name].copy()
        changed[name][:, 2:] = 1  # beyond history_items: not read
        np.testing.assert_allclose(model.user_vectors(changed).numpy(), outputs[sequence])


def test_loss_scores_are_dot_product_plus_repeat_term():
    model = _model()
    features = _features()
    users = model.user_vectors(features)
    items = model.item_vectors(features)
    model.repeat.bucket_weights.assign(np.arange(1, 11, dtype=np.float32))
    repeat = model.repeat.matrix(features, features[T.ITEM_INDEX])
    augmented = tf.matmul(
        tf.concat([users, repeat], 1), tf.concat([items, tf.eye(6)], 1), transpose_b=True
    )
    expected = tf.matmul(users, items, transpose_b=True) + repeat
    np.testing.assert_allclose(augmented.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_loss_decreases_on_a_toy_batch():
    model = _model()
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    batch = {k: tf.constant(v) for k, v in _features(batch=8).items()}
    first = float(model.train_step(batch)["loss"])
    for _ in range(30):
        last = float(model.train_step(batch)["loss"])
    assert last < 0.5 * first


def test_item_id_bias_starts_at_the_centred_log_prior():
    probability = np.array([0, 0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0])
    model = M.TwoTowerModel(SIZES, M.ModelConfig(embedding_dim=8, hidden_dim=16), probability)
    model.item_vectors(_features())  # builds the layers
    bias = model.item_tower.item_bias.embeddings.numpy()[:, 0]
    # Item 8 had no target: the smallest share (0.05); padding (0) and OOV (9) start at 0.
    logs = np.log([0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05])
    np.testing.assert_allclose(bias[1:9], logs - logs.mean(), rtol=1e-5)
    assert bias[0] == bias[9] == 0.0


def test_candidate_probability_must_cover_the_item_table():
    with pytest.raises(ValueError, match="item table has 10 rows"):
        M.TwoTowerModel(SIZES, M.ModelConfig(), np.ones(3) / 3)


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder 'lstm' unknown"):
        M.ModelConfig(encoder="lstm")


def test_model_module_imports_no_tfx():
    code = (
        "import sys, modules.model; "
        "bad = sorted(m for m in sys.modules if m == 'tfx' or m.startswith('tfx.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
